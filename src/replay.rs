//! `ontrack replay`: the core over a JSON-Lines export, for back-testing rules.
//!
//! Streams line by line: memory grows with the number of students, not with the file.

use std::fmt;
use std::io::{self, BufRead, Write};

use base64::Engine;
use serde::Serialize;
use time::OffsetDateTime;

use crate::core::{Change, DecodeError, Flag, FlagChange, Outcome, Rules, Students, decode};
use crate::output::FlagEvent;

/// What a replay did, for the closing summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Non-blank lines read.
    pub events_read: u64,
    pub rejected: u64,
    pub duplicates: u64,
    pub students: u64,
    /// Per flag, in table order.
    pub raised: [u64; 5],
    pub cleared: [u64; 5],
    pub still_raised: [u64; 5],
}

/// A line that is not a valid event, as written to the dead-letter file.
#[derive(Debug, Serialize)]
struct Rejected<'a> {
    line: u64,
    reason: String,
    /// The line as it was, when it is UTF-8 ...
    #[serde(skip_serializing_if = "Option::is_none")]
    raw: Option<&'a str>,
    /// ... and base64 of its bytes when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    raw_base64: Option<String>,
}

/// Replays `input` (one event per line) through the core; writes flag events to `out` in
/// emission order and bad lines to `dead_letter`. `on_reject` hears of each bad line (1-based
/// line number); `now` stamps `emitted_at`.
pub fn replay(
    input: impl BufRead,
    out: impl Write,
    dead_letter: impl Write,
    rules: &Rules,
    now: impl FnMut() -> OffsetDateTime,
    on_reject: impl FnMut(u64, &DecodeError),
) -> io::Result<Summary> {
    replay_as_of(input, out, dead_letter, rules, None, now, on_reject)
}

/// [`replay`], then every school day up to `as_of` closes at the end of the input (back-testing
/// "as of the end of the year": the days no record closed yet pass, with their flag changes).
pub fn replay_as_of(
    mut input: impl BufRead,
    mut out: impl Write,
    mut dead_letter: impl Write,
    rules: &Rules,
    as_of: Option<time::Date>,
    mut now: impl FnMut() -> OffsetDateTime,
    mut on_reject: impl FnMut(u64, &DecodeError),
) -> io::Result<Summary> {
    let mut students = Students::default();
    let mut summary = Summary::default();
    let mut buf = Vec::with_capacity(512);
    let mut line_no = 0u64;
    loop {
        buf.clear();
        if input.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        line_no += 1;
        let line = buf.trim_ascii();
        if line.is_empty() {
            continue;
        }
        summary.events_read += 1;
        let event = match decode(line) {
            Ok(event) => event,
            Err(err) => {
                summary.rejected += 1;
                on_reject(line_no, &err);
                let utf8 = std::str::from_utf8(line).ok();
                let rejected = Rejected {
                    line: line_no,
                    reason: err.to_string(),
                    raw: utf8,
                    raw_base64: utf8
                        .is_none()
                        .then(|| base64::engine::general_purpose::STANDARD.encode(line)),
                };
                serde_json::to_writer(&mut dead_letter, &rejected)?;
                dead_letter.write_all(b"\n")?;
                continue;
            }
        };
        match students.apply(&event, rules) {
            Outcome::Duplicate => summary.duplicates += 1,
            Outcome::Applied(changes) => {
                write_changes(&changes, &mut out, &mut summary, &mut now)?;
            }
        }
    }
    if let Some(day) = as_of {
        let changes = students.close_through(day, rules);
        write_changes(&changes, &mut out, &mut summary, &mut now)?;
    }
    summary.students = students.len() as u64;
    for (_, state) in students.iter() {
        for (flag, _) in state.raised_flags() {
            summary.still_raised[flag.index()] += 1;
        }
    }
    out.flush()?;
    dead_letter.flush()?;
    Ok(summary)
}

fn write_changes(
    changes: &[FlagChange],
    mut out: impl Write,
    summary: &mut Summary,
    mut now: impl FnMut() -> OffsetDateTime,
) -> io::Result<()> {
    for change in changes {
        let counter = match change.change {
            Change::Raised => &mut summary.raised,
            Change::Cleared => &mut summary.cleared,
        };
        counter[change.flag.index()] += 1;
        serde_json::to_writer(&mut out, &FlagEvent::new(change, now()))?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} events read, {} rejected, {} duplicates skipped, {} students",
            self.events_read, self.rejected, self.duplicates, self.students
        )?;
        writeln!(f, "{:<22} {:>9} {:>9} {:>13}", "flag", "raised", "cleared", "still raised")?;
        for flag in Flag::ALL {
            let i = flag.index();
            writeln!(
                f,
                "{:<22} {:>9} {:>9} {:>13}",
                flag.as_str(),
                self.raised[i],
                self.cleared[i],
                self.still_raised[i]
            )?;
        }
        Ok(())
    }
}

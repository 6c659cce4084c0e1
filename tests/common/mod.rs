//! Synthetic events for tests, built as contract JSON and decoded, so every test also goes
//! through the decoder.
#![allow(dead_code)]

pub mod servers;

use std::collections::BTreeMap;

use ontrack::core::{Event, Flag, FlagChange, Outcome, Rules, StudentState, decode};
use serde_json::{Value, json};

pub const STUDENT: &str = "stu-0001";

/// Common fields; `recorded_at` defaults to 08:00 UTC on the event's date.
pub fn base(kind: &str, id: &str, date: &str) -> Value {
    json!({
        "type": kind,
        "event_id": id,
        "student_id": STUDENT,
        "school_id": "sch-01",
        "date": date,
        "recorded_at": format!("{date}T08:00:00Z"),
    })
}

pub fn with(mut v: Value, fields: Value) -> Value {
    for (k, x) in fields.as_object().expect("fields are an object") {
        v[k] = x.clone();
    }
    v
}

pub fn ev(v: Value) -> Event<'static> {
    let json = v.to_string();
    decode(json.as_bytes())
        .map(Event::into_owned)
        .unwrap_or_else(|e| panic!("test event does not decode: {e}: {v}"))
}

/// An attendance event of any student as contract JSON (recorded at 08:30 school time).
pub fn attendance_json(id: &str, student: &str, date: &str, status: &str) -> String {
    json!({"type": "attendance", "event_id": id, "student_id": student, "school_id": "sch-1",
           "date": date, "recorded_at": format!("{date}T08:30:00-05:00"), "status": status})
    .to_string()
}

pub fn attendance(id: &str, date: &str, status: &str) -> Event<'static> {
    ev(with(base("attendance", id, date), json!({ "status": status })))
}

pub fn referral(id: &str, date: &str, referral_id: &str, action: &str) -> Event<'static> {
    ev(with(
        base("discipline", id, date),
        json!({ "referral_id": referral_id, "behavior": "B-01", "action": action }),
    ))
}

pub fn grade(
    id: &str,
    date: &str,
    section: &str,
    subject: &str,
    period: &str,
    letter: &str,
) -> Event<'static> {
    ev(with(
        base("grade", id, date),
        json!({ "section_id": section, "course_code": "C-1", "subject": subject,
                "grading_period": period, "letter_grade": letter }),
    ))
}

/// `n` school days from `start` (weekends skipped), as `YYYY-MM-DD`.
pub fn school_days(start: &str, n: usize) -> Vec<String> {
    let mut d = ontrack::core::decode::parse_date(start).expect("valid start date");
    let mut out = Vec::new();
    while out.len() < n {
        if !matches!(d.weekday(), time::Weekday::Saturday | time::Weekday::Sunday) {
            out.push(d.to_string());
        }
        d = d.next_day().expect("in range");
    }
    out
}

/// Applies events in order, returning every flag change.
pub fn fold(state: &mut StudentState, events: &[Event], rules: &Rules) -> Vec<FlagChange> {
    let mut all = Vec::new();
    for e in events {
        if let Outcome::Applied(changes) = state.apply(e, rules) {
            all.extend(changes);
        }
    }
    all
}

/// `"raised attendance 2025-2026/stu-0001/attendance/1"`, for readable assertions.
pub fn describe(changes: &[FlagChange]) -> Vec<String> {
    changes
        .iter()
        .map(|c| {
            let verb = match c.change {
                ontrack::core::Change::Raised => "raised",
                ontrack::core::Change::Cleared => "cleared",
            };
            format!("{verb} {}", c.flag_id())
        })
        .collect()
}

/// What the figures alone decide: `Some(raised)` outside a hysteresis band, `None` inside.
pub fn decided(flag: Flag, s: &StudentState, rules: &Rules) -> Option<bool> {
    decided_by(flag, &s.figures().map(|(_, f)| f).unwrap_or_default(), rules)
}

/// [`decided`] over given figures (e.g. counted at the end of a district's days).
pub fn decided_by(flag: Flag, f: &ontrack::core::Figures, rules: &Rules) -> Option<bool> {
    let a = &rules.attendance;
    match flag {
        Flag::Attendance => {
            if f.days_enrolled >= a.min_days_enrolled && f.absence_rate() >= a.raise_at_rate {
                Some(true)
            } else if f.days_enrolled < a.min_days_enrolled || f.absence_rate() < a.clear_below_rate
            {
                Some(false)
            } else {
                None
            }
        }
        Flag::ConsecutiveAbsences => match f.streak {
            0 => Some(false),
            n if n >= rules.consecutive_absences.raise_at_streak => Some(true),
            _ => None,
        },
        Flag::Behavior => Some(
            f.suspensions >= rules.behavior.raise_at_suspensions
                || f.referrals >= rules.behavior.raise_at_referrals,
        ),
        Flag::CoursePerformance => Some(
            f.core_f >= rules.course_performance.raise_at_core_f
                || f.core_d_or_f >= rules.course_performance.raise_at_core_d_or_f,
        ),
        Flag::OffTrack => {
            let inputs: Option<Vec<bool>> =
                Flag::INDICATORS.iter().map(|i| decided_by(*i, f, rules)).collect();
            let needed = rules.off_track.raise_at_indicators as usize;
            inputs.map(|v| v.into_iter().filter(|x| *x).count() >= needed)
        }
    }
}

/// A flag event without `emitted_at`, the one field allowed to differ between runs.
pub fn without_emitted_at(mut v: Value) -> Value {
    v.as_object_mut().expect("a flag event is an object").remove("emitted_at");
    v
}

/// What `ontrack replay` publishes for these JSON lines, in order, without `emitted_at`.
pub fn replayed<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<Value> {
    let input: Vec<u8> = lines.into_iter().flat_map(|l| [l.as_bytes(), b"\n"].concat()).collect();
    let mut out = Vec::new();
    ontrack::replay::replay(
        &input[..],
        &mut out,
        std::io::sink(),
        &Rules::default(),
        time::OffsetDateTime::now_utc,
        |_, _| {},
    )
    .expect("replay into memory");
    out.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| without_emitted_at(serde_json::from_slice(l).expect("flag events are JSON")))
        .collect()
}

/// `events` with some of them sent again: each `(which, at)` repeats one event somewhere after
/// its first copy.
pub fn with_repeats(
    events: &[Event<'static>],
    repeats: &[(proptest::sample::Index, proptest::sample::Index)],
) -> Vec<Event<'static>> {
    let mut out = events.to_vec();
    for (which, at) in repeats {
        let i = which.index(events.len());
        let original = out.iter().position(|e| e.event_id == events[i].event_id).expect("in");
        let at = original + 1 + at.index(out.len() - original);
        out.insert(at, events[i].clone());
    }
    out
}

/// The final record of each natural key among contract events (the greatest `recorded_at`, then
/// `event_id`), without the id and the time. A winning retraction is the record's absence: only
/// that it is one is kept. An assignment ended (`advocate_id` null) is no assignment.
pub fn final_records(events: impl IntoIterator<Item = Value>) -> BTreeMap<String, Value> {
    let mut best: BTreeMap<String, (i64, String, Value)> = BTreeMap::new();
    for mut v in events {
        let f = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
        let natural = match f("type").as_str() {
            "attendance" => format!("a/{}/{}", f("student_id"), f("date")),
            "discipline" => format!("d/{}/{}", f("student_id"), f("referral_id")),
            "grade" => format!("g/{}/{}/{}", f("student_id"), f("section_id"), f("grading_period")),
            "enrollment" => format!("e/{}/{}/{}", f("student_id"), f("school_id"), f("date")),
            "assignment" => format!("s/{}", f("student_id")),
            _ => format!("c/{}/{}", f("school_id"), f("date")),
        };
        let time = f("recorded_at").parse::<jiff::Timestamp>().expect("an RFC 3339 time");
        let id = f("event_id");
        let obj = v.as_object_mut().expect("an event is an object");
        obj.remove("event_id");
        obj.remove("recorded_at");
        if obj.get("retracted") == Some(&json!(true))
            || obj.get("status") == Some(&json!("retracted"))
        {
            v = json!({"retracted": true});
        }
        let time = time.as_microsecond();
        if best.get(&natural).is_none_or(|(t, i, _)| (*t, i) < (time, &id)) {
            best.insert(natural, (time, id, v));
        }
    }
    best.into_iter()
        .filter(|(_, (_, _, v))| !(v["type"] == "assignment" && v["advocate_id"].is_null()))
        .map(|(k, (_, _, v))| (k, v))
        .collect()
}

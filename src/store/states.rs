//! Student states, stored in parts so that a batch writes what it changed, not the history.
//!
//! The core says what changed in a state ([`crate::core::Changes`]); this module decides how
//! that is laid out. Parts, under `s` + student_id length (u32, BE) + student_id:
//! - `c` the *current part*: the head (school year, figures, flags) and the attendance records of
//!   the latest month with any. Nearly every event changes both, so most batches write one value
//!   per student;
//! - `m` + month (u32, BE, [`month_of`]) an earlier month's attendance records;
//! - `a` assignment, `r` referrals, `g` grades, `o` the ids of applied events no record carries.
//!
//! Attendance is stored compactly (day, status, `recorded_at` relative to the day, event id).
//! Keyed by the student alone, so a student's events fold into one state even when a producer did
//! not key them consistently. Beside them, [`STUDENTS_BY_PARTITION`] indexes the students whose
//! events came through each partition, so a partition's students can be found (and moved)
//! together.

use time::Date;

use super::table::{Nothing, PartitionText, Table};
use super::{Batch, Store, StoreError, corrupt, decode, encode};
use crate::core::event::RecordedAt;
use crate::core::{AttendanceRecord, AttendanceStatus, Head, StudentState, Version};

/// `s` + …: the parts of students' states (see the module's doc; the keys are built by
/// [`state_prefix`] and [`part_key`]).
pub const STATES: u8 = b's';

/// `p` + partition (i32, BE) + student_id → nothing: the students whose events came through a
/// partition.
pub const STUDENTS_BY_PARTITION: Table<PartitionText, Nothing> =
    Table::new(b'p', "students by partition");

/// A student's state as the store has it: the state, and which month's attendance records the
/// store keeps with its head (so that the month can be written on its own once a later month
/// takes its place).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stored {
    pub state: StudentState,
    head_month: Option<u32>,
}

impl Stored {
    /// A state the store has not seen yet.
    pub fn new(state: StudentState) -> Stored {
        Stored { state, head_month: None }
    }
}

/// A calendar month, as a number that sorts like the months (`year * 12 + month - 1`, shifted so
/// that it is never negative): the key of a stored chunk of attendance records.
pub fn month_of(date: Date) -> u32 {
    let months = (date.year() + 10_000) * 12 + i32::from(u8::from(date.month())) - 1;
    months.unsigned_abs()
}

/// The latest month with an attendance record (records are never removed, so it only moves
/// forward).
fn current_month(state: &StudentState) -> Option<u32> {
    state.records().0.last().map(|r| month_of(r.date))
}

/// The attendance records dated in `month`, by date.
fn attendance_of_month(state: &StudentState, month: u32) -> &[AttendanceRecord] {
    let a = state.records().0;
    let lo = a.partition_point(|r| month_of(r.date) < month);
    let hi = lo + a[lo..].partition_point(|r| month_of(r.date) <= month);
    &a[lo..hi]
}

impl Store {
    /// The stored state of a student, if any.
    pub fn student(&self, student_id: &str) -> Result<Option<StudentState>, StoreError> {
        Ok(self.stored_student(student_id)?.map(|s| s.state))
    }

    /// The stored state of a student, with what the store needs to write it back.
    pub fn stored_student(&self, student_id: &str) -> Result<Option<Stored>, StoreError> {
        let prefix = state_prefix(student_id);
        let (mut current, mut assignment, mut others) = (None, None, Vec::new());
        let (mut referrals, mut grades, mut attendance) = (Vec::new(), Vec::new(), Vec::new());
        let mut found = false;
        for item in self.tree.prefix(&prefix) {
            let (key, value) = item.into_inner()?;
            found = true;
            match key.get(prefix.len()) {
                Some(b'c') => current = Some(part::<Current>(&key, &value)?),
                Some(b'a') => assignment = part(&key, &value)?,
                Some(b'r') => referrals = part(&key, &value)?,
                Some(b'g') => grades = part(&key, &value)?,
                Some(b'o') => others = part(&key, &value)?,
                Some(b'm') => {
                    let month: [u8; 4] = key
                        .get(prefix.len() + 1..)
                        .and_then(|m| m.try_into().ok())
                        .ok_or_else(|| corrupt(&key, "bad month key"))?;
                    let compact = part(&key, &value)?;
                    expand_month(&key, u32::from_be_bytes(month), compact, &mut attendance)?;
                }
                _ => return Err(corrupt(&key, "not a part of a student's state")),
            }
        }
        let Some((head, month, compact)) = current else {
            if !found {
                return Ok(None);
            }
            return Err(corrupt(&prefix, "a student's state without its current part"));
        };
        // The current month is the latest: its records come after every earlier month's.
        if let Some(month) = month {
            expand_month(&prefix, month, compact, &mut attendance)?;
        }
        let state =
            StudentState::from_parts(head, assignment, referrals, grades, attendance, others);
        Ok(Some(Stored { state, head_month: month }))
    }

    /// Every student whose events came through `partition`, with their state, in `student_id`
    /// byte order.
    pub fn students_of_partition(
        &self,
        partition: i32,
    ) -> impl Iterator<Item = Result<(String, StudentState), StoreError>> + '_ {
        STUDENTS_BY_PARTITION.iter_partition(self, partition).map(move |item| {
            let ((_, id), ()) = item?;
            let state = self.student(&id)?.ok_or_else(|| {
                corrupt(id.as_bytes(), "indexed in its partition, but no state is stored")
            })?;
            Ok((id, state))
        })
    }
}

/// Adds the parts of `stored` that changed since it was last written to `batch` (and, for a
/// student new to the store, the partition its events came through to the index). Returns how
/// many values it wrote. The state counts as written from now on: if the batch is not
/// committed, the caller must drop the state and read it again.
pub fn write(
    batch: &mut Batch<'_>,
    student_id: &str,
    stored: &mut Stored,
    new_in: Option<i32>,
) -> usize {
    let before = batch.len();
    if let Some(partition) = new_in {
        STUDENTS_BY_PARTITION.put(batch, &(partition, student_id), &());
    }
    let changes = stored.state.take_changes();
    let state = &stored.state;
    let prefix = state_prefix(student_id);
    let (_, referrals, grades, assignment) = state.records();
    let current = current_month(state);
    let mut months: Vec<u32> = changes.attendance.iter().map(|d| month_of(*d)).collect();
    months.sort_unstable();
    months.dedup();
    // The month kept with the head until now, if the current month moved past it.
    let moved = stored.head_month.filter(|m| Some(*m) != current);
    let month_key = |month: u32| {
        let mut key = part_key(&prefix, b'm');
        key.extend_from_slice(&month.to_be_bytes());
        key
    };
    for month in months.iter().copied().chain(moved) {
        if Some(month) != current {
            let records = compact_month(attendance_of_month(state, month));
            batch.insert(month_key(month), encode(&records));
        }
    }
    if changes.head || moved.is_some() || current.is_some_and(|m| months.contains(&m)) {
        let records = current.map_or(Vec::new(), |m| compact_month(attendance_of_month(state, m)));
        batch.insert(part_key(&prefix, b'c'), encode(&(state.head(), current, records)));
    }
    if changes.assignment {
        batch.insert(part_key(&prefix, b'a'), encode(&assignment));
    }
    if changes.referrals {
        batch.insert(part_key(&prefix, b'r'), encode(&referrals));
    }
    if changes.grades {
        batch.insert(part_key(&prefix, b'g'), encode(&grades));
    }
    if changes.others {
        batch.insert(part_key(&prefix, b'o'), encode(state.other_ids()));
    }
    stored.head_month = current;
    batch.len() - before
}

fn part<T: for<'de> serde::Deserialize<'de>>(key: &[u8], value: &[u8]) -> Result<T, StoreError> {
    decode(value).map_err(|e| corrupt(key, &e))
}

/// `s` + the id's length + the id: no student's prefix is the start of another's keys.
fn state_prefix(student_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(5 + student_id.len() + 5);
    key.push(STATES);
    // Ids longer than 4 GiB cannot arrive in a Kafka message.
    key.extend_from_slice(&u32::try_from(student_id.len()).unwrap_or(u32::MAX).to_be_bytes());
    key.extend_from_slice(student_id.as_bytes());
    key
}

fn part_key(prefix: &[u8], part: u8) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + 5);
    key.extend_from_slice(prefix);
    key.push(part);
    key
}

/// The current part as read back: head, the current month, its records.
type Current = (Head, Option<u32>, Vec<(u8, u8, i64, u32, compact_str::CompactString)>);

/// One month's attendance records: `(day of month, status, seconds of recorded_at after the
/// day's midnight UTC, its nanoseconds, event_id)` each; a year of them is a few KB.
type CompactAttendance<'a> = (u8, u8, i64, u32, &'a str);

fn compact_month(records: &[AttendanceRecord]) -> Vec<CompactAttendance<'_>> {
    records
        .iter()
        .map(|r| {
            let status = AttendanceStatus::ALL.iter().position(|s| *s == r.status).unwrap_or(0);
            let midnight = r.date.midnight().assume_utc().unix_timestamp();
            let v = &r.version;
            (
                r.date.day(),
                status as u8,
                v.recorded_at.secs - midnight,
                v.recorded_at.nanos,
                &*v.event_id,
            )
        })
        .collect()
}

/// Appends `month`'s records, read back from their compact form at `key`, to `out`.
fn expand_month(
    key: &[u8],
    month: u32,
    compact: Vec<(u8, u8, i64, u32, compact_str::CompactString)>,
    out: &mut Vec<AttendanceRecord>,
) -> Result<(), StoreError> {
    let year = i32::try_from(month / 12).map_err(|_| corrupt(key, "bad month"))? - 10_000;
    let month_of_year = time::Month::try_from(u8::try_from(month % 12 + 1).unwrap_or(1))
        .map_err(|_| corrupt(key, "bad month"))?;
    out.reserve(compact.len());
    for (day, status, secs, nanos, event_id) in compact {
        let date = Date::from_calendar_date(year, month_of_year, day)
            .map_err(|e| corrupt(key, &e.to_string()))?;
        let status = *AttendanceStatus::ALL
            .get(usize::from(status))
            .ok_or_else(|| corrupt(key, "unknown attendance status"))?;
        let midnight = date.midnight().assume_utc().unix_timestamp();
        let recorded_at = RecordedAt { secs: midnight + secs, nanos };
        out.push(AttendanceRecord { date, status, version: Version { recorded_at, event_id } });
    }
    debug_assert!(out.last().is_none_or(|r| month_of(r.date) == month));
    Ok(())
}

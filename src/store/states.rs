//! Student states, stored in parts so that a batch writes what it changed, not the history,
//! and a state is read back *hot* — what nearly every event needs, in two or three point reads,
//! whatever the length of the history.
//!
//! The core says what changed in a state ([`crate::core::Changes`]); this module decides how
//! that is laid out. Parts, under `s` + student_id length (u32, BE) + student_id:
//! - `c` the *current part*: the head (school year, figures, flags) and the attendance records of
//!   the latest month with any. Nearly every event changes both, so most batches write one value
//!   per student;
//! - `k` the *cold part*: assignment, referrals, grades, enrollments, the ids of applied events
//!   no record carries, and the fingerprints of the ids of the attendance records before the
//!   month preceding the current one (written when one of them changes, or that month moves);
//! - `m` + month (u32, BE, [`month_of`]) an earlier month's attendance records.
//!
//! [`Store::stored_student`] reads `c`, `k` and the month before the current one: a hot state
//! ([`StudentState::hot`]), made whole ([`Store::complete`]) only for an event that needs older
//! records (a correction of an old date, a possible repeat of an old record). An enrolled
//! student is read whole (its figures count expected days over the school year).
//!
//! A state kept in memory between batches may hold its referrals and grades *set aside*
//! ([`set_aside`]): as the cold part stores them, put back ([`take_back`]) only for an event
//! that reads them, and spliced into the cold part unchanged when it is written.
//!
//! Attendance is stored compactly (day, status, `recorded_at` relative to the day, event id as
//! the bytes it shares with the record before it in the month and the rest: format 4).
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
    /// The referrals and grades the state set aside ([`set_aside`]), as the cold part has them
    /// (postcard of both lists): `Some` exactly when the state's are.
    aside: Option<Box<[u8]>>,
    repack: Repack,
}

/// What [`repack`] reuses: the packed form a state was unpacked from, and the current part its
/// batch wrote, while nothing else of the state has changed. Not part of the state: two
/// `Stored` are equal whatever they hold here.
#[derive(Debug, Clone, Default)]
struct Repack {
    from: Option<Packed>,
    current: Option<fjall::Slice>,
}

impl PartialEq for Repack {
    fn eq(&self, _: &Repack) -> bool {
        true
    }
}

impl Stored {
    /// A state the store has not seen yet.
    pub fn new(state: StudentState) -> Stored {
        Stored { state, head_month: None, aside: None, repack: Repack::default() }
    }

    /// Forgets the packed form it was unpacked from (a state kept decoded does not hold it).
    pub fn forget_packed(&mut self) {
        self.repack = Repack::default();
    }

    /// The memory its referrals and grades set aside hold.
    pub fn aside_bytes(&self) -> usize {
        self.aside.as_ref().map_or(0, |a| a.len())
    }
}

/// Sets a state's referrals and grades aside ([`StudentState::set_aside`]) in the form the cold
/// part stores them: a cached state neither decodes nor encodes them again until an event needs
/// them ([`take_back`]), and writes its cold part with these bytes as they are. A state of a
/// district's school day holds a few dozen grades and referrals with boxed strings; this form is
/// a few hundred bytes.
pub fn set_aside(stored: &mut Stored) {
    if let Some(records) = stored.state.set_aside() {
        let bytes = postcard_of(&records);
        stored.aside = Some(bytes.into_boxed_slice());
        stored.forget_packed();
    }
}

/// Puts back the referrals and grades [`set_aside`] set aside.
pub fn take_back(student_id: &str, stored: &mut Stored) -> Result<(), StoreError> {
    if let Some(bytes) = &stored.aside {
        // Decoded before the bytes go: a state that could not put them back keeps them.
        let (referrals, grades) = postcard::from_bytes(bytes).map_err(|e| {
            corrupt(&state_prefix(student_id), &format!("its records set aside in memory: {e}"))
        })?;
        stored.aside = None;
        stored.forget_packed();
        stored.state.with_records(referrals, grades);
    }
    Ok(())
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

/// The first day of `month` and of the month after it.
fn month_bounds(month: u32) -> Option<(Date, Date)> {
    let year = i32::try_from(month / 12).ok()? - 10_000;
    let index = u8::try_from(month % 12).ok()?;
    let first = |year, index: u8| {
        Date::from_calendar_date(year, time::Month::try_from(index + 1).ok()?, 1).ok()
    };
    let next = if index == 11 { first(year + 1, 0) } else { first(year, index + 1) };
    Some((first(year, index)?, next?))
}

/// The attendance records dated in `month`, by date. Searched from the end: nearly always the
/// month is the latest, whose records the fold has just touched (a binary search over the whole
/// history, a cache miss per probe, took 6–7% of the fold harness's time).
fn attendance_of_month(state: &StudentState, month: u32) -> &[AttendanceRecord] {
    let a = state.records().0;
    let Some((start, next)) = month_bounds(month) else { return &[] };
    let hi = a.len() - a.iter().rev().take_while(|r| r.date >= next).count();
    let lo = hi - a[..hi].iter().rev().take_while(|r| r.date >= start).count();
    &a[lo..hi]
}

impl Store {
    /// The stored state of a student, if any, whole.
    pub fn student(&self, student_id: &str) -> Result<Option<StudentState>, StoreError> {
        Ok(self.read_student(student_id, true)?.map(|s| s.state))
    }

    /// The stored state of a student, with what the store needs to write it back: *hot* (see
    /// the module's doc), or whole for an enrolled student.
    pub fn stored_student(&self, student_id: &str) -> Result<Option<Stored>, StoreError> {
        self.read_student(student_id, false)
    }

    /// The attendance records of `student_id` dated before `before` (the first day of a month:
    /// a hot state's [`StudentState::held_from`]), sorted by date.
    pub fn attendance_before(
        &self,
        student_id: &str,
        before: Date,
    ) -> Result<Vec<AttendanceRecord>, StoreError> {
        let mut attendance = Vec::new();
        self.months(&state_prefix(student_id), 0..month_of(before), &mut attendance)?;
        debug_assert!(attendance.last().is_none_or(|r| r.date < before));
        Ok(attendance)
    }

    /// Appends the stored earlier months' records of `months` (under `prefix`) to `out`.
    fn months(
        &self,
        prefix: &[u8],
        months: std::ops::Range<u32>,
        out: &mut Vec<AttendanceRecord>,
    ) -> Result<(), StoreError> {
        let range = month_key(prefix, months.start)..month_key(prefix, months.end);
        for item in self.tree.range(range) {
            let (key, value) = item.into_inner()?;
            expand_month(&key, month_in(&key, prefix)?, &value, 0, out)?;
        }
        Ok(())
    }

    /// Makes `stored` whole if `event` needs the records it does not hold
    /// ([`StudentState::needs_history`]).
    pub fn complete_for(
        &self,
        student_id: &str,
        stored: &mut Stored,
        event: &crate::core::Event<'_>,
        rules: &crate::core::Rules,
    ) -> Result<(), StoreError> {
        if stored.state.needs_history(event, rules) {
            self.complete(student_id, stored)?;
        } else if stored.state.needs_records(event, rules) {
            take_back(student_id, stored)?;
        }
        Ok(())
    }

    /// Makes `stored` whole: the attendance records it does not hold are read back, the
    /// referrals and grades set aside put back.
    pub fn complete(&self, student_id: &str, stored: &mut Stored) -> Result<(), StoreError> {
        take_back(student_id, stored)?;
        if let Some(before) = stored.state.held_from() {
            let older = self.attendance_before(student_id, before)?;
            stored.forget_packed();
            stored.state.with_history(older);
        }
        Ok(())
    }

    fn read_student(&self, student_id: &str, whole: bool) -> Result<Option<Stored>, StoreError> {
        let prefix = state_prefix(student_id);
        let Some(current) = self.tree.get(part_key(&prefix, b'c'))? else { return Ok(None) };
        let cold = match self.tree.get(part_key(&prefix, b'k'))? {
            Some(v) => part(&prefix, &v)?,
            None => Cold::default(),
        };
        let stored = assemble(&prefix, &current, cold, whole, |from, extra, out| match from {
            // The month before the current one, the other one held.
            Some(from) => {
                let key = month_key(&prefix, month_of(from));
                match self.tree.get(&key)? {
                    Some(v) => expand_month(&key, month_of(from), &v, extra, out),
                    None => Ok(()),
                }
            }
            None => self.months(&prefix, 0..u32::MAX, out),
        })?;
        Ok(Some(stored))
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

/// Adds the parts of `stored` that changed since it was last written to `batch`; a student new to
/// the store (`new_in`: the partition its events came through, for the index) writes every part
/// it has, whatever its state says changed. Returns how many values it wrote. The state counts as written from now on: if the batch is not
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
    let mut changes = stored.state.take_changes();
    let state = &stored.state;
    if new_in.is_some() {
        let (attendance, referrals, grades, assignment) = state.records();
        changes.head = true;
        changes.assignment |= assignment.is_some();
        changes.referrals |= !referrals.is_empty();
        changes.grades |= !grades.is_empty();
        changes.enrollments |= !state.enrollments().is_empty();
        changes.others |= !state.other_ids().is_empty();
        changes.attendance = attendance.iter().map(|r| r.date).collect();
    }
    let prefix = state_prefix(student_id);
    let current = current_month(state);
    let mut months: Vec<u32> = changes.attendance.iter().map(|d| month_of(*d)).collect();
    months.sort_unstable();
    months.dedup();
    // The month kept with the head until now, if the current month moved past it.
    let moved = stored.head_month.filter(|m| Some(*m) != current);
    for month in months.iter().copied().chain(moved) {
        if Some(month) != current {
            let records = compact_month(attendance_of_month(state, month));
            batch.insert(month_key(&prefix, month), encode(&records));
        }
    }
    // Only the current part written: the packed form the state came from stays true but for it.
    let reshaped = new_in.is_some() || months.iter().chain(&moved).any(|m| Some(*m) != current);
    if changes.head || moved.is_some() || current.is_some_and(|m| months.contains(&m)) {
        let value = current_part(state, current);
        // The latest written: a later write that writes no current part leaves it as it is.
        stored.repack.current = Some(value.clone());
        batch.insert(part_key(&prefix, b'c'), value);
    }
    // The cold part, with the fingerprints of the records before the window a hot state holds
    // (they change when the window moves, or when a whole state changed a record before it).
    let window = current.and_then(window_start);
    let older_changed = window.is_some_and(|w| {
        new_in.is_some()
            || moved.is_some()
            || (state.is_whole() && months.first().is_some_and(|m| *m < month_of(w)))
    });
    if changes.assignment
        || changes.referrals
        || changes.enrollments
        || changes.grades
        || changes.others
        || older_changed
    {
        debug_assert!(stored.aside.is_none() || !(changes.referrals || changes.grades));
        batch.insert(part_key(&prefix, b'k'), cold_part(stored, window));
        stored.forget_packed();
    } else if reshaped {
        stored.forget_packed();
    }
    stored.head_month = current;
    if let Some(window) = window {
        stored.state.hot(window, Vec::new());
    }
    batch.len() - before
}

/// A state from its current part, its cold part (if any) and `earlier`, which appends the
/// records of the months before the current one that the state holds, sorted: from the first
/// day it is given (the month before the current one, for a hot state), or all (`None`).
fn assemble(
    prefix: &[u8],
    current: &[u8],
    cold: Cold,
    whole: bool,
    earlier: impl FnOnce(Option<Date>, usize, &mut Vec<AttendanceRecord>) -> Result<(), StoreError>,
) -> Result<Stored, StoreError> {
    let (head, month, compact) = read_current(prefix, current)?;
    let (assignment, referrals, grades, enrollments, others, fingerprints) = cold;
    let hot_from = match (whole || enrollments.iter().any(|e| !e.retracted), month) {
        (false, Some(month)) => window_start(month),
        _ => None,
    };
    let mut attendance = Vec::new();
    // The earlier months' records come first: room for the current month's with them.
    earlier(hot_from, compact.len(), &mut attendance)?;
    // The current month is the latest: its records come after every earlier month's.
    if let Some(month) = month {
        expand_records(prefix, month, compact, 0, &mut attendance)?;
    }
    let mut state = StudentState::from_parts(
        head,
        assignment,
        referrals,
        grades,
        attendance,
        enrollments,
        others,
    );
    if let Some(before) = hot_from {
        state.hot(before, fingerprints);
    }
    Ok(Stored { state, head_month: month, aside: None, repack: Repack::default() })
}

/// The current part of `state` as stored: head, current month, its records.
fn current_part(state: &StudentState, current: Option<u32>) -> fjall::Slice {
    let records = current.map_or(Vec::new(), |m| compact_month(attendance_of_month(state, m)));
    encode(&(state.head(), current, records))
}

/// The cold part of a state as stored, with the fingerprints of the records before `window`.
fn cold_part(stored: &Stored, window: Option<Date>) -> fjall::Slice {
    let (assignment, records, rest) = cold_pieces(stored, window);
    let mut value = Vec::with_capacity(1 + assignment.len() + records.len() + rest.len());
    value.push(super::FORMAT);
    // postcard writes a tuple as its fields one after the other: these are the pieces of
    // `(assignment, referrals, grades, enrollments, others, fingerprints)`.
    for piece in [&assignment[..], &records[..], &rest[..]] {
        value.extend_from_slice(piece);
    }
    fjall::Slice::from(value)
}

/// The cold part in three pieces, each postcard of: the assignment; the referrals and grades
/// (as set aside, or encoded now); the enrollments, other ids and fingerprints.
fn cold_pieces(
    stored: &Stored,
    window: Option<Date>,
) -> (Vec<u8>, std::borrow::Cow<'_, [u8]>, Vec<u8>) {
    let state = &stored.state;
    let (_, referrals, grades, assignment) = state.records();
    let fingerprints = window.map_or(Vec::new(), |w| state.fingerprints_before(w));
    let records = match &stored.aside {
        Some(bytes) => std::borrow::Cow::Borrowed(&bytes[..]),
        None => std::borrow::Cow::Owned(postcard_of(&(referrals, grades))),
    };
    let rest = postcard_of(&(state.enrollments(), state.other_ids(), fingerprints));
    (postcard_of(&assignment), records, rest)
}

/// A value's postcard bytes (without the store's format byte).
fn postcard_of<T: serde::Serialize + ?Sized>(value: &T) -> Vec<u8> {
    // postcard writes any serde value of ours; it fails only on unsupported types.
    postcard::to_allocvec(value).expect("stored types serialize with postcard")
}

/// A state as the store would give it back, packed into one allocation: its current part, its
/// cold part (in its pieces: the referrals and grades as set aside) and the earlier months it
/// holds, each as stored (a hot state's was ≈ 2.3 KB by day 60 in format 3, less in format 4,
/// against ≈ 3.3 KB decoded). Read back
/// by [`unpack`] without the store, its referrals and grades still set aside: a state cache can
/// keep a district this way when its decoded states do not fit.
#[derive(Debug, Clone)]
pub struct Packed(Box<[u8]>);

impl Packed {
    /// The memory it holds.
    pub fn bytes(&self) -> usize {
        self.0.len()
    }
}

/// Packs `stored` as [`Store::stored_student`] would read it back (written and committed: the
/// store holds the same), its referrals and grades as they are (set aside or not: [`unpack`]
/// gives them the same way, and [`take_back`] makes it equal to the store's read). `None` for a
/// state the store would read otherwise: an enrolled student's that is not whole.
pub fn pack(stored: &Stored) -> Option<Packed> {
    let state = &stored.state;
    let enrolled = state.has_enrollment();
    if enrolled && !state.is_whole() {
        return None;
    }
    let head_month = current_month(state);
    let window = head_month.and_then(window_start);
    let (assignment, records, rest) = cold_pieces(stored, window);
    // 0: the referrals and grades are held; 1 and their ids' hashes: set aside.
    let mut aside = Vec::new();
    if let Some(ids) = state.aside_ids() {
        aside.push(1);
        ids.iter().for_each(|id| aside.extend_from_slice(&id.to_le_bytes()));
    } else {
        aside.push(0);
    }
    let current = current_part(state, head_month);
    let mut parts: Vec<&[u8]> = vec![&current, &assignment, &records, &rest, &aside];
    // The earlier months held: every one for an enrolled (whole) state, else the window's.
    let (attendance, ..) = state.records();
    let mut months: Vec<u32> = match (enrolled, window) {
        (true, _) => attendance.iter().map(|r| month_of(r.date)).collect(),
        (false, Some(w)) => vec![month_of(w)],
        (false, None) => Vec::new(),
    };
    months.dedup();
    let mut encoded = Vec::new();
    for month in months.into_iter().filter(|m| Some(*m) != head_month) {
        let records = attendance_of_month(state, month);
        if !records.is_empty() {
            encoded.push((month.to_le_bytes(), encode(&compact_month(records))));
        }
    }
    for (month, value) in &encoded {
        parts.push(month);
        parts.push(value);
    }
    // One allocation of the exact size (a grown Vec shrunk in place kept its larger block).
    let mut out = Vec::with_capacity(parts.iter().map(|p| 4 + p.len()).sum());
    for part in &parts {
        out.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(part);
    }
    Some(Packed(out.into_boxed_slice()))
}

/// [`pack`] of a state written and committed, reusing what it can: a state unpacked from a
/// packed form whose batch changed nothing but its current part is that form with the current
/// part written (a school day's attendance record, nearly always), not encoded again.
pub fn repack(stored: &mut Stored) -> Option<Packed> {
    let Repack { from, current } = std::mem::take(&mut stored.repack);
    let packed = match (from, current) {
        (Some(from), None) => Some(from),
        (Some(from), Some(current)) => {
            let old = take_part(&mut &from.0[..]).map_or(0, |c| 4 + c.len());
            let mut out = Vec::with_capacity(4 + current.len() + from.0.len() - old);
            out.extend_from_slice(&u32::try_from(current.len()).unwrap_or(u32::MAX).to_le_bytes());
            out.extend_from_slice(&current);
            out.extend_from_slice(&from.0[old..]);
            Some(Packed(out.into_boxed_slice()))
        }
        (None, _) => return pack(stored),
    };
    debug_assert_eq!(
        packed.as_ref().map(|p| &p.0),
        pack(stored).as_ref().map(|p| &p.0),
        "a state repacked from what it was unpacked from"
    );
    packed
}

/// The state [`pack`] packed; it keeps the packed form for [`repack`].
pub fn unpack_kept(student_id: &str, packed: Packed) -> Result<Stored, StoreError> {
    let mut stored = unpack(student_id, &packed)?;
    stored.repack.from = Some(packed);
    Ok(stored)
}

/// The state [`pack`] packed.
pub fn unpack(student_id: &str, packed: &Packed) -> Result<Stored, StoreError> {
    let prefix = state_prefix(student_id);
    // A value that cannot be read here was packed in memory, not read from the disk: say so.
    let bad =
        |reason: &str| corrupt(&prefix, &format!("its packed copy in the state cache: {reason}"));
    let mut rest: &[u8] = &packed.0;
    let mut next = || take_part(&mut rest).ok_or_else(|| bad("cut short"));
    let (current, assignment, records, tail, aside) = (next()?, next()?, next()?, next()?, next()?);
    let mut months = Vec::new();
    while !rest.is_empty() {
        let month =
            take_part(&mut rest).and_then(|m| m.try_into().ok()).ok_or_else(|| bad("cut short"))?;
        months.push((
            u32::from_le_bytes(month),
            take_part(&mut rest).ok_or_else(|| bad("cut short"))?,
        ));
    }
    let read = |e: postcard::Error| bad(&e.to_string());
    let assignment = postcard::from_bytes(assignment).map_err(read)?;
    let (enrollments, others, fingerprints) = postcard::from_bytes(tail).map_err(read)?;
    let ids = match aside.split_first() {
        Some((0, _)) => None,
        Some((1, ids)) => Some(
            ids.chunks_exact(8)
                .map(|id| u64::from_le_bytes(id.try_into().unwrap_or_default()))
                .collect::<Vec<u64>>(),
        ),
        _ => return Err(bad("no mark of its records set aside")),
    };
    let (referrals, grades) = match ids {
        None => postcard::from_bytes(records).map_err(read)?,
        Some(_) => (Vec::new(), Vec::new()),
    };
    let cold = (assignment, referrals, grades, enrollments, others, fingerprints);
    let mut stored = assemble(&prefix, current, cold, false, |from, extra, out| {
        for (month, value) in months {
            if from.is_none_or(|from| month == month_of(from)) {
                let key = month_key(&prefix, month);
                expand_month(&key, month, value, extra, out)?;
            }
        }
        Ok(())
    })
    .map_err(|e| match e {
        StoreError::Corrupt { key, reason } => StoreError::Corrupt {
            key,
            reason: format!("its packed copy in the state cache: {reason}"),
        },
        other => other,
    })?;
    if let Some(ids) = ids {
        stored.state.records_aside(ids);
        stored.aside = Some(records.into());
    }
    Ok(stored)
}

/// The next length-prefixed value of a packed state.
fn take_part<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let (len, tail) = rest.split_first_chunk::<4>()?;
    let (value, tail) = tail.split_at_checked(u32::from_le_bytes(*len) as usize)?;
    *rest = tail;
    Some(value)
}

/// The key of an earlier month's attendance records.
fn month_key(prefix: &[u8], month: u32) -> Vec<u8> {
    let mut key = part_key(prefix, b'm');
    key.extend_from_slice(&month.to_be_bytes());
    key
}

/// The month of a month's key.
fn month_in(key: &[u8], prefix: &[u8]) -> Result<u32, StoreError> {
    let month: [u8; 4] = key
        .get(prefix.len() + 1..)
        .and_then(|m| m.try_into().ok())
        .ok_or_else(|| corrupt(key, "bad month key"))?;
    Ok(u32::from_be_bytes(month))
}

/// The first day a hot state holds when the latest month with attendance is `head_month`: the
/// first day of the month before it (the alert planner looks a day back, the streak a few).
fn window_start(head_month: u32) -> Option<Date> {
    month_bounds(head_month.checked_sub(1)?).map(|(first, _)| first)
}

fn part<T: for<'de> serde::Deserialize<'de>>(key: &[u8], value: &[u8]) -> Result<T, StoreError> {
    decode(value).map_err(|e| corrupt(key, &e))
}

/// [`part`] for a value that borrows from the bytes.
fn borrowed_part<'a, T: serde::Deserialize<'a>>(
    key: &[u8],
    value: &'a [u8],
) -> Result<T, StoreError> {
    super::decode_borrowed(value).map_err(|e| corrupt(key, &e))
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

/// The cold part as read back: assignment, referrals, grades, enrollments, the ids of applied
/// events no record carries, the fingerprints of the ids of the attendance records a hot state
/// does not hold.
type Cold = (
    Option<crate::core::AssignmentRecord>,
    Vec<crate::core::ReferralRecord>,
    Vec<crate::core::GradeRecord>,
    Vec<crate::core::EnrollmentRecord>,
    Vec<u64>,
    Vec<u32>,
);

/// The current part as read back: head, the current month, its records.
type Current<'a> = (Head, Option<u32>, MonthRecords<'a>);

/// One month's attendance records as stored: `(day of month, status, seconds of recorded_at
/// after the day's midnight UTC, its nanoseconds, how many bytes its event_id shares with the
/// record before it in the month, the rest of its event_id)` each. A student's event ids mostly
/// differ in their last few characters (`att-stu-0000042-17`), so a record takes ≈ 9 bytes, not
/// the ≈ 25 of format 3, which stored every id whole; a month is written with its student's
/// current part by nearly every event.
type CompactAttendance<'a> = (u8, u8, i64, u32, u8, &'a str);

/// A month's records as read back, in the format they were written in.
enum MonthRecords<'a> {
    /// Format 3: each event id whole.
    Whole(Vec<(u8, u8, i64, u32, compact_str::CompactString)>),
    /// Format 4: [`CompactAttendance`].
    Shared(Vec<CompactAttendance<'a>>),
}

impl MonthRecords<'_> {
    fn len(&self) -> usize {
        match self {
            MonthRecords::Whole(records) => records.len(),
            MonthRecords::Shared(records) => records.len(),
        }
    }
}

fn compact_month(records: &[AttendanceRecord]) -> Vec<CompactAttendance<'_>> {
    let mut before = "";
    records
        .iter()
        .map(|r| {
            let status = AttendanceStatus::ALL.iter().position(|s| *s == r.status).unwrap_or(0);
            let midnight = midnight_of(r.date);
            let v = &r.version;
            let id: &str = &v.event_id;
            let mut shared = id
                .bytes()
                .zip(before.bytes())
                .take(usize::from(u8::MAX))
                .take_while(|(a, b)| a == b)
                .count();
            while !id.is_char_boundary(shared) {
                shared -= 1;
            }
            before = id;
            (
                r.date.day(),
                status as u8,
                v.recorded_at.secs - midnight,
                v.recorded_at.nanos,
                shared as u8,
                &id[shared..],
            )
        })
        .collect()
}

/// The Unix time of `date`'s midnight, UTC.
fn midnight_of(date: Date) -> i64 {
    /// The Julian day of 1970-01-01.
    const UNIX_EPOCH_JULIAN_DAY: i64 = 2_440_588;
    (i64::from(date.to_julian_day()) - UNIX_EPOCH_JULIAN_DAY) * 86_400
}

/// The store format whose months hold each event id whole ([`MonthRecords::Whole`]); values
/// written since start with a later one.
const WHOLE_IDS_FORMAT: u8 = 3;

/// Whether `value` (a current part or a month) was written with whole event ids.
fn has_whole_ids(value: &[u8]) -> bool {
    value.first() == Some(&WHOLE_IDS_FORMAT)
}

/// A current part, read in the format it was written in (3 or 4: they differ only in how a
/// month's records are written).
fn read_current<'a>(key: &[u8], value: &'a [u8]) -> Result<Current<'a>, StoreError> {
    if has_whole_ids(value) {
        let (head, month, whole) = part(key, value)?;
        return Ok((head, month, MonthRecords::Whole(whole)));
    }
    let (head, month, shared) = borrowed_part(key, value)?;
    Ok((head, month, MonthRecords::Shared(shared)))
}

/// Appends `month`'s records, stored at `key` as `value`, to `out`, with room for `extra` more.
fn expand_month(
    key: &[u8],
    month: u32,
    value: &[u8],
    extra: usize,
    out: &mut Vec<AttendanceRecord>,
) -> Result<(), StoreError> {
    let records = if has_whole_ids(value) {
        MonthRecords::Whole(part(key, value)?)
    } else {
        MonthRecords::Shared(borrowed_part(key, value)?)
    };
    expand_records(key, month, records, extra, out)
}

/// Appends `month`'s records, read back from their compact form at `key`, to `out`, with room
/// for `extra` more.
fn expand_records(
    key: &[u8],
    month: u32,
    records: MonthRecords<'_>,
    extra: usize,
    out: &mut Vec<AttendanceRecord>,
) -> Result<(), StoreError> {
    let year = i32::try_from(month / 12).map_err(|_| corrupt(key, "bad month"))? - 10_000;
    let month_of_year = time::Month::try_from(u8::try_from(month % 12 + 1).unwrap_or(1))
        .map_err(|_| corrupt(key, "bad month"))?;
    let first = Date::from_calendar_date(year, month_of_year, 1)
        .map_err(|e| corrupt(key, &e.to_string()))?;
    let first_midnight = midnight_of(first);
    let record = |day: u8, status: u8, secs: i64, nanos: u32, event_id| -> Result<_, StoreError> {
        let date = first.replace_day(day).map_err(|e| corrupt(key, &e.to_string()))?;
        let status = *AttendanceStatus::ALL
            .get(usize::from(status))
            .ok_or_else(|| corrupt(key, "unknown attendance status"))?;
        let midnight = first_midnight + (i64::from(day) - 1) * 86_400;
        let recorded_at = RecordedAt { secs: midnight + secs, nanos };
        Ok(AttendanceRecord { date, status, version: Version { recorded_at, event_id } })
    };
    match records {
        MonthRecords::Whole(records) => {
            out.reserve(records.len() + extra);
            for (day, status, secs, nanos, event_id) in records {
                out.push(record(day, status, secs, nanos, event_id)?);
            }
        }
        MonthRecords::Shared(records) => {
            out.reserve(records.len() + extra);
            let first = out.len();
            for (day, status, secs, nanos, shared, rest) in records {
                let before = out[first..].last().map_or("", |r| &*r.version.event_id);
                let shared = before
                    .get(..usize::from(shared))
                    .ok_or_else(|| corrupt(key, "an event id shares more than the one before"))?;
                let mut event_id =
                    compact_str::CompactString::with_capacity(shared.len() + rest.len());
                event_id.push_str(shared);
                event_id.push_str(rest);
                out.push(record(day, status, secs, nanos, event_id)?);
            }
        }
    }
    debug_assert!(out.last().is_none_or(|r| month_of(r.date) == month));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Rules, Students, decode as decode_event};
    use crate::store::outbox::tests::record;
    use crate::store::{OFFSETS, OUTBOX, OutboxRecord};
    use crate::synth::{District, DistrictSpec};

    /// Realistic states: 50 students after 35 school days (grades, referrals, corrections).
    fn district() -> Students {
        let rules = Rules::default();
        let mut district =
            District::new(DistrictSpec { students: 50, days: 35, ..DistrictSpec::default() });
        let mut students = Students::default();
        for day in 0..35 {
            for e in district.day(day) {
                if let Ok(event) = decode_event(e.json.as_bytes()) {
                    students.apply(&event, &rules);
                }
            }
        }
        students
    }

    /// Writes every state of `students` (as new to the store, through `partition_of`) in one
    /// commit.
    fn commit_all(store: &Store, students: &Students, partition_of: impl Fn(&str) -> i32) {
        let mut batch = store.batch();
        for (id, state) in students.iter() {
            write(&mut batch, id, &mut Stored::new(state.clone()), Some(partition_of(id)));
        }
        store.commit(batch).unwrap();
    }

    #[test]
    fn a_commit_survives_reopening_whole() {
        let dir = tempfile::tempdir().unwrap();
        let students = district();
        {
            let store = Store::open(dir.path()).unwrap();
            let mut batch = store.batch();
            for (id, state) in students.iter() {
                let partition = Some(id.len() as i32 % 3);
                write(&mut batch, id, &mut Stored::new(state.clone()), partition);
            }
            for i in 0..3 {
                OUTBOX.push(&mut batch, &record("ontrack.flags", &format!("k{i}"))).unwrap();
            }
            for (topic, partition, next) in
                [("sis.attendance", 0, 120), ("sis.attendance", 1, 7), ("sis.grades", 0, 3)]
            {
                OFFSETS.put(&mut batch, &(topic, partition), &next);
            }
            store.commit(batch).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        for (id, state) in students.iter() {
            assert_eq!(store.student(id).unwrap().as_ref(), Some(state), "{id}");
        }
        assert_eq!(store.student("stu-9999999").unwrap(), None);
        assert_eq!(store.next_offset("sis.attendance", 0).unwrap(), Some(120));
        assert_eq!(store.next_offset("sis.attendance", 1).unwrap(), Some(7));
        assert_eq!(store.next_offset("sis.grades", 0).unwrap(), Some(3));
        assert_eq!(store.next_offset("sis.grades", 1).unwrap(), None);
        let pending: Vec<OutboxRecord> = store.pending().map(|r| r.unwrap().1).collect();
        assert_eq!(pending, [0, 1, 2].map(|i| record("ontrack.flags", &format!("k{i}"))));
    }

    #[test]
    fn a_partitions_students_are_found_together() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let students = district();
        commit_all(&store, &students, |id| if id.ends_with('7') { 7 } else { 2 });
        let mut expected: Vec<&str> =
            students.iter().map(|(id, _)| id).filter(|id| id.ends_with('7')).collect();
        expected.sort();
        let found: Vec<String> = store.students_of_partition(7).map(|r| r.unwrap().0).collect();
        assert_eq!(found, expected);
    }

    /// Day by day, each batch writes only the parts it changed (and reads the rest back from
    /// the store): the stored states equal states folded whole in memory.
    #[test]
    fn states_written_part_by_part_equal_states_folded_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let rules = Rules::default();
        let mut district =
            District::new(DistrictSpec { students: 40, days: 70, ..DistrictSpec::default() });
        let mut whole = Students::default();
        let (mut touched_states, mut one_value_states) = (0, 0);
        for day in 0..70 {
            let mut touched: std::collections::BTreeMap<String, Stored> = Default::default();
            for e in district.day(day) {
                let Ok(event) = decode_event(e.json.as_bytes()) else { continue };
                whole.apply(&event, &rules);
                let id = event.student_id.to_string();
                let stored = match touched.entry(id) {
                    std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
                    std::collections::btree_map::Entry::Vacant(v) => {
                        let stored = store.stored_student(v.key()).unwrap().unwrap_or_default();
                        v.insert(stored)
                    }
                };
                store.complete_for(&event.student_id, stored, &event, &rules).unwrap();
                stored.state.apply(&event, &rules);
            }
            let mut batch = store.batch();
            for (id, stored) in &mut touched {
                // A state whose batch wrote one value: the current part only.
                if write(&mut batch, id, stored, None) == 1 {
                    one_value_states += 1;
                }
            }
            touched_states += touched.len();
            store.commit(batch).unwrap();
        }
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        let mut hot = 0;
        for (id, state) in whole.iter() {
            assert_eq!(store.student(id).unwrap().as_ref(), Some(state), "{id}");
            // Read hot (the last two months), then made whole: the same state.
            let mut stored = store.stored_student(id).unwrap().unwrap();
            hot += usize::from(!stored.state.is_whole());
            assert_eq!(stored.state.events_applied(), state.events_applied(), "{id}");
            store.complete(id, &mut stored).unwrap();
            assert_eq!(&stored.state, state, "{id}");
        }
        assert!(hot * 10 >= whole.iter().count() * 9, "{hot} states read hot");
        // Most batches write one value per student, not its history.
        assert!(
            one_value_states * 10 >= touched_states * 8,
            "{one_value_states} of {touched_states} states written as one value"
        );
    }

    /// A state packed after its batch's commit (as the pipeline's cache keeps it) unpacks to the
    /// state the store reads back, hot or (enrolled) whole, every day of a mixed district.
    #[test]
    fn a_packed_state_unpacks_to_what_the_store_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let rules = Rules::default();
        let spec = DistrictSpec {
            students: 60,
            schools: 4,
            days: 50,
            feed: crate::synth::Feed::Mixed,
            ..DistrictSpec::default()
        };
        let mut district = District::new(spec);
        let (mut hot, mut whole, mut aside, mut spliced) = (0, 0, 0, 0);
        // As a state cache keeps them: every other student's state goes on from the copy kept
        // with its records set aside (packed or not), not from the store.
        let mut kept: std::collections::BTreeMap<String, Stored> = Default::default();
        for day in 0..50 {
            let mut touched: std::collections::BTreeMap<String, Stored> = Default::default();
            for e in district.day(day) {
                let Ok(event) = decode_event(e.json.as_bytes()) else { continue };
                if event.kind() == crate::core::EventKind::Calendar {
                    continue;
                }
                let id = event.student_id.to_string();
                let stored = touched.entry(id).or_insert_with_key(|id| {
                    kept.remove(id)
                        .unwrap_or_else(|| store.stored_student(id).unwrap().unwrap_or_default())
                });
                store.complete_for(&event.student_id, stored, &event, &rules).unwrap();
                stored.state.apply(&event, &rules);
            }
            let mut batch = store.batch();
            for (id, stored) in &mut touched {
                write(&mut batch, id, stored, None);
                // Written again with nothing changed since (as a later batch of duplicates
                // only would): it writes nothing, and packs as before.
                assert_eq!(write(&mut batch, id, stored, None), 0, "{id}");
            }
            store.commit(batch).unwrap();
            for (i, (id, stored)) in touched.into_iter().enumerate() {
                let packed = pack(&stored).expect("a written state packs");
                // Packed as the cache packs it, from the form it was unpacked from when it was:
                // the same bytes.
                spliced +=
                    usize::from(stored.repack.from.is_some() && stored.repack.current.is_some());
                let repacked = repack(&mut stored.clone()).expect("a written state repacks");
                assert_eq!(repacked.0, packed.0, "{id} on day {day}");
                let read = store.stored_student(id.as_str()).unwrap().unwrap();
                let mut unpacked = unpack(&id, &packed).unwrap();
                assert_eq!(unpacked.aside_bytes() > 0, stored.aside_bytes() > 0);
                take_back(&id, &mut unpacked).unwrap();
                assert_eq!(unpacked, read, "{id} on day {day}");
                match read.state.is_whole() {
                    true => whole += 1,
                    false => hot += 1,
                }
                // The cold part in pieces is the whole tuple's encoding, byte for byte.
                let window = current_month(&read.state).and_then(window_start);
                let r = &read.state;
                let (_, referrals, grades, assignment) = r.records();
                let fingerprints = window.map_or(Vec::new(), |w| r.fingerprints_before(w));
                let tuple =
                    (assignment, referrals, grades, r.enrollments(), r.other_ids(), fingerprints);
                assert_eq!(cold_part(&read, window), encode(&tuple), "{id}");
                // Set aside, it writes the same cold part, and packs and unpacks to itself.
                let mut set = stored.clone();
                set_aside(&mut set);
                assert_eq!(cold_part(&set, window), cold_part(&stored, window), "{id}");
                let unpacked = unpack_kept(&id, pack(&set).unwrap()).unwrap();
                assert_eq!(unpacked, set, "{id} on day {day}");
                set.forget_packed();
                let mut back = unpacked.clone();
                take_back(&id, &mut back).unwrap();
                assert_eq!(back, read, "{id} on day {day}, its records put back");
                if set.state.aside_ids().is_some() {
                    aside += 1;
                    assert!(set.aside_bytes() > 0 && set.state.records().2.is_empty());
                }
                if i % 2 == 0 {
                    kept.insert(id, if i % 4 == 0 { set } else { unpacked });
                }
            }
        }
        assert!(hot > 1_000 && whole > 200 && aside > 300, "{hot} hot, {whole} whole, {aside}");
        assert!(spliced > 300, "{spliced} packed from the form they were unpacked from");
    }

    /// What a state remembers through the store: losing and replaced events stay duplicates,
    /// a replaced assignment's id too, and a reloaded state goes on folding like the original.
    #[test]
    fn seen_ids_survive_the_store_for_losers_and_replaced_records() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let rules = Rules::default();
        let ev = |id: &str, body: &str, at: &str| {
            format!(
                r#"{{"event_id":"{id}","student_id":"stu-1","school_id":"h1","date":"2026-10-05","recorded_at":"{at}",{body}}}"#
            )
        };
        let absent = r#""type":"attendance","status":"absent_unexcused""#;
        let excused = r#""type":"attendance","status":"absent_excused""#;
        let assign = |adv: &str| format!(r#""type":"assignment","advocate_id":"{adv}""#);
        let events = [
            ev("a1", absent, "2026-10-05T09:00:00Z"),
            ev("a2", excused, "2026-10-05T12:00:00Z"), // replaces a1
            ev("a0", absent, "2026-10-05T08:00:00Z"),  // loses to a2
            ev("s1", &assign("adv-1"), "2026-10-01T08:00:00Z"),
            ev("s2", &assign("adv-2"), "2026-10-02T08:00:00Z"), // replaces s1
        ];
        let mut state = StudentState::default();
        for e in &events {
            state.apply(&decode_event(e.as_bytes()).unwrap(), &rules);
        }
        let mut batch = store.batch();
        write(&mut batch, "stu-1", &mut Stored::new(state.clone()), Some(0));
        store.commit(batch).unwrap();
        let mut loaded = store.student("stu-1").unwrap().unwrap();
        assert_eq!(loaded, state);
        assert_eq!(loaded.events_applied(), 5);
        for e in &events {
            let outcome = loaded.apply(&decode_event(e.as_bytes()).unwrap(), &rules);
            assert_eq!(outcome, crate::core::Outcome::Duplicate, "{e}");
        }
        assert_eq!(loaded.other_ids().len(), 3, "a1, a0 and s1 are no record's id");
    }

    /// Format 3's form of a month's records: every event id whole.
    fn format_3(records: &[AttendanceRecord]) -> Vec<u8> {
        let whole: Vec<(u8, u8, i64, u32, &str)> = compact_month(records)
            .into_iter()
            .zip(records)
            .map(|((day, status, secs, nanos, _, _), r)| {
                (day, status, secs, nanos, &*r.version.event_id)
            })
            .collect();
        let mut value = vec![WHOLE_IDS_FORMAT];
        value.extend(postcard_of(&whole));
        value
    }

    #[test]
    fn a_months_event_ids_are_stored_by_what_they_share_and_read_back_whole() {
        let day = |d: u8| Date::from_calendar_date(2026, time::Month::October, d).unwrap();
        let (long, longer) = ("a".repeat(300) + "1", "a".repeat(300) + "2");
        let ids = [
            "att-stu-0000042-0",
            "att-stu-0000042-1",
            "att-stu-0000042-10",
            "é-1",
            "é-2",
            "è-2",
            "x",
            "",
            &long,
            &longer,
            "att-stu-0000042-11",
        ];
        let records: Vec<AttendanceRecord> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let date = day(i as u8 + 1);
                let midnight = date.midnight().assume_utc().unix_timestamp();
                let recorded_at = RecordedAt { secs: midnight + 3_600 * i as i64, nanos: i as u32 };
                AttendanceRecord {
                    date,
                    status: AttendanceStatus::ALL[i % AttendanceStatus::ALL.len()],
                    version: Version { recorded_at, event_id: (*id).into() },
                }
            })
            .collect();
        let month = month_of(day(1));
        let value = encode(&compact_month(&records));
        let mut read = Vec::new();
        expand_month(b"k", month, &value, 0, &mut read).unwrap();
        assert_eq!(read, records);
        // A store's format-3 months read back the same.
        let mut read = Vec::new();
        expand_month(b"k", month, &format_3(&records), 0, &mut read).unwrap();
        assert_eq!(read, records);
        // A school month of one student's ids: under half the bytes of format 3.
        let school: Vec<AttendanceRecord> = (1..=20)
            .map(|d| {
                let mut r = records[0].clone();
                r.date = day(d);
                r.version.event_id = format!("att-stu-0000042-{d}").into();
                r
            })
            .collect();
        let (now, before) = (encode(&compact_month(&school)).len(), format_3(&school).len());
        assert!(now * 2 < before, "{now} bytes against {before}");
        // A record said to share more than the id before it has is refused, not guessed.
        let mut bad = compact_month(&records[..2]);
        bad[0].4 = 3;
        let err = expand_month(b"k", month, &encode(&bad), 0, &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("shares more"), "{err}");
    }

    /// A store of format 3 opens, is marked format 4, and reads its states back as they were,
    /// whether their parts are written anew (format 4) or not.
    #[test]
    fn a_store_of_format_3_reads_its_states_and_goes_on_in_format_4() {
        let dir = tempfile::tempdir().unwrap();
        let students = district();
        {
            let store = Store::open(dir.path()).unwrap();
            commit_all(&store, &students, |_| 0);
            // Every current part and month as format 3 wrote it.
            for item in store.tree.prefix([STATES]) {
                let (key, value) = item.into_inner().unwrap();
                let len = u32::from_be_bytes(key[1..5].try_into().unwrap()) as usize;
                let prefix = &key[..5 + len];
                let mut records = Vec::new();
                let old = match key[5 + len] {
                    b'c' => {
                        let (head, month, compact) = read_current(prefix, &value).unwrap();
                        if let Some(month) = month {
                            expand_records(&key, month, compact, 0, &mut records).unwrap();
                        }
                        let whole: Vec<u8> = format_3(&records);
                        let mut value = vec![WHOLE_IDS_FORMAT];
                        value.extend(postcard_of(&(head, month)));
                        value.extend(&whole[1..]);
                        value
                    }
                    b'm' => {
                        expand_month(
                            &key,
                            month_in(&key, prefix).unwrap(),
                            &value,
                            0,
                            &mut records,
                        )
                        .unwrap();
                        format_3(&records)
                    }
                    _ => continue,
                };
                store.tree.insert(&*key, old).unwrap();
            }
            store.tree.insert([b'v'], [3u8]).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.tree.get([b'v']).unwrap().as_deref(), Some(&[crate::store::FORMAT][..]));
        for (id, state) in students.iter() {
            assert_eq!(store.student(id).unwrap().as_ref(), Some(state), "{id}");
        }
        // Half the states written again (format 4) beside the others: all read back.
        let mut batch = store.batch();
        for (id, state) in students.iter().step_by(2) {
            let mut stored = store.stored_student(id).unwrap().unwrap();
            assert_eq!(stored.state.events_applied(), state.events_applied(), "{id}");
            stored.state = state.clone();
            write(&mut batch, id, &mut stored, Some(0));
        }
        store.commit(batch).unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        for (id, state) in students.iter() {
            assert_eq!(store.student(id).unwrap().as_ref(), Some(state), "{id}");
        }
    }

    #[test]
    fn month_bounds_agree_with_month_of() {
        let mut day = Date::from_calendar_date(2025, time::Month::January, 1).unwrap();
        while day.year() < 2028 {
            let (start, next) = month_bounds(month_of(day)).unwrap();
            assert!(start <= day && day < next, "{day}: {start}..{next}");
            assert_eq!((month_of(start), month_of(next)), (month_of(day), month_of(day) + 1));
            assert_eq!(midnight_of(day), day.midnight().assume_utc().unix_timestamp(), "{day}");
            day = day.next_day().unwrap();
        }
    }

    #[test]
    fn a_value_of_an_unknown_format_is_refused_with_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.tree.insert(part_key(&state_prefix("stu-1"), b'c'), &[9u8, 1, 2][..]).unwrap();
        let err = store.student("stu-1").unwrap_err().to_string();
        assert!(err.contains("stu-1") && err.contains("format 9"), "{err}");
    }
}

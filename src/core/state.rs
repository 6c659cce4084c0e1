//! The per-student fold: winning records per natural key, figures derived from them, and the
//! rules evaluated after every event.
//!
//! For each natural key the record with the greatest `(recorded_at, event_id)` wins, whatever the
//! order of arrival; a winning tombstone (`retracted`) counts as no record. Every figure is
//! derived from the winning records, so the final records and figures do not depend on order.
//! Only the flags carry history (hysteresis, raise counts), as DESIGN.md intends.

use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use time::Date;
use xxhash_rust::xxh3::xxh3_64;

use super::calendar::Calendars;
use super::event::{
    AdvocateContact, AttendanceStatus, DisciplineAction, Event, EventBody, Mark, MarkBand,
    RecordedAt, Subject,
};
use super::flag::{Change, Evidence, Flag, FlagChange};
use super::rules::{Rules, SchoolYear};

/// Which of two records for the same natural key wins: the greater `(recorded_at, event_id)`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Version {
    pub recorded_at: RecordedAt,
    /// Inline up to 24 bytes: one allocation less per stored record.
    pub event_id: CompactString,
}

impl Version {
    pub fn of(e: &Event) -> Version {
        Version { recorded_at: e.recorded_at, event_id: CompactString::from(&*e.event_id) }
    }
}

/// The winning attendance record of one date.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttendanceRecord {
    pub date: Date,
    pub status: AttendanceStatus,
    pub version: Version,
}

/// The winning record of one referral.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferralRecord {
    pub referral_id: Box<str>,
    pub date: Date,
    pub action: DisciplineAction,
    pub retracted: bool,
    pub version: Version,
}

/// The winning record of one section's mark in one grading period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GradeRecord {
    pub section_id: Box<str>,
    pub grading_period: Box<str>,
    pub date: Date,
    pub subject: Subject,
    pub mark: Mark,
    pub retracted: bool,
    pub version: Version,
}

/// The student's winning assignment record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssignmentRecord {
    pub date: Date,
    /// `None`: the student has no advocate.
    pub advocate_id: Option<Box<str>>,
    pub advocate: Option<AdvocateContact>,
    pub version: Version,
}

/// The winning record of one enrollment (contract v1.1): enrolled at `school_id` from `date` to
/// `exit_date`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollmentRecord {
    pub school_id: Box<str>,
    /// The first enrolled day.
    pub date: Date,
    /// The last enrolled day; `None`: still enrolled.
    pub exit_date: Option<Date>,
    pub retracted: bool,
    pub version: Version,
}

impl EnrollmentRecord {
    /// Whether the student is enrolled here on `day`.
    pub fn covers(&self, day: Date) -> bool {
        !self.retracted && self.date <= day && self.exit_date.is_none_or(|exit| day <= exit)
    }
}

/// What a student's figures are counted against besides their own records: the schools'
/// calendars and the last school day that has ended. Only students with enrollment records use
/// them (contract v1.1); without, figures are v1's.
#[derive(Debug, Clone, Copy, Default)]
pub struct Days<'a> {
    pub calendars: Option<&'a Calendars>,
    /// The as-of day: school days up to it have passed.
    pub closed_through: Option<Date>,
}

impl<'a> Days<'a> {
    pub fn new(calendars: &'a Calendars, closed_through: Option<Date>) -> Days<'a> {
        Days { calendars: Some(calendars), closed_through }
    }
}

/// What a flag change names as its cause: an event, or a school day that passed.
#[derive(Debug, Clone, Copy)]
pub struct Cause<'a> {
    pub student_id: &'a str,
    pub school_id: &'a str,
    /// The flag's `as_of`.
    pub date: Date,
    /// The flag's `caused_by`.
    pub id: &'a str,
}

impl<'a> Cause<'a> {
    pub fn of(event: &'a Event<'_>) -> Cause<'a> {
        Cause {
            student_id: &event.student_id,
            school_id: &event.school_id,
            date: event.date,
            id: &event.event_id,
        }
    }
}

/// The `caused_by` of flag changes a passing school day causes: `day:{school_id}:{date}`.
pub fn day_cause_id(school_id: &str, day: Date) -> String {
    format!("day:{school_id}:{day}")
}

/// The figures of DESIGN.md for one student over one school year.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Figures {
    pub days_enrolled: u32,
    pub days_absent: u32,
    /// Absences counted back from the latest-dated attendance record (0: the latest is not an
    /// absence, or there is none).
    pub streak: u32,
    pub referrals: u32,
    pub suspensions: u32,
    pub core_f: u32,
    pub core_d_or_f: u32,
}

impl Figures {
    /// `days_absent / days_enrolled`, 0 with no enrolled days.
    pub fn absence_rate(&self) -> f64 {
        if self.days_enrolled == 0 {
            0.0
        } else {
            f64::from(self.days_absent) / f64::from(self.days_enrolled)
        }
    }
}

/// A raised flag: enough to rebuild its `flag_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaisedFlag {
    pub school_year: SchoolYear,
    pub n: u32,
}

/// Everything ontrack keeps about one student.
///
/// It says what changed since it was last saved ([`Changes`]), so that a store can write what
/// changed rather than the whole history; the seen ids need not be stored: they are the records'
/// ids plus [`StudentState::other_ids`] (and, while they are set aside, the ids of the referrals
/// and grades its holder keeps: [`StudentState::aside_ids`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StudentState {
    /// xxh3-64 of every `event_id` applied, sorted: a repeat is a duplicate and changes nothing.
    seen: Vec<u64>,
    /// xxh3-64 of the applied events that are not a winning record now (they lost on arrival or
    /// were replaced since), sorted: `seen` is these plus the winning records' ids.
    others: Vec<u64>,
    /// One record per date, sorted by date.
    attendance: Vec<AttendanceRecord>,
    /// One record per referral, sorted by `referral_id`.
    referrals: Vec<ReferralRecord>,
    /// One record per (section, grading period), sorted by that pair.
    grades: Vec<GradeRecord>,
    /// Boxed: rarely touched, and a smaller state is fewer cache lines per event.
    assignment: Option<Box<AssignmentRecord>>,
    /// One record per (school, first day), sorted by that pair (contract v1.1).
    enrollments: Vec<EnrollmentRecord>,
    current_year: Option<SchoolYear>,
    /// The figures of `current_year`, kept up to date by each event (see
    /// [`StudentState::figures_from_records`] for their definition).
    figures: Figures,
    /// The raised flags, by [`Flag::index`].
    raised: [Option<RaisedFlag>; 5],
    /// How many times each flag was raised, per school year (for `n` of the next raise).
    raises: Vec<(SchoolYear, [u32; 5])>,
    /// What changed since [`StudentState::take_changes`] last took it.
    changes: Changes,
    /// The as-of day the cached figures of an enrolled student were counted at (not stored).
    fresh: Fresh,
    /// `Some`: a *hot* state, whose attendance records dated before a day are not in memory
    /// (a store keeps them); `None`: the whole state.
    older: Option<Box<Older>>,
    /// `Some`: the referrals and grades are set aside (their holder keeps them in its own form,
    /// see [`StudentState::set_aside`]); these are the hashes of their ids, sorted (they stay in
    /// `seen`). `None`: held.
    aside: Option<Box<[u64]>>,
}

/// What a hot state knows of the attendance records it does not hold: where they end, and a
/// fingerprint of each one's id (so that a possible duplicate of one is noticed).
#[derive(Debug, Clone, PartialEq)]
struct Older {
    /// Records dated before this day are not held.
    before: Date,
    /// The upper 32 bits of xxh3-64 of each one's `event_id`, sorted.
    fingerprints: Vec<u32>,
}

/// The fingerprint a hot state keeps of the id of a record it does not hold.
fn fingerprint(event_id: &str) -> u32 {
    (xxh3_64(event_id.as_bytes()) >> 32) as u32
}

/// The as-of day of an enrolled student's cached figures, when known: lets a passing day add
/// itself instead of counting every expected day again. Not part of the state: two states are
/// equal whatever it says.
#[derive(Debug, Clone, Copy, Default)]
struct Fresh(Option<Date>);

impl PartialEq for Fresh {
    fn eq(&self, _: &Fresh) -> bool {
        true
    }
}

/// The small, often-changing part of a stored state: the school year, its figures and the flags.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Head {
    pub current_year: Option<SchoolYear>,
    pub figures: Figures,
    pub raised: [Option<RaisedFlag>; 5],
    pub raises: Vec<(SchoolYear, [u32; 5])>,
}

/// What changed in a state since [`StudentState::take_changes`] last took them: a store writes
/// only what changed (how it lays a state out is its own business).
///
/// Not part of the state: two states are equal whatever has changed in them.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    /// The school year, figures or flags ([`StudentState::head`]).
    pub head: bool,
    pub assignment: bool,
    pub referrals: bool,
    pub grades: bool,
    pub enrollments: bool,
    /// The ids of applied events that no record carries ([`StudentState::other_ids`]).
    pub others: bool,
    /// Dates whose attendance record changed, without repeats.
    pub attendance: Vec<Date>,
}

impl PartialEq for Changes {
    fn eq(&self, _: &Changes) -> bool {
        true
    }
}

impl Changes {
    fn attendance_on(&mut self, date: Date) {
        if !self.attendance.contains(&date) {
            self.attendance.push(date);
        }
    }
}

/// What applying one event did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The `event_id` was applied before: nothing changed, nothing emitted.
    Duplicate,
    /// The flag changes the event caused, in emission order (often none).
    Applied(Vec<FlagChange>),
}

impl StudentState {
    /// Folds one event for this student (the caller routes by `student_id`) and evaluates the rules.
    pub fn apply(&mut self, event: &Event, rules: &Rules) -> Outcome {
        self.apply_on(event, rules, &Days::default())
    }

    /// Whether `event_id` was applied before (applying it again changes nothing).
    pub fn has_seen(&self, event_id: &str) -> bool {
        find_hash(&self.seen, xxh3_64(event_id.as_bytes())).is_ok()
    }

    /// [`StudentState::apply`], counting the figures of an enrolled student against `days`.
    pub fn apply_on(&mut self, event: &Event, rules: &Rules, days: &Days) -> Outcome {
        debug_assert!(!self.needs_records(event, rules), "apply_on before with_records");
        let id_hash = xxh3_64(event.event_id.as_bytes());
        match find_hash(&self.seen, id_hash) {
            Ok(_) => return Outcome::Duplicate,
            Err(at) => self.seen.insert(at, id_hash),
        }
        let mut changes = Vec::new();
        // A record that loses to the stored one changes no figure, so no rule can change either.
        let Some(replaced) = self.upsert(event) else {
            insert_sorted(&mut self.others, id_hash);
            self.changes.others = true;
            return Outcome::Applied(changes);
        };
        self.changes.head = true;

        let event_year = rules.school_year_of(event.date);
        let live = event.is_live();
        // Adding a live record moves the latest date only forward; anything else (a tombstone, a
        // correction that moves a referral or grade to another date) needs a look at all records.
        let year = if live && replaced.is_none_or(|r| r.date == event.date) {
            self.current_year.max(Some(event_year))
        } else {
            self.latest_date().map(|d| rules.school_year_of(d))
        };

        if year != self.current_year {
            // A move to another school year (forward, or back when the only later record was
            // retracted) first clears every raised flag, with no evidence: the figures they stood
            // on belong to a year that no longer counts.
            let cause = Cause::of(event);
            if self.current_year.is_some() && year.is_some() {
                for flag in Flag::ALL {
                    if self.is_raised(*flag) {
                        changes.push(self.clear(*flag, &cause, None));
                    }
                }
            }
            // With no record left at all there is no school year: the rules see empty figures.
            self.current_year = year;
            self.figures = self.figures_at(rules, days);
        } else if let Some(year) = year {
            self.update_figures(event, replaced, year, rules, days);
        }
        debug_assert!(
            self.older.is_some() || self.figures == self.figures_at(rules, days),
            "cached figures drifted"
        );
        self.fresh = Fresh(days.closed_through.filter(|_| days.calendars.is_some()));
        self.evaluate(rules, &Cause::of(event), &mut changes);
        Outcome::Applied(changes)
    }

    /// Counts the figures again against `days` (school days passed, or a calendar changed) and
    /// evaluates the rules if they moved; the flag changes name `cause`.
    pub fn refresh(&mut self, rules: &Rules, days: &Days, cause: &Cause) -> Vec<FlagChange> {
        let mut changes = Vec::new();
        let figures = self.figures_at(rules, days);
        self.fresh = Fresh(days.closed_through.filter(|_| days.calendars.is_some()));
        if figures != self.figures {
            self.figures = figures;
            self.changes.head = true;
            self.evaluate(rules, cause, &mut changes);
        }
        changes
    }

    /// The school of the enrollment that makes `day` a school day for this student (the latest
    /// enrollment when two do), if any: a passing `day` can change the figures only then.
    pub fn school_day_at(&self, day: Date, calendars: &Calendars) -> Option<&str> {
        (self.enrollments.iter().filter(|e| e.covers(day)))
            .filter(|e| calendars.is_school_day(&e.school_id, day))
            .max_by_key(|e| e.date)
            .map(|e| &*e.school_id)
    }

    /// The school day `day` has ended: counts it (present, unless it has a record) and
    /// evaluates the rules; changes name `day:{school}:{day}`. Nothing for a student without an
    /// enrollment there or a day that is not a school day.
    pub fn pass_day(
        &mut self,
        student_id: &str,
        day: Date,
        rules: &Rules,
        calendars: &Calendars,
    ) -> Vec<FlagChange> {
        let Some(school) = self.school_day_at(day, calendars) else {
            return Vec::new();
        };
        let id = day_cause_id(school, day);
        let school = school.to_owned();
        let cause = Cause { student_id, school_id: &school, date: day, id: &id };
        let days = Days::new(calendars, Some(day));
        let Some(figures) = self.figures_after_day(day, rules, calendars) else {
            return self.refresh(rules, &days, &cause);
        };
        debug_assert_eq!(figures, self.figures_at(rules, &days), "a passing day miscounted");
        self.fresh = Fresh(Some(day));
        let mut changes = Vec::new();
        if figures != self.figures {
            self.figures = figures;
            self.changes.head = true;
            self.evaluate(rules, &cause, &mut changes);
        }
        changes
    }

    /// The figures once school day `day` (of an enrollment of this student) has passed, from the
    /// cached ones, when they were counted at the school day before it (what happens every day
    /// for a watched student): one more expected day, present, unless it has a record. `None`:
    /// count again.
    fn figures_after_day(
        &self,
        day: Date,
        rules: &Rules,
        calendars: &Calendars,
    ) -> Option<Figures> {
        let prev = self.fresh.0.filter(|prev| *prev < day)?;
        let year = self.current_year.filter(|y| rules.school_year_of(day) == *y)?;
        // No school day of the student between the figures' as-of day and `day`.
        let gap_first = prev.next_day()?;
        let gap_last = day.previous_day()?;
        let skipped = self.enrollments.iter().filter(|e| !e.retracted).any(|e| {
            let first = e.date.max(gap_first);
            let last = e.exit_date.unwrap_or(gap_last).min(gap_last);
            first <= last && calendars.school_days(&e.school_id, first, last).next().is_some()
        });
        if skipped || rules.school_year_of(prev) != year {
            return None;
        }
        let live = |r: &&AttendanceRecord| r.status != AttendanceStatus::Retracted;
        let latest = self.attendance.iter().rev().find(live).map(|r| r.date);
        if latest.is_some_and(|d| d > day) {
            // A record after the day (planned ahead): the streak needs a proper count.
            return None;
        }
        let mut f = self.figures;
        if latest != Some(day) {
            f.days_enrolled += 1;
            f.streak = 0;
        }
        Some(f)
    }

    /// Whether days passing with no record could change a flag: an enrolled student with
    /// `attendance` or `consecutive_absences` raised (a present day can clear them), or with
    /// absences and too few days yet (a present day can bring `days_enrolled` to the minimum).
    /// A present day cannot raise anything else, so only these students are re-evaluated as
    /// days pass.
    pub fn watch(&self, rules: &Rules) -> bool {
        self.has_enrollment()
            && self.current_year.is_some()
            && (self.is_raised(Flag::Attendance)
                || self.is_raised(Flag::ConsecutiveAbsences)
                || (self.figures.days_enrolled < rules.attendance.min_days_enrolled
                    && self.figures.days_absent > 0))
    }

    /// Whether the student has an enrollment record (not retracted): figures count expected
    /// days (contract v1.1); without, they count dates with a record (v1).
    pub fn has_enrollment(&self) -> bool {
        self.enrollments.iter().any(|e| !e.retracted)
    }

    /// Whether the student was ever enrolled at `school_id` (retracted or not).
    pub fn enrolled_at(&self, school_id: &str) -> bool {
        self.enrollments.iter().any(|e| &*e.school_id == school_id)
    }

    /// The winning enrollment records, sorted by (school, first day).
    pub fn enrollments(&self) -> &[EnrollmentRecord] {
        &self.enrollments
    }

    /// The current school year and its figures; `None` before any (non-retracted) record.
    pub fn figures(&self) -> Option<(SchoolYear, Figures)> {
        self.current_year.map(|y| (y, self.figures))
    }

    /// The figures of the current school year, counted from the records from scratch (the fold
    /// keeps them up to date event by event; this is the definition they must always equal).
    /// While the referrals and grades are set aside ([`StudentState::set_aside`]) their figures
    /// are the cached ones: they were counted from the records when these were set aside, and
    /// nothing changes them until they are back.
    pub fn figures_from_records(&self, rules: &Rules) -> Figures {
        self.figures_at(rules, &Days::default())
    }

    /// [`StudentState::figures_from_records`], an enrolled student's counted against `days`.
    pub fn figures_at(&self, rules: &Rules, days: &Days) -> Figures {
        let Some(year) = self.current_year else {
            return Figures::default();
        };
        let mut f = Figures::default();
        (f.days_enrolled, f.days_absent, f.streak) = self.attendance_figures(year, rules, days);
        (f.referrals, f.suspensions) = self.referral_figures(year, rules);
        (f.core_f, f.core_d_or_f) = self.grade_figures(year, rules);
        f
    }

    /// `(days_enrolled, days_absent, streak)` in `year`.
    fn attendance_figures(&self, year: SchoolYear, rules: &Rules, days: &Days) -> (u32, u32, u32) {
        let (lo, hi) = self.attendance_range(year, rules);
        let records = &self.attendance[lo..hi];
        let live = records.iter().filter(|r| r.status != AttendanceStatus::Retracted);
        let days_absent = live.clone().filter(|r| r.status.is_absence()).count() as u32;
        if !self.has_enrollment() {
            return (live.count() as u32, days_absent, self.streak(year, rules));
        }
        let expected = self.expected_days(year, rules, days);
        // Walk back over the expected days: a day without a record is present.
        let streak = (expected.iter().rev())
            .take_while(|d| {
                let at = records.binary_search_by(|r| r.date.cmp(d));
                at.is_ok_and(|i| records[i].status.is_absence())
            })
            .count() as u32;
        (expected.len() as u32, days_absent, streak)
    }

    /// The expected days of `year`, sorted: each enrollment's school days within it up to the
    /// as-of day, and every date with a live attendance record.
    fn expected_days(&self, year: SchoolYear, rules: &Rules, days: &Days) -> Vec<Date> {
        let (lo, hi) = self.attendance_range(year, rules);
        let mut expected: Vec<Date> = self.attendance[lo..hi]
            .iter()
            .filter(|r| r.status != AttendanceStatus::Retracted)
            .map(|r| r.date)
            .collect();
        if let (Some(calendars), Some(as_of)) = (days.calendars, days.closed_through) {
            let (year_first, year_last) = rules.school_year_span(year);
            for e in self.enrollments.iter().filter(|e| !e.retracted) {
                let first = e.date.max(year_first);
                let last = e.exit_date.unwrap_or(year_last).min(year_last).min(as_of);
                if first <= last {
                    expected.extend(calendars.school_days(&e.school_id, first, last));
                }
            }
            expected.sort_unstable();
            expected.dedup();
        }
        expected
    }

    /// Brings the cached figures up to date after `event` replaced `replaced` in `year` (the
    /// school year did not change): only the figures of the event's type can have moved.
    fn update_figures(
        &mut self,
        event: &Event,
        replaced: Option<Replaced>,
        year: SchoolYear,
        rules: &Rules,
        days: &Days,
    ) {
        let own =
            matches!(event.body, EventBody::Enrolled { .. } | EventBody::AttendanceRecorded { .. });
        if self.has_enrollment() || matches!(event.body, EventBody::Enrolled { .. }) {
            // Expected days: counted again, at today's as-of day (days may have passed since the
            // student's last event; an enrollment can reach into this year from another).
            let (d, a, s) = self.attendance_figures(year, rules, days);
            (self.figures.days_enrolled, self.figures.days_absent, self.figures.streak) = (d, a, s);
            if own {
                return;
            }
        }
        let touches_year = rules.school_year_of(event.date) == year
            || replaced.is_some_and(|r| rules.school_year_of(r.date) == year);
        if !touches_year {
            return;
        }
        match &event.body {
            EventBody::AttendanceRecorded { status } => {
                let f = &mut self.figures;
                // Same date, so the replaced record was in the same year.
                if let Some(old) = replaced.filter(|r| r.live) {
                    f.days_enrolled -= 1;
                    f.days_absent -= u32::from(old.absence);
                }
                if *status != AttendanceStatus::Retracted {
                    f.days_enrolled += 1;
                    f.days_absent += u32::from(status.is_absence());
                }
                self.figures.streak = self.streak(year, rules);
            }
            EventBody::ReferralRecorded { .. } => {
                let (referrals, suspensions) = self.referral_figures(year, rules);
                (self.figures.referrals, self.figures.suspensions) = (referrals, suspensions);
            }
            EventBody::GradePosted { .. } => {
                let (core_f, core_d_or_f) = self.grade_figures(year, rules);
                (self.figures.core_f, self.figures.core_d_or_f) = (core_f, core_d_or_f);
            }
            EventBody::AdvocateAssigned { .. }
            | EventBody::Enrolled { .. }
            | EventBody::CalendarDay { .. } => {}
        }
    }

    /// The index range of `year`'s attendance records (sorted by date, and the school year grows
    /// with the date, so they are contiguous).
    fn attendance_range(&self, year: SchoolYear, rules: &Rules) -> (usize, usize) {
        let a = &self.attendance;
        let hi = a.partition_point(|r| rules.school_year_of(r.date) <= year);
        let lo = a[..hi].partition_point(|r| rules.school_year_of(r.date) < year);
        (lo, hi)
    }

    /// Absences counted back from the latest-dated live record of `year`.
    ///
    /// Walks back from the end: on the hot path the current year's records are the last ones,
    /// so this touches the few records a binary search would have to fetch from memory anyway.
    fn streak(&self, year: SchoolYear, rules: &Rules) -> u32 {
        let in_year = |r: &&AttendanceRecord| rules.school_year_of(r.date) == year;
        let days = self.attendance.iter().rev();
        let live = days
            .skip_while(|r| rules.school_year_of(r.date) > year)
            .take_while(in_year)
            .filter(|r| r.status != AttendanceStatus::Retracted);
        live.take_while(|r| r.status.is_absence()).count() as u32
    }

    /// `(referrals, suspensions)` in `year`.
    fn referral_figures(&self, year: SchoolYear, rules: &Rules) -> (u32, u32) {
        if self.aside.is_some() {
            // Set aside only while the school year stays (`needs_records`): the cached figures
            // are the records' (invariant 3).
            debug_assert_eq!(Some(year), self.current_year);
            return (self.figures.referrals, self.figures.suspensions);
        }
        let live = self.referrals.iter().filter(|r| !r.retracted);
        live.filter(|r| rules.school_year_of(r.date) == year)
            .fold((0, 0), |(n, s), r| (n + 1, s + u32::from(r.action.is_suspension())))
    }

    /// `(core_f, core_d_or_f)` in `year`: each core section by its current mark.
    fn grade_figures(&self, year: SchoolYear, rules: &Rules) -> (u32, u32) {
        if self.aside.is_some() {
            debug_assert_eq!(Some(year), self.current_year);
            return (self.figures.core_f, self.figures.core_d_or_f);
        }
        let cp = &rules.course_performance;
        let live =
            self.grades.iter().filter(|g| !g.retracted && rules.school_year_of(g.date) == year);
        // Sorted by (section, period): a section's current mark is its last live record.
        let (mut core_f, mut core_d_or_f) = (0, 0);
        let mut current: Option<&GradeRecord> = None;
        for g in live.map(Some).chain([None]) {
            if let Some(c) = current
                && g.is_none_or(|g| g.section_id != c.section_id)
                && c.subject.is_core()
            {
                match c.mark.band(cp.f_below_numeric, cp.d_below_numeric) {
                    MarkBand::F => (core_f, core_d_or_f) = (core_f + 1, core_d_or_f + 1),
                    MarkBand::D => core_d_or_f += 1,
                    MarkBand::Passing => {}
                }
            }
            current = g;
        }
        (core_f, core_d_or_f)
    }

    /// Whether `flag` is raised now.
    pub fn is_raised(&self, flag: Flag) -> bool {
        self.raised[flag.index()].is_some()
    }

    /// The raised flags with their `flag_id`s' year and `n`, in table order.
    pub fn raised_flags(&self) -> impl Iterator<Item = (Flag, RaisedFlag)> + '_ {
        Flag::ALL.iter().filter_map(|f| self.raised[f.index()].map(|r| (*f, r)))
    }

    /// The winning records, for comparing two states record by record (no referrals or grades
    /// while they are set aside: [`StudentState::set_aside`]).
    pub fn records(
        &self,
    ) -> (&[AttendanceRecord], &[ReferralRecord], &[GradeRecord], Option<&AssignmentRecord>) {
        (&self.attendance, &self.referrals, &self.grades, self.assignment.as_deref())
    }

    /// The student's winning assignment record, if any.
    pub fn assignment(&self) -> Option<&AssignmentRecord> {
        self.assignment.as_deref()
    }

    /// The winning attendance status of `date`, if any record for it.
    pub fn attendance_on(&self, date: Date) -> Option<AttendanceStatus> {
        let a = &self.attendance;
        a.binary_search_by(|r| r.date.cmp(&date)).ok().map(|i| a[i].status)
    }

    /// How many distinct events were applied.
    pub fn events_applied(&self) -> usize {
        self.seen.len() + self.older.as_ref().map_or(0, |o| o.fingerprints.len())
    }

    /// What changed since the last call (everything applied, for a new state), leaving nothing
    /// changed: a store calls it as it writes the state.
    pub fn take_changes(&mut self) -> Changes {
        std::mem::take(&mut self.changes)
    }

    /// Forgets what changed, keeping the memory for the next event (for holders of states that
    /// store nothing: otherwise the list of changed dates grows with the history).
    pub fn forget_changes(&mut self) {
        let Changes { head, assignment, referrals, grades, enrollments, others, attendance } =
            &mut self.changes;
        *head = false;
        *assignment = false;
        *referrals = false;
        *grades = false;
        *enrollments = false;
        *others = false;
        attendance.clear();
    }

    /// The head: school year, figures and flags (small, and changed by nearly every event).
    pub fn head(&self) -> Head {
        Head {
            current_year: self.current_year,
            figures: self.figures,
            raised: self.raised,
            raises: self.raises.clone(),
        }
    }

    /// The ids of applied events that no winning record carries, sorted.
    pub fn other_ids(&self) -> &[u64] {
        &self.others
    }

    /// Puts a stored state back together (`attendance` sorted by date, `referrals` and
    /// `grades` as [`StudentState::records`] gave them), with nothing changed. The seen ids are
    /// the records' ids plus `others`.
    pub fn from_parts(
        head: Head,
        assignment: Option<AssignmentRecord>,
        referrals: Vec<ReferralRecord>,
        grades: Vec<GradeRecord>,
        attendance: Vec<AttendanceRecord>,
        enrollments: Vec<EnrollmentRecord>,
        others: Vec<u64>,
    ) -> StudentState {
        let mut state = StudentState {
            seen: Vec::new(),
            others,
            attendance,
            referrals,
            grades,
            assignment: assignment.map(Box::new),
            enrollments,
            current_year: head.current_year,
            figures: head.figures,
            raised: head.raised,
            raises: head.raises,
            changes: Changes::default(),
            fresh: Fresh::default(),
            older: None,
            aside: None,
        };
        let mut seen: Vec<u64> = state.winning_ids().collect();
        seen.extend_from_slice(&state.others);
        seen.sort_unstable();
        state.seen = seen;
        state
    }

    /// Whether every attendance record is held (else the state is hot: see
    /// [`StudentState::hot`]).
    pub fn is_whole(&self) -> bool {
        self.older.is_none()
    }

    /// The first day of the attendance records held, when not all are.
    pub fn held_from(&self) -> Option<Date> {
        self.older.as_ref().map(|o| o.before)
    }

    /// The fingerprints of the ids of the attendance records not held, sorted (empty for a
    /// whole state).
    pub fn fingerprints(&self) -> &[u32] {
        self.older.as_ref().map_or(&[], |o| &o.fingerprints)
    }

    /// The fingerprints a hot state held from `before` keeps of the attendance records dated
    /// before it (for a store to write: they change only when `before` moves).
    pub fn fingerprints_before(&self, before: Date) -> Vec<u32> {
        let held = self.attendance.partition_point(|r| r.date < before);
        let mut out: Vec<u32> = self.fingerprints().to_vec();
        out.extend(self.attendance[..held].iter().map(|r| fingerprint(&r.version.event_id)));
        out.sort_unstable();
        out
    }

    /// Makes this state *hot*: the attendance records dated before `before` leave memory,
    /// leaving the fingerprints of their ids (`fingerprints`: of those already gone, as a
    /// store gave them). Its cost in memory and per event no longer grows with the history:
    /// an event that needs a record it does not hold says so ([`StudentState::needs_history`])
    /// and the holder puts the history back ([`StudentState::with_history`]). An enrolled
    /// student's state stays whole (its figures count expected days over the school year).
    pub fn hot(&mut self, before: Date, fingerprints: Vec<u32>) {
        if self.has_enrollment() || self.held_from().is_some_and(|b| b >= before) {
            return;
        }
        let held = self.attendance.partition_point(|r| r.date < before);
        let mut all = match self.older.take() {
            Some(older) => older.fingerprints,
            None => fingerprints,
        };
        all.extend(self.attendance.drain(..held).map(|r| fingerprint(&r.version.event_id)));
        all.sort_unstable();
        // The ids seen are the held winners', the others' and those of the records set aside:
        // only a record gone changes them (a state read back from the store holds none before
        // `before`).
        if held > 0 {
            self.attendance.shrink_to_fit();
            let mut seen: Vec<u64> = self.winning_ids().collect();
            seen.extend_from_slice(&self.others);
            seen.extend_from_slice(self.aside.as_deref().unwrap_or_default());
            seen.sort_unstable();
            self.seen = seen;
        }
        self.older = Some(Box::new(Older { before, fingerprints: all }));
    }

    /// Puts the attendance records a hot state does not hold back (`older`: every record dated
    /// before [`StudentState::held_from`], sorted by date): the state is whole again.
    pub fn with_history(&mut self, older: Vec<AttendanceRecord>) {
        if self.older.take().is_none() {
            return;
        }
        for r in &older {
            insert_sorted(&mut self.seen, xxh3_64(r.version.event_id.as_bytes()));
        }
        let mut all = older;
        all.append(&mut self.attendance);
        self.attendance = all;
    }

    /// Sets the referrals and grades aside and gives them to the holder, which keeps them in its
    /// own (smaller) form and puts them back ([`StudentState::with_records`]) before an event
    /// that needs them ([`StudentState::needs_records`]): a school day's attendance never reads
    /// them. Their ids stay seen and the figures stay. `None` (nothing set aside): set aside
    /// already, none held, not yet written (changed since [`StudentState::take_changes`]), or an
    /// enrolled student's (its passing days count every record).
    pub fn set_aside(&mut self) -> Option<(Vec<ReferralRecord>, Vec<GradeRecord>)> {
        if self.aside.is_some()
            || (self.referrals.is_empty() && self.grades.is_empty())
            || self.changes.referrals
            || self.changes.grades
            || self.has_enrollment()
        {
            return None;
        }
        let versions = (self.referrals.iter().map(|r| &r.version))
            .chain(self.grades.iter().map(|g| &g.version));
        let mut ids: Vec<u64> = versions.map(|v| xxh3_64(v.event_id.as_bytes())).collect();
        ids.sort_unstable();
        self.aside = Some(ids.into_boxed_slice());
        Some((std::mem::take(&mut self.referrals), std::mem::take(&mut self.grades)))
    }

    /// Marks the referrals and grades of a state put together without them
    /// ([`StudentState::from_parts`] with none) as set aside, `ids` the hashes of their ids (as
    /// [`StudentState::aside_ids`] gave them).
    pub fn records_aside(&mut self, ids: Vec<u64>) {
        debug_assert!(self.aside.is_none() && self.referrals.is_empty() && self.grades.is_empty());
        for id in &ids {
            if let Err(at) = find_hash(&self.seen, *id) {
                self.seen.insert(at, *id);
            }
        }
        self.aside = Some(ids.into_boxed_slice());
    }

    /// The hashes of the ids of the records set aside, sorted (`None`: held).
    pub fn aside_ids(&self) -> Option<&[u64]> {
        self.aside.as_deref()
    }

    /// Puts back the referrals and grades [`StudentState::set_aside`] gave.
    pub fn with_records(&mut self, referrals: Vec<ReferralRecord>, grades: Vec<GradeRecord>) {
        if self.aside.take().is_some() {
            (self.referrals, self.grades) = (referrals, grades);
        }
    }

    /// Whether the referrals and grades must be put back before `event` is applied: anything
    /// but a live attendance record of the current school year (which never reads them) needs
    /// them. Always `false` when they are held.
    pub fn needs_records(&self, event: &Event, rules: &Rules) -> bool {
        self.aside.is_some()
            && !(matches!(event.body, EventBody::AttendanceRecorded { .. })
                && event.is_live()
                && Some(rules.school_year_of(event.date)) == self.current_year)
    }

    /// The hashes of the winning records' ids.
    fn winning_ids(&self) -> impl Iterator<Item = u64> + '_ {
        let winners = (self.attendance.iter().map(|r| &r.version))
            .chain(self.referrals.iter().map(|r| &r.version))
            .chain(self.grades.iter().map(|r| &r.version))
            .chain(self.assignment.iter().map(|r| &r.version))
            .chain(self.enrollments.iter().map(|r| &r.version));
        winners.map(|v| xxh3_64(v.event_id.as_bytes()))
    }

    /// Whether a hot state must be made whole before `event` is applied (or checked for a
    /// duplicate): its id may be one of a record not held, or applying it may read records not
    /// held — a record dated before (or within two days of) the first one held, a streak that
    /// may reach back past them, another school year, a tombstone, an enrollment or an
    /// assignment. Always
    /// `false` for a whole state. Nearly every event of a school day is none of these: it is
    /// decided by the head and the recent months.
    pub fn needs_history(&self, event: &Event, rules: &Rules) -> bool {
        let Some(older) = &self.older else { return false };
        if older.fingerprints.binary_search(&fingerprint(&event.event_id)).is_ok() {
            return true;
        }
        if !event.is_live() || Some(rules.school_year_of(event.date)) != self.current_year {
            return true;
        }
        match &event.body {
            EventBody::AttendanceRecorded { .. } => {
                // Two days' margin: the alert planner looks at the days around the record.
                let margin = older.before.checked_add(time::Duration::days(2));
                // The streak counts absences back from the latest record: it stops at a
                // present day held, or reaches the records not held.
                let stops = self.attendance.iter().any(|r| {
                    r.date != event.date
                        && r.status != AttendanceStatus::Retracted
                        && !r.status.is_absence()
                });
                margin.is_none_or(|m| event.date < m) || !stops
            }
            // A live record of the current school year keeps the year (the latest record's), so
            // only its own records' figures are counted again, and those are all held (a
            // correction that moves a referral or grade to another date included).
            EventBody::ReferralRecorded { .. } | EventBody::GradePosted { .. } => false,
            // The alert planner looks at the days around today for a new assignment, whatever
            // its date (rare: made whole).
            EventBody::AdvocateAssigned { .. } | EventBody::Enrolled { .. } => true,
            EventBody::CalendarDay { .. } => false,
        }
    }

    /// Roughly the heap bytes this state holds (for bounding caches of states): its vectors, and
    /// event ids too long to sit inline (over 24 bytes) in its attendance records.
    pub fn approx_bytes(&self) -> usize {
        let long_ids: usize = (self.attendance.iter())
            .filter(|r| r.version.event_id.is_heap_allocated())
            .map(|r| r.version.event_id.capacity())
            .sum();
        self.approx_bytes_at_least() + long_ids
    }

    /// [`StudentState::approx_bytes`] but the attendance records' event ids too long to be kept
    /// inline: a lower bound, found without reading the records.
    pub fn approx_bytes_at_least(&self) -> usize {
        use std::mem::size_of;
        size_of::<StudentState>()
            + (self.seen.capacity() + self.others.capacity()) * size_of::<u64>()
            + self.attendance.capacity() * size_of::<AttendanceRecord>()
            + self.referrals.capacity() * (size_of::<ReferralRecord>() + 16)
            + self.grades.capacity() * (size_of::<GradeRecord>() + 32)
            + self.enrollments.capacity() * (size_of::<EnrollmentRecord>() + 16)
            + self.raises.capacity() * size_of::<(SchoolYear, [u32; 5])>()
            + self
                .older
                .as_ref()
                .map_or(0, |o| size_of::<Older>() + o.fingerprints.capacity() * size_of::<u32>())
            + self.aside.as_ref().map_or(0, |ids| ids.len() * size_of::<u64>())
    }

    /// Keeps the event's record if it beats the stored winner of its natural key. `None`: it
    /// lost, nothing changed; `Some(replaced)`: it is the winner now.
    /// A replaced record's id joins `others`; what changed is noted in `changes`.
    fn upsert(&mut self, e: &Event) -> Option<Option<Replaced>> {
        let version = Version::of(e);
        let (replaced, old_id) = match &e.body {
            EventBody::AttendanceRecorded { status } => {
                let rec = AttendanceRecord { date: e.date, status: *status, version };
                let done = upsert_sorted(&mut self.attendance, rec)?;
                self.changes.attendance_on(e.date);
                done
            }
            EventBody::ReferralRecorded { referral_id, action, retracted, .. } => {
                let rec = ReferralRecord {
                    referral_id: (**referral_id).into(),
                    date: e.date,
                    action: *action,
                    retracted: *retracted,
                    version,
                };
                let done = upsert_sorted(&mut self.referrals, rec)?;
                self.changes.referrals = true;
                done
            }
            EventBody::GradePosted {
                section_id, grading_period, subject, mark, retracted, ..
            } => {
                let rec = GradeRecord {
                    section_id: (**section_id).into(),
                    grading_period: (**grading_period).into(),
                    date: e.date,
                    subject: *subject,
                    mark: *mark,
                    retracted: *retracted,
                    version,
                };
                let done = upsert_sorted(&mut self.grades, rec)?;
                self.changes.grades = true;
                done
            }
            EventBody::AdvocateAssigned { advocate_id, advocate } => {
                let done = match &self.assignment {
                    Some(a) if version <= a.version => return None,
                    Some(a) => (
                        Some(Replaced { date: a.date, live: true, absence: false }),
                        Some(xxh3_64(a.version.event_id.as_bytes())),
                    ),
                    None => (None, None),
                };
                self.assignment = Some(Box::new(AssignmentRecord {
                    date: e.date,
                    advocate_id: advocate_id.as_deref().map(Into::into),
                    advocate: advocate.clone(),
                    version,
                }));
                self.changes.assignment = true;
                done
            }
            EventBody::Enrolled { exit_date, retracted } => {
                let rec = EnrollmentRecord {
                    school_id: (*e.school_id).into(),
                    date: e.date,
                    exit_date: *exit_date,
                    retracted: *retracted,
                    version,
                };
                let done = upsert_sorted(&mut self.enrollments, rec)?;
                self.changes.enrollments = true;
                done
            }
            // The schools' table, not a student's record: nothing of the student changes.
            EventBody::CalendarDay { .. } => return None,
        };
        if let Some(id) = old_id {
            insert_sorted(&mut self.others, id);
            self.changes.others = true;
        }
        Some(replaced)
    }

    /// The latest date among the winning, non-retracted records of any type.
    fn latest_date(&self) -> Option<Date> {
        let attendance =
            self.attendance.iter().rev().find(|r| r.status != AttendanceStatus::Retracted);
        [
            attendance.map(|r| r.date),
            self.referrals.iter().filter(|r| !r.retracted).map(|r| r.date).max(),
            self.grades.iter().filter(|g| !g.retracted).map(|g| g.date).max(),
            self.assignment.as_ref().map(|a| a.date),
            self.enrollments.iter().filter(|e| !e.retracted).map(|e| e.date).max(),
        ]
        .into_iter()
        .flatten()
        .max()
    }

    /// Runs the five rules in table order over the cached figures; each sees the flags above it
    /// already updated. Evidence is built only for a change.
    fn evaluate(&mut self, rules: &Rules, cause: &Cause, out: &mut Vec<FlagChange>) {
        let f = self.figures;
        for &flag in Flag::ALL {
            let (raise, clear) = match flag {
                Flag::Attendance => {
                    let a = &rules.attendance;
                    let enough_days = f.days_enrolled >= a.min_days_enrolled;
                    let rate = f.absence_rate();
                    (
                        enough_days && rate >= a.raise_at_rate,
                        !enough_days || rate < a.clear_below_rate,
                    )
                }
                Flag::ConsecutiveAbsences => {
                    (f.streak >= rules.consecutive_absences.raise_at_streak, f.streak == 0)
                }
                Flag::Behavior => {
                    let b = &rules.behavior;
                    let holds = f.suspensions >= b.raise_at_suspensions
                        || f.referrals >= b.raise_at_referrals;
                    (holds, !holds)
                }
                Flag::CoursePerformance => {
                    let c = &rules.course_performance;
                    let holds =
                        f.core_f >= c.raise_at_core_f || f.core_d_or_f >= c.raise_at_core_d_or_f;
                    (holds, !holds)
                }
                Flag::OffTrack => {
                    let raised = Flag::INDICATORS.iter().filter(|i| self.is_raised(**i)).count();
                    let holds = raised as u32 >= rules.off_track.raise_at_indicators;
                    (holds, !holds)
                }
            };
            match (self.is_raised(flag), raise, clear, self.current_year) {
                (false, true, _, Some(year)) => {
                    let evidence = self.evidence(flag);
                    out.push(self.raise(flag, year, cause, evidence));
                }
                (true, _, true, _) => {
                    let evidence = self.evidence(flag);
                    out.push(self.clear(flag, cause, Some(evidence)));
                }
                _ => {}
            }
        }
    }

    /// The figures behind `flag`, as they are now.
    fn evidence(&self, flag: Flag) -> Evidence {
        let f = &self.figures;
        match flag {
            Flag::Attendance => Evidence::Attendance {
                days_enrolled: f.days_enrolled,
                days_absent: f.days_absent,
                absence_rate: f.absence_rate(),
            },
            Flag::ConsecutiveAbsences => Evidence::ConsecutiveAbsences { streak: f.streak },
            Flag::Behavior => {
                Evidence::Behavior { referrals: f.referrals, suspensions: f.suspensions }
            }
            Flag::CoursePerformance => {
                Evidence::CoursePerformance { core_f: f.core_f, core_d_or_f: f.core_d_or_f }
            }
            Flag::OffTrack => Evidence::OffTrack {
                indicators: Flag::INDICATORS.into_iter().filter(|i| self.is_raised(*i)).collect(),
            },
        }
    }

    fn raise(
        &mut self,
        flag: Flag,
        year: SchoolYear,
        cause: &Cause,
        evidence: Evidence,
    ) -> FlagChange {
        let counts = match self.raises.iter_mut().position(|(y, _)| *y == year) {
            Some(i) => &mut self.raises[i].1,
            None => {
                self.raises.push((year, [0; 5]));
                &mut self.raises.last_mut().expect("just pushed").1
            }
        };
        counts[flag.index()] += 1;
        let raised = RaisedFlag { school_year: year, n: counts[flag.index()] };
        self.raised[flag.index()] = Some(raised);
        change(Change::Raised, flag, raised, cause, Some(evidence))
    }

    fn clear(&mut self, flag: Flag, cause: &Cause, evidence: Option<Evidence>) -> FlagChange {
        let raised = self.raised[flag.index()].take().expect("only raised flags are cleared");
        change(Change::Cleared, flag, raised, cause, evidence)
    }
}

/// Where `h` is (`Ok`) or belongs (`Err`) in the sorted `hashes`.
///
/// The hashes are uniform over `u64`, so `h` sits within a few places of `len * h / 2^64`:
/// start there and walk. A binary search would fetch about log2(len) cache lines from memory
/// for every event; this fetches one or two (measured in BENCHMARKS.md).
fn find_hash(hashes: &[u64], h: u64) -> Result<usize, usize> {
    let guess = ((u128::from(h) * hashes.len() as u128) >> 64) as usize;
    let mut i = guess;
    if hashes.get(i).is_some_and(|x| *x < h) {
        while hashes.get(i).is_some_and(|x| *x < h) {
            i += 1;
        }
    } else {
        while i > 0 && hashes[i - 1] >= h {
            i -= 1;
        }
    }
    if hashes.get(i) == Some(&h) { Ok(i) } else { Err(i) }
}

/// Inserts `h` into the sorted `hashes` (it is not there: every id is applied once).
fn insert_sorted(hashes: &mut Vec<u64>, h: u64) {
    let at = hashes.partition_point(|x| *x < h);
    hashes.insert(at, h);
}

/// The stored record an event's record replaced: what the cached figures must take back.
#[derive(Debug, Clone, Copy)]
struct Replaced {
    date: Date,
    /// Not a tombstone.
    live: bool,
    /// An attendance absence.
    absence: bool,
}

fn change(
    change: Change,
    flag: Flag,
    raised: RaisedFlag,
    cause: &Cause,
    evidence: Option<Evidence>,
) -> FlagChange {
    FlagChange {
        change,
        flag,
        school_year: raised.school_year,
        n: raised.n,
        student_id: cause.student_id.to_owned(),
        school_id: cause.school_id.to_owned(),
        as_of: cause.date,
        caused_by: cause.id.to_owned(),
        evidence,
    }
}

/// A record kept once per natural key.
trait Keyed {
    type Key<'a>: Ord
    where
        Self: 'a;
    fn key(&self) -> Self::Key<'_>;
    fn version(&self) -> &Version;
    /// What the figures must take back when this record is replaced.
    fn replaced(&self) -> Replaced;
}

impl Keyed for AttendanceRecord {
    type Key<'a> = Date;
    fn key(&self) -> Date {
        self.date
    }
    fn version(&self) -> &Version {
        &self.version
    }
    fn replaced(&self) -> Replaced {
        Replaced {
            date: self.date,
            live: self.status != AttendanceStatus::Retracted,
            absence: self.status.is_absence(),
        }
    }
}

impl Keyed for EnrollmentRecord {
    type Key<'a> = (&'a str, Date);
    fn key(&self) -> (&str, Date) {
        (&self.school_id, self.date)
    }
    fn version(&self) -> &Version {
        &self.version
    }
    fn replaced(&self) -> Replaced {
        Replaced { date: self.date, live: !self.retracted, absence: false }
    }
}

impl Keyed for ReferralRecord {
    type Key<'a> = &'a str;
    fn key(&self) -> &str {
        &self.referral_id
    }
    fn version(&self) -> &Version {
        &self.version
    }
    fn replaced(&self) -> Replaced {
        Replaced { date: self.date, live: !self.retracted, absence: false }
    }
}

impl Keyed for GradeRecord {
    type Key<'a> = (&'a str, &'a str);
    fn key(&self) -> (&str, &str) {
        (&self.section_id, &self.grading_period)
    }
    fn version(&self) -> &Version {
        &self.version
    }
    fn replaced(&self) -> Replaced {
        Replaced { date: self.date, live: !self.retracted, absence: false }
    }
}

/// Inserts `rec` at its key's place, or replaces the stored record there if `rec` is newer.
/// `None`: `rec` lost; `Some((replaced, its id hash))`: `rec` is stored.
fn upsert_sorted<R: Keyed>(
    records: &mut Vec<R>,
    rec: R,
) -> Option<(Option<Replaced>, Option<u64>)> {
    // Attendance arrives mostly in date order: check the end before searching.
    let found = match records.last() {
        Some(last) if last.key() < rec.key() => Err(records.len()),
        _ => records.binary_search_by(|r| r.key().cmp(&rec.key())),
    };
    match found {
        Ok(i) if rec.version() > records[i].version() => {
            let replaced = records[i].replaced();
            let old_id = xxh3_64(records[i].version().event_id.as_bytes());
            records[i] = rec;
            Some((Some(replaced), Some(old_id)))
        }
        Ok(_) => None,
        Err(i) => {
            records.insert(i, rec);
            Some((None, None))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::find_hash;

    #[test]
    fn find_hash_agrees_with_binary_search() {
        let mut hashes: Vec<u64> = Vec::new();
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..500 {
            // splitmix64 steps: uniform values, and some repeated to test hits.
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            let h = z ^ (z >> 31);
            for probe in [h, h / 3, u64::MAX - h, 0, u64::MAX] {
                assert_eq!(find_hash(&hashes, probe), hashes.binary_search(&probe), "{probe}");
            }
            if let Err(at) = find_hash(&hashes, h) {
                hashes.insert(at, h);
            }
        }
        // Clustered values (not uniform) still give the right answer.
        let clustered: Vec<u64> = (0..300).collect();
        for probe in [0, 5, 299, 300, u64::MAX] {
            assert_eq!(find_hash(&clustered, probe), clustered.binary_search(&probe));
        }
    }
}

//! The per-student fold: winning records per natural key, figures derived from them, and the
//! rules evaluated after every event.
//!
//! For each natural key the record with the greatest `(recorded_at, event_id)` wins, whatever the
//! order of arrival; a winning tombstone (`retracted`) counts as no record. Every figure is
//! derived from the winning records, so the final records and figures do not depend on order.
//! Only the flags carry history (hysteresis, raise counts), as DESIGN.md intends.

use serde::{Deserialize, Serialize};
use time::Date;
use xxhash_rust::xxh3::xxh3_64;

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
    pub event_id: Box<str>,
}

impl Version {
    fn of(e: &Event) -> Version {
        Version {
            recorded_at: e.recorded_at,
            event_id: e.event_id.as_str().into(),
        }
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

/// The figures of DESIGN.md for one student over one school year.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StudentState {
    /// xxh3-64 of every `event_id` applied, sorted: a repeat is a duplicate and changes nothing.
    seen: Vec<u64>,
    /// One record per date, sorted by date.
    attendance: Vec<AttendanceRecord>,
    /// One record per referral, sorted by `referral_id`.
    referrals: Vec<ReferralRecord>,
    /// One record per (section, grading period), sorted by that pair.
    grades: Vec<GradeRecord>,
    assignment: Option<AssignmentRecord>,
    current_year: Option<SchoolYear>,
    /// The raised flags, by [`Flag::index`].
    raised: [Option<RaisedFlag>; 5],
    /// How many times each flag was raised, per school year (for `n` of the next raise).
    raises: Vec<(SchoolYear, [u32; 5])>,
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
        let id_hash = xxh3_64(event.event_id.as_bytes());
        match self.seen.binary_search(&id_hash) {
            Ok(_) => return Outcome::Duplicate,
            Err(at) => self.seen.insert(at, id_hash),
        }
        self.upsert(event);

        let mut changes = Vec::new();
        let year = self.latest_date().map(|d| rules.school_year_of(d));
        // A move to another school year (forward, or back when the only later record was
        // retracted) first clears every raised flag, with no evidence: the figures they stood on
        // belong to a year that no longer counts.
        if let (Some(old), Some(new)) = (self.current_year, year)
            && old != new
        {
            for flag in Flag::ALL {
                if self.is_raised(*flag) {
                    changes.push(self.clear(*flag, event, None));
                }
            }
        }
        // With no record left at all there is no school year: the rules see empty figures.
        self.current_year = year;
        let figures = self.figures(rules).map(|(_, f)| f).unwrap_or_default();
        self.evaluate(year, &figures, rules, event, &mut changes);
        Outcome::Applied(changes)
    }

    /// The current school year and its figures; `None` before any (non-retracted) record.
    pub fn figures(&self, rules: &Rules) -> Option<(SchoolYear, Figures)> {
        let year = self.current_year?;
        let in_year = |d: Date| rules.school_year_of(d) == year;
        let mut f = Figures::default();

        // Records are sorted by date and the school year grows with the date: one slice.
        let lo = self
            .attendance
            .partition_point(|r| rules.school_year_of(r.date) < year);
        let hi = self
            .attendance
            .partition_point(|r| rules.school_year_of(r.date) <= year);
        let days = &self.attendance[lo..hi];
        for r in days {
            if r.status != AttendanceStatus::Retracted {
                f.days_enrolled += 1;
                f.days_absent += u32::from(r.status.is_absence());
            }
        }
        f.streak = days
            .iter()
            .rev()
            .filter(|r| r.status != AttendanceStatus::Retracted)
            .take_while(|r| r.status.is_absence())
            .count() as u32;

        for r in self
            .referrals
            .iter()
            .filter(|r| !r.retracted && in_year(r.date))
        {
            f.referrals += 1;
            f.suspensions += u32::from(r.action.is_suspension());
        }

        // Sorted by (section, period): a section's current mark is its last live record.
        let cp = &rules.course_performance;
        let live = self
            .grades
            .iter()
            .filter(|g| !g.retracted && in_year(g.date));
        let mut current: Option<&GradeRecord> = None;
        for g in live.map(Some).chain([None]) {
            if let Some(c) = current
                && g.is_none_or(|g| g.section_id != c.section_id)
                && c.subject.is_core()
            {
                match c.mark.band(cp.f_below_numeric, cp.d_below_numeric) {
                    MarkBand::F => {
                        f.core_f += 1;
                        f.core_d_or_f += 1;
                    }
                    MarkBand::D => f.core_d_or_f += 1,
                    MarkBand::Passing => {}
                }
            }
            current = g;
        }
        Some((year, f))
    }

    /// Whether `flag` is raised now.
    pub fn is_raised(&self, flag: Flag) -> bool {
        self.raised[flag.index()].is_some()
    }

    /// The raised flags with their `flag_id`s' year and `n`, in table order.
    pub fn raised_flags(&self) -> impl Iterator<Item = (Flag, RaisedFlag)> + '_ {
        Flag::ALL
            .iter()
            .filter_map(|f| self.raised[f.index()].map(|r| (*f, r)))
    }

    /// The student's current advocate, if any.
    pub fn assignment(&self) -> Option<&AssignmentRecord> {
        self.assignment.as_ref()
    }

    /// The winning records, for comparing two states record by record.
    pub fn records(
        &self,
    ) -> (
        &[AttendanceRecord],
        &[ReferralRecord],
        &[GradeRecord],
        Option<&AssignmentRecord>,
    ) {
        (
            &self.attendance,
            &self.referrals,
            &self.grades,
            self.assignment.as_ref(),
        )
    }

    /// How many distinct events were applied.
    pub fn events_applied(&self) -> usize {
        self.seen.len()
    }

    /// Keeps the event's record if it beats the stored winner of its natural key.
    fn upsert(&mut self, e: &Event) {
        let version = Version::of(e);
        match &e.body {
            EventBody::AttendanceRecorded { status } => {
                let rec = AttendanceRecord {
                    date: e.date,
                    status: *status,
                    version,
                };
                upsert_sorted(&mut self.attendance, rec);
            }
            EventBody::ReferralRecorded {
                referral_id,
                action,
                retracted,
                ..
            } => {
                let rec = ReferralRecord {
                    referral_id: referral_id.as_str().into(),
                    date: e.date,
                    action: *action,
                    retracted: *retracted,
                    version,
                };
                upsert_sorted(&mut self.referrals, rec);
            }
            EventBody::GradePosted {
                section_id,
                grading_period,
                subject,
                mark,
                retracted,
                ..
            } => {
                let rec = GradeRecord {
                    section_id: section_id.as_str().into(),
                    grading_period: grading_period.as_str().into(),
                    date: e.date,
                    subject: *subject,
                    mark: *mark,
                    retracted: *retracted,
                    version,
                };
                upsert_sorted(&mut self.grades, rec);
            }
            EventBody::AdvocateAssigned {
                advocate_id,
                advocate,
            } => {
                if self.assignment.as_ref().is_none_or(|a| version > a.version) {
                    self.assignment = Some(AssignmentRecord {
                        date: e.date,
                        advocate_id: advocate_id.as_deref().map(Into::into),
                        advocate: advocate.clone(),
                        version,
                    });
                }
            }
        }
    }

    /// The latest date among the winning, non-retracted records of any type.
    fn latest_date(&self) -> Option<Date> {
        let attendance = self
            .attendance
            .iter()
            .rev()
            .find(|r| r.status != AttendanceStatus::Retracted);
        [
            attendance.map(|r| r.date),
            self.referrals
                .iter()
                .filter(|r| !r.retracted)
                .map(|r| r.date)
                .max(),
            self.grades
                .iter()
                .filter(|g| !g.retracted)
                .map(|g| g.date)
                .max(),
            self.assignment.as_ref().map(|a| a.date),
        ]
        .into_iter()
        .flatten()
        .max()
    }

    /// Runs the five rules in table order; each sees the flags above it already updated.
    fn evaluate(
        &mut self,
        year: Option<SchoolYear>,
        f: &Figures,
        rules: &Rules,
        event: &Event,
        out: &mut Vec<FlagChange>,
    ) {
        for &flag in Flag::ALL {
            let (raise, clear, evidence) = match flag {
                Flag::Attendance => {
                    let a = &rules.attendance;
                    let rate = f.absence_rate();
                    let enough_days = f.days_enrolled >= a.min_days_enrolled;
                    (
                        enough_days && rate >= a.raise_at_rate,
                        !enough_days || rate < a.clear_below_rate,
                        Evidence::Attendance {
                            days_enrolled: f.days_enrolled,
                            days_absent: f.days_absent,
                            absence_rate: rate,
                        },
                    )
                }
                Flag::ConsecutiveAbsences => (
                    f.streak >= rules.consecutive_absences.raise_at_streak,
                    f.streak == 0,
                    Evidence::ConsecutiveAbsences { streak: f.streak },
                ),
                Flag::Behavior => {
                    let b = &rules.behavior;
                    let holds = f.suspensions >= b.raise_at_suspensions
                        || f.referrals >= b.raise_at_referrals;
                    let ev = Evidence::Behavior {
                        referrals: f.referrals,
                        suspensions: f.suspensions,
                    };
                    (holds, !holds, ev)
                }
                Flag::CoursePerformance => {
                    let c = &rules.course_performance;
                    let holds =
                        f.core_f >= c.raise_at_core_f || f.core_d_or_f >= c.raise_at_core_d_or_f;
                    let ev = Evidence::CoursePerformance {
                        core_f: f.core_f,
                        core_d_or_f: f.core_d_or_f,
                    };
                    (holds, !holds, ev)
                }
                Flag::OffTrack => {
                    let indicators: Vec<Flag> = Flag::INDICATORS
                        .into_iter()
                        .filter(|i| self.is_raised(*i))
                        .collect();
                    let holds = indicators.len() as u32 >= rules.off_track.raise_at_indicators;
                    (holds, !holds, Evidence::OffTrack { indicators })
                }
            };
            match (self.is_raised(flag), raise, clear, year) {
                (false, true, _, Some(year)) => out.push(self.raise(flag, year, event, evidence)),
                (true, _, true, _) => out.push(self.clear(flag, event, Some(evidence))),
                _ => {}
            }
        }
    }

    fn raise(
        &mut self,
        flag: Flag,
        year: SchoolYear,
        event: &Event,
        evidence: Evidence,
    ) -> FlagChange {
        let counts = match self.raises.iter_mut().find(|(y, _)| *y == year) {
            Some((_, counts)) => counts,
            None => {
                self.raises.push((year, [0; 5]));
                &mut self.raises.last_mut().expect("just pushed").1
            }
        };
        counts[flag.index()] += 1;
        let raised = RaisedFlag {
            school_year: year,
            n: counts[flag.index()],
        };
        self.raised[flag.index()] = Some(raised);
        change(Change::Raised, flag, raised, event, Some(evidence))
    }

    fn clear(&mut self, flag: Flag, event: &Event, evidence: Option<Evidence>) -> FlagChange {
        let raised = self.raised[flag.index()]
            .take()
            .expect("only raised flags are cleared");
        change(Change::Cleared, flag, raised, event, evidence)
    }
}

fn change(
    change: Change,
    flag: Flag,
    raised: RaisedFlag,
    event: &Event,
    evidence: Option<Evidence>,
) -> FlagChange {
    FlagChange {
        change,
        flag,
        school_year: raised.school_year,
        n: raised.n,
        student_id: event.student_id.clone(),
        school_id: event.school_id.clone(),
        as_of: event.date,
        caused_by: event.event_id.clone(),
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
}

impl Keyed for AttendanceRecord {
    type Key<'a> = Date;
    fn key(&self) -> Date {
        self.date
    }
    fn version(&self) -> &Version {
        &self.version
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
}

impl Keyed for GradeRecord {
    type Key<'a> = (&'a str, &'a str);
    fn key(&self) -> (&str, &str) {
        (&self.section_id, &self.grading_period)
    }
    fn version(&self) -> &Version {
        &self.version
    }
}

/// Inserts `rec` at its key's place, or replaces the stored record there if `rec` is newer.
fn upsert_sorted<R: Keyed>(records: &mut Vec<R>, rec: R) {
    // Attendance arrives mostly in date order: check the end before searching.
    let found = match records.last() {
        Some(last) if last.key() < rec.key() => Err(records.len()),
        _ => records.binary_search_by(|r| r.key().cmp(&rec.key())),
    };
    match found {
        Ok(i) if rec.version() > records[i].version() => records[i] = rec,
        Ok(_) => {}
        Err(i) => records.insert(i, rec),
    }
}

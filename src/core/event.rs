//! Typed input events (event contract v1.1), as the decoder hands them to the fold.
//!
//! Only what ontrack uses is kept: a discipline referral's `behavior` text is validated by the
//! decoder and then dropped, so it can never reach state, logs or notifications.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use time::Date;

/// When the SIS recorded a record, as an instant: seconds since the Unix epoch (UTC) and the
/// nanoseconds within that second (fraction digits past nine are cut).
///
/// Comparing instants, not strings, makes `2026-09-01T09:00:00+01:00` and
/// `2026-09-01T08:00:00Z` the same moment, as RFC 3339 says they are. A leap second
/// (`23:59:60`) sorts after `23:59:59` and before the next day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RecordedAt {
    pub secs: i64,
    pub nanos: u32,
}

/// One decoded input event: the common fields and what the type adds.
///
/// Text borrows from the message where it can (`'a`), so decoding an attendance record
/// allocates nothing; [`Event::into_owned`] detaches it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event<'a> {
    pub event_id: Cow<'a, str>,
    pub student_id: Cow<'a, str>,
    pub school_id: Cow<'a, str>,
    /// School-local calendar date the record is about.
    pub date: Date,
    pub recorded_at: RecordedAt,
    /// The calendar date of `recorded_at` where it was written (its own UTC offset): a record
    /// whose `date` is after it is about the future and does not make school days pass.
    pub recorded_on: Date,
    pub body: EventBody<'a>,
}

/// What happened, by event type.
#[derive(Debug, Clone, PartialEq)]
pub enum EventBody<'a> {
    AttendanceRecorded {
        status: AttendanceStatus,
    },
    ReferralRecorded {
        referral_id: Cow<'a, str>,
        action: DisciplineAction,
        action_days: Option<f64>,
        retracted: bool,
    },
    GradePosted {
        section_id: Cow<'a, str>,
        course_code: Cow<'a, str>,
        subject: Subject,
        grading_period: Cow<'a, str>,
        mark: Mark,
        retracted: bool,
    },
    AdvocateAssigned {
        /// `None` ends the student's assignment.
        advocate_id: Option<Cow<'a, str>>,
        advocate: Option<AdvocateContact>,
    },
    /// Enrolled at `school_id` from `date` (the first enrolled day) to `exit_date` (the last;
    /// `None`: still enrolled).
    Enrolled {
        exit_date: Option<Date>,
        retracted: bool,
    },
    /// Whether `date` is a school day at `school_id`. Not about a student: `student_id` is empty.
    CalendarDay {
        instructional: bool,
        retracted: bool,
    },
}

impl Event<'_> {
    /// The same event, owning its text.
    pub fn into_owned(self) -> Event<'static> {
        let own = |c: Cow<'_, str>| Cow::Owned(c.into_owned());
        Event {
            event_id: own(self.event_id),
            student_id: own(self.student_id),
            school_id: own(self.school_id),
            date: self.date,
            recorded_at: self.recorded_at,
            recorded_on: self.recorded_on,
            body: match self.body {
                EventBody::AttendanceRecorded { status } => {
                    EventBody::AttendanceRecorded { status }
                }
                EventBody::ReferralRecorded { referral_id, action, action_days, retracted } => {
                    EventBody::ReferralRecorded {
                        referral_id: own(referral_id),
                        action,
                        action_days,
                        retracted,
                    }
                }
                EventBody::GradePosted {
                    section_id,
                    course_code,
                    subject,
                    grading_period,
                    mark,
                    retracted,
                } => EventBody::GradePosted {
                    section_id: own(section_id),
                    course_code: own(course_code),
                    subject,
                    grading_period: own(grading_period),
                    mark,
                    retracted,
                },
                EventBody::AdvocateAssigned { advocate_id, advocate } => {
                    EventBody::AdvocateAssigned { advocate_id: advocate_id.map(own), advocate }
                }
                EventBody::Enrolled { exit_date, retracted } => {
                    EventBody::Enrolled { exit_date, retracted }
                }
                EventBody::CalendarDay { instructional, retracted } => {
                    EventBody::CalendarDay { instructional, retracted }
                }
            },
        }
    }

    /// Whether the event's record counts (a retraction is a tombstone; an assignment always
    /// counts).
    pub fn is_live(&self) -> bool {
        match &self.body {
            EventBody::AttendanceRecorded { status } => *status != AttendanceStatus::Retracted,
            EventBody::ReferralRecorded { retracted, .. }
            | EventBody::GradePosted { retracted, .. }
            | EventBody::Enrolled { retracted, .. }
            | EventBody::CalendarDay { retracted, .. } => !retracted,
            EventBody::AdvocateAssigned { .. } => true,
        }
    }

    /// The contract's `type` of this event.
    pub fn kind(&self) -> EventKind {
        match self.body {
            EventBody::AttendanceRecorded { .. } => EventKind::Attendance,
            EventBody::ReferralRecorded { .. } => EventKind::Discipline,
            EventBody::GradePosted { .. } => EventKind::Grade,
            EventBody::AdvocateAssigned { .. } => EventKind::Assignment,
            EventBody::Enrolled { .. } => EventKind::Enrollment,
            EventBody::CalendarDay { .. } => EventKind::Calendar,
        }
    }

    /// Whether the record is about a day after the one it was recorded on (a planned absence, a
    /// calendar sent ahead): such a record does not make school days pass.
    pub fn is_future(&self) -> bool {
        self.date > self.recorded_on
    }
}

wire_enum!(
    /// The `type` field of the event contract; each kind has its own input topic. In the
    /// contract table's order, which breaks ties of time across topics.
    EventKind {
        Attendance = "attendance",
        Discipline = "discipline",
        Grade = "grade",
        Assignment = "assignment",
        Enrollment = "enrollment",
        Calendar = "calendar",
    }
);

wire_enum!(
    /// `attendance.status`.
    AttendanceStatus {
        Present = "present",
        Tardy = "tardy",
        AbsentExcused = "absent_excused",
        AbsentUnexcused = "absent_unexcused",
        Retracted = "retracted",
    }
);

impl AttendanceStatus {
    pub fn is_absence(self) -> bool {
        matches!(self, AttendanceStatus::AbsentExcused | AttendanceStatus::AbsentUnexcused)
    }
}

wire_enum!(
    /// `discipline.action`.
    DisciplineAction {
        None = "none",
        Detention = "detention",
        InSchoolSuspension = "in_school_suspension",
        OutOfSchoolSuspension = "out_of_school_suspension",
        Expulsion = "expulsion",
    }
);

impl DisciplineAction {
    /// Actions that count as `suspensions` in the behavior rule.
    pub fn is_suspension(self) -> bool {
        matches!(
            self,
            DisciplineAction::InSchoolSuspension
                | DisciplineAction::OutOfSchoolSuspension
                | DisciplineAction::Expulsion
        )
    }
}

wire_enum!(
    /// `grade.subject`.
    Subject {
        Ela = "ela",
        Math = "math",
        Science = "science",
        SocialStudies = "social_studies",
        Other = "other",
    }
);

impl Subject {
    pub fn is_core(self) -> bool {
        !matches!(self, Subject::Other)
    }
}

/// A posted mark: a letter grade, a numeric grade, or both (at least one).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Mark {
    /// The letter (`b'A'..=b'F'`) and an optional `+`/`-`, as two ASCII bytes (`b' '` for none).
    pub letter: Option<[u8; 2]>,
    pub numeric: Option<f64>,
}

/// A mark's band for the course-performance rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkBand {
    F,
    D,
    Passing,
}

impl Mark {
    /// The letter decides when there is one; otherwise the numeric grade against the thresholds.
    pub fn band(&self, f_below: f64, d_below: f64) -> MarkBand {
        match (self.letter, self.numeric) {
            (Some([b'F', _]), _) => MarkBand::F,
            (Some([b'D', _]), _) => MarkBand::D,
            (Some(_), _) => MarkBand::Passing,
            (None, Some(n)) if n < f_below => MarkBand::F,
            (None, Some(n)) if n < d_below => MarkBand::D,
            (None, _) => MarkBand::Passing,
        }
    }
}

/// Contact details of an advocate; the latest record for an advocate wins.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AdvocateContact {
    pub name: Option<String>,
    pub email: Option<String>,
    pub webhook_url: Option<String>,
    pub timezone: Option<String>,
}

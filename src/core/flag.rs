//! Flags and the changes the rules emit; `output` turns a [`FlagChange`] into the wire event.

use serde::Serialize;
use time::Date;

use super::rules::SchoolYear;

wire_enum!(
    /// The five flags, in table order: the order rules run and changes are emitted in.
    Flag {
        Attendance = "attendance",
        ConsecutiveAbsences = "consecutive_absences",
        Behavior = "behavior",
        CoursePerformance = "course_performance",
        OffTrack = "off_track",
    }
);

impl Flag {
    /// Position in table order.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The ABC indicators that `off_track` counts.
    pub const INDICATORS: [Flag; 3] = [Flag::Attendance, Flag::Behavior, Flag::CoursePerformance];
}

/// Raised or cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Change {
    Raised,
    Cleared,
}

impl Change {
    /// The output event's `type`.
    pub fn event_type(self) -> &'static str {
        match self {
            Change::Raised => "flag.raised",
            Change::Cleared => "flag.cleared",
        }
    }
}

/// The figures behind a flag change (the output's `evidence`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Evidence {
    Attendance { days_enrolled: u32, days_absent: u32, absence_rate: f64 },
    ConsecutiveAbsences { streak: u32 },
    Behavior { referrals: u32, suspensions: u32 },
    CoursePerformance { core_f: u32, core_d_or_f: u32 },
    OffTrack { indicators: Vec<Flag> },
}

/// One flag raised or cleared for one student, caused by one event.
#[derive(Debug, Clone, PartialEq)]
pub struct FlagChange {
    pub change: Change,
    pub flag: Flag,
    /// The school year of the raise (a clear carries its raise's year).
    pub school_year: SchoolYear,
    /// 1 for the first raise of this flag for this student in this school year.
    pub n: u32,
    pub student_id: String,
    /// Of the event that caused the change.
    pub school_id: String,
    /// The date of the event that caused the change.
    pub as_of: Date,
    /// The `event_id` that caused the change.
    pub caused_by: String,
    /// `None` on a clear caused by a change of school year.
    pub evidence: Option<Evidence>,
}

impl FlagChange {
    /// `"{school_year}/{student_id}/{flag}/{n}"`: the same raise always gets the same id.
    pub fn flag_id(&self) -> String {
        format!("{}/{}/{}/{}", self.school_year, self.student_id, self.flag, self.n)
    }
}

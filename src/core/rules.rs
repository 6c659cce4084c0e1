//! Rules v1: the thresholds of DESIGN.md, and the TOML rules file that overrides them.
//!
//! Parsing a rules file is pure (`&str` in, [`Rules`] out); reading the file is the caller's job.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::{Date, Month};

/// Every threshold of the five rules, and where the school year starts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rules {
    pub school_year: SchoolYearRule,
    pub attendance: AttendanceRule,
    pub consecutive_absences: ConsecutiveAbsencesRule,
    pub behavior: BehaviorRule,
    pub course_performance: CoursePerformanceRule,
    pub off_track: OffTrackRule,
}

/// `[school_year]`: the first day of every school year.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchoolYearRule {
    /// Month (1–12) the school year starts in.
    pub start_month: u8,
    /// Day of that month (1–31) the school year starts on.
    pub start_day: u8,
}

/// `[attendance]`: chronic absence, with hysteresis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AttendanceRule {
    /// No raise before this many enrolled days; fewer clears the flag.
    pub min_days_enrolled: u32,
    /// Raise when `absence_rate` ≥ this.
    pub raise_at_rate: f64,
    /// Clear when `absence_rate` < this (≤ `raise_at_rate`).
    pub clear_below_rate: f64,
}

/// `[consecutive_absences]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsecutiveAbsencesRule {
    /// Raise when this many latest-dated attendance records are all absences.
    pub raise_at_streak: u32,
}

/// `[behavior]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BehaviorRule {
    /// Raise at this many suspensions (in-school, out-of-school or expulsion).
    pub raise_at_suspensions: u32,
    /// Raise at this many referrals of any action.
    pub raise_at_referrals: u32,
}

/// `[course_performance]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoursePerformanceRule {
    /// Raise at this many core sections whose current mark is F.
    pub raise_at_core_f: u32,
    /// Raise at this many core sections whose current mark is D or F.
    pub raise_at_core_d_or_f: u32,
    /// Without a letter grade, a numeric grade below this is an F.
    pub f_below_numeric: f64,
    /// Without a letter grade, a numeric grade below this (and not an F) is a D.
    pub d_below_numeric: f64,
}

/// `[off_track]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OffTrackRule {
    /// Raise when this many of `attendance`, `behavior`, `course_performance` are raised (1–3).
    pub raise_at_indicators: u32,
}

impl Default for SchoolYearRule {
    fn default() -> Self {
        SchoolYearRule { start_month: 7, start_day: 1 }
    }
}
impl Default for AttendanceRule {
    fn default() -> Self {
        AttendanceRule { min_days_enrolled: 10, raise_at_rate: 0.10, clear_below_rate: 0.09 }
    }
}
impl Default for ConsecutiveAbsencesRule {
    fn default() -> Self {
        ConsecutiveAbsencesRule { raise_at_streak: 3 }
    }
}
impl Default for BehaviorRule {
    fn default() -> Self {
        BehaviorRule { raise_at_suspensions: 1, raise_at_referrals: 3 }
    }
}
impl Default for CoursePerformanceRule {
    fn default() -> Self {
        CoursePerformanceRule {
            raise_at_core_f: 1,
            raise_at_core_d_or_f: 2,
            f_below_numeric: 60.0,
            d_below_numeric: 70.0,
        }
    }
}
impl Default for OffTrackRule {
    fn default() -> Self {
        OffTrackRule { raise_at_indicators: 2 }
    }
}

/// A rules file that cannot be used; the message names the key and what would fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RulesError(pub String);

impl Rules {
    /// Parses and checks a rules file; keys left out keep their defaults.
    pub fn from_toml(text: &str) -> Result<Rules, RulesError> {
        let rules: Rules = toml::from_str(text).map_err(|e| RulesError(e.to_string()))?;
        rules.check()?;
        Ok(rules)
    }

    /// Refuses values no rule can work with.
    pub fn check(&self) -> Result<(), RulesError> {
        let fail = |key: &str, why: String| Err(RulesError(format!("{key}: {why}")));
        let sy = &self.school_year;
        let Ok(month) = Month::try_from(sy.start_month) else {
            return fail(
                "school_year.start_month",
                format!("must be 1 to 12, got {}", sy.start_month),
            );
        };
        // 2024 is a leap year, so February 29 is a valid start.
        if Date::from_calendar_date(2024, month, sy.start_day).is_err() {
            return fail(
                "school_year.start_day",
                format!("{} is not a day of month {}", sy.start_day, sy.start_month),
            );
        }
        let a = &self.attendance;
        if !(a.raise_at_rate > 0.0 && a.raise_at_rate <= 1.0) {
            return fail(
                "attendance.raise_at_rate",
                format!("must be above 0 and at most 1, got {}", a.raise_at_rate),
            );
        }
        if !(a.clear_below_rate > 0.0 && a.clear_below_rate <= a.raise_at_rate) {
            return fail(
                "attendance.clear_below_rate",
                format!(
                    "must be above 0 and not above attendance.raise_at_rate ({}), got {}",
                    a.raise_at_rate, a.clear_below_rate
                ),
            );
        }
        if a.min_days_enrolled == 0 {
            return fail("attendance.min_days_enrolled", "must be at least 1, got 0".into());
        }
        let at_least_one = [
            ("consecutive_absences.raise_at_streak", self.consecutive_absences.raise_at_streak),
            ("behavior.raise_at_suspensions", self.behavior.raise_at_suspensions),
            ("behavior.raise_at_referrals", self.behavior.raise_at_referrals),
            ("course_performance.raise_at_core_f", self.course_performance.raise_at_core_f),
            (
                "course_performance.raise_at_core_d_or_f",
                self.course_performance.raise_at_core_d_or_f,
            ),
        ];
        for (key, value) in at_least_one {
            if value == 0 {
                return fail(
                    key,
                    "must be at least 1 (0 would raise the flag for every student), got 0".into(),
                );
            }
        }
        let c = &self.course_performance;
        if !(0.0..=100.0).contains(&c.f_below_numeric) {
            return fail(
                "course_performance.f_below_numeric",
                format!("must be 0 to 100, got {}", c.f_below_numeric),
            );
        }
        if !(c.f_below_numeric..=100.0).contains(&c.d_below_numeric) {
            return fail(
                "course_performance.d_below_numeric",
                format!(
                    "must be from course_performance.f_below_numeric ({}) to 100, got {}",
                    c.f_below_numeric, c.d_below_numeric
                ),
            );
        }
        if !(1..=3).contains(&self.off_track.raise_at_indicators) {
            return fail(
                "off_track.raise_at_indicators",
                format!("must be 1, 2 or 3, got {}", self.off_track.raise_at_indicators),
            );
        }
        Ok(())
    }

    /// The school year `date` belongs to.
    pub fn school_year_of(&self, date: Date) -> SchoolYear {
        let sy = &self.school_year;
        let (year, month, day) = date.to_calendar_date();
        let started = (u8::from(month), day) >= (sy.start_month, sy.start_day);
        SchoolYear(if started { year } else { year - 1 })
    }

    /// The first and last day of `year` (the rules were checked: the start day exists).
    pub fn school_year_span(&self, year: SchoolYear) -> (Date, Date) {
        let sy = &self.school_year;
        let start = |y: i32| {
            let month = time::Month::try_from(sy.start_month).unwrap_or(time::Month::July);
            // February 29 in a common year: the year starts on March 1 (as school_year_of has it).
            Date::from_calendar_date(y, month, sy.start_day)
                .or_else(|_| Date::from_calendar_date(y, month.next(), 1))
                .unwrap_or(Date::MIN)
        };
        let first = start(year.0);
        let last = start(year.0 + 1).previous_day().unwrap_or(Date::MAX);
        (first, last)
    }
}

/// A school year, by the calendar year it starts in; shown as `"2026-2027"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SchoolYear(pub i32);

impl fmt::Display for SchoolYear {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.0, self.0 + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn school_year_starts_on_july_first_by_default() {
        let r = Rules::default();
        assert_eq!(r.school_year_of(date!(2026 - 06 - 30)).to_string(), "2025-2026");
        assert_eq!(r.school_year_of(date!(2026 - 07 - 01)).to_string(), "2026-2027");
        assert_eq!(r.school_year_of(date!(2027 - 01 - 15)).to_string(), "2026-2027");
    }

    #[test]
    fn an_empty_rules_file_is_the_defaults() {
        assert_eq!(Rules::from_toml("").unwrap(), Rules::default());
        let r = Rules::from_toml("[attendance]\nraise_at_rate = 0.2\n").unwrap();
        assert_eq!(r.attendance.raise_at_rate, 0.2);
        assert_eq!(r.attendance.clear_below_rate, 0.09);
    }

    #[test]
    fn an_unknown_key_is_named() {
        let err = Rules::from_toml("[attendance]\nraise_rate = 0.2\n").unwrap_err();
        assert!(err.0.contains("raise_rate"), "{err}");
        let err = Rules::from_toml("[attendence]\n").unwrap_err();
        assert!(err.0.contains("attendence"), "{err}");
    }

    #[test]
    fn a_clear_threshold_above_the_raise_threshold_is_refused_by_name() {
        let err = Rules::from_toml("[attendance]\nclear_below_rate = 0.12\n").unwrap_err();
        assert!(err.0.starts_with("attendance.clear_below_rate: "), "{err}");
    }

    #[test]
    fn impossible_values_are_refused_by_name() {
        for (toml, key) in [
            ("[school_year]\nstart_month = 13", "school_year.start_month"),
            ("[school_year]\nstart_month = 2\nstart_day = 30", "school_year.start_day"),
            ("[behavior]\nraise_at_referrals = 0", "behavior.raise_at_referrals"),
            ("[off_track]\nraise_at_indicators = 4", "off_track.raise_at_indicators"),
            ("[course_performance]\nd_below_numeric = 50", "course_performance.d_below_numeric"),
            ("[attendance]\nraise_at_rate = 1.5", "attendance.raise_at_rate"),
        ] {
            let err = Rules::from_toml(toml).unwrap_err();
            assert!(err.0.starts_with(key), "{toml}: {err}");
        }
    }
}

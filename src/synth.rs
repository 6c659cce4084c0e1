//! A seeded synthetic district, school day by school day: attendance for every student every day,
//! referrals, grades at the end of each grading period, advocate assignments, and the SIS habits
//! the fold must cope with (corrections, retractions, re-sent events, a few bad messages).
//!
//! Schools send attendance one of two ways ([`Feed`]): a record per student and day (positive
//! attendance, contract v1), or only absences and tardies, with the school calendar (holidays,
//! a snow day called that morning) and enrollments (late entries, transfers between schools)
//! that make the other days count (contract v1.1).
//!
//! All names and ids are made up. The same spec gives the same events, byte for byte.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use time::{Date, Duration, Weekday};

use crate::core::EventKind;

/// How the district's schools send attendance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Feed {
    /// A record per student and school day (contract v1).
    #[default]
    Positive,
    /// Absences and tardies only, with calendars and enrollments (contract v1.1).
    AbsenceOnly,
    /// Even-numbered schools positive, odd-numbered ones absence-only.
    Mixed,
}

impl Feed {
    fn absence_only(self, school: u32) -> bool {
        match self {
            Feed::Positive => false,
            Feed::AbsenceOnly => true,
            Feed::Mixed => school % 2 == 1,
        }
    }
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct DistrictSpec {
    pub students: u32,
    pub schools: u32,
    /// School days (weekdays) to generate, starting at `start`.
    pub days: u32,
    /// The first school day; weekends are skipped.
    pub start: Date,
    pub seed: u64,
    /// Share of extra malformed messages (0.0 for none).
    pub bad_rate: f64,
    /// Gives every advocate a `webhook_url` of `{base}/{advocate_id}` (the demo's receiver).
    pub advocate_webhook: Option<String>,
    pub feed: Feed,
}

impl Default for DistrictSpec {
    fn default() -> Self {
        DistrictSpec {
            students: 2_000,
            schools: 2,
            days: 60,
            start: time::macros::date!(2026 - 08 - 24),
            seed: 1,
            bad_rate: 0.0,
            advocate_webhook: None,
            feed: Feed::Positive,
        }
    }
}

/// One generated message: its topic kind, its key and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthEvent {
    pub kind: EventKind,
    pub student_id: String,
    pub json: String,
}

#[derive(Debug, Clone)]
struct Student {
    id: String,
    school: u32,
    /// Chance of an absence on an ordinary day.
    p_absent: f64,
    absent_yesterday: bool,
    /// Chance of a referral on a school day.
    p_referral: f64,
    /// Mean numeric grade.
    academic: f64,
    /// The school day of the first enrollment (absence-only schools: a late entry after 0).
    enroll_day: u32,
    /// The school day a transfer to the next school takes effect, if any.
    transfer_day: Option<u32>,
    /// The first day of the current enrollment.
    enrolled_since: Date,
}

/// The generator; call [`District::day`] for each school day in order.
#[derive(Debug)]
pub struct District {
    spec: DistrictSpec,
    rng: ChaCha8Rng,
    students: Vec<Student>,
    dates: Vec<Date>,
    /// Corrections and re-sends waiting for a later day.
    later: BTreeMap<u32, Vec<SynthEvent>>,
    referrals: u64,
    /// Every weekday from the start to the last school day, and whether it is a holiday.
    weekdays: Vec<(Date, bool)>,
    /// The school day one absence-only school closes for snow (called that morning).
    snow: Option<(u32, u32)>,
}

const SECTIONS: [(&str, &str); 5] = [
    ("ELA9", "ela"),
    ("ALG1", "math"),
    ("BIO", "science"),
    ("WHIST", "social_studies"),
    ("ART", "other"),
];
const BEHAVIORS: [&str; 5] = ["DISRUPT", "DEFIANCE", "TARDY-REPEAT", "FIGHT", "LANGUAGE"];
/// School days per grading period.
const PERIOD_DAYS: u32 = 30;
/// Students per advocate.
const CASELOAD: u32 = 50;

impl District {
    pub fn new(spec: DistrictSpec) -> District {
        let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
        let schools = spec.schools.max(1);
        let students = (0..spec.students)
            .map(|i| {
                // Seven in ten attend well, two in ten often miss, one in ten mostly misses.
                let p_absent = match rng.random::<f64>() {
                    x if x < 0.70 => rng.random_range(0.0..0.04),
                    x if x < 0.90 => rng.random_range(0.04..0.11),
                    _ => rng.random_range(0.14..0.40),
                };
                let p_referral =
                    if rng.random_bool(0.2) { rng.random_range(0.002..0.04) } else { 0.0 };
                let academic = 86.0 - p_absent * 60.0 + rng.random_range(-12.0..10.0);
                let school = i % schools;
                // Absence-only schools: some students enter late, some transfer mid-way.
                let (mut enroll_day, mut transfer_day) = (0, None);
                if spec.feed.absence_only(school) && spec.days >= 12 {
                    if rng.random_bool(0.03) {
                        enroll_day = rng.random_range(3..spec.days / 2);
                    } else if schools > 1 && rng.random_bool(0.02) {
                        transfer_day = Some(rng.random_range(spec.days / 3..spec.days * 2 / 3));
                    }
                }
                Student {
                    id: format!("stu-{i:07}"),
                    school,
                    p_absent,
                    absent_yesterday: false,
                    p_referral,
                    academic,
                    enroll_day,
                    transfer_day,
                    enrolled_since: spec.start,
                }
            })
            .collect();
        // Weekdays; absence-only districts keep holidays (Labor Day, Thanksgiving and the day
        // after, the winter break, a teacher work day) and count no school on them.
        let any_absence_only = (0..schools).any(|s| spec.feed.absence_only(s));
        let mut weekdays = Vec::new();
        let mut dates = Vec::with_capacity(spec.days as usize);
        let mut d = spec.start;
        while dates.len() < spec.days as usize {
            if !matches!(d.weekday(), Weekday::Saturday | Weekday::Sunday) {
                let holiday = any_absence_only && (is_holiday(d) || weekdays.len() == 17);
                weekdays.push((d, holiday));
                if !holiday {
                    dates.push(d);
                }
            }
            d = d.saturating_add(Duration::days(1));
        }
        let snow_school = (0..schools).find(|s| spec.feed.absence_only(*s));
        let snow = snow_school.filter(|_| spec.days >= 10).map(|s| (s, spec.days * 2 / 3));
        District {
            spec,
            rng,
            students,
            dates,
            later: BTreeMap::new(),
            referrals: 0,
            weekdays,
            snow,
        }
    }

    /// The school days, in order.
    pub fn dates(&self) -> &[Date] {
        &self.dates
    }

    /// Every message of school day `day` (0-based), in the order an SIS feed would send them.
    pub fn day(&mut self, day: u32) -> Vec<SynthEvent> {
        let Some(&date) = self.dates.get(day as usize) else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(self.students.len() + 16);
        if day == 0 {
            self.calendars(&mut out);
        }
        if let Some((school, snow_day)) = self.snow
            && snow_day == day
        {
            // Called at 05:45 that morning: the day was a school day on the calendar.
            out.push(self.calendar_day(school, date, false, &format!("{date}T05:45:00-05:00")));
        }
        for s in 0..self.students.len() {
            if day == 0 {
                let advocate = s as u32 / CASELOAD;
                out.push(self.assignment(s, date, day, advocate));
            }
            let absence_only = self.spec.feed.absence_only(self.students[s].school);
            if absence_only {
                if day < self.students[s].enroll_day {
                    continue;
                }
                self.enrollment(s, date, day, &mut out);
                if self
                    .snow
                    .is_some_and(|(school, d)| d == day && school == self.students[s].school)
                {
                    continue;
                }
            }
            self.attendance(s, date, day, &mut out);
            let p_referral = self.students[s].p_referral;
            if p_referral > 0.0 && self.rng.random_bool(p_referral) {
                self.referral(s, date, day, &mut out);
            }
            if day % PERIOD_DAYS == PERIOD_DAYS - 1 {
                self.grades(s, date, day, &mut out);
            }
            if day > 0 && self.rng.random_bool(0.0005) {
                let advocate =
                    self.rng.random_range(0..self.spec.students.div_ceil(CASELOAD).max(1));
                out.push(self.assignment(s, date, day, advocate));
            }
        }
        if let Some(mut pending) = self.later.remove(&day) {
            out.append(&mut pending);
        }
        let bad = (out.len() as f64 * self.spec.bad_rate).round() as usize;
        for _ in 0..bad {
            let victim = self.rng.random_range(0..out.len());
            let broken = self.break_event(&out[victim]);
            out.push(broken);
        }
        out
    }

    /// The calendar of every absence-only school, sent ahead (two weeks before the start).
    fn calendars(&mut self, out: &mut Vec<SynthEvent>) {
        let sent = format!("{}T09:00:00-05:00", self.spec.start.saturating_sub(Duration::days(14)));
        for school in (0..self.spec.schools.max(1)).filter(|s| self.spec.feed.absence_only(*s)) {
            for (date, holiday) in self.weekdays.clone() {
                out.push(self.calendar_day(school, date, !holiday, &sent));
            }
        }
    }

    fn calendar_day(&self, school: u32, date: Date, instructional: bool, at: &str) -> SynthEvent {
        let id = format!("cal-sch-{school:02}-{date}-{at}");
        let json = format!(
            r#"{{"type":"calendar","event_id":"{id}","school_id":"sch-{school:02}","date":"{date}","recorded_at":"{at}","instructional":{instructional}}}"#
        );
        SynthEvent { kind: EventKind::Calendar, student_id: format!("sch-{school:02}"), json }
    }

    /// An absence-only school's enrollment records of the day: the first one (before the start,
    /// or on a late entry's first day), or a transfer (the old enrollment ends the day before,
    /// the new one starts today).
    fn enrollment(&mut self, s: usize, date: Date, day: u32, out: &mut Vec<SynthEvent>) {
        let st = &self.students[s];
        let enroll = |head: String, exit: Option<Date>| match exit {
            Some(exit) => format!(r#"{head},"exit_date":"{exit}"}}"#),
            None => format!("{head}}}"),
        };
        if day == st.enroll_day {
            let recorded_at = match day {
                0 => {
                    format!("{}T10:00:00-05:00", self.spec.start.saturating_sub(Duration::days(7)))
                }
                _ => self.stamp(date, 0),
            };
            self.students[s].enrolled_since = date;
            let id = format!("enr-{}-{day}", self.students[s].id);
            let json = enroll(self.head("enrollment", &id, s, date, &recorded_at), None);
            let student_id = self.students[s].id.clone();
            out.push(SynthEvent { kind: EventKind::Enrollment, student_id, json });
        }
        if self.students[s].transfer_day == Some(day) && day > 0 {
            let since = self.students[s].enrolled_since;
            let last = self.dates[day as usize - 1];
            let recorded_at = self.stamp(date, 0);
            let id = format!("enr-{}-{day}-exit", self.students[s].id);
            let json = enroll(self.head("enrollment", &id, s, since, &recorded_at), Some(last));
            let student_id = self.students[s].id.clone();
            out.push(SynthEvent {
                kind: EventKind::Enrollment,
                student_id: student_id.clone(),
                json,
            });
            let schools = self.spec.schools.max(1);
            // To the next absence-only school.
            let from = self.students[s].school;
            let to = (1..=schools)
                .map(|k| (from + k) % schools)
                .find(|x| self.spec.feed.absence_only(*x));
            self.students[s].school = to.unwrap_or(from);
            self.students[s].enrolled_since = date;
            let id = format!("enr-{}-{day}", self.students[s].id);
            let json = enroll(self.head("enrollment", &id, s, date, &recorded_at), None);
            out.push(SynthEvent { kind: EventKind::Enrollment, student_id, json });
        }
    }

    fn stamp(&mut self, date: Date, days_later: u32) -> String {
        let d = date.saturating_add(Duration::days(i64::from(days_later)));
        let minute = self.rng.random_range(0..240);
        format!(
            "{d}T{:02}:{:02}:{:02}-05:00",
            7 + minute / 60,
            minute % 60,
            self.rng.random_range(0..60)
        )
    }

    fn head(&self, kind: &str, id: &str, s: usize, date: Date, recorded_at: &str) -> String {
        let st = &self.students[s];
        format!(
            r#"{{"type":"{kind}","event_id":"{id}","student_id":"{}","school_id":"sch-{:02}","date":"{date}","recorded_at":"{recorded_at}""#,
            st.id, st.school
        )
    }

    fn push_later(&mut self, day: u32, e: SynthEvent) {
        if day < self.spec.days {
            self.later.entry(day).or_default().push(e);
        }
    }

    fn attendance(&mut self, s: usize, date: Date, day: u32, out: &mut Vec<SynthEvent>) {
        let st = &self.students[s];
        let p = if st.absent_yesterday { (st.p_absent * 5.0).min(0.7) } else { st.p_absent };
        let absent = self.rng.random_bool(p);
        self.students[s].absent_yesterday = absent;
        let status = match (absent, self.rng.random::<f64>()) {
            (true, x) if x < 0.35 => "absent_excused",
            (true, _) => "absent_unexcused",
            (false, x) if x < 0.05 => "tardy",
            (false, _) => "present",
        };
        let absence_only = self.spec.feed.absence_only(self.students[s].school);
        if absence_only && status == "present" {
            return;
        }
        let recorded_at = self.stamp(date, 0);
        let id = format!("att-{}-{day}", self.students[s].id);
        let mut json = self.head("attendance", &id, s, date, &recorded_at);
        let _ = write!(json, r#","status":"{status}"}}"#);
        let event = SynthEvent {
            kind: EventKind::Attendance,
            student_id: self.students[s].id.clone(),
            json,
        };
        // SIS habits: a note arrives and the absence is excused or the day re-coded; a record
        // entered by mistake is retracted; a message is sent twice.
        let roll = self.rng.random::<f64>();
        // An absence-only SIS deletes a record entered by mistake: a retraction, not "present".
        let present = if absence_only { "retracted" } else { "present" };
        let fix = match status {
            "absent_unexcused" if roll < 0.10 => Some("absent_excused"),
            "absent_unexcused" if roll < 0.13 => Some(present),
            _ if roll < 0.003 => Some("retracted"),
            _ => None,
        };
        if let Some(fixed) = fix {
            let after = self.rng.random_range(1..4);
            let recorded_at = self.stamp(date, after);
            let mut json = self.head("attendance", &format!("{id}-fix"), s, date, &recorded_at);
            let _ = write!(json, r#","status":"{fixed}"}}"#);
            let student_id = self.students[s].id.clone();
            self.push_later(
                day + after,
                SynthEvent { kind: EventKind::Attendance, student_id, json },
            );
        }
        if self.rng.random_bool(0.002) {
            let again = day + self.rng.random_range(0..3);
            self.push_later(again, event.clone());
        }
        out.push(event);
    }

    fn referral(&mut self, s: usize, date: Date, day: u32, out: &mut Vec<SynthEvent>) {
        self.referrals += 1;
        let referral_id = format!("ref-{:08}", self.referrals);
        let action = match self.rng.random::<f64>() {
            x if x < 0.25 => "none",
            x if x < 0.65 => "detention",
            x if x < 0.85 => "in_school_suspension",
            x if x < 0.98 => "out_of_school_suspension",
            _ => "expulsion",
        };
        let behavior = BEHAVIORS[self.rng.random_range(0..BEHAVIORS.len())];
        let recorded_at = self.stamp(date, 0);
        let body = |head: String, retracted: bool| {
            let mut json = head;
            let _ = write!(
                json,
                r#","referral_id":"{referral_id}","behavior":"{behavior}","action":"{action}""#
            );
            if action.ends_with("suspension") {
                json.push_str(r#","action_days":1"#);
            }
            if retracted {
                json.push_str(r#","retracted":true"#);
            }
            json.push('}');
            json
        };
        let json = body(
            self.head("discipline", &format!("{referral_id}-a"), s, date, &recorded_at),
            false,
        );
        out.push(SynthEvent {
            kind: EventKind::Discipline,
            student_id: self.students[s].id.clone(),
            json,
        });
        if self.rng.random_bool(0.05) {
            let after = self.rng.random_range(1..5);
            let recorded_at = self.stamp(date, after);
            let json = body(
                self.head("discipline", &format!("{referral_id}-r"), s, date, &recorded_at),
                true,
            );
            let student_id = self.students[s].id.clone();
            self.push_later(
                day + after,
                SynthEvent { kind: EventKind::Discipline, student_id, json },
            );
        }
    }

    fn grades(&mut self, s: usize, date: Date, day: u32, out: &mut Vec<SynthEvent>) {
        let period = format!("{}-Q{}", self.dates[0].year(), day / PERIOD_DAYS + 1);
        for (k, (course, subject)) in SECTIONS.iter().enumerate() {
            let numeric: f64 = (self.students[s].academic + self.rng.random_range(-12.0..12.0))
                .clamp(0.0, 100.0)
                .round();
            let letter = match numeric {
                n if n >= 90.0 => "A",
                n if n >= 80.0 => "B",
                n if n >= 70.0 => "C",
                n if n >= 60.0 => "D",
                _ => "F",
            };
            let recorded_at = self.stamp(date, 0);
            let id = format!("grd-{}-{course}-{period}", self.students[s].id);
            let mut json = self.head("grade", &id, s, date, &recorded_at);
            let _ = write!(
                json,
                r#","section_id":"sec-{course}-{:02}","course_code":"{course}","subject":"{subject}","grading_period":"{period}","letter_grade":"{letter}","numeric_grade":{numeric}}}"#,
                (s + k) % 7
            );
            out.push(SynthEvent {
                kind: EventKind::Grade,
                student_id: self.students[s].id.clone(),
                json,
            });
        }
    }

    fn assignment(&mut self, s: usize, date: Date, day: u32, advocate: u32) -> SynthEvent {
        let recorded_at = self.stamp(date, 0);
        let id = format!("asg-{}-{day}", self.students[s].id);
        let mut json = self.head("assignment", &id, s, date, &recorded_at);
        let webhook = match &self.spec.advocate_webhook {
            Some(base) => format!(r#","webhook_url":"{base}/adv-{advocate:05}""#),
            None => String::new(),
        };
        let _ = write!(
            json,
            r#","advocate_id":"adv-{advocate:05}","advocate":{{"name":"Advocate {advocate}","email":"adv-{advocate:05}@example.org"{webhook},"timezone":"America/Chicago"}}}}"#
        );
        SynthEvent { kind: EventKind::Assignment, student_id: self.students[s].id.clone(), json }
    }

    /// A malformed copy of `e`, as broken SIS exports produce them.
    fn break_event(&mut self, e: &SynthEvent) -> SynthEvent {
        let json = match self.rng.random_range(0..5) {
            0 => e.json[..e.json.len() / 2].to_string(),
            1 => e.json.replace(r#""type":""#, r#""type":"x"#),
            2 => e.json.replace(r#""date":""#, r#""date":"1"#),
            3 => e.json.replace(r#""student_id":"#, r#""student":"#),
            _ => format!("not json {}", e.student_id),
        };
        // A new event id, so the copy is not a duplicate of the original.
        let json = json.replacen(r#""event_id":""#, r#""event_id":"bad-"#, 1);
        SynthEvent { kind: e.kind, student_id: e.student_id.clone(), json }
    }
}

/// US school holidays the absence-only calendars keep: Labor Day, Thanksgiving and the Friday
/// after, and the winter break.
fn is_holiday(d: Date) -> bool {
    use time::Month::{December, January, November, September};
    let nth_weekday = (d.day() - 1) / 7 + 1;
    match d.month() {
        September => d.weekday() == Weekday::Monday && nth_weekday == 1,
        November => {
            let thanksgiving = d.weekday() == Weekday::Thursday && nth_weekday == 4;
            let after = d.weekday() == Weekday::Friday && (d.day() - 2) / 7 + 1 == 4;
            thanksgiving || after
        }
        December => d.day() >= 21,
        January => d.day() <= 2,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::decode;
    use crate::core::event::{AttendanceStatus, EventBody};

    fn spec() -> DistrictSpec {
        DistrictSpec { students: 200, days: 35, ..DistrictSpec::default() }
    }

    #[test]
    fn the_same_seed_gives_the_same_events() {
        let (mut a, mut b) = (District::new(spec()), District::new(spec()));
        for day in 0..5 {
            assert_eq!(a.day(day), b.day(day));
        }
        let mut c = District::new(DistrictSpec { seed: 2, ..spec() });
        assert_ne!(District::new(spec()).day(0), c.day(0));
    }

    #[test]
    fn every_generated_event_is_valid_and_bad_ones_are_not() {
        let mut d = District::new(DistrictSpec { bad_rate: 0.01, ..spec() });
        let (mut ok, mut bad) = (0, 0);
        for day in 0..35 {
            for e in d.day(day) {
                match decode(e.json.as_bytes()) {
                    Ok(ev) => {
                        assert_eq!(ev.student_id, e.student_id);
                        assert_eq!(ev.kind(), e.kind);
                        ok += 1;
                    }
                    Err(_) => {
                        assert!(
                            e.json.contains("bad-")
                                || e.json.starts_with("not json")
                                || !e.json.ends_with('}')
                        );
                        bad += 1;
                    }
                }
            }
        }
        assert!(ok > 200 * 35);
        assert!(bad > 0 && bad < ok / 50, "{bad} bad of {ok}");
    }

    #[test]
    fn an_absence_only_school_sends_absences_calendars_and_enrollments() {
        let spec =
            DistrictSpec { students: 400, schools: 4, days: 70, feed: Feed::Mixed, ..spec() };
        let mut d = District::new(spec.clone());
        let events: Vec<SynthEvent> = (0..spec.days).flat_map(|day| d.day(day)).collect();
        let decoded: Vec<_> = events.iter().map(|e| decode(e.json.as_bytes()).unwrap()).collect();
        let of = |kind: EventKind| decoded.iter().filter(move |e| e.kind() == kind);
        // Positive schools: a record a day; absence-only ones: never "present".
        let present_at = |school: &str| {
            of(EventKind::Attendance).filter(|e| e.school_id == school).any(|e| {
                e.body == EventBody::AttendanceRecorded { status: AttendanceStatus::Present }
            })
        };
        assert!(present_at("sch-00") && present_at("sch-02"));
        assert!(!present_at("sch-01") && !present_at("sch-03"));
        // Calendars of the absence-only schools only, with holidays (Labor Day) and a snow day.
        let calendar: Vec<_> = of(EventKind::Calendar).collect();
        assert!(calendar.iter().all(|e| e.school_id == "sch-01" || e.school_id == "sch-03"));
        let labor_day = time::macros::date!(2026 - 09 - 07);
        assert!(calendar.iter().any(|e| e.date == labor_day
            && e.body == EventBody::CalendarDay { instructional: false, retracted: false }));
        let snow: Vec<_> =
            calendar.iter().filter(|e| !e.is_future() && e.date > spec.start).collect();
        assert_eq!(snow.len(), 1, "one snow day, called that morning");
        assert!(of(EventKind::Attendance).all(|e| e.date != labor_day
            && !(e.school_id == snow[0].school_id && e.date == snow[0].date)));
        // Enrollments: late entries and transfers (an exit, then the next school).
        let enrollments: Vec<_> = of(EventKind::Enrollment).collect();
        assert!(enrollments.iter().any(|e| e.date > spec.start && !e.is_future()), "late entries");
        assert!(
            enrollments
                .iter()
                .any(|e| matches!(e.body, EventBody::Enrolled { exit_date: Some(_), .. }))
        );
    }
}

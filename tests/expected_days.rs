//! Contract v1.1: figures from expected days (enrollment × calendar), school days passing with
//! no new event, calendar changes, transfers, and the v1 behaviour of students without
//! enrollment records. Hand scenarios from DESIGN.md, then properties.

#![allow(clippy::unwrap_used)] // tests fail loudly on broken fixtures

mod common;

use common::*;
use ontrack::core::{Change, Days, Event, Flag, FlagChange, Outcome, Rules, Students};
use proptest::prelude::*;
use serde_json::json;

const SCHOOL: &str = "sch-1";

fn day_ev(kind: &str, id: &str, student: &str, school: &str, date: &str, at: &str) -> Value {
    json!({"type": kind, "event_id": id, "student_id": student, "school_id": school,
           "date": date, "recorded_at": at})
}

use serde_json::Value;

/// An absence recorded at 08:40 (school-local, -05:00) on its day.
fn absent(id: &str, student: &str, date: &str) -> Event<'static> {
    ev(with(
        day_ev("attendance", id, student, SCHOOL, date, &format!("{date}T08:40:00-05:00")),
        json!({"status": "absent_unexcused"}),
    ))
}

fn status(id: &str, student: &str, date: &str, status: &str) -> Event<'static> {
    ev(with(
        day_ev("attendance", id, student, SCHOOL, date, &format!("{date}T08:40:00-05:00")),
        json!({ "status": status }),
    ))
}

/// Enrolled at `school` from `first` (recorded the week before school starts).
fn enrolled(
    id: &str,
    student: &str,
    school: &str,
    first: &str,
    exit: Option<&str>,
) -> Event<'static> {
    ev(with(
        day_ev("enrollment", id, student, school, first, "2026-08-20T12:00:00-05:00"),
        json!({ "exit_date": exit }),
    ))
}

/// A calendar day, sent ahead in August (or `at`, when given).
fn calendar(
    id: &str,
    school: &str,
    date: &str,
    instructional: bool,
    at: Option<&str>,
) -> Event<'static> {
    let mut v = day_ev("calendar", id, "", school, date, at.unwrap_or("2026-08-15T12:00:00-05:00"));
    v.as_object_mut().unwrap().remove("student_id");
    ev(with(v, json!({ "instructional": instructional })))
}

/// Weekdays from 2026-09-01 (a Tuesday) on, as school days of `school`.
fn calendar_of(school: &str, n: usize) -> (Vec<String>, Vec<Event<'static>>) {
    let days = school_days("2026-09-01", n);
    let events = days
        .iter()
        .map(|d| calendar(&format!("cal-{school}-{d}"), school, d, true, None))
        .collect();
    (days, events)
}

/// Applies events in order; returns every flag change.
fn run(students: &mut Students, events: &[Event<'static>], rules: &Rules) -> Vec<FlagChange> {
    let mut all = Vec::new();
    for e in events {
        if let Outcome::Applied(changes) = students.apply(e, rules) {
            all.extend(changes);
        }
    }
    all
}

/// A record of another student that opens `date` (as the first events of a school day do).
fn someone_on(date: &str) -> Event<'static> {
    status(&format!("other-{date}"), "stu-other", date, "tardy")
}

fn of<'c>(changes: &'c [FlagChange], student: &str) -> Vec<&'c FlagChange> {
    changes.iter().filter(|c| c.student_id == student).collect()
}

#[test]
fn two_absences_in_the_first_nine_days_raise_attendance_on_day_ten() {
    let rules = Rules::default();
    let (days, mut events) = calendar_of(SCHOOL, 15);
    events.push(enrolled("enr-1", "stu-1", SCHOOL, &days[0], None));
    events.push(absent("a1", "stu-1", &days[2]));
    events.push(absent("a2", "stu-1", &days[6]));
    // Days pass with the other student's records only: day 10 closes when day 11 opens.
    for d in &days[7..11] {
        events.push(someone_on(d));
    }
    let mut students = Students::default();
    let changes = run(&mut students, &events, &rules);
    let mine = of(&changes, "stu-1");
    assert_eq!(mine.len(), 1, "{mine:?}");
    let c = mine[0];
    assert_eq!((c.change, c.flag), (Change::Raised, Flag::Attendance));
    assert_eq!(c.caused_by, format!("day:{SCHOOL}:{}", days[9]));
    assert_eq!(c.as_of.to_string(), days[9]);
    assert_eq!(c.school_id, SCHOOL);
    let ev = serde_json::to_value(c.evidence.as_ref().unwrap()).unwrap();
    assert_eq!(ev["days_enrolled"], 10);
    assert_eq!(ev["days_absent"], 2);
}

#[test]
fn absences_weeks_apart_are_not_in_a_row() {
    let rules = Rules::default();
    let (days, mut events) = calendar_of(SCHOOL, 40);
    events.push(enrolled("enr-1", "stu-1", SCHOOL, &days[0], None));
    for (i, d) in [&days[3], &days[13], &days[23]].into_iter().enumerate() {
        events.push(absent(&format!("a{i}"), "stu-1", d));
    }
    events.push(someone_on(&days[39]));
    let mut students = Students::default();
    let changes = run(&mut students, &events, &rules);
    assert!(
        of(&changes, "stu-1").iter().all(|c| c.flag != Flag::ConsecutiveAbsences),
        "{changes:?}"
    );
    // Without an enrollment the same three records are v1's "three latest records": in a row.
    let mut v1 = Students::default();
    let plain: Vec<_> = [&days[3], &days[13], &days[23]]
        .iter()
        .enumerate()
        .map(|(i, d)| absent(&format!("a{i}"), "stu-1", d))
        .collect();
    let changes = run(&mut v1, &plain, &rules);
    assert!(changes.iter().any(|c| c.flag == Flag::ConsecutiveAbsences));
}

#[test]
fn three_absent_school_days_in_a_row_raise_and_a_present_day_clears() {
    let rules = Rules::default();
    let (days, mut events) = calendar_of(SCHOOL, 20);
    events.push(enrolled("enr-1", "stu-1", SCHOOL, &days[0], None));
    for d in &days[10..13] {
        events.push(absent(&format!("a-{d}"), "stu-1", d));
    }
    events.push(someone_on(&days[14]));
    let mut students = Students::default();
    let changes = run(&mut students, &events, &rules);
    let streak: Vec<_> =
        of(&changes, "stu-1").into_iter().filter(|c| c.flag == Flag::ConsecutiveAbsences).collect();
    assert_eq!(streak.len(), 2, "{streak:?}");
    assert_eq!((streak[0].change, streak[0].caused_by.as_str()), (Change::Raised, "a-2026-09-17"));
    // Day 13 had no record: present. It clears when it has passed.
    assert_eq!(streak[1].change, Change::Cleared);
    assert_eq!(streak[1].caused_by, format!("day:{SCHOOL}:{}", days[13]));
}

#[test]
fn a_flagged_student_who_comes_every_day_is_cleared_the_day_the_rate_falls_below_9_percent() {
    let rules = Rules::default();
    let (days, mut events) = calendar_of(SCHOOL, 40);
    events.push(enrolled("enr-1", "stu-1", SCHOOL, &days[0], None));
    events.push(absent("a1", "stu-1", &days[1]));
    events.push(absent("a2", "stu-1", &days[4]));
    let mut students = Students::default();
    let mut changes = run(&mut students, &events, &rules);
    // replay --as-of: the days pass at the end of the input.
    let last = ontrack::core::decode::parse_date(&days[39]).unwrap();
    changes.extend(students.close_through(last, &rules));
    let attendance: Vec<_> =
        of(&changes, "stu-1").into_iter().filter(|c| c.flag == Flag::Attendance).collect();
    assert_eq!(attendance.len(), 2, "{attendance:?}");
    assert_eq!(attendance[0].caused_by, format!("day:{SCHOOL}:{}", days[9]));
    // 2 of 22 days = 9.09% (still in the band); 2 of 23 = 8.7%: cleared on day 23.
    assert_eq!(attendance[1].change, Change::Cleared);
    assert_eq!(attendance[1].caused_by, format!("day:{SCHOOL}:{}", days[22]));
    let ev = serde_json::to_value(attendance[1].evidence.as_ref().unwrap()).unwrap();
    assert_eq!((ev["days_enrolled"].as_u64(), ev["days_absent"].as_u64()), (Some(23), Some(2)));
}

#[test]
fn a_snow_day_called_afterwards_makes_absences_around_it_consecutive() {
    let rules = Rules::default();
    let (days, mut events) = calendar_of(SCHOOL, 20);
    events.push(enrolled("enr-1", "stu-1", SCHOOL, &days[0], None));
    // Absent Wednesday and Thursday, nothing on Friday (present), absent Monday (the attendance
    // flag is raised by then, and stays).
    let (wed, thu, fri, mon) = (&days[11], &days[12], &days[13], &days[14]);
    for d in [wed, thu, mon] {
        events.push(absent(&format!("a-{d}"), "stu-1", d));
    }
    events.push(someone_on(&days[15]));
    let mut students = Students::default();
    let before = run(&mut students, &events, &rules);
    assert!(of(&before, "stu-1").iter().all(|c| c.flag != Flag::ConsecutiveAbsences));
    // Friday was a snow day after all: recorded on Tuesday.
    let snow = calendar("snow", SCHOOL, fri, false, Some(&format!("{}T07:00:00-05:00", days[15])));
    let changes = run(&mut students, &[snow], &rules);
    let mine = of(&changes, "stu-1");
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert_eq!((mine[0].flag, mine[0].change), (Flag::ConsecutiveAbsences, Change::Raised));
    assert_eq!(mine[0].caused_by, "snow");
    let state = students.iter().find(|(id, _)| *id == "stu-1").unwrap().1;
    let days_now = Days::new(students.calendars(), students.closed_through());
    // 15 school days have passed, one of them is not a school day any more.
    assert_eq!(state.figures_at(&rules, &days_now).days_enrolled, 14);
}

#[test]
fn a_transfer_counts_each_schools_days_within_its_enrollment() {
    let rules = Rules::default();
    let (days, mut events) = calendar_of(SCHOOL, 30);
    // The second school has a holiday on days[20] the first does not.
    let (_, other) = calendar_of("sch-2", 30);
    events.extend(other.into_iter().filter(|e| e.date.to_string() != days[20]));
    events.push(enrolled("enr-1", "stu-1", SCHOOL, &days[0], Some(&days[14])));
    events.push(enrolled("enr-2", "stu-1", "sch-2", &days[15], None));
    // A late entry: enrolled from day 10 only.
    events.push(enrolled("enr-3", "stu-2", SCHOOL, &days[10], None));
    events.push(someone_on(&days[29]));
    let mut students = Students::default();
    run(&mut students, &events, &rules);
    let days_now = Days::new(students.calendars(), students.closed_through());
    let figures =
        |id: &str| students.iter().find(|(s, _)| *s == id).unwrap().1.figures_at(&rules, &days_now);
    // 15 days at the first school, days 15..=28 at the second but its holiday: 14 - 1.
    assert_eq!(figures("stu-1").days_enrolled, 15 + 13);
    assert_eq!(figures("stu-2").days_enrolled, 19);
}

#[test]
fn a_future_dated_record_does_not_make_days_pass() {
    let rules = Rules::default();
    let (days, mut events) = calendar_of(SCHOOL, 20);
    events.push(enrolled("enr-1", "stu-1", SCHOOL, &days[0], None));
    events.push(absent("a1", "stu-1", &days[0]));
    events.push(absent("a2", "stu-1", &days[1]));
    events.push(someone_on(&days[2]));
    // A planned absence two weeks ahead, recorded today.
    events.push(ev(with(
        day_ev(
            "attendance",
            "planned",
            "stu-3",
            SCHOOL,
            &days[15],
            &format!("{}T09:00:00-05:00", days[2]),
        ),
        json!({"status": "absent_excused"}),
    )));
    let mut students = Students::default();
    let changes = run(&mut students, &events, &rules);
    assert_eq!(students.closed_through().unwrap().to_string(), days[1]);
    assert!(of(&changes, "stu-1").is_empty(), "{changes:?}");
}

#[test]
fn a_positive_attendance_student_without_enrollment_is_v1() {
    let rules = Rules::default();
    let days = school_days("2026-09-01", 12);
    let mut lines = Vec::new();
    for (i, d) in days.iter().enumerate() {
        let s = if i % 4 == 1 { "absent_unexcused" } else { "present" };
        lines.push(attendance_json(&format!("e{i}"), "stu-v1", d, s));
    }
    let v1 = replayed(lines.iter().map(String::as_str));
    // The same with calendars and other students' enrollments around it.
    let (_, calendar) = calendar_of("sch-1", 12);
    let mut students = Students::default();
    let mut changes = run(&mut students, &calendar, &rules);
    changes.extend(run(
        &mut students,
        &[enrolled("enr-x", "stu-x", "sch-1", &days[0], None)],
        &rules,
    ));
    for l in &lines {
        let e = ontrack::core::decode(l.as_bytes()).unwrap().into_owned();
        changes.extend(run(&mut students, &[e], &rules));
    }
    let last = ontrack::core::decode::parse_date(&days[11]).unwrap();
    changes.extend(students.close_through(last, &rules));
    let mine: Vec<Value> = of(&changes, "stu-v1")
        .into_iter()
        .map(|c| {
            without_emitted_at(
                serde_json::to_value(ontrack::output::FlagEvent::new(
                    c,
                    time::OffsetDateTime::UNIX_EPOCH,
                ))
                .unwrap(),
            )
        })
        .collect();
    assert!(!v1.is_empty());
    assert_eq!(mine, v1);
}

// ---- properties ----

/// One event of a small district: two students, two schools, calendars and enrollments.
#[derive(Debug, Clone)]
enum Spec {
    Attendance { student: u8, day: usize, late: u8, status: &'static str },
    Enrollment { student: u8, school: u8, first: usize, exit: Option<usize>, retracted: bool },
    Calendar { school: u8, day: usize, instructional: bool, late: u8 },
    Referral { student: u8, day: usize, action: &'static str },
}

const N_DAYS: usize = 30;

fn days() -> Vec<String> {
    school_days("2026-09-01", N_DAYS)
}

fn spec() -> impl Strategy<Value = Spec> {
    use proptest::sample::select;
    prop_oneof![
        8 => (0u8..2, 0..N_DAYS, 0u8..3, select(vec!["present", "tardy", "absent_excused",
                "absent_unexcused", "absent_unexcused", "retracted"]))
            .prop_map(|(student, day, late, status)| Spec::Attendance { student, day, late, status }),
        2 => (0u8..2, 0u8..2, 0..N_DAYS, prop::option::of(0..N_DAYS), prop::bool::weighted(0.15))
            .prop_map(|(student, school, first, exit, retracted)| Spec::Enrollment {
                student, school, first, exit: exit.map(|e| e.max(first)), retracted }),
        3 => (0u8..2, 0..N_DAYS, prop::bool::weighted(0.8), 0u8..3)
            .prop_map(|(school, day, instructional, late)| Spec::Calendar { school, day, instructional, late }),
        1 => (0u8..2, 0..N_DAYS, select(vec!["none", "detention", "in_school_suspension"]))
            .prop_map(|(student, day, action)| Spec::Referral { student, day, action }),
    ]
}

fn build(i: usize, s: &Spec) -> Event<'static> {
    let days = days();
    let id = format!("e{i:03}");
    // Recorded on the day, or `late` days after it (a correction, a calendar change).
    let at = |day: usize, late: u8| {
        format!("{}T09:{:02}:00-05:00", days[(day + usize::from(late)).min(N_DAYS - 1)], i % 60)
    };
    match s {
        Spec::Attendance { student, day, late, status } => ev(with(
            day_ev(
                "attendance",
                &id,
                &format!("stu-{student}"),
                SCHOOL,
                &days[*day],
                &at(*day, *late),
            ),
            json!({ "status": status }),
        )),
        Spec::Enrollment { student, school, first, exit, retracted } => ev(with(
            day_ev(
                "enrollment",
                &id,
                &format!("stu-{student}"),
                &format!("sch-{school}"),
                &days[*first],
                "2026-08-20T12:00:00-05:00",
            ),
            json!({ "exit_date": exit.map(|e| days[e].clone()), "retracted": retracted }),
        )),
        Spec::Calendar { school, day, instructional, late } => {
            let mut v = day_ev(
                "calendar",
                &id,
                "",
                &format!("sch-{school}"),
                &days[*day],
                &at(*day, *late),
            );
            v.as_object_mut().unwrap().remove("student_id");
            ev(with(v, json!({ "instructional": instructional })))
        }
        Spec::Referral { student, day, action } => ev(with(
            day_ev("discipline", &id, &format!("stu-{student}"), SCHOOL, &days[*day], &at(*day, 0)),
            json!({"referral_id": format!("ref-{i}"), "behavior": "B-01", "action": action}),
        )),
    }
}

fn district() -> impl Strategy<Value = Vec<Event<'static>>> {
    prop::collection::vec(spec(), 1..80)
        .prop_map(|specs| specs.iter().enumerate().map(|(i, s)| build(i, s)).collect())
}

/// Folds `events`, then closes every day up to the last one; returns the changes and the
/// students.
fn fold_all(events: &[Event<'static>], rules: &Rules) -> (Vec<FlagChange>, Students) {
    let mut students = Students::default();
    let mut changes = run(&mut students, events, rules);
    let last = ontrack::core::decode::parse_date(&days()[N_DAYS - 1]).unwrap();
    changes.extend(students.close_through(last, rules));
    (changes, students)
}

/// Per student and flag, changes alternate raised/cleared and a clear ends its raise.
fn assert_well_formed(changes: &[FlagChange]) {
    let mut open = std::collections::HashMap::new();
    for c in changes {
        let key = (c.student_id.clone(), c.flag);
        match c.change {
            Change::Raised => {
                assert!(open.insert(key, c.flag_id()).is_none(), "raised twice: {}", c.flag_id())
            }
            Change::Cleared => {
                assert_eq!(open.remove(&key), Some(c.flag_id()), "clear without its raise")
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Any arrival order of attendance, enrollment, calendar and referral records: the same
    /// records, the same figures at the end, and the same flags wherever the figures decide them.
    #[test]
    fn arrival_order_does_not_change_final_figures_or_decided_flags(
        (events, shuffled) in district().prop_flat_map(|h| (Just(h.clone()), Just(h).prop_shuffle()))
    ) {
        let rules = Rules::default();
        let (changes_a, a) = fold_all(&events, &rules);
        let (changes_b, b) = fold_all(&shuffled, &rules);
        assert_well_formed(&changes_a);
        assert_well_formed(&changes_b);
        prop_assert_eq!(a.calendars(), b.calendars());
        prop_assert_eq!(a.closed_through(), b.closed_through());
        let days_a = Days::new(a.calendars(), a.closed_through());
        for (id, sa) in a.iter() {
            let sb = b.iter().find(|(s, _)| *s == id).unwrap().1;
            prop_assert_eq!(sa.records(), sb.records());
            prop_assert_eq!(sa.enrollments(), sb.enrollments());
            let (fa, fb) = (sa.figures_at(&rules, &days_a), sb.figures_at(&rules, &days_a));
            prop_assert_eq!(fa, fb, "{}", id);
            for flag in Flag::ALL {
                if let Some(expected) = decided_by(*flag, &fa, &rules) {
                    prop_assert_eq!(sa.is_raised(*flag), expected, "{} {} in order", id, flag);
                    prop_assert_eq!(sb.is_raised(*flag), expected, "{} {} shuffled", id, flag);
                }
            }
        }
    }

    /// Every event applied twice (anywhere later) changes nothing: the same flag changes.
    #[test]
    fn duplicates_change_nothing(
        events in district(),
        repeats in prop::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>()), 0..20),
    ) {
        let rules = Rules::default();
        let with_dups = with_repeats(&events, &repeats);
        let (once, _) = fold_all(&events, &rules);
        let (twice, _) = fold_all(&with_dups, &rules);
        prop_assert_eq!(once, twice);
    }
}

//! Given/when/then tests of the fold and the five rules at their boundaries.

#![allow(clippy::unwrap_used)] // tests fail loudly on broken fixtures

mod common;

use common::*;
use ontrack::core::{Change, Evidence, Flag, Outcome, Rules, StudentState};

fn rules() -> Rules {
    Rules::default()
}

/// Given `present` days with absences on the listed day numbers (0-based).
fn days(n: usize, absent: &[usize]) -> Vec<ontrack::core::Event<'static>> {
    school_days("2025-09-01", n)
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let status = if absent.contains(&i) { "absent_unexcused" } else { "present" };
            attendance(&format!("a{i}"), d, status)
        })
        .collect()
}

#[test]
fn attendance_raises_at_10_percent_over_10_days_and_clears_below_9() {
    let mut s = StudentState::default();
    // 9 days with 1 absence: too few days to judge.
    let mut changes = fold(&mut s, &days(9, &[0]), &rules());
    assert!(changes.is_empty(), "{:?}", describe(&changes));

    // Day 10, present: 1 of 10 = 10% raises.
    changes = fold(&mut s, &days(10, &[0])[9..], &rules());
    assert_eq!(describe(&changes), ["raised 2025-2026/stu-0001/attendance/1"]);
    assert_eq!(
        changes[0].evidence,
        Some(Evidence::Attendance { days_enrolled: 10, days_absent: 1, absence_rate: 0.1 })
    );

    // Day 11: 1 of 11 = 9.09%, inside the band: stays raised.
    changes = fold(&mut s, &days(11, &[0])[10..], &rules());
    assert!(changes.is_empty(), "{:?}", describe(&changes));
    assert!(s.is_raised(Flag::Attendance));

    // Day 12: 1 of 12 = 8.3% clears, with the raise's flag_id.
    changes = fold(&mut s, &days(12, &[0])[11..], &rules());
    assert_eq!(describe(&changes), ["cleared 2025-2026/stu-0001/attendance/1"]);
}

#[test]
fn a_second_raise_in_the_same_year_counts_up() {
    let mut s = StudentState::default();
    let mut changes = fold(&mut s, &days(12, &[0]), &rules());
    // Two absences more: 3 of 14 = 21%.
    changes.extend(fold(&mut s, &days(14, &[0, 12, 13])[12..], &rules()));
    let attendance: Vec<_> =
        describe(&changes).into_iter().filter(|d| d.contains("/attendance/")).collect();
    assert_eq!(
        attendance,
        [
            "raised 2025-2026/stu-0001/attendance/1",
            "cleared 2025-2026/stu-0001/attendance/1",
            "raised 2025-2026/stu-0001/attendance/2",
        ]
    );
}

#[test]
fn three_absences_in_a_row_raise_consecutive_and_a_present_day_clears_it() {
    let mut s = StudentState::default();
    let d = school_days("2025-09-01", 5);
    let mut changes = fold(
        &mut s,
        &[attendance("a0", &d[0], "absent_unexcused"), attendance("a1", &d[1], "absent_excused")],
        &rules(),
    );
    assert!(changes.is_empty());
    changes = fold(&mut s, &[attendance("a2", &d[2], "absent_unexcused")], &rules());
    assert_eq!(describe(&changes), ["raised 2025-2026/stu-0001/consecutive_absences/1"]);
    assert_eq!(changes[0].evidence, Some(Evidence::ConsecutiveAbsences { streak: 3 }));
    changes = fold(&mut s, &[attendance("a3", &d[3], "tardy")], &rules());
    assert_eq!(describe(&changes), ["cleared 2025-2026/stu-0001/consecutive_absences/1"]);
    assert_eq!(changes[0].evidence, Some(Evidence::ConsecutiveAbsences { streak: 0 }));
}

#[test]
fn consecutive_absences_look_at_the_latest_dates_not_the_latest_arrivals() {
    let mut s = StudentState::default();
    let d = school_days("2025-09-01", 4);
    // The present day is the latest date, though it arrives first.
    let changes = fold(
        &mut s,
        &[
            attendance("a3", &d[3], "present"),
            attendance("a0", &d[0], "absent_unexcused"),
            attendance("a1", &d[1], "absent_unexcused"),
            attendance("a2", &d[2], "absent_unexcused"),
        ],
        &rules(),
    );
    assert!(changes.is_empty(), "{:?}", describe(&changes));
}

#[test]
fn one_suspension_or_three_referrals_raise_behavior() {
    let mut s = StudentState::default();
    let changes = fold(
        &mut s,
        &[referral("r1", "2025-10-01", "ref-1", "out_of_school_suspension")],
        &rules(),
    );
    assert_eq!(describe(&changes), ["raised 2025-2026/stu-0001/behavior/1"]);
    assert_eq!(changes[0].evidence, Some(Evidence::Behavior { referrals: 1, suspensions: 1 }));

    let mut s = StudentState::default();
    let two = fold(
        &mut s,
        &[
            referral("r1", "2025-10-01", "ref-1", "detention"),
            referral("r2", "2025-10-02", "ref-2", "none"),
        ],
        &rules(),
    );
    assert!(two.is_empty());
    let third = fold(&mut s, &[referral("r3", "2025-10-03", "ref-3", "detention")], &rules());
    assert_eq!(describe(&third), ["raised 2025-2026/stu-0001/behavior/1"]);
}

#[test]
fn a_retracted_suspension_counts_as_never_recorded() {
    let mut s = StudentState::default();
    fold(&mut s, &[referral("r1", "2025-10-01", "ref-1", "in_school_suspension")], &rules());
    let mut retraction = with(
        base("discipline", "r1-x", "2025-10-01"),
        serde_json::json!({ "referral_id": "ref-1", "behavior": "B-01",
            "action": "in_school_suspension", "retracted": true,
            "recorded_at": "2025-10-02T09:00:00Z" }),
    );
    let changes = fold(&mut s, &[ev(retraction.take())], &rules());
    assert_eq!(describe(&changes), ["cleared 2025-2026/stu-0001/behavior/1"]);
    assert_eq!(changes[0].evidence, Some(Evidence::Behavior { referrals: 0, suspensions: 0 }));
}

#[test]
fn course_performance_counts_the_current_mark_of_core_sections_only() {
    let mut s = StudentState::default();
    // An F in an elective does not count.
    let changes =
        fold(&mut s, &[grade("g1", "2025-11-01", "art-1", "other", "2025-Q1", "F")], &rules());
    assert!(changes.is_empty());
    // One D in a core course is not enough; a second D is.
    let changes =
        fold(&mut s, &[grade("g2", "2025-11-01", "alg-1", "math", "2025-Q1", "D+")], &rules());
    assert!(changes.is_empty());
    let changes =
        fold(&mut s, &[grade("g3", "2025-11-01", "eng-1", "ela", "2025-Q1", "D-")], &rules());
    assert_eq!(describe(&changes), ["raised 2025-2026/stu-0001/course_performance/1"]);
    assert_eq!(
        changes[0].evidence,
        Some(Evidence::CoursePerformance { core_f: 0, core_d_or_f: 2 })
    );
    // Next quarter's B replaces the algebra D: one D left, cleared.
    let changes =
        fold(&mut s, &[grade("g4", "2026-01-20", "alg-1", "math", "2025-Q2", "B")], &rules());
    assert_eq!(describe(&changes), ["cleared 2025-2026/stu-0001/course_performance/1"]);
    // A numeric 59 without a letter is an F.
    let numeric = ev(with(
        base("grade", "g5", "2026-01-20"),
        serde_json::json!({ "section_id": "bio-1", "course_code": "BIO", "subject": "science",
            "grading_period": "2025-Q2", "numeric_grade": 59.5 }),
    ));
    let changes = fold(&mut s, &[numeric], &rules());
    assert_eq!(describe(&changes), ["raised 2025-2026/stu-0001/course_performance/2"]);
    assert_eq!(
        changes[0].evidence,
        Some(Evidence::CoursePerformance { core_f: 1, core_d_or_f: 2 })
    );
}

#[test]
fn off_track_follows_in_the_same_event_after_the_indicator_that_tips_it() {
    let mut s = StudentState::default();
    fold(&mut s, &[referral("r1", "2025-09-02", "ref-1", "expulsion")], &rules());
    // 10 days, 1 absence: attendance raises, and with behavior that makes two indicators.
    let changes = fold(&mut s, &days(10, &[0]), &rules());
    assert_eq!(
        describe(&changes),
        ["raised 2025-2026/stu-0001/attendance/1", "raised 2025-2026/stu-0001/off_track/1"]
    );
    assert_eq!(
        changes[1].evidence,
        Some(Evidence::OffTrack { indicators: vec![Flag::Attendance, Flag::Behavior] })
    );
    assert_eq!(changes[1].caused_by, "a9");
}

#[test]
fn a_later_correction_wins_and_an_older_one_arriving_late_loses() {
    let mut s = StudentState::default();
    let d = school_days("2025-09-01", 3);
    let abs = |id: &str, date: &str, rec: &str, status: &str| {
        ev(with(
            base("attendance", id, date),
            serde_json::json!({"status": status, "recorded_at": rec}),
        ))
    };
    fold(
        &mut s,
        &[
            abs("a0", &d[0], "2025-09-01T08:00:00Z", "absent_unexcused"),
            abs("a1", &d[1], "2025-09-02T08:00:00Z", "absent_unexcused"),
            abs("a2", &d[2], "2025-09-03T08:00:00Z", "absent_unexcused"),
        ],
        &rules(),
    );
    assert!(s.is_raised(Flag::ConsecutiveAbsences));
    // The SIS re-codes the last day as present, recorded later (in another time zone).
    let changes =
        fold(&mut s, &[abs("a2-fix", &d[2], "2025-09-03T12:00:00+02:00", "present")], &rules());
    assert_eq!(describe(&changes), ["cleared 2025-2026/stu-0001/consecutive_absences/1"]);
    // A stale record for that day, recorded before the fix, changes nothing.
    let changes =
        fold(&mut s, &[abs("a2-old", &d[2], "2025-09-03T09:30:00Z", "absent_unexcused")], &rules());
    assert!(changes.is_empty());
    let (_, figures) = s.figures().unwrap();
    assert_eq!((figures.days_enrolled, figures.days_absent), (3, 2));
}

#[test]
fn on_a_tie_of_recorded_at_the_greater_event_id_wins() {
    for order in [["b", "a"], ["a", "b"]] {
        let mut s = StudentState::default();
        for id in order {
            let status = if id == "b" { "absent_excused" } else { "present" };
            s.apply(&attendance(id, "2025-09-01", status), &rules());
        }
        assert_eq!(s.figures().unwrap().1.days_absent, 1, "order {order:?}");
    }
}

#[test]
fn a_repeated_event_id_is_skipped_even_with_other_content() {
    let mut s = StudentState::default();
    let first = attendance("a0", "2025-09-01", "present");
    assert!(matches!(s.apply(&first, &rules()), Outcome::Applied(_)));
    let before = s.clone();
    assert_eq!(s.apply(&first, &rules()), Outcome::Duplicate);
    let mut changed = attendance("a0", "2025-09-01", "absent_unexcused");
    changed.recorded_at.secs += 1;
    assert_eq!(s.apply(&changed, &rules()), Outcome::Duplicate);
    assert_eq!(s, before);
}

#[test]
fn a_retracted_day_leaves_the_enrolled_days() {
    let mut s = StudentState::default();
    let mut changes = fold(&mut s, &days(10, &[0]), &rules());
    assert_eq!(describe(&changes), ["raised 2025-2026/stu-0001/attendance/1"]);
    let retract = ev(with(
        base("attendance", "a5-x", &school_days("2025-09-01", 6)[5]),
        serde_json::json!({"status": "retracted", "recorded_at": "2025-12-01T00:00:00Z"}),
    ));
    changes = fold(&mut s, &[retract], &rules());
    // 9 enrolled days: below the minimum, cleared.
    assert_eq!(describe(&changes), ["cleared 2025-2026/stu-0001/attendance/1"]);
    assert_eq!(
        changes[0].evidence,
        Some(Evidence::Attendance { days_enrolled: 9, days_absent: 1, absence_rate: 1.0 / 9.0 })
    );
}

#[test]
fn a_new_school_year_clears_every_raised_flag_first_and_starts_counting_again() {
    let mut s = StudentState::default();
    fold(&mut s, &[referral("r1", "2026-03-02", "ref-1", "expulsion")], &rules());
    fold(&mut s, &days(10, &[0, 1, 2]), &rules());
    assert!(s.is_raised(Flag::Attendance) && s.is_raised(Flag::OffTrack));
    let raised_before: Vec<Flag> = s.raised_flags().map(|(f, _)| f).collect();

    // A suspension in August belongs to 2026-2027.
    let changes =
        fold(&mut s, &[referral("r2", "2026-08-20", "ref-2", "in_school_suspension")], &rules());
    let cleared: Vec<_> = changes.iter().filter(|c| c.change == Change::Cleared).collect();
    assert_eq!(cleared.iter().map(|c| c.flag).collect::<Vec<_>>(), raised_before);
    assert!(
        cleared.iter().all(|c| c.evidence.is_none() && c.school_year.to_string() == "2025-2026")
    );
    assert_eq!(
        describe(&changes[cleared.len()..]),
        ["raised 2026-2027/stu-0001/behavior/1"],
        "then the new year's rules run"
    );

    // Retracting the only record of the new year moves the student back: clear, then re-raise
    // the old year's flags with the next n.
    let back = ev(with(
        base("discipline", "r2-x", "2026-08-20"),
        serde_json::json!({"referral_id": "ref-2", "behavior": "B-01", "action": "in_school_suspension",
            "retracted": true, "recorded_at": "2026-08-21T08:00:00Z"}),
    ));
    let changes = fold(&mut s, &[back], &rules());
    assert_eq!(
        describe(&changes),
        [
            "cleared 2026-2027/stu-0001/behavior/1",
            "raised 2025-2026/stu-0001/attendance/2",
            "raised 2025-2026/stu-0001/behavior/2",
            "raised 2025-2026/stu-0001/off_track/2",
        ]
    );
}

#[test]
fn records_of_earlier_years_do_not_count() {
    let mut s = StudentState::default();
    fold(&mut s, &[referral("r1", "2025-05-02", "ref-1", "expulsion")], &rules());
    assert!(s.is_raised(Flag::Behavior));
    let changes = fold(&mut s, &[attendance("a0", "2025-09-02", "present")], &rules());
    assert_eq!(describe(&changes), ["cleared 2024-2025/stu-0001/behavior/1"]);
    // A late-arriving record of the old year changes nothing in the current one.
    let changes = fold(&mut s, &[referral("r2", "2025-05-03", "ref-2", "expulsion")], &rules());
    assert!(changes.is_empty());
}

#[test]
fn thresholds_come_from_the_rules_file() {
    let strict = Rules::from_toml("[consecutive_absences]\nraise_at_streak = 2\n").unwrap();
    let mut s = StudentState::default();
    let changes = fold(&mut s, &days(2, &[0, 1]), &strict);
    assert_eq!(describe(&changes), ["raised 2025-2026/stu-0001/consecutive_absences/1"]);
}

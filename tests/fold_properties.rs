//! Property tests of the fold: order independence, idempotence under duplicates, corrections.

#![allow(clippy::unwrap_used)] // tests fail loudly on broken fixtures

mod common;

use std::collections::HashMap;

use common::*;
use ontrack::core::{Change, Event, Flag, FlagChange, Rules, StudentState};
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::json;

/// Dates of two school years, so some histories roll over (and back, on retractions).
fn dates() -> Vec<String> {
    let mut d = school_days("2025-09-01", 22);
    d.extend(school_days("2026-08-24", 4));
    d
}

/// One event's content, without its id (the id is its position, so ids are unique).
#[derive(Debug, Clone)]
enum Spec {
    Attendance {
        date: usize,
        minute: u8,
        status: &'static str,
    },
    Referral {
        date: usize,
        minute: u8,
        referral: u8,
        action: &'static str,
        retracted: bool,
    },
    Grade {
        date: usize,
        minute: u8,
        section: u8,
        period: u8,
        letter: &'static str,
        retracted: bool,
    },
    Assignment {
        date: usize,
        minute: u8,
        advocate: Option<u8>,
    },
}

fn spec() -> impl Strategy<Value = Spec> {
    let n = dates().len();
    // Few distinct minutes: recorded_at ties are common, so the event_id tie-break is exercised.
    let minute = 0u8..3;
    prop_oneof![
        6 => (0..n, minute.clone(), select(vec![
                "present", "present", "present", "tardy", "absent_excused",
                "absent_unexcused", "absent_unexcused", "retracted"]))
            .prop_map(|(date, minute, status)| Spec::Attendance { date, minute, status }),
        1 => (0..n, minute.clone(), 0u8..4, select(vec![
                "none", "detention", "in_school_suspension", "out_of_school_suspension", "expulsion"]),
              prop::bool::weighted(0.2))
            .prop_map(|(date, minute, referral, action, retracted)|
                Spec::Referral { date, minute, referral, action, retracted }),
        2 => (0..n, minute.clone(), 0u8..4, 0u8..3, select(vec!["A", "B-", "C+", "D", "D-", "F", "E"]),
              prop::bool::weighted(0.15))
            .prop_map(|(date, minute, section, period, letter, retracted)|
                Spec::Grade { date, minute, section, period, letter, retracted }),
        1 => (0..n, minute, prop::option::of(0u8..2))
            .prop_map(|(date, minute, advocate)| Spec::Assignment { date, minute, advocate }),
    ]
}

fn build(i: usize, s: &Spec) -> Event<'static> {
    let dates = dates();
    let at = |date: usize, minute: u8| format!("{}T08:0{minute}:00Z", dates[date]);
    let id = format!("e{i:03}");
    match s {
        Spec::Attendance { date, minute, status } => ev(with(
            base("attendance", &id, &dates[*date]),
            json!({"status": status, "recorded_at": at(*date, *minute)}),
        )),
        Spec::Referral { date, minute, referral, action, retracted } => ev(with(
            base("discipline", &id, &dates[*date]),
            json!({"referral_id": format!("ref-{referral}"), "behavior": "B-01", "action": action,
                   "retracted": retracted, "recorded_at": at(*date, *minute)}),
        )),
        Spec::Grade { date, minute, section, period, letter, retracted } => {
            // sec-3 is an elective, the rest are core.
            let subject = ["math", "ela", "science", "other"][usize::from(*section)];
            ev(with(
                base("grade", &id, &dates[*date]),
                json!({"section_id": format!("sec-{section}"), "course_code": "C",
                   "subject": subject,
                   "grading_period": format!("Q{period}"), "letter_grade": letter,
                   "retracted": retracted, "recorded_at": at(*date, *minute)}),
            ))
        }
        Spec::Assignment { date, minute, advocate } => ev(with(
            base("assignment", &id, &dates[*date]),
            json!({"advocate_id": advocate.map(|a| format!("adv-{a}")), "recorded_at": at(*date, *minute)}),
        )),
    }
}

fn history() -> impl Strategy<Value = Vec<Event<'static>>> {
    prop::collection::vec(spec(), 1..60)
        .prop_map(|specs| specs.iter().enumerate().map(|(i, s)| build(i, s)).collect())
}

/// Per flag, the published changes alternate raised/cleared, a clear carries its raise's id, and
/// raises count 1, 2, … within each school year.
fn assert_well_formed(changes: &[FlagChange]) {
    let mut open: HashMap<Flag, String> = HashMap::new();
    let mut last_n: HashMap<(Flag, String), u32> = HashMap::new();
    for c in changes {
        match c.change {
            Change::Raised => {
                assert!(!open.contains_key(&c.flag), "raised twice: {}", c.flag_id());
                let n = last_n.entry((c.flag, c.school_year.to_string())).or_insert(0);
                assert_eq!(c.n, *n + 1, "gap in raises: {}", c.flag_id());
                *n = c.n;
                open.insert(c.flag, c.flag_id());
            }
            Change::Cleared => {
                assert_eq!(open.remove(&c.flag), Some(c.flag_id()), "clear without its raise");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// (a) Any arrival order: the same records and figures, and the same flags wherever the
    /// figures decide them.
    #[test]
    fn arrival_order_does_not_change_records_figures_or_decided_flags(
        (events, shuffled) in history().prop_flat_map(|h| (Just(h.clone()), Just(h).prop_shuffle()))
    ) {
        let rules = Rules::default();
        let (mut a, mut b) = (StudentState::default(), StudentState::default());
        let changes_a = fold(&mut a, &events, &rules);
        let changes_b = fold(&mut b, &shuffled, &rules);
        assert_well_formed(&changes_a);
        assert_well_formed(&changes_b);
        prop_assert_eq!(a.records(), b.records());
        prop_assert_eq!(a.figures(), b.figures());
        // The figures kept event by event are the figures of the records.
        prop_assert_eq!(a.figures().map(|f| f.1).unwrap_or_default(), a.figures_from_records(&rules));
        prop_assert_eq!(b.figures().map(|f| f.1).unwrap_or_default(), b.figures_from_records(&rules));
        for flag in Flag::ALL {
            if let Some(expected) = decided(*flag, &a, &rules) {
                prop_assert_eq!(a.is_raised(*flag), expected, "{} in order", flag);
                prop_assert_eq!(b.is_raised(*flag), expected, "{} shuffled", flag);
            }
        }
    }

    /// (b) Applying any event twice equals applying it once: same state, same flags emitted.
    #[test]
    fn duplicates_change_nothing(
        events in history(),
        repeats in prop::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>()), 0..20),
    ) {
        let rules = Rules::default();
        let with_dups = with_repeats(&events, &repeats);
        let (mut once, mut twice) = (StudentState::default(), StudentState::default());
        let changes_once = fold(&mut once, &events, &rules);
        let changes_twice = fold(&mut twice, &with_dups, &rules);
        prop_assert_eq!(&once, &twice);
        prop_assert_eq!(changes_once, changes_twice);
    }

    /// (c) A correction with a later `recorded_at` wins whichever arrives first.
    #[test]
    fn a_later_correction_wins_in_either_order(
        events in history(),
        date in 0..22usize,
        first in select(vec!["present", "absent_unexcused", "absent_excused", "tardy"]),
        fixed in select(vec!["present", "absent_excused", "retracted"]),
        correction_first in any::<bool>(),
        at in any::<prop::sample::Index>(),
    ) {
        let rules = Rules::default();
        let day = &dates()[date];
        let original = ev(with(base("attendance", "orig", day),
            json!({"status": first, "recorded_at": format!("{day}T09:00:00Z")})));
        // Recorded later, though its id sorts first and it may arrive first.
        let correction = ev(with(base("attendance", "a-fix", day),
            json!({"status": fixed, "recorded_at": format!("{day}T15:00:00+02:00")})));
        let mut stream = events.clone();
        let pair = if correction_first { [correction, original] } else { [original, correction] };
        let i = at.index(stream.len() + 1);
        stream.insert(i, pair[0].clone());
        stream.push(pair[1].clone());
        let mut s = StudentState::default();
        fold(&mut s, &stream, &rules);
        let (attendance, ..) = s.records();
        let rec = attendance.iter().find(|r| r.date.to_string() == *day).unwrap();
        prop_assert_eq!(rec.status.as_str(), fixed);
        prop_assert_eq!(&*rec.version.event_id, "a-fix");
    }
}

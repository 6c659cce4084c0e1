//! Property tests of the fold: order independence, idempotence under duplicates, corrections.

#![allow(clippy::unwrap_used)] // tests fail loudly on broken fixtures

mod common;

use std::collections::HashMap;

use common::*;
use ontrack::core::{Change, Event, Flag, FlagChange, Outcome, Rules, StudentState};
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
    build_on(i, s, &dates())
}

/// Dates as many as [`dates`], spread over half a year (a school day a week from September),
/// then four in the next school year: a state read back hot from the store holds two months.
fn spread_dates() -> Vec<String> {
    let weekly: Vec<String> = school_days("2025-09-01", 22 * 5).into_iter().step_by(5).collect();
    [weekly, school_days("2026-08-24", 4)].concat()
}

fn build_on(i: usize, s: &Spec, dates: &[String]) -> Event<'static> {
    let at = |date: usize, minute: u8| format!("{}T08:0{minute}:00Z", dates[date]);
    let dates = dates.to_vec();
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

/// A history over [`spread_dates`].
fn spread_history() -> impl Strategy<Value = Vec<Event<'static>>> {
    prop::collection::vec(spec(), 1..60).prop_map(|specs| {
        let dates = spread_dates();
        specs.iter().enumerate().map(|(i, s)| build_on(i, s, &dates)).collect()
    })
}

/// How a state goes on after a commit, as the pipeline's state cache keeps it.
#[derive(Debug, Clone, Copy)]
enum Kept {
    /// Read back from the store.
    Store,
    /// Read back, its referrals and grades set aside.
    StoreAside,
    /// The state written, kept in memory with its referrals and grades set aside.
    Aside,
    /// The same, packed (from the packed form it was unpacked from, if it was) and unpacked.
    Packed,
}

fn kept() -> impl Strategy<Value = Vec<Kept>> {
    prop::collection::vec(
        select(vec![Kept::Store, Kept::StoreAside, Kept::Aside, Kept::Packed]),
        80,
    )
}

/// Folds `events` through a store as the service does, committing after the events `commits`
/// picks; after each commit the state goes on as `kept` says (read back hot — the last two
/// months — or kept as the cache keeps it; read back when `kept` says nothing), made whole
/// only when an event needs it.
fn fold_through_store(
    events: &[Event<'static>],
    commits: &[bool],
    kept: &[Kept],
    rules: &Rules,
) -> (StudentState, Vec<FlagChange>, usize) {
    use ontrack::store::{Store, Stored, states};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (mut stored, mut changes, mut hot) = (Stored::default(), Vec::new(), 0);
    let mut new_in = Some(0);
    for (i, e) in events.iter().enumerate() {
        store.complete_for("stu-0001", &mut stored, e, rules).unwrap();
        if let Outcome::Applied(c) = stored.state.apply(e, rules) {
            changes.extend(c);
        }
        if commits.get(i).copied().unwrap_or(true) {
            let mut batch = store.batch();
            states::write(&mut batch, "stu-0001", &mut stored, new_in.take());
            store.commit(batch).unwrap();
            let how = kept.get(i).copied().unwrap_or(Kept::Store);
            if matches!(how, Kept::Store | Kept::StoreAside) {
                stored = store.stored_student("stu-0001").unwrap().unwrap();
            }
            if !matches!(how, Kept::Store) {
                states::set_aside(&mut stored);
            }
            if let (Kept::Packed, Some(packed)) = (how, states::repack(&mut stored)) {
                stored = states::unpack_kept("stu-0001", packed).unwrap();
            }
            hot += usize::from(!stored.state.is_whole());
        }
    }
    store.complete("stu-0001", &mut stored).unwrap();
    (stored.state, changes, hot)
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

    /// (d) Through the store, read back hot after each commit (only the last two months of
    /// attendance held, the rest made whole when an event needs it) or kept as the state cache
    /// keeps it (referrals and grades set aside, packed or not): the same flags, in the same
    /// order, and the same final state as a whole state folded in memory — in any order, with
    /// duplicates of records long out of memory.
    #[test]
    fn a_hot_state_folds_like_the_whole_state(
        (events, shuffled) in spread_history().prop_flat_map(|h| (Just(h.clone()), Just(h).prop_shuffle())),
        repeats in prop::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>()), 0..12),
        commits in prop::collection::vec(prop::bool::weighted(0.7), 80),
        kept in kept(),
        in_order in any::<bool>(),
    ) {
        let rules = Rules::default();
        let order = if in_order { &events } else { &shuffled };
        let stream = with_repeats(order, &repeats);
        let mut whole = StudentState::default();
        let expected = fold(&mut whole, &stream, &rules);
        let (state, changes, _) = fold_through_store(&stream, &commits, &kept, &rules);
        prop_assert_eq!(changes, expected);
        prop_assert_eq!(state, whole);
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

/// The store's part of (d) is exercised: half a year of attendance, then a correction of its
/// first day and a repeat of its first record. Read back after each commit, the state holds
/// two months; the correction and the repeat make it whole, and it ends as folded in memory.
#[test]
fn a_state_read_back_holds_the_last_two_months() {
    let rules = Rules::default();
    let dates = spread_dates();
    let mut events: Vec<Event<'static>> = (0..22)
        .map(|i| {
            let status = if i % 3 == 0 { "absent_unexcused" } else { "present" };
            build_on(i, &Spec::Attendance { date: i, minute: 0, status }, &dates)
        })
        .collect();
    let first = &dates[0];
    events.push(ev(with(
        base("attendance", "fix", first),
        json!({"status": "present", "recorded_at": format!("{first}T15:00:00Z")}),
    )));
    events.push(events[0].clone());
    let (state, changes, hot) = fold_through_store(&events, &[], &[], &rules);
    let mut whole = StudentState::default();
    assert_eq!(changes, fold(&mut whole, &events, &rules));
    assert_eq!(state, whole);
    assert!(hot >= 15, "read back hot {hot} times of {}", events.len());
    assert_eq!(
        state.attendance_on(time::macros::date!(2025 - 09 - 01)).map(|s| s.is_absence()),
        Some(false)
    );
}

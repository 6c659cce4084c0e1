//! The service's unit of work without a broker: batches in, one atomic commit out.

#![allow(clippy::unwrap_used)] // tests fail loudly on broken fixtures

mod common;

use ontrack::core::Rules;
use ontrack::pipeline::{InputMessage, Pipeline, Topics};
use ontrack::store::{OutboxRecord, Store};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

fn pipeline(dir: &tempfile::TempDir) -> Pipeline {
    Pipeline::new(Store::open(dir.path()).unwrap(), Rules::default(), Topics::default())
}

fn attendance(id: &str, student: &str, date: &str, status: &str) -> Vec<u8> {
    common::attendance_json(id, student, date, status).into_bytes()
}

fn msg<'a>(topic: &'a str, offset: i64, key: &'a [u8], payload: &'a [u8]) -> InputMessage<'a> {
    InputMessage {
        topic,
        partition: 0,
        offset,
        key: Some(key),
        payload: Some(payload),
        timestamp_ms: None,
    }
}

fn outbox(store: &Store) -> Vec<OutboxRecord> {
    store.pending().map(|r| r.unwrap().1).collect()
}

fn json_of(r: &OutboxRecord) -> Value {
    serde_json::from_slice(&r.payload).unwrap()
}

/// Ten school days from Tuesday 2026-09-01.
const DAYS: [&str; 10] = [
    "2026-09-01",
    "2026-09-02",
    "2026-09-03",
    "2026-09-04",
    "2026-09-07",
    "2026-09-08",
    "2026-09-09",
    "2026-09-10",
    "2026-09-11",
    "2026-09-14",
];

#[test]
fn a_batch_commits_states_offsets_and_flags_together() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(&dir);
    let payloads: Vec<Vec<u8>> = DAYS
        .iter()
        .enumerate()
        .map(|(i, d)| {
            attendance(
                &format!("a{i}"),
                "stu-7",
                d,
                if i == 0 { "absent_unexcused" } else { "present" },
            )
        })
        .collect();
    let batch: Vec<_> = payloads
        .iter()
        .enumerate()
        .map(|(i, b)| msg("sis.attendance", 40 + i as i64, b"stu-7", b))
        .collect();
    let outcome = p.process(&batch, jiff::Timestamp::now()).unwrap();
    assert_eq!((outcome.events, outcome.duplicates, outcome.rejected), (10, 0, 0));

    let store = p.store();
    assert_eq!(store.next_offset("sis.attendance", 0).unwrap(), Some(50));
    assert_eq!(store.student("stu-7").unwrap().unwrap().events_applied(), 10);
    let flags = outbox(store);
    assert_eq!(flags.len(), 1);
    assert_eq!(flags[0].topic, "ontrack.flags");
    assert_eq!(flags[0].key.as_deref(), Some(&b"stu-7"[..]));
    assert_eq!(json_of(&flags[0])["flag_id"], "2026-2027/stu-7/attendance/1");
    assert_eq!(json_of(&flags[0])["caused_by"], "a9");
}

#[test]
fn redelivered_messages_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(&dir);
    let payloads: Vec<Vec<u8>> = DAYS[..3]
        .iter()
        .enumerate()
        .map(|(i, d)| attendance(&format!("a{i}"), "stu-1", d, "absent_excused"))
        .collect();
    let batch: Vec<_> = payloads
        .iter()
        .enumerate()
        .map(|(i, b)| msg("sis.attendance", i as i64, b"stu-1", b))
        .collect();
    let first = p.process(&batch, jiff::Timestamp::now()).unwrap();
    assert_eq!(first.flags.len(), 1, "three absences in a row");
    let again = p.process(&batch, jiff::Timestamp::now()).unwrap();
    assert_eq!((again.events, again.duplicates, again.flags.len()), (3, 3, 0));
    assert_eq!(outbox(p.store()).len(), 1);
}

#[test]
fn bad_input_goes_to_the_dead_letter_outbox_as_it_came_and_the_rest_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(&dir);
    let good = attendance("a0", "stu-1", DAYS[0], "absent_unexcused");
    let misspelled = attendance("a1", "stu-1", DAYS[1], "absnt");
    let cases: Vec<(InputMessage<'_>, &str)> = vec![
        (msg("sis.attendance", 0, b"stu-1", b"{not json"), "invalid JSON"),
        (msg("sis.attendance", 1, b"stu-1", &misspelled), "attendance.status: expected one of"),
        (msg("sis.attendance", 2, b"stu-1", br#"{"type":"absence"}"#), "type: expected one of"),
        (
            msg("sis.grades", 3, b"stu-1", &good),
            "does not belong on topic sis.grades; send it to sis.attendance",
        ),
        (
            InputMessage { payload: None, ..msg("sis.attendance", 4, b"stu-1", b"") },
            "empty message",
        ),
    ];
    let mut batch: Vec<InputMessage<'_>> = cases.iter().map(|(m, _)| *m).collect();
    batch.push(msg("sis.attendance", 5, b"stu-1", &good));
    let outcome = p.process(&batch, jiff::Timestamp::now()).unwrap();
    assert_eq!((outcome.rejected, outcome.events), (5, 1));

    let dead = outbox(p.store());
    assert_eq!(dead.len(), 5);
    for ((m, reason), d) in cases.iter().zip(&dead) {
        assert_eq!(d.topic, "ontrack.dead-letter");
        assert_eq!(d.key.as_deref(), m.key);
        assert_eq!(d.payload, m.payload.unwrap_or_default(), "bytes unchanged");
        let header = |name: &str| {
            let (_, v) = d.headers.iter().find(|(k, _)| k == name).unwrap();
            String::from_utf8(v.clone()).unwrap()
        };
        assert_eq!(header("ontrack.error.topic"), m.topic);
        assert_eq!(header("ontrack.error.partition"), "0");
        assert_eq!(header("ontrack.error.offset"), m.offset.to_string());
        assert!(
            header("ontrack.error.reason").contains(reason),
            "{}",
            header("ontrack.error.reason")
        );
    }
    // The good event after them counted, and every offset read is committed.
    assert_eq!(p.store().student("stu-1").unwrap().unwrap().events_applied(), 1);
    assert_eq!(p.store().next_offset("sis.attendance", 0).unwrap(), Some(6));
    assert_eq!(p.store().next_offset("sis.grades", 0).unwrap(), Some(4));
}

#[test]
fn batches_of_any_size_give_the_flags_replay_gives() {
    let mut district = ontrack::synth::District::new(ontrack::synth::DistrictSpec {
        students: 120,
        days: 45,
        ..Default::default()
    });
    let messages: Vec<ontrack::synth::SynthEvent> = (0..45).flat_map(|d| district.day(d)).collect();

    let expected = common::replayed(messages.iter().map(|m| m.json.as_str()));
    assert!(expected.len() > 50);

    // The pipeline in batches of random sizes, students spread over 4 partitions; with no state
    // cache, a cache far smaller than the district, one that holds it all (dropped now and then,
    // as on a rebalance), all of it packed, and part decoded, part packed.
    // One worker, and three folding each batch's students side by side: the same flags in the
    // same order.
    for cache in [(0, 0), (40_000, 0), (64 << 20, 0), (0, 64 << 20), (40_000, 100_000)] {
        for workers in [1, 3] {
            let got = through_pipeline(&messages, cache, workers);
            assert_eq!(got, expected, "cache of {cache:?} bytes, {workers} workers");
        }
    }
}

/// What the pipeline publishes for `messages`, in batches of random sizes, students spread over
/// 4 partitions, with a state cache of `cache` bytes (decoded, packed; dropped now and then, as
/// on a rebalance), folded by `workers`.
fn through_pipeline(
    messages: &[ontrack::synth::SynthEvent],
    cache: (usize, usize),
    workers: usize,
) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(&dir).with_workers(workers).with_cache_bytes(cache.0, cache.1);
    let topics = Topics::default();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut offsets = [0i64; 4];
    let mut at = 0;
    while at < messages.len() {
        let n = rng.random_range(1..400).min(messages.len() - at);
        let batch = inputs(&topics, messages[at..at + n].iter(), &mut offsets);
        p.process(&batch, jiff::Timestamp::now()).unwrap();
        if rng.random_ratio(1, 10) {
            p.forget_cached();
        }
        at += n;
    }
    let reads = p.telemetry().state_reads_count();
    assert_eq!(reads.packed > 0, cache.1 > 0, "states from the packed cache: {reads:?}");
    outbox(p.store()).iter().map(|r| common::without_emitted_at(json_of(r))).collect()
}

/// 400 students of a mixed district (positive-attendance schools, and absence-only schools with
/// calendars, enrollments, transfers, a snow day) over 45 school days.
fn mixed_district() -> ontrack::synth::District {
    ontrack::synth::District::new(ontrack::synth::DistrictSpec {
        students: 400,
        schools: 4,
        days: 45,
        feed: ontrack::synth::Feed::Mixed,
        ..Default::default()
    })
}

/// `messages` as read from their topics, each student's through its partition (4), at the
/// partitions' next `offsets`.
fn inputs<'m>(
    topics: &'m Topics,
    messages: impl Iterator<Item = &'m ontrack::synth::SynthEvent>,
    offsets: &mut [i64; 4],
) -> Vec<InputMessage<'m>> {
    messages
        .map(|m| {
            let partition = partition_of(&m.student_id);
            let offset = &mut offsets[partition as usize];
            *offset += 1;
            InputMessage {
                topic: topics.input_of(m.kind),
                partition,
                offset: *offset - 1,
                key: Some(m.student_id.as_bytes()),
                payload: Some(m.json.as_bytes()),
                timestamp_ms: None,
            }
        })
        .collect()
}

/// The partition of a student's (or a calendar's school's) messages in these tests.
fn partition_of(key: &str) -> i32 {
    (xxhash_rust::xxh3::xxh3_64(key.as_bytes()) % 4) as i32
}

/// Flag events by student, in order.
fn per_student(flags: &[Value]) -> std::collections::BTreeMap<String, Vec<Value>> {
    let mut map = std::collections::BTreeMap::<String, Vec<Value>>::new();
    for f in flags {
        map.entry(f["student_id"].as_str().unwrap().to_owned()).or_default().push(f.clone());
    }
    map
}

/// Contract v1.1 in the service's unit of work: a mixed district (absence-only schools with
/// calendars, enrollments, transfers, a snow day) plus two weeks called off afterwards, so
/// that days passing (the watched index) and a calendar change (the enrollment index) re-evaluate
/// students from the store: per student, the flags `replay` gives.
#[test]
fn days_passing_and_calendar_changes_give_replays_flags() {
    let mut district = mixed_district();
    let dates = district.dates().to_vec();
    let mut messages: Vec<ontrack::synth::SynthEvent> = Vec::new();
    for d in 0..45 {
        messages.extend(district.day(d));
        if d == 30 {
            // Two weeks (days 11 to 20) at sch-01 are called off after all, recorded on day 30.
            for off in 11..=20 {
                let json = serde_json::json!({"type": "calendar",
                    "event_id": format!("called-off-{off}"), "school_id": "sch-01",
                    "date": dates[off].to_string(),
                    "recorded_at": format!("{}T07:00:00-05:00", dates[30]), "instructional": false});
                messages.push(ontrack::synth::SynthEvent {
                    kind: ontrack::core::EventKind::Calendar,
                    student_id: "sch-01".into(),
                    json: json.to_string(),
                });
            }
        }
    }
    let expected = common::replayed(messages.iter().map(|m| m.json.as_str()));
    let by_day = expected.iter().filter(|f| f["caused_by"].as_str().unwrap().starts_with("day:"));
    assert!(by_day.count() > 10, "days passing change flags");
    let called_off = |f: &&Value| f["caused_by"].as_str().unwrap().starts_with("called-off");
    assert!(expected.iter().any(|f| called_off(&f)), "the calendar change does");
    for (cache, workers) in [((0, 0), 1), ((64 << 20, 0), 3), ((0, 64 << 20), 3)] {
        let got = through_pipeline(&messages, cache, workers);
        let (got, want) = (per_student(&got), per_student(&expected));
        assert_eq!(got, want, "cache of {cache:?} bytes, {workers} workers");
    }
}

/// Issue 15: a partition group that is behind counts only the days its own records (and the
/// calendar's) close. Groups 1–3 of a mixed district run ahead of group 0 (as when group 0
/// catches up a backlog while the others are live), held back only by the calendar records,
/// which take their place in every group's order (as the service's time order does): while
/// behind, group 0's students do not see the days the others pass; once caught up (after each
/// of its parts) group 0 takes the latest day. Groups 1–3, caught up throughout, share their
/// days as one instance. So group 0's flags are `replay`'s over its messages, the calendar's,
/// and a record that closes the latest day where it caught up; the others' are `replay`'s over
/// their messages and the calendar's.
#[test]
fn a_group_that_is_behind_counts_its_own_days_not_another_groups() {
    use ontrack::synth::SynthEvent;
    let mut district = mixed_district();
    let last = *district.dates().last().unwrap();
    let mut messages: Vec<SynthEvent> = (0..45).flat_map(|d| district.day(d)).collect();
    // At the end, a student of group 1 attends a week after the last day: its record closes
    // that week for groups 1–3; group 0 takes it once caught up.
    let student = (0..).map(|n| format!("late-{n}")).find(|id| partition_of(id) == 1).unwrap();
    let date = last + time::Duration::days(7);
    messages.push(SynthEvent {
        kind: ontrack::core::EventKind::Attendance,
        json: serde_json::json!({"type": "attendance", "event_id": "late", "student_id": student,
            "school_id": "sch-00", "date": date.to_string(),
            "recorded_at": format!("{date}T09:00:00-05:00"), "status": "present"})
        .to_string(),
        student_id: student,
    });
    let calendar = |m: &SynthEvent| m.kind == ontrack::core::EventKind::Calendar;
    let group = |m: &SynthEvent| partition_of(&m.student_id);
    assert!(messages.iter().filter(|m| calendar(m)).count() > 1);

    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(&dir).with_workers(3);
    let topics = Topics::default();
    let mut offsets = [0i64; 4];
    let mut process = |part: &[&SynthEvent], caught_up: &[i32]| {
        let batch = inputs(&topics, part.iter().copied(), &mut offsets);
        let caught_up = caught_up.iter().copied().collect();
        p.process_groups(&batch, jiff::Timestamp::now(), Some(&caught_up)).unwrap();
    };
    // Between two calendar records: groups 1–3 (group 0 behind), then group 0 (caught up
    // after it), then the calendar record.
    let mut behind: Vec<&SynthEvent> = Vec::new();
    let mut group_0: Vec<String> = Vec::new();
    let mut latest = String::new();
    for (n, segment) in messages.split_inclusive(calendar).enumerate() {
        let (cal, rest) = match segment.split_last() {
            Some((last, rest)) if calendar(last) => (Some(last), rest),
            _ => (None, segment),
        };
        let ahead: Vec<&SynthEvent> = rest.iter().filter(|m| group(m) != 0).collect();
        let own: Vec<&SynthEvent> = rest.iter().filter(|m| group(m) == 0).collect();
        process(&ahead, &[1, 2, 3]);
        process(&own, &[0, 1, 2, 3]);
        // The latest day any group has closed: the day before the latest date of a record not
        // about the future.
        for m in rest.iter().chain(cal) {
            let v: Value = serde_json::from_str(&m.json).unwrap();
            let date = v["date"].as_str().unwrap();
            if date <= &v["recorded_at"].as_str().unwrap()[..10] && date > latest.as_str() {
                latest = date.to_owned();
            }
        }
        group_0.extend(own.iter().map(|m| m.json.clone()));
        group_0.push(
            serde_json::json!({"type": "attendance", "event_id": format!("clock-{n}"),
                "student_id": "clock", "school_id": "sch-00", "date": latest,
                "recorded_at": format!("{latest}T12:00:00-05:00"), "status": "present"})
            .to_string(),
        );
        if let Some(cal) = cal {
            process(&[cal], &[0, 1, 2, 3]);
            group_0.push(cal.json.clone());
        }
        behind.extend(ahead.iter().chain(&own).copied().chain(cal));
    }
    let got = per_student(
        &outbox(p.store()).iter().map(json_of).map(common::without_emitted_at).collect::<Vec<_>>(),
    );

    let in_group = |p: i32| move |(id, _): &(String, Vec<Value>)| partition_of(id) == p;
    let mut expected: std::collections::BTreeMap<String, Vec<Value>> =
        per_student(&common::replayed(group_0.iter().map(String::as_str)))
            .into_iter()
            .filter(in_group(0))
            .collect();
    let others = messages.iter().filter(|m| calendar(m) || group(m) != 0);
    let flags = common::replayed(others.map(|m| m.json.as_str()));
    for p in 1..4 {
        expected.extend(per_student(&flags).into_iter().filter(in_group(p)));
    }
    // With one day for the instance, group 0 would count the days the others passed.
    let one_clock = common::replayed(behind.iter().map(|m| m.json.as_str()));
    assert_ne!(per_student(&one_clock), expected, "the order makes a difference");
    assert_eq!(got, expected);
}

/// Issue 15: groups that are caught up share the instance's day at the record that closes it,
/// in time order. A student of group 1 opens day 15 (at 08:00); that closes day 14 in group 0
/// too, where a student absent on days 11–13 has no record on day 14 yet. Served in turn, the
/// batch holds the opening record before group 0's last one, an absence for day 14:
/// - entered late (the next day at 09:00, after the opening record): day 14 passes as present
///   first, the streak clears, and the absence raises it again;
/// - entered on day 14 (at 15:00, before the opening record): it counts before day 14 passes,
///   and the streak never clears.
///
/// Either way `replay`'s flags over the records in time order.
#[test]
fn caught_up_groups_pass_a_day_where_another_groups_record_closes_it_in_time_order() {
    let late = two_groups_around_a_closing_record(true);
    assert_eq!(late, ["flag.raised", "flag.cleared", "flag.raised"]);
    let on_the_day = two_groups_around_a_closing_record(false);
    assert_eq!(on_the_day, ["flag.raised"]);
}

/// The scenario above with the absence for day 14 entered `late` (else on the day): checks the
/// pipeline's flags against `replay`'s in time order; returns the streak flag's changes.
fn two_groups_around_a_closing_record(late: bool) -> Vec<String> {
    let days = common::school_days("2026-09-01", 20);
    let ev = |kind: &str, id: &str, student: &str, date: &str, at: &str, extra: Value| {
        let mut v = serde_json::json!({"type": kind, "event_id": id, "student_id": student,
            "school_id": "sch-1", "date": date, "recorded_at": at});
        v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        v.to_string()
    };
    let on = |date: &str, time: &str| format!("{date}T{time}-05:00");
    let mut messages: Vec<(i32, &str, String)> = Vec::new();
    let topics = Topics::default();
    for d in &days {
        let mut v = serde_json::json!({"type": "calendar", "event_id": format!("cal-{d}"),
            "school_id": "sch-1", "date": d, "recorded_at": "2026-08-15T12:00:00-05:00",
            "instructional": true});
        v.as_object_mut().unwrap().remove("student_id");
        messages.push((0, &topics.calendar, v.to_string()));
    }
    let enrolled = serde_json::json!({"exit_date": null});
    let enrollment =
        ev("enrollment", "enr-1", "stu-1", &days[0], "2026-08-20T12:00:00-05:00", enrolled);
    messages.push((0, &topics.enrollment, enrollment));
    let absent = serde_json::json!({"status": "absent_unexcused"});
    for d in &days[10..13] {
        let absence =
            ev("attendance", &format!("a-{d}"), "stu-1", d, &on(d, "08:40:00"), absent.clone());
        messages.push((0, &topics.attendance, absence));
    }
    let tardy = serde_json::json!({"status": "tardy"});
    let opens =
        ev("attendance", "other", "stu-other", &days[14], &on(&days[14], "08:00:00"), tardy);
    messages.push((1, &topics.attendance, opens));
    let absence_at = if late { on(&days[14], "09:00:00") } else { on(&days[13], "15:00:00") };
    let absence = ev("attendance", "day-14", "stu-1", &days[13], &absence_at, absent);
    messages.push((0, &topics.attendance, absence));

    // The records in time order (by recorded_at; the batch's order otherwise).
    let mut in_time: Vec<&(i32, &str, String)> = messages.iter().collect();
    let at = |json: &str| serde_json::from_str::<Value>(json).unwrap()["recorded_at"].clone();
    in_time.sort_by_key(|(_, _, json)| at(json).as_str().unwrap().to_owned());
    let expected = common::replayed(in_time.iter().map(|(_, _, json)| json.as_str()));

    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(&dir);
    let batch: Vec<InputMessage<'_>> = (messages.iter().enumerate())
        .map(|(i, (partition, topic, json))| InputMessage {
            topic,
            partition: *partition,
            offset: i as i64,
            key: None,
            payload: Some(json.as_bytes()),
            timestamp_ms: None,
        })
        .collect();
    let both = [0, 1].into_iter().collect();
    p.process_groups(&batch[..days.len() + 1], jiff::Timestamp::now(), Some(&both)).unwrap();
    p.process_groups(&batch[days.len() + 1..], jiff::Timestamp::now(), Some(&both)).unwrap();
    let got: Vec<Value> =
        outbox(p.store()).iter().map(json_of).map(common::without_emitted_at).collect();
    assert_eq!(per_student(&got), per_student(&expected), "absence at {absence_at}");
    (got.iter())
        .filter(|f| f["student_id"] == "stu-1" && f["flag"] == "consecutive_absences")
        .map(|f| f["type"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_district_larger_than_the_state_cache_still_finds_part_of_it_cached() {
    // 400 students; over the last ten of 30 school days the cache holds about half of them. Every
    // school day touches each student once, in the same order: emptying the cache when full (or
    // evicting the least recently used) would read every state back from the store; keeping a
    // part of them must not.
    let mut district = ontrack::synth::District::new(ontrack::synth::DistrictSpec {
        students: 400,
        days: 30,
        ..Default::default()
    });
    let days: Vec<Vec<ontrack::synth::SynthEvent>> = (0..30).map(|d| district.day(d)).collect();
    let topics = Topics::default();
    let mut offset = 0;
    let mut fold = |p: &Pipeline, days: &[Vec<ontrack::synth::SynthEvent>]| {
        for chunk in days.iter().flatten().collect::<Vec<_>>().chunks(50) {
            let batch: Vec<InputMessage<'_>> = chunk
                .iter()
                .map(|m| {
                    offset += 1;
                    let (key, json) = (m.student_id.as_bytes(), m.json.as_bytes());
                    msg(topics.input_of(m.kind), offset, key, json)
                })
                .collect();
            p.process(&batch, jiff::Timestamp::now()).unwrap();
        }
        let text = p.telemetry().render();
        let reads = |source: &str| {
            sample(&text, &format!("ontrack_state_reads_total{{source=\"{source}\"}}"))
        };
        (reads("cache"), reads("store"))
    };
    // What the whole district takes in the cache after 20 days.
    let whole = tempfile::tempdir().unwrap();
    let p = pipeline(&whole).with_cache_bytes(64 << 20, 0);
    let (_, read) = fold(&p, &days[..20]);
    let ids: std::collections::BTreeSet<&str> =
        days.iter().flatten().map(|m| m.student_id.as_str()).collect();
    assert_eq!(read, ids.len() as f64, "a cache that holds all reads each student once");
    let bytes: usize = ids
        .iter()
        .map(|id| ontrack::pipeline::cached_bytes(id, &p.store().student(id).unwrap().unwrap()))
        .sum();

    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(&dir).with_cache_bytes(bytes * 2 / 3, 0);
    let (cached_before, read_before) = fold(&p, &days[..20]);
    let (cached, read) = fold(&p, &days[20..]);
    let (cached, read) = (cached - cached_before, read - read_before);
    assert!(cached + read > 10.0 * 400.0, "{cached} + {read}");
    assert!(cached / (cached + read) > 0.35, "{cached} from the cache, {read} from the store");
}

/// The value of one sample line of the Prometheus text (`name{labels}`), 0 when absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

#[test]
fn running_the_pipeline_moves_the_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(&dir);
    let payloads: Vec<Vec<u8>> = DAYS
        .iter()
        .enumerate()
        .map(|(i, d)| attendance(&format!("a{i}"), "stu-1", d, "absent_unexcused"))
        .collect();
    let mut batch: Vec<InputMessage> = payloads
        .iter()
        .enumerate()
        .map(|(i, pl)| InputMessage {
            timestamp_ms: Some(1_789_000_000_000),
            ..msg("sis.attendance", i as i64, b"stu-1", pl)
        })
        .collect();
    batch.push(msg("sis.attendance", 10, b"stu-1", &payloads[0])); // a resend
    batch.push(msg("sis.attendance", 11, b"stu-1", b"{not json"));
    batch.push(msg("sis.grades", 0, b"stu-1", &payloads[1])); // wrong topic
    let outcome = p.process(&batch, jiff::Timestamp::now()).unwrap();
    let text = p.telemetry().render();

    let events = |topic: &str, outcome: &str| {
        sample(
            &text,
            &format!("ontrack_events_consumed_total{{outcome=\"{outcome}\",topic=\"{topic}\"}}"),
        )
    };
    assert_eq!(events("sis.attendance", "applied"), 10.0);
    assert_eq!(events("sis.attendance", "duplicate"), 1.0);
    assert_eq!(events("sis.attendance", "rejected"), 1.0);
    assert_eq!(events("sis.grades", "rejected"), 1.0);
    assert_eq!(sample(&text, "ontrack_decode_failures_total{reason=\"not_json\"}"), 1.0);
    assert_eq!(sample(&text, "ontrack_decode_failures_total{reason=\"wrong_topic\"}"), 1.0);
    assert_eq!(sample(&text, "ontrack_dead_letters_total"), 2.0);
    let raised = outcome.flags.len() as f64;
    assert!(raised >= 2.0, "attendance and consecutive_absences: {:?}", outcome.flags);
    let flags: f64 =
        ["attendance", "consecutive_absences", "off_track", "behavior", "course_performance"]
            .iter()
            .map(|f| {
                sample(&text, &format!("ontrack_flags_total{{change=\"raised\",flag=\"{f}\"}}"))
            })
            .sum();
    assert_eq!(flags, raised);
    assert_eq!(
        sample(&text, "ontrack_flags_raised{flag=\"attendance\",school=\"sch-1\"}"),
        1.0,
        "the gauge counts the student now flagged"
    );
    assert_eq!(sample(&text, "ontrack_batch_duration_seconds_count"), 1.0);
    assert_eq!(sample(&text, "ontrack_store_commit_duration_seconds_count"), 1.0);
    // The gauge is kept with the states: a new pipeline on the same store reads it back.
    drop(p);
    let store = Store::open(dir.path()).unwrap();
    let counts = ontrack::pipeline::raised_counts(&store).unwrap();
    assert!(counts.contains(&("attendance".into(), "sch-1".into(), 1)), "{counts:?}");
}

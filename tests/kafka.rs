//! `ontrack run` against a real Kafka broker (started by `scripts/test` through `scripts/kafka`).
//!
//! The broker's address comes from `ONTRACK_TEST_BROKERS`. Without it the tests say so and pass
//! locally, but under `CI=true` they fail: CI must never skip them.

#![allow(clippy::unwrap_used)] // tests fail loudly on broken fixtures

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use ontrack::synth::{District, DistrictSpec, SynthEvent};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::Value;

fn brokers() -> Option<String> {
    match std::env::var("ONTRACK_TEST_BROKERS") {
        Ok(b) => Some(b),
        Err(_) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!(
                "ONTRACK_TEST_BROKERS is not set: under CI the Kafka tests must run (scripts/test starts the broker)"
            )
        }
        Err(_) => {
            eprintln!("skipped: no Kafka broker (set ONTRACK_TEST_BROKERS, or run scripts/test)");
            None
        }
    }
}

/// Topic names of one test, unique per run.
struct Names {
    prefix: String,
}

impl Names {
    fn new(test: &str) -> Names {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        Names { prefix: format!("t{}-{test}", nanos % 1_000_000_000_000) }
    }
    fn topic(&self, name: &str) -> String {
        format!("{}.{name}", self.prefix)
    }
    fn input(&self, kind: ontrack::core::EventKind) -> String {
        use ontrack::core::EventKind::*;
        self.topic(match kind {
            Attendance => "attendance",
            Discipline => "discipline",
            Grade => "grades",
            Assignment => "assignments",
            Enrollment => "enrollment",
            Calendar => "calendar",
        })
    }
}

/// `ontrack run` as a child process, configured through the environment.
fn spawn_run(brokers: &str, names: &Names, data: &Path, partitions: u32) -> Child {
    run_command(brokers, names, data, partitions).spawn().unwrap()
}

fn run_command(brokers: &str, names: &Names, data: &Path, partitions: u32) -> Command {
    let mut command = ontrack_command("run", brokers, names, partitions);
    command.env("ONTRACK__DATA_DIR", data).env("ONTRACK__ADMIN__ADDR", "127.0.0.1:0");
    command
}

/// `ontrack edfi` (live) reading the test's DMS topic, configured through the environment.
fn edfi_command(brokers: &str, names: &Names, data: &Path, partitions: u32) -> Command {
    let mut command = ontrack_command("edfi", brokers, names, partitions);
    command
        .env("ONTRACK__EDFI__TOPIC", names.topic("dms"))
        .env("ONTRACK__EDFI__DATA_DIR", data)
        .env("ONTRACK__EDFI__ADMIN_ADDR", "127.0.0.1:0");
    command
}

/// `ontrack SUBCOMMAND` with the test's brokers, group and topics.
fn ontrack_command(subcommand: &str, brokers: &str, names: &Names, partitions: u32) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ontrack"));
    command
        .arg(subcommand)
        .env("ONTRACK__KAFKA__BROKERS", brokers)
        .env("ONTRACK__KAFKA__GROUP_ID", names.topic("group"))
        .env("ONTRACK__KAFKA__PARTITIONS", partitions.to_string())
        // More workers than this machine's two cores: every guarantee holds with several.
        .env("ONTRACK__BATCH__WORKERS", "3")
        .env("ONTRACK__TOPICS__ATTENDANCE", names.topic("attendance"))
        .env("ONTRACK__TOPICS__DISCIPLINE", names.topic("discipline"))
        .env("ONTRACK__TOPICS__GRADES", names.topic("grades"))
        .env("ONTRACK__TOPICS__ASSIGNMENTS", names.topic("assignments"))
        .env("ONTRACK__TOPICS__ENROLLMENT", names.topic("enrollment"))
        .env("ONTRACK__TOPICS__CALENDAR", names.topic("calendar"))
        .env("ONTRACK__TOPICS__FLAGS", names.topic("flags"))
        .env("ONTRACK__TOPICS__DEAD_LETTER", names.topic("dead-letter"))
        .env("RUST_LOG", std::env::var("ONTRACK_TEST_LOG").unwrap_or_else(|_| "warn".into()))
        .stdout(Stdio::null());
    command
}

/// An ordinary producer. Idempotent, so that retries (e.g. while a new topic's leader is being
/// elected) cannot reorder messages within a partition: the expected flags follow produce order.
fn producer(brokers: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("enable.idempotence", "true")
        .create()
        .unwrap()
}

/// Produces `events` with an ordinary producer, keyed by student id, each to its type's topic.
fn produce(p: &BaseProducer, names: &Names, events: &[SynthEvent]) {
    for e in events {
        let topic = names.input(e.kind);
        ontrack::kafka::send_waiting(p, &topic, e.student_id.as_bytes(), e.json.as_bytes())
            .unwrap();
    }
    p.flush(Duration::from_secs(30)).unwrap();
}

/// Reads `topic` from the beginning until `done` says so or `timeout` passes.
fn read_until(
    brokers: &str,
    topic: &str,
    timeout: Duration,
    mut done: impl FnMut(&[rdkafka::message::OwnedMessage]) -> bool,
) -> Vec<rdkafka::message::OwnedMessage> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("reader-{topic}-{}", std::process::id()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let start = Instant::now();
    let mut out = Vec::new();
    while start.elapsed() < timeout && !done(&out) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            out.push(m.detach());
        }
    }
    out
}

/// The flag events as JSON, `emitted_at` removed.
fn flags_of(messages: &[rdkafka::message::OwnedMessage]) -> Vec<Value> {
    messages
        .iter()
        .map(|m| common::without_emitted_at(serde_json::from_slice(m.payload().unwrap()).unwrap()))
        .collect()
}

/// What `ontrack replay` says for the same events in the same order.
fn replayed(events: &[SynthEvent]) -> Vec<Value> {
    common::replayed(events.iter().map(|e| e.json.as_str()))
}

/// Asserts two flag streams agree per student, showing the first student that differs.
fn assert_same_per_student(got: &[Value], expected: &[Value]) {
    let (got, expected) = (by_student(got), by_student(expected));
    let short = |fs: Option<&Vec<Value>>| -> Vec<String> {
        fs.map(|fs| {
            fs.iter()
                .map(|f| {
                    format!(
                        "{} {} by {} {}",
                        f["type"], f["flag_id"], f["caused_by"], f["evidence"]
                    )
                })
                .collect()
        })
        .unwrap_or_default()
    };
    let students: std::collections::BTreeSet<&String> = got.keys().chain(expected.keys()).collect();
    let differ: Vec<&&String> =
        students.iter().filter(|s| got.get(**s) != expected.get(**s)).collect();
    if let Some(first) = differ.first() {
        panic!(
            "{} students differ; first {first}:\n got {:#?}\n want {:#?}",
            differ.len(),
            short(got.get(**first)),
            short(expected.get(**first))
        );
    }
}

/// Flags grouped by student, in order: what must match when partitions interleave.
fn by_student(flags: &[Value]) -> BTreeMap<String, Vec<Value>> {
    let mut map: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for f in flags {
        map.entry(f["student_id"].as_str().unwrap().to_owned()).or_default().push(f.clone());
    }
    map
}

/// The attendance records of a synthetic district: a single-topic stream.
fn attendance_only(students: u32, days: u32, seed: u64) -> Vec<SynthEvent> {
    district(students, days, seed)
        .into_iter()
        .filter(|e| e.kind == ontrack::core::EventKind::Attendance)
        .collect()
}

fn district(students: u32, days: u32, seed: u64) -> Vec<SynthEvent> {
    let mut d = District::new(DistrictSpec { students, days, seed, ..DistrictSpec::default() });
    (0..days).flat_map(|day| d.day(day)).collect()
}

fn stop(mut child: Child) {
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    panic!("ontrack run did not stop within 10 s of SIGTERM");
}

#[test]
fn a_single_topic_stream_gives_exactly_the_flags_of_replay() {
    let Some(brokers) = brokers() else { return };
    let names = Names::new("single");
    let events: Vec<SynthEvent> = attendance_only(300, 40, 21);
    let expected = replayed(&events);
    assert!(expected.len() > 100, "{}", expected.len());

    let data = tempfile::tempdir().unwrap();
    let run = spawn_run(&brokers, &names, data.path(), 3);
    produce(&producer(&brokers), &names, &events);
    let got = read_until(&brokers, &names.topic("flags"), Duration::from_secs(60), |m| {
        m.len() >= expected.len()
    });
    stop(run);
    let got = flags_of(&got);
    assert_same_per_student(&got, &expected);
    assert_eq!(got.len(), expected.len(), "no flag published twice");
}

fn send(p: &BaseProducer, topic: &str, key: &str, payload: &[u8]) {
    p.send(BaseRecord::to(topic).key(key.as_bytes()).payload(payload)).unwrap();
    p.flush(Duration::from_secs(10)).unwrap();
}

fn absence(id: &str, student: &str, date: &str) -> String {
    common::attendance_json(id, student, date, "absent_unexcused")
}

#[test]
fn poison_messages_go_to_the_dead_letter_topic_and_the_stream_goes_on() {
    let Some(brokers) = brokers() else { return };
    let names = Names::new("poison");
    let data = tempfile::tempdir().unwrap();
    let run = spawn_run(&brokers, &names, data.path(), 1);
    let p = producer(&brokers);
    let attendance = names.topic("attendance");
    let discipline = names.topic("discipline");
    send(&p, &attendance, "stu-1", absence("a1", "stu-1", "2026-09-01").as_bytes());
    let wrong_topic = absence("a9", "stu-1", "2026-09-09");
    let poison: Vec<(&str, &[u8], &str)> = vec![
        (&attendance, b"{\"type\": \"attendance\", \"event_id\": ", "invalid JSON"),
        (&attendance, br#"{"type":"absence","event_id":"x"}"#, "type: expected one of"),
        (
            &attendance,
            br#"{"type":"attendance","event_id":"x","student_id":"stu-1"}"#,
            "attendance.school_id: missing",
        ),
        (&discipline, wrong_topic.as_bytes(), "does not belong on topic"),
    ];
    for (topic, payload, _) in &poison {
        send(&p, topic, "stu-1", payload);
    }
    send(&p, &attendance, "stu-1", absence("a2", "stu-1", "2026-09-02").as_bytes());
    send(&p, &attendance, "stu-1", absence("a3", "stu-1", "2026-09-03").as_bytes());

    let dead = read_until(&brokers, &names.topic("dead-letter"), Duration::from_secs(30), |m| {
        m.len() >= 4
    });
    let flags =
        read_until(&brokers, &names.topic("flags"), Duration::from_secs(30), |m| !m.is_empty());
    stop(run);
    assert_eq!(dead.len(), 4);
    for (topic, payload, reason) in &poison {
        // Topics interleave, so find each by its bytes, which must be unchanged.
        let d = dead.iter().find(|d| d.payload() == Some(*payload)).unwrap();
        assert_eq!(d.key(), Some(&b"stu-1"[..]));
        let headers = d.headers().unwrap();
        let header = |name: &str| {
            let h = headers.iter().find(|h| h.key == name).unwrap();
            String::from_utf8(h.value.unwrap().to_vec()).unwrap()
        };
        assert_eq!(header("ontrack.error.topic"), *topic);
        assert_eq!(header("ontrack.error.partition"), "0");
        assert!(header("ontrack.error.offset").parse::<i64>().is_ok());
        assert!(
            header("ontrack.error.reason").contains(reason),
            "{}",
            header("ontrack.error.reason")
        );
    }
    let flags = flags_of(&flags);
    assert_eq!(flags[0]["flag_id"], "2026-2027/stu-1/consecutive_absences/1");
    assert_eq!(flags[0]["caused_by"], "a3");
}

#[test]
fn sigterm_mid_stream_exits_cleanly_and_a_restart_loses_nothing() {
    let Some(brokers) = brokers() else { return };
    let names = Names::new("sigterm");
    let events: Vec<SynthEvent> = attendance_only(400, 40, 5);
    let expected = replayed(&events);
    let data = tempfile::tempdir().unwrap();
    let p = producer(&brokers);
    let (first, second) = events.split_at(events.len() / 2);
    let run = spawn_run(&brokers, &names, data.path(), 2);
    produce(&p, &names, first);
    // Some flags are out: the service is mid-stream.
    read_until(&brokers, &names.topic("flags"), Duration::from_secs(30), |m| m.len() >= 10);
    let started = Instant::now();
    let mut run = run;
    Command::new("kill").arg("-TERM").arg(run.id().to_string()).status().unwrap();
    let status = loop {
        if let Some(status) = run.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no exit within 10 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");

    produce(&p, &names, second);
    let run = spawn_run(&brokers, &names, data.path(), 2);
    let got = read_until(&brokers, &names.topic("flags"), Duration::from_secs(60), |m| {
        m.len() >= expected.len()
    });
    // A little longer: nothing more may come.
    std::thread::sleep(Duration::from_secs(1));
    stop(run);
    let got = flags_of(&got);
    assert_same_per_student(&got, &expected);
}

/// Streams `events` in paced chunks while killing `ontrack run` with SIGKILL at `kills` random
/// moments or more (restarting it at once each time; none with `kills == 0`); then lets one
/// instance finish, stops it, and returns the store it left and every flag event published.
fn crash_run(
    brokers: &str,
    names: &Names,
    events: &[SynthEvent],
    kills: usize,
) -> (BTreeMap<String, ontrack::core::StudentState>, Vec<rdkafka::message::OwnedMessage>) {
    use rand::{Rng, SeedableRng};
    const PARTITIONS: i32 = 3;
    let data = tempfile::tempdir().unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(17);
    let mut run = spawn_run(brokers, names, data.path(), PARTITIONS as u32);
    let streaming = std::thread::scope(|scope| {
        let producing = scope.spawn(|| {
            let p = producer(brokers);
            for chunk in events.chunks(400) {
                produce(&p, names, chunk);
                std::thread::sleep(Duration::from_millis(30));
            }
        });
        let mut killed = 0;
        while kills > 0 && (killed < kills || !producing.is_finished()) {
            std::thread::sleep(Duration::from_millis(rng.random_range(150..900)));
            run.kill().unwrap(); // SIGKILL
            run.wait().unwrap();
            killed += 1;
            run = spawn_run(brokers, names, data.path(), PARTITIONS as u32);
        }
        producing.join().unwrap();
        killed
    });
    assert!(streaming >= kills);

    // Let the last instance catch up: every input partition's stored offset at its end.
    let ends: Vec<(String, i32, i64)> = {
        let c: BaseConsumer =
            ClientConfig::new().set("bootstrap.servers", brokers).create().unwrap();
        [
            ontrack::core::EventKind::Attendance,
            ontrack::core::EventKind::Discipline,
            ontrack::core::EventKind::Grade,
            ontrack::core::EventKind::Assignment,
        ]
        .iter()
        .flat_map(|k| {
            let topic = names.input(*k);
            (0..PARTITIONS)
                .map(|p| {
                    let (_, high) = c.fetch_watermarks(&topic, p, Duration::from_secs(10)).unwrap();
                    (topic.clone(), p, high)
                })
                .collect::<Vec<_>>()
        })
        .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let store = loop {
        std::thread::sleep(Duration::from_secs(2));
        stop(run);
        let store = ontrack::store::Store::open(data.path()).unwrap();
        let done = ends
            .iter()
            .all(|(t, p, high)| *high == 0 || store.next_offset(t, *p).unwrap() == Some(*high))
            && store.pending().next().is_none();
        if done {
            break store;
        }
        assert!(Instant::now() < deadline, "the service did not catch up");
        drop(store);
        run = spawn_run(brokers, names, data.path(), PARTITIONS as u32);
    };
    let mut states = BTreeMap::new();
    for p in 0..PARTITIONS {
        for item in store.students_of_partition(p) {
            let (id, state) = item.unwrap();
            assert!(states.insert(id, state).is_none(), "a student in two partitions");
        }
    }
    let flags_topic = names.topic("flags");
    let flags = read_until(brokers, &flags_topic, Duration::from_secs(5), |_| false);
    (states, flags)
}

/// The uninterrupted run's records and figures: the same events folded in memory.
fn assert_same_records_and_figures(
    states: &BTreeMap<String, ontrack::core::StudentState>,
    events: &[SynthEvent],
) {
    let rules = ontrack::core::Rules::default();
    let mut expected = ontrack::core::Students::default();
    for e in events {
        if let Ok(event) = ontrack::core::decode(e.json.as_bytes()) {
            expected.apply(&event, &rules);
        }
    }
    assert_eq!(states.len(), expected.len());
    for (id, want) in expected.iter() {
        let got = &states[id];
        assert_eq!(got.records(), want.records(), "{id}: records");
        assert_eq!(got.figures(), want.figures(), "{id}: figures");
        assert_eq!(got.events_applied(), want.events_applied(), "{id}: events counted");
    }
}

/// Distinct flag events per (student, flag, year) alternate raised/cleared with n = 1, 2, …,
/// and a repeated flag event is the same message.
fn assert_consistent_flags(flags: &[Value]) -> Vec<Value> {
    let mut seen: BTreeMap<(String, String), Value> = BTreeMap::new();
    let mut distinct = Vec::new();
    for f in flags {
        let key =
            (f["type"].as_str().unwrap().to_owned(), f["flag_id"].as_str().unwrap().to_owned());
        match seen.get(&key) {
            Some(first) => assert_eq!(first, f, "a repeated flag event with other content"),
            None => {
                seen.insert(key, f.clone());
                distinct.push(f.clone());
            }
        }
    }
    let mut runs: BTreeMap<(String, String, String), Vec<&Value>> = BTreeMap::new();
    for f in &distinct {
        let key = (
            f["student_id"].as_str().unwrap().to_owned(),
            f["flag"].as_str().unwrap().to_owned(),
            f["school_year"].as_str().unwrap().to_owned(),
        );
        runs.entry(key).or_default().push(f);
    }
    for (key, run) in runs {
        for (i, f) in run.iter().enumerate() {
            let want_type = if i % 2 == 0 { "flag.raised" } else { "flag.cleared" };
            let want_n = (i / 2 + 1).to_string();
            assert_eq!(f["type"], want_type, "{key:?}: {run:?}");
            assert!(
                f["flag_id"].as_str().unwrap().ends_with(&format!("/{want_n}")),
                "{key:?}: {run:?}"
            );
        }
    }
    distinct
}

#[test]
fn kill_9_at_random_moments_loses_and_doubles_nothing() {
    let Some(brokers) = brokers() else { return };
    let names = Names::new("crash-all");
    let events = district(1_000, 50, 31);
    assert!(events.len() >= 50_000, "{}", events.len());
    let (states, flags) = crash_run(&brokers, &names, &events, 5);
    assert_same_records_and_figures(&states, &events);
    let flags = flags_of(&flags);
    assert!(!flags.is_empty());
    assert_consistent_flags(&flags);
}

#[test]
fn kill_9_on_a_single_topic_stream_gives_exactly_the_uninterrupted_flags() {
    let Some(brokers) = brokers() else { return };
    let names = Names::new("crash-one");
    let events: Vec<SynthEvent> = attendance_only(1_100, 47, 37);
    assert!(events.len() >= 50_000, "{}", events.len());
    let (states, flags) = crash_run(&brokers, &names, &events, 5);
    assert_same_records_and_figures(&states, &events);
    let distinct = assert_consistent_flags(&flags_of(&flags));
    let mut expected = replayed(&events);
    let mut got = distinct;
    let order = |v: &Value| {
        (v["flag_id"].as_str().unwrap().to_owned(), v["type"].as_str().unwrap().to_owned())
    };
    expected.sort_by_key(order);
    got.sort_by_key(order);
    assert_eq!(got, expected);
}

/// A broker of this test's own on `port` (the shared one must stay up for the other tests).
fn own_broker(action: &str, port: u16) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka");
    let status = Command::new(script)
        .arg(action)
        .env("ONTRACK_KAFKA_PORT", port.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "scripts/kafka {action} on port {port}");
}

#[test]
fn the_service_recovers_by_itself_when_the_broker_comes_back() {
    if brokers().is_none() {
        return;
    }
    const PORT: u16 = 19392;
    own_broker("start", PORT);
    let brokers = format!("127.0.0.1:{PORT}");
    let names = Names::new("outage");
    let events: Vec<SynthEvent> = attendance_only(300, 40, 41);
    let expected = replayed(&events);
    let (first, second) = events.split_at(events.len() / 2);
    let data = tempfile::tempdir().unwrap();
    let run = spawn_run(&brokers, &names, data.path(), 2);
    produce(&producer(&brokers), &names, first);
    read_until(&brokers, &names.topic("flags"), Duration::from_secs(30), |m| m.len() >= 10);

    own_broker("stop", PORT);
    std::thread::sleep(Duration::from_secs(12));
    own_broker("start", PORT);

    produce(&producer(&brokers), &names, second);
    let got = read_until(&brokers, &names.topic("flags"), Duration::from_secs(90), |m| {
        flags_of(m).len() >= expected.len()
    });
    stop(run);
    own_broker("stop", PORT);
    let got = flags_of(&got);
    let distinct = assert_consistent_flags(&got);
    assert_same_per_student(&distinct, &expected);
}

#[test]
fn a_stream_over_all_topics_ends_with_the_flags_the_figures_decide() {
    let Some(brokers) = brokers() else { return };
    let names = Names::new("all-topics");
    let events = district(300, 45, 43);
    let (states, flags) = crash_run(&brokers, &names, &events, 0);
    assert_same_records_and_figures(&states, &events);
    // The last published change of each (student, flag) is its final state.
    let mut last: BTreeMap<(String, String), bool> = BTreeMap::new();
    for f in flags_of(&flags) {
        let key =
            (f["student_id"].as_str().unwrap().to_owned(), f["flag"].as_str().unwrap().to_owned());
        last.insert(key, f["type"] == "flag.raised");
    }
    let rules = ontrack::core::Rules::default();
    let mut compared = 0;
    for (student, state) in &states {
        for flag in ontrack::core::Flag::ALL {
            // Inside a hysteresis band the flag keeps what its history gave it.
            let Some(raised) = common::decided(*flag, state, &rules) else { continue };
            let key = (student.clone(), flag.as_str().to_owned());
            assert_eq!(last.get(&key).copied().unwrap_or(false), raised, "{key:?}");
            compared += 1;
        }
    }
    assert!(compared > 1000, "{compared}");
}

#[test]
fn input_topics_that_are_not_co_partitioned_stop_start_up_with_a_clear_message() {
    let Some(brokers) = brokers() else { return };
    let names = Names::new("copart");
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
    let (attendance, discipline) = (names.topic("attendance"), names.topic("discipline"));
    let topics = [
        rdkafka::admin::NewTopic::new(&attendance, 3, rdkafka::admin::TopicReplication::Fixed(1)),
        rdkafka::admin::NewTopic::new(&discipline, 2, rdkafka::admin::TopicReplication::Fixed(1)),
    ];
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    for result in runtime
        .block_on(admin.create_topics(&topics, &rdkafka::admin::AdminOptions::new()))
        .unwrap()
    {
        result.unwrap();
    }
    let data = tempfile::tempdir().unwrap();
    let mut run =
        run_command(&brokers, &names, data.path(), 3).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = run.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "ontrack run started on topics that are not co-partitioned"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut run.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("not co-partitioned"), "{stderr}");
    assert!(
        stderr.contains(&format!("{attendance}: 3"))
            && stderr.contains(&format!("{discipline}: 2")),
        "{stderr}"
    );
}

#[test]
fn a_second_instance_takes_over_partitions_and_the_flags_stay_the_same() {
    let Some(brokers) = brokers() else { return };
    let names = Names::new("scale-out");
    let events: Vec<SynthEvent> = attendance_only(400, 40, 47);
    let expected = replayed(&events);
    let (first, second) = events.split_at(events.len() / 2);
    let p = producer(&brokers);
    // Two instances, two stores: a partition that moves is rebuilt from its beginning.
    let (data_a, data_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = spawn_run(&brokers, &names, data_a.path(), 4);
    produce(&p, &names, first);
    read_until(&brokers, &names.topic("flags"), Duration::from_secs(30), |m| m.len() >= 10);
    // The group rebalances: A's in-flight batch is persisted before its partitions go.
    let b = spawn_run(&brokers, &names, data_b.path(), 4);
    produce(&p, &names, second);
    let got = read_until(&brokers, &names.topic("flags"), Duration::from_secs(60), |m| {
        let distinct: std::collections::BTreeSet<(String, String)> =
            flags_of(m).iter().map(|f| (f["type"].to_string(), f["flag_id"].to_string())).collect();
        distinct.len() >= expected.len()
    });
    stop(a);
    stop(b);
    let distinct = assert_consistent_flags(&flags_of(&got));
    assert_same_per_student(&distinct, &expected);
    // Both instances did part of the work.
    for data in [&data_a, &data_b] {
        let store = ontrack::store::Store::open(data.path()).unwrap();
        let students: usize = (0..4).map(|p| store.students_of_partition(p).count()).sum();
        assert!(students > 0, "an instance got no partition");
    }
}

// ---- Advocate notifications on the real broker ----

/// `ontrack run` with both notification channels: webhooks signed with the test secret, email
/// through a local SMTP server without TLS.
fn notifying_run(brokers: &str, names: &Names, data: &Path, smtp_port: u16) -> Command {
    let mut command = run_command(brokers, names, data, 2);
    command
        .env("ONTRACK__NOTIFY__WEBHOOK__SECRET", common::servers::SECRET)
        .env("ONTRACK__NOTIFY__EMAIL__SMTP_HOST", "127.0.0.1")
        .env("ONTRACK__NOTIFY__EMAIL__SMTP_PORT", smtp_port.to_string())
        .env("ONTRACK__NOTIFY__EMAIL__SECURITY", "plain")
        .env("ONTRACK__NOTIFY__EMAIL__FROM", "ontrack <ontrack@district.example>")
        .env("ONTRACK__NOTIFY__RETRY__INITIAL_DELAY_MS", "200")
        .env("ONTRACK__NOTIFY__RETRY__MAX_DELAY_MS", "1000");
    command
}

fn assignment_json(id: &str, student: &str, advocate: &str, contact: Value) -> String {
    serde_json::json!({"type": "assignment", "event_id": id, "student_id": student,
        "school_id": "sch-1", "date": "2026-08-20", "recorded_at": "2026-08-20T12:00:00Z",
        "advocate_id": advocate, "advocate": contact})
    .to_string()
}

/// Waits until the service's consumer group has committed every message of `topic`: events on
/// different topics are consumed in no particular order, so an assignment must be in before the
/// absence that should alert its advocate.
fn wait_consumed(brokers: &str, names: &Names, topic: &str) {
    wait_consumed_by(brokers, &names.topic("group"), topic);
}

/// Waits until `group` has committed the end of every partition of `topic`.
fn wait_consumed_by(brokers: &str, group: &str, topic: &str) {
    use rdkafka::TopicPartitionList;
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let meta = c.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
        let partitions = meta.topics()[0].partitions().len() as i32;
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(topic, p);
        }
        let committed = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
        let done = (0..partitions).all(|p| {
            let (_, high) = c.fetch_watermarks(topic, p, Duration::from_secs(10)).unwrap();
            let at = committed.find_partition(topic, p).and_then(|e| e.offset().to_raw());
            high == 0 || at == Some(high)
        });
        if done {
            return;
        }
        assert!(Instant::now() < deadline, "{group} did not consume {topic}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Today and the two days before, in UTC (the advocates' timezone here).
fn last_three_days() -> [String; 3] {
    let today = time::OffsetDateTime::now_utc().date();
    [today - time::Duration::days(2), today - time::Duration::days(1), today].map(|d| d.to_string())
}

#[test]
fn an_absence_produced_today_reaches_its_advocate_within_seconds() {
    use common::servers::{Server, free_port};
    let Some(brokers) = brokers() else { return };
    let names = Names::new("alerts");
    let receiver = Server::webhook_receiver(free_port());
    let smtp = Server::smtp(free_port());
    let data = tempfile::tempdir().unwrap();
    let run = notifying_run(&brokers, &names, data.path(), smtp.port).spawn().unwrap();
    let p = producer(&brokers);
    let hook = serde_json::json!({"name": "Advocate Synthetic", "timezone": "UTC",
        "webhook_url": receiver.url("/hooks/adv-1")});
    let mail = serde_json::json!({"timezone": "UTC", "email": "adv-2@example.org"});
    let assignments = names.input(ontrack::core::EventKind::Assignment);
    send(&p, &assignments, "stu-1", assignment_json("as-1", "stu-1", "adv-1", hook).as_bytes());
    send(&p, &assignments, "stu-2", assignment_json("as-2", "stu-2", "adv-2", mail).as_bytes());
    send(
        &p,
        &assignments,
        "stu-3",
        assignment_json("as-3", "stu-3", "adv-1", Value::Null).as_bytes(),
    );
    wait_consumed(&brokers, &names, &assignments);
    let attendance = names.input(ontrack::core::EventKind::Attendance);
    let [d2, d1, today] = last_three_days();
    // The service is live once stu-3's absence (adv-1, contact from stu-1's record) arrives.
    send(&p, &attendance, "stu-3", absence("w-today", "stu-3", &today).as_bytes());
    receiver.wait_for(Duration::from_secs(60), |r| !r.is_empty());
    // stu-1: three absences in a row (the last today) → an absence alert and a flag alert.
    for (i, day) in [&d2, &d1].iter().enumerate() {
        send(&p, &attendance, "stu-1", absence(&format!("a-{i}"), "stu-1", day).as_bytes());
    }
    let produced = Instant::now();
    send(&p, &attendance, "stu-1", absence("a-today", "stu-1", &today).as_bytes());
    send(&p, &attendance, "stu-2", absence("b-today", "stu-2", &today).as_bytes());
    send(&p, &attendance, "stu-4", absence("c-today", "stu-4", &today).as_bytes()); // no advocate
    receiver.wait_for(Duration::from_secs(30), |r| r.len() >= 3);
    let webhook_latency = produced.elapsed();
    let mails = smtp.wait_for(Duration::from_secs(30), |r| !r.is_empty());
    eprintln!("produced → webhook received: {webhook_latency:?}");
    std::thread::sleep(Duration::from_secs(1));
    stop(run);

    let got = receiver.received();
    assert!(got.iter().all(|r| r["signature_ok"] == true && r["status"] == 200), "{got:#?}");
    let mut kinds: Vec<String> = got
        .iter()
        .map(|r| {
            let a = &r["body"]["data"]["alerts"][0];
            format!("{} {} {}", a["kind"], a["student_id"], a["date"]).replace('"', "")
        })
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            format!("absence stu-1 {today}"),
            format!("absence stu-3 {today}"),
            format!("flag.raised stu-1 {today}")
        ],
        "only adv-1's students, once each"
    );
    assert_eq!(smtp.received().len(), 1);
    assert_eq!(mails[0]["rcpt_tos"], serde_json::json!(["adv-2@example.org"]));
    assert!(mails[0]["text"].as_str().unwrap().contains("stu-2"));
}

#[test]
fn pending_notifications_survive_kill_9_and_are_delivered_after_restart() {
    use common::servers::{Server, free_port};
    use std::io::{BufRead, BufReader};
    let Some(brokers) = brokers() else { return };
    let names = Names::new("notify-crash");
    let port = free_port(); // nothing listens yet: every attempt fails and is retried
    let data = tempfile::tempdir().unwrap();
    let mut run = notifying_run(&brokers, &names, data.path(), free_port())
        .env("RUST_LOG", "warn")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let p = producer(&brokers);
    let hook = serde_json::json!({"timezone": "UTC",
        "webhook_url": format!("http://127.0.0.1:{port}/hooks/adv-1")});
    let assignments = names.input(ontrack::core::EventKind::Assignment);
    send(&p, &assignments, "stu-1", assignment_json("as-1", "stu-1", "adv-1", hook).as_bytes());
    wait_consumed(&brokers, &names, &assignments);
    let [_, _, today] = last_three_days();
    let attendance = names.input(ontrack::core::EventKind::Attendance);
    send(&p, &attendance, "stu-1", absence("a-today", "stu-1", &today).as_bytes());

    // The service says it will retry: the notification is in the store.
    let stderr = BufReader::new(run.stderr.take().unwrap());
    let mut id = None;
    for line in stderr.lines() {
        let line = line.unwrap();
        if line.contains("will retry") {
            let at = line.find("msg_").expect("the log line names the notification id");
            id = Some(line[at..at + 36].to_owned());
            break;
        }
    }
    let id = id.expect("the service logged the failed attempt with the notification id");
    run.kill().unwrap(); // SIGKILL
    run.wait().unwrap();

    let receiver = Server::webhook_receiver(port);
    let run = notifying_run(&brokers, &names, data.path(), free_port()).spawn().unwrap();
    let got = receiver.wait_for(Duration::from_secs(60), |r| !r.is_empty());
    stop(run);
    assert_eq!(got[0]["id"], id.as_str(), "the same id before and after the crash");
    assert_eq!(got[0]["signature_ok"], true);
    assert_eq!(got[0]["body"]["data"]["alerts"][0]["student_id"], "stu-1");
}

// ---- Operations: a real Prometheus, and what the logs must not hold ----

#[test]
fn a_real_prometheus_scrapes_the_counters_and_the_logs_hold_no_names_or_behavior() {
    use common::servers::free_port;
    let Some(brokers) = brokers() else { return };
    if Command::new("prometheus").arg("--version").output().is_err() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "prometheus is missing: .ci/run installs the Debian package prometheus"
        );
        eprintln!("skipped: no prometheus binary");
        return;
    }
    let names = Names::new("scrape");
    let events = district(60, 15, 53);
    let dir = tempfile::tempdir().unwrap();
    let (admin, web) = (free_port(), free_port());
    let log = dir.path().join("ontrack.log");
    let run = run_command(&brokers, &names, &dir.path().join("data"), 2)
        .args(["--log-format", "json"])
        .env("ONTRACK__ADMIN__ADDR", format!("127.0.0.1:{admin}"))
        .env("RUST_LOG", "debug")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: ontrack\n    \
             static_configs: [{{targets: ['127.0.0.1:{admin}']}}]\n"
        ),
    )
    .unwrap();
    let mut prometheus = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{web}"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    produce(&producer(&brokers), &names, &events);

    let http = reqwest::blocking::Client::new();
    let query = |q: &str| -> Option<f64> {
        let url = format!("http://127.0.0.1:{web}/api/v1/query");
        let text = http.get(url).query(&[("query", q)]).send().ok()?.text().ok()?;
        let body: Value = serde_json::from_str(&text).ok()?;
        body["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    };
    // Every produced message is counted once, as applied or duplicate (synth resends some).
    let deadline = Instant::now() + Duration::from_secs(90);
    let consumed = loop {
        let got = query("sum(ontrack_events_consumed_total)");
        if got == Some(events.len() as f64) {
            break got;
        }
        assert!(Instant::now() < deadline, "Prometheus saw {got:?} of {} events", events.len());
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(consumed, Some(events.len() as f64));
    assert!(query("sum(ontrack_flags_total)").unwrap_or(0.0) > 0.0);
    assert_eq!(query("ontrack_build_info"), Some(1.0));
    let health = http.get(format!("http://127.0.0.1:{admin}/healthz")).send().unwrap();
    assert_eq!(health.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    while http.get(format!("http://127.0.0.1:{admin}/readyz")).send().unwrap().status() != 200 {
        assert!(Instant::now() < deadline, "/readyz never answered 200");
        std::thread::sleep(Duration::from_millis(500));
    }
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    stop(run);

    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(logs.lines().count() > 5 && logs.contains("\"span\""), "JSON logs with batch spans");
    for line in logs.lines() {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    }
    // The synthetic district's advocate names and addresses and its referral behavior codes.
    for secret in ["Advocate ", "@example.org", "DISRUPT", "DEFIANCE", "TARDY-REPEAT", "FIGHT"] {
        assert!(!logs.contains(secret), "the logs hold {secret:?}");
    }
}

/// Creates the test's input topics with `partitions` partitions (the calendar with one: it may
/// have any count) and the outputs, as a district's platform team would before ontrack runs.
fn create_topics(brokers: &str, names: &Names, partitions: i32) {
    use ontrack::core::EventKind::*;
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers).create().unwrap();
    let mut owned: Vec<(String, i32)> = [Attendance, Discipline, Grade, Assignment, Enrollment]
        .iter()
        .map(|k| (names.input(*k), partitions))
        .collect();
    owned.push((names.input(Calendar), 1));
    owned.push((names.topic("flags"), partitions));
    owned.push((names.topic("dead-letter"), partitions));
    let topics: Vec<rdkafka::admin::NewTopic<'_>> = owned
        .iter()
        .map(|(t, n)| {
            rdkafka::admin::NewTopic::new(t, *n, rdkafka::admin::TopicReplication::Fixed(1))
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    for result in runtime
        .block_on(admin.create_topics(&topics, &rdkafka::admin::AdminOptions::new()))
        .unwrap()
    {
        result.unwrap();
    }
}

/// Issue 13: a backlog over all six inputs — a mixed district (positive-attendance schools, and
/// absence-only schools with calendars, enrollments, late entries, transfers and a snow day
/// called that morning) — produced while the service is down, then read by it. Its flag events
/// are `replay`'s over the same messages sorted by Kafka timestamp (ties: the contract table's
/// topic order, then partition and offset), school days passing included: fetch order (a
/// referral read before the attendance of the days before it) no longer decides. Issue 15: the
/// order is each partition group's, and a group catching up counts its own days (taking the
/// latest once caught up), so the replay is of each group's messages with the calendar's, then
/// the latest day.
#[test]
fn a_backlog_over_all_topics_gives_the_flags_of_replay_in_time_order() {
    use ontrack::core::EventKind::*;
    let Some(brokers) = brokers() else { return };
    let names = Names::new("backlog");
    create_topics(&brokers, &names, 3);
    let spec = DistrictSpec {
        students: 400,
        schools: 4,
        days: 60,
        seed: 13,
        feed: ontrack::synth::Feed::Mixed,
        ..DistrictSpec::default()
    };
    let mut d = District::new(spec.clone());
    let events: Vec<SynthEvent> = (0..spec.days).flat_map(|day| d.day(day)).collect();
    assert!(
        events.iter().any(|e| e.kind == Calendar) && events.iter().any(|e| e.kind == Enrollment)
    );
    produce(&producer(&brokers), &names, &events);

    // The backlog as the broker has it, in the order the rule says.
    let kinds = [Attendance, Discipline, Grade, Assignment, Enrollment, Calendar];
    let mut logged = Vec::new();
    for (rank, kind) in kinds.iter().enumerate() {
        let n = events.iter().filter(|e| e.kind == *kind).count();
        let got =
            read_until(&brokers, &names.input(*kind), Duration::from_secs(60), |m| m.len() >= n);
        assert_eq!(got.len(), n, "{kind}");
        for m in got {
            let ts = m.timestamp().to_millis().unwrap();
            logged.push(((ts, rank, m.partition(), m.offset()), m));
        }
    }
    logged.sort_by_key(|(k, _)| *k);
    // Each partition group's messages with the calendar's, in time order, then the latest day
    // any group closes (a group caught up takes it): the group's students' flags.
    let calendar_rank = kinds.len() - 1;
    let payload = |m: &rdkafka::message::OwnedMessage| {
        std::str::from_utf8(m.payload().unwrap()).unwrap().to_owned()
    };
    let mut latest = String::new();
    for (_, m) in &logged {
        let v: Value = serde_json::from_str(&payload(m)).unwrap();
        let date = v["date"].as_str().unwrap();
        if date <= &v["recorded_at"].as_str().unwrap()[..10] && date > latest.as_str() {
            latest = date.to_owned();
        }
    }
    let clock =
        serde_json::json!({"type": "attendance", "event_id": "clock", "student_id": "clock",
        "school_id": "sch-00", "date": latest, "recorded_at": format!("{latest}T12:00:00-05:00"),
        "status": "present"})
        .to_string();
    let mut expected = Vec::new();
    for p in 0..3 {
        let in_group = |rank: usize, partition: i32| rank == calendar_rank || partition == p;
        let mut lines: Vec<String> = (logged.iter())
            .filter(|((_, rank, partition, _), _)| in_group(*rank, *partition))
            .map(|(_, m)| payload(m))
            .collect();
        lines.push(clock.clone());
        let students: std::collections::BTreeSet<String> = (logged.iter())
            .filter(|((_, rank, partition, _), _)| *rank != calendar_rank && *partition == p)
            .map(|(_, m)| std::str::from_utf8(m.key().unwrap()).unwrap().to_owned())
            .collect();
        let flags = common::replayed(lines.iter().map(String::as_str));
        expected.extend(
            flags.into_iter().filter(|f| students.contains(f["student_id"].as_str().unwrap())),
        );
    }
    assert!(
        expected.iter().any(|f| f["caused_by"].as_str().unwrap().starts_with("day:")),
        "the district has day-caused flag changes"
    );

    let data = tempfile::tempdir().unwrap();
    let run = spawn_run(&brokers, &names, data.path(), 3);
    let got = read_until(&brokers, &names.topic("flags"), Duration::from_secs(120), |m| {
        m.len() >= expected.len()
    });
    // A little longer: nothing more may come.
    let extra = read_until(&brokers, &names.topic("flags"), Duration::from_secs(3), |m| {
        m.len() > expected.len()
    });
    stop(run);
    let got = flags_of(&got);
    assert_same_per_student(&got, &expected);
    assert_eq!(extra.len(), expected.len(), "no flag event more than replay's");
}

/// A DMS message of the export: key, and value (`None`: a tombstone).
fn dms_messages() -> Vec<(String, Option<String>)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/grand-bend/dms.jsonl");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap();
            let value = (!v["value"].is_null()).then(|| v["value"].to_string());
            (v["key"].as_str().unwrap().to_owned(), value)
        })
        .collect()
}

fn produce_dms(p: &BaseProducer, topic: &str, messages: &[(String, Option<String>)]) {
    for (key, value) in messages {
        let mut record = BaseRecord::to(topic).key(key.as_str());
        if let Some(v) = value {
            record = record.payload(v.as_str());
        }
        loop {
            match p.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    p.poll(Duration::from_millis(5));
                }
            }
        }
    }
    p.flush(Duration::from_secs(30)).unwrap();
}

/// Issue 14: Ed-Fi's Grand Bend district as DMS change messages (both forms, re-coded absences,
/// two categories on a day, re-sent, updated, stale and deleted documents) produced into a
/// compacted topic; `ontrack edfi` translates them into the input topics while `ontrack run`
/// folds them; the translator is killed (SIGKILL) twice mid-stream and restarted. A last
/// attendance record (a student outside the sample, on the Tuesday after the last school day)
/// lets every school day of the year pass. Then:
/// - every student's final flags are those `expected.py` computed from the sample independently
///   (the decided ones, as in tests/grand_bend.rs);
/// - nothing was lost or changed by the kills: each natural key's winning record on the input
///   topics is the one the offline translation of the same messages gives, and an event id
///   that appears twice (published again after a kill) carries the same event.
#[test]
fn grand_bend_through_the_dms_topic_with_the_translator_killed_gives_the_independent_flags() {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let Some(brokers) = brokers() else { return };
    const PARTITIONS: i32 = 3;
    let names = Names::new("edfi");
    create_topics(&brokers, &names, PARTITIONS);
    let dms = names.topic("dms");
    let admin: AdminClient<rdkafka::client::DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
    let compacted = NewTopic::new(&dms, PARTITIONS, TopicReplication::Fixed(1))
        .set("cleanup.policy", "compact");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    for r in runtime.block_on(admin.create_topics([&compacted], &AdminOptions::new())).unwrap() {
        r.unwrap();
    }

    let messages = dms_messages();
    let (run_dir, edfi_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let run = spawn_run(&brokers, &names, run_dir.path(), PARTITIONS as u32);
    let admin = format!("127.0.0.1:{}", common::servers::free_port());
    let spawn_edfi = || {
        let mut c = edfi_command(&brokers, &names, edfi_dir.path(), PARTITIONS as u32);
        c.env("ONTRACK__BATCH__MAX_EVENTS", "100").env("ONTRACK__EDFI__ADMIN_ADDR", &admin);
        c.spawn().unwrap()
    };
    let mut edfi = spawn_edfi();
    let p = producer(&brokers);
    produce_dms(&p, &dms, &messages);
    // Killed twice while it translates (batches of 100 messages: many commits to land
    // between), each time once its output passed a mark, then started again.
    let attendance = names.input(ontrack::core::EventKind::Attendance);
    let produced = |topic: &str| -> i64 {
        let c: BaseConsumer =
            ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
        (0..PARTITIONS)
            .map(|p| c.fetch_watermarks(topic, p, Duration::from_secs(10)).unwrap().1)
            .sum()
    };
    let mut marks = Vec::new();
    for mark in [400, 1100] {
        let deadline = Instant::now() + Duration::from_secs(120);
        while produced(&attendance) < mark {
            assert!(Instant::now() < deadline, "the translator did not get to {mark} events");
            std::thread::sleep(Duration::from_millis(20));
        }
        edfi.kill().unwrap(); // SIGKILL
        edfi.wait().unwrap();
        marks.push(produced(&attendance));
        edfi = spawn_edfi();
    }
    let edfi_group = format!("{}.edfi", names.topic("group"));
    wait_consumed_by(&brokers, &edfi_group, &dms);
    // A DMS v1 message of one StudentSchoolAttendanceEvent.
    let day = |uuid: &str, student: &str, date: &str, category: &str, modified: &str| {
        serde_json::json!({
            "contractVersion": 1, "documentUuid": uuid, "projectName": "Ed-Fi",
            "resourceName": "StudentSchoolAttendanceEvent", "resourceVersion": "5.2.0",
            "contentVersion": 1, "lastModifiedAt": modified,
            "document": {
                "studentReference": {"studentUniqueId": student},
                "schoolReference": {"schoolId": 255901001},
                "eventDate": date,
                "attendanceEventCategoryDescriptor": category
            }
        })
        .to_string()
    };
    let present = "uri://ed-fi.org/AttendanceEventCategoryDescriptor#In Attendance";
    let clock = day("clock-0", "clock-0", "2022-05-31", present, "2022-05-31T13:00:00Z");
    // Two bad messages: not JSON, and a district descriptor without a mapping. They go to the
    // dead-letter topic with the usual headers; the stream goes on.
    let field_trip = "uri://district.example/AttendanceEventCategoryDescriptor#Field Trip";
    let unmapped = day("bad-1", "604822", "2022-05-27", field_trip, "2022-05-30T13:00:00Z");
    let bad = [
        ("bad-0".to_owned(), Some("{not json".to_owned())),
        ("bad-1".to_owned(), Some(unmapped)),
        ("clock-0".to_owned(), Some(clock)),
    ];
    produce_dms(&p, &dms, &bad);
    wait_consumed_by(&brokers, &edfi_group, &dms);
    for kind in [
        ontrack::core::EventKind::Attendance,
        ontrack::core::EventKind::Discipline,
        ontrack::core::EventKind::Enrollment,
    ] {
        wait_consumed(&brokers, &names, &names.input(kind));
    }
    // The translator's admin server: its metrics (this process's: the messages since the last
    // restart, the clock record among them) and its readiness once caught up.
    let get = |path: &str| reqwest::blocking::get(format!("http://{admin}{path}")).unwrap();
    let metrics = get("/metrics").text().unwrap();
    let series = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    };
    let translated = "ontrack_edfi_messages_total{outcome=\"translated\",resource=\"StudentSchoolAttendanceEvent\"}";
    assert!(series(translated).is_some_and(|n| n >= 1.0), "{metrics}");
    assert!(series("ontrack_edfi_events_total{type=\"attendance\"}").is_some_and(|n| n >= 1.0));
    assert!(
        metrics
            .contains(&format!("ontrack_consumer_lag_messages{{partition=\"0\",topic=\"{dms}\"}}")),
        "{metrics}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while get("/readyz").status() != 200 {
        assert!(
            Instant::now() < deadline,
            "the caught-up translator is not ready: {}",
            get("/readyz").text().unwrap()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    stop(edfi);
    let total = produced(&attendance);
    println!("translator killed with {marks:?} of {total} attendance events published");
    assert!(marks.iter().all(|m| *m < total), "killed after it had finished: {marks:?} of {total}");
    let flags =
        flags_of(&read_until(&brokers, &names.topic("flags"), Duration::from_secs(8), |_| false));
    stop(run);
    let flags = assert_consistent_flags(&flags);

    // The final flags against expected.py's.
    let mut last: BTreeMap<(String, String), bool> = BTreeMap::new();
    for f in &flags {
        let key =
            (f["student_id"].as_str().unwrap().to_owned(), f["flag"].as_str().unwrap().to_owned());
        last.insert(key, f["type"] == "flag.raised");
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/grand-bend/expected.json");
    let expected: BTreeMap<String, BTreeMap<String, bool>> =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut differences = Vec::new();
    let mut compared = 0;
    for (student, wanted) in &expected {
        for (flag, want) in wanted {
            compared += 1;
            let got = last.get(&(student.clone(), flag.clone())).copied().unwrap_or(false);
            if got != *want {
                differences.push(format!("{student} {flag}: expected {want}, live {got}"));
            }
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {compared} differ:\n{}",
        differences.len(),
        differences.join("\n")
    );
    let chronic = expected
        .keys()
        .filter(|s| last.get(&((*s).clone(), "attendance".into())) == Some(&true))
        .count();
    println!("{compared} decided flags compared, all equal; {chronic} chronically absent");

    let dead = read_until(&brokers, &names.topic("dead-letter"), Duration::from_secs(10), |m| {
        m.len() >= 2
    });
    let mut reasons: Vec<(String, String, String)> = dead
        .iter()
        .map(|d| {
            let header = |name: &str| {
                let h = d.headers().unwrap().iter().find(|h| h.key == name).unwrap();
                String::from_utf8(h.value.unwrap().to_vec()).unwrap()
            };
            assert!(header("ontrack.error.offset").parse::<i64>().is_ok());
            let key = String::from_utf8(d.key().unwrap().to_vec()).unwrap();
            (key, header("ontrack.error.topic"), header("ontrack.error.reason"))
        })
        .collect();
    reasons.sort();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert_eq!((reasons[0].0.as_str(), reasons[0].1.as_str()), ("bad-0", dms.as_str()));
    assert!(reasons[0].2.starts_with("not a JSON object"), "{reasons:?}");
    assert!(reasons[1].2.contains("\"uri://district.example/AttendanceEventCategoryDescriptor#Field Trip\" has no mapping: add it under [edfi.attendance]"), "{reasons:?}");

    // Nothing lost or changed: the winning record of each natural key, live vs offline.
    let offline = {
        let mut export = String::new();
        for (k, v) in messages.iter().chain(&bad) {
            // A message that is not JSON is kept as its text.
            let value: Value = v.as_deref().map_or(Value::Null, |v| {
                serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_owned()))
            });
            export.push_str(&serde_json::json!({"key": k, "value": value}).to_string());
            export.push('\n');
        }
        let mut out = Vec::new();
        ontrack::translator::translate_file(
            export.as_bytes(),
            &mut out,
            Vec::new(),
            &ontrack::edfi::Translator::default(),
        )
        .unwrap();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .collect::<Vec<_>>()
    };
    let mut live = Vec::new();
    let mut by_id: BTreeMap<(String, String), Value> = BTreeMap::new();
    for kind in [
        ontrack::core::EventKind::Attendance,
        ontrack::core::EventKind::Discipline,
        ontrack::core::EventKind::Enrollment,
        ontrack::core::EventKind::Calendar,
    ] {
        let topic = names.input(kind);
        for m in read_until(&brokers, &topic, Duration::from_secs(3), |_| false) {
            let e: Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
            let id = (
                e["student_id"].as_str().or(e["school_id"].as_str()).unwrap().to_owned(),
                e["event_id"].as_str().unwrap().to_owned(),
            );
            match by_id.get(&id) {
                Some(first) => {
                    assert_eq!(first, &e, "an event id published twice with other content")
                }
                None => {
                    by_id.insert(id, e.clone());
                }
            }
            live.push(e);
        }
    }
    assert_eq!(
        common::final_records(live),
        common::final_records(offline),
        "the final records of the natural keys"
    );
}

//! `ontrack demo`: the embedded default. An in-process Kafka (librdkafka's mock cluster), a seeded
//! synthetic district streamed in school day by school day, the same service code as `run`, the
//! flag changes printed as they come out of `ontrack.flags`, and the advocates' alerts as a local
//! webhook receiver gets them (the service's clock is set to each school day's morning, so that
//! day's absences are "today").

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value;

use crate::clock::Clock;
use crate::config::Config;
use crate::core::{Flag, Rules};
use crate::synth::{District, DistrictSpec};

const PARTITIONS: i32 = 4;
/// The demo's webhook signing secret (a fixed, public test key).
const DEMO_SECRET: &str = "whsec_ZGVtby1vbmx5LXNlY3JldC1mb3Itb250cmFjaw==";

/// Runs the demo to the end and prints its summary to `out`.
pub fn run(spec: DistrictSpec, out: &mut impl Write) -> anyhow::Result<()> {
    let started = Instant::now();
    let cluster = MockCluster::new(1).context("cannot start the in-process Kafka")?;
    let data = tempfile_dir()?;
    let mut config = Config::default();
    config.kafka.brokers = cluster.bootstrap_servers();
    config.kafka.group_id = "ontrack-demo".into();
    config.data_dir = data.clone();
    config.batch.max_wait_ms = 20;
    // Any free port: the demo must not collide with a running service.
    config.admin.addr = "127.0.0.1:0".into();
    let t = config.topics.clone();
    for topic in t.inputs().into_iter().chain([t.calendar.as_str(), &t.flags, &t.dead_letter]) {
        cluster.create_topic(topic, PARTITIONS, 1).context("cannot create the demo topics")?;
    }
    writeln!(
        out,
        "ontrack demo: {} students in {} schools, {} school days from {}, in-process Kafka at {}",
        spec.students, spec.schools, spec.days, spec.start, config.kafka.brokers
    )?;

    let inbox = Arc::new(Inbox::default());
    let receiver_stop = crate::shutdown::Shutdown::new();
    let receiver = start_receiver(inbox.clone(), receiver_stop.clone())?;
    config.notify.webhook.secret = DEMO_SECRET.into();
    let spec =
        DistrictSpec { advocate_webhook: Some(format!("http://{}/hooks", receiver.addr)), ..spec };
    let clock = Clock::system();
    let shutdown = crate::shutdown::Shutdown::new();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &config.kafka.brokers)
        .set("linger.ms", "5")
        .set("enable.idempotence", "true")
        .create()?;
    let flags = reader(&config.kafka.brokers, &t.flags)?;
    let mut district = District::new(spec.clone());
    let mut summary = Summary::default();
    let outcome = std::thread::scope(|scope| -> anyhow::Result<()> {
        let service = scope.spawn(|| {
            crate::service::run_with_clock(&config, Rules::default(), &shutdown, clock.clone())
        });
        let mut stream = || -> anyhow::Result<()> {
            for day in 0..spec.days {
                let date = district.dates()[day as usize];
                clock.set(school_morning(date));
                let events = district.day(day);
                summary.events += events.len() as u64;
                for e in &events {
                    let (key, payload) = (e.student_id.as_bytes(), e.json.as_bytes());
                    crate::kafka::send_waiting(&producer, t.input_of(e.kind), key, payload)?;
                }
                producer.flush(Duration::from_secs(30))?;
                // The mock cluster keeps only a few MiB per partition: wait until the service has
                // read the day before sending the next.
                wait_for_service(&config, &input_ends(&config)?, &service)?;
                drain(&flags, out, &mut summary, Some(date))?;
                inbox.print_new(out)?;
            }
            drain(&flags, out, &mut summary, None)?;
            inbox.print_new(out)?;
            Ok(())
        };
        let streamed = stream();
        // Stopped whatever happened: the scope waits for the service thread.
        shutdown.trigger();
        service.join().map_err(|_| anyhow::anyhow!("the service thread panicked"))??;
        streamed
    });
    receiver_stop.trigger();
    receiver.join();
    let _ = std::fs::remove_dir_all(&data);
    outcome?;
    summary.print(out, spec.students, started.elapsed())?;
    inbox.print_summary(out)?;
    Ok(())
}

/// 07:30 in the synthetic district's timezone on `date`: the service's "now" while that day's
/// events stream in.
fn school_morning(date: time::Date) -> jiff::Timestamp {
    let civil =
        jiff::civil::date(date.year() as i16, date.month() as i8, date.day() as i8).at(7, 30, 0, 0);
    jiff::tz::TimeZone::get("America/Chicago")
        .and_then(|tz| tz.to_timestamp(civil))
        .unwrap_or_else(|_| jiff::Timestamp::now())
}

/// What the demo's webhook receiver got: `(advocate, kind, student, date)` per alert.
#[derive(Debug, Default)]
struct Inbox {
    alerts: Mutex<Vec<[String; 4]>>,
    printed: AtomicU64,
    bad_signatures: AtomicU64,
}

/// A webhook receiver on a free local port that checks every signature with the demo secret.
fn start_receiver(
    inbox: Arc<Inbox>,
    stop: crate::shutdown::Shutdown,
) -> anyhow::Result<crate::http::AdminServer> {
    use axum::body::Bytes;
    use axum::extract::{Path, State};
    use axum::http::{HeaderMap, StatusCode};
    let key = crate::notify::config::secret_key(DEMO_SECRET).context("the demo secret")?;
    let receive = move |State(inbox): State<Arc<Inbox>>,
                        Path(advocate): Path<String>,
                        headers: HeaderMap,
                        body: Bytes| {
        let key = key.clone();
        async move {
            let header = |name: &str| {
                headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
            };
            let id = header("webhook-id");
            let timestamp: i64 = header("webhook-timestamp").parse().unwrap_or_default();
            let expected = crate::notify::webhook::sign(&key, &id, timestamp, &body);
            if header("webhook-signature") != expected {
                inbox.bad_signatures.fetch_add(1, Ordering::Relaxed);
                return StatusCode::UNAUTHORIZED;
            }
            let v: Value = serde_json::from_slice(&body).unwrap_or_default();
            let mut alerts = inbox.alerts.lock().unwrap_or_else(PoisonError::into_inner);
            for a in v["data"]["alerts"].as_array().into_iter().flatten() {
                let field = |k: &str| a[k].as_str().unwrap_or_default().to_owned();
                let kind = match a["flag"].as_str() {
                    Some(flag) => format!("{} {flag}", field("kind")),
                    None => field("kind"),
                };
                alerts.push([advocate.clone(), kind, field("student_id"), field("date")]);
            }
            StatusCode::NO_CONTENT
        }
    };
    let router = axum::Router::new()
        .route("/hooks/{advocate}", axum::routing::post(receive))
        .with_state(inbox);
    Ok(crate::http::AdminServer::start("127.0.0.1:0", router, stop)?)
}

impl Inbox {
    /// Prints the alerts received since the last call (after a short wait for deliveries).
    fn print_new(&self, out: &mut impl Write) -> anyhow::Result<()> {
        // Deliveries follow the commit within milliseconds: wait until none has come for 100 ms.
        let mut seen = usize::MAX;
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let now = self.alerts.lock().unwrap_or_else(PoisonError::into_inner).len();
            if now == seen || Instant::now() > deadline {
                break;
            }
            seen = now;
            std::thread::sleep(Duration::from_millis(100));
        }
        let alerts = self.alerts.lock().unwrap_or_else(PoisonError::into_inner);
        let from = self.printed.swap(alerts.len() as u64, Ordering::Relaxed) as usize;
        let new = &alerts[from.min(alerts.len())..];
        if new.is_empty() {
            return Ok(());
        }
        let (absences, flags, advocates) = tally(new);
        writeln!(
            out,
            "  advocates alerted: {absences} absences today, {flags} flag changes, to {advocates} advocates"
        )?;
        for [advocate, kind, student, date] in new.iter().take(3) {
            writeln!(out, "    → {advocate}: {kind} {student} ({date})")?;
        }
        Ok(())
    }

    fn print_summary(&self, out: &mut impl Write) -> anyhow::Result<()> {
        let alerts = self.alerts.lock().unwrap_or_else(PoisonError::into_inner);
        let (absences, flags, advocates) = tally(&alerts);
        writeln!(
            out,
            "\nadvocate alerts (signed webhooks): {absences} same-day absences, {flags} flag changes, to {advocates} advocates; {} bad signatures",
            self.bad_signatures.load(Ordering::Relaxed)
        )?;
        Ok(())
    }
}

/// `(absence alerts, flag alerts, distinct advocates)`.
fn tally(alerts: &[[String; 4]]) -> (usize, usize, usize) {
    let absences = alerts.iter().filter(|a| a[1] == "absence").count();
    let advocates: std::collections::BTreeSet<&str> =
        alerts.iter().map(|a| a[0].as_str()).collect();
    (absences, alerts.len() - absences, advocates.len())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("ontrack-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// High watermarks of every input partition that has messages.
fn input_ends(config: &Config) -> anyhow::Result<Vec<(String, i32, i64)>> {
    let c: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", &config.kafka.brokers).create()?;
    let t = config.topics.clone();
    let mut ends = Vec::new();
    for topic in t.all_inputs() {
        for p in 0..PARTITIONS {
            let (_, high) = c.fetch_watermarks(topic, p, Duration::from_secs(10))?;
            if high > 0 {
                ends.push((topic.to_owned(), p, high));
            }
        }
    }
    Ok(ends)
}

/// Waits until the service's committed offsets reach `ends`.
fn wait_for_service<T>(
    config: &Config,
    ends: &[(String, i32, i64)],
    service: &std::thread::ScopedJoinHandle<'_, anyhow::Result<T>>,
) -> anyhow::Result<()> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &config.kafka.brokers)
        .set("group.id", &config.kafka.group_id)
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for (topic, p, _) in ends {
        tpl.add_partition(topic, *p);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        anyhow::ensure!(!service.is_finished(), "the service stopped unexpectedly");
        let committed = c.committed_offsets(tpl.clone(), Duration::from_secs(10))?;
        let caught_up = ends.iter().all(|(topic, p, high)| {
            committed
                .find_partition(topic, *p)
                .is_some_and(|e| matches!(e.offset(), Offset::Offset(o) if o >= *high))
        });
        if caught_up {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "the service did not keep up within 60 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn reader(brokers: &str, topic: &str) -> anyhow::Result<BaseConsumer> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "ontrack-demo-reader")
        .set("auto.offset.reset", "earliest")
        .create()?;
    c.subscribe(&[topic])?;
    Ok(c)
}

/// What the demo saw on `ontrack.flags`.
#[derive(Debug, Default)]
struct Summary {
    events: u64,
    raised: BTreeMap<String, u64>,
    cleared: BTreeMap<String, u64>,
    /// The latest state of every (student, flag): raised or not, and the student's school.
    latest: BTreeMap<(String, String), (bool, String)>,
}

/// Prints the flag events available now (for `day`, after its events were consumed).
fn drain(
    flags: &BaseConsumer,
    out: &mut impl Write,
    summary: &mut Summary,
    day: Option<time::Date>,
) -> anyhow::Result<()> {
    let mut lines = Vec::new();
    while let Some(message) =
        flags.poll(Duration::from_millis(if day.is_some() { 50 } else { 500 }))
    {
        let message = message?;
        let Some(payload) = message.payload() else { continue };
        let v: Value = serde_json::from_slice(payload)?;
        let (kind, flag, student) = (
            v["type"].as_str().unwrap_or_default(),
            v["flag"].as_str().unwrap_or_default().to_owned(),
            v["student_id"].as_str().unwrap_or_default().to_owned(),
        );
        let raised = kind == "flag.raised";
        *(if raised { &mut summary.raised } else { &mut summary.cleared })
            .entry(flag.clone())
            .or_default() += 1;
        let school = v["school_id"].as_str().unwrap_or_default().to_owned();
        summary.latest.insert((student.clone(), flag.clone()), (raised, school));
        lines.push(format!(
            "  {} {:<8} {:<21} {student} {}",
            v["as_of"].as_str().unwrap_or_default(),
            if raised { "raised" } else { "cleared" },
            flag,
            describe(&v["evidence"]),
        ));
    }
    if let Some(day) = day {
        writeln!(out, "{day} {}: {} flag changes", day.weekday(), lines.len())?;
    }
    for line in lines {
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// The evidence in a few words (figures only; never names, grades or behavior text).
fn describe(e: &Value) -> String {
    if let Some(days) = e.get("days_enrolled") {
        format!("({} of {days} days absent)", e["days_absent"])
    } else if let Some(streak) = e.get("streak") {
        format!("({streak} absences in a row)")
    } else if let Some(r) = e.get("referrals") {
        format!("({r} referrals, {} suspensions)", e["suspensions"])
    } else if let Some(f) = e.get("core_f") {
        format!("({f} core F, {} core D or F)", e["core_d_or_f"])
    } else if let Some(i) = e.get("indicators") {
        format!("({i})")
    } else {
        String::new()
    }
}

impl Summary {
    fn print(&self, out: &mut impl Write, students: u32, took: Duration) -> anyhow::Result<()> {
        writeln!(
            out,
            "\nsummary: {students} students, {} events, {:.1} s",
            self.events,
            took.as_secs_f64()
        )?;
        writeln!(out, "{:<22} {:>8} {:>8} {:>13}", "flag", "raised", "cleared", "still raised")?;
        for flag in Flag::ALL {
            let name = flag.as_str();
            let still = self.latest.iter().filter(|((_, f), (r, _))| f == name && *r).count();
            writeln!(
                out,
                "{name:<22} {:>8} {:>8} {still:>13}",
                self.raised.get(name).copied().unwrap_or(0),
                self.cleared.get(name).copied().unwrap_or(0),
            )?;
        }
        let mut by_school: BTreeMap<&str, u64> = BTreeMap::new();
        for ((_, flag), (raised, school)) in &self.latest {
            if flag == "off_track" && *raised {
                *by_school.entry(school).or_default() += 1;
            }
        }
        writeln!(out, "\nstudents off track by school")?;
        for (school, n) in by_school {
            writeln!(out, "{school:<10} {n:>6}")?;
        }
        Ok(())
    }
}

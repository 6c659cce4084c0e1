//! Helpers of `scripts/bench` (not part of the product): create the benchmark's topics, measure
//! the raw-consume ceiling, wait for a consumer group to catch up, and read event → flag latency
//! off the flags topic; and `fold`, the service's pipeline and store without Kafka, for districts
//! too large for the broker's disk (memory and store size per student at 1,000,000 students).

use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

#[derive(Debug, Parser)]
#[command(name = "ontrack-bench", about = "Measurement helpers of scripts/bench")]
struct Cli {
    #[arg(long, default_value = "127.0.0.1:9092")]
    brokers: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create PREFIX.sis.{attendance,discipline,grades,enrollment,calendar},
    /// PREFIX.roster.assignments (N partitions each), PREFIX.ontrack.flags (LogAppendTime: a flag's timestamp is its acknowledgement),
    /// PREFIX.ontrack.dead-letter and PREFIX.edfi.dms (compacted, N partitions: the Ed-Fi
    /// translator's input).
    Topics {
        #[arg(long)]
        prefix: String,
        #[arg(long, default_value_t = 4)]
        partitions: i32,
    },
    /// Delete the PREFIX.* topics `topics` created (the broker's disk is not infinite).
    Drop {
        #[arg(long)]
        prefix: String,
    },
    /// Read the input topics from the beginning with a plain consumer that does nothing else;
    /// prints ceiling_events_per_s.
    Ceiling {
        #[arg(long)]
        prefix: String,
    },
    /// Wait until consumer group GROUP has committed every message of the input topics (fresh
    /// topics: offsets from 0); prints caught_up_s (from the call) and sustained_events_per_s
    /// (messages committed from the first commit seen to the last, per second).
    CaughtUp {
        #[arg(long)]
        prefix: String,
        #[arg(long)]
        group: String,
        /// Wait on PREFIX.TOPIC only (e.g. `edfi.dms` for the translator's group).
        #[arg(long)]
        topic: Option<String>,
        /// Wait on these partitions only (e.g. `2,3`: those a backlog was produced into).
        #[arg(long, value_delimiter = ',')]
        partitions: Vec<i32>,
        #[arg(long, default_value_t = 3600)]
        timeout_s: u64,
    },
    /// Latency of every flag caused by an event produced at or after SINCE_MS: the flag's
    /// broker timestamp minus its `ontrack.source.timestamp_ms`; prints p50/p99/max in ms.
    Latency {
        #[arg(long)]
        prefix: String,
        #[arg(long)]
        since_ms: i64,
        /// Only events produced before UNTIL_MS.
        #[arg(long)]
        until_ms: Option<i64>,
        /// Also print, to standard error, the flags by the second their events were produced in
        /// (seconds after SINCE_MS): how many, and the largest latency.
        #[arg(long)]
        by_second: bool,
    },
    /// Produce a seeded synthetic district (absence-only feed: calendars, enrollments, absences
    /// and tardies, referrals, grades) as Ed-Fi DMS CDC v1 messages into PREFIX.edfi.dms, as
    /// fast as possible (corrections are new content versions, retractions tombstones; a Course
    /// document for each course first); prints produced=… (messages).
    Dms {
        #[arg(long)]
        prefix: String,
        #[arg(long)]
        students: u32,
        #[arg(long)]
        days: u32,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Write the messages as an export (`{"key", "value"}` a line, for `ontrack edfi
        /// --events`) instead of producing them.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Fold JSON Lines events from standard input (e.g. `ontrack synth --out -`) through the
    /// service's pipeline and store into DATA_DIR (batches of `--batch-events`, partition
    /// `hash(student) % 4`, no Kafka); prints events/s, this process's peak RSS (the generator
    /// runs in its own) and the store's size per student.
    Fold {
        /// Students in the input (for the per-student store size).
        #[arg(long)]
        students: u64,
        #[arg(long)]
        data_dir: std::path::PathBuf,
        /// `batch.state_cache_mib` of the service.
        #[arg(long, default_value_t = ontrack::pipeline::DEFAULT_CACHE_MIB)]
        state_cache_mib: usize,
        /// Every partition group behind (as while `ontrack run` rebuilds a backlog: each group
        /// closes its school days itself), not caught up (as when live).
        #[arg(long)]
        behind: bool,
        /// `batch.packed_cache_mib` of the service.
        #[arg(long, default_value_t = ontrack::pipeline::DEFAULT_PACKED_MIB)]
        packed_cache_mib: usize,
        /// `batch.workers` of the service (0: one per core).
        #[arg(long, default_value_t = 0)]
        workers: usize,
        /// `store.cache_mib` of the service.
        #[arg(long, default_value_t = ontrack::store::StoreOptions::default().cache_mib)]
        store_cache_mib: u64,
        /// `store.memtable_mib` of the service.
        #[arg(long, default_value_t = ontrack::store::StoreOptions::default().memtable_mib)]
        memtable_mib: u64,
        /// The largest batch (`batch.max_events` of the service; smaller while batches touch
        /// each student about once, as the service sizes a backlog's batches).
        #[arg(long, default_value_t = ontrack::config::Config::default().batch.max_events)]
        batch_events: usize,
    },
}

/// The inputs, the calendar last (created with the same partition count: it may have any).
const INPUTS: [&str; 6] = [
    "sis.attendance",
    "sis.discipline",
    "sis.grades",
    "roster.assignments",
    "sis.enrollment",
    "sis.calendar",
];

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let b = &cli.brokers;
    match cli.command {
        Command::Topics { prefix, partitions } => topics(b, &prefix, partitions),
        Command::Drop { prefix } => drop_topics(b, &prefix),
        Command::Ceiling { prefix } => {
            let (events, took) = read_all(b, &inputs(&prefix), |_| {})?;
            println!("ceiling_events={events} ceiling_s={:.3}", took.as_secs_f64());
            println!("ceiling_events_per_s={:.0}", events as f64 / took.as_secs_f64());
            Ok(())
        }
        Command::CaughtUp { prefix, group, topic, partitions, timeout_s } => {
            let topics = match topic {
                Some(t) => vec![format!("{prefix}.{t}")],
                None => inputs(&prefix),
            };
            caught_up(b, &topics, &partitions, &group, timeout_s)
        }
        Command::Dms { prefix, students, days, seed, out } => {
            dms(b, &prefix, students, days, seed, out.as_deref())
        }
        Command::Latency { prefix, since_ms, until_ms, by_second } => {
            latency(b, &prefix, since_ms, until_ms.unwrap_or(i64::MAX), by_second)
        }
        Command::Fold {
            students,
            data_dir,
            state_cache_mib,
            behind,
            packed_cache_mib,
            workers,
            store_cache_mib,
            memtable_mib,
            batch_events,
        } => {
            let options = ontrack::store::StoreOptions { cache_mib: store_cache_mib, memtable_mib };
            let store = ontrack::store::Store::open_with(&data_dir, &options)?;
            let caches = (state_cache_mib, packed_cache_mib);
            fold(students, store, caches, workers, batch_events.max(1), behind)
        }
    }
}

/// The pipeline of `ontrack run` over the events on standard input, without a broker.
fn fold(
    students: u64,
    store: ontrack::store::Store,
    (state_cache_mib, packed_cache_mib): (usize, usize),
    workers: usize,
    batch_events: usize,
    behind: bool,
) -> anyhow::Result<()> {
    use std::io::BufRead as _;

    use ontrack::pipeline::{InputMessage, Pipeline, Topics};
    let topics = Topics::default();
    let pipeline = Pipeline::new(store, ontrack::core::Rules::default(), topics.clone())
        .with_cache_mib(state_cache_mib)
        .with_packed_cache_mib(packed_cache_mib)
        .with_workers(workers);
    let mut offsets = std::collections::HashMap::<(&str, i32), i64>::new();
    let (started, mut events) = (Instant::now(), 0u64);
    let now = jiff::Timestamp::now();
    let mut lines = std::io::stdin().lock().lines();
    let mut batch_lines: Vec<String> = Vec::with_capacity(batch_events);
    // Batches sized as the service sizes a backlog's.
    let mut size = ontrack::pipeline::BatchSize::new(batch_events);
    loop {
        batch_lines.clear();
        for line in lines.by_ref().take(size.next()) {
            batch_lines.push(line?);
        }
        if batch_lines.is_empty() {
            break;
        }
        let mut batch = Vec::with_capacity(batch_lines.len());
        for line in &batch_lines {
            let event = ontrack::core::decode(line.as_bytes())
                .map_err(|e| anyhow::anyhow!("fold: bad input line: {e}"))?;
            let topic = topics.input_of(event.kind());
            let partition = (xxhash_rust::xxh3::xxh3_64(event.student_id.as_bytes()) % 4) as i32;
            let offset = offsets.entry((topic, partition)).or_default();
            *offset += 1;
            batch.push(InputMessage {
                topic,
                partition,
                offset: *offset - 1,
                key: None,
                payload: Some(line.as_bytes()),
                timestamp_ms: None,
            });
        }
        let none = std::collections::BTreeSet::new();
        let outcome = pipeline.process_groups(&batch, now, behind.then_some(&none))?;
        size.observe(outcome.messages, outcome.students);
        let before = events;
        events += batch.len() as u64;
        if events / 5_000_000 != before / 5_000_000 {
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "events={events} s={secs:.0} events_per_s={:.0} rss_mib={} cached_states={:.2}",
                events as f64 / secs,
                status_kib("VmRSS") / 1024,
                cached_share(&pipeline)
            );
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let store_bytes = pipeline.store().size_on_disk()?;
    println!(
        "events={events} fold_s={secs:.1} fold_events_per_s={:.0} rss_mib={} store_mib={} store_bytes_per_student={} cached_states={:.2}",
        events as f64 / secs,
        status_kib("VmHWM") / 1024,
        store_bytes >> 20,
        store_bytes / students.max(1),
        cached_share(&pipeline)
    );
    Ok(())
}

/// The share of the states the batches started from that came from the state cache.
fn cached_share(pipeline: &ontrack::pipeline::Pipeline) -> f64 {
    let reads = pipeline.telemetry().state_reads_count();
    (reads.cache + reads.packed) as f64 / reads.total().max(1) as f64
}

/// A `/proc/self/status` figure in KiB (0 if unreadable).
fn status_kib(name: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(name)?.strip_prefix(':')?.trim().strip_suffix(" kB")?.parse().ok()
        })
        .unwrap_or(0)
}

fn inputs(prefix: &str) -> Vec<String> {
    INPUTS.iter().map(|t| format!("{prefix}.{t}")).collect()
}

fn topics(brokers: &str, prefix: &str, partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers).create()?;
    let names: Vec<String> = inputs(prefix);
    let flags = format!("{prefix}.ontrack.flags");
    let dead = format!("{prefix}.ontrack.dead-letter");
    let mut new: Vec<NewTopic> =
        names.iter().map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(1))).collect();
    new.push(
        NewTopic::new(&flags, partitions, TopicReplication::Fixed(1))
            .set("message.timestamp.type", "LogAppendTime"),
    );
    new.push(NewTopic::new(&dead, 1, TopicReplication::Fixed(1)));
    let dms = format!("{prefix}.edfi.dms");
    new.push(
        NewTopic::new(&dms, partitions, TopicReplication::Fixed(1))
            .set("cleanup.policy", "compact"),
    );
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let results = runtime.block_on(admin.create_topics(&new, &AdminOptions::new()))?;
    for r in results {
        if let Err((topic, e)) = r {
            anyhow::bail!("cannot create {topic}: {e}");
        }
    }
    Ok(())
}

fn drop_topics(brokers: &str, prefix: &str) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers).create()?;
    let mut names = inputs(prefix);
    names.push(format!("{prefix}.ontrack.flags"));
    names.push(format!("{prefix}.ontrack.dead-letter"));
    names.push(format!("{prefix}.edfi.dms"));
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    for r in runtime.block_on(admin.delete_topics(&names, &AdminOptions::new()))? {
        if let Err((topic, e)) = r {
            anyhow::bail!("cannot delete {topic}: {e}");
        }
    }
    Ok(())
}

/// Every partition of `topics` with its high watermark (waits for the metadata).
fn ends(c: &BaseConsumer, topics: &[String]) -> anyhow::Result<Vec<(String, i32, i64)>> {
    let mut out = Vec::new();
    for t in topics {
        let meta = c.fetch_metadata(Some(t), Duration::from_secs(10))?;
        let parts = meta.topics().first().map_or(0, |m| m.partitions().len()) as i32;
        anyhow::ensure!(parts > 0, "topic {t} has no partitions");
        for p in 0..parts {
            let (_, high) = c.fetch_watermarks(t, p, Duration::from_secs(10))?;
            out.push((t.clone(), p, high));
        }
    }
    Ok(out)
}

/// Reads `topics` from the beginning to their current ends, calling `each` per message; returns
/// the message count and the time from the first message to the last.
fn read_all(
    brokers: &str,
    topics: &[String],
    mut each: impl FnMut(&rdkafka::message::BorrowedMessage<'_>),
) -> anyhow::Result<(u64, Duration)> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "ontrack-bench-reader")
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "10485760")
        .set("queued.min.messages", "1000000")
        .create()?;
    let ends = ends(&c, topics)?;
    let expected: i64 = ends.iter().map(|(_, _, h)| h).sum();
    let mut tpl = TopicPartitionList::new();
    for (t, p, _) in &ends {
        tpl.add_partition_offset(t, *p, Offset::Beginning)?;
    }
    c.assign(&tpl)?;
    let mut count = 0i64;
    let mut first: Option<Instant> = None;
    let deadline = Instant::now() + Duration::from_secs(3600);
    while count < expected {
        anyhow::ensure!(Instant::now() < deadline, "read {count} of {expected} in an hour");
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                first.get_or_insert_with(Instant::now);
                count += 1;
                each(&m);
            }
            Some(Err(e)) => return Err(e).context("consume"),
            None => {}
        }
    }
    let took = first.map_or(Duration::ZERO, |f| f.elapsed());
    Ok((count as u64, took))
}

/// `partitions`: only these (none: all).
fn caught_up(
    brokers: &str,
    topics: &[String],
    partitions: &[i32],
    group: &str,
    timeout_s: u64,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let c: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", brokers).set("group.id", group).create()?;
    let mut ends = ends(&c, topics)?;
    ends.retain(|(_, p, _)| partitions.is_empty() || partitions.contains(p));
    let mut tpl = TopicPartitionList::new();
    for (t, p, _) in &ends {
        tpl.add_partition(t, *p);
    }
    let total: i64 = ends.iter().map(|(_, _, high)| high).sum();
    // When the group's first commit was seen, and how many messages it covered.
    let mut first: Option<(Instant, i64)> = None;
    loop {
        let committed = c.committed_offsets(tpl.clone(), Duration::from_secs(10))?;
        let offsets: Vec<i64> = ends
            .iter()
            .map(|(t, p, _)| match committed.find_partition(t, *p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => 0,
            })
            .collect();
        let done = ends.iter().zip(&offsets).all(|((_, _, high), o)| o >= high);
        let sum: i64 = offsets.iter().sum();
        if first.is_none() && sum > 0 {
            first = Some((Instant::now(), sum));
        }
        if done {
            let took = started.elapsed().as_secs_f64();
            // From the first commit seen to the last: without start-up, group join and the
            // first batch, as the ceiling is timed from its first message to its last.
            let sustained = match first {
                Some((at, from)) if total > from && at.elapsed() > Duration::from_millis(500) => {
                    (total - from) as f64 / at.elapsed().as_secs_f64()
                }
                _ => total as f64 / took,
            };
            let at_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
            println!(
                "caught_up_s={took:.3} sustained_events_per_s={sustained:.0} caught_up_at_ms={at_ms}"
            );
            return Ok(());
        }
        anyhow::ensure!(started.elapsed().as_secs() < timeout_s, "not caught up in {timeout_s} s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn latency(
    brokers: &str,
    prefix: &str,
    since_ms: i64,
    until_ms: i64,
    by_second: bool,
) -> anyhow::Result<()> {
    let mut ms: Vec<i64> = Vec::new();
    let mut seconds = std::collections::BTreeMap::<i64, (u64, i64)>::new();
    read_all(brokers, &[format!("{prefix}.ontrack.flags")], |m| {
        let source = m
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == "ontrack.source.timestamp_ms"))
            .and_then(|h| h.value)
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.parse::<i64>().ok());
        if let (Some(source), Some(acked)) = (source, m.timestamp().to_millis())
            && (since_ms..until_ms).contains(&source)
        {
            ms.push(acked - source);
            let second = seconds.entry((source - since_ms) / 1000).or_default();
            second.0 += 1;
            second.1 = second.1.max(acked - source);
        }
    })?;
    if by_second {
        for (second, (flags, max)) in &seconds {
            eprintln!("second={second} flags={flags} max_ms={max}");
        }
    }
    anyhow::ensure!(!ms.is_empty(), "no flag caused by an event produced after {since_ms}");
    ms.sort_unstable();
    let pct = |p: f64| ms[((ms.len() - 1) as f64 * p).round() as usize];
    println!(
        "flags={} p50_ms={} p99_ms={} max_ms={}",
        ms.len(),
        pct(0.50),
        pct(0.99),
        ms[ms.len() - 1]
    );
    Ok(())
}

/// The allocator of `ontrack` (src/main.rs), so that `fold` measures what the service would.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The synthetic district as DMS messages (the reverse of `ontrack edfi`'s mapping).
fn dms(
    brokers: &str,
    prefix: &str,
    students: u32,
    days: u32,
    seed: u64,
    out: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    use ontrack::core::EventKind;
    use ontrack::synth::{District, DistrictSpec, Feed};
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use serde_json::{Value, json};
    use std::io::Write as _;

    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("compression.type", "lz4")
        .set("enable.idempotence", "true")
        .create()?;
    let topic = format!("{prefix}.edfi.dms");
    let mut versions = std::collections::HashMap::<String, i64>::new();
    let mut courses = std::collections::HashSet::<String>::new();
    let mut produced = 0u64;
    let mut file = match out {
        Some(path) => Some(std::io::BufWriter::new(std::fs::File::create(path)?)),
        None => None,
    };
    let mut send = |uuid: &str, resource: &str, modified: &str, doc: Option<Value>| {
        let payload = doc.map(|document| {
            let version = versions.entry(uuid.to_owned()).or_default();
            *version += 1;
            json!({
                "contractVersion": 1, "documentUuid": uuid, "projectName": "Ed-Fi",
                "resourceName": resource, "resourceVersion": "5.2.0", "contentVersion": *version,
                "lastModifiedAt": modified, "document": document
            })
            .to_string()
        });
        produced += 1;
        if let Some(f) = file.as_mut() {
            let value: Value = payload.as_deref().map_or(Value::Null, |p| {
                serde_json::from_str(p).expect("the message was just written")
            });
            let _ = writeln!(f, "{}", json!({"key": uuid, "value": value}));
            return;
        }
        let mut record = BaseRecord::to(&topic).key(uuid);
        if let Some(p) = &payload {
            record = record.payload(p.as_str());
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(5));
                }
            }
        }
    };
    let descriptor = |kind: &str, code: &str| format!("uri://ed-fi.org/{kind}Descriptor#{code}");
    let spec =
        DistrictSpec { students, days, seed, feed: Feed::AbsenceOnly, ..DistrictSpec::default() };
    let mut district = District::new(spec);
    for day in 0..days {
        for e in district.day(day) {
            let Ok(v) = serde_json::from_str::<Value>(&e.json) else { continue };
            let f = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
            let (student, school, date, at) =
                (f("student_id"), f("school_id"), f("date"), f("recorded_at"));
            let retracted = v["retracted"].as_bool() == Some(true) || f("status") == "retracted";
            let student_ref = json!({"studentUniqueId": student});
            let school_ref = json!({"schoolId": school});
            match e.kind {
                EventKind::Attendance => {
                    let category = match f("status").as_str() {
                        "present" => "In Attendance",
                        "tardy" => "Tardy",
                        "absent_excused" => "Excused Absence",
                        _ => "Unexcused Absence",
                    };
                    let doc = json!({
                        "studentReference": student_ref, "schoolReference": school_ref,
                        "eventDate": date,
                        "attendanceEventCategoryDescriptor": descriptor("AttendanceEventCategory", category)
                    });
                    send(
                        &format!("att-{student}-{date}"),
                        "StudentSchoolAttendanceEvent",
                        &at,
                        (!retracted).then_some(doc),
                    );
                }
                EventKind::Discipline => {
                    let action = match f("action").as_str() {
                        "in_school_suspension" => "In School Suspension",
                        "out_of_school_suspension" => "Out of School Suspension",
                        "expulsion" => "Expulsion",
                        _ => "Removal from Classroom",
                    };
                    let doc = json!({
                        "disciplineActionIdentifier": f("referral_id"), "disciplineDate": date,
                        "studentReference": student_ref, "responsibilitySchoolReference": school_ref,
                        "disciplines": [{"disciplineDescriptor": descriptor("Discipline", action)}],
                        "disciplineActionLength": v["action_days"]
                    });
                    send(
                        &format!("dis-{student}-{}", f("referral_id")),
                        "DisciplineAction",
                        &at,
                        (!retracted).then_some(doc),
                    );
                }
                EventKind::Grade => {
                    let course = f("course_code");
                    if courses.insert(course.clone()) {
                        let subject = match f("subject").as_str() {
                            "ela" => "English Language Arts",
                            "math" => "Mathematics",
                            "science" => "Science",
                            "social_studies" => "Social Studies",
                            _ => "Fine and Performing Arts",
                        };
                        let doc = json!({
                            "courseCode": course, "educationOrganizationReference": {"educationOrganizationId": school},
                            "academicSubjects": [{"academicSubjectDescriptor": descriptor("AcademicSubject", subject)}]
                        });
                        send(&format!("course-{course}"), "Course", &at, Some(doc));
                    }
                    let doc = json!({
                        "gradeTypeDescriptor": descriptor("GradeType", "Grading Period"),
                        "gradingPeriodReference": {"gradingPeriodDescriptor": descriptor("GradingPeriod", &f("grading_period")), "gradingPeriodName": f("grading_period"), "schoolId": school, "schoolYear": 2027},
                        "studentSectionAssociationReference": {"beginDate": date, "localCourseCode": course, "schoolId": school, "schoolYear": 2027, "sectionIdentifier": f("section_id"), "sessionName": "Year", "studentUniqueId": student},
                        "letterGradeEarned": v["letter_grade"], "numericGradeEarned": v["numeric_grade"]
                    });
                    let uuid = format!("grd-{student}-{}-{}", f("section_id"), f("grading_period"));
                    send(&uuid, "Grade", &at, (!retracted).then_some(doc));
                }
                EventKind::Enrollment => {
                    let doc = json!({
                        "studentReference": student_ref, "schoolReference": school_ref,
                        "entryDate": date, "exitWithdrawDate": v["exit_date"],
                        "entryGradeLevelDescriptor": descriptor("GradeLevel", "Ninth grade")
                    });
                    send(
                        &format!("enr-{student}-{school}-{date}"),
                        "StudentSchoolAssociation",
                        &at,
                        (!retracted).then_some(doc),
                    );
                }
                EventKind::Calendar => {
                    let event = if v["instructional"].as_bool() == Some(true) {
                        "Instructional day"
                    } else {
                        "Holiday"
                    };
                    let doc = json!({
                        "calendarReference": {"calendarCode": "main", "schoolId": school, "schoolYear": 2027},
                        "date": date, "calendarEvents": [{"calendarEventDescriptor": descriptor("CalendarEvent", event)}]
                    });
                    send(
                        &format!("cal-{school}-{date}"),
                        "CalendarDate",
                        &at,
                        (!retracted).then_some(doc),
                    );
                }
                EventKind::Assignment => {}
            }
        }
    }
    producer.flush(Duration::from_secs(60))?;
    println!("produced={produced}");
    Ok(())
}

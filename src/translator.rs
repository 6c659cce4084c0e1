//! `ontrack edfi`: the Ed-Fi translator's two shells around [`crate::edfi`]'s core.
//!
//! - Offline ([`translate_file`]): a JSON-Lines export of DMS messages
//!   (`{"key": "<documentUuid>", "value": <message or null>}`) → contract v1.1 events, one a line.
//! - Live ([`run`]): the DMS topic (every partition, assigned: what one student-day's documents
//!   say together needs all of them in one place) → the input topics. Each batch's memory
//!   (documents, natural keys, catalogue), its input offsets and its events (an outbox) are one
//!   atomic store commit; the events are published after it (idempotent producer) and leave the
//!   outbox when acknowledged. A crash before the commit reads the batch again from the same
//!   memory and makes the same events; a crash after it publishes the outbox again: ontrack
//!   skips the repeated event ids.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufRead, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;

use crate::config::Config;
use crate::edfi::{DocRecord, Mapping, Memories, Memory, Outcome, Slot, SlotKey, Translator};
use crate::http::AdminServer;
use crate::kafka::consumer::{self, Context, Rebalance};
use crate::kafka::publisher::Publisher;
use crate::pipeline::{InputMessage, Topics, dead_letter_record};
use crate::shutdown::Shutdown;
use crate::store::table::{Nothing, Postcard, Text, TextPair};
use crate::store::{OFFSETS, OUTBOX, OutboxRecord, Store, StoreError, Table};
use crate::telemetry::Telemetry;

/// `U` + documentUuid → what the document was.
pub const DOCS: Table<Text, Postcard<DocRecord>> = Table::new(b'U', "edfi documents");
/// `K` + natural key (JSON) → its documents and last event.
pub const SLOTS: Table<Text, Postcard<Slot>> = Table::new(b'K', "edfi natural keys");
/// `I` + catalogue entry + 0 + grade key: the grades whose subject an entry gave.
pub const DEPENDENTS: Table<TextPair, Nothing> = Table::new(b'I', "edfi grades by course");

/// What an offline translation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub messages: u64,
    /// (resource or "other", outcome label) → messages.
    pub outcomes: BTreeMap<(String, &'static str), u64>,
    pub events: u64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "messages read: {}", self.messages)?;
        for ((resource, outcome), n) in &self.outcomes {
            writeln!(f, "  {resource} {outcome}: {n}")?;
        }
        writeln!(f, "events written: {}", self.events)
    }
}

/// Translates an export (one `{"key", "value"}` object a line) into contract events (one a
/// line); bad lines and rejected messages go to `rejected` with their line number and reason.
pub fn translate_file(
    input: impl BufRead,
    mut out: impl Write,
    mut rejected: impl Write,
    translator: &Translator,
) -> io::Result<Summary> {
    let mut memory = Memories::default();
    let mut summary = Summary::default();
    for (i, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        summary.messages += 1;
        let line_no = i + 1;
        let (key, value) = match export_line(&line) {
            Ok(kv) => kv,
            Err(why) => {
                count(&mut summary, None, "dead_letter");
                writeln!(
                    rejected,
                    "{}",
                    serde_json::json!({"line": line_no, "reason": why, "raw": line})
                )?;
                continue;
            }
        };
        let t = match translator.translate(&mut memory, key.as_deref(), value.as_deref()) {
            Ok(t) => t,
            Err(never) => match never {},
        };
        count(&mut summary, t.resource.map(|r| r.name()), t.outcome.label());
        if let Outcome::Rejected(why) = &t.outcome {
            writeln!(
                rejected,
                "{}",
                serde_json::json!({"line": line_no, "reason": why, "raw": line})
            )?;
        }
        for e in &t.events {
            out.write_all(e.json.as_bytes())?;
            out.write_all(b"\n")?;
            summary.events += 1;
        }
    }
    out.flush()?;
    rejected.flush()?;
    Ok(summary)
}

fn count(summary: &mut Summary, resource: Option<&str>, outcome: &'static str) {
    let resource = resource.unwrap_or("other").to_owned();
    *summary.outcomes.entry((resource, outcome)).or_default() += 1;
}

/// A message's key and value bytes (`None`: null).
type KeyValue = (Option<Vec<u8>>, Option<Vec<u8>>);

/// A line of an export: the key (text) and the value (the message's bytes; `None`: null).
fn export_line(line: &str) -> Result<KeyValue, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not a JSON object: {e}"))?;
    let Value::Object(o) = v else { return Err("not a JSON object".into()) };
    let key = match o.get("key") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone().into_bytes()),
        Some(other) => Some(other.to_string().into_bytes()),
    };
    let value = match o.get("value") {
        None => return Err("value: missing (null for a delete)".into()),
        Some(Value::Null) => None,
        // A message kept as its text.
        Some(Value::String(s)) => Some(s.clone().into_bytes()),
        Some(other) => Some(other.to_string().into_bytes()),
    };
    Ok((key, value))
}

/// The store as the translator's [`Memory`]: reads go through what this batch wrote.
struct StoreMemory<'s> {
    store: &'s Store,
    docs: HashMap<String, DocRecord>,
    slots: HashMap<SlotKey, Slot>,
    dependents: BTreeMap<(String, String), bool>,
}

impl<'s> StoreMemory<'s> {
    fn new(store: &'s Store) -> StoreMemory<'s> {
        StoreMemory {
            store,
            docs: HashMap::new(),
            slots: HashMap::new(),
            dependents: BTreeMap::new(),
        }
    }

    fn write(self, batch: &mut crate::store::Batch<'_>) {
        for (uuid, doc) in &self.docs {
            DOCS.put(batch, &uuid.as_str(), doc);
        }
        for (key, slot) in &self.slots {
            SLOTS.put(batch, &key.encode().as_str(), slot);
        }
        for ((dependency, key), on) in &self.dependents {
            match on {
                true => DEPENDENTS.put(batch, &(dependency.as_str(), key.as_str()), &()),
                false => DEPENDENTS.remove(batch, &(dependency.as_str(), key.as_str())),
            }
        }
    }
}

impl Memory for StoreMemory<'_> {
    type Error = StoreError;

    fn doc(&mut self, uuid: &str) -> Result<Option<DocRecord>, StoreError> {
        match self.docs.get(uuid) {
            Some(d) => Ok(Some(d.clone())),
            None => DOCS.get(self.store, &uuid),
        }
    }

    fn put_doc(&mut self, uuid: &str, doc: &DocRecord) {
        self.docs.insert(uuid.to_owned(), doc.clone());
    }

    fn slot(&mut self, key: &SlotKey) -> Result<Option<Slot>, StoreError> {
        match self.slots.get(key) {
            Some(s) => Ok(Some(s.clone())),
            None => SLOTS.get(self.store, &key.encode().as_str()),
        }
    }

    fn put_slot(&mut self, key: &SlotKey, slot: &Slot) {
        self.slots.insert(key.clone(), slot.clone());
    }

    fn dependents(&mut self, dependency: &str) -> Result<Vec<SlotKey>, StoreError> {
        let mut keys: BTreeMap<String, bool> = BTreeMap::new();
        for item in DEPENDENTS.iter_first(self.store, dependency) {
            let ((_, key), ()) = item?;
            keys.insert(key, true);
        }
        let from = (dependency.to_owned(), String::new());
        for ((d, key), on) in self.dependents.range(from..) {
            if d != dependency {
                break;
            }
            keys.insert(key.clone(), *on);
        }
        Ok(keys
            .into_iter()
            .filter(|(_, on)| *on)
            .filter_map(|(k, _)| SlotKey::decode(&k))
            .collect())
    }

    fn set_dependent(&mut self, dependency: &str, key: &SlotKey, on: bool) {
        self.dependents.insert((dependency.to_owned(), key.encode()), on);
    }
}

/// Resumes each DMS partition at the offset stored with the translator's memory.
struct Resume(Store);

impl Rebalance for Resume {
    fn resume_at(&self, topic: &str, partition: i32) -> Result<Option<i64>, String> {
        self.0.next_offset(topic, partition).map_err(|e| e.to_string())
    }
    fn revoking(&self) -> Result<Vec<(String, i32, i64)>, String> {
        Ok(Vec::new())
    }
    fn assigned(&self, _: &[(String, i32)]) {}
    fn lost(&self) {}
}

/// How long the loop waits for the broker's acknowledgements after a batch.
const ACK_WAIT: Duration = Duration::from_millis(200);
const SHUTDOWN_ACK_WAIT: Duration = Duration::from_secs(5);
const GAUGE_INTERVAL: Duration = Duration::from_secs(5);

/// `ontrack edfi` live: until `shutdown`.
pub fn run(config: &Config, shutdown: &Shutdown) -> anyhow::Result<()> {
    let edfi = &config.edfi;
    let mapping =
        Mapping::new(edfi).map_err(|(key, why)| anyhow::anyhow!("config: {key}: {why}"))?;
    let telemetry = Arc::new(Telemetry::for_inputs(&[&edfi.topic]));
    telemetry.edfi_series();
    let router = || crate::http::router(telemetry.clone(), config.admin.ready_max_lag);
    let work = || serve(config, Translator::new(mapping), shutdown, telemetry.clone());
    AdminServer::around("edfi.admin_addr", &edfi.admin_addr, router, work)?
}

fn serve(
    config: &Config,
    translator: Translator,
    shutdown: &Shutdown,
    telemetry: Arc<Telemetry>,
) -> anyhow::Result<()> {
    let (edfi, t) = (&config.edfi, &config.topics);
    // A topic created a moment ago reaches the brokers' metadata a moment later.
    let deadline = Instant::now() + Duration::from_secs(15);
    let partitions = loop {
        let counts = crate::kafka::admin::partition_counts(&config.kafka, &[&edfi.topic])?;
        let n = i32::try_from(counts.first().copied().unwrap_or(0)).unwrap_or(0);
        if n > 0 || Instant::now() >= deadline || shutdown.is_triggered() {
            break n;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if partitions == 0 {
        anyhow::bail!(
            "edfi.topic: topic {} does not exist; point edfi.topic (ONTRACK__EDFI__TOPIC) at the \
             DMS change topic",
            edfi.topic
        );
    }
    crate::kafka::admin::ensure_topics(&config.kafka, &t.inputs(), &[&t.calendar, &t.dead_letter])?;
    let store = Store::open_with(&edfi.data_dir, &config.store).with_context(|| {
        format!("edfi.data_dir {}: cannot open the store", edfi.data_dir.display())
    })?;
    OUTBOX.start_numbering(&store)?;
    // Keys go to the partitions Java clients choose (murmur2): a district's other producers of
    // the inputs (roster.assignments) are most often Java (Kafka Connect), and the inputs must
    // be co-partitioned. `kafka.librdkafka.partitioner` overrides it.
    let mut kafka = config.kafka.clone();
    kafka.librdkafka.entry("partitioner".into()).or_insert_with(|| "murmur2_random".into());
    let publisher =
        Publisher::new(&kafka, telemetry.clone()).context("kafka: cannot create the producer")?;
    publisher.publish(&store, ACK_WAIT)?;

    let consumer: BaseConsumer<Context<Resume>> =
        consumer::global_consumer_config(&config.kafka, "edfi")
            .create_with_context(Context::new(telemetry.clone(), Resume(store.clone())))
            .context("kafka: cannot create the consumer")?;
    let mut tpl = TopicPartitionList::new();
    let mut resume = Vec::new();
    let mut stored = Vec::new();
    for partition in 0..partitions {
        let next = store.next_offset(&edfi.topic, partition)?;
        let offset = next.map_or(Offset::Beginning, Offset::Offset);
        tpl.add_partition_offset(&edfi.topic, partition, offset)
            .context("kafka: cannot position the consumer")?;
        resume.push(format!("{}/{partition}@{offset:?}", edfi.topic));
        stored.extend(next.map(|n| (edfi.topic.clone(), partition, n)));
    }
    consumer.assign(&tpl).context("kafka: cannot read edfi.topic")?;
    // The group's committed offsets (for lag tools) catch up with the store's at once: a run
    // killed between its commit and Kafka's would leave them behind until the next message.
    consumer::commit(&consumer, &stored);
    telemetry.partitions_assigned(&resume);
    telemetry.state_loaded();
    tracing::info!(topic = %edfi.topic, partitions, brokers = %config.kafka.brokers, "ontrack edfi running");

    let max_wait = Duration::from_millis(config.batch.max_wait_ms);
    let mut gauges_at = Instant::now();
    while !shutdown.is_triggered() {
        if gauges_at.elapsed() >= GAUGE_INTERVAL {
            telemetry.queue("kafka", OUTBOX.count(&store), 0);
            telemetry.store_size(store.size_on_disk()?);
            telemetry.update_ready(config.admin.ready_max_lag);
            gauges_at = Instant::now();
        }
        let mut batch = Vec::new();
        let mut first_at = None;
        while batch.len() < config.batch.max_events && !shutdown.is_triggered() {
            let wait = match first_at {
                None => Duration::from_millis(100),
                Some(at) => match max_wait.checked_sub(Instant::elapsed(&at)) {
                    Some(left) => left,
                    None => break,
                },
            };
            match consumer.poll(wait) {
                Some(Ok(m)) => {
                    first_at.get_or_insert_with(Instant::now);
                    batch.push(m.detach());
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "kafka: consumer error");
                    std::thread::sleep(Duration::from_millis(10));
                    break;
                }
                None if first_at.is_none() => break,
                None => {}
            }
        }
        if batch.is_empty() {
            publisher.serve(&store)?;
            if publisher.in_flight() == 0 && OUTBOX.count(&store) > 0 {
                publisher.publish(&store, ACK_WAIT)?;
            }
            continue;
        }
        let offsets = translate_batch(&store, &translator, t, &telemetry, &batch)?;
        publisher.publish(&store, ACK_WAIT)?;
        consumer::commit(&consumer, &offsets);
    }
    publisher.publish(&store, SHUTDOWN_ACK_WAIT)?;
    tracing::info!("ontrack edfi stopped");
    Ok(())
}

/// Translates one batch and commits memory, offsets and events together; returns the next
/// offset of each partition read.
fn translate_batch(
    store: &Store,
    translator: &Translator,
    topics: &Topics,
    telemetry: &Telemetry,
    batch: &[rdkafka::message::OwnedMessage],
) -> anyhow::Result<Vec<(String, i32, i64)>> {
    let mut memory = StoreMemory::new(store);
    let mut records = Vec::new();
    let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for m in batch {
        let t = translator.translate(&mut memory, m.key(), m.payload())?;
        let kinds = t.events.iter().map(|e| e.kind);
        telemetry.edfi_message(t.resource.map(|r| r.name()), t.outcome.label(), kinds);
        if let Outcome::Rejected(why) = &t.outcome {
            records.push(dead_letter_record(&topics.dead_letter, &InputMessage::from(m), why));
            tracing::debug!(
                topic = m.topic(),
                partition = m.partition(),
                offset = m.offset(),
                "ed-fi message rejected: sent to the dead-letter topic"
            );
        }
        for e in t.events {
            records.push(OutboxRecord {
                topic: topics.input_of(e.kind).to_owned(),
                key: Some(e.key.into_bytes()),
                payload: e.json.into_bytes(),
                headers: Vec::new(),
            });
        }
        next.insert((m.topic().to_owned(), m.partition()), m.offset() + 1);
    }
    let mut b = store.batch();
    memory.write(&mut b);
    for r in &records {
        OUTBOX.push(&mut b, r)?;
    }
    for ((topic, partition), offset) in &next {
        OFFSETS.put(&mut b, &(topic.as_str(), *partition), offset);
    }
    store.commit(b)?;
    Ok(next.into_iter().map(|((t, p), o)| (t, p, o)).collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    /// A little district's change feed: attendance with re-codes and two categories on a day,
    /// a grade before its course, the course, a delete.
    fn messages() -> Vec<(String, Option<Vec<u8>>)> {
        let v1 = |uuid: &str, resource: &str, version: i64, document: Value| {
            let m = json!({
                "contractVersion": 1, "documentUuid": uuid, "projectName": "Ed-Fi",
                "resourceName": resource, "resourceVersion": "5.2.0", "contentVersion": version,
                "lastModifiedAt": "2021-10-01T13:00:00Z", "document": document
            });
            (uuid.to_owned(), Some(m.to_string().into_bytes()))
        };
        let day = |student: &str, date: &str, category: &str| {
            json!({
                "studentReference": {"studentUniqueId": student},
                "schoolReference": {"schoolId": 1},
                "eventDate": date,
                "attendanceEventCategoryDescriptor":
                    format!("uri://ed-fi.org/AttendanceEventCategoryDescriptor#{category}")
            })
        };
        let grade = json!({
            "gradeTypeDescriptor": "uri://ed-fi.org/GradeTypeDescriptor#Grading Period",
            "gradingPeriodReference": {"gradingPeriodDescriptor": "uri://ed-fi.org/GradingPeriodDescriptor#First Six Weeks", "schoolId": 1, "schoolYear": 2022},
            "studentSectionAssociationReference": {"beginDate": "2021-08-23", "localCourseCode": "ALG-1", "schoolId": 1, "schoolYear": 2022, "sectionIdentifier": "S", "sessionName": "Fall", "studentUniqueId": "s1"},
            "letterGradeEarned": "F"
        });
        let course = json!({
            "courseCode": "ALG-1", "educationOrganizationReference": {"educationOrganizationId": 1},
            "academicSubjects": [{"academicSubjectDescriptor": "uri://ed-fi.org/AcademicSubjectDescriptor#Mathematics"}]
        });
        vec![
            v1("a1", "StudentSchoolAttendanceEvent", 1, day("s1", "2021-09-08", "Tardy")),
            v1(
                "a2",
                "StudentSchoolAttendanceEvent",
                1,
                day("s1", "2021-09-08", "Unexcused Absence"),
            ),
            v1("g1", "Grade", 1, grade),
            ("a2".into(), None),
            v1("a3", "StudentSchoolAttendanceEvent", 1, day("s1", "2021-09-08", "Excused Absence")),
            v1("c1", "Course", 1, course),
            v1("a4", "StudentSchoolAttendanceEvent", 1, day("s2", "2021-09-09", "Excused Absence")),
            v1("a4", "StudentSchoolAttendanceEvent", 2, day("s2", "2021-09-10", "Excused Absence")),
            ("a1".into(), None),
            ("g1".into(), None),
        ]
    }

    /// The store-backed memory, committed at any batch boundaries, gives the events of the
    /// in-memory one: what a restart reads back is what the batch wrote.
    #[test]
    fn the_stored_memory_across_batches_gives_the_events_of_one_pass_in_memory() {
        let translator = Translator::default();
        let messages = messages();
        let mut memory = Memories::default();
        let expected: Vec<String> = messages
            .iter()
            .flat_map(|(k, v)| {
                let t = translator.translate(&mut memory, Some(k.as_bytes()), v.as_deref());
                t.unwrap().events.into_iter().map(|e| e.json)
            })
            .collect();
        assert_eq!(expected.len(), 10, "{expected:#?}");
        for batch_size in [1, 2, 3, 7] {
            let dir = tempfile::tempdir().unwrap();
            let mut got = Vec::new();
            for chunk in messages.chunks(batch_size) {
                // A store opened afresh per batch: nothing but the store carries over.
                let store = Store::open(dir.path()).unwrap();
                let mut memory = StoreMemory::new(&store);
                for (k, v) in chunk {
                    let t = translator.translate(&mut memory, Some(k.as_bytes()), v.as_deref());
                    got.extend(t.unwrap().events.into_iter().map(|e| e.json));
                }
                let mut b = store.batch();
                memory.write(&mut b);
                store.commit(b).unwrap();
            }
            assert_eq!(got, expected, "batches of {batch_size}");
        }
    }

    #[test]
    fn an_export_translates_line_by_line_and_bad_lines_are_reported() {
        let mut input = String::new();
        for (k, v) in messages() {
            let value: Value = v.map_or(Value::Null, |v| serde_json::from_slice(&v).unwrap());
            input.push_str(&json!({"key": k, "value": value}).to_string());
            input.push('\n');
        }
        input.push_str("{\"key\": \"x\"}\n\nnot json\n");
        let (mut out, mut rejected) = (Vec::new(), Vec::new());
        let summary =
            translate_file(input.as_bytes(), &mut out, &mut rejected, &Translator::default())
                .unwrap();
        assert_eq!(summary.messages, 12);
        assert_eq!(summary.events, 10);
        assert_eq!(String::from_utf8(out).unwrap().lines().count(), 10);
        let rejected = String::from_utf8(rejected).unwrap();
        let lines: Vec<Value> =
            rejected.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["line"], 11);
        assert_eq!(lines[0]["reason"], "value: missing (null for a delete)");
        assert_eq!(lines[1]["line"], 13);
        assert_eq!(summary.outcomes[&("StudentSchoolAttendanceEvent".to_owned(), "translated")], 7);
    }
}

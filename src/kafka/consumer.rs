//! The input consumer: its settings, and a thin rdkafka context that turns librdkafka's
//! statistics into the lag metrics and hands rebalances to the service's [`Rebalance`] hook.
//!
//! Rebalance callbacks run inside `poll`, on the loop's thread: the hook positions newly assigned
//! partitions at the offsets the store has, and persists the in-flight batch before partitions
//! go (as rust-rdkafka's `at_least_once` example does). An error inside a callback cannot be
//! returned through `poll`: the context keeps it for the loop to stop with.

use std::sync::{Arc, Mutex, PoisonError};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};

use super::KafkaConfig;
use crate::telemetry::Telemetry;

/// How long librdkafka waits to fetch a partition again once its local queue was full (ms).
const FETCH_QUEUE_BACKOFF_MS: &str = "10";
const QUEUED_MIN_MESSAGES: &str = "5000";
const QUEUED_MAX_KBYTES: &str = "2048";
const MAX_PARTITION_FETCH_BYTES: &str = "262144";

/// The consumer's settings: the group, offsets stored by ontrack (never automatically), the
/// range assignor (co-partitioning) and statistics for the lag metrics.
pub fn consumer_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut c = super::client_config(kafka, "consumer");
    c.set("group.id", &kafka.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        // Range gives partition i of every input topic to the same member: co-partitioning.
        .set("partition.assignment.strategy", "range")
        .set("session.timeout.ms", kafka.session_timeout_ms.to_string())
        // Consumer lag per partition for /metrics and /readyz, and the high watermarks the
        // time order across topics waits on.
        .set("statistics.interval.ms", "1000")
        // A partition whose local queue was full is fetched again after this long (librdkafka's
        // default, 1 s, left the time order waiting 130–470 ms for a partition drained by a
        // large batch while the loop waited for the batch before it).
        .set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS)
        // The local queue's thresholds (librdkafka's defaults: 100,000 messages, 65,536
        // kbytes) and the bytes a fetch takes of a partition (1 MiB). A group consumer's
        // partitions forward to its one queue, so the thresholds bound that queue, and its
        // messages reach the loop in fetch order: a live record waited there behind a
        // backlog's (BENCHMARKS.md, issue 15 step 9). The time order pauses a partition at
        // 10,000 buffered anyway.
        .set("queued.min.messages", QUEUED_MIN_MESSAGES)
        .set("queued.max.messages.kbytes", QUEUED_MAX_KBYTES)
        .set("max.partition.fetch.bytes", MAX_PARTITION_FETCH_BYTES);
    if !kafka.group_instance_id.is_empty() {
        c.set("group.instance.id", &kafka.group_instance_id);
    }
    super::with_overrides(c, kafka)
}

/// The settings of a consumer assigned every partition of its topic, outside the group, offsets
/// stored by ontrack: `role` `calendar` (every instance reads the whole calendar) or `edfi` (the
/// translator reads the whole DMS topic).
pub fn global_consumer_config(kafka: &KafkaConfig, role: &str) -> ClientConfig {
    let mut c = super::client_config(kafka, role);
    // librdkafka wants a group for assign(); it is never joined (only the translator commits
    // to it, for lag tools).
    c.set("group.id", format!("{}.{role}", kafka.group_id))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("statistics.interval.ms", "1000");
    super::with_overrides(c, kafka)
}

/// What the service does when the group moves partitions.
pub trait Rebalance: Send + Sync {
    /// Where to resume reading a newly assigned partition (`None`: from its beginning).
    fn resume_at(&self, topic: &str, partition: i32) -> Result<Option<i64>, String>;
    /// Partitions are about to go: persist everything read from them. Returns the next offset of
    /// each partition read, to commit to Kafka (for lag monitoring).
    fn revoking(&self) -> Result<Vec<(String, i32, i64)>, String>;
    /// The partitions just assigned (after [`Rebalance::resume_at`] for each).
    fn assigned(&self, partitions: &[(String, i32)]);
    /// The assignment was dropped after a rebalance error: forget what was read and not
    /// persisted (it is read again from the stored offsets).
    fn lost(&self);
}

/// The consumer's context.
pub struct Context<R> {
    telemetry: Arc<Telemetry>,
    hook: R,
    /// An error inside a callback, for the loop to stop with.
    fatal: Mutex<Option<String>>,
    /// `(topic, partition, high watermark)` from the latest statistics, not taken yet.
    watermarks: Mutex<Vec<(String, i32, i64)>>,
}

impl<R> std::fmt::Debug for Context<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").finish_non_exhaustive()
    }
}

impl<R: Rebalance> Context<R> {
    pub fn new(telemetry: Arc<Telemetry>, hook: R) -> Context<R> {
        Context { telemetry, hook, fatal: Mutex::new(None), watermarks: Mutex::default() }
    }

    /// The high watermarks the statistics reported since the last call.
    pub fn take_watermarks(&self) -> Vec<(String, i32, i64)> {
        std::mem::take(&mut *self.watermarks.lock().unwrap_or_else(PoisonError::into_inner))
    }

    pub fn hook(&self) -> &R {
        &self.hook
    }

    /// The error a callback met, if any (taken: reported once).
    pub fn take_fatal(&self) -> Option<String> {
        self.fatal.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    fn fail(&self, message: String) {
        tracing::error!("{message}");
        *self.fatal.lock().unwrap_or_else(PoisonError::into_inner) = Some(message);
    }

    fn assign(
        &self,
        consumer: &BaseConsumer<Self>,
        tpl: &TopicPartitionList,
    ) -> Result<(), String> {
        let mut assignment = TopicPartitionList::new();
        for e in tpl.elements() {
            let offset = match self.hook.resume_at(e.topic(), e.partition())? {
                Some(next) => Offset::Offset(next),
                None => Offset::Beginning,
            };
            (assignment.add_partition_offset(e.topic(), e.partition(), offset))
                .map_err(|err| format!("kafka: {err}"))?;
        }
        let resume: Vec<String> = (assignment.elements().iter())
            .map(|e| format!("{}/{}@{:?}", e.topic(), e.partition(), e.offset()))
            .collect();
        self.telemetry.partitions_assigned(&resume);
        consumer
            .assign(&assignment)
            .map_err(|err| format!("kafka: cannot take the assigned partitions: {err}"))?;
        // A partition paused before a rebalance (its buffer was full) starts afresh.
        if let Err(err) = consumer.resume(&assignment) {
            tracing::debug!(error = %err, "kafka: resume after assignment failed");
        }
        let partitions: Vec<(String, i32)> =
            tpl.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect();
        self.hook.assigned(&partitions);
        Ok(())
    }
}

impl<R: Rebalance> ClientContext for Context<R> {
    /// librdkafka's statistics (every 5 s): the consumer lag of each assigned partition.
    fn stats(&self, statistics: rdkafka::Statistics) {
        let mut lags = Vec::new();
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                // -1: the internal "unassigned" partition; a negative lag: not known yet.
                if *partition >= 0 && p.consumer_lag >= 0 {
                    lags.push((topic.clone(), *partition, p.consumer_lag));
                }
            }
        }
        self.telemetry.lag(&lags);
        *self.watermarks.lock().unwrap_or_else(PoisonError::into_inner) =
            high_watermarks(&statistics);
    }
}

impl<R: Rebalance> ConsumerContext for Context<R> {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                if let Err(message) = self.assign(consumer, tpl) {
                    self.fail(message);
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                // Finish and persist the in-flight batch before letting the partitions go.
                match self.hook.revoking() {
                    Ok(offsets) => commit(consumer, &offsets),
                    Err(message) => self.fail(message),
                }
                self.telemetry.partitions_revoked(tpl.count());
                if let Err(err) = consumer.unassign() {
                    tracing::warn!(error = %err, "kafka: unassign failed");
                }
            }
            other => {
                tracing::warn!(error = ?other, "kafka: rebalance error; dropping the assignment");
                self.hook.lost();
                let _ = consumer.unassign();
            }
        }
    }
}

/// Commits `(topic, partition, next offset)` to Kafka, for lag monitoring only (the store has the
/// offsets ontrack resumes from), without waiting.
pub fn commit<C: ConsumerContext>(consumer: &BaseConsumer<C>, offsets: &[(String, i32, i64)]) {
    if offsets.is_empty() {
        return;
    }
    let mut list = TopicPartitionList::new();
    for (topic, partition, next) in offsets {
        if let Err(e) = list.add_partition_offset(topic, *partition, Offset::Offset(*next)) {
            tracing::debug!(error = %e, "kafka offset commit skipped");
            return;
        }
    }
    if let Err(e) = consumer.commit(&list, CommitMode::Async) {
        tracing::debug!(error = %e, "kafka offset commit failed (the store has the offsets)");
    }
}

/// The calendar consumer's context: only the high watermarks its statistics report (its lag is
/// not the group's, which the metrics show).
#[derive(Debug, Default)]
pub struct GlobalContext {
    watermarks: Mutex<Vec<(String, i32, i64)>>,
}

impl GlobalContext {
    /// The high watermarks the statistics reported since the last call.
    pub fn take_watermarks(&self) -> Vec<(String, i32, i64)> {
        std::mem::take(&mut *self.watermarks.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl ClientContext for GlobalContext {
    fn stats(&self, statistics: rdkafka::Statistics) {
        *self.watermarks.lock().unwrap_or_else(PoisonError::into_inner) =
            high_watermarks(&statistics);
    }
}

impl ConsumerContext for GlobalContext {}

/// `(topic, partition, high watermark)` of every partition the statistics know one of: what a
/// read_committed consumer can reach, the last stable offset (the high watermark without it).
fn high_watermarks(statistics: &rdkafka::Statistics) -> Vec<(String, i32, i64)> {
    let mut highs = Vec::new();
    for (topic, t) in &statistics.topics {
        for (partition, p) in &t.partitions {
            let high = if p.ls_offset >= 0 { p.ls_offset } else { p.hi_offset };
            // -1: the internal "unassigned" partition.
            if *partition >= 0 && high >= 0 {
                highs.push((topic.clone(), *partition, high));
            }
        }
    }
    highs
}

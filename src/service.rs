//! `ontrack run`: consume the SIS topics, fold each batch into the store in one atomic commit,
//! then publish the outbox (flags and dead letters) and commit the offsets to Kafka.
//!
//! The store, not Kafka, is the source of truth for where to resume: on assignment every
//! partition is positioned at the offset stored with the state it produced (or at the earliest
//! offset when the store has none), so a crash at any moment loses and repeats nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::clock::Clock;
use crate::config::{BatchConfig, Config};
use crate::core::Rules;
use crate::http::AdminServer;
use crate::kafka::publisher::Publisher;
use crate::notify::Notifications;
use crate::notify::outbox::Signal;
use crate::pipeline::{InputMessage, Pipeline};
use crate::store::Store;
use crate::telemetry::Telemetry;
use anyhow::Context as _;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

/// How long start-up waits for the acknowledgements of a previous run's outbox.
const ACK_WAIT: Duration = Duration::from_millis(500);
/// While records are in flight the loop polls at least this often, serving their
/// acknowledgements (a batch does not wait for its own: that kept the loop idle ~100 ms a batch).
const ACK_POLL: Duration = Duration::from_millis(5);
/// How often the store's queue depths and size are measured.
const GAUGE_INTERVAL: Duration = Duration::from_secs(5);
/// How long shutdown waits for the last acknowledgements (the whole shutdown stays under 10 s).
const SHUTDOWN_ACK_WAIT: Duration = Duration::from_secs(5);

/// Runs until `shutdown` is set (SIGTERM/SIGINT), then persists, publishes and returns.
pub fn run(config: &Config, rules: Rules, shutdown: &AtomicBool) -> anyhow::Result<()> {
    run_with_clock(config, rules, shutdown, config.clock())
}

/// [`run`] on a given clock (the demo moves it from school day to school day).
pub fn run_with_clock(
    config: &Config,
    rules: Rules,
    shutdown: &AtomicBool,
    clock: Clock,
) -> anyhow::Result<()> {
    let telemetry = Arc::new(Telemetry::new());
    // Up first, so that /healthz answers while Kafka is still being reached.
    let admin = match config.admin.addr.as_str() {
        "" => None,
        addr => Some(
            AdminServer::start(
                addr,
                crate::http::router(telemetry.clone(), config.admin.ready_max_lag),
            )
            .map_err(anyhow::Error::msg)?,
        ),
    };
    let result = serve(config, rules, shutdown, telemetry, clock);
    if let Some(admin) = admin {
        admin.stop();
    }
    result
}

fn serve(
    config: &Config,
    rules: Rules,
    shutdown: &AtomicBool,
    telemetry: Arc<Telemetry>,
    clock: Clock,
) -> anyhow::Result<()> {
    let partitions = crate::kafka::admin::ensure_topics(config)?;
    let store = Store::open_with(&config.data_dir, &config.store).with_context(|| {
        format!("data_dir {}: cannot open the store", config.data_dir.display())
    })?;
    let publisher = Publisher::new(&config.kafka, telemetry.clone())
        .context("kafka: cannot create the producer")?;
    let notifications =
        Notifications::start(&config.notify, store.clone(), clock.clone(), telemetry.clone())
            .map_err(anyhow::Error::msg)?;
    for (flag, school, count) in store.raised_counts()? {
        telemetry.flags_raised(&flag, &school, count);
    }
    let mut pipeline = Pipeline::new(store, rules, config.topics.clone())
        .with_telemetry(telemetry.clone())
        .with_cache_mib(config.batch.state_cache_mib);
    match &notifications {
        Some(n) => pipeline = pipeline.with_notifications(n.planner.clone()),
        None => tracing::info!(
            "notifications off: no channel configured (notify.webhook.secret or notify.email.smtp_host)"
        ),
    }
    let worker = Worker {
        pipeline,
        telemetry: telemetry.clone(),
        ready_max_lag: config.admin.ready_max_lag,
        clock,
        wake: notifications.as_ref().map(|n| n.signal.clone()),
        publisher,
        batch: config.batch.clone(),
        inflight: Mutex::new(Inflight::default()),
        fatal: Mutex::new(None),
    };
    let consumer: BaseConsumer<Worker> = consumer_config(config)
        .create_with_context(worker)
        .context("kafka: cannot create the consumer")?;
    let t = &config.topics;
    consumer
        .subscribe(&[&t.attendance, &t.discipline, &t.grades, &t.assignments])
        .context("kafka: cannot subscribe to the input topics")?;
    tracing::info!(brokers = %config.kafka.brokers, partitions, "ontrack running");

    let worker = consumer.context();
    // Whatever a previous run committed but did not get acknowledged goes out first.
    worker.publisher.publish(worker.pipeline.store(), ACK_WAIT)?;
    telemetry.state_loaded();
    let mut errors = ErrorLog::default();
    let mut gauges_at = Instant::now();
    while !shutdown.load(Ordering::Relaxed) {
        if gauges_at.elapsed() >= GAUGE_INTERVAL {
            worker.update_gauges()?;
            gauges_at = Instant::now();
        }
        if let Some(fatal) = worker.fatal.lock().unwrap_or_else(PoisonError::into_inner).take() {
            anyhow::bail!(fatal);
        }
        match consumer.poll(worker.poll_timeout()) {
            Some(Ok(message)) => worker.push(message.detach()),
            Some(Err(e)) => {
                // librdkafka reconnects by itself with its own backoff (reconnect.backoff.ms,
                // 100 ms growing to 5 s) and reports each failed attempt here. Sleeping long on
                // each report would only pile them up; a short pause bounds the loop's rate.
                errors.report(&e);
                std::thread::sleep(Duration::from_millis(10));
            }
            None => {}
        }
        if worker.due() {
            worker.flush(&consumer)?;
        } else if worker.publisher.in_flight() > 0 {
            worker.publisher.serve(worker.pipeline.store())?;
        }
    }
    tracing::info!("shutting down: persisting the current batch");
    worker.flush(&consumer)?;
    let store = worker.pipeline.store();
    worker.publisher.publish(store, SHUTDOWN_ACK_WAIT)?;
    if store.pending().next().is_some() {
        tracing::warn!(
            "some outbox records are not acknowledged yet; they go out on the next start"
        );
    }
    if let Some(n) = notifications {
        n.stop().context("notification delivery")?;
    }
    tracing::info!("stopped");
    Ok(())
}

fn consumer_config(config: &Config) -> rdkafka::ClientConfig {
    let kafka = &config.kafka;
    let mut c = crate::kafka::client_config(kafka, "consumer");
    c.set("group.id", &kafka.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        // Range gives partition i of every input topic to the same member: co-partitioning.
        .set("partition.assignment.strategy", "range")
        .set("session.timeout.ms", kafka.session_timeout_ms.to_string())
        // Consumer lag per partition for /metrics and /readyz.
        .set("statistics.interval.ms", "5000");
    if !kafka.group_instance_id.is_empty() {
        c.set("group.instance.id", &kafka.group_instance_id);
    }
    crate::kafka::with_overrides(c, kafka)
}

/// Messages read but not yet committed to the store.
#[derive(Debug, Default)]
struct Inflight {
    messages: Vec<OwnedMessage>,
    since: Option<Instant>,
}

/// The consumer's context: the pipeline, the publisher and the current batch. Rebalance
/// callbacks run inside `poll`, on the same thread as the loop.
struct Worker {
    pipeline: Pipeline,
    telemetry: Arc<Telemetry>,
    ready_max_lag: i64,
    clock: Clock,
    /// Wakes the notification delivery task after a batch queued notifications.
    wake: Option<std::sync::Arc<Signal>>,
    publisher: Publisher,
    batch: BatchConfig,
    inflight: Mutex<Inflight>,
    /// An error inside a callback, for the loop to stop with.
    fatal: Mutex<Option<String>>,
}

impl Worker {
    fn inflight(&self) -> std::sync::MutexGuard<'_, Inflight> {
        self.inflight.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, message: OwnedMessage) {
        let mut inflight = self.inflight();
        inflight.since.get_or_insert_with(Instant::now);
        inflight.messages.push(message);
    }

    fn max_wait(&self) -> Duration {
        Duration::from_millis(self.batch.max_wait_ms)
    }

    /// Poll no longer than the current batch may still wait, nor than [`ACK_POLL`] while
    /// published records wait for their acknowledgements.
    fn poll_timeout(&self) -> Duration {
        let wait = self.max_wait().max(Duration::from_millis(1));
        let timeout = match self.inflight().since {
            Some(since) => wait.saturating_sub(since.elapsed()),
            None => wait.max(Duration::from_millis(100)),
        };
        if self.publisher.in_flight() > 0 { timeout.min(ACK_POLL) } else { timeout }
    }

    fn due(&self) -> bool {
        let inflight = self.inflight();
        inflight.messages.len() >= self.batch.max_events
            || inflight.since.is_some_and(|s| s.elapsed() >= self.max_wait())
    }

    /// Commits the current batch to the store, publishes what it produced, and commits its
    /// offsets to Kafka (for lag monitoring; the store's offsets are the ones resumed from).
    fn flush(&self, consumer: &BaseConsumer<Worker>) -> anyhow::Result<()> {
        let messages = std::mem::take(&mut *self.inflight()).messages;
        if messages.is_empty() {
            return Ok(());
        }
        let inputs: Vec<InputMessage<'_>> = messages
            .iter()
            .map(|m| InputMessage {
                topic: m.topic(),
                partition: m.partition(),
                offset: m.offset(),
                key: m.key(),
                payload: m.payload(),
                timestamp_ms: m.timestamp().to_millis(),
            })
            .collect();
        // (first, last) offset read of each partition in the batch.
        let mut ranges: std::collections::BTreeMap<(&str, i32), (i64, i64)> = Default::default();
        for m in &inputs {
            let r = ranges.entry((m.topic, m.partition)).or_insert((m.offset, m.offset));
            *r = (r.0.min(m.offset), r.1.max(m.offset));
        }
        let offsets: Vec<String> =
            ranges.iter().map(|((t, p), (a, b))| format!("{t}/{p}:{a}-{b}")).collect();
        let span =
            tracing::info_span!("batch", messages = inputs.len(), offsets = %offsets.join(" "));
        let _in_batch = span.enter();
        let outcome = self.pipeline.process(&inputs, self.clock.now_utc())?;
        if outcome.notifications > 0
            && let Some(wake) = &self.wake
        {
            wake.wake();
        }
        tracing::debug!(
            messages = inputs.len(),
            events = outcome.events,
            rejected = outcome.rejected,
            flags = outcome.flags.len(),
            notifications = outcome.notifications,
            "batch committed"
        );
        // Sent, not awaited: acknowledgements are served by the loop while it reads on.
        self.publisher.publish(self.pipeline.store(), Duration::ZERO)?;
        let mut offsets = TopicPartitionList::new();
        for ((topic, partition), (_, last)) in ranges {
            offsets.add_partition_offset(topic, partition, Offset::Offset(last + 1))?;
        }
        if let Err(e) = consumer.commit(&offsets, CommitMode::Async) {
            tracing::debug!(error = %e, "kafka offset commit failed (the store has the offsets)");
        }
        Ok(())
    }

    /// Queue depths, the oldest waiting notification and the store's size, for /metrics.
    fn update_gauges(&self) -> anyhow::Result<()> {
        let store = self.pipeline.store();
        let q = store.queue_depths()?;
        let now_ms = self.clock.now_ms();
        let t = &self.telemetry;
        t.queue("kafka", q.kafka, 0);
        let oldest_s = q.oldest_notification_ms.map_or(0, |ms| (now_ms - ms) / 1000);
        t.queue("notifications", q.notifications, oldest_s);
        t.queue("digest", q.digest, 0);
        t.queue("failed", q.failed, 0);
        t.store_size(store.size_on_disk()?);
        t.update_ready(self.ready_max_lag);
        Ok(())
    }

    fn fail(&self, message: String) {
        tracing::error!("{message}");
        *self.fatal.lock().unwrap_or_else(PoisonError::into_inner) = Some(message);
    }
}

impl ClientContext for Worker {
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
    }
}

impl ConsumerContext for Worker {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                // Resume each partition where the store says, or from the beginning.
                let mut assignment = TopicPartitionList::new();
                for e in tpl.elements() {
                    let offset = match self.pipeline.store().next_offset(e.topic(), e.partition()) {
                        Ok(Some(next)) => Offset::Offset(next),
                        Ok(None) => Offset::Beginning,
                        Err(err) => return self.fail(err.to_string()),
                    };
                    if let Err(err) =
                        assignment.add_partition_offset(e.topic(), e.partition(), offset)
                    {
                        return self.fail(format!("kafka: {err}"));
                    }
                }
                let resume: Vec<String> = assignment
                    .elements()
                    .iter()
                    .map(|e| format!("{}/{}@{:?}", e.topic(), e.partition(), e.offset()))
                    .collect();
                tracing::info!(partitions = assignment.count(), resume = ?resume, "partitions assigned");
                self.telemetry.partitions_assigned(assignment.count());
                if let Err(err) = consumer.assign(&assignment) {
                    self.fail(format!("kafka: cannot take the assigned partitions: {err}"));
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                // Finish and persist the in-flight batch before letting the partitions go.
                if let Err(err) = self.flush(consumer) {
                    self.fail(format!("{err:#}"));
                }
                // Another instance may change these students' states before they come back.
                self.pipeline.forget_cached();
                tracing::info!(partitions = tpl.count(), "partitions revoked");
                self.telemetry.partitions_assigned(0);
                if let Err(err) = consumer.unassign() {
                    tracing::warn!(error = %err, "kafka: unassign failed");
                }
            }
            other => {
                tracing::warn!(error = ?other, "kafka: rebalance error; dropping the assignment");
                self.inflight().messages.clear();
                let _ = consumer.unassign();
            }
        }
    }
}

/// Logs consume errors at most once every 10 s, with how many there were.
#[derive(Debug, Default)]
struct ErrorLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl ErrorLog {
    fn report(&mut self, e: &rdkafka::error::KafkaError) {
        if self.last.is_some_and(|t| t.elapsed() < Duration::from_secs(10)) {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(error = %e, since_last = self.suppressed, "kafka: consume error (the client reconnects by itself)");
        self.last = Some(Instant::now());
        self.suppressed = 0;
    }
}

//! `ontrack run`: consume the SIS topics, fold each batch into the store in one atomic commit,
//! then publish the outbox (flags and dead letters) and commit the offsets to Kafka.
//!
//! The store, not Kafka, is the source of truth for where to resume: on assignment every
//! partition is positioned at the offset stored with the state it produced (or at the earliest
//! offset when the store has none), so a crash at any moment loses and repeats nothing.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};

use crate::clock::Clock;
use crate::config::{BatchConfig, Config};
use crate::core::Rules;
use crate::http::AdminServer;
use crate::kafka::consumer::{self, Context, GlobalContext, Rebalance};
use crate::kafka::merge::{Merge, Next};
use crate::kafka::publisher::Publisher;
use crate::notify::Notifications;
use crate::pipeline::{BatchSize, InputMessage, Pipeline};
use crate::shutdown::Shutdown;
use crate::store::Store;
use crate::telemetry::Telemetry;

/// How long start-up waits for the acknowledgements of a previous run's outbox.
const ACK_WAIT: Duration = Duration::from_millis(500);
/// While records are in flight the loop polls at least this often, serving their
/// acknowledgements (a batch does not wait for its own: that kept the loop idle ~100 ms a batch).
const ACK_POLL: Duration = Duration::from_millis(5);
/// How often the store's queue depths and size are measured.
const GAUGE_INTERVAL: Duration = Duration::from_secs(5);
/// How long shutdown waits for the last acknowledgements (the whole shutdown stays under 10 s).
const SHUTDOWN_ACK_WAIT: Duration = Duration::from_secs(5);
/// How long the time order across topics waits for a partition that is behind before it goes
/// on without it (Kafka Streams' `max.task.idle.ms`): longer than a fetch takes, short enough
/// that a broker away does not stop the others.
const MAX_IDLE: Duration = Duration::from_secs(2);
/// How long a watermark query may take.
const WATERMARK_TIMEOUT: Duration = Duration::from_secs(2);
/// While a batch is being committed, the loop polls at least this often (to publish it soon).
const BATCH_POLL: Duration = Duration::from_millis(2);

/// Messages read in one turn of the loop when they are ready (one clock reading, merge and
/// flow check for all of them); many, so that live records behind a backlog's in librdkafka's
/// queue reach the time order soon (500 left them there for hundreds of milliseconds).
const POLL_BURST: usize = 20_000;

/// The most messages of a batch while live records come (a record of a caught-up partition group
/// in the last [`LIVE_WINDOW`]), so that while other groups catch up a backlog a live record
/// waits for batches of a few milliseconds, not for the backlog's large ones (measured with
/// 2,500, 1,000, 500, 250: p99 271, 149, 102, 148 ms, one run each; BENCHMARKS.md, issue 15
/// step 9).
const LIVE_BATCH: usize = 500;
const LIVE_WINDOW: Duration = Duration::from_secs(1);

/// How often the loop checks, while idle, whether a partition group has caught up (see
/// `Worker::due`).
const TICK_EVERY: Duration = Duration::from_secs(1);

/// While messages wait in the time order, the loop polls at least this often.
const MERGE_POLL: Duration = Duration::from_millis(5);

/// Runs until `shutdown` is triggered (SIGTERM/SIGINT), then persists, publishes and returns.
pub fn run(config: &Config, rules: Rules, shutdown: &Shutdown) -> anyhow::Result<()> {
    run_with_clock(config, rules, shutdown, config.clock())
}

/// [`run`] on a given clock (the demo moves it from school day to school day).
pub fn run_with_clock(
    config: &Config,
    rules: Rules,
    shutdown: &Shutdown,
    clock: Clock,
) -> anyhow::Result<()> {
    let telemetry = Arc::new(Telemetry::for_inputs(&config.topics.all_inputs()));
    // The admin server stops once the loop has persisted its last batch and delivery stopped.
    let router = || crate::http::router(telemetry.clone(), config.admin.ready_max_lag);
    let work = || serve(config, rules, shutdown, telemetry.clone(), clock);
    AdminServer::around("admin.addr", &config.admin.addr, router, work)?
}

fn serve(
    config: &Config,
    rules: Rules,
    shutdown: &Shutdown,
    telemetry: Arc<Telemetry>,
    clock: Clock,
) -> anyhow::Result<()> {
    let t = &config.topics;
    let others = [t.calendar.as_str(), &t.flags, &t.dead_letter];
    let partitions = crate::kafka::admin::ensure_topics(&config.kafka, &t.inputs(), &others)?;
    let store = Store::open_with(&config.data_dir, &config.store).with_context(|| {
        format!("data_dir {}: cannot open the store", config.data_dir.display())
    })?;
    let publisher = Publisher::new(&config.kafka, telemetry.clone())
        .context("kafka: cannot create the producer")?;
    // Stopped (and waited for) once the loop has persisted its last batch, before the admin
    // server.
    let notifications =
        Notifications::start(&config.notify, store.clone(), clock.clone(), telemetry.clone())?;
    for (flag, school, count) in crate::pipeline::raised_counts(&store)? {
        telemetry.flags_raised(&flag, &school, count);
    }
    let mut pipeline = Pipeline::new(store, rules, config.topics.clone())
        .with_telemetry(telemetry.clone())
        .with_cache_mib(config.batch.state_cache_mib)
        .with_packed_cache_mib(config.batch.packed_cache_mib)
        .with_workers(config.batch.workers);
    match &notifications {
        Some(n) => pipeline = pipeline.with_notifications(n.planner.clone()),
        None => tracing::info!(
            "notifications off: no channel configured (notify.webhook.secret or notify.email.smtp_host)"
        ),
    }
    let pipeline = Arc::new(pipeline);
    let worker = Worker {
        batches: Batches::start(pipeline.clone(), clock.clone())?,
        pipeline,
        publisher,
        batch: config.batch.clone(),
        clock,
        wake: notifications.as_ref().map(|n| n.wake.clone()),
        inflight: Mutex::new(Inflight::default()),
        size: Mutex::new(BatchSize::new(config.batch.max_events)),
        merge: Mutex::new(
            Merge::new(t.all_inputs().map(str::to_owned).to_vec(), MAX_IDLE)
                .global(&t.calendar)
                .held(),
        ),
        live_at: Mutex::default(),
        handed: Mutex::new((BTreeSet::new(), Instant::now())),
        group_topics: t.inputs().map(str::to_owned).to_vec(),
        calendar_topic: t.calendar.clone(),
    };
    let consumer: BaseConsumer<Context<Worker>> = consumer::consumer_config(&config.kafka)
        .create_with_context(Context::new(telemetry.clone(), worker))
        .context("kafka: cannot create the consumer")?;
    consumer.subscribe(&t.inputs()).context("kafka: cannot subscribe to the input topics")?;
    tracing::info!(brokers = %config.kafka.brokers, partitions, "ontrack running");

    let context = consumer.context();
    let worker = context.hook();
    let store = worker.pipeline.store();
    let calendar = calendar_consumer(config, worker)?;
    let watermarks = crate::kafka::client_config(&config.kafka, "watermarks");
    let watermarks: BaseConsumer = crate::kafka::with_overrides(watermarks, &config.kafka)
        .create()
        .context("kafka: cannot create the watermark client")?;
    // Whatever a previous run committed but did not get acknowledged goes out first.
    worker.publisher.publish(store, ACK_WAIT)?;
    telemetry.state_loaded();
    let mut errors = ErrorLog::default();
    let mut gauges_at = Instant::now();
    while !shutdown.is_triggered() {
        if gauges_at.elapsed() >= GAUGE_INTERVAL {
            update_gauges(store, &telemetry, &worker.clock, config.admin.ready_max_lag)?;
            gauges_at = Instant::now();
        }
        if let Some(fatal) = context.take_fatal() {
            anyhow::bail!(fatal);
        }
        match consumer.poll(worker.poll_timeout()) {
            Some(Ok(message)) => {
                worker.take(message.detach());
                // What else is ready, without waiting: the rest of the turn (the merge, flow
                // control, the clock) once for many messages, not for each.
                for _ in 1..POLL_BURST {
                    match consumer.poll(Duration::ZERO) {
                        Some(Ok(message)) => worker.take(message.detach()),
                        Some(Err(e)) => {
                            errors.report(&e);
                            break;
                        }
                        None => break,
                    }
                }
            }
            Some(Err(e)) => {
                // librdkafka reconnects by itself with its own backoff (reconnect.backoff.ms,
                // 100 ms growing to 5 s) and reports each failed attempt here. Sleeping long on
                // each report would only pile them up; a short pause bounds the loop's rate.
                errors.report(&e);
                std::thread::sleep(Duration::from_millis(10));
            }
            None => {}
        }
        // The calendar, read whole by every instance, merges into the same time order.
        while let Some(polled) = calendar.poll(Duration::ZERO) {
            match polled {
                Ok(message) => worker.take(message.detach()),
                Err(e) => {
                    errors.report(&e);
                    break;
                }
            }
        }
        let highs = context.take_watermarks().into_iter();
        worker.raise_highs(highs.chain(calendar.context().take_watermarks()));
        worker.release(&watermarks);
        worker.flow(&consumer, &calendar);
        if let Some(offsets) = worker.committed(false)? {
            consumer::commit(&consumer, &offsets);
        }
        if worker.due() {
            consumer::commit(&consumer, &worker.flush()?);
        } else if worker.publisher.in_flight() > 0 {
            worker.publisher.serve(store)?;
        }
    }
    {
        let merge = worker.merge();
        tracing::info!(
            peak_buffered = merge.peak,
            forced = merge.forced,
            "shutting down: persisting the current batch"
        );
    }
    consumer::commit(&consumer, &worker.drain()?);
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

/// The consumer of the whole calendar topic: every partition, from the offsets the store has
/// (its beginning without), outside the consumer group.
fn calendar_consumer(
    config: &Config,
    worker: &Worker,
) -> anyhow::Result<BaseConsumer<GlobalContext>> {
    let topic = &config.topics.calendar;
    let consumer: BaseConsumer<GlobalContext> =
        consumer::global_consumer_config(&config.kafka, "calendar")
            .create_with_context(GlobalContext::default())
            .context("kafka: cannot create the calendar consumer")?;
    let count = crate::kafka::admin::partition_counts(&config.kafka, &[topic])?;
    let count = i32::try_from(count.first().copied().unwrap_or(0)).unwrap_or(0);
    let mut tpl = TopicPartitionList::new();
    let mut merge = worker.merge();
    for partition in 0..count {
        let next = worker.pipeline.store().next_offset(topic, partition)?;
        let offset = next.map_or(Offset::Beginning, Offset::Offset);
        tpl.add_partition_offset(topic, partition, offset)
            .context("kafka: cannot position the calendar consumer")?;
        merge.assign(topic, partition, next);
    }
    if count > 0 {
        consumer.assign(&tpl).context("kafka: cannot read the calendar topic")?;
    }
    tracing::info!(topic = %topic, partitions = count, "reading the whole calendar topic");
    Ok(consumer)
}

/// Queue depths, the oldest waiting notification and the store's size, for /metrics.
fn update_gauges(
    store: &Store,
    telemetry: &Telemetry,
    clock: &Clock,
    ready_max_lag: i64,
) -> anyhow::Result<()> {
    let q = crate::notify::tables::queue_depths(store)?;
    let oldest_s = q.oldest_notification_ms.map_or(0, |ms| (clock.now_ms() - ms) / 1000);
    telemetry.queue("kafka", crate::store::OUTBOX.count(store), 0);
    telemetry.queue("notifications", q.notifications, oldest_s);
    telemetry.queue("digest", q.digest, 0);
    telemetry.queue("failed", q.failed, 0);
    telemetry.store_size(store.size_on_disk()?);
    telemetry.update_ready(ready_max_lag);
    Ok(())
}

/// Messages read but not yet committed to the store.
#[derive(Debug, Default)]
struct Inflight {
    messages: Vec<OwnedMessage>,
    since: Option<Instant>,
}

/// The loop's work: the batch being read, the pipeline that commits it and the publisher that
/// sends what it produced. Shared with the consumer's rebalance callbacks (the same thread).
#[derive(Debug)]
struct Worker {
    pipeline: Arc<Pipeline>,
    /// The batch being committed on the pipeline's own thread (while the loop reads the next).
    batches: Batches,
    publisher: Publisher,
    batch: BatchConfig,
    clock: Clock,
    /// Wakes the notification delivery task after a batch queued notifications.
    wake: Option<Arc<tokio::sync::Notify>>,
    inflight: Mutex<Inflight>,
    /// How many messages the next batch may gather (`batch.max_events`, less for a district
    /// whose batches touch each student about once).
    size: Mutex<BatchSize>,
    /// Messages read, waiting for their turn in time order.
    merge: Mutex<Merge>,
    /// When a batch last took a live record (see [`LIVE_BATCH`]).
    live_at: Mutex<Option<Instant>>,
    /// The partition groups caught up when the last batch was handed over, and when they were
    /// last compared with the merge's.
    handed: Mutex<(BTreeSet<i32>, Instant)>,
    /// The inputs the consumer group shares out.
    group_topics: Vec<String>,
    calendar_topic: String,
}

impl Worker {
    fn inflight(&self) -> std::sync::MutexGuard<'_, Inflight> {
        self.inflight.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn merge(&self) -> std::sync::MutexGuard<'_, Merge> {
        self.merge.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A message read: it waits for its turn in time order.
    fn take(&self, message: OwnedMessage) {
        if !self.merge().push(message) {
            tracing::debug!(
                "a message of a partition no longer assigned was dropped (read again from the stored offset)"
            );
        }
    }

    fn raise_highs(&self, highs: impl Iterator<Item = (String, i32, i64)>) {
        let mut merge = self.merge();
        for (topic, partition, high) in highs {
            merge.raise_high(&topic, partition, high);
        }
    }

    /// Moves the messages whose turn has come into the batch, up to a full batch; asks the
    /// watermarks the time order needs (through `watermarks`, a client of its own: a consumer's
    /// own queries wait behind its fetches).
    fn release(&self, watermarks: &BaseConsumer) {
        let mut merge = self.merge();
        let (now, mut full) = (Instant::now(), self.full());
        while self.inflight().messages.len() < full {
            match merge.next(now) {
                Next::Ready { message, live } => {
                    if live {
                        full = full.min(LIVE_BATCH);
                    }
                    self.push(*message, live, now);
                }
                Next::AskWatermarks(partitions) => {
                    for (topic, partition) in partitions {
                        let asked =
                            watermarks.fetch_watermarks(&topic, partition, WATERMARK_TIMEOUT);
                        match asked {
                            Ok((low, high)) => merge.set_watermarks(&topic, partition, low, high),
                            Err(e) => {
                                tracing::debug!(error = %e, %topic, partition, "kafka: watermark query failed")
                            }
                        }
                    }
                }
                Next::Wait => {
                    tracing::trace!(buffered = merge.buffered(), "time order: waiting");
                    break;
                }
                Next::Empty => break,
            }
        }
    }

    /// Pauses the partitions that buffer too much while others catch up in time (their
    /// messages wait in memory), and resumes them when they are down to half.
    fn flow<C: rdkafka::consumer::ConsumerContext, D: rdkafka::consumer::ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        calendar: &BaseConsumer<D>,
    ) {
        for (topic, partition, pause) in self.merge().flow() {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&topic, partition);
            let done = match (topic == self.calendar_topic, pause) {
                (true, true) => calendar.pause(&tpl),
                (true, false) => calendar.resume(&tpl),
                (false, true) => consumer.pause(&tpl),
                (false, false) => consumer.resume(&tpl),
            };
            if let Err(e) = done {
                tracing::debug!(error = %e, %topic, partition, pause, "kafka: pause/resume failed");
            }
        }
    }

    /// Adds a message to the batch at `now`; `live`: its group has caught up.
    fn push(&self, message: OwnedMessage, live: bool, now: Instant) {
        let mut inflight = self.inflight();
        inflight.since.get_or_insert(now);
        if live {
            *self.live_at.lock().unwrap_or_else(PoisonError::into_inner) = Some(now);
        }
        inflight.messages.push(message);
    }

    /// The group's partitions go: what they buffered is read again from the stored offsets.
    fn drop_group_buffers(&self) {
        let topics: Vec<&str> = self.group_topics.iter().map(String::as_str).collect();
        self.merge().revoke(&topics);
    }

    /// The messages of a full batch now.
    fn full(&self) -> usize {
        let full = self.size.lock().unwrap_or_else(PoisonError::into_inner).next();
        let live_at = *self.live_at.lock().unwrap_or_else(PoisonError::into_inner);
        if live_at.is_some_and(|at| at.elapsed() < LIVE_WINDOW) {
            full.min(LIVE_BATCH)
        } else {
            full
        }
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
        let timeout = if self.merge().buffered() > 0 { timeout.min(MERGE_POLL) } else { timeout };
        // A committed batch is published as soon as the loop sees it, and a batch past its
        // wait goes then: polled every BATCH_POLL meanwhile (at once, the loop would spin).
        let timeout = match (self.batches.running(), timeout.is_zero()) {
            (true, true) => BATCH_POLL,
            (true, false) => timeout.min(BATCH_POLL),
            (false, _) => timeout,
        };
        if self.publisher.in_flight() > 0 { timeout.min(ACK_POLL) } else { timeout }
    }

    /// A full batch is due; one that waited `batch.max_wait_ms` is due once the pipeline is
    /// free: while a batch commits, the next one keeps gathering (up to a full batch), so a
    /// backlog is folded in large batches (a student's state written once for several of its
    /// events) while live records still go within the wait.
    /// An empty batch is due when a partition group has caught up since the last batch (and
    /// no more often than [`TICK_EVERY`]): it takes the latest school day, which nothing else
    /// would hand it until a message comes.
    fn due(&self) -> bool {
        let full = self.full();
        let running = self.batches.running();
        let (messages, since) = {
            let inflight = self.inflight();
            (inflight.messages.len(), inflight.since)
        };
        messages >= full
            || (!running && since.is_some_and(|s| s.elapsed() >= self.max_wait()))
            || (!running && messages == 0 && self.newly_caught_up())
    }

    /// Whether a partition group has caught up since the last batch was handed over (checked
    /// at most every [`TICK_EVERY`]).
    fn newly_caught_up(&self) -> bool {
        let mut handed = self.handed.lock().unwrap_or_else(PoisonError::into_inner);
        if handed.1.elapsed() < TICK_EVERY {
            return false;
        }
        handed.1 = Instant::now();
        let caught_up = self.merge().caught_up_groups();
        caught_up.iter().any(|p| !handed.0.contains(p))
    }

    /// Hands the current batch to the pipeline's thread, once the one before it is committed
    /// (and published); returns that one's next offsets to commit to Kafka (for lag
    /// monitoring; the store's offsets are the ones resumed from).
    fn flush(&self) -> anyhow::Result<Vec<(String, i32, i64)>> {
        let offsets = self.committed(true)?.unwrap_or_default();
        let messages = std::mem::take(&mut *self.inflight()).messages;
        let caught_up = self.merge().caught_up_groups();
        let mut handed = self.handed.lock().unwrap_or_else(PoisonError::into_inner);
        if !messages.is_empty() || caught_up.iter().any(|p| !handed.0.contains(p)) {
            *handed = (caught_up.clone(), Instant::now());
            self.batches.submit(messages, caught_up)?;
        }
        Ok(offsets)
    }

    /// Commits the current batch and waits for it: nothing read is left uncommitted.
    fn drain(&self) -> anyhow::Result<Vec<(String, i32, i64)>> {
        let mut offsets = self.flush()?;
        offsets.extend(self.committed(true)?.unwrap_or_default());
        Ok(offsets)
    }

    /// The batch on the pipeline's thread, if it is committed (`wait`: waits for it): publishes
    /// what it produced and returns its next offsets. `None`: no batch, or not yet committed.
    fn committed(&self, wait: bool) -> anyhow::Result<Option<Vec<(String, i32, i64)>>> {
        let Some(outcome) = self.batches.outcome(wait)? else { return Ok(None) };
        self.size
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .observe(outcome.messages, outcome.students);
        if outcome.notifications > 0
            && let Some(wake) = &self.wake
        {
            wake.notify_one();
        }
        // Sent, not awaited: acknowledgements are served by the loop while it reads on.
        self.publisher.publish(self.pipeline.store(), Duration::ZERO)?;
        Ok(Some(outcome.offsets))
    }
}

/// A batch, with the partition groups caught up once it left the time order.
type Job = (Vec<OwnedMessage>, BTreeSet<i32>);

/// The pipeline's own thread: it commits one batch at a time while the loop reads, merges and
/// gathers the next (the loop and the commit each took most of a core in turn).
#[derive(Debug)]
struct Batches {
    jobs: Mutex<Option<std::sync::mpsc::SyncSender<Job>>>,
    done: Mutex<std::sync::mpsc::Receiver<Result<crate::pipeline::BatchOutcome, String>>>,
    /// A batch was handed over and its outcome not yet taken.
    running: std::sync::atomic::AtomicBool,
    /// Why a batch failed: nothing is handed over after it (a later batch would store offsets
    /// past the failed one's messages, and they would never be read again).
    failed: Mutex<Option<String>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Batches {
    fn start(pipeline: Arc<Pipeline>, clock: Clock) -> anyhow::Result<Batches> {
        let (jobs, batches) = std::sync::mpsc::sync_channel::<Job>(1);
        let (outcomes, done) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("ontrack-batch".into())
            .spawn(move || {
                for (messages, caught_up) in batches {
                    let inputs: Vec<InputMessage<'_>> =
                        messages.iter().map(InputMessage::from).collect();
                    let outcome = pipeline.process_groups(&inputs, clock.now(), Some(&caught_up));
                    if outcomes.send(outcome.map_err(|e| e.to_string())).is_err() {
                        break;
                    }
                }
            })
            .context("cannot start the batch thread")?;
        Ok(Batches {
            jobs: Mutex::new(Some(jobs)),
            done: Mutex::new(done),
            running: Default::default(),
            failed: Mutex::default(),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Hands `messages` over (no batch may be running), with the partition groups caught up
    /// once they left the time order.
    fn submit(&self, messages: Vec<OwnedMessage>, caught_up: BTreeSet<i32>) -> anyhow::Result<()> {
        use std::sync::atomic::Ordering;
        debug_assert!(!self.running.load(Ordering::SeqCst));
        if let Some(why) = &*self.failed.lock().unwrap_or_else(PoisonError::into_inner) {
            anyhow::bail!("a batch failed, so no later one is committed: {why}");
        }
        let jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        let sent = jobs.as_ref().map(|j| j.send((messages, caught_up)));
        anyhow::ensure!(matches!(sent, Some(Ok(()))), "the batch thread has stopped");
        self.running.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// The running batch's outcome once committed (`wait`: waits for it); an error of the
    /// store stops the service.
    fn outcome(&self, wait: bool) -> anyhow::Result<Option<crate::pipeline::BatchOutcome>> {
        use std::sync::atomic::Ordering;
        if !self.running.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let done = self.done.lock().unwrap_or_else(PoisonError::into_inner);
        let outcome = match wait {
            true => done.recv().map_err(|_| anyhow::anyhow!("the batch thread has stopped"))?,
            false => match done.try_recv() {
                Ok(outcome) => outcome,
                Err(std::sync::mpsc::TryRecvError::Empty) => return Ok(None),
                Err(e) => anyhow::bail!("the batch thread has stopped: {e}"),
            },
        };
        self.running.store(false, Ordering::SeqCst);
        if let Err(why) = &outcome {
            *self.failed.lock().unwrap_or_else(PoisonError::into_inner) = Some(why.clone());
        }
        outcome.map(Some).map_err(|e| anyhow::anyhow!(e))
    }

    fn running(&self) -> bool {
        self.running.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Batches {
    fn drop(&mut self) {
        self.jobs.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(t) = self.thread.lock().unwrap_or_else(PoisonError::into_inner).take() {
            let _ = t.join();
        }
    }
}

impl Rebalance for Worker {
    fn resume_at(&self, topic: &str, partition: i32) -> Result<Option<i64>, String> {
        let next =
            self.pipeline.store().next_offset(topic, partition).map_err(|e| e.to_string())?;
        self.merge().assign(topic, partition, next);
        Ok(next)
    }

    fn assigned(&self, partitions: &[(String, i32)]) {
        self.pipeline.set_owned(Some(partitions.iter().map(|(_, p)| *p).collect()));
        // The calendar waits for the group's partitions: its records take their turn in time.
        self.merge().hold(false);
    }

    fn revoking(&self) -> Result<Vec<(String, i32, i64)>, String> {
        let flushed = self.drain().map_err(|e| format!("{e:#}"));
        self.handed.lock().unwrap_or_else(PoisonError::into_inner).0.clear();
        self.drop_group_buffers();
        self.merge().hold(true);
        self.pipeline.set_owned(Some(Default::default()));
        // Another instance may change these students' states before they come back.
        self.pipeline.forget_cached();
        flushed
    }

    fn lost(&self) {
        // The batch being committed ends first (its students are no longer this instance's).
        // If it failed, the next batch is refused and the service stops with the reason.
        if let Err(e) = self.committed(true) {
            tracing::error!(error = %format!("{e:#}"), "the batch being committed failed as the partitions were lost");
        }
        // The calendar is not the group's: its messages wait again for their turn in time,
        // among the group's messages read again once partitions are assigned.
        let read = std::mem::take(&mut *self.inflight()).messages;
        let calendar: Vec<OwnedMessage> =
            read.into_iter().filter(|m| m.topic() == self.calendar_topic).collect();
        self.handed.lock().unwrap_or_else(PoisonError::into_inner).0.clear();
        self.drop_group_buffers();
        let mut merge = self.merge();
        merge.put_back(calendar);
        merge.hold(true);
        self.pipeline.set_owned(Some(Default::default()));
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

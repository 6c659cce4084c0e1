//! Every measured event of the service, defined once: each method counts (Prometheus) and, where
//! an operator wants a line, logs it too, so a count and its log line cannot drift apart. Metric
//! names are `ontrack_<noun>_<unit>`; labels are bounded (topic, partition, flag, school,
//! channel, outcome, reason), never a student or advocate id. Log lines carry notification and
//! advocate ids at most, never names, addresses, grades or behavior text.
//!
//! Every labelled family is exported from the start with its known label values at zero
//! ([`Telemetry::for_inputs`]), as Prometheus' instrumentation guidance asks: a fresh service
//! already has every series its dashboard and alert rules query. Where a label value cannot be
//! known before it happens (a school, an assigned partition) the family starts with one zero
//! series with that label empty, which adds nothing to any sum.
//!
//! One [`Telemetry`] per service, passed explicitly (no global registry), so tests can read the
//! counters of exactly the service they ran.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::core::{Change, Flag};

/// The service's metrics and the readiness facts `/readyz` reports.
#[derive(Debug)]
pub struct Telemetry {
    registry: Registry,
    events: IntCounterVec,
    decode_failures: IntCounterVec,
    dead_letters: IntCounter,
    batch_seconds: Histogram,
    commit_seconds: Histogram,
    event_to_flag_seconds: Histogram,
    flags: IntCounterVec,
    flags_raised: IntGaugeVec,
    state_reads: IntCounterVec,
    notifications: IntCounterVec,
    notification_seconds: HistogramVec,
    outbox_depth: IntGaugeVec,
    outbox_oldest_age: IntGaugeVec,
    consumer_lag: IntGaugeVec,
    store_size: IntGauge,
    assigned_partitions: IntGauge,
    ready: IntGauge,
    /// Readiness: the store is open and the outbox of the previous run was handed over.
    state_loaded: AtomicBool,
    /// Sum of the consumer lag over assigned partitions; -1 until librdkafka first reports it.
    total_lag: AtomicI64,
    /// The input topics, for the lag family's zero series while no partition is assigned.
    inputs: Mutex<Vec<String>>,
    /// `ontrack edfi`'s families (messages by resource and outcome, events by type), registered
    /// by [`Telemetry::edfi_series`].
    edfi: std::sync::OnceLock<(IntCounterVec, IntCounterVec)>,
}

/// The outcome label of a consumed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Consumed {
    Applied,
    Duplicate,
    Rejected,
}

/// What the log lines of a notification's delivery name (no student data).
#[derive(Debug, Clone, Copy)]
pub struct NotificationRef<'a> {
    pub id: &'a str,
    pub advocate_id: &'a str,
    pub channel: &'static str,
    pub attempts: u32,
}

/// What a committed batch did, for its log line.
#[derive(Debug, Clone, Copy, Default)]
pub struct BatchSummary {
    pub messages: usize,
    pub events: u64,
    pub rejected: u64,
    pub flags: usize,
    pub notifications: u64,
}

/// What happened to a notification, for `ontrack_notifications_total`.
#[derive(Debug, Clone, Copy)]
pub enum NotificationOutcome {
    Queued,
    Delivered,
    Retried,
    Failed,
}

impl NotificationOutcome {
    const ALL: [NotificationOutcome; 4] = [
        NotificationOutcome::Queued,
        NotificationOutcome::Delivered,
        NotificationOutcome::Retried,
        NotificationOutcome::Failed,
    ];

    fn label(self) -> &'static str {
        match self {
            NotificationOutcome::Queued => "queued",
            NotificationOutcome::Delivered => "delivered",
            NotificationOutcome::Retried => "retried",
            NotificationOutcome::Failed => "failed",
        }
    }
}

fn must<T>(r: prometheus::Result<T>) -> T {
    // Only a malformed name or a duplicate registration fails: both are programming errors
    // caught by the first test that builds a Telemetry.
    r.expect("metric definitions are valid and registered once")
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = must(IntCounterVec::new(Opts::new(name, help), labels));
    must(r.register(Box::new(c.clone())));
    c
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = must(IntGaugeVec::new(Opts::new(name, help), labels));
    must(r.register(Box::new(g.clone())));
    g
}

fn histogram(r: &Registry, name: &str, help: &str, buckets: &[f64]) -> Histogram {
    let h = must(Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec())));
    must(r.register(Box::new(h.clone())));
    h
}

const FAST: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
const LATENCY: &[f64] =
    &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

impl Consumed {
    const ALL: [Consumed; 3] = [Consumed::Applied, Consumed::Duplicate, Consumed::Rejected];

    fn label(self) -> &'static str {
        match self {
            Consumed::Applied => "applied",
            Consumed::Duplicate => "duplicate",
            Consumed::Rejected => "rejected",
        }
    }
}

/// `ontrack_decode_failures_total{reason}` of a message without a value.
pub const REJECT_EMPTY: &str = "empty";
/// `ontrack_decode_failures_total{reason}` of an event on another type's topic.
pub const REJECT_WRONG_TOPIC: &str = "wrong_topic";
/// Notification channels (`none`: the advocate had no usable channel).
pub const CHANNELS: [&str; 3] = ["webhook", "email", "none"];
/// The store's queues (`ontrack_outbox_depth{queue}`).
pub const QUEUES: [&str; 4] = ["kafka", "notifications", "digest", "failed"];

fn change_label(change: Change) -> &'static str {
    match change {
        Change::Raised => "raised",
        Change::Cleared => "cleared",
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry::new()
    }
}

impl Telemetry {
    /// A service's telemetry, with every series of `inputs` (the input topics) at zero.
    pub fn for_inputs(inputs: &[&str]) -> Telemetry {
        let t = Telemetry::new();
        t.inputs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(inputs.iter().map(|i| i.to_string()));
        for topic in inputs {
            for outcome in Consumed::ALL {
                t.events.with_label_values(&[topic, outcome.label()]);
            }
        }
        t.lag_placeholders();
        t
    }

    /// Every family with its known label values at zero, except the input topics' series.
    pub fn new() -> Telemetry {
        let r = Registry::new();
        let build =
            gauge_vec(&r, "ontrack_build_info", "Always 1; the running version.", &["version"]);
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let store_size =
            must(IntGauge::new("ontrack_store_size_bytes", "Size of the store on disk."));
        must(r.register(Box::new(store_size.clone())));
        let assigned = must(IntGauge::new(
            "ontrack_assigned_partitions",
            "Input partitions currently assigned to this instance.",
        ));
        must(r.register(Box::new(assigned.clone())));
        let ready = must(IntGauge::new(
            "ontrack_ready",
            "1 when /readyz answers 200 (partitions assigned, state loaded, lag under the bound).",
        ));
        must(r.register(Box::new(ready.clone())));
        let dead_letters = must(IntCounter::new(
            "ontrack_dead_letters_total",
            "Messages written to the dead-letter topic.",
        ));
        must(r.register(Box::new(dead_letters.clone())));
        let notification_seconds = must(HistogramVec::new(
            HistogramOpts::new(
                "ontrack_notification_delivery_seconds",
                "Queued → delivered, per channel.",
            )
            .buckets(LATENCY.to_vec()),
            &["channel"],
        ));
        must(r.register(Box::new(notification_seconds.clone())));
        let t = Telemetry {
            events: counter_vec(
                &r,
                "ontrack_events_consumed_total",
                "Input messages consumed, by topic and outcome (applied, duplicate, rejected).",
                &["topic", "outcome"],
            ),
            decode_failures: counter_vec(
                &r,
                "ontrack_decode_failures_total",
                "Rejected input messages by reason (empty, not_json, bad_type, bad_field, wrong_topic).",
                &["reason"],
            ),
            dead_letters,
            batch_seconds: histogram(
                &r,
                "ontrack_batch_duration_seconds",
                "Time to fold and commit one batch.",
                FAST,
            ),
            commit_seconds: histogram(
                &r,
                "ontrack_store_commit_duration_seconds",
                "Time of one atomic store commit, flush included.",
                FAST,
            ),
            event_to_flag_seconds: histogram(
                &r,
                "ontrack_event_to_flag_seconds",
                "From the causing event's Kafka timestamp (else its recorded_at) to the flag's acknowledgement by the broker.",
                LATENCY,
            ),
            flags: counter_vec(
                &r,
                "ontrack_flags_total",
                "Flag changes emitted, by flag and change (raised, cleared).",
                &["flag", "change"],
            ),
            flags_raised: gauge_vec(
                &r,
                "ontrack_flags_raised",
                "Flags raised now, by flag and school (students of this instance's partitions).",
                &["flag", "school"],
            ),
            state_reads: counter_vec(
                &r,
                "ontrack_state_reads_total",
                "Student states a batch started from, by source: cache (kept decoded, batch.state_cache_mib), packed (kept as stored, batch.packed_cache_mib: decoded again) or store (read and decoded); students new to the store count as store.",
                &["source"],
            ),
            notifications: counter_vec(
                &r,
                "ontrack_notifications_total",
                "Advocate notifications by channel (webhook, email, none) and outcome (queued, delivered, retried, failed).",
                &["channel", "outcome"],
            ),
            notification_seconds,
            outbox_depth: gauge_vec(
                &r,
                "ontrack_outbox_depth",
                "Records waiting in the store: kafka (flags and dead letters to publish), notifications, digest (alerts waiting for a digest), failed (kept failed notifications).",
                &["queue"],
            ),
            outbox_oldest_age: gauge_vec(
                &r,
                "ontrack_outbox_oldest_age_seconds",
                "Age of the oldest notification waiting for delivery (0 when none).",
                &["queue"],
            ),
            consumer_lag: gauge_vec(
                &r,
                "ontrack_consumer_lag_messages",
                "Messages behind the end of each assigned input partition (librdkafka statistics).",
                &["topic", "partition"],
            ),
            store_size,
            assigned_partitions: assigned,
            ready,
            registry: r,
            state_loaded: AtomicBool::new(false),
            total_lag: AtomicI64::new(-1),
            inputs: Mutex::default(),
            edfi: std::sync::OnceLock::new(),
        };
        t.zero_known_series();
        t
    }

    fn zero_known_series(&self) {
        let decode = crate::core::DecodeError::REASON_LABELS;
        for reason in [REJECT_EMPTY, REJECT_WRONG_TOPIC].into_iter().chain(decode) {
            self.decode_failures.with_label_values(&[reason]);
        }
        for flag in Flag::ALL {
            for change in [Change::Raised, Change::Cleared] {
                self.flags.with_label_values(&[flag.as_str(), change_label(change)]);
            }
            // The schools are not known before their first flag.
            self.flags_raised.with_label_values(&[flag.as_str(), ""]);
        }
        for source in ["cache", "packed", "store"] {
            self.state_reads.with_label_values(&[source]);
        }
        for channel in CHANNELS {
            for outcome in NotificationOutcome::ALL {
                self.notifications.with_label_values(&[channel, outcome.label()]);
            }
        }
        for channel in &CHANNELS[..2] {
            self.notification_seconds.with_label_values(&[channel]);
        }
        for queue in QUEUES {
            self.outbox_depth.with_label_values(&[queue]);
        }
        self.outbox_oldest_age.with_label_values(&["notifications"]);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec fails only on a broken metric family, which `new` cannot build.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// `n` messages of `topic` ended in `outcome`.
    pub fn consumed(&self, topic: &str, outcome: Consumed, n: u64) {
        self.events.with_label_values(&[topic, outcome.label()]).inc_by(n);
    }

    /// A message went to the dead-letter topic for `reason` (a bounded label).
    pub fn rejected(&self, reason: &'static str, topic: &str, partition: i32, offset: i64) {
        self.decode_failures.with_label_values(&[reason]).inc();
        self.dead_letters.inc();
        tracing::debug!(
            topic,
            partition,
            offset,
            reason,
            "input rejected: sent to the dead-letter topic"
        );
    }

    /// The translator's families (`ontrack edfi`), every resource and outcome at zero.
    pub fn edfi_series(&self) {
        let messages = counter_vec(
            &self.registry,
            "ontrack_edfi_messages_total",
            "Ed-Fi change messages by resource (other: not one ontrack reads, or unreadable) and outcome (translated, stale: an older version, skipped, dead_letter).",
            &["resource", "outcome"],
        );
        let events = counter_vec(
            &self.registry,
            "ontrack_edfi_events_total",
            "Contract events the translator wrote, by type.",
            &["type"],
        );
        let resources = crate::edfi::Resource::ALL.map(crate::edfi::Resource::name);
        for resource in resources.iter().chain(&["other"]) {
            for outcome in crate::edfi::Outcome::LABELS {
                messages.with_label_values(&[resource, outcome]);
            }
        }
        for kind in crate::core::EventKind::ALL {
            events.with_label_values(&[kind.as_str()]);
        }
        let _ = self.edfi.set((messages, events));
    }

    /// One Ed-Fi message translated (`resource` `None`: other) into `events`.
    pub fn edfi_message(
        &self,
        resource: Option<&'static str>,
        outcome: &'static str,
        events: impl IntoIterator<Item = crate::core::EventKind>,
    ) {
        let Some((messages, by_type)) = self.edfi.get() else { return };
        messages.with_label_values(&[resource.unwrap_or("other"), outcome]).inc();
        for kind in events {
            by_type.with_label_values(&[kind.as_str()]).inc();
        }
        if outcome == "dead_letter" {
            self.dead_letters.inc();
        }
    }

    /// A batch was folded and committed in `took`.
    pub fn batch(&self, took: Duration, summary: &BatchSummary) {
        self.batch_seconds.observe(took.as_secs_f64());
        let s = summary;
        tracing::debug!(
            messages = s.messages,
            events = s.events,
            rejected = s.rejected,
            flags = s.flags,
            notifications = s.notifications,
            took_ms = took.as_millis() as u64,
            "batch committed"
        );
    }

    pub fn committed(&self, took: Duration) {
        self.commit_seconds.observe(took.as_secs_f64());
    }

    pub fn flag_changed(&self, flag: Flag, change: Change) {
        self.flags.with_label_values(&[flag.as_str(), change_label(change)]).inc();
    }

    /// `count` students of this instance's store have `flag` raised in `school`.
    pub fn flags_raised(&self, flag: &str, school: &str, count: i64) {
        self.flags_raised.with_label_values(&[flag, school]).set(count);
    }

    /// The states a batch started from, by source.
    pub fn state_reads(&self, reads: StateReads) {
        self.state_reads.with_label_values(&["cache"]).inc_by(reads.cache);
        self.state_reads.with_label_values(&["packed"]).inc_by(reads.packed);
        self.state_reads.with_label_values(&["store"]).inc_by(reads.store);
    }

    /// States read so far, by source.
    pub fn state_reads_count(&self) -> StateReads {
        let get = |source| self.state_reads.with_label_values(&[source]).get();
        StateReads { cache: get("cache"), packed: get("packed"), store: get("store") }
    }

    /// A flag event was acknowledged by the broker `age` after its causing event.
    pub fn flag_acknowledged(&self, age: Duration) {
        self.event_to_flag_seconds.observe(age.as_secs_f64());
    }

    fn notification(&self, channel: &str, outcome: NotificationOutcome) {
        self.notifications.with_label_values(&[channel, outcome.label()]).inc();
    }

    /// A batch (or a digest falling due) queued notifications on `channels` and kept
    /// `unroutable` alerts as failed records (their advocate has no usable channel).
    pub fn notifications_queued<'c>(
        &self,
        channels: impl Iterator<Item = &'c str>,
        unroutable: usize,
    ) {
        for channel in channels {
            self.notification(channel, NotificationOutcome::Queued);
        }
        for _ in 0..unroutable {
            self.notification("none", NotificationOutcome::Failed);
        }
    }

    pub fn notification_delivered(&self, n: &NotificationRef<'_>, age: Duration) {
        self.notification(n.channel, NotificationOutcome::Delivered);
        self.notification_seconds.with_label_values(&[n.channel]).observe(age.as_secs_f64());
        tracing::info!(
            id = n.id,
            channel = n.channel,
            advocate_id = n.advocate_id,
            attempts = n.attempts,
            "notification delivered"
        );
    }

    pub fn notification_retried(
        &self,
        n: &NotificationRef<'_>,
        reason: &dyn std::fmt::Display,
        delay: Duration,
    ) {
        self.notification(n.channel, NotificationOutcome::Retried);
        tracing::warn!(id = n.id, channel = n.channel, advocate_id = n.advocate_id, attempts = n.attempts, reason = %reason, retry_in_ms = delay.as_millis() as u64, "notification not delivered; will retry");
    }

    pub fn notification_failed(&self, n: &NotificationRef<'_>, reason: &str) {
        self.notification(n.channel, NotificationOutcome::Failed);
        tracing::error!(
            id = n.id,
            channel = n.channel,
            advocate_id = n.advocate_id,
            attempts = n.attempts,
            reason,
            "notification failed; kept as a failed-notification record"
        );
    }

    /// A webhook endpoint answered 410 Gone (the notification then fails).
    pub fn endpoint_disabled(&self, n: &NotificationRef<'_>) {
        tracing::warn!(
            id = n.id,
            advocate_id = n.advocate_id,
            "webhook endpoint answered 410 Gone: disabled until the advocate's record names it again"
        );
    }

    /// Digest items fell due and became `queued` notifications (and `unroutable` failures).
    pub fn digests_queued<'c>(&self, channels: impl Iterator<Item = &'c str>, unroutable: usize) {
        let mut digests = 0;
        self.notifications_queued(channels.inspect(|_| digests += 1), unroutable);
        tracing::info!(digests, unroutable, "daily digests queued");
    }

    /// How many notifications of `channel` ended in `outcome` so far (for tests and logs).
    pub fn notifications_count(&self, channel: &str, outcome: NotificationOutcome) -> u64 {
        self.notifications.with_label_values(&[channel, outcome.label()]).get()
    }

    /// Depth and oldest age (seconds) of one store queue.
    pub fn queue(&self, queue: &str, depth: usize, oldest_age_s: i64) {
        self.outbox_depth.with_label_values(&[queue]).set(depth as i64);
        self.outbox_oldest_age.with_label_values(&[queue]).set(oldest_age_s.max(0));
    }

    pub fn store_size(&self, bytes: u64) {
        self.store_size.set(bytes as i64);
    }

    /// The group gave this instance `resume` (`topic/partition@offset` each) to read.
    pub fn partitions_assigned(&self, resume: &[String]) {
        self.assigned_partitions.set(resume.len() as i64);
        tracing::info!(partitions = resume.len(), resume = ?resume, "partitions assigned");
    }

    /// The group took `count` partitions away (after the in-flight batch was persisted).
    pub fn partitions_revoked(&self, count: usize) {
        self.assigned_partitions.set(0);
        tracing::info!(partitions = count, "partitions revoked");
    }

    /// Consumer lag per assigned partition, from librdkafka's statistics.
    pub fn lag(&self, lags: &[(String, i32, i64)]) {
        self.consumer_lag.reset();
        if lags.is_empty() {
            self.lag_placeholders();
        }
        let mut total = 0;
        for (topic, partition, lag) in lags {
            self.consumer_lag.with_label_values(&[topic, &partition.to_string()]).set(*lag);
            total += lag.max(&0);
        }
        self.total_lag.store(total, Ordering::Relaxed);
    }

    /// The store is open and the previous run's outbox was handed to the producer.
    /// While no partition reports its lag, the family stays, one zero series per input topic
    /// (the total lag, for readiness, is set only by [`Telemetry::lag`]).
    fn lag_placeholders(&self) {
        for topic in self.inputs.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            self.consumer_lag.with_label_values(&[topic, ""]);
        }
    }

    pub fn state_loaded(&self) {
        self.state_loaded.store(true, Ordering::Relaxed);
        tracing::info!("state loaded");
    }

    /// Publishes the readiness as the `ontrack_ready` gauge (for alerting).
    pub fn update_ready(&self, max_lag: i64) {
        self.ready.set(i64::from(self.readiness(max_lag).is_ok()));
    }

    /// `Ok` when ready to serve, else why not.
    pub fn readiness(&self, max_lag: i64) -> Result<(), String> {
        if !self.state_loaded.load(Ordering::Relaxed) {
            return Err("the store is not loaded yet".into());
        }
        if self.assigned_partitions.get() == 0 {
            return Err("no input partition assigned".into());
        }
        match self.total_lag.load(Ordering::Relaxed) {
            -1 => Err("consumer lag not known yet (librdkafka statistics every 5 s)".into()),
            lag if lag > max_lag => {
                Err(format!("consumer lag {lag} is above admin.ready_max_lag = {max_lag}"))
            }
            _ => Ok(()),
        }
    }
}

/// Student states a batch started from, by source: kept decoded, kept packed (decoded again),
/// read from the store (or new).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateReads {
    pub cache: u64,
    pub packed: u64,
    pub store: u64,
}

impl StateReads {
    pub fn total(&self) -> u64 {
        self.cache + self.packed + self.store
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_exported_with_the_ontrack_prefix() {
        let t = Telemetry::new();
        t.consumed("sis.attendance", Consumed::Applied, 1);
        t.rejected("not_json", "sis.attendance", 0, 7);
        t.flag_changed(Flag::Attendance, Change::Raised);
        t.flags_raised("attendance", "sch-1", 3);
        t.notifications_queued(["webhook"].into_iter(), 0);
        t.lag(&[("sis.attendance".into(), 0, 3)]);
        let text = t.render();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("ontrack_"), "{line}");
        }
        assert!(text.contains(
            "ontrack_events_consumed_total{outcome=\"applied\",topic=\"sis.attendance\"} 1"
        ));
        assert!(
            text.contains(
                "ontrack_consumer_lag_messages{partition=\"0\",topic=\"sis.attendance\"} 3"
            )
        );
        assert!(text.contains("ontrack_build_info{version="));
    }

    /// Prometheus' instrumentation guidance: a fresh service exports every labelled family with
    /// its known label values at zero, so dashboards and alert rules see them before the first
    /// event (a rule on `outcome="failed"` works from the start).
    #[test]
    fn a_fresh_telemetry_exports_every_family_at_zero() {
        let t = Telemetry::for_inputs(&["sis.attendance", "sis.grades"]);
        let text = t.render();
        for series in [
            "ontrack_events_consumed_total{outcome=\"rejected\",topic=\"sis.grades\"} 0",
            "ontrack_decode_failures_total{reason=\"wrong_topic\"} 0",
            "ontrack_flags_total{change=\"cleared\",flag=\"off_track\"} 0",
            "ontrack_flags_raised{flag=\"behavior\",school=\"\"} 0",
            "ontrack_notifications_total{channel=\"email\",outcome=\"failed\"} 0",
            "ontrack_notification_delivery_seconds_count{channel=\"webhook\"} 0",
            "ontrack_outbox_depth{queue=\"digest\"} 0",
            "ontrack_outbox_oldest_age_seconds{queue=\"notifications\"} 0",
            "ontrack_state_reads_total{source=\"store\"} 0",
            "ontrack_state_reads_total{source=\"packed\"} 0",
            "ontrack_consumer_lag_messages{partition=\"\",topic=\"sis.attendance\"} 0",
        ] {
            assert!(text.contains(series), "missing {series} in:\n{text}");
        }
        // The zero series are not a lag reading: not ready before librdkafka reports one.
        t.state_loaded();
        t.partitions_assigned(&["sis.attendance/0@0".into()]);
        assert!(t.readiness(100).unwrap_err().contains("not known"));
        // Once partitions report lag, the placeholder goes.
        t.lag(&[("sis.attendance".into(), 3, 12)]);
        let text = t.render();
        assert!(text.contains(
            "ontrack_consumer_lag_messages{partition=\"3\",topic=\"sis.attendance\"} 12"
        ));
        assert!(!text.contains("partition=\"\""), "{text}");
    }

    #[test]
    fn ready_only_with_state_partitions_and_small_lag() {
        let t = Telemetry::new();
        assert!(t.readiness(100).unwrap_err().contains("store"));
        t.state_loaded();
        assert!(t.readiness(100).unwrap_err().contains("partition"));
        t.partitions_assigned(&["a/0@0".into(), "a/1@0".into()]);
        assert!(t.readiness(100).unwrap_err().contains("not known"));
        t.lag(&[("a".into(), 0, 60), ("a".into(), 1, 50)]);
        assert!(t.readiness(100).unwrap_err().contains("110"));
        t.lag(&[("a".into(), 0, 0), ("a".into(), 1, -1)]);
        assert_eq!(t.readiness(100), Ok(()));
    }
}

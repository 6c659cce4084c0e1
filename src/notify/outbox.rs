//! The delivery task: sends the store's pending notifications, retries with exponential backoff
//! and jitter, groups due digests, and keeps what cannot be delivered as failed records.
//!
//! It runs on its own thread (a single-threaded tokio runtime, many sends in flight) beside the
//! Kafka loop; the two share the store. A notification leaves the store only when delivered or
//! failed, so a crash at any point delivers it after the restart, under the same id.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand::Rng as _;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use super::email::Mailer;
use super::plan::{Planner, digest_about};
use super::render::Renderer;
use super::webhook::WebhookClient;
use super::{Destination, FailedNotification, Notification};
use crate::clock::Clock;
use crate::store::{Store, StoreError};
use crate::telemetry::{NotificationOutcome, Telemetry};

/// At most this many sends at once.
const MAX_IN_FLIGHT: usize = 32;
/// Looks at the store at least this often (digests fall due, retries come due).
const MAX_IDLE: Duration = Duration::from_secs(1);
/// Shutdown waits this long for sends in flight (they are repeated on the next start otherwise).
const SHUTDOWN_WAIT: Duration = Duration::from_secs(3);

/// The result of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Delivered,
    /// Try again later (not before `after`, when the receiver said so).
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// The webhook endpoint answered 410 Gone: disable it and fail.
    Gone {
        reason: String,
    },
    /// Permanent: fail now.
    Failed {
        reason: String,
    },
}

/// Wakes the delivery task (after a commit queued notifications) and stops it.
#[derive(Debug, Default)]
pub struct Signal {
    notify: Notify,
    stop: AtomicBool,
}

impl Signal {
    /// New notifications may be waiting.
    pub fn wake(&self) {
        self.notify.notify_one();
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.notify.notify_one();
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// Everything one send needs (cheap to clone into a task).
#[derive(Debug, Clone)]
struct Sender {
    store: Store,
    planner: Arc<Planner>,
    renderer: Renderer,
    webhook: WebhookClient,
    mailer: Option<Mailer>,
    clock: Clock,
}

/// The delivery task.
#[derive(Debug)]
pub struct Delivery {
    sender: Sender,
    signal: Arc<Signal>,
    telemetry: Arc<Telemetry>,
}

impl Delivery {
    pub fn new(
        store: Store,
        planner: Arc<Planner>,
        clock: Clock,
        signal: Arc<Signal>,
        telemetry: Arc<Telemetry>,
    ) -> Result<Delivery, String> {
        let config = planner.config();
        let webhook = WebhookClient::new(Duration::from_millis(config.webhook.timeout_ms))?;
        let mailer = match config.email.smtp_host.is_empty() {
            true => None,
            false => Some(Mailer::new(&config.email)?),
        };
        let renderer = Renderer::new(&config.link_template);
        Ok(Delivery {
            sender: Sender { store, planner, renderer, webhook, mailer, clock },
            signal,
            telemetry,
        })
    }

    /// Runs on the current thread until [`Signal::stop`]; a store error stops it.
    pub fn run_blocking(self) -> Result<(), StoreError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Corrupt { key: "-".into(), reason: e.to_string() })?;
        runtime.block_on(self.run())
    }

    async fn run(self) -> Result<(), StoreError> {
        let mut in_flight: HashSet<u64> = HashSet::new();
        let mut tasks: JoinSet<(u64, Notification, Attempt)> = JoinSet::new();
        while !self.signal.stopped() {
            let now_ms = self.sender.clock.now_ms();
            self.promote_digests(now_ms)?;
            let mut next_due = now_ms + MAX_IDLE.as_millis() as i64;
            for item in self.sender.store.notifications() {
                let (seq, n) = item?;
                if in_flight.contains(&seq) {
                    continue;
                }
                if n.next_attempt_ms > now_ms {
                    next_due = next_due.min(n.next_attempt_ms);
                    continue;
                }
                if in_flight.len() >= MAX_IN_FLIGHT {
                    break;
                }
                in_flight.insert(seq);
                let sender = self.sender.clone();
                tasks.spawn(async move {
                    let attempt = sender.attempt(&n).await;
                    (seq, n, attempt)
                });
            }
            let idle = self.sender.clock.until(next_due).max(Duration::from_millis(5));
            tokio::select! {
                Some(done) = tasks.join_next() => {
                    let mut done = Some(done);
                    // Record every finished send before looking at the store again.
                    while let Some(result) = done.take().or_else(|| tasks.try_join_next()) {
                        if let Ok((seq, n, attempt)) = result {
                            in_flight.remove(&seq);
                            self.record(seq, n, attempt)?;
                        }
                    }
                }
                () = self.signal.notify.notified() => {}
                () = tokio::time::sleep(idle) => {}
            }
        }
        let deadline = tokio::time::Instant::now() + SHUTDOWN_WAIT;
        while let Ok(Some(Ok((seq, n, attempt)))) =
            tokio::time::timeout_at(deadline, tasks.join_next()).await
        {
            self.record(seq, n, attempt)?;
        }
        Ok(())
    }

    /// Stores the outcome of an attempt.
    fn record(&self, seq: u64, mut n: Notification, attempt: Attempt) -> Result<(), StoreError> {
        let store = &self.sender.store;
        let now_ms = self.sender.clock.now_ms();
        n.attempts += 1;
        let channel = n.to.channel();
        let reason = match attempt {
            Attempt::Delivered => {
                self.telemetry.notification(channel, NotificationOutcome::Delivered);
                let age = Duration::from_millis((now_ms - n.created_at_ms).max(0) as u64);
                self.telemetry.notification_delivered_after(channel, age);
                tracing::info!(id = %n.id, channel, advocate_id = %n.advocate_id, attempts = n.attempts, "notification delivered");
                return store.attempted(seq, Ok(None));
            }
            Attempt::Retry { reason, after } => {
                let age_s = (now_ms - n.created_at_ms) / 1000;
                let retry = &self.sender.planner.config().retry;
                if age_s < retry.max_age_s as i64 {
                    let delay = backoff(n.attempts, retry.initial_delay_ms, retry.max_delay_ms);
                    let delay = after.map_or(delay, |a| delay.max(a));
                    n.next_attempt_ms = now_ms + delay.as_millis() as i64;
                    self.telemetry.notification(channel, NotificationOutcome::Retried);
                    tracing::warn!(id = %n.id, channel, advocate_id = %n.advocate_id, attempts = n.attempts, reason = %reason, retry_in_ms = delay.as_millis() as u64, "notification not delivered; will retry");
                    n.last_error = Some(reason);
                    return store.attempted(seq, Ok(Some(&n)));
                }
                format!("gave up after {} attempts over {age_s} s: {reason}", n.attempts)
            }
            Attempt::Gone { reason } => {
                if let Destination::Webhook(url) = &n.to {
                    store.disable_endpoint(url, &format!("{reason} (notification {})", n.id))?;
                }
                tracing::warn!(advocate_id = %n.advocate_id, id = %n.id, "webhook endpoint answered 410 Gone: disabled until the advocate's record names it again");
                reason
            }
            Attempt::Failed { reason } => reason,
        };
        self.telemetry.notification(channel, NotificationOutcome::Failed);
        tracing::error!(id = %n.id, channel, advocate_id = %n.advocate_id, attempts = n.attempts, reason = %reason, "notification failed; kept as a failed-notification record");
        let failed = FailedNotification::of(n, reason, now_ms);
        store.attempted(seq, Err(&failed))
    }

    /// Turns the digest items that fell due into one notification per advocate, date and channel.
    fn promote_digests(&self, now_ms: i64) -> Result<(), StoreError> {
        let due = self.sender.store.due_digest_items(now_ms)?;
        if due.is_empty() {
            return Ok(());
        }
        let mut groups: BTreeMap<(String, time::Date), Vec<super::Alert>> = BTreeMap::new();
        let mut keys = Vec::with_capacity(due.len());
        for (key, item) in due {
            keys.push(key);
            groups.entry((item.advocate_id, item.digest_of)).or_default().push(item.alert);
        }
        let (mut notifications, mut failed) = (Vec::new(), Vec::new());
        let planner = &self.sender.planner;
        for ((advocate_id, date), alerts) in groups {
            let contact = planner.stored_contact(&self.sender.store, &advocate_id)?;
            let (ns, f) = planner.addressed(
                &digest_about(date),
                &advocate_id,
                contact.as_ref(),
                Some(date),
                alerts,
                now_ms,
            );
            notifications.extend(ns);
            failed.extend(f);
        }
        for n in &notifications {
            self.telemetry.notification(n.to.channel(), NotificationOutcome::Queued);
        }
        for _ in &failed {
            self.telemetry.notification("none", NotificationOutcome::Failed);
        }
        self.sender.store.digested(&keys, &notifications, &failed)?;
        tracing::info!(digests = notifications.len(), "daily digests queued");
        Ok(())
    }
}

impl Sender {
    async fn attempt(&self, n: &Notification) -> Attempt {
        match &n.to {
            Destination::Webhook(url) => {
                match self.store.endpoint_disabled(url) {
                    Ok(Some(why)) => {
                        return Attempt::Failed { reason: format!("endpoint disabled: {why}") };
                    }
                    Ok(None) => {}
                    Err(e) => return Attempt::Retry { reason: e.to_string(), after: None },
                }
                let Some(key) = self.planner.config().webhook_key(&n.advocate_id) else {
                    return Attempt::Failed {
                        reason: "no webhook secret (notify.webhook.secret) for this advocate"
                            .into(),
                    };
                };
                let body = self.renderer.json(n);
                // The real time, not the service clock: receivers reject stale timestamps.
                let timestamp = jiff::Timestamp::now().as_second();
                self.webhook.send(url, &key, &n.id, timestamp, body).await
            }
            Destination::Email(address) => match &self.mailer {
                Some(mailer) => mailer.send(address, n, &self.renderer).await,
                None => Attempt::Failed {
                    reason: "email is not configured (notify.email.smtp_host)".into(),
                },
            },
        }
    }
}

/// The delay before retry number `attempts` (1-based): `initial · 2^(attempts−1)`, capped, drawn
/// uniformly between half of it and all of it so that many failed sends do not retry together.
pub fn backoff(attempts: u32, initial_ms: u64, max_ms: u64) -> Duration {
    let exp = attempts.saturating_sub(1).min(32);
    let full = initial_ms.saturating_mul(1u64 << exp).min(max_ms);
    Duration::from_millis(rand::rng().random_range(full / 2..=full))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_below_each_step() {
        for attempts in 1..=12 {
            let full = (1000u64 << (attempts - 1)).min(60_000);
            for _ in 0..50 {
                let d = backoff(attempts, 1000, 60_000).as_millis() as u64;
                assert!((full / 2..=full).contains(&d), "attempt {attempts}: {d} ms");
            }
        }
        // Huge attempt counts neither overflow nor pass the cap.
        let d = backoff(u32::MAX, 1000, 5000).as_millis();
        assert!((2500..=5000).contains(&d), "{d} ms");
    }
}

//! The delivery task: sends the store's pending notifications, retries with exponential backoff
//! and jitter, groups due digests, and keeps what cannot be delivered as failed records.
//!
//! It runs on its own thread (a single-threaded tokio runtime, many sends in flight) beside the
//! Kafka loop; the two share the store. A notification leaves the store only when delivered or
//! failed, so a crash at any point delivers it after the restart, under the same id.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng as _;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use super::address::Addresser;
use super::email::Mailer;
use super::plan::digest_about;
use super::render::Renderer;
use super::tables;
use super::webhook::WebhookClient;
use super::{Destination, FailedNotification, Notification, NotifyConfig, NotifyError, Retry};
use crate::clock::Clock;
use crate::shutdown::Shutdown;
use crate::store::Store;
use crate::telemetry::Telemetry;

/// At most this many sends at once.
const MAX_IN_FLIGHT: usize = 32;
/// Looks at the store at least this often (digests fall due, retries come due).
const MAX_IDLE: Duration = Duration::from_secs(1);
/// Shutdown waits this long for sends in flight (they are repeated on the next start otherwise).
const SHUTDOWN_WAIT: Duration = Duration::from_secs(3);

/// What moves the delivery task: new notifications were committed; stop.
#[derive(Debug, Clone)]
pub struct Wakeups {
    pub wake: Arc<Notify>,
    pub shutdown: Shutdown,
}

/// Everything one send needs (cheap to clone into a task).
#[derive(Debug, Clone)]
struct Sender {
    store: Store,
    config: Arc<NotifyConfig>,
    renderer: Renderer,
    webhook: WebhookClient,
    mailer: Option<Mailer>,
    clock: Clock,
}

/// The delivery task.
#[derive(Debug)]
pub struct Delivery {
    sender: Sender,
    addresser: Addresser,
    wakeups: Wakeups,
    telemetry: Arc<Telemetry>,
}

impl Delivery {
    /// `config` must have passed [`NotifyConfig::check`]; errors name the config key.
    pub fn new(
        store: Store,
        config: Arc<NotifyConfig>,
        addresser: Addresser,
        clock: Clock,
        wakeups: Wakeups,
        telemetry: Arc<Telemetry>,
    ) -> Result<Delivery, NotifyError> {
        let webhook = WebhookClient::new(Duration::from_millis(config.webhook.timeout_ms))?;
        let mailer = match config.email.smtp_host.is_empty() {
            true => None,
            false => Some(Mailer::new(&config.email)?),
        };
        let renderer = Renderer::new(&config.link_template);
        Ok(Delivery {
            sender: Sender { store, config, renderer, webhook, mailer, clock },
            addresser,
            wakeups,
            telemetry,
        })
    }

    /// Runs on the current thread until the shutdown; a store error stops it.
    pub fn run_blocking(self) -> Result<(), NotifyError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(NotifyError::Runtime)?;
        runtime.block_on(self.run())
    }

    async fn run(self) -> Result<(), NotifyError> {
        let mut in_flight: HashSet<u64> = HashSet::new();
        let mut tasks: JoinSet<(u64, Notification, Result<(), NotifyError>)> = JoinSet::new();
        let shutdown = self.wakeups.shutdown.clone();
        while !shutdown.is_triggered() {
            let now_ms = self.sender.clock.now_ms();
            self.promote_digests(now_ms)?;
            let mut next_due = now_ms + MAX_IDLE.as_millis() as i64;
            for item in tables::pending(&self.sender.store) {
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
                () = self.wakeups.wake.notified() => {}
                () = shutdown.triggered() => {}
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
    fn record(
        &self,
        seq: u64,
        mut n: Notification,
        attempt: Result<(), NotifyError>,
    ) -> Result<(), NotifyError> {
        let store = &self.sender.store;
        let now_ms = self.sender.clock.now_ms();
        n.attempts += 1;
        let error = match attempt {
            Ok(()) => {
                let age = Duration::from_millis((now_ms - n.created_at_ms).max(0) as u64);
                self.telemetry.notification_delivered(&n.telemetry(), age);
                return Ok(tables::attempted(store, seq, Ok(None))?);
            }
            Err(e) => e,
        };
        let reason = match error.retry() {
            Retry::Later(after) => {
                let age_s = (now_ms - n.created_at_ms) / 1000;
                let retry = &self.sender.config.retry;
                if age_s < retry.max_age_s as i64 {
                    let delay = backoff(n.attempts, retry.initial_delay_ms, retry.max_delay_ms);
                    let delay = after.map_or(delay, |a| delay.max(a));
                    n.next_attempt_ms = now_ms + delay.as_millis() as i64;
                    self.telemetry.notification_retried(&n.telemetry(), &error, delay);
                    n.last_error = Some(error.to_string());
                    return Ok(tables::attempted(store, seq, Ok(Some(&n)))?);
                }
                format!("gave up after {} attempts over {age_s} s: {error}", n.attempts)
            }
            Retry::DisableEndpoint => {
                if let Destination::Webhook(url) = &n.to {
                    let why = format!("{error} (notification {})", n.id);
                    tables::disable_endpoint(store, url, &why)?;
                }
                self.telemetry.endpoint_disabled(&n.telemetry());
                error.to_string()
            }
            Retry::Never => error.to_string(),
        };
        self.telemetry.notification_failed(&n.telemetry(), &reason);
        let failed = FailedNotification::of(n, reason, now_ms);
        Ok(tables::attempted(store, seq, Err(&failed))?)
    }

    /// Turns the digest items that fell due into one notification per advocate, date and channel.
    fn promote_digests(&self, now_ms: i64) -> Result<(), NotifyError> {
        let store = &self.sender.store;
        let due = tables::due_digest_items(store, now_ms)?;
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
        for ((advocate_id, date), alerts) in groups {
            // The advocate's contact details: streamed, else the assignments file's.
            let contact = match tables::advocate(store, &advocate_id)? {
                Some(r) => Some(r.contact),
                None => self.addresser.file_contact(&advocate_id).cloned(),
            };
            let (ns, f) = self.addresser.addressed(
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
        tables::digested(store, &keys, &notifications, &failed)?;
        self.telemetry.digests_queued(notifications.iter().map(|n| n.to.channel()), failed.len());
        Ok(())
    }
}

impl Sender {
    async fn attempt(&self, n: &Notification) -> Result<(), NotifyError> {
        match &n.to {
            Destination::Webhook(url) => {
                if let Some(why) = tables::endpoint_disabled(&self.store, url)? {
                    return Err(NotifyError::permanent(format!("endpoint disabled: {why}")));
                }
                let Some(key) = self.config.webhook_key(&n.advocate_id) else {
                    return Err(NotifyError::permanent(
                        "no webhook secret (notify.webhook.secret) for this advocate",
                    ));
                };
                let body = self.renderer.json(n);
                // The real time, not the service clock: receivers reject stale timestamps.
                let timestamp = jiff::Timestamp::now().as_second();
                self.webhook.send(url, &key, &n.id, timestamp, body).await
            }
            Destination::Email(address) => match &self.mailer {
                Some(mailer) => mailer.send(address, n, &self.renderer).await,
                None => {
                    Err(NotifyError::permanent("email is not configured (notify.email.smtp_host)"))
                }
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

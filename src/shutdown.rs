//! Shutdown as a value: one cloneable [`Shutdown`] for the Kafka loop (which checks it between
//! polls), the notification delivery task and the admin server (which await it). Triggered by
//! SIGTERM/SIGINT ([`Shutdown::on_signals`]), by the demo when its district is streamed, or by
//! the service for its background tasks once its loop has persisted the last batch.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

#[derive(Debug, Clone, Default)]
pub struct Shutdown(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    triggered: AtomicBool,
    notify: Notify,
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Asks everything holding a clone to stop.
    pub fn trigger(&self) {
        self.0.triggered.store(true, Ordering::Release);
        self.0.notify.notify_waiters();
    }

    pub fn is_triggered(&self) -> bool {
        self.0.triggered.load(Ordering::Acquire)
    }

    /// Returns once [`Shutdown::trigger`] was called (at once if it was already).
    pub async fn triggered(&self) {
        loop {
            let notified = self.0.notify.notified();
            tokio::pin!(notified);
            // Registered before the check, so a trigger between the two is not missed.
            notified.as_mut().enable();
            if self.is_triggered() {
                return;
            }
            notified.await;
        }
    }

    /// Triggers on SIGTERM or SIGINT (Ctrl-C), from a thread of its own.
    pub fn on_signals(&self) -> std::io::Result<()> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])?;
        let shutdown = self.clone();
        std::thread::Builder::new().name("ontrack-signals".into()).spawn(move || {
            if let Some(signal) = signals.forever().next() {
                tracing::info!(signal, "signal received: shutting down");
                shutdown.trigger();
            }
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_wake_on_a_trigger_from_another_thread_and_after_it() {
        let shutdown = Shutdown::new();
        let waiting = tokio::spawn({
            let s = shutdown.clone();
            async move { s.triggered().await }
        });
        let s = shutdown.clone();
        std::thread::spawn(move || s.trigger()).join().unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting).await.unwrap().unwrap();
        assert!(shutdown.is_triggered());
        // A waiter that comes after the trigger returns at once.
        tokio::time::timeout(std::time::Duration::from_secs(1), shutdown.triggered())
            .await
            .unwrap();
    }
}

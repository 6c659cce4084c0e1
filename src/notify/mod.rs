//! Advocate notifications: which alerts an event causes, who receives them, and their delivery.
//!
//! - [`plan`] (pure, called by the pipeline for each batch) turns applied events into alerts for
//!   the students' advocates: a same-day absence alert, a flag alert. The resulting
//!   [`Notification`]s (or digest items) are written in the same store commit as the state change
//!   that caused them.
//! - [`tables`] holds notify's own tables in the store (advocates, absence marks, the
//!   notification queue, digest items, failed records, disabled endpoints).
//! - [`outbox`] is the delivery task: it sends pending notifications through [`webhook`] or
//!   [`email`], retries with exponential backoff and jitter, groups digests when they are due,
//!   and turns a notification that cannot be delivered into a kept [`FailedNotification`].
//! - [`address`] decides the channels that reach an advocate; [`caseload`] reads the assignments
//!   file of districts without a `roster.assignments` topic.
//!
//! Privacy: a notification carries the student id, what happened (absence or flag name), the date
//! and a link; never grades, behavior text, evidence figures or another advocate's students.

pub mod address;
pub mod caseload;
pub mod config;
pub mod email;
pub mod error;
pub mod outbox;
pub mod plan;
pub mod render;
pub mod tables;
pub mod webhook;

use serde::{Deserialize, Serialize};
use time::Date;
use xxhash_rust::xxh3::xxh3_128;

use crate::core::{AdvocateContact, Change, Flag, Version};

pub use config::NotifyConfig;
pub use error::{NotifyError, Retry};

/// An advocate's contact details as the latest assignment event carrying them gave them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdvocateRecord {
    pub contact: AdvocateContact,
    /// The assignment event's `(recorded_at, event_id)`: the greatest wins.
    pub version: Version,
}

/// What an advocate is told about one student.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub kind: AlertKind,
    pub student_id: String,
    /// The school date the alert is about (the absence's date, the flag's `as_of`).
    pub date: Date,
    /// For flag alerts: the flag and the `flag_id` of its raise.
    pub flag: Option<(Flag, String)>,
}

/// The two alerts of DESIGN.md (a flag alert is either a raise or a clear).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AlertKind {
    /// An absence dated today in the advocate's timezone.
    Absence,
    FlagRaised,
    FlagCleared,
}

impl AlertKind {
    /// The name receivers see (`kind` in the webhook body).
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Absence => "absence",
            AlertKind::FlagRaised => "flag.raised",
            AlertKind::FlagCleared => "flag.cleared",
        }
    }

    pub fn of_change(change: Change) -> AlertKind {
        match change {
            Change::Raised => AlertKind::FlagRaised,
            Change::Cleared => AlertKind::FlagCleared,
        }
    }
}

/// How an advocate is reached.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Destination {
    /// An HTTP(S) URL, signed with the advocate's (or the global) webhook secret.
    Webhook(String),
    /// An email address.
    Email(String),
}

impl Destination {
    /// The channel's name, for logs and metrics (never the address itself).
    pub fn channel(&self) -> &'static str {
        match self {
            Destination::Webhook(_) => "webhook",
            Destination::Email(_) => "email",
        }
    }
}

/// One message to one advocate through one channel: a single alert, or a daily digest.
/// Persisted in the store's outbox until delivered or failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// Stays the same on every retry and after a restart (`webhook-id`, email `Message-ID`);
    /// derived from what the notification is about, so a batch folded again after a crash
    /// produces the same id.
    pub id: String,
    pub advocate_id: String,
    pub to: Destination,
    /// `Some(local date)` for a daily digest.
    pub digest_of: Option<Date>,
    pub alerts: Vec<Alert>,
    /// Unix milliseconds (service clock) when it was queued.
    pub created_at_ms: i64,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// Unix milliseconds before which it is not tried again.
    pub next_attempt_ms: i64,
    /// Why the last attempt failed (no student data).
    pub last_error: Option<String>,
}

impl Notification {
    /// A notification queued now, with an id derived from `about`.
    pub fn new(
        about: &str,
        advocate_id: &str,
        to: Destination,
        digest_of: Option<Date>,
        alerts: Vec<Alert>,
        now_ms: i64,
    ) -> Notification {
        Notification {
            id: notification_id(about, advocate_id, to.channel()),
            advocate_id: advocate_id.to_owned(),
            to,
            digest_of,
            alerts,
            created_at_ms: now_ms,
            attempts: 0,
            next_attempt_ms: now_ms,
            last_error: None,
        }
    }
}

impl Notification {
    /// What its delivery's log lines name.
    pub fn telemetry(&self) -> crate::telemetry::NotificationRef<'_> {
        crate::telemetry::NotificationRef {
            id: &self.id,
            advocate_id: &self.advocate_id,
            channel: self.to.channel(),
            attempts: self.attempts,
        }
    }
}

/// `msg_` + 32 hex digits of xxh3-128 over what the message is about, its advocate and channel.
fn notification_id(about: &str, advocate_id: &str, channel: &str) -> String {
    let key = format!("{about}\u{0}{advocate_id}\u{0}{channel}");
    format!("msg_{:032x}", xxh3_128(key.as_bytes()))
}

/// A notification that will not be delivered, kept in the store and counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedNotification {
    pub id: String,
    pub advocate_id: String,
    /// `None`: the advocate had no usable channel.
    pub to: Option<Destination>,
    pub digest_of: Option<Date>,
    pub alerts: Vec<Alert>,
    pub created_at_ms: i64,
    pub attempts: u32,
    pub failed_at_ms: i64,
    /// Why (no student data): e.g. `HTTP 400`, `endpoint gone (HTTP 410)`, `gave up after …`.
    pub reason: String,
}

impl FailedNotification {
    /// Alerts for an advocate with no usable channel.
    pub fn unroutable(
        about: &str,
        advocate_id: &str,
        digest_of: Option<Date>,
        alerts: Vec<Alert>,
        reason: String,
        now_ms: i64,
    ) -> FailedNotification {
        FailedNotification {
            id: notification_id(about, advocate_id, "none"),
            advocate_id: advocate_id.to_owned(),
            to: None,
            digest_of,
            alerts,
            created_at_ms: now_ms,
            attempts: 0,
            failed_at_ms: now_ms,
            reason,
        }
    }

    pub fn of(n: Notification, reason: String, now_ms: i64) -> FailedNotification {
        FailedNotification {
            id: n.id,
            advocate_id: n.advocate_id,
            to: Some(n.to),
            digest_of: n.digest_of,
            alerts: n.alerts,
            created_at_ms: n.created_at_ms,
            attempts: n.attempts,
            failed_at_ms: now_ms,
            reason,
        }
    }
}

/// An alert waiting for its advocate's daily digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestItem {
    pub advocate_id: String,
    /// The advocate's local date of the digest it belongs to.
    pub digest_of: Date,
    pub alert: Alert,
    pub queued_at_ms: i64,
}

/// The running notification side of the service: the planner the pipeline uses, and the
/// delivery task's thread.
#[derive(Debug)]
pub struct Notifications {
    pub planner: std::sync::Arc<plan::Planner>,
    /// Wakes the delivery task: a commit queued notifications.
    pub wake: std::sync::Arc<tokio::sync::Notify>,
    shutdown: crate::shutdown::Shutdown,
    thread: std::thread::JoinHandle<Result<(), NotifyError>>,
}

impl Notifications {
    /// Reads the assignments file and starts the delivery task, which runs until
    /// [`Notifications::stop`]; `None` when no channel is configured (or `notify.enabled =
    /// false`). Errors name the config key.
    pub fn start(
        config: &NotifyConfig,
        store: crate::store::Store,
        clock: crate::clock::Clock,
        telemetry: std::sync::Arc<crate::telemetry::Telemetry>,
    ) -> Result<Option<Notifications>, NotifyError> {
        use std::sync::Arc;
        if !config.active() {
            return Ok(None);
        }
        let file = match &config.assignments_file {
            Some(path) => caseload::FileCaseloads::load(path).map_err(|e| {
                NotifyError::config("notify.assignments_file", format!("{}: {e}", path.display()))
            })?,
            None => caseload::FileCaseloads::default(),
        };
        let config = Arc::new(config.clone());
        let planner = Arc::new(plan::Planner::new(config.clone(), file));
        let wake = Arc::new(tokio::sync::Notify::new());
        let shutdown = crate::shutdown::Shutdown::new();
        let delivery = outbox::Delivery::new(
            store,
            config,
            planner.addresser().clone(),
            clock,
            outbox::Wakeups { wake: wake.clone(), shutdown: shutdown.clone() },
            telemetry,
        )?;
        let thread = std::thread::Builder::new()
            .name("ontrack-notify".into())
            .spawn(move || delivery.run_blocking())
            .map_err(NotifyError::Runtime)?;
        Ok(Some(Notifications { planner, wake, shutdown, thread }))
    }

    /// Stops the delivery task (sends in flight get a few seconds) and waits for it.
    pub fn stop(self) -> Result<(), NotifyError> {
        self.shutdown.trigger();
        self.thread.join().unwrap_or(Ok(()))
    }
}

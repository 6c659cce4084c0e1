//! Why a notification (or the notification side) failed, with what the caller should do.

use std::time::Duration;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The receiver may take it later (a timeout, a refused connection, HTTP 5xx or 429, an SMTP
    /// 4xx): try again, not before `after` when the receiver said so.
    #[error("{reason}")]
    Transient { reason: String, after: Option<Duration> },
    /// The webhook endpoint answered 410 Gone: disable it and fail.
    #[error("{reason}")]
    Gone { reason: String },
    /// The receiver refused it for good: fail now.
    #[error("{reason}")]
    Permanent { reason: String },
    /// A setting cannot be used: start-up stops, naming the key.
    #[error("{key}: {reason}")]
    Config { key: &'static str, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The delivery task's thread or runtime could not be started.
    #[error("notification delivery cannot start: {0}")]
    Runtime(std::io::Error),
}

/// What to do after a [`NotifyError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Try again after the backoff (and not before the duration, when there is one).
    Later(Option<Duration>),
    /// Disable the endpoint, then fail.
    DisableEndpoint,
    /// Fail now (kept as a failed-notification record), or stop when starting up.
    Never,
}

impl NotifyError {
    pub fn transient(reason: impl Into<String>) -> NotifyError {
        NotifyError::Transient { reason: reason.into(), after: None }
    }

    pub fn permanent(reason: impl Into<String>) -> NotifyError {
        NotifyError::Permanent { reason: reason.into() }
    }

    pub fn config(key: &'static str, reason: impl Into<String>) -> NotifyError {
        NotifyError::Config { key, reason: reason.into() }
    }

    /// The retry hint.
    pub fn retry(&self) -> Retry {
        match self {
            NotifyError::Transient { after, .. } => Retry::Later(*after),
            // The store may answer on the next attempt; the send is repeated, never lost.
            NotifyError::Store(_) => Retry::Later(None),
            NotifyError::Gone { .. } => Retry::DisableEndpoint,
            NotifyError::Permanent { .. }
            | NotifyError::Config { .. }
            | NotifyError::Runtime(_) => Retry::Never,
        }
    }
}

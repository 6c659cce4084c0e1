//! `[notify]`: who is alerted, how, and how delivery retries.

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// `[notify]`. Notifications are on when at least one channel is configured: a webhook secret
/// (global or per advocate) or an SMTP server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyConfig {
    /// `false` turns notifications off even with channels configured.
    pub enabled: bool,
    /// The link in every alert; `{student_id}`, `{date}` and `{flag}` are replaced (URL-encoded).
    /// Empty: alerts carry no link.
    pub link_template: String,
    /// IANA timezone of advocates whose record has none (decides what "today" is).
    pub default_timezone: String,
    /// `immediate` or `daily_digest`, for advocates without their own choice.
    pub delivery: DeliveryMode,
    /// Local time (`HH:MM`, advocate's timezone) of the daily digest.
    pub digest_at: String,
    /// A flag change alerts only when the event behind it is this recent (its `date` or its
    /// `recorded_at` within this many days of today), so a backfill of old history, or a state
    /// rebuilt from the topics, does not alert advocates about long-past flags.
    pub flag_alert_window_days: u32,
    /// For districts without a `roster.assignments` topic: a CSV (header `student_id,advocate_id`
    /// and optional `name,email,webhook_url,timezone`) or JSON Lines (`{"student_id",
    /// "advocate_id", "advocate": {…}}`) file, read at start-up. An assignment from the topic
    /// wins over the file's.
    pub assignments_file: Option<PathBuf>,
    pub retry: RetryConfig,
    pub webhook: WebhookConfig,
    pub email: EmailConfig,
    /// Per-advocate choices, by `advocate_id`.
    pub advocates: BTreeMap<String, AdvocatePrefs>,
}

/// `immediate`: every alert is sent when it happens; `daily_digest`: the day's alerts are sent
/// together at `digest_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryMode {
    Immediate,
    DailyDigest,
}

/// `[notify.retry]`: exponential backoff with jitter, then a failed-notification record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Delay before the first retry; it doubles on each retry ...
    pub initial_delay_ms: u64,
    /// ... up to this (each delay is drawn between half of it and all of it).
    pub max_delay_ms: u64,
    /// A notification still undelivered this long after it was queued fails on its next error.
    pub max_age_s: u64,
}

/// `[notify.webhook]`: Standard Webhooks signing and the HTTP client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// `whsec_` + base64 key signing every webhook (an advocate's own secret wins). Empty: only
    /// advocates with their own secret get webhooks.
    pub secret: String,
    pub timeout_ms: u64,
}

/// `[notify.email]`: the SMTP server. Email is off while `smtp_host` is empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmailConfig {
    pub smtp_host: String,
    pub smtp_port: u16,
    /// `starttls` (required, the default), `tls` (implicit TLS, usually port 465), or `plain`
    /// (no encryption: only for a local test server).
    pub security: SmtpSecurity,
    pub username: String,
    pub password: String,
    /// The sender, e.g. `ontrack <ontrack@district.example>`.
    pub from: String,
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpSecurity {
    Starttls,
    Tls,
    Plain,
}

/// `[notify.advocates."<advocate_id>"]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdvocatePrefs {
    pub delivery: Option<DeliveryMode>,
    pub digest_at: Option<String>,
    /// This advocate's own `whsec_` secret.
    pub webhook_secret: Option<String>,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            enabled: true,
            link_template: String::new(),
            default_timezone: "UTC".into(),
            delivery: DeliveryMode::Immediate,
            digest_at: "16:00".into(),
            flag_alert_window_days: 14,
            assignments_file: None,
            retry: RetryConfig::default(),
            webhook: WebhookConfig::default(),
            email: EmailConfig::default(),
            advocates: BTreeMap::new(),
        }
    }
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig { initial_delay_ms: 1_000, max_delay_ms: 300_000, max_age_s: 86_400 }
    }
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig { secret: String::new(), timeout_ms: 15_000 }
    }
}

impl Default for EmailConfig {
    fn default() -> Self {
        EmailConfig {
            smtp_host: String::new(),
            smtp_port: 587,
            security: SmtpSecurity::Starttls,
            username: String::new(),
            password: String::new(),
            from: String::new(),
            timeout_ms: 15_000,
        }
    }
}

/// A `HH:MM` local time.
pub fn parse_local_time(s: &str) -> Option<jiff::civil::Time> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    jiff::civil::Time::new(h.parse().ok()?, m.parse().ok()?, 0, 0).ok()
}

/// The key bytes of a `whsec_` secret.
pub fn secret_key(secret: &str) -> Option<Vec<u8>> {
    let b64 = secret.strip_prefix("whsec_")?;
    base64::engine::general_purpose::STANDARD.decode(b64).ok().filter(|k| !k.is_empty())
}

impl NotifyConfig {
    /// Whether any channel is configured (and notifications are not turned off).
    pub fn active(&self) -> bool {
        self.enabled
            && (!self.webhook.secret.is_empty()
                || self.advocates.values().any(|a| a.webhook_secret.is_some())
                || !self.email.smtp_host.is_empty())
    }

    /// The advocate's delivery mode and digest time.
    pub fn delivery_of(&self, advocate_id: &str) -> (DeliveryMode, jiff::civil::Time) {
        let prefs = self.advocates.get(advocate_id);
        let mode = prefs.and_then(|p| p.delivery).unwrap_or(self.delivery);
        let at = prefs.and_then(|p| p.digest_at.as_deref()).unwrap_or(&self.digest_at);
        // Checked at start-up.
        (mode, parse_local_time(at).unwrap_or(jiff::civil::Time::midnight()))
    }

    /// The advocate's webhook signing key: their own, else the global one.
    pub fn webhook_key(&self, advocate_id: &str) -> Option<Vec<u8>> {
        let own = self.advocates.get(advocate_id).and_then(|p| p.webhook_secret.as_deref());
        secret_key(own.unwrap_or(&self.webhook.secret))
    }

    /// Every mistake the service would otherwise find later, as `(key, fix)`.
    pub fn check(&self) -> Result<(), (String, String)> {
        let fail = |key: &str, why: &str| Err((format!("notify.{key}"), why.to_owned()));
        if jiff::tz::TimeZone::get(&self.default_timezone).is_err() {
            return fail("default_timezone", "must be an IANA timezone, e.g. America/Chicago");
        }
        if parse_local_time(&self.digest_at).is_none() {
            return fail("digest_at", "must be a local time HH:MM, e.g. 16:00");
        }
        let mut rest = self.link_template.as_str();
        while let Some(open) = rest.find('{') {
            let Some(close) = rest[open..].find('}') else {
                return fail("link_template", "has a { without }");
            };
            let name = &rest[open + 1..open + close];
            if !["student_id", "date", "flag"].contains(&name) {
                return fail(
                    "link_template",
                    &format!("{{{name}}} is unknown; use {{student_id}}, {{date}} or {{flag}}"),
                );
            }
            rest = &rest[open + close..];
        }
        let r = &self.retry;
        if r.initial_delay_ms == 0 || r.max_delay_ms < r.initial_delay_ms {
            return fail(
                "retry",
                "initial_delay_ms must be at least 1 and max_delay_ms at least initial_delay_ms",
            );
        }
        if !self.webhook.secret.is_empty() && secret_key(&self.webhook.secret).is_none() {
            return fail("webhook.secret", "must be whsec_ followed by a base64 key");
        }
        if self.webhook.timeout_ms == 0 {
            return fail("webhook.timeout_ms", "must be at least 1");
        }
        for (id, prefs) in &self.advocates {
            let key = |k: &str| format!("advocates.\"{id}\".{k}");
            if let Some(s) = &prefs.webhook_secret
                && secret_key(s).is_none()
            {
                return fail(&key("webhook_secret"), "must be whsec_ followed by a base64 key");
            }
            if let Some(t) = &prefs.digest_at
                && parse_local_time(t).is_none()
            {
                return fail(&key("digest_at"), "must be a local time HH:MM, e.g. 16:00");
            }
        }
        let e = &self.email;
        if !e.smtp_host.is_empty() {
            if e.from.parse::<lettre::message::Mailbox>().is_err() {
                return fail(
                    "email.from",
                    "must be a sender address, e.g. ontrack <ontrack@district.example>",
                );
            }
            if e.username.is_empty() != e.password.is_empty() {
                return fail("email.username", "give both username and password, or neither");
            }
        }
        Ok(())
    }
}

//! Inside a batch: which alerts an applied event causes, for which advocate, by which channel.
//!
//! Called by the pipeline after each event is folded, with the student's new state; everything it
//! decides goes into the batch's [`NotifyCommit`], so a notification is durable exactly when the
//! state change that caused it is.

use std::collections::HashMap;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use time::Date;

use super::caseload::FileCaseloads;
use super::config::{DeliveryMode, NotifyConfig};
use super::{
    AdvocateRecord, Alert, AlertKind, DigestItem, FailedNotification, Notification, from_jiff,
};
use crate::core::{AdvocateContact, Change, Event, EventBody, FlagChange, StudentState, Version};
use crate::store::{NotifyCommit, Store, StoreError};

/// The notification planner: configuration and the assignments file.
#[derive(Debug)]
pub struct Planner {
    config: NotifyConfig,
    file: FileCaseloads,
    default_tz: TimeZone,
}

/// A batch's notification writes, with what the batch already decided (write batches cannot read
/// their own writes).
#[derive(Debug, Default)]
pub struct Pending {
    advocates: HashMap<String, AdvocateRecord>,
    absence_alerted: HashMap<String, Date>,
    out: NotifyCommit,
}

impl Pending {
    pub fn into_commit(mut self) -> NotifyCommit {
        self.out.advocates = self.advocates.into_iter().collect();
        self.out.absence_alerted = self.absence_alerted.into_iter().collect();
        self.out
    }
}

impl Planner {
    /// `config` must have passed [`NotifyConfig::check`].
    pub fn new(config: NotifyConfig, file: FileCaseloads) -> Planner {
        let default_tz = TimeZone::get(&config.default_timezone).unwrap_or(TimeZone::UTC);
        Planner { config, file, default_tz }
    }

    pub fn config(&self) -> &NotifyConfig {
        &self.config
    }

    /// Plans the alerts of one applied (not duplicate) event; `state` is the student's state after
    /// it, `changes` the flag changes it caused.
    pub fn on_event(
        &self,
        store: &Store,
        pending: &mut Pending,
        event: &Event,
        state: &StudentState,
        changes: &[FlagChange],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        if let EventBody::AdvocateAssigned { advocate_id: Some(id), advocate: Some(contact) } =
            &event.body
        {
            self.update_contact(store, pending, id, contact, Version::of(event))?;
        }
        let advocate_id = match state.assignment() {
            // An assignment from the topic wins over the file's; `advocate_id: null` ends it.
            Some(a) => a.advocate_id.as_deref(),
            None => self.file.advocate_of.get(&*event.student_id).map(String::as_str),
        };
        let Some(advocate_id) = advocate_id else { return Ok(()) };
        // Every timezone's today is within a day of UTC's. Events about other dates and flag
        // changes of old events cannot alert, so they cost no lookup: a backfill, or a partition
        // rebuilt from its beginning, streams millions of them.
        let utc_today = from_jiff(TimeZone::UTC.to_datetime(now).date());
        let may_absence = match event.body {
            EventBody::AttendanceRecorded { .. } => {
                (event.date - utc_today).whole_days().abs() <= 1
            }
            EventBody::AdvocateAssigned { .. } => true,
            _ => false,
        };
        let may_flag = !changes.is_empty() && self.is_recent(event, utc_today, now, 1);
        if !may_absence && !may_flag {
            return Ok(());
        }
        let contact = self.contact(store, pending, advocate_id)?;
        let tz = contact
            .as_ref()
            .and_then(|c| c.timezone.as_deref())
            .and_then(|name| TimeZone::get(name).ok())
            .unwrap_or_else(|| self.default_tz.clone());
        let today = from_jiff(tz.to_datetime(now).date());

        let mut alerts = Vec::new();
        let student = &*event.student_id;
        // Today's absence alerts when its record is folded, or when the assignment that puts the
        // student on a caseload is (the two topics are consumed in no particular order).
        let about_today = match event.body {
            EventBody::AttendanceRecorded { .. } => event.date == today,
            EventBody::AdvocateAssigned { .. } => true,
            _ => false,
        };
        if about_today && state.attendance_on(today).is_some_and(|s| s.is_absence()) {
            let alerted = match pending.absence_alerted.get(student) {
                Some(d) => Some(*d),
                None => store.absence_alerted(student)?,
            };
            if alerted != Some(today) {
                pending.absence_alerted.insert(student.to_owned(), today);
                alerts.push(Alert {
                    kind: AlertKind::Absence,
                    student_id: student.to_owned(),
                    date: today,
                    flag: None,
                });
            }
        }
        if !changes.is_empty() && self.is_recent(event, today, now, 0) {
            // A move to a new school year clears every flag with no evidence: bookkeeping, not
            // news about the student.
            let news =
                changes.iter().filter(|c| c.evidence.is_some() || c.change == Change::Raised);
            alerts.extend(news.map(|c| Alert {
                kind: AlertKind::of_change(c.change),
                student_id: student.to_owned(),
                date: c.as_of,
                flag: Some((c.flag, c.flag_id())),
            }));
        }
        for alert in alerts {
            self.route(pending, advocate_id, contact.as_ref(), &tz, alert, now);
        }
        Ok(())
    }

    /// Whether the event behind a flag change is recent enough to alert about (with `slack_days`
    /// more of window).
    fn is_recent(&self, event: &Event, today: Date, now: Timestamp, slack_days: i64) -> bool {
        let window = i64::from(self.config.flag_alert_window_days) + slack_days;
        let by_date = (today - event.date).whole_days() <= window;
        let recorded_s = event.recorded_at.secs;
        by_date || now.as_second() - recorded_s <= window * 86_400
    }

    fn update_contact(
        &self,
        store: &Store,
        pending: &mut Pending,
        advocate_id: &str,
        contact: &AdvocateContact,
        version: Version,
    ) -> Result<(), StoreError> {
        let current = match pending.advocates.get(advocate_id) {
            Some(r) => Some(r.version.clone()),
            None => store.advocate(advocate_id)?.map(|r| r.version),
        };
        if current.is_some_and(|v| v >= version) {
            return Ok(());
        }
        if let Some(url) = &contact.webhook_url {
            pending.out.enabled_endpoints.push(url.clone());
        }
        let record = AdvocateRecord { contact: contact.clone(), version };
        pending.advocates.insert(advocate_id.to_owned(), record);
        Ok(())
    }

    /// The advocate's contact details: streamed (this batch's, then the store's), else the file's.
    fn contact(
        &self,
        store: &Store,
        pending: &Pending,
        advocate_id: &str,
    ) -> Result<Option<AdvocateContact>, StoreError> {
        match pending.advocates.get(advocate_id) {
            Some(r) => Ok(Some(r.contact.clone())),
            None => self.stored_contact(store, advocate_id),
        }
    }

    /// The advocate's contact details outside a batch: the store's, else the file's.
    pub fn stored_contact(
        &self,
        store: &Store,
        advocate_id: &str,
    ) -> Result<Option<AdvocateContact>, StoreError> {
        match store.advocate(advocate_id)? {
            Some(r) => Ok(Some(r.contact)),
            None => Ok(self.file.contacts.get(advocate_id).cloned()),
        }
    }

    /// Queues `alert` for `advocate_id`: now on each channel, or into the next daily digest.
    fn route(
        &self,
        pending: &mut Pending,
        advocate_id: &str,
        contact: Option<&AdvocateContact>,
        tz: &TimeZone,
        alert: Alert,
        now: Timestamp,
    ) {
        let now_ms = now.as_millisecond();
        let (mode, at) = self.config.delivery_of(advocate_id);
        if mode == DeliveryMode::DailyDigest {
            let mut day = tz.to_datetime(now).date();
            // The first digest time after now: today's, or tomorrow's once today's has passed.
            let due = loop {
                let due = tz.to_timestamp(day.to_datetime(at));
                match due {
                    Ok(due) if due > now => break due,
                    _ => day = day.tomorrow().unwrap_or(day),
                }
            };
            let item = DigestItem {
                advocate_id: advocate_id.to_owned(),
                digest_of: from_jiff(day),
                alert,
                queued_at_ms: now_ms,
            };
            pending.out.digest_items.push((due.as_millisecond(), item));
            return;
        }
        let about = alert_about(&alert);
        let (notifications, failed) =
            self.addressed(&about, advocate_id, contact, None, vec![alert], now_ms);
        pending.out.notifications.extend(notifications);
        pending.out.failed.extend(failed);
    }

    /// One notification per usable channel of the advocate, or a failure saying why there is none.
    pub fn addressed(
        &self,
        about: &str,
        advocate_id: &str,
        contact: Option<&AdvocateContact>,
        digest_of: Option<Date>,
        alerts: Vec<Alert>,
        now_ms: i64,
    ) -> (Vec<Notification>, Option<FailedNotification>) {
        let mut out = Vec::new();
        let c = contact.cloned().unwrap_or_default();
        let webhook_key = self.config.webhook_key(advocate_id).is_some();
        let email_on = !self.config.email.smtp_host.is_empty();
        if let Some(url) = c.webhook_url.filter(|u| !u.is_empty() && webhook_key) {
            let to = super::Destination::Webhook(url);
            out.push(Notification::new(about, advocate_id, to, digest_of, alerts.clone(), now_ms));
        }
        if let Some(address) = c.email.filter(|e| !e.is_empty() && email_on) {
            let to = super::Destination::Email(address);
            out.push(Notification::new(about, advocate_id, to, digest_of, alerts.clone(), now_ms));
        }
        if !out.is_empty() {
            return (out, None);
        }
        let reason = match contact {
            None => format!(
                "advocate {advocate_id} has no contact details: send an assignment with an \
                 `advocate` object, or list them in notify.assignments_file"
            ),
            Some(_) => format!(
                "advocate {advocate_id} has no usable channel: a webhook_url needs a secret \
                 (notify.webhook.secret), an email needs an SMTP server (notify.email.smtp_host)"
            ),
        };
        let failed =
            FailedNotification::unroutable(about, advocate_id, digest_of, alerts, reason, now_ms);
        (Vec::new(), Some(failed))
    }
}

/// What an alert is about, for its notification id: a student's absence on a date, or one change
/// of one flag.
fn alert_about(alert: &Alert) -> String {
    match &alert.flag {
        Some((_, flag_id)) => format!("{}/{flag_id}", alert.kind.as_str()),
        None => format!("{}/{}/{}", alert.kind.as_str(), alert.student_id, alert.date),
    }
}

/// The digest's id basis: one per advocate and local date.
pub fn digest_about(date: Date) -> String {
    format!("digest/{date}")
}

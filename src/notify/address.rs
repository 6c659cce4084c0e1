//! Addressing: which channels reach an advocate, for the planner (single alerts) and the
//! delivery task (digests).

use std::collections::HashMap;
use std::sync::Arc;

use time::Date;

use super::config::NotifyConfig;
use super::{Alert, Destination, FailedNotification, Notification};
use crate::core::AdvocateContact;

/// The channels configured and the assignments file's contact details.
#[derive(Debug, Clone)]
pub struct Addresser {
    config: Arc<NotifyConfig>,
    /// Contact details from `notify.assignments_file` (a streamed record wins over them).
    file_contacts: Arc<HashMap<String, AdvocateContact>>,
}

impl Addresser {
    pub fn new(
        config: Arc<NotifyConfig>,
        file_contacts: HashMap<String, AdvocateContact>,
    ) -> Addresser {
        Addresser { config, file_contacts: Arc::new(file_contacts) }
    }

    /// The assignments file's contact details of an advocate.
    pub fn file_contact(&self, advocate_id: &str) -> Option<&AdvocateContact> {
        self.file_contacts.get(advocate_id)
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
            let to = Destination::Webhook(url);
            out.push(Notification::new(about, advocate_id, to, digest_of, alerts.clone(), now_ms));
        }
        if let Some(address) = c.email.filter(|e| !e.is_empty() && email_on) {
            let to = Destination::Email(address);
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

//! The notification side's tables in the store, and the reads and writes on them: the pipeline
//! loads a batch's [`View`] and writes its [`Intents`] in the batch's commit; the delivery task
//! works the queues.

use time::Date;

use super::plan::{Facts, Intents, View};
use super::{AdvocateRecord, DigestItem, FailedNotification, Notification};
use crate::store::table::{DueSeq, Postcard, Seq, Text};
use crate::store::{Batch, Store, StoreError, Table};

/// `a` + advocate_id → the advocate's latest streamed contact details.
pub const ADVOCATES: Table<Text, Postcard<AdvocateRecord>> = Table::new(b'a', "advocates");
/// `d` + student_id → the date of the student's last same-day absence alert.
pub const ABSENCE_MARKS: Table<Text, Postcard<Date>> = Table::new(b'd', "absence alert marks");
/// `n` + sequence → a notification waiting for delivery (with its attempts so far).
pub const NOTIFICATIONS: Table<Seq, Postcard<Notification>> = Table::new(b'n', "notifications");
/// `g` + due (unix ms) + sequence → an alert waiting for its advocate's daily digest.
pub const DIGEST_ITEMS: Table<DueSeq, Postcard<DigestItem>> = Table::new(b'g', "digest items");
/// `f` + sequence → a notification that will not be delivered, kept.
pub const FAILED: Table<Seq, Postcard<FailedNotification>> =
    Table::new(b'f', "failed notifications");
/// `w` + URL → why a webhook endpoint was disabled (it answered 410 Gone).
pub const DISABLED_ENDPOINTS: Table<Text, Postcard<String>> =
    Table::new(b'w', "disabled webhook endpoints");

/// The prefixes of these tables, for the check that no two tables share one.
pub const PREFIXES: [(u8, &str); 6] = [
    (ADVOCATES.prefix(), ADVOCATES.name),
    (ABSENCE_MARKS.prefix(), ABSENCE_MARKS.name),
    (NOTIFICATIONS.prefix(), NOTIFICATIONS.name),
    (DIGEST_ITEMS.prefix(), DIGEST_ITEMS.name),
    (FAILED.prefix(), FAILED.name),
    (DISABLED_ENDPOINTS.prefix(), DISABLED_ENDPOINTS.name),
];

impl View {
    /// The stored records that `facts` name, read once.
    pub fn load(store: &Store, facts: &[Facts]) -> Result<View, StoreError> {
        let (advocates, students) = View::wanted(facts);
        let mut view = View::default();
        for id in advocates {
            view.advocates.insert(id.to_owned(), ADVOCATES.get(store, &id)?);
        }
        for id in students {
            view.absence_marks.insert(id.to_owned(), ABSENCE_MARKS.get(store, &id)?);
        }
        Ok(view)
    }
}

impl Intents {
    /// Adds the intents' writes to the batch that also holds the states that caused them.
    pub fn write(&self, batch: &mut Batch<'_>) -> Result<(), StoreError> {
        for (id, record) in &self.advocates {
            ADVOCATES.put(batch, &id.as_str(), record);
        }
        for (id, date) in &self.absence_alerted {
            ABSENCE_MARKS.put(batch, &id.as_str(), date);
        }
        for n in &self.notifications {
            NOTIFICATIONS.push(batch, n)?;
        }
        for (due, item) in &self.digest_items {
            DIGEST_ITEMS.push(batch, *due, item)?;
        }
        for f in &self.failed {
            FAILED.push(batch, f)?;
        }
        for url in &self.enabled_endpoints {
            DISABLED_ENDPOINTS.remove(batch, &url.as_str());
        }
        Ok(())
    }
}

/// An advocate's latest streamed contact details.
pub fn advocate(store: &Store, advocate_id: &str) -> Result<Option<AdvocateRecord>, StoreError> {
    ADVOCATES.get(store, &advocate_id)
}

/// Notifications waiting for delivery, oldest first, with their sequence numbers.
pub fn pending(
    store: &Store,
) -> impl Iterator<Item = Result<(u64, Notification), StoreError>> + '_ {
    NOTIFICATIONS.iter(store)
}

/// Kept failed notifications, oldest first.
pub fn failed(
    store: &Store,
) -> impl Iterator<Item = Result<(u64, FailedNotification), StoreError>> + '_ {
    FAILED.iter(store)
}

/// Records the outcome of an attempt: `Ok(None)` delivered (removed), `Ok(Some(n))` to be
/// retried as `n`, `Err(failed)` moved to the failed records. Not flushed: a crash before the
/// next flush repeats the attempt, which the receiver sees as a repeat of the same id.
pub fn attempted(
    store: &Store,
    seq: u64,
    outcome: Result<Option<&Notification>, &FailedNotification>,
) -> Result<(), StoreError> {
    let mut batch = store.batch();
    match outcome {
        Ok(None) => NOTIFICATIONS.remove(&mut batch, &seq),
        Ok(Some(retry)) => NOTIFICATIONS.put(&mut batch, &seq, retry),
        Err(failed) => {
            NOTIFICATIONS.remove(&mut batch, &seq);
            FAILED.push(&mut batch, failed)?;
        }
    }
    store.apply(batch)
}

/// The key of a digest item: `(due unix ms, sequence)`.
pub type DigestKey = (i64, u64);

/// Digest items due at or before `now_ms`, with their keys, in due order.
pub fn due_digest_items(
    store: &Store,
    now_ms: i64,
) -> Result<Vec<(DigestKey, DigestItem)>, StoreError> {
    DIGEST_ITEMS.due(store, now_ms).collect()
}

/// Replaces digest items by the notifications (or failures) grouping them, atomically.
pub fn digested(
    store: &Store,
    items: &[DigestKey],
    notifications: &[Notification],
    failed: &[FailedNotification],
) -> Result<(), StoreError> {
    let mut batch = store.batch();
    for key in items {
        DIGEST_ITEMS.remove(&mut batch, key);
    }
    for n in notifications {
        NOTIFICATIONS.push(&mut batch, n)?;
    }
    for f in failed {
        FAILED.push(&mut batch, f)?;
    }
    store.commit(batch)
}

/// Why a webhook endpoint is disabled, if it is.
pub fn endpoint_disabled(store: &Store, url: &str) -> Result<Option<String>, StoreError> {
    DISABLED_ENDPOINTS.get(store, &url)
}

/// Disables a webhook endpoint until an advocate's newer record names it again.
pub fn disable_endpoint(store: &Store, url: &str, why: &str) -> Result<(), StoreError> {
    let mut batch = store.batch();
    DISABLED_ENDPOINTS.put(&mut batch, &url, &why.to_owned());
    store.apply(batch)
}

/// How much waits in the notification queues.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepths {
    pub notifications: usize,
    /// Unix milliseconds when the oldest waiting notification was queued.
    pub oldest_notification_ms: Option<i64>,
    pub digest: usize,
    pub failed: usize,
}

/// The depths of the notification queues (scans: for gauges every few seconds).
pub fn queue_depths(store: &Store) -> Result<QueueDepths, StoreError> {
    let mut oldest = None;
    let mut notifications = 0;
    for item in pending(store) {
        let (_, n) = item?;
        notifications += 1;
        oldest = Some(oldest.map_or(n.created_at_ms, |o: i64| o.min(n.created_at_ms)));
    }
    Ok(QueueDepths {
        notifications,
        oldest_notification_ms: oldest,
        digest: DIGEST_ITEMS.count(store),
        failed: FAILED.count(store),
    })
}

//! What a batch publishes: flag events (the output contract), dead letters, and the counts of
//! raised flags behind the `ontrack_flags_raised` gauge (a table of the pipeline's own).

use std::collections::BTreeMap;

use time::OffsetDateTime;

use super::{InputMessage, Topics};
use crate::core::{Change, Flag, FlagChange};
use crate::kafka::publisher::SOURCE_TIME_HEADER;
use crate::output::FlagEvent;
use crate::store::table::{BigEndianI64, TextPair};
use crate::store::{Batch, OUTBOX, OutboxRecord, Store, StoreError, Table};

/// `r` + flag name + 0 + school_id → how many of this store's students have the flag raised,
/// by the school of the event that raised or cleared it (kept with the states, for the gauge).
pub const RAISED: Table<TextPair, BigEndianI64> = Table::new(b'r', "raised flag counts");

/// Every `(flag, school, count)` stored.
pub fn raised_counts(store: &Store) -> Result<Vec<(String, String, i64)>, StoreError> {
    RAISED.iter(store).map(|item| item.map(|((flag, school), n)| (flag, school, n))).collect()
}

/// A batch's messages to publish, in order, and its changes of the raised counts.
pub(super) struct Outputs<'p> {
    topics: &'p Topics,
    emitted_at: OffsetDateTime,
    pub records: Vec<OutboxRecord>,
    /// Flags raised now, by (flag, school): the batch's changes.
    raised_delta: BTreeMap<(Flag, String), i64>,
}

impl<'p> Outputs<'p> {
    pub fn new(topics: &'p Topics, now: jiff::Timestamp) -> Outputs<'p> {
        // `emitted_at` is written by the output contract's formatter (`time`).
        let emitted_at = OffsetDateTime::from_unix_timestamp_nanos(now.as_nanosecond())
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        Outputs { topics, emitted_at, records: Vec::new(), raised_delta: BTreeMap::new() }
    }

    /// The flag events of one event's changes; `source_ms` is when the causing event happened
    /// (for the event-to-flag latency).
    pub fn flags(&mut self, changes: &[FlagChange], source_ms: i64) {
        for change in changes {
            let delta =
                self.raised_delta.entry((change.flag, change.school_id.to_string())).or_default();
            *delta += if change.change == Change::Raised { 1 } else { -1 };
            let payload = serde_json::to_vec(&FlagEvent::new(change, self.emitted_at))
                .expect("flag events always serialize");
            self.records.push(OutboxRecord {
                topic: self.topics.flags.clone(),
                key: Some(change.student_id.as_bytes().to_vec()),
                payload,
                headers: vec![(SOURCE_TIME_HEADER.into(), source_ms.to_string().into_bytes())],
            });
        }
    }

    /// The message as it came (key and bytes unchanged), with where it came from and why.
    pub fn dead_letter(&mut self, m: &InputMessage<'_>, reason: &str) {
        self.records.push(dead_letter_record(&self.topics.dead_letter, m, reason));
    }

    /// Adds the outbox records and the new raised counts to `batch`; returns the counts
    /// `(flag, school, count)` for the gauge.
    pub fn write(
        self,
        batch: &mut Batch<'_>,
    ) -> Result<Vec<(&'static str, String, i64)>, StoreError> {
        for record in &self.records {
            OUTBOX.push(batch, record)?;
        }
        let mut counts = Vec::with_capacity(self.raised_delta.len());
        for ((flag, school), delta) in self.raised_delta {
            let stored = RAISED.get(batch.store(), &(flag.as_str(), &school))?.unwrap_or(0);
            // A clear by an event of another school than the raise's cannot go below zero.
            let count = (stored + delta).max(0);
            RAISED.put(batch, &(flag.as_str(), &school), &count);
            counts.push((flag.as_str(), school, count));
        }
        Ok(counts)
    }
}

/// A dead letter for `topic`: the message as it came (key and bytes unchanged), with where it
/// came from and why (the `ontrack.error.*` headers).
pub fn dead_letter_record(topic: &str, m: &InputMessage<'_>, reason: &str) -> OutboxRecord {
    OutboxRecord {
        topic: topic.to_owned(),
        key: m.key.map(<[u8]>::to_vec),
        payload: m.payload.unwrap_or_default().to_vec(),
        headers: vec![
            ("ontrack.error.topic".into(), m.topic.as_bytes().to_vec()),
            ("ontrack.error.partition".into(), m.partition.to_string().into_bytes()),
            ("ontrack.error.offset".into(), m.offset.to_string().into_bytes()),
            ("ontrack.error.reason".into(), reason.as_bytes().to_vec()),
        ],
    }
}

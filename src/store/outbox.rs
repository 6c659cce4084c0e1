//! The Kafka outbox: messages to publish (flag events, dead letters), written in the same batch
//! as the states that produced them and removed when the broker acknowledges them.

use serde::{Deserialize, Serialize};

use super::table::{Postcard, Seq, Table};
use super::{Store, StoreError};

/// A message to publish once its commit is durable; removed when the broker acknowledges it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxRecord {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    /// Kafka headers, in order (the dead-letter topic's error headers).
    pub headers: Vec<(String, Vec<u8>)>,
}

/// `x` + sequence (u64, BE) → an [`OutboxRecord`], in commit order.
pub const OUTBOX: Table<Seq, Postcard<OutboxRecord>> = Table::new(b'x', "kafka outbox");

impl Store {
    /// The outbox, oldest first, with each record's sequence number.
    pub fn pending(&self) -> impl Iterator<Item = Result<(u64, OutboxRecord), StoreError>> + '_ {
        OUTBOX.iter(self)
    }

    /// The outbox records after sequence number `after` (all with `None`), oldest first.
    pub fn pending_after(
        &self,
        after: Option<u64>,
    ) -> impl Iterator<Item = Result<(u64, OutboxRecord), StoreError>> + '_ {
        OUTBOX.iter_from(self, &after.map_or(0, |s| s.saturating_add(1)))
    }

    /// Removes published records from the outbox (not flushed: a record lost from this removal
    /// by a crash is published again, which consumers see as a repeat of the same message).
    pub fn acked(&self, seqs: &[u64]) -> Result<(), StoreError> {
        let mut batch = self.batch();
        for seq in seqs {
            OUTBOX.remove(&mut batch, seq);
        }
        self.apply(batch)
    }
}

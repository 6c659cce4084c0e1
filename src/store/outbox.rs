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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::table::{Postcard, Seq, Table};

    /// An outbox record keyed `key` (the store's tests).
    pub(crate) fn record(topic: &str, key: &str) -> OutboxRecord {
        let headers = vec![("h".to_owned(), b"v".to_vec())];
        OutboxRecord {
            topic: topic.into(),
            key: Some(key.into()),
            payload: b"{}".to_vec(),
            headers,
        }
    }

    fn commit(store: &Store, records: &[OutboxRecord]) {
        let mut batch = store.batch();
        for r in records {
            OUTBOX.push(&mut batch, r).unwrap();
        }
        store.commit(batch).unwrap();
    }

    fn keys(store: &Store) -> Vec<String> {
        let key = |r: OutboxRecord| String::from_utf8(r.key.unwrap()).unwrap();
        store.pending().map(|r| key(r.unwrap().1)).collect()
    }

    #[test]
    fn acked_records_leave_the_outbox_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for batch in 0..3u8 {
            let records: Vec<_> = (0..2).map(|i| record("t", &format!("{batch}-{i}"))).collect();
            commit(&store, &records);
        }
        let pending: Vec<(u64, OutboxRecord)> = store.pending().map(Result::unwrap).collect();
        assert_eq!(keys(&store), ["0-0", "0-1", "1-0", "1-1", "2-0", "2-1"]);
        store.acked(&[pending[0].0, pending[2].0]).unwrap();
        assert_eq!(keys(&store), ["0-1", "1-1", "2-0", "2-1"]);
    }

    /// Sequence numbers go on rising across a reopen: records queued after a restart come after
    /// the ones left from before it.
    #[test]
    fn the_outbox_keeps_its_order_across_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            commit(&store, &[record("t", "before-1"), record("t", "before-2")]);
            let first = store.pending().next().unwrap().unwrap().0;
            store.acked(&[first]).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        commit(&store, &[record("t", "after")]);
        assert_eq!(keys(&store), ["before-2", "after"]);
    }

    /// The publisher follows the outbox by sequence number: records queued after a restart come
    /// after those it published, even once it has removed every one of them.
    #[test]
    fn records_queued_after_the_outbox_was_emptied_come_after_those_published() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            commit(&store, &[record("t", "a"), record("t", "b"), record("t", "c")]);
        }
        let store = Store::open(dir.path()).unwrap();
        let published: Vec<u64> = store.pending().map(|r| r.unwrap().0).collect();
        store.acked(&published).unwrap();
        commit(&store, &[record("t", "after")]);
        let last = published.last().copied();
        let after: Vec<String> = (store.pending_after(last))
            .map(|r| String::from_utf8(r.unwrap().1.key.unwrap()).unwrap())
            .collect();
        assert_eq!(after, ["after"]);
    }

    #[test]
    fn pending_after_gives_only_later_records_and_stops_at_the_outbox_end() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut batch = store.batch();
        for i in 0..3 {
            OUTBOX.push(&mut batch, &record("t", &format!("k{i}"))).unwrap();
        }
        // Another queue table right after the outbox's prefix holds no outbox records.
        const NEXT: Table<Seq, Postcard<String>> = Table::new(b'x' + 1, "a later queue");
        NEXT.push(&mut batch, &"not an outbox record".to_owned()).unwrap();
        store.commit(batch).unwrap();
        let all: Vec<u64> = store.pending_after(None).map(|r| r.unwrap().0).collect();
        assert_eq!(all.len(), 3);
        let later: Vec<u64> = store.pending_after(Some(all[0])).map(|r| r.unwrap().0).collect();
        assert_eq!(later, all[1..]);
        assert_eq!(store.pending_after(Some(all[2])).count(), 0);
    }
}

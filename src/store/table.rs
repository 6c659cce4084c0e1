//! Typed tables on the store's one keyspace.
//!
//! A table is a one-byte prefix, a key codec and a value codec, declared once (as a `const`) by
//! the module that owns what it holds: the store's own tables (student states, the partition
//! index, input offsets, the Kafka outbox) in `store`, the notification queues in `notify`, the
//! raised-flag counts in `pipeline`. Every key a table writes is `prefix + key bytes`, built by its
//! key codec and nowhere else. Writes go into a [`Batch`] that any layer adds to; one
//! [`Store::commit`] makes them durable together.

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Batch, Store, StoreError, corrupt};

/// How a table's keys are written after its prefix, and read back.
pub trait KeyCodec {
    /// What callers pass to look up or write a record.
    type Key<'a>;
    /// What a scan gives back.
    type Owned;
    fn write(key: &Self::Key<'_>, out: &mut Vec<u8>);
    /// `None`: not a key of this codec (the caller reports it as corrupt).
    fn read(bytes: &[u8]) -> Option<Self::Owned>;
}

/// How a table's values are stored.
pub trait ValueCodec {
    type Value;
    fn encode(value: &Self::Value) -> fjall::Slice;
    fn decode(bytes: &[u8]) -> Result<Self::Value, String>;
}

/// A table: `prefix` + key → value.
#[derive(Debug)]
pub struct Table<K, V> {
    prefix: u8,
    /// For errors and the architecture's table list.
    pub name: &'static str,
    codecs: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Table<K, V> {
    pub const fn new(prefix: u8, name: &'static str) -> Table<K, V> {
        Table { prefix, name, codecs: PhantomData }
    }

    pub const fn prefix(&self) -> u8 {
        self.prefix
    }
}

impl<K: KeyCodec, V: ValueCodec> Table<K, V> {
    fn key(&self, key: &K::Key<'_>) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        out.push(self.prefix);
        K::write(key, &mut out);
        out
    }

    fn decode_value(&self, key: &[u8], value: &[u8]) -> Result<V::Value, StoreError> {
        V::decode(value).map_err(|reason| corrupt(key, &format!("{}: {reason}", self.name)))
    }

    fn decode_entry(&self, key: &[u8], value: &[u8]) -> Result<(K::Owned, V::Value), StoreError> {
        let k = (key.get(1..).and_then(K::read))
            .ok_or_else(|| corrupt(key, &format!("{}: not a key of this table", self.name)))?;
        Ok((k, self.decode_value(key, value)?))
    }

    /// The records of a scan over this table's keys, decoded.
    fn decoded<I: Iterator<Item = fjall::Guard>>(
        &self,
        scan: I,
    ) -> impl Iterator<Item = Result<(K::Owned, V::Value), StoreError>> + use<'_, I, K, V> {
        scan.map(move |item| {
            let (key, value) = item.into_inner()?;
            self.decode_entry(&key, &value)
        })
    }

    pub fn get(&self, store: &Store, key: &K::Key<'_>) -> Result<Option<V::Value>, StoreError> {
        let key = self.key(key);
        store.tree.get(&key)?.map(|v| self.decode_value(&key, &v)).transpose()
    }

    pub fn put(&self, batch: &mut Batch<'_>, key: &K::Key<'_>, value: &V::Value) {
        batch.insert(self.key(key), V::encode(value));
    }

    pub fn remove(&self, batch: &mut Batch<'_>, key: &K::Key<'_>) {
        batch.remove(self.key(key));
    }

    /// Every record, in key order.
    pub fn iter<'s>(
        &self,
        store: &'s Store,
    ) -> impl Iterator<Item = Result<(K::Owned, V::Value), StoreError>> + use<'s, '_, K, V> {
        self.decoded(store.tree.prefix([self.prefix]))
    }

    /// The records from `from` (included) to the end of the table, in key order.
    pub fn iter_from<'s>(
        &self,
        store: &'s Store,
        from: &K::Key<'_>,
    ) -> impl Iterator<Item = Result<(K::Owned, V::Value), StoreError>> + use<'s, '_, K, V> {
        let end = [self.prefix.saturating_add(1)];
        self.decoded(store.tree.range(self.key(from)..end.to_vec()))
    }

    /// The records whose key bytes (after the prefix) start with `partial`, in key order.
    fn iter_partial<'s>(
        &self,
        store: &'s Store,
        partial: &[u8],
    ) -> impl Iterator<Item = Result<(K::Owned, V::Value), StoreError>> + use<'s, '_, K, V> {
        let mut prefix = vec![self.prefix];
        prefix.extend_from_slice(partial);
        self.decoded(store.tree.prefix(prefix))
    }

    /// How many records the table holds (a scan: for gauges, not for the hot path).
    pub fn count(&self, store: &Store) -> usize {
        store.tree.prefix([self.prefix]).count()
    }
}

/// A queue: records keyed by a sequence number that rises with every record added.
impl<V: ValueCodec> Table<Seq, V> {
    /// Adds `value` after every record the table holds (and every one added since the table's
    /// numbering started: [`Table::start_numbering`]).
    pub fn push(&self, batch: &mut Batch<'_>, value: &V::Value) -> Result<u64, StoreError> {
        let store = batch.store();
        let seq = store.take_seq(self.prefix, 1, || self.last_seq(store))?;
        self.put(batch, &seq, value);
        Ok(seq)
    }

    /// Starts numbering after the records the table holds now. A queue that a reader follows by
    /// sequence number (the outbox's publisher) starts at open, before its reader removes any:
    /// numbering that started only after the queue was emptied would begin again below what
    /// the reader has seen.
    pub fn start_numbering(&self, store: &Store) -> Result<(), StoreError> {
        store.take_seq(self.prefix, 0, || self.last_seq(store)).map(drop)
    }

    fn last_seq(&self, store: &Store) -> Result<u64, StoreError> {
        match store.tree.prefix([self.prefix]).next_back() {
            None => Ok(0),
            Some(last) => {
                let key = last.key()?;
                Ok(key.get(1..).and_then(Seq::read).ok_or_else(|| corrupt(&key, self.name))?)
            }
        }
    }
}

/// A queue ordered by a due time first (unix milliseconds), then by a rising sequence number.
impl<V: ValueCodec> Table<DueSeq, V> {
    pub fn push(
        &self,
        batch: &mut Batch<'_>,
        due_ms: i64,
        value: &V::Value,
    ) -> Result<(), StoreError> {
        let store = batch.store();
        let seq = store.take_seq(self.prefix, 1, || {
            let mut max = 0;
            for item in store.tree.prefix([self.prefix]) {
                let key = item.key()?;
                let (_, seq) =
                    key.get(1..).and_then(DueSeq::read).ok_or_else(|| corrupt(&key, self.name))?;
                max = max.max(seq);
            }
            Ok(max)
        })?;
        self.put(batch, &(due_ms, seq), value);
        Ok(())
    }

    /// The records due at or before `now_ms`, in due order.
    pub fn due<'s>(
        &self,
        store: &'s Store,
        now_ms: i64,
    ) -> impl Iterator<Item = Result<((i64, u64), V::Value), StoreError>> + use<'s, '_, V> {
        // The due time is read from the key before the value is decoded: an item that is not
        // due yet is not read at all.
        let end = self.key(&(now_ms, u64::MAX));
        self.decoded(store.tree.range(vec![self.prefix]..=end))
    }
}

/// An index by its first text.
impl<V: ValueCodec> Table<TextPair, V> {
    /// The records whose first text is `first`, in key order.
    pub fn iter_first<'s>(
        &self,
        store: &'s Store,
        first: &str,
    ) -> impl Iterator<Item = Result<((String, String), V::Value), StoreError>> + use<'s, '_, V>
    {
        let mut partial = first.as_bytes().to_vec();
        partial.push(0);
        self.iter_partial(store, &partial)
    }
}

/// The students of one partition.
impl<V: ValueCodec> Table<PartitionText, V> {
    pub fn iter_partition<'s>(
        &self,
        store: &'s Store,
        partition: i32,
    ) -> impl Iterator<Item = Result<((i32, String), V::Value), StoreError>> + use<'s, '_, V> {
        self.iter_partial(store, &partition.to_be_bytes())
    }
}

// ---- key codecs ----

/// A UTF-8 text (an advocate id, a student id, a URL): the rest of the key.
#[derive(Debug)]
pub enum Text {}

impl KeyCodec for Text {
    type Key<'a> = &'a str;
    type Owned = String;
    fn write(key: &&str, out: &mut Vec<u8>) {
        out.extend_from_slice(key.as_bytes());
    }
    fn read(bytes: &[u8]) -> Option<String> {
        String::from_utf8(bytes.to_vec()).ok()
    }
}

/// Two texts separated by a 0 byte (the first must not contain one).
#[derive(Debug)]
pub enum TextPair {}

impl KeyCodec for TextPair {
    type Key<'a> = (&'a str, &'a str);
    type Owned = (String, String);
    fn write((a, b): &(&str, &str), out: &mut Vec<u8>) {
        out.extend_from_slice(a.as_bytes());
        out.push(0);
        out.extend_from_slice(b.as_bytes());
    }
    fn read(bytes: &[u8]) -> Option<(String, String)> {
        let text = std::str::from_utf8(bytes).ok()?;
        let (a, b) = text.split_once('\0')?;
        Some((a.to_owned(), b.to_owned()))
    }
}

/// A sequence number (u64, big-endian: keys sort like the numbers).
#[derive(Debug)]
pub enum Seq {}

impl KeyCodec for Seq {
    type Key<'a> = u64;
    type Owned = u64;
    fn write(key: &u64, out: &mut Vec<u8>) {
        out.extend_from_slice(&key.to_be_bytes());
    }
    fn read(bytes: &[u8]) -> Option<u64> {
        Some(u64::from_be_bytes(bytes.try_into().ok()?))
    }
}

/// A due time (unix milliseconds, negative as 0) and a sequence number, both u64 big-endian.
#[derive(Debug)]
pub enum DueSeq {}

impl KeyCodec for DueSeq {
    type Key<'a> = (i64, u64);
    type Owned = (i64, u64);
    fn write((due, seq): &(i64, u64), out: &mut Vec<u8>) {
        out.extend_from_slice(&(due.max(&0).unsigned_abs()).to_be_bytes());
        out.extend_from_slice(&seq.to_be_bytes());
    }
    fn read(bytes: &[u8]) -> Option<(i64, u64)> {
        let due = u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
        let seq = u64::from_be_bytes(bytes.get(8..)?.try_into().ok()?);
        Some((i64::try_from(due).ok()?, seq))
    }
}

/// A Kafka topic (its length as one byte, then the name: at most 249 bytes) and a partition
/// (i32, big-endian).
#[derive(Debug)]
pub enum TopicPartition {}

impl KeyCodec for TopicPartition {
    type Key<'a> = (&'a str, i32);
    type Owned = (String, i32);
    fn write((topic, partition): &(&str, i32), out: &mut Vec<u8>) {
        out.push(u8::try_from(topic.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(topic.as_bytes());
        out.extend_from_slice(&partition.to_be_bytes());
    }
    fn read(bytes: &[u8]) -> Option<(String, i32)> {
        let (&len, rest) = bytes.split_first()?;
        let topic = std::str::from_utf8(rest.get(..usize::from(len))?).ok()?;
        let partition = i32::from_be_bytes(rest.get(usize::from(len)..)?.try_into().ok()?);
        Some((topic.to_owned(), partition))
    }
}

/// A partition (i32, big-endian) and a text: records of one partition sort together.
#[derive(Debug)]
pub enum PartitionText {}

impl KeyCodec for PartitionText {
    type Key<'a> = (i32, &'a str);
    type Owned = (i32, String);
    fn write((partition, text): &(i32, &str), out: &mut Vec<u8>) {
        out.extend_from_slice(&partition.to_be_bytes());
        out.extend_from_slice(text.as_bytes());
    }
    fn read(bytes: &[u8]) -> Option<(i32, String)> {
        let partition = i32::from_be_bytes(bytes.get(..4)?.try_into().ok()?);
        Some((partition, String::from_utf8(bytes.get(4..)?.to_vec()).ok()?))
    }
}

// ---- value codecs ----

/// The store's format byte, then postcard.
#[derive(Debug)]
pub struct Postcard<T>(PhantomData<fn() -> T>);

impl<T: Serialize + DeserializeOwned> ValueCodec for Postcard<T> {
    type Value = T;
    fn encode(value: &T) -> fjall::Slice {
        super::encode(value)
    }
    fn decode(bytes: &[u8]) -> Result<T, String> {
        super::decode(bytes)
    }
}

/// An i64, 8 bytes big-endian.
#[derive(Debug)]
pub enum BigEndianI64 {}

impl ValueCodec for BigEndianI64 {
    type Value = i64;
    fn encode(value: &i64) -> fjall::Slice {
        fjall::Slice::from(&value.to_be_bytes()[..])
    }
    fn decode(bytes: &[u8]) -> Result<i64, String> {
        let b: [u8; 8] = bytes.try_into().map_err(|_| "not 8 bytes".to_owned())?;
        Ok(i64::from_be_bytes(b))
    }
}

/// No value: the key is the record (an index).
#[derive(Debug)]
pub enum Nothing {}

impl ValueCodec for Nothing {
    type Value = ();
    fn encode((): &()) -> fjall::Slice {
        fjall::Slice::from(&[][..])
    }
    fn decode(_: &[u8]) -> Result<(), String> {
        Ok(())
    }
}

//! The durable store: one fjall keyspace (an LSM tree) of typed [`Table`]s, written through a
//! [`Batch`] that any layer adds to and that one [`Store::commit`] makes durable all together.
//!
//! Everything that touches fjall lives here, so another store could replace it without touching
//! the rest. The store knows its own tables (student states in [`states`], input offsets in
//! [`offsets`], the Kafka outbox in [`outbox`]) and nothing of the layers above it: notification
//! queues are tables declared by `notify`, raised-flag counts by `pipeline`.
//!
//! What fjall promises, and what it does not: a write batch goes into its journal as one unit
//! and is recovered all or nothing after a crash; it is durable once the journal is fsync'd,
//! which [`Store::commit`] asks for ([`Store::apply`] does not: other writes reach the operating
//! system at once and the disk later); deleted values stay in the files until compaction removes
//! them. (sled, the first store, kept several times its page cache in memory once states were
//! written in parts: 1.3 GiB at 20,000 students with a 128 MiB cache; see BENCHMARKS.md.)
//!
//! Keys: a table's one-byte prefix, then its key codec's bytes; `v` alone holds the store's
//! format byte. Values: a format byte + postcard, or raw big-endian numbers ([`table`]). The
//! pipeline lists the prefixes of every layer's tables, and a test keeps them distinct.

pub mod offsets;
pub mod outbox;
pub mod states;
pub mod table;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

pub use offsets::OFFSETS;
pub use outbox::{OUTBOX, OutboxRecord};
pub use states::{STATES, STUDENTS_BY_PARTITION, Stored};
pub use table::{KeyCodec, Table, ValueCodec};

/// The store's own prefixes: its format byte and its tables.
pub const PREFIXES: [(u8, &str); 5] = [
    (b'v', "store format"),
    (STATES, "student states"),
    (STUDENTS_BY_PARTITION.prefix(), STUDENTS_BY_PARTITION.name),
    (OFFSETS.prefix(), OFFSETS.name),
    (OUTBOX.prefix(), OUTBOX.name),
];

/// Version of the store's keys and values; a store of a format this version does not read
/// ([`READS_FROM`] to this one) is refused at open.
/// 1: whole states under `s` + student_id (sled). 2: states in parts. 3: the small parts in
/// one cold part, with the fingerprints of the attendance a hot state does not hold. 4: a
/// month's attendance records store each event id as what it shares with the one before and
/// the rest. Every value starts with the format it was written in.
const FORMAT: u8 = 4;

/// The earliest format this version reads: a store of format 3 opens as format 4 (its values
/// are read as written, and written anew in format 4 when they change).
const READS_FROM: u8 = 3;

/// `[store]`: memory the store may use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreOptions {
    /// Block cache (recently read blocks of stored states), MiB.
    pub cache_mib: u64,
    /// Writes are gathered in a memtable of this size (MiB) before they go to a table file.
    pub memtable_mib: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        // Measured with scripts/bench (20,000 students × 60 days, one run each): a 64 MiB
        // memtable (fjall's default) 86.7k events/s and 395 MiB, 32 MiB 86.9k and 323 MiB.
        StoreOptions { cache_mib: 128, memtable_mib: 32 }
    }
}

/// Why the store failed. All are fatal for the service: it stops with the message.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store: {0}")]
    Engine(#[from] fjall::Error),
    #[error("store: {dir} is in use by another process (another ontrack with the same data_dir?)")]
    Locked { dir: String },
    #[error("store: the value at {key} cannot be read: {reason}")]
    Corrupt { key: String, reason: String },
    #[error(
        "store: {dir} was written by another version of ontrack (store format {found}, this one \
         reads {READS_FROM} to {FORMAT}); move it away (or point data_dir elsewhere) and start again: ontrack \
         rebuilds the state from the topics' beginning"
    )]
    Format { dir: String, found: u8 },
}

/// The store; cheap to clone (fjall handles are shared).
#[derive(Clone)]
pub struct Store {
    db: fjall::Database,
    tree: fjall::Keyspace,
    /// The next sequence number of each queue table (by prefix): above every one handed out
    /// since it was started, and every one stored then (at open for the outbox, at first use for
    /// the others).
    sequences: Arc<Mutex<HashMap<u8, u64>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.tree.path()).finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the store in `dir`, with the default options.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Store::open_with(dir, &StoreOptions::default())
    }

    /// Opens (or creates) the store in `dir`.
    pub fn open_with(dir: &Path, options: &StoreOptions) -> Result<Store, StoreError> {
        let dir_name = || dir.display().to_string();
        if dir.join("conf").exists() && dir.join("db").exists() {
            // sled's files: the store of ontrack before format 2.
            return Err(StoreError::Format { dir: dir_name(), found: 1 });
        }
        // The lock is released when the last handle of a dropped store goes (background workers
        // hold some briefly), so an immediate reopen in the same process may wait a moment;
        // another live process holding it is an error.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let db = loop {
            let builder =
                fjall::Database::builder(dir).cache_size(options.cache_mib.saturating_mul(1 << 20));
            match builder.open() {
                Ok(db) => break db,
                Err(fjall::Error::Locked) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(fjall::Error::Locked) => return Err(StoreError::Locked { dir: dir_name() }),
                Err(e) => return Err(e.into()),
            }
        };
        let memtable = options.memtable_mib.saturating_mul(1 << 20);
        let tree = db.keyspace("ontrack", || {
            fjall::KeyspaceCreateOptions::default().max_memtable_size(memtable)
        })?;
        match tree.get([b'v'])? {
            Some(v) if v.as_ref() == [FORMAT] => {}
            Some(v) if v.first().is_some_and(|f| (READS_FROM..FORMAT).contains(f)) => {
                // From now on values of this format are written beside the older ones.
                tree.insert([b'v'], [FORMAT])?;
                db.persist(fjall::PersistMode::SyncAll)?;
            }
            None if tree.is_empty()? => {
                tree.insert([b'v'], [FORMAT])?;
                db.persist(fjall::PersistMode::SyncAll)?;
            }
            found => {
                let found = found.and_then(|v| v.first().copied()).unwrap_or(1);
                return Err(StoreError::Format { dir: dir_name(), found });
            }
        }
        let store = Store { db, tree, sequences: Arc::default() };
        OUTBOX.start_numbering(&store)?;
        Ok(store)
    }

    /// A new write batch: nothing of it is visible (not even to itself) before it is applied.
    pub fn batch(&self) -> Batch<'_> {
        Batch { ops: Vec::new(), store: self, writes: 0 }
    }

    /// Writes the whole batch atomically and fsyncs it before returning, so that nothing derived
    /// from it (a published flag, a Kafka offset commit, a notification) can get ahead of it.
    pub fn commit(&self, batch: Batch<'_>) -> Result<(), StoreError> {
        Ok(batch.into_fjall().durability(Some(fjall::PersistMode::SyncAll)).commit()?)
    }

    /// Writes the batch atomically without waiting for the disk: a crash may lose it, so only
    /// for writes whose loss repeats work (an acknowledged outbox record, a delivery attempt).
    pub fn apply(&self, batch: Batch<'_>) -> Result<(), StoreError> {
        if batch.writes == 0 {
            return Ok(());
        }
        Ok(batch.into_fjall().commit()?)
    }

    /// Bytes the store takes on disk.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.db.disk_space()?)
    }

    /// Takes `count` (0 or 1) sequence numbers of the queue table `prefix` and returns the first;
    /// the numbering starts after `stored_max()` (the greatest one stored) on first use.
    fn take_seq(
        &self,
        prefix: u8,
        count: u64,
        stored_max: impl FnOnce() -> Result<u64, StoreError>,
    ) -> Result<u64, StoreError> {
        let mut sequences = self.sequences.lock().unwrap_or_else(PoisonError::into_inner);
        let next = match sequences.entry(prefix) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(stored_max()? + 1),
        };
        let seq = *next;
        *next += count;
        Ok(seq)
    }
}

/// Writes to apply together: any layer adds its tables' writes, then one [`Store::commit`].
pub struct Batch<'s> {
    /// Inserts (a value) and removals (none), in order; a fjall write batch at commit, so that
    /// batches filled side by side can be joined ([`Batch::append`]).
    ops: Vec<(fjall::UserKey, Option<fjall::UserValue>)>,
    store: &'s Store,
    writes: usize,
}

impl std::fmt::Debug for Batch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch").field("writes", &self.writes).finish_non_exhaustive()
    }
}

impl<'s> Batch<'s> {
    /// The store the batch will be written to.
    pub fn store(&self) -> &'s Store {
        self.store
    }

    /// Writes added so far.
    pub fn len(&self) -> usize {
        self.writes
    }

    pub fn is_empty(&self) -> bool {
        self.writes == 0
    }

    fn insert(&mut self, key: impl Into<fjall::UserKey>, value: impl Into<fjall::UserValue>) {
        self.writes += 1;
        self.ops.push((key.into(), Some(value.into())));
    }

    fn remove(&mut self, key: impl Into<fjall::UserKey>) {
        self.writes += 1;
        self.ops.push((key.into(), None));
    }

    /// Adds `other`'s writes after this batch's.
    pub fn append(&mut self, other: Batch<'s>) {
        self.writes += other.writes;
        self.ops.extend(other.ops);
    }

    fn into_fjall(self) -> fjall::OwnedWriteBatch {
        let mut batch = self.store.db.batch();
        for (key, value) in self.ops {
            match value {
                Some(value) => batch.insert(&self.store.tree, key, value),
                None => batch.remove(&self.store.tree, key),
            }
        }
        batch
    }
}

/// Format byte + postcard, written into a per-thread scratch buffer that keeps its capacity, then
/// copied once into the stored value (values of many KB: growing a fresh Vec for each one cost
/// several reallocations and copies).
fn encode<T: Serialize + ?Sized>(value: &T) -> fjall::Slice {
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SCRATCH.with(|scratch| {
        let mut buf = std::mem::take(&mut *scratch.borrow_mut());
        buf.clear();
        buf.push(FORMAT);
        // postcard writes any serde value of ours; it fails only on unsupported types.
        let buf = postcard::to_extend(value, buf).expect("stored types serialize with postcard");
        let value = fjall::Slice::from(&buf[..]);
        *scratch.borrow_mut() = buf;
        value
    })
}

fn decode<T: for<'de> Deserialize<'de>>(value: &[u8]) -> Result<T, String> {
    decode_borrowed(value)
}

/// [`decode`] of a value that borrows from the bytes. Formats 3 and 4 write every value alike
/// but a month's attendance records (`states` reads those by their format byte).
fn decode_borrowed<'a, T: Deserialize<'a>>(value: &'a [u8]) -> Result<T, String> {
    match value.split_first() {
        Some((format, body)) if (READS_FROM..=FORMAT).contains(format) => {
            postcard::from_bytes(body).map_err(|e| e.to_string())
        }
        Some((other, _)) => Err(format!(
            "format {other} is not {READS_FROM} to {FORMAT}: written by another version of ontrack"
        )),
        None => Err("empty".into()),
    }
}

fn corrupt(key: &[u8], reason: &str) -> StoreError {
    StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A data_dir of an earlier format (format 1 was sled's files) is refused at open with what
    /// to do, not read as an empty store (that would resume at stored offsets with no states).
    #[test]
    fn a_store_of_another_format_is_refused_at_open() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("conf"), "segment_size: 524288\n").unwrap();
        std::fs::write(dir.path().join("db"), [0u8; 64]).unwrap();
        let err = Store::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("store format 1") && err.contains("rebuilds"), "{err}");
        let future = tempfile::tempdir().unwrap();
        {
            let store = Store::open(future.path()).unwrap();
            store.tree.insert([b'v'], [9u8]).unwrap();
        }
        let err = Store::open(future.path()).unwrap_err().to_string();
        assert!(err.contains("store format 9"), "{err}");
        // A store of this format opens again.
        let fresh = tempfile::tempdir().unwrap();
        drop(Store::open(fresh.path()).unwrap());
        assert!(Store::open(fresh.path()).is_ok());
    }
}

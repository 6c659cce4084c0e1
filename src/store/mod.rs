//! The durable store: student states, input offsets and the outbox of messages to publish, in one
//! fjall keyspace (an LSM tree) so that one [`Commit`] is one atomic write batch.
//!
//! Everything that touches fjall lives here, so another store could replace it without touching
//! the rest. What fjall promises, and what it does not: a write batch goes into its journal as
//! one unit and is recovered all or nothing after a crash; it is durable once the journal is
//! fsync'd, which [`Store::commit`] asks for (other writes reach the operating system at once and
//! the disk later); deleted values stay in the files until compaction removes them.
//! (sled, the first store, kept several times its page cache in memory once states were written
//! in parts: 1.3 GiB at 20,000 students with a 128 MiB cache, more with a smaller one; see
//! BENCHMARKS.md.)
//!
//! Keys (one keyspace):
//! - `v` → the store's format byte, written when the store is created.
//! - `s` + student_id length (u32, BE) + student_id + part → one part of the student's state
//!   (format byte + postcard), so that a batch rewrites only what it changed
//!   ([`crate::core::Unsaved`]): `c` the current part: head (school year, figures, flags) and
//!   the attendance records of the latest month with any (nearly every event changes both, so
//!   most batches write one value per student), `a` assignment, `r` referrals, `g` grades,
//!   `o` ids of applied events no record carries, `m` + month (u32, BE) an earlier month's
//!   attendance records. Attendance is stored compactly (day, status, `recorded_at` relative to
//!   the day, event id). Keyed by the student alone, so a student's events fold into
//!   one state even when a producer did not key them consistently.
//! - `p` + partition (i32, big-endian) + student_id → nothing: the index of the students whose
//!   events came through a partition, so a partition's students can be found (and moved)
//!   together.
//! - `o` + topic length (u8) + topic + partition (i32, BE) → the next offset to read (i64, BE).
//! - `x` + sequence (u64, BE) → an [`OutboxRecord`] waiting to be published, in commit order.
//! - `a` + advocate_id → [`AdvocateRecord`]: the advocate's latest contact details.
//! - `d` + student_id → the date of the student's last same-day absence alert.
//! - `n` + sequence → a [`Notification`] waiting for delivery (with its attempts so far).
//! - `g` + due (unix ms, u64 BE) + sequence → a [`DigestItem`] waiting for its digest.
//! - `f` + sequence → a [`FailedNotification`], kept.
//! - `w` + URL → why a webhook endpoint was disabled (it answered 410 Gone).
//! - `r` + flag name + 0 + school_id → how many of this store's students have the flag raised,
//!   by the school of the event that raised or cleared it (kept with the states, for the gauge).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::core::{AttendanceRecord, AttendanceStatus, Head, StudentState, Version, month_of};
use crate::notify::{AdvocateRecord, DigestItem, FailedNotification, Notification};

/// Version of the store's keys and values; a store of another format is refused at open.
/// 1: whole states under `s` + student_id. 2: states in parts.
const FORMAT: u8 = 2;

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

/// Why the store failed. Both are fatal for the service: it stops with the message.
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
         reads {FORMAT}); move it away (or point data_dir elsewhere) and start again: ontrack \
         rebuilds the state from the topics' beginning"
    )]
    Format { dir: String, found: u8 },
}

/// A message to publish once its commit is durable; removed when the broker acknowledges it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxRecord {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    /// Kafka headers, in order (the dead-letter topic's error headers).
    pub headers: Vec<(String, Vec<u8>)>,
}

/// What one batch of input produced: written all together, or not at all.
#[derive(Debug, Default)]
pub struct Commit<'a> {
    /// `(partition, student_id, state)`: every student the batch touched (only the parts the
    /// state marks unsaved are written), with the partition its events came through when the
    /// student is new to the store (`None`: already indexed).
    pub states: Vec<(Option<i32>, &'a str, &'a StudentState)>,
    /// `(topic, partition, next offset)`: where to resume reading each input partition.
    pub offsets: Vec<(&'a str, i32, i64)>,
    /// Messages to publish, in order.
    pub outbox: Vec<OutboxRecord>,
    /// What the batch's events queued for advocates.
    pub notify: NotifyCommit,
    /// `(flag, school_id, count)`: flags raised now, for every pair the batch changed.
    pub raised_counts: Vec<(&'a str, &'a str, i64)>,
}

/// The notification side of a commit: written in the same atomic batch as the states that
/// caused it.
#[derive(Debug, Default)]
pub struct NotifyCommit {
    /// Advocates whose contact details changed.
    pub advocates: Vec<(String, AdvocateRecord)>,
    /// `(student_id, date)`: a same-day absence alert was queued for this student and date.
    pub absence_alerted: Vec<(String, time::Date)>,
    pub notifications: Vec<Notification>,
    /// `(due, item)`: alerts waiting for a digest due at unix milliseconds `due`.
    pub digest_items: Vec<(i64, DigestItem)>,
    pub failed: Vec<FailedNotification>,
    /// Webhook URLs given again by an advocate's newer record: no longer disabled.
    pub enabled_endpoints: Vec<String>,
}

/// The store; cheap to clone (fjall handles are shared).
#[derive(Clone)]
pub struct Store {
    db: fjall::Database,
    tree: fjall::Keyspace,
    /// The next sequence number for queue keys (`x`, `n`, `g`, `f`): above every stored one.
    next_seq: std::sync::Arc<std::sync::atomic::AtomicU64>,
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
            None if tree.is_empty()? => {
                tree.insert([b'v'], [FORMAT])?;
                db.persist(fjall::PersistMode::SyncAll)?;
            }
            found => {
                let found = found.and_then(|v| v.first().copied()).unwrap_or(1);
                return Err(StoreError::Format { dir: dir_name(), found });
            }
        }
        let next_seq = max_seq(&tree)?.map_or(1, |s| s + 1);
        let next_seq = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(next_seq));
        Ok(Store { db, tree, next_seq })
    }

    /// A new sequence number, greater than every one handed out or stored before.
    fn generate_id(&self) -> u64 {
        self.next_seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// The stored state of a student, if any.
    pub fn student(&self, student_id: &str) -> Result<Option<StudentState>, StoreError> {
        let prefix = state_prefix(student_id);
        let (mut current, mut assignment, mut others) = (None, None, Vec::new());
        let (mut referrals, mut grades, mut attendance) = (Vec::new(), Vec::new(), Vec::new());
        let mut found = false;
        for item in self.tree.prefix(&prefix) {
            let (key, value) = item.into_inner()?;
            found = true;
            match key.get(prefix.len()) {
                Some(b'c') => current = Some(decode::<Current>(&key, &value)?),
                Some(b'a') => assignment = decode(&key, &value)?,
                Some(b'r') => referrals = decode(&key, &value)?,
                Some(b'g') => grades = decode(&key, &value)?,
                Some(b'o') => others = decode(&key, &value)?,
                Some(b'm') => {
                    let month: [u8; 4] = key
                        .get(prefix.len() + 1..)
                        .and_then(|m| m.try_into().ok())
                        .ok_or_else(|| corrupt(&key, "bad month key"))?;
                    let compact = decode(&key, &value)?;
                    expand_month(&key, u32::from_be_bytes(month), compact, &mut attendance)?;
                }
                _ => return Err(corrupt(&key, "not a part of a student's state")),
            }
        }
        let Some((head, month, compact)) = current else {
            if !found {
                return Ok(None);
            }
            return Err(corrupt(&prefix, "a student's state without its current part"));
        };
        // The current month is the latest: its records come after every earlier month's.
        if let Some(month) = month {
            expand_month(&prefix, month, compact, &mut attendance)?;
        }
        Ok(Some(StudentState::from_parts(head, assignment, referrals, grades, attendance, others)))
    }

    /// Every student whose events came through `partition`, with their state, in `student_id`
    /// byte order.
    pub fn students_of_partition(
        &self,
        partition: i32,
    ) -> impl Iterator<Item = Result<(String, StudentState), StoreError>> + '_ {
        let prefix = partition_key(partition, "");
        self.tree.prefix(prefix.clone()).map(move |item| {
            let key = item.key()?;
            let id = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            let state = self.student(&id)?.ok_or_else(|| corrupt(&key, "indexed, not stored"))?;
            Ok((id, state))
        })
    }

    /// Where to resume reading `topic`/`partition`: the offset after the last one committed.
    pub fn next_offset(&self, topic: &str, partition: i32) -> Result<Option<i64>, StoreError> {
        let key = offset_key(topic, partition);
        match self.tree.get(&key)? {
            None => Ok(None),
            Some(v) => {
                let bytes: [u8; 8] =
                    v.as_ref().try_into().map_err(|_| corrupt(&key, "not 8 bytes"))?;
                Ok(Some(i64::from_be_bytes(bytes)))
            }
        }
    }

    /// Writes the whole commit as one atomic batch and flushes it to disk before returning, so
    /// that nothing derived from it (a published flag, a Kafka offset commit) can get ahead of it.
    pub fn commit(&self, commit: Commit<'_>) -> Result<(), StoreError> {
        let mut batch = Batch::new(self);
        for (partition, student_id, state) in commit.states {
            write_state(&mut batch, student_id, state);
            if let Some(partition) = partition {
                batch.insert(partition_key(partition, student_id), []);
            }
        }
        for (topic, partition, offset) in commit.offsets {
            batch.insert(offset_key(topic, partition), offset.to_be_bytes());
        }
        for record in &commit.outbox {
            batch.insert(outbox_key(self.generate_id()), encode(record));
        }
        for (flag, school, count) in commit.raised_counts {
            batch.insert(raised_key(flag, school), count.to_be_bytes());
        }
        let n = commit.notify;
        for (id, record) in &n.advocates {
            batch.insert(prefixed(b'a', id.as_bytes()), encode(record));
        }
        for (id, date) in &n.absence_alerted {
            batch.insert(prefixed(b'd', id.as_bytes()), encode(date));
        }
        for record in &n.notifications {
            batch.insert(seq_key(b'n', self.generate_id()), encode(record));
        }
        for (due, item) in &n.digest_items {
            batch.insert(self.digest_key(*due), encode(item));
        }
        for record in &n.failed {
            batch.insert(seq_key(b'f', self.generate_id()), encode(record));
        }
        for url in &n.enabled_endpoints {
            batch.remove(prefixed(b'w', url.as_bytes()));
        }
        batch.0.durability(Some(fjall::PersistMode::SyncAll)).commit()?;
        Ok(())
    }

    /// The outbox, oldest first, with each record's sequence number.
    pub fn pending(&self) -> impl Iterator<Item = Result<(u64, OutboxRecord), StoreError>> + '_ {
        self.scan_seq(b'x')
    }

    /// The outbox records after sequence number `after` (all with `None`), oldest first.
    pub fn pending_after(
        &self,
        after: Option<u64>,
    ) -> impl Iterator<Item = Result<(u64, OutboxRecord), StoreError>> + '_ {
        let from = outbox_key(after.map_or(0, |s| s.saturating_add(1)));
        self.tree.range(from..=outbox_key(u64::MAX)).map(|item| {
            let (key, value) = item.into_inner()?;
            let seq: [u8; 8] =
                key[1..].try_into().map_err(|_| corrupt(&key, "bad sequence key"))?;
            Ok((u64::from_be_bytes(seq), decode(&key, &value)?))
        })
    }

    /// Removes published records from the outbox (not flushed: a record lost from this removal
    /// by a crash is published again, which consumers see as a repeat of the same message).
    pub fn acked(&self, seqs: &[u64]) -> Result<(), StoreError> {
        let mut batch = Batch::new(self);
        for seq in seqs {
            batch.remove(outbox_key(*seq));
        }
        Ok(batch.0.commit()?)
    }
}

// Counts of raised flags, by flag and school.
impl Store {
    pub fn raised_count(&self, flag: &str, school: &str) -> Result<i64, StoreError> {
        let key = raised_key(flag, school);
        match self.tree.get(&key)? {
            None => Ok(0),
            Some(v) => {
                let b: [u8; 8] = v.as_ref().try_into().map_err(|_| corrupt(&key, "not 8 bytes"))?;
                Ok(i64::from_be_bytes(b))
            }
        }
    }

    /// Every `(flag, school, count)` stored.
    pub fn raised_counts(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        let mut out = Vec::new();
        for item in self.tree.prefix([b'r']) {
            let (key, value) = item.into_inner()?;
            let rest = String::from_utf8_lossy(&key[1..]).into_owned();
            let (flag, school) = rest.split_once('\0').ok_or_else(|| corrupt(&key, "bad key"))?;
            let b: [u8; 8] = value.as_ref().try_into().map_err(|_| corrupt(&key, "not 8 bytes"))?;
            out.push((flag.to_owned(), school.to_owned(), i64::from_be_bytes(b)));
        }
        Ok(out)
    }

    /// Bytes the store takes on disk.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.db.disk_space()?)
    }

    /// `(depth, oldest created_at_ms)` of the notifications waiting for delivery, and the depths
    /// of the Kafka outbox, the digest items and the failed notifications.
    pub fn queue_depths(&self) -> Result<QueueDepths, StoreError> {
        let mut oldest = None;
        let mut notifications = 0;
        for item in self.notifications() {
            let (_, n) = item?;
            notifications += 1;
            oldest = Some(oldest.map_or(n.created_at_ms, |o: i64| o.min(n.created_at_ms)));
        }
        Ok(QueueDepths {
            kafka: self.tree.prefix([b'x']).count(),
            notifications,
            oldest_notification_ms: oldest,
            digest: self.tree.prefix([b'g']).count(),
            failed: self.tree.prefix([b'f']).count(),
        })
    }
}

/// How much waits in the store's queues.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepths {
    pub kafka: usize,
    pub notifications: usize,
    pub oldest_notification_ms: Option<i64>,
    pub digest: usize,
    pub failed: usize,
}

fn raised_key(flag: &str, school: &str) -> Vec<u8> {
    prefixed(b'r', format!("{flag}\0{school}").as_bytes())
}

// Notifications: the pipeline reads advocates and alert marks; the delivery task works the rest.
impl Store {
    /// An advocate's latest contact details, if any were streamed.
    pub fn advocate(&self, advocate_id: &str) -> Result<Option<AdvocateRecord>, StoreError> {
        let key = prefixed(b'a', advocate_id.as_bytes());
        self.tree.get(&key)?.map(|v| decode(&key, &v)).transpose()
    }

    /// The date of the student's last same-day absence alert.
    pub fn absence_alerted(&self, student_id: &str) -> Result<Option<time::Date>, StoreError> {
        let key = prefixed(b'd', student_id.as_bytes());
        self.tree.get(&key)?.map(|v| decode(&key, &v)).transpose()
    }

    /// Notifications waiting for delivery, oldest first, with their sequence numbers.
    pub fn notifications(
        &self,
    ) -> impl Iterator<Item = Result<(u64, Notification), StoreError>> + '_ {
        self.scan_seq(b'n')
    }

    /// Kept failed notifications, oldest first.
    pub fn failed_notifications(
        &self,
    ) -> impl Iterator<Item = Result<(u64, FailedNotification), StoreError>> + '_ {
        self.scan_seq(b'f')
    }

    /// Records the outcome of an attempt: `Ok(None)` delivered (removed), `Ok(Some(n))` to be
    /// retried as `n`, `Err(failed)` moved to the failed records. Not flushed: a crash before the
    /// next flush repeats the attempt, which the receiver sees as a repeat of the same id.
    pub fn attempted(
        &self,
        seq: u64,
        outcome: Result<Option<&Notification>, &FailedNotification>,
    ) -> Result<(), StoreError> {
        let key = seq_key(b'n', seq);
        match outcome {
            Ok(None) => {
                self.tree.remove(key)?;
            }
            Ok(Some(retry)) => {
                self.tree.insert(key, encode(retry))?;
            }
            Err(failed) => {
                let mut batch = Batch::new(self);
                batch.remove(key);
                batch.insert(seq_key(b'f', self.generate_id()), encode(failed));
                batch.0.commit()?;
            }
        }
        Ok(())
    }

    /// Digest items due at or before `now_ms`, with their keys, in due order.
    pub fn due_digest_items(
        &self,
        now_ms: i64,
    ) -> Result<Vec<(DigestKey, DigestItem)>, StoreError> {
        let mut due = Vec::new();
        for item in self.tree.prefix([b'g']) {
            let (key, value) = item.into_inner()?;
            let at: [u8; 8] = key[1..9].try_into().map_err(|_| corrupt(&key, "bad digest key"))?;
            if u64::from_be_bytes(at) > now_ms.max(0) as u64 {
                break;
            }
            let item = decode(&key, &value)?;
            due.push((DigestKey(key), item));
        }
        Ok(due)
    }

    /// Replaces digest items by the notifications (or failures) grouping them, atomically.
    pub fn digested(
        &self,
        items: &[DigestKey],
        notifications: &[Notification],
        failed: &[FailedNotification],
    ) -> Result<(), StoreError> {
        let mut batch = Batch::new(self);
        for key in items {
            batch.remove(key.0.clone());
        }
        for n in notifications {
            batch.insert(seq_key(b'n', self.generate_id()), encode(n));
        }
        for f in failed {
            batch.insert(seq_key(b'f', self.generate_id()), encode(f));
        }
        Ok(batch.0.durability(Some(fjall::PersistMode::SyncAll)).commit()?)
    }

    /// Why a webhook endpoint is disabled, if it is.
    pub fn endpoint_disabled(&self, url: &str) -> Result<Option<String>, StoreError> {
        let key = prefixed(b'w', url.as_bytes());
        self.tree.get(&key)?.map(|v| decode(&key, &v)).transpose()
    }

    /// Disables a webhook endpoint until an advocate's newer record names it again.
    pub fn disable_endpoint(&self, url: &str, why: &str) -> Result<(), StoreError> {
        self.tree.insert(prefixed(b'w', url.as_bytes()), encode(&why))?;
        Ok(())
    }

    fn digest_key(&self, due_ms: i64) -> [u8; 17] {
        let mut key = [b'g'; 17];
        key[1..9].copy_from_slice(&(due_ms.max(0) as u64).to_be_bytes());
        key[9..].copy_from_slice(&self.generate_id().to_be_bytes());
        key
    }

    fn scan_seq<T: for<'de> Deserialize<'de>>(
        &self,
        prefix: u8,
    ) -> impl Iterator<Item = Result<(u64, T), StoreError>> + '_ {
        self.tree.prefix([prefix]).map(|item| {
            let (key, value) = item.into_inner()?;
            let seq: [u8; 8] =
                key[1..].try_into().map_err(|_| corrupt(&key, "bad sequence key"))?;
            Ok((u64::from_be_bytes(seq), decode(&key, &value)?))
        })
    }
}

/// A write batch on the store's keyspace.
struct Batch<'s>(fjall::OwnedWriteBatch, &'s fjall::Keyspace);

impl Batch<'_> {
    fn new(store: &Store) -> Batch<'_> {
        Batch(store.db.batch(), &store.tree)
    }

    fn insert(&mut self, key: impl Into<fjall::UserKey>, value: impl Into<fjall::UserValue>) {
        self.0.insert(self.1, key, value);
    }

    fn remove(&mut self, key: impl Into<fjall::UserKey>) {
        self.0.remove(self.1, key);
    }
}

/// The key of a digest item waiting for its digest.
#[derive(Debug, Clone)]
pub struct DigestKey(fjall::UserKey);

/// The greatest sequence number in a stored key (`x`, `n`, `f`: after the prefix; `g`: after the
/// due time).
fn max_seq(tree: &fjall::Keyspace) -> Result<Option<u64>, StoreError> {
    let seq_at = |key: &[u8], at: usize| -> Result<u64, StoreError> {
        let b: [u8; 8] = key
            .get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| corrupt(key, "bad sequence key"))?;
        Ok(u64::from_be_bytes(b))
    };
    let mut max = None;
    for prefix in [b'x', b'n', b'f'] {
        if let Some(last) = tree.prefix([prefix]).next_back() {
            max = max.max(Some(seq_at(&last.key()?, 1)?));
        }
    }
    for item in tree.prefix([b'g']) {
        max = max.max(Some(seq_at(&item.key()?, 9)?));
    }
    Ok(max)
}

fn prefixed(prefix: u8, rest: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + rest.len());
    key.push(prefix);
    key.extend_from_slice(rest);
    key
}

fn seq_key(prefix: u8, seq: u64) -> [u8; 9] {
    let mut key = [prefix; 9];
    key[1..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// `s` + the id's length + the id: no student's prefix is the start of another's keys.
fn state_prefix(student_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(5 + student_id.len() + 5);
    key.push(b's');
    // Ids longer than 4 GiB cannot arrive in a Kafka message.
    key.extend_from_slice(&u32::try_from(student_id.len()).unwrap_or(u32::MAX).to_be_bytes());
    key.extend_from_slice(student_id.as_bytes());
    key
}

fn part_key(prefix: &[u8], part: u8) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + 5);
    key.extend_from_slice(prefix);
    key.push(part);
    key
}

/// The parts of `state` it marks unsaved, into `batch`.
fn write_state(batch: &mut Batch<'_>, student_id: &str, state: &StudentState) {
    let unsaved = state.unsaved();
    let prefix = state_prefix(student_id);
    let (_, referrals, grades, assignment) = state.records();
    let current = state.current_month();
    // The month kept with the head until now, if the current month moved past it.
    let moved = unsaved.stored_current.filter(|m| Some(*m) != current);
    let month_key = |month: u32| {
        let mut key = part_key(&prefix, b'm');
        key.extend_from_slice(&month.to_be_bytes());
        key
    };
    for month in unsaved.months.iter().copied().chain(moved) {
        if Some(month) != current {
            batch
                .insert(month_key(month), encode(&compact_month(state.attendance_of_month(month))));
        }
    }
    if unsaved.head || moved.is_some() || current.is_some_and(|m| unsaved.months.contains(&m)) {
        let records = current.map_or(Vec::new(), |m| compact_month(state.attendance_of_month(m)));
        batch.insert(part_key(&prefix, b'c'), encode(&(state.head(), current, records)));
    }
    if unsaved.assignment {
        batch.insert(part_key(&prefix, b'a'), encode(&assignment));
    }
    if unsaved.referrals {
        batch.insert(part_key(&prefix, b'r'), encode(&referrals));
    }
    if unsaved.grades {
        batch.insert(part_key(&prefix, b'g'), encode(&grades));
    }
    if unsaved.others {
        batch.insert(part_key(&prefix, b'o'), encode(&state.other_ids()));
    }
}

/// The current part as read back: head, the current month, its records.
type Current = (Head, Option<u32>, Vec<(u8, u8, i64, u32, compact_str::CompactString)>);

/// One month's attendance records: `(day of month, status, seconds of recorded_at after the
/// day's midnight UTC, its nanoseconds, event_id)` each; a year of them is a few KB.
type CompactAttendance<'a> = (u8, u8, i64, u32, &'a str);

fn compact_month(records: &[AttendanceRecord]) -> Vec<CompactAttendance<'_>> {
    records
        .iter()
        .map(|r| {
            let status = AttendanceStatus::ALL.iter().position(|s| *s == r.status).unwrap_or(0);
            let midnight = r.date.midnight().assume_utc().unix_timestamp();
            let v = &r.version;
            (
                r.date.day(),
                status as u8,
                v.recorded_at.secs - midnight,
                v.recorded_at.nanos,
                &*v.event_id,
            )
        })
        .collect()
}

/// Appends `month`'s records, read back from their compact form at `key`, to `out`.
fn expand_month(
    key: &[u8],
    month: u32,
    compact: Vec<(u8, u8, i64, u32, compact_str::CompactString)>,
    out: &mut Vec<AttendanceRecord>,
) -> Result<(), StoreError> {
    let year = i32::try_from(month / 12).map_err(|_| corrupt(key, "bad month"))? - 10_000;
    let month_of_year = time::Month::try_from(u8::try_from(month % 12 + 1).unwrap_or(1))
        .map_err(|_| corrupt(key, "bad month"))?;
    out.reserve(compact.len());
    for (day, status, secs, nanos, event_id) in compact {
        let date = time::Date::from_calendar_date(year, month_of_year, day)
            .map_err(|e| corrupt(key, &e.to_string()))?;
        let status = *AttendanceStatus::ALL
            .get(usize::from(status))
            .ok_or_else(|| corrupt(key, "unknown attendance status"))?;
        let midnight = date.midnight().assume_utc().unix_timestamp();
        let recorded_at = crate::core::event::RecordedAt { secs: midnight + secs, nanos };
        out.push(AttendanceRecord { date, status, version: Version { recorded_at, event_id } });
    }
    debug_assert!(out.last().is_none_or(|r| month_of(r.date) == month));
    Ok(())
}

fn partition_key(partition: i32, student_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(5 + student_id.len());
    key.push(b'p');
    key.extend_from_slice(&partition.to_be_bytes());
    key.extend_from_slice(student_id.as_bytes());
    key
}

fn offset_key(topic: &str, partition: i32) -> Vec<u8> {
    let mut key = Vec::with_capacity(6 + topic.len());
    key.push(b'o');
    // Topic names are at most 249 bytes (a Kafka limit).
    key.push(u8::try_from(topic.len()).unwrap_or(u8::MAX));
    key.extend_from_slice(topic.as_bytes());
    key.extend_from_slice(&partition.to_be_bytes());
    key
}

fn outbox_key(seq: u64) -> [u8; 9] {
    seq_key(b'x', seq)
}

/// Format byte + postcard, written into a per-thread scratch buffer that keeps its capacity, then
/// copied once into the stored value (values of many KB: growing a fresh Vec for each one cost
/// several reallocations and copies).
fn encode<T: Serialize>(value: &T) -> fjall::Slice {
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

fn decode<T: for<'de> Deserialize<'de>>(key: &[u8], value: &[u8]) -> Result<T, StoreError> {
    match value.split_first() {
        Some((&FORMAT, body)) => {
            postcard::from_bytes(body).map_err(|e| corrupt(key, &e.to_string()))
        }
        Some((other, _)) => Err(corrupt(
            key,
            &format!("format {other} is not {FORMAT}: written by another version of ontrack"),
        )),
        None => Err(corrupt(key, "empty")),
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
    use crate::core::{Rules, Students, decode as decode_event};
    use crate::synth::{District, DistrictSpec};

    fn record(topic: &str, key: &str) -> OutboxRecord {
        let headers = vec![("h".to_owned(), b"v".to_vec())];
        OutboxRecord {
            topic: topic.into(),
            key: Some(key.into()),
            payload: b"{}".to_vec(),
            headers,
        }
    }

    /// Realistic states: 50 students after 35 school days (grades, referrals, corrections).
    fn district() -> Students {
        let rules = Rules::default();
        let mut district =
            District::new(DistrictSpec { students: 50, days: 35, ..DistrictSpec::default() });
        let mut students = Students::default();
        for day in 0..35 {
            for e in district.day(day) {
                if let Ok(event) = decode_event(e.json.as_bytes()) {
                    students.apply(&event, &rules);
                }
            }
        }
        students
    }

    #[test]
    fn a_commit_survives_reopening_whole() {
        let dir = tempfile::tempdir().unwrap();
        let students = district();
        {
            let store = Store::open(dir.path()).unwrap();
            let states =
                students.iter().map(|(id, s)| (Some(id.len() as i32 % 3), id, s)).collect();
            let outbox = (0..3).map(|i| record("ontrack.flags", &format!("k{i}"))).collect();
            let offsets =
                vec![("sis.attendance", 0, 120), ("sis.attendance", 1, 7), ("sis.grades", 0, 3)];
            store.commit(Commit { states, offsets, outbox, ..Commit::default() }).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        for (id, state) in students.iter() {
            assert_eq!(store.student(id).unwrap().as_ref(), Some(state), "{id}");
        }
        assert_eq!(store.student("stu-9999999").unwrap(), None);
        assert_eq!(store.next_offset("sis.attendance", 0).unwrap(), Some(120));
        assert_eq!(store.next_offset("sis.attendance", 1).unwrap(), Some(7));
        assert_eq!(store.next_offset("sis.grades", 0).unwrap(), Some(3));
        assert_eq!(store.next_offset("sis.grades", 1).unwrap(), None);
        let pending: Vec<OutboxRecord> = store.pending().map(|r| r.unwrap().1).collect();
        assert_eq!(pending, [0, 1, 2].map(|i| record("ontrack.flags", &format!("k{i}"))));
    }

    #[test]
    fn acked_records_leave_the_outbox_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for batch in 0..3u8 {
            let outbox = (0..2).map(|i| record("t", &format!("{batch}-{i}"))).collect();
            store.commit(Commit { outbox, ..Commit::default() }).unwrap();
        }
        let pending: Vec<(u64, OutboxRecord)> = store.pending().map(Result::unwrap).collect();
        let key = |r: &OutboxRecord| String::from_utf8(r.key.clone().unwrap()).unwrap();
        let keys: Vec<String> = pending.iter().map(|(_, r)| key(r)).collect();
        assert_eq!(keys, ["0-0", "0-1", "1-0", "1-1", "2-0", "2-1"]);
        store.acked(&[pending[0].0, pending[2].0]).unwrap();
        let keys: Vec<String> = store.pending().map(|r| key(&r.unwrap().1)).collect();
        assert_eq!(keys, ["0-1", "1-1", "2-0", "2-1"]);
    }

    /// Sequence numbers go on rising across a reopen: records queued after a restart come after
    /// the ones left from before it.
    #[test]
    fn the_outbox_keeps_its_order_across_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let keys = |store: &Store| -> Vec<String> {
            let key = |r: OutboxRecord| String::from_utf8(r.key.unwrap()).unwrap();
            store.pending().map(|r| key(r.unwrap().1)).collect()
        };
        {
            let store = Store::open(dir.path()).unwrap();
            let outbox = vec![record("t", "before-1"), record("t", "before-2")];
            store.commit(Commit { outbox, ..Commit::default() }).unwrap();
            let first = store.pending().next().unwrap().unwrap().0;
            store.acked(&[first]).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        store.commit(Commit { outbox: vec![record("t", "after")], ..Commit::default() }).unwrap();
        assert_eq!(keys(&store), ["before-2", "after"]);
    }

    #[test]
    fn pending_after_gives_only_later_records_and_stops_at_the_outbox_end() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let outbox = (0..3).map(|i| record("t", &format!("k{i}"))).collect();
        // Other records in the same tree are not outbox records.
        let n = crate::notify::Notification::new(
            "x",
            "adv-1",
            crate::notify::Destination::Email("a@example.org".into()),
            None,
            Vec::new(),
            0,
        );
        let notify = NotifyCommit { notifications: vec![n], ..NotifyCommit::default() };
        store.commit(Commit { outbox, notify, ..Commit::default() }).unwrap();
        let all: Vec<u64> = store.pending_after(None).map(|r| r.unwrap().0).collect();
        assert_eq!(all.len(), 3);
        let later: Vec<u64> = store.pending_after(Some(all[0])).map(|r| r.unwrap().0).collect();
        assert_eq!(later, all[1..]);
        assert_eq!(store.pending_after(Some(all[2])).count(), 0);
    }

    #[test]
    fn a_partitions_students_are_found_together() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let students = district();
        let states =
            students.iter().map(|(id, s)| (Some(if id.ends_with('7') { 7 } else { 2 }), id, s));
        let states = states.collect();
        store.commit(Commit { states, ..Commit::default() }).unwrap();
        let mut expected: Vec<&str> =
            students.iter().map(|(id, _)| id).filter(|id| id.ends_with('7')).collect();
        expected.sort();
        let found: Vec<String> = store.students_of_partition(7).map(|r| r.unwrap().0).collect();
        assert_eq!(found, expected);
    }

    /// Day by day, each batch writes only the parts it changed (and reads the rest back from
    /// the store): the stored states equal states folded whole in memory.
    #[test]
    fn states_written_part_by_part_equal_states_folded_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let rules = Rules::default();
        let mut district =
            District::new(DistrictSpec { students: 40, days: 70, ..DistrictSpec::default() });
        let mut whole = Students::default();
        let (mut touched_states, mut one_value_states) = (0, 0);
        for day in 0..70 {
            let mut touched: std::collections::BTreeMap<String, StudentState> = Default::default();
            for e in district.day(day) {
                let Ok(event) = decode_event(e.json.as_bytes()) else { continue };
                whole.apply(&event, &rules);
                let id = event.student_id.to_string();
                let state = match touched.entry(id) {
                    std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
                    std::collections::btree_map::Entry::Vacant(v) => {
                        let stored = store.student(v.key()).unwrap().unwrap_or_default();
                        v.insert(stored)
                    }
                };
                state.apply(&event, &rules);
            }
            // A state whose batch wrote one value: the current part only.
            let one_value = |s: &StudentState| {
                let u = s.unsaved();
                let current = s.current_month();
                u.months.iter().all(|m| Some(*m) == current)
                    && u.stored_current.is_none_or(|m| Some(m) == current)
                    && !(u.assignment || u.referrals || u.grades || u.others)
            };
            touched_states += touched.len();
            one_value_states += touched.values().filter(|s| one_value(s)).count();
            let states = touched.iter().map(|(id, s)| (Some(0), id.as_str(), s)).collect();
            store.commit(Commit { states, ..Commit::default() }).unwrap();
        }
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        for (id, state) in whole.iter() {
            assert_eq!(store.student(id).unwrap().as_ref(), Some(state), "{id}");
        }
        // Most batches write one value per student, not its history.
        assert!(
            one_value_states * 10 >= touched_states * 8,
            "{one_value_states} of {touched_states} states written as one value"
        );
    }

    /// What a state remembers through the store: losing and replaced events stay duplicates,
    /// a replaced assignment's id too, and a reloaded state goes on folding like the original.
    #[test]
    fn seen_ids_survive_the_store_for_losers_and_replaced_records() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let rules = Rules::default();
        let ev = |id: &str, body: &str, at: &str| {
            format!(
                r#"{{"event_id":"{id}","student_id":"stu-1","school_id":"h1","date":"2026-10-05","recorded_at":"{at}",{body}}}"#
            )
        };
        let absent = r#""type":"attendance","status":"absent_unexcused""#;
        let excused = r#""type":"attendance","status":"absent_excused""#;
        let assign = |adv: &str| format!(r#""type":"assignment","advocate_id":"{adv}""#);
        let events = [
            ev("a1", absent, "2026-10-05T09:00:00Z"),
            ev("a2", excused, "2026-10-05T12:00:00Z"), // replaces a1
            ev("a0", absent, "2026-10-05T08:00:00Z"),  // loses to a2
            ev("s1", &assign("adv-1"), "2026-10-01T08:00:00Z"),
            ev("s2", &assign("adv-2"), "2026-10-02T08:00:00Z"), // replaces s1
        ];
        let mut state = StudentState::default();
        for e in &events {
            state.apply(&decode_event(e.as_bytes()).unwrap(), &rules);
        }
        store
            .commit(Commit { states: vec![(Some(0), "stu-1", &state)], ..Commit::default() })
            .unwrap();
        let mut loaded = store.student("stu-1").unwrap().unwrap();
        assert_eq!(loaded, state);
        assert_eq!(loaded.events_applied(), 5);
        for e in &events {
            let outcome = loaded.apply(&decode_event(e.as_bytes()).unwrap(), &rules);
            assert_eq!(outcome, crate::core::Outcome::Duplicate, "{e}");
        }
        assert_eq!(loaded.other_ids().len(), 3, "a1, a0 and s1 are no record's id");
    }

    #[test]
    fn a_value_of_an_unknown_format_is_refused_with_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.tree.insert(part_key(&state_prefix("stu-1"), b'c'), &[9u8, 1, 2][..]).unwrap();
        let err = store.student("stu-1").unwrap_err().to_string();
        assert!(err.contains("stu-1") && err.contains("format 9"), "{err}");
    }

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

//! One batch of input messages → one store commit: the service's unit of work.
//!
//! The Kafka loop (`service`) hands each batch it polled to [`Pipeline::process`]; everything the
//! batch changes — student states, the next offset of every partition it read, the flag events and
//! dead letters to publish — is written in one atomic, flushed [`Commit`]. Only after that may the
//! loop publish the outbox and commit offsets to Kafka. Kept apart from Kafka so it is tested
//! without a broker.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use time::OffsetDateTime;

use crate::core::{Change, Event, EventKind, Flag, Outcome, Rules, StudentState, decode};
use crate::notify::plan::{Pending, Planner};
use crate::output::FlagEvent;
use crate::store::{Commit, OutboxRecord, Store, StoreError};
use crate::telemetry::{Consumed, NotificationOutcome, Telemetry};

/// Memory for decoded states the pipeline keeps by default, in MiB: 20,000 students' first 60
/// school days, or a ninth of a 1,000,000-student district in its first month. Measured:
/// with 256, a 1,000,000-student district's memory rose by 250 MiB (a cache that stays full
/// likely fragments the heap) for no gain in speed.
pub const DEFAULT_CACHE_MIB: usize = 128;

/// Kafka header on flag events: unix milliseconds of the causing event (its Kafka timestamp, else
/// its `recorded_at`), from which the publisher measures event-to-flag latency.
pub const SOURCE_TIME_HEADER: &str = "ontrack.source.timestamp_ms";

/// `[topics]`: the four inputs (co-partitioned, keyed by `student_id`) and the two outputs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Topics {
    pub attendance: String,
    pub discipline: String,
    pub grades: String,
    pub assignments: String,
    pub flags: String,
    pub dead_letter: String,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            attendance: "sis.attendance".into(),
            discipline: "sis.discipline".into(),
            grades: "sis.grades".into(),
            assignments: "roster.assignments".into(),
            flags: "ontrack.flags".into(),
            dead_letter: "ontrack.dead-letter".into(),
        }
    }
}

impl Topics {
    /// The input topic events of `kind` belong on.
    pub fn input_of(&self, kind: EventKind) -> &str {
        match kind {
            EventKind::Attendance => &self.attendance,
            EventKind::Discipline => &self.discipline,
            EventKind::Grade => &self.grades,
            EventKind::Assignment => &self.assignments,
        }
    }
}

/// One consumed message, as the Kafka loop saw it.
#[derive(Debug, Clone, Copy)]
pub struct InputMessage<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
    /// The message's Kafka timestamp (unix milliseconds), if it has one.
    pub timestamp_ms: Option<i64>,
}

/// What a batch did, for metrics and logs (no student data).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    pub events: u64,
    pub duplicates: u64,
    pub rejected: u64,
    /// Every flag change, in emission order.
    pub flags: Vec<(Flag, Change)>,
    /// Notifications queued for immediate delivery.
    pub notifications: u64,
    /// Alerts queued for a daily digest.
    pub digest_items: u64,
    /// Alerts that could not be addressed (kept as failed notifications).
    pub unroutable: u64,
}

/// The core around the store.
#[derive(Debug)]
pub struct Pipeline {
    store: Store,
    rules: Rules,
    topics: Topics,
    /// `None`: notifications are off.
    planner: Option<Arc<Planner>>,
    telemetry: Arc<Telemetry>,
    /// Decoded states of recently touched students, equal to the store's (taken out while a
    /// batch folds them, put back after its commit): most events find their student here
    /// instead of reading and decoding the stored state.
    cache: std::sync::Mutex<StateCache>,
    cache_bytes: usize,
}

/// The cached states and roughly how much memory they hold.
#[derive(Debug, Default)]
struct StateCache {
    /// Boxed: the table's slots stay small (a table of a million inline states took hundreds
    /// of MB, twice that while it grew).
    states: HashMap<String, Box<StudentState>>,
    bytes: usize,
}

impl StateCache {
    /// Puts a batch's states (saved) back while they fit under `limit` bytes: first those that
    /// were cached, then the others. Nothing resting in the cache is evicted to make room, and
    /// when it is full the states it holds stay: a school day touches every student once, in much
    /// the same order every day, and under that cycle any eviction by recency (or emptying the
    /// cache when full) reads every state back from the store once the district outgrows the
    /// cache, while keeping a fixed part of the students finds that part cached. (Evicting an
    /// arbitrary eighth when full found a few per cent fewer states cached and took 40 MiB more
    /// at 100,000 students.) A cached state that has grown out of the room left is dropped.
    fn put_back(&mut self, states: HashMap<String, Touched>, limit: usize) {
        let (cached, others): (Vec<_>, Vec<_>) = states.into_iter().partition(|(_, t)| t.cached);
        for (id, t) in cached.into_iter().chain(others) {
            let bytes = cached_bytes(&id, &t.state);
            if self.bytes + bytes <= limit {
                self.bytes += bytes;
                self.states.insert(id, Box::new(t.state));
            }
        }
    }
}

/// A student touched by the batch being folded.
#[derive(Debug)]
struct Touched {
    /// The partition its events came through, when the student is new to the store.
    new_in: Option<i32>,
    /// Taken out of the cache (else read from the store, or new).
    cached: bool,
    state: StudentState,
}

/// What a cached state costs: the state, its id and its slot in the table (with the table's
/// spare room).
pub fn cached_bytes(id: &str, state: &StudentState) -> usize {
    state.approx_bytes() + id.len() + 80
}

impl Pipeline {
    pub fn new(store: Store, rules: Rules, topics: Topics) -> Pipeline {
        Pipeline {
            store,
            rules,
            topics,
            planner: None,
            telemetry: Arc::default(),
            cache: std::sync::Mutex::default(),
            cache_bytes: DEFAULT_CACHE_MIB << 20,
        }
    }

    /// Keeps decoded states in up to about `mib` MiB of memory (0: none).
    pub fn with_cache_mib(mut self, mib: usize) -> Pipeline {
        self.cache_bytes = mib << 20;
        self
    }

    /// Keeps decoded states in up to about `bytes` bytes (tests use tiny caches).
    pub fn with_cache_bytes(mut self, bytes: usize) -> Pipeline {
        self.cache_bytes = bytes;
        self
    }

    /// Drops every cached state: the store may change under them (partitions moved to another
    /// instance and back).
    pub fn forget_cached(&self) {
        *self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
            StateCache::default();
    }

    /// Counts into `telemetry` (a pipeline of its own counts into a private one).
    pub fn with_telemetry(mut self, telemetry: Arc<Telemetry>) -> Pipeline {
        self.telemetry = telemetry;
        self
    }

    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.telemetry
    }

    /// Plans advocate notifications for every batch.
    pub fn with_notifications(mut self, planner: Arc<Planner>) -> Pipeline {
        self.planner = Some(planner);
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Folds `batch` (in order) and commits its effects atomically; `now` stamps `emitted_at` and
    /// decides what "today" is for absence alerts.
    /// On `Err` nothing of the batch was written: the caller must not commit its offsets.
    pub fn process(
        &self,
        batch: &[InputMessage<'_>],
        now: OffsetDateTime,
    ) -> Result<BatchOutcome, StoreError> {
        let started = std::time::Instant::now();
        let mut outcome = BatchOutcome::default();
        // Counted per batch, not per event (a labelled counter costs a lookup per call).
        let mut consumed: BTreeMap<(&str, Consumed), u64> = BTreeMap::new();
        // A write batch cannot be read before its commit: states touched in this batch live
        // here, with the partition their events came through if the student is new to the store.
        let mut states: HashMap<String, Touched> = HashMap::new();
        let mut cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut offsets: BTreeMap<(&str, i32), i64> = BTreeMap::new();
        let mut outbox = Vec::new();
        let mut notify = Pending::default();
        // Flags raised now, by (flag, school): the batch's changes.
        let mut raised_delta: BTreeMap<(Flag, String), i64> = BTreeMap::new();
        let mut from_cache = 0u64;
        let timestamp = jiff::Timestamp::from_nanosecond(now.unix_timestamp_nanos())
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        for m in batch {
            let next = offsets.entry((m.topic, m.partition)).or_insert(m.offset + 1);
            *next = (*next).max(m.offset + 1);
            let event = match self.check(m) {
                Ok(event) => event,
                Err((label, reason)) => {
                    outcome.rejected += 1;
                    *consumed.entry((m.topic, Consumed::Rejected)).or_default() += 1;
                    self.telemetry.rejected(label);
                    outbox.push(self.dead_letter(m, &reason));
                    continue;
                }
            };
            outcome.events += 1;
            let state = match states.entry(event.student_id.to_string()) {
                std::collections::hash_map::Entry::Occupied(e) => &mut e.into_mut().state,
                std::collections::hash_map::Entry::Vacant(e) => {
                    // Taken out of the cache: if the commit fails, the next batch reads the store.
                    let (stored, cached) = match cache.states.remove(e.key()) {
                        Some(s) => {
                            cache.bytes = cache.bytes.saturating_sub(cached_bytes(e.key(), &s));
                            from_cache += 1;
                            (Some(*s), true)
                        }
                        None => (self.store.student(&event.student_id)?, false),
                    };
                    let new_in = if stored.is_some() { None } else { Some(m.partition) };
                    &mut e
                        .insert(Touched { new_in, cached, state: stored.unwrap_or_default() })
                        .state
                }
            };
            match state.apply(&event, &self.rules) {
                Outcome::Duplicate => {
                    outcome.duplicates += 1;
                    *consumed.entry((m.topic, Consumed::Duplicate)).or_default() += 1;
                }
                Outcome::Applied(changes) => {
                    *consumed.entry((m.topic, Consumed::Applied)).or_default() += 1;
                    let source_ms = m.timestamp_ms.unwrap_or(
                        event.recorded_at.secs * 1000
                            + i64::from(event.recorded_at.nanos / 1_000_000),
                    );
                    for change in &changes {
                        outcome.flags.push((change.flag, change.change));
                        self.telemetry.flag_changed(change.flag, change.change);
                        let delta = raised_delta
                            .entry((change.flag, change.school_id.to_string()))
                            .or_default();
                        *delta += if change.change == Change::Raised { 1 } else { -1 };
                        let payload = serde_json::to_vec(&FlagEvent::new(change, now))
                            .expect("flag events always serialize");
                        outbox.push(OutboxRecord {
                            topic: self.topics.flags.clone(),
                            key: Some(change.student_id.as_bytes().to_vec()),
                            payload,
                            headers: vec![(
                                SOURCE_TIME_HEADER.into(),
                                source_ms.to_string().into_bytes(),
                            )],
                        });
                    }
                    if let Some(planner) = &self.planner {
                        planner.on_event(
                            &self.store,
                            &mut notify,
                            &event,
                            state,
                            &changes,
                            timestamp,
                        )?;
                    }
                }
            }
        }
        let notify = notify.into_commit();
        outcome.notifications = notify.notifications.len() as u64;
        outcome.digest_items = notify.digest_items.len() as u64;
        outcome.unroutable = notify.failed.len() as u64;
        for n in &notify.notifications {
            self.telemetry.notification(n.to.channel(), NotificationOutcome::Queued);
        }
        for _ in &notify.failed {
            self.telemetry.notification("none", NotificationOutcome::Failed);
        }
        let mut raised_counts = Vec::with_capacity(raised_delta.len());
        for ((flag, school), delta) in &raised_delta {
            // A clear by an event of another school than the raise's cannot go below zero.
            let count = (self.store.raised_count(flag.as_str(), school)? + delta).max(0);
            raised_counts.push((flag.as_str(), school.as_str(), count));
        }
        let commit = Commit {
            states: states.iter().map(|(id, t)| (t.new_in, id.as_str(), &t.state)).collect(),
            offsets: offsets.into_iter().map(|((t, p), o)| (t, p, o)).collect(),
            outbox,
            notify,
            raised_counts: raised_counts.clone(),
        };
        let committing = std::time::Instant::now();
        self.store.commit(commit)?;
        self.telemetry.committed(committing.elapsed());
        for (flag, school, count) in raised_counts {
            self.telemetry.flags_raised(flag, school, count);
        }
        for ((topic, what), n) in consumed {
            self.telemetry.consumed(topic, what, n);
        }
        self.telemetry.state_reads(from_cache, states.len() as u64 - from_cache);
        for t in states.values_mut() {
            t.state.saved();
        }
        cache.put_back(states, self.cache_bytes);
        self.telemetry.batch(started.elapsed());
        Ok(outcome)
    }

    /// Decodes a message and checks it belongs on its topic. The key is not checked: the state is
    /// the student's whatever the key, and only co-partitioning by student_id keeps one consumer
    /// the owner of all of a student's events (the README says so).
    /// Errors carry a bounded label for metrics and the readable reason.
    fn check<'m>(&self, m: &InputMessage<'m>) -> Result<Event<'m>, (&'static str, String)> {
        let payload = m.payload.ok_or(("empty", "empty message: no value".to_owned()))?;
        let event = decode(payload).map_err(|e| (e.reason_label(), e.to_string()))?;
        let expected = self.topics.input_of(event.kind());
        if m.topic != expected {
            let reason = format!(
                "a {} event does not belong on topic {}; send it to {expected}",
                event.kind(),
                m.topic
            );
            return Err(("wrong_topic", reason));
        }
        Ok(event)
    }

    /// The message as it came (key and bytes unchanged), with where it came from and why.
    fn dead_letter(&self, m: &InputMessage<'_>, reason: &str) -> OutboxRecord {
        OutboxRecord {
            topic: self.topics.dead_letter.clone(),
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
}

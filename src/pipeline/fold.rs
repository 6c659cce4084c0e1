//! The fold of one batch: each message decoded and checked, its student's state found (this
//! batch's, the cache's, the store's, or new) and the event applied by the core.
//!
//! The students are split into [`Shards`] by a hash of their id, one per worker: between two
//! events that close school days (or change a calendar), the shards fold their students' events
//! at the same time, each on its own thread with its own share of the state cache, and their
//! results are taken back in message order. Every student is folded by one shard, and each
//! student's events in their order, so the outcome is the one of folding the batch in order.

use super::InputMessage;
use super::Topics;
use super::cache::{ById, CacheLimits, Held, StateCache, Touched};
use super::days::{Clocks, WATCHED};
use crate::core::{Calendars, Days, Event, FlagChange, Outcome, Rules, StudentState, decode};
use crate::notify::plan::{Facts, Now, Planner};
use crate::store::{Batch, Store, StoreError, states};
use crate::telemetry::{REJECT_EMPTY, REJECT_WRONG_TOPIC, StateReads};

/// The states a batch touched, and where they came from.
pub(super) struct Fold<'p> {
    store: &'p Store,
    rules: &'p Rules,
    cache: &'p mut StateCache,
    /// A write batch cannot be read before its commit: states touched in this batch live here.
    pub states: ById<Touched>,
    /// States taken from the cache, decoded and packed (the others were read from the store, or
    /// are new).
    pub from_cache: u64,
    pub from_packed: u64,
}

impl<'p> Fold<'p> {
    pub fn new(
        store: &'p Store,
        rules: &'p Rules,
        cache: &'p mut StateCache,
        students: usize,
    ) -> Fold<'p> {
        Fold {
            store,
            rules,
            cache,
            states: ById::with_capacity_and_hasher(students, Default::default()),
            from_cache: 0,
            from_packed: 0,
        }
    }

    /// The state of `student_id` (which came through `partition`): this batch's, the cache's,
    /// the store's, or a new one.
    pub fn state(&mut self, student_id: &str, partition: i32) -> Result<&mut Touched, StoreError> {
        // Looked up before an id is allocated: a student the batch touched already costs none.
        if !self.states.contains_key(student_id) {
            let (stored, cached) = match self.cache.take(student_id)? {
                Some((s, held)) => {
                    match held {
                        Held::Decoded => self.from_cache += 1,
                        Held::Packed => self.from_packed += 1,
                    }
                    (Some(s), Some(held))
                }
                None => (self.store.stored_student(student_id)?, None),
            };
            let new_in = if stored.is_some() { None } else { Some(partition) };
            let stored = stored.unwrap_or_default();
            let watched = stored.state.watch(self.rules);
            let touched = Touched { new_in, cached, stored, partition, watched };
            return Ok(self.states.entry(student_id.to_owned()).or_insert(touched));
        }
        Ok(self.states.get_mut(student_id).expect("touched: looked up above"))
    }

    /// Applies `event` (which came through `partition`) to its student's state, its figures
    /// counted against `days`.
    pub fn apply(
        &mut self,
        event: &Event<'_>,
        partition: i32,
        days: &Days<'_>,
    ) -> Result<(&StudentState, Outcome), StoreError> {
        let rules = self.rules;
        let state = &mut self.state_for(event, partition)?.stored.state;
        let outcome = state.apply_on(event, rules, days);
        Ok((state, outcome))
    }

    /// Whether `event` (which came through `partition`) was applied before.
    pub fn has_seen(&mut self, event: &Event<'_>, partition: i32) -> Result<bool, StoreError> {
        Ok(self.state_for(event, partition)?.stored.state.has_seen(&event.event_id))
    }

    /// The state `event` is applied to, holding every record the event needs.
    fn state_for(&mut self, event: &Event<'_>, partition: i32) -> Result<&mut Touched, StoreError> {
        let (rules, store) = (self.rules, self.store);
        let touched = self.state(&event.student_id, partition)?;
        store.complete_for(&event.student_id, &mut touched.stored, event, rules)?;
        Ok(touched)
    }

    /// The whole state of `student_id` (passing days and calendar changes count every record).
    pub fn whole_state(
        &mut self,
        student_id: &str,
        partition: i32,
    ) -> Result<&mut Touched, StoreError> {
        let store = self.store;
        let touched = self.state(student_id, partition)?;
        store.complete(student_id, &mut touched.stored)?;
        Ok(touched)
    }

    /// Whether the batch's states say `id` is watched now (`None`: not touched by the batch).
    pub fn watched_now(&self, id: &str) -> Option<bool> {
        self.states.get(id).map(|t| t.stored.state.watch(self.rules))
    }

    /// Adds what changed in every touched state to `batch`, and keeps the watched index true.
    pub fn write(&mut self, batch: &mut Batch<'_>) {
        for (id, t) in &mut self.states {
            states::write(batch, id, &mut t.stored, t.new_in);
            let watched = t.stored.state.watch(self.rules);
            if watched != t.watched {
                match watched {
                    true => WATCHED.put(batch, &(t.partition, id), &()),
                    false => WATCHED.remove(batch, &(t.partition, id)),
                }
                t.watched = watched;
            }
        }
    }

    /// After the commit: the states go back to the cache.
    pub fn finish(self, limits: CacheLimits) {
        self.cache.put_back(self.states, limits);
    }
}

/// Decodes a message and checks it belongs on its topic. The key is not checked: the state
/// is the student's whatever the key, and only co-partitioning by student_id keeps one
/// consumer the owner of all of a student's events (the README says so).
/// Errors carry a bounded label for metrics and the readable reason.
pub(super) fn check<'m>(
    topics: &Topics,
    m: &InputMessage<'m>,
) -> Result<Event<'m>, (&'static str, String)> {
    let payload = m.payload.ok_or((REJECT_EMPTY, "empty message: no value".to_owned()))?;
    let event = decode(payload).map_err(|e| (e.reason_label(), e.to_string()))?;
    let expected = topics.input_of(event.kind());
    if m.topic != expected {
        let reason = format!(
            "a {} event does not belong on topic {}; send it to {expected}",
            event.kind(),
            m.topic
        );
        return Err((REJECT_WRONG_TOPIC, reason));
    }
    Ok(event)
}

/// What applying one event of a segment did, taken back in message order.
pub(super) enum Applied {
    Duplicate,
    Changes {
        changes: Vec<FlagChange>,
        /// What its alerts depend on (when notifications are on).
        facts: Option<Box<Facts>>,
    },
}

/// What every event of a segment is applied with: the days its figures count, and the alert
/// planner (when notifications are on) with the time it plans for.
pub(super) struct Along<'a> {
    pub calendars: &'a Calendars,
    /// Each partition group's clock: the as-of day of its events.
    pub clocks: &'a Clocks,
    pub planner: Option<&'a Planner>,
    pub today: &'a Now,
}

/// One event of a segment: its message index, the event, the partition it came through.
pub(super) type Item<'e, 'm> = (usize, &'e Event<'m>, i32);

/// Fewer messages than this are handled on the calling thread (a thread costs more).
pub(super) const PARALLEL_FROM: usize = 256;

/// Runs `work` on each of `parts`, each on a thread of its own when `parallel` (the first on the
/// calling thread), and gives the results in the parts' order; a panic goes on in the caller.
pub(super) fn side_by_side<P: Send, R: Send>(
    parts: Vec<P>,
    parallel: bool,
    work: impl Fn(P) -> R + Sync,
) -> Vec<R> {
    if !parallel || parts.len() <= 1 {
        return parts.into_iter().map(work).collect();
    }
    let work = &work;
    std::thread::scope(|s| {
        let mut parts = parts.into_iter();
        let first = parts.next();
        let handles: Vec<_> = parts.map(|p| s.spawn(move || work(p))).collect();
        let mut results: Vec<R> = first.into_iter().map(work).collect();
        for h in handles {
            results.push(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        }
        results
    })
}

impl Fold<'_> {
    /// Applies `events` in order.
    fn apply_all(
        &mut self,
        events: &[Item<'_, '_>],
        along: &Along<'_>,
    ) -> Result<Vec<(usize, Applied)>, StoreError> {
        let mut out = Vec::with_capacity(events.len());
        for (i, event, partition) in events {
            let days = Days::new(along.calendars, along.clocks.of(*partition).closed_through());
            let (state, outcome) = self.apply(event, *partition, &days)?;
            let applied = match outcome {
                Outcome::Duplicate => Applied::Duplicate,
                Outcome::Applied(changes) => {
                    let facts = (along.planner)
                        .and_then(|p| p.facts(event, state, &changes, along.today))
                        .map(Box::new);
                    Applied::Changes { changes, facts }
                }
            };
            out.push((*i, applied));
        }
        Ok(out)
    }
}

/// The batch's folds, one per worker; a student belongs to the shard its id hashes to.
pub(super) struct Shards<'p> {
    folds: Vec<Fold<'p>>,
}

impl<'p> Shards<'p> {
    /// About `students` are touched by the batch (room is made for them up front).
    pub fn new(
        store: &'p Store,
        rules: &'p Rules,
        caches: &'p mut [StateCache],
        students: usize,
    ) -> Shards<'p> {
        let each = students / caches.len().max(1);
        Shards { folds: caches.iter_mut().map(|c| Fold::new(store, rules, c, each)).collect() }
    }

    fn of(&mut self, student_id: &str) -> &mut Fold<'p> {
        let n = self.folds.len();
        &mut self.folds[shard_of(student_id, n)]
    }

    /// See [`Fold::has_seen`].
    pub fn has_seen(&mut self, event: &Event<'_>, partition: i32) -> Result<bool, StoreError> {
        self.of(&event.student_id).has_seen(event, partition)
    }

    /// See [`Fold::whole_state`].
    pub fn whole_state(
        &mut self,
        student_id: &str,
        partition: i32,
    ) -> Result<&mut Touched, StoreError> {
        self.of(student_id).whole_state(student_id, partition)
    }

    /// See [`Fold::watched_now`].
    pub fn watched_now(&self, id: &str) -> Option<bool> {
        self.folds[shard_of(id, self.folds.len())].watched_now(id)
    }

    /// Every state the batch touched.
    pub fn states(&self) -> impl Iterator<Item = (&String, &Touched)> {
        self.folds.iter().flat_map(|f| f.states.iter())
    }

    /// Folds a segment of the batch — `events`, none of which closes a day — the shards side by
    /// side; the outcomes in message order.
    pub fn apply_segment(
        &mut self,
        events: &[Item<'_, '_>],
        along: &Along<'_>,
    ) -> Result<Vec<(usize, Applied)>, StoreError> {
        let n = self.folds.len();
        let mut per: Vec<Vec<Item<'_, '_>>> = vec![Vec::new(); n];
        for e in events {
            per[shard_of(&e.1.student_id, n)].push(*e);
        }
        let parts: Vec<_> = self.folds.iter_mut().zip(per).collect();
        let parallel = events.len() >= PARALLEL_FROM;
        let results =
            side_by_side(parts, parallel, |(fold, events)| fold.apply_all(&events, along));
        let mut out = Vec::with_capacity(events.len());
        for r in results {
            out.extend(r?);
        }
        out.sort_unstable_by_key(|(i, _)| *i);
        Ok(out)
    }

    /// See [`Fold::write`]: the shards side by side, each into a batch of its own, joined.
    pub fn write(&mut self, batch: &mut Batch<'p>) {
        let store = batch.store();
        let parallel = self.many_states();
        let parts = side_by_side(self.folds.iter_mut().collect(), parallel, |f| {
            let mut part = store.batch();
            f.write(&mut part);
            part
        });
        for part in parts {
            batch.append(part);
        }
    }

    /// Where the states the batch started from came from.
    pub fn reads(&self) -> StateReads {
        let cache: u64 = self.folds.iter().map(|f| f.from_cache).sum();
        let packed: u64 = self.folds.iter().map(|f| f.from_packed).sum();
        let touched: u64 = self.folds.iter().map(|f| f.states.len() as u64).sum();
        StateReads { cache, packed, store: touched - cache - packed }
    }

    /// See [`Fold::finish`]: each shard keeps its share of `limits` (side by side).
    pub fn finish(self, limits: CacheLimits) {
        let share = limits.share(self.folds.len());
        let parallel = self.many_states();
        side_by_side(self.folds, parallel, |f| f.finish(share));
    }

    /// Whether the batch touched enough students for threads to pay (a live batch of a few
    /// messages writes and caches its states on the calling thread).
    fn many_states(&self) -> bool {
        self.folds.iter().map(|f| f.states.len()).sum::<usize>() >= PARALLEL_FROM
    }
}

/// The shard of `student_id` among `n`.
fn shard_of(student_id: &str, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    (xxhash_rust::xxh3::xxh3_64(student_id.as_bytes()) % n as u64) as usize
}

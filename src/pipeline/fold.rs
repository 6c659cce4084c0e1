//! The fold of one batch: each message decoded and checked, its student's state found (this
//! batch's, the cache's, the store's, or new) and the event applied by the core.

use std::collections::HashMap;

use super::InputMessage;
use super::Topics;
use super::cache::{StateCache, Touched};
use super::days::WATCHED;
use crate::core::{Days, Event, Outcome, Rules, StudentState, decode};
use crate::store::{Batch, Store, StoreError, states};
use crate::telemetry::{REJECT_EMPTY, REJECT_WRONG_TOPIC};

/// The states a batch touched, and where they came from.
pub(super) struct Fold<'p> {
    store: &'p Store,
    rules: &'p Rules,
    topics: &'p Topics,
    cache: &'p mut StateCache,
    /// A write batch cannot be read before its commit: states touched in this batch live here.
    pub states: HashMap<String, Touched>,
    /// States taken from the cache (the others were read from the store, or are new).
    pub from_cache: u64,
}

impl<'p> Fold<'p> {
    pub fn new(
        store: &'p Store,
        rules: &'p Rules,
        topics: &'p Topics,
        cache: &'p mut StateCache,
    ) -> Fold<'p> {
        Fold { store, rules, topics, cache, states: HashMap::new(), from_cache: 0 }
    }

    /// Decodes a message and checks it belongs on its topic. The key is not checked: the state
    /// is the student's whatever the key, and only co-partitioning by student_id keeps one
    /// consumer the owner of all of a student's events (the README says so).
    /// Errors carry a bounded label for metrics and the readable reason.
    pub fn check<'m>(&self, m: &InputMessage<'m>) -> Result<Event<'m>, (&'static str, String)> {
        let payload = m.payload.ok_or((REJECT_EMPTY, "empty message: no value".to_owned()))?;
        let event = decode(payload).map_err(|e| (e.reason_label(), e.to_string()))?;
        let expected = self.topics.input_of(event.kind());
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

    /// The state of `student_id` (which came through `partition`): this batch's, the cache's,
    /// the store's, or a new one.
    pub fn state(&mut self, student_id: &str, partition: i32) -> Result<&mut Touched, StoreError> {
        Ok(match self.states.entry(student_id.to_owned()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let (stored, cached) = match self.cache.take(e.key()) {
                    Some(s) => {
                        self.from_cache += 1;
                        (Some(s), true)
                    }
                    None => (self.store.stored_student(e.key())?, false),
                };
                let new_in = if stored.is_some() { None } else { Some(partition) };
                let stored = stored.unwrap_or_default();
                let watched = stored.state.watch(self.rules);
                e.insert(Touched { new_in, cached, stored, partition, watched })
            }
        })
    }

    /// Applies `event` (which came through `partition`) to its student's state, its figures
    /// counted against `days`.
    pub fn apply(
        &mut self,
        event: &Event<'_>,
        partition: i32,
        days: &Days<'_>,
    ) -> Result<(&StudentState, Outcome), StoreError> {
        let (rules, store) = (self.rules, self.store);
        let touched = self.state(&event.student_id, partition)?;
        store.complete_for(&event.student_id, &mut touched.stored, event, rules)?;
        let state = &mut touched.stored.state;
        let outcome = state.apply_on(event, rules, days);
        Ok((state, outcome))
    }

    /// Whether `event` (which came through `partition`) was applied before.
    pub fn has_seen(&mut self, event: &Event<'_>, partition: i32) -> Result<bool, StoreError> {
        let (rules, store) = (self.rules, self.store);
        let touched = self.state(&event.student_id, partition)?;
        store.complete_for(&event.student_id, &mut touched.stored, event, rules)?;
        Ok(touched.stored.state.has_seen(&event.event_id))
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
    pub fn finish(self, cache_limit: usize) {
        self.cache.put_back(self.states, cache_limit);
    }
}

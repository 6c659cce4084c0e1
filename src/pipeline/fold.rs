//! The fold of one batch: each message decoded and checked, its student's state found (this
//! batch's, the cache's, the store's, or new) and the event applied by the core.

use std::collections::HashMap;

use super::InputMessage;
use super::Topics;
use super::cache::{StateCache, Touched};
use crate::core::{Event, Outcome, Rules, StudentState, decode};
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

    /// Applies `event` (which came through `partition`) to its student's state.
    pub fn apply(
        &mut self,
        event: &Event<'_>,
        partition: i32,
    ) -> Result<(&StudentState, Outcome), StoreError> {
        let state = match self.states.entry(event.student_id.to_string()) {
            std::collections::hash_map::Entry::Occupied(e) => &mut e.into_mut().stored.state,
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
                &mut e.insert(Touched { new_in, cached, stored }).stored.state
            }
        };
        let outcome = state.apply(event, self.rules);
        Ok((state, outcome))
    }

    /// Adds what changed in every touched state to `batch`.
    pub fn write(&mut self, batch: &mut Batch<'_>) {
        for (id, t) in &mut self.states {
            states::write(batch, id, &mut t.stored, t.new_in);
        }
    }

    /// After the commit: the states go back to the cache.
    pub fn finish(self, cache_limit: usize) {
        self.cache.put_back(self.states, cache_limit);
    }
}

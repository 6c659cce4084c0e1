//! Every student's state in memory, routed by `student_id`: what `replay` folds into.

use std::collections::HashMap;

use compact_str::CompactString;

use super::event::Event;
use super::rules::Rules;
use super::state::{Outcome, StudentState};

/// Student states by `student_id`.
#[derive(Debug, Clone, Default)]
pub struct Students {
    // Looked up once per event over a table too large for the cache: ids of up to 24 bytes sit
    // inline in the table (no second cache miss on a heap key), hashed with seeded foldhash.
    map: HashMap<CompactString, StudentState, foldhash::fast::RandomState>,
}

impl Students {
    /// Folds `event` into its student's state (created on the student's first event).
    pub fn apply(&mut self, event: &Event<'_>, rules: &Rules) -> Outcome {
        let state = match self.map.get_mut(&*event.student_id) {
            Some(state) => state,
            None => self.map.entry(CompactString::from(&*event.student_id)).or_default(),
        };
        let outcome = state.apply(event, rules);
        // Nothing here stores states: what changed is not kept.
        state.forget_changes();
        outcome
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Every student, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &StudentState)> {
        self.map.iter().map(|(id, s)| (id.as_str(), s))
    }
}

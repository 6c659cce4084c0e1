//! Decoded student states kept between batches: most events find their student here instead of
//! reading and decoding the stored state.

use std::collections::HashMap;

use crate::core::StudentState;
use crate::store::Stored;

/// Memory for decoded states the pipeline keeps by default, in MiB: 20,000 students' first 60
/// school days, or a ninth of a 1,000,000-student district in its first month. Measured:
/// with 256, a 1,000,000-student district's memory rose by 250 MiB (a cache that stays full
/// likely fragments the heap) for no gain in speed.
pub const DEFAULT_CACHE_MIB: usize = 128;

/// The cached states (equal to the store's: taken out while a batch folds them, put back after
/// its commit) and roughly how much memory they hold.
#[derive(Debug, Default)]
pub(super) struct StateCache {
    /// Boxed: the table's slots stay small (a table of a million inline states took hundreds
    /// of MB, twice that while it grew).
    states: HashMap<String, Box<Stored>>,
    bytes: usize,
}

/// A student touched by the batch being folded.
#[derive(Debug)]
pub(super) struct Touched {
    /// The partition its events came through, when the student is new to the store.
    pub new_in: Option<i32>,
    /// Taken out of the cache (else read from the store, or new).
    pub cached: bool,
    pub stored: Stored,
    /// The partition the student's events come through.
    pub partition: i32,
    /// Whether the state was watched (in `days::WATCHED`) when it was loaded.
    pub watched: bool,
}

/// What a cached state costs: the state, its id and its slot in the table (with the table's
/// spare room).
pub fn cached_bytes(id: &str, state: &StudentState) -> usize {
    state.approx_bytes() + id.len() + 80
}

impl StateCache {
    /// Takes a student's state out (if cached): if the batch's commit fails, the next batch
    /// reads the store.
    pub fn take(&mut self, student_id: &str) -> Option<Stored> {
        let s = self.states.remove(student_id)?;
        self.bytes = self.bytes.saturating_sub(cached_bytes(student_id, &s.state));
        Some(*s)
    }

    /// Puts a batch's states (written and committed) back while they fit under `limit` bytes: first those that
    /// were cached, then the others. Nothing resting in the cache is evicted to make room, and
    /// when it is full the states it holds stay: a school day touches every student once, in much
    /// the same order every day, and under that cycle any eviction by recency (or emptying the
    /// cache when full) reads every state back from the store once the district outgrows the
    /// cache, while keeping a fixed part of the students finds that part cached. (Evicting an
    /// arbitrary eighth when full found a few per cent fewer states cached and took 40 MiB more
    /// at 100,000 students.) A cached state that has grown out of the room left is dropped.
    pub fn put_back(&mut self, states: HashMap<String, Touched>, limit: usize) {
        let (cached, others): (Vec<_>, Vec<_>) = states.into_iter().partition(|(_, t)| t.cached);
        for (id, t) in cached.into_iter().chain(others) {
            let bytes = cached_bytes(&id, &t.stored.state);
            if self.bytes + bytes <= limit {
                self.bytes += bytes;
                self.states.insert(id, Box::new(t.stored));
            }
        }
    }
}

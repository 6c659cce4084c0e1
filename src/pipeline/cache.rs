//! Student states kept between batches: most events find their student here instead of
//! reading the stored state. Decoded while they fit `batch.state_cache_mib`; the others packed
//! as the store has them (by day 60 ≈ 2.3 KB in format 3, less in format 4; ≈ 3.3 KB decoded)
//! while they fit `batch.packed_cache_mib`: a packed state costs a decode, not the LSM tree's
//! point reads.

use std::collections::HashMap;

use crate::core::StudentState;
use crate::store::states::{Packed, repack, set_aside, unpack_kept};
use crate::store::{StoreError, Stored};

/// Memory for decoded states the pipeline keeps by default, in MiB: 20,000 students' first 60
/// school days, or a ninth of a 1,000,000-student district in its first month. Measured:
/// with 256, a 1,000,000-student district's memory rose by 250 MiB (a cache that stays full
/// likely fragments the heap) for no gain in speed.
pub const DEFAULT_CACHE_MIB: usize = 128;

/// Memory for packed states by default, in MiB. A packed hot state was ≈ 2.3 KB by day 60 in
/// format 3 (its grades and the last two months' records, as stored; decoded ≈ 3.3 KB), less in
/// format 4 (64 MiB then found 0.97 of the states in memory, against 0.89). Measured (fold
/// harness, 100,000 × 60, format 3): none 57.4k events/s, 0.55 of the states found in memory,
/// 765 MiB; 64 MiB 70.0k, 0.87, 852 MiB; 128 MiB 71–76k, 0.98, 917–959 MiB — and 128 took a
/// 1,000,000-student district to 1,003 MiB (from 804).
pub const DEFAULT_PACKED_MIB: usize = 64;

/// A table keyed by student id (seeded foldhash: SipHash took ≈ 0.6 % of the fold harness's
/// samples, hashing each id three times per event).
pub(super) type ById<V> = HashMap<String, V, foldhash::fast::RandomState>;

/// The cached states (equal to the store's once any referrals and grades set aside are put back:
/// taken out while a batch folds them, put back after its commit; a student is in one form at
/// most) and roughly how much memory they hold.
#[derive(Debug, Default)]
pub(super) struct StateCache {
    /// Boxed: the table's slots stay small (a table of a million inline states took hundreds
    /// of MB, twice that while it grew). With what each was counted as.
    states: ById<(Box<Stored>, usize)>,
    bytes: usize,
    packed: ById<Packed>,
    packed_bytes: usize,
}

/// Where a state taken from the cache was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Held {
    Decoded,
    Packed,
}

/// How much memory a cache may hold, in bytes: decoded states, packed ones.
#[derive(Debug, Clone, Copy)]
pub struct CacheLimits {
    pub decoded: usize,
    pub packed: usize,
}

impl CacheLimits {
    /// Each of `n` shards' share.
    pub(super) fn share(self, n: usize) -> CacheLimits {
        let n = n.max(1);
        CacheLimits { decoded: self.decoded / n, packed: self.packed / n }
    }
}

/// A student touched by the batch being folded.
#[derive(Debug)]
pub(super) struct Touched {
    /// The partition its events came through, when the student is new to the store.
    pub new_in: Option<i32>,
    /// Taken out of the cache (else read from the store, or new).
    pub cached: Option<Held>,
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

/// [`cached_bytes`] at least, found without reading the records.
fn cached_bytes_at_least(id: &str, state: &StudentState) -> usize {
    state.approx_bytes_at_least() + id.len() + 80
}

/// What a cached decoded state costs with its records set aside.
fn stored_bytes(id: &str, stored: &Stored) -> usize {
    cached_bytes(id, &stored.state) + stored.aside_bytes()
}

/// What a packed state costs, the same way.
fn packed_bytes(id: &str, packed: &Packed) -> usize {
    packed.bytes() + id.len() + 64
}

impl StateCache {
    /// Takes a student's state out (if cached): if the batch's commit fails, the next batch
    /// reads the store.
    pub fn take(&mut self, student_id: &str) -> Result<Option<(Stored, Held)>, StoreError> {
        if let Some((s, bytes)) = self.states.remove(student_id) {
            self.bytes = self.bytes.saturating_sub(bytes);
            return Ok(Some((*s, Held::Decoded)));
        }
        let Some(p) = self.packed.remove(student_id) else { return Ok(None) };
        self.packed_bytes = self.packed_bytes.saturating_sub(packed_bytes(student_id, &p));
        Ok(Some((unpack_kept(student_id, p)?, Held::Packed)))
    }

    /// Puts a batch's states (written and committed) back while they fit under `limits`: first
    /// those that were cached decoded, then the others; a state that does not fit decoded is
    /// packed if it fits that way. Nothing resting in the cache is evicted to make room, and
    /// when it is full the states it holds stay: a school day touches every student once, in much
    /// the same order every day, and under that cycle any eviction by recency (or emptying the
    /// cache when full) reads every state back from the store once the district outgrows the
    /// cache, while keeping a fixed part of the students finds that part cached. (Evicting an
    /// arbitrary eighth when full found a few per cent fewer states cached and took 40 MiB more
    /// at 100,000 students.) A cached state that has grown out of the room left is packed, or
    /// dropped.
    pub fn put_back(&mut self, states: ById<Touched>, limits: CacheLimits) {
        let (cached, others): (Vec<_>, Vec<_>) =
            states.into_iter().partition(|(_, t)| t.cached == Some(Held::Decoded));
        // Once a packed state did not fit, the others are not packed to be thrown away.
        let mut packing = self.packed_bytes < limits.packed;
        for (id, mut t) in cached.into_iter().chain(others) {
            if self.bytes < limits.decoded || packing {
                // Kept, it is smaller with its referrals and grades set aside, and packs and
                // unpacks without them (a school day's attendance does not read them).
                set_aside(&mut t.stored);
            }
            // Measured (every record read) only when it may fit.
            let fits = |bytes: usize| self.bytes + bytes <= limits.decoded;
            let decoded = fits(cached_bytes_at_least(&id, &t.stored.state))
                .then(|| stored_bytes(&id, &t.stored))
                .filter(|bytes| fits(*bytes));
            if let Some(bytes) = decoded {
                self.bytes += bytes;
                t.stored.forget_packed();
                self.states.insert(id, (Box::new(t.stored), bytes));
            } else if packing && let Some(packed) = repack(&mut t.stored) {
                let bytes = packed_bytes(&id, &packed);
                if self.packed_bytes + bytes <= limits.packed {
                    self.packed_bytes += bytes;
                    self.packed.insert(id, packed);
                } else {
                    packing = false;
                }
            }
        }
    }
}

//! How many messages a backlog's next batch gathers.
//!
//! A batch writes each student it touched once, so a batch with several events per student
//! writes fewer states than events (at 20,000 students, batches of 50,000 folded 110k → 173k
//! events/s in the fold harness). A batch whose events are mostly of different students writes
//! as many states as with small batches and holds them all in memory at once (a 1,000,000-student
//! district went from 761 to 1,145 MiB with batches of 50,000): the next batches are smaller.

/// The least a backlog's batches shrink to (ontrack's batch size before large batches).
pub const SMALLEST_BATCH: usize = 5_000;

/// The size of a backlog's next batch: `batch.max_events` while its batches touch students
/// several times each, halving down to [`SMALLEST_BATCH`] while they do not, doubling back when
/// they do again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchSize {
    max: usize,
    next: usize,
}

impl BatchSize {
    pub fn new(max_events: usize) -> BatchSize {
        let max = max_events.max(1);
        BatchSize { max, next: max }
    }

    /// How many messages the next batch may gather.
    pub fn next(&self) -> usize {
        self.next
    }

    /// A batch of `messages` touched `students`. One under half the size (live traffic, the
    /// end of a backlog) says nothing of the district; a full one whose students had under 4/3
    /// of a message each halves the next, else doubles it (within the bounds).
    pub fn observe(&mut self, messages: u64, students: u64) {
        if messages.saturating_mul(2) < self.next as u64 {
            return;
        }
        self.next = if students.saturating_mul(4) > messages.saturating_mul(3) {
            (self.next / 2).max(SMALLEST_BATCH.min(self.max))
        } else {
            self.next.saturating_mul(2).min(self.max)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_district_larger_than_the_batch_gets_small_batches_and_a_small_one_keeps_large_ones() {
        // 100,000 students: a batch touches nearly as many students as it has messages.
        let mut size = BatchSize::new(50_000);
        for _ in 0..5 {
            let n = size.next() as u64;
            size.observe(n, n * 9 / 10);
        }
        assert_eq!(size.next(), SMALLEST_BATCH);
        // Live traffic (small batches) changes nothing.
        size.observe(40, 40);
        assert_eq!(size.next(), SMALLEST_BATCH);
        // 20,000 students: batches of several messages per student grow back to the maximum.
        for _ in 0..4 {
            let n = size.next() as u64;
            size.observe(n, (n / 3).min(20_000));
        }
        assert_eq!(size.next(), 50_000);
        size.observe(50_000, 20_000);
        assert_eq!(size.next(), 50_000);
        // A maximum below the smallest batch is kept.
        let mut small = BatchSize::new(100);
        small.observe(100, 100);
        assert_eq!(small.next(), 100);
    }
}

//! The service's clock: the system's, or one that starts at a configured instant and runs at
//! normal speed (`clock_start`, for tests that need a particular "today"); the demo moves it
//! from school day to school day ([`Clock::set`]). Clones share one clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use jiff::Timestamp;

#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// Milliseconds added to the system clock.
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    pub fn system() -> Clock {
        Clock::default()
    }

    /// A clock that reads `start` now and advances with the system clock.
    pub fn starting_at(start: Timestamp) -> Clock {
        let clock = Clock::default();
        clock.set(start);
        clock
    }

    /// From now on this clock (and its clones) reads `now`, advancing with the system clock.
    pub fn set(&self, now: Timestamp) {
        let offset = now.as_millisecond() - Timestamp::now().as_millisecond();
        self.offset_ms.store(offset, Ordering::Relaxed);
    }

    pub fn now(&self) -> Timestamp {
        let ms = Timestamp::now().as_millisecond() + self.offset_ms.load(Ordering::Relaxed);
        Timestamp::from_millisecond(ms).unwrap_or(Timestamp::MAX)
    }

    pub fn now_ms(&self) -> i64 {
        self.now().as_millisecond()
    }

    /// How long until `at_ms` on this clock (zero when it has passed).
    pub fn until(&self, at_ms: i64) -> Duration {
        Duration::from_millis((at_ms - self.now_ms()).max(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::SignedDuration;

    #[test]
    fn a_clock_started_in_the_past_reads_that_time_runs_and_moves_for_its_clones() {
        let start: Timestamp = "2026-09-14T13:40:00Z".parse().unwrap();
        let clock = Clock::starting_at(start);
        let read = clock.now();
        assert!(read >= start && read.duration_since(start) < SignedDuration::from_secs(5));
        let clone = clock.clone();
        let later: Timestamp = "2026-09-15T13:40:00Z".parse().unwrap();
        clock.set(later);
        assert!(
            clone.now() >= later
                && clone.now().duration_since(later) < SignedDuration::from_secs(5)
        );
    }
}

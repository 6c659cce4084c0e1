//! The service's clock: the system's, or one that starts at a configured instant and runs at
//! normal speed (`clock_start`, for demos and tests that need a particular "today").

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Clock {
    offset: SignedDuration,
}

impl Clock {
    pub fn system() -> Clock {
        Clock::default()
    }

    /// A clock that reads `start` now and advances with the system clock.
    pub fn starting_at(start: Timestamp) -> Clock {
        Clock { offset: start.duration_since(Timestamp::now()) }
    }

    pub fn now(&self) -> Timestamp {
        Timestamp::now().checked_add(self.offset).unwrap_or(Timestamp::MAX)
    }

    pub fn now_ms(&self) -> i64 {
        self.now().as_millisecond()
    }

    /// `now` for the parts written with the `time` crate (`emitted_at`).
    pub fn now_utc(&self) -> time::OffsetDateTime {
        let nanos = self.now().as_nanosecond();
        time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
    }

    /// How long until `at_ms` on this clock (zero when it has passed).
    pub fn until(&self, at_ms: i64) -> Duration {
        Duration::from_millis((at_ms - self.now_ms()).max(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_started_in_the_past_reads_that_time_and_runs() {
        let start: Timestamp = "2026-09-14T13:40:00Z".parse().unwrap();
        let clock = Clock::starting_at(start);
        let read = clock.now();
        assert!(read >= start && read.duration_since(start) < SignedDuration::from_secs(5));
        assert_eq!(clock.now_utc().unix_timestamp() / 60, read.as_second() / 60);
    }
}

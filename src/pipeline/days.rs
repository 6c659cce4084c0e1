//! School days in the service (contract v1.1): the calendars every instance keeps whole, the day
//! clock of each partition group, and the indexes that find the students a passing day or a
//! calendar change concerns.
//!
//! Each partition group (partition *i* of every input) has its own day clock, moved by its own
//! records (and by the calendar records, which take their place in every group's time order):
//! a group that catches up a backlog counts its students' days as its records reach them, while
//! another group is live. A store written when the clock was the instance's has one clock; every
//! group starts from it.
//!
//! Invariants: [`WATCHED`] holds `(partition, student)` exactly for the stored states whose
//! `watch` is true (a passing day can change their flags); [`ENROLLED`] holds every
//! `(partition, school, student)` a student was ever enrolled at. Both are written in the same
//! commit as the states, so re-evaluating costs in proportion to the students concerned.

use std::collections::{BTreeMap, BTreeSet};

use time::Date;

use crate::core::{CalendarRecord, Calendars, DayClock};
use crate::store::table::{BigEndianI64, Nothing, PartitionText, Postcard, Table, Text, TextPair};
use crate::store::{Batch, Store, StoreError};

/// `k` + school_id, 0, date (`YYYY-MM-DD`) → the winning calendar record.
pub const CALENDAR: Table<TextPair, Postcard<CalendarRecord>> = Table::new(b'k', "calendars");
/// `y` + `closed_through/` + partition → the last school day that has ended in that partition
/// group (Julian day number); `y` + `closed_through`: the instance's one clock of a store
/// written before the groups had their own.
pub const CLOCK: Table<Text, BigEndianI64> = Table::new(b'y', "day clock");
/// `h` + partition + student_id → nothing: the students whose flags a passing day can change.
pub const WATCHED: Table<PartitionText, Nothing> = Table::new(b'h', "students days can change");
/// `e` + partition + school_id, 0, student_id → nothing: who was enrolled where.
pub const ENROLLED: Table<PartitionText, Nothing> = Table::new(b'e', "enrollments by school");

/// The tables this module owns, by prefix.
pub const PREFIXES: [(u8, &str); 4] = [
    (CALENDAR.prefix(), CALENDAR.name),
    (CLOCK.prefix(), CLOCK.name),
    (WATCHED.prefix(), WATCHED.name),
    (ENROLLED.prefix(), ENROLLED.name),
];

const CLOSED_THROUGH: &str = "closed_through";
const CLOSED_THROUGH_OF: &str = "closed_through/";

/// The calendars and the partition groups' clocks, as the store has them.
#[derive(Debug, Clone, Default)]
pub struct DayState {
    pub calendars: Calendars,
    pub clocks: Clocks,
    /// The record that last closed days in a group that follows the instance's day (not
    /// stored: after a restart, the time of the batch).
    pub last_closer: Option<Closer>,
}

/// Which partition groups were caught up (no message of theirs older than the batch's could
/// still come; `None`: every group) before a batch and after it.
#[derive(Debug, Clone, Copy)]
pub struct Following<'a> {
    pub before: Option<&'a BTreeSet<i32>>,
    pub after: Option<&'a BTreeSet<i32>>,
}

impl Following<'_> {
    /// Caught up before and after the batch: the group follows the instance's day through it.
    pub fn throughout(&self, partition: i32) -> bool {
        self.before.is_none_or(|s| s.contains(&partition)) && self.after(partition)
    }

    /// Caught up after the batch.
    pub fn after(&self, partition: i32) -> bool {
        self.after.is_none_or(|s| s.contains(&partition))
    }
}

/// What a flag change caused by passing days names as its record: the times of the record that
/// closed the days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closer {
    pub recorded_at_s: i64,
    /// Its Kafka timestamp (else its `recorded_at`), copied onto the flags (unix ms).
    pub source_ms: i64,
}

impl Closer {
    pub fn of(event: &crate::core::Event<'_>, source_ms: i64) -> Closer {
        Closer { recorded_at_s: event.recorded_at.secs, source_ms }
    }
}

/// The day clock of each partition group.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Clocks {
    by_partition: BTreeMap<i32, DayClock>,
    /// Where a group without a clock of its own starts (a store's clock from before the groups
    /// had their own; else none).
    start: DayClock,
}

impl Clocks {
    /// The clock of `partition`'s group.
    pub fn of(&self, partition: i32) -> DayClock {
        self.by_partition.get(&partition).copied().unwrap_or(self.start)
    }

    /// The clock of `partition`'s group, to move.
    pub fn of_mut(&mut self, partition: i32) -> &mut DayClock {
        self.by_partition.entry(partition).or_insert(self.start)
    }

    /// Whether `day` has ended in `partition`'s group.
    pub fn passed(&self, partition: i32, day: Date) -> bool {
        self.of(partition).closed_through().is_some_and(|c| day <= c)
    }

    /// The latest day any of `partitions`' groups has closed.
    pub fn latest(&self, partitions: &[i32]) -> Option<Date> {
        partitions.iter().filter_map(|p| self.of(*p).closed_through()).max()
    }

    /// The groups with a clock of their own.
    pub fn partitions(&self) -> impl Iterator<Item = i32> + '_ {
        self.by_partition.keys().copied()
    }

    /// Writes the clocks that differ from `before`'s.
    pub fn write_changed(&self, before: &Clocks, batch: &mut Batch<'_>) {
        for (partition, clock) in &self.by_partition {
            if before.of(*partition) == *clock {
                continue;
            }
            if let Some(day) = clock.closed_through() {
                let key = format!("{CLOSED_THROUGH_OF}{partition}");
                CLOCK.put(batch, &key.as_str(), &i64::from(day.to_julian_day()));
            }
        }
    }
}

impl DayState {
    pub fn load(store: &Store) -> Result<DayState, StoreError> {
        let mut calendars = Calendars::default();
        for item in CALENDAR.iter(store) {
            let ((school, _), record) = item?;
            calendars.restore(&school, record);
        }
        let mut clocks = Clocks::default();
        for item in CLOCK.iter(store) {
            let (key, day) = item?;
            let clock = DayClock::new(from_julian(day));
            let group = key.strip_prefix(CLOSED_THROUGH_OF).and_then(|p| p.parse::<i32>().ok());
            match (key.as_str(), group) {
                (CLOSED_THROUGH, _) => clocks.start = clock,
                (_, Some(partition)) => {
                    clocks.by_partition.insert(partition, clock);
                }
                _ => {
                    return Err(StoreError::Corrupt {
                        key: format!("y{key}"),
                        reason: "not a day clock's key".into(),
                    });
                }
            }
        }
        Ok(DayState { calendars, clocks, last_closer: None })
    }
}

/// Writes a winning calendar record.
pub fn write_calendar(batch: &mut Batch<'_>, school_id: &str, record: &CalendarRecord) {
    CALENDAR.put(batch, &(school_id, &record.date.to_string()), record);
}

fn from_julian(day: i64) -> Option<Date> {
    Date::from_julian_day(i32::try_from(day).ok()?).ok()
}

/// The keys of a by-partition index in `partitions` (every partition: `None`).
fn keys_of(
    table: &Table<PartitionText, Nothing>,
    store: &Store,
    partitions: Option<&BTreeSet<i32>>,
) -> Result<Vec<(i32, String)>, StoreError> {
    let items: Box<dyn Iterator<Item = _>> = match partitions {
        Some(ps) => Box::new(ps.iter().flat_map(|p| table.iter_partition(store, *p))),
        None => Box::new(table.iter(store)),
    };
    items.map(|item| item.map(|(key, ())| key)).collect()
}

/// The stored watched students of `partitions` (every partition: `None`), in (partition,
/// student) order.
pub fn watched(
    store: &Store,
    partitions: Option<&BTreeSet<i32>>,
) -> Result<BTreeSet<(i32, String)>, StoreError> {
    Ok(keys_of(&WATCHED, store, partitions)?.into_iter().collect())
}

/// The stored students ever enrolled at `school_id` in `partitions` (every partition: `None`).
pub fn enrolled_at(
    store: &Store,
    partitions: Option<&BTreeSet<i32>>,
    school_id: &str,
) -> Result<BTreeSet<(i32, String)>, StoreError> {
    let keys = keys_of(&ENROLLED, store, partitions)?;
    let at = |(p, key): &(i32, String)| {
        let (school, student) = key.split_once('\0')?;
        (school == school_id).then(|| (*p, student.to_owned()))
    };
    Ok(keys.iter().filter_map(at).collect())
}

/// Notes that `student_id` (of `partition`) was enrolled at `school_id`.
pub fn put_enrolled(batch: &mut Batch<'_>, partition: i32, school_id: &str, student_id: &str) {
    ENROLLED.put(batch, &(partition, &format!("{school_id}\0{student_id}")), &());
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn stored_day(store: &Store, key: &str) -> Option<Date> {
        CLOCK.get(store, &key).unwrap().and_then(from_julian)
    }

    #[test]
    fn each_group_keeps_its_own_clock_and_a_former_instance_clock_is_where_groups_start() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // A store written when the instance had one clock.
        let mut batch = store.batch();
        CLOCK.put(&mut batch, &CLOSED_THROUGH, &i64::from(date!(2026 - 09 - 10).to_julian_day()));
        store.commit(batch).unwrap();

        let mut state = DayState::load(&store).unwrap();
        let before = state.clocks.clone();
        assert_eq!(state.clocks.of(2).closed_through(), Some(date!(2026 - 09 - 10)));
        state.clocks.of_mut(0).close_through(date!(2026 - 09 - 14));
        let _ = state.clocks.of_mut(1);
        let mut batch = store.batch();
        state.clocks.write_changed(&before, &mut batch);
        store.commit(batch).unwrap();
        // Only the clock that moved is written.
        assert_eq!(stored_day(&store, "closed_through/0"), Some(date!(2026 - 09 - 14)));
        assert_eq!(stored_day(&store, "closed_through/1"), None);

        let state = DayState::load(&store).unwrap();
        assert_eq!(state.clocks.of(0).closed_through(), Some(date!(2026 - 09 - 14)));
        assert!(state.clocks.passed(0, date!(2026 - 09 - 14)));
        assert!(!state.clocks.passed(3, date!(2026 - 09 - 14)));
        assert!(state.clocks.passed(3, date!(2026 - 09 - 10)));
    }
}

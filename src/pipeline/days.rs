//! School days in the service (contract v1.1): the calendars every instance keeps whole, the day
//! clock, and the indexes that find the students a passing day or a calendar change concerns.
//!
//! Invariants: [`WATCHED`] holds `(partition, student)` exactly for the stored states whose
//! `watch` is true (a passing day can change their flags); [`ENROLLED`] holds every
//! `(partition, school, student)` a student was ever enrolled at. Both are written in the same
//! commit as the states, so re-evaluating costs in proportion to the students concerned.

use std::collections::BTreeSet;

use time::Date;

use crate::core::{CalendarRecord, Calendars, DayClock};
use crate::store::table::{BigEndianI64, Nothing, PartitionText, Postcard, Table, Text, TextPair};
use crate::store::{Batch, Store, StoreError};

/// `k` + school_id, 0, date (`YYYY-MM-DD`) → the winning calendar record.
pub const CALENDAR: Table<TextPair, Postcard<CalendarRecord>> = Table::new(b'k', "calendars");
/// `y` + `closed_through` → the last school day that has ended (Julian day number).
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

/// The calendars and the clock, as the store has them.
#[derive(Debug, Clone, Default)]
pub struct DayState {
    pub calendars: Calendars,
    pub clock: DayClock,
}

impl DayState {
    pub fn load(store: &Store) -> Result<DayState, StoreError> {
        let mut calendars = Calendars::default();
        for item in CALENDAR.iter(store) {
            let ((school, _), record) = item?;
            calendars.restore(&school, record);
        }
        let closed = CLOCK.get(store, &CLOSED_THROUGH)?.and_then(from_julian);
        Ok(DayState { calendars, clock: DayClock::new(closed) })
    }

    /// Writes the clock.
    pub fn write_clock(&self, batch: &mut Batch<'_>) {
        if let Some(day) = self.clock.closed_through() {
            CLOCK.put(batch, &CLOSED_THROUGH, &i64::from(day.to_julian_day()));
        }
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

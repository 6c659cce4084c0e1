//! The schools' calendars (contract v1.1 `calendar`): a table every instance keeps whole, and
//! the day clock that says which school days have ended.
//!
//! A calendar is not a student's: it is a global table, like a Kafka Streams GlobalKTable. The
//! winning record per (`school_id`, `date`) is chosen like every other record (greatest
//! `(recorded_at, event_id)`; a winning tombstone counts as no record), so the order calendar
//! records arrive in never changes the table.

use std::collections::HashMap;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use time::Date;

use super::event::{Event, EventBody};
use super::state::Version;

/// The winning calendar record of one school and date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CalendarRecord {
    pub date: Date,
    pub instructional: bool,
    pub retracted: bool,
    pub version: Version,
}

impl CalendarRecord {
    /// A school day there: instructional and not retracted.
    pub fn is_school_day(&self) -> bool {
        self.instructional && !self.retracted
    }
}

/// What applying a calendar event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CalendarOutcome {
    /// The same record was applied before.
    Duplicate,
    /// An older record than the stored one: nothing changed.
    Lost,
    /// The winning record changed; whether the date was a school day before and is now.
    Changed { was: bool, now: bool },
}

/// Every school's calendar: the winning record per date, sorted by date.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Calendars {
    schools: HashMap<CompactString, Vec<CalendarRecord>>,
}

impl Calendars {
    /// Applies a `calendar` event (other events are not calendar records: `Lost`).
    pub fn apply(&mut self, event: &Event<'_>) -> CalendarOutcome {
        let EventBody::CalendarDay { instructional, retracted } = event.body else {
            return CalendarOutcome::Lost;
        };
        let rec = CalendarRecord {
            date: event.date,
            instructional,
            retracted,
            version: Version::of(event),
        };
        match self.record(&event.school_id, event.date) {
            Some(old) if old.version == rec.version => CalendarOutcome::Duplicate,
            Some(old) if old.version > rec.version => CalendarOutcome::Lost,
            old => {
                let was = old.is_some_and(CalendarRecord::is_school_day);
                let now = rec.is_school_day();
                self.restore(&event.school_id, rec);
                CalendarOutcome::Changed { was, now }
            }
        }
    }

    /// Keeps `rec` as the record of its school and date (a store loads the table with this).
    pub fn restore(&mut self, school_id: &str, rec: CalendarRecord) {
        let days = self.schools.entry(CompactString::from(school_id)).or_default();
        match days.binary_search_by(|r| r.date.cmp(&rec.date)) {
            Ok(i) => days[i] = rec,
            Err(i) => days.insert(i, rec),
        }
    }

    /// The winning record of `school_id` on `date`.
    pub fn record(&self, school_id: &str, date: Date) -> Option<&CalendarRecord> {
        let days = self.schools.get(school_id)?;
        days.binary_search_by(|r| r.date.cmp(&date)).ok().map(|i| &days[i])
    }

    /// Whether `date` is a school day at `school_id`.
    pub fn is_school_day(&self, school_id: &str, date: Date) -> bool {
        self.record(school_id, date).is_some_and(CalendarRecord::is_school_day)
    }

    /// The school days of `school_id` from `first` to `last` (both included), in date order.
    pub fn school_days(
        &self,
        school_id: &str,
        first: Date,
        last: Date,
    ) -> impl Iterator<Item = Date> + '_ {
        let days = self.schools.get(school_id).map_or(&[][..], Vec::as_slice);
        let from = days.partition_point(|r| r.date < first);
        days[from..]
            .iter()
            .take_while(move |r| r.date <= last)
            .filter(|r| r.is_school_day())
            .map(|r| r.date)
    }
}

/// Which days have ended, derived from the input alone: the day before the latest `date` of a
/// record that is not about the future. Live, the first records of a school day close the day
/// before it; a record dated after the day it was recorded on (a planned absence, a calendar
/// sent ahead) closes nothing. It only moves forward.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayClock {
    closed_through: Option<Date>,
}

impl DayClock {
    pub fn new(closed_through: Option<Date>) -> DayClock {
        DayClock { closed_through }
    }

    /// The last day that has ended (`None` before any record).
    pub fn closed_through(&self) -> Option<Date> {
        self.closed_through
    }

    /// Whether [`DayClock::observe`] would close days for `event` (cheap: callers skip the work
    /// that only a closing day needs).
    pub fn would_close(&self, event: &Event<'_>) -> bool {
        !event.is_future()
            && event.date.previous_day().is_some_and(|d| self.closed_through.is_none_or(|c| d > c))
    }

    /// Takes `event` into account before it is applied: the days it closes, first to last
    /// (`None`: none). The first record ever sets the clock without closing days (there is no
    /// student before it).
    pub fn observe(&mut self, event: &Event<'_>) -> Option<(Date, Date)> {
        if event.is_future() {
            return None;
        }
        let day_before = event.date.previous_day()?;
        match self.closed_through {
            None => {
                self.closed_through = Some(day_before);
                None
            }
            Some(closed) => self.close_through(closed.max(day_before)),
        }
    }

    /// Closes every day up to `day`; the days newly closed, first to last.
    pub fn close_through(&mut self, day: Date) -> Option<(Date, Date)> {
        let first = match self.closed_through {
            Some(closed) if closed >= day => return None,
            Some(closed) => closed.next_day()?,
            None => day,
        };
        self.closed_through = Some(day);
        Some((first, day))
    }
}

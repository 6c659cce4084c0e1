//! Every student's state in memory, routed by `student_id`, with the schools' calendars and the
//! day clock: what `replay` folds into.

use std::collections::{BTreeSet, HashMap};

use compact_str::CompactString;
use time::Date;

use super::calendar::{CalendarOutcome, Calendars, DayClock};
use super::event::{Event, EventBody};
use super::flag::FlagChange;
use super::rules::Rules;
use super::state::{Cause, Days, Outcome, StudentState};

/// Student states by `student_id`, the calendars and the day clock.
#[derive(Debug, Clone, Default)]
pub struct Students {
    // Looked up once per event over a table too large for the cache: ids of up to 24 bytes sit
    // inline in the table (no second cache miss on a heap key), hashed with seeded foldhash.
    map: HashMap<CompactString, StudentState, foldhash::fast::RandomState>,
    calendars: Calendars,
    clock: DayClock,
    /// The students whose flags a passing day can change ([`StudentState::watch`]), in id order
    /// (the order their day-caused changes are emitted in).
    watched: BTreeSet<CompactString>,
}

impl Students {
    /// Folds `event`: a calendar record into the calendars (re-evaluating the students it
    /// concerns), any other into its student's state (created on the student's first event),
    /// after the school days it closes have passed. The changes are in emission order: those of
    /// days passing and of a calendar change first.
    pub fn apply(&mut self, event: &Event<'_>, rules: &Rules) -> Outcome {
        if let EventBody::CalendarDay { .. } = event.body {
            let mut changes = self.pass_days(event, rules);
            match self.calendars.apply(event) {
                CalendarOutcome::Duplicate => return Outcome::Duplicate,
                CalendarOutcome::Lost => {}
                CalendarOutcome::Changed { was, now } if was != now => {
                    changes.extend(self.calendar_changed(event, rules));
                }
                CalendarOutcome::Changed { .. } => {}
            }
            return Outcome::Applied(changes);
        }
        // A duplicate changes nothing, not even the clock (checked apart only when the event
        // would close days: applying checks it anyway).
        let closes = self.clock.would_close(event);
        if closes && self.map.get(&*event.student_id).is_some_and(|s| s.has_seen(&event.event_id)) {
            return Outcome::Duplicate;
        }
        let mut changes = if closes { self.pass_days(event, rules) } else { Vec::new() };
        let state = match self.map.get_mut(&*event.student_id) {
            Some(state) => state,
            None => self.map.entry(CompactString::from(&*event.student_id)).or_default(),
        };
        let days = Days::new(&self.calendars, self.clock.closed_through());
        match state.apply_on(event, rules, &days) {
            Outcome::Applied(own) if changes.is_empty() => changes = own,
            Outcome::Applied(own) => changes.extend(own),
            // Not after days closed: a duplicate was caught before them.
            Outcome::Duplicate => return Outcome::Duplicate,
        }
        // Nothing here stores states: what changed is not kept.
        state.forget_changes();
        // Only an enrolled student (or one whose enrollment just changed) can be watched.
        if state.has_enrollment() || matches!(event.body, EventBody::Enrolled { .. }) {
            let watch = state.watch(rules);
            set_watched(&mut self.watched, &event.student_id, watch);
        }
        Outcome::Applied(changes)
    }

    /// Closes every school day up to `day` (`replay --as-of`): the flag changes of the days
    /// passing, in order.
    pub fn close_through(&mut self, day: Date, rules: &Rules) -> Vec<FlagChange> {
        match self.clock.close_through(day) {
            Some((first, last)) => self.pass_range(first, last, rules),
            None => Vec::new(),
        }
    }

    /// The last school day that has ended.
    pub fn closed_through(&self) -> Option<Date> {
        self.clock.closed_through()
    }

    pub fn calendars(&self) -> &Calendars {
        &self.calendars
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

    /// The days `event` closes pass, before it is applied.
    fn pass_days(&mut self, event: &Event<'_>, rules: &Rules) -> Vec<FlagChange> {
        match self.clock.observe(event) {
            Some((first, last)) => self.pass_range(first, last, rules),
            None => Vec::new(),
        }
    }

    /// Each day from `first` to `last` passes for every watched student, day by day.
    fn pass_range(&mut self, first: Date, last: Date, rules: &Rules) -> Vec<FlagChange> {
        let mut changes = Vec::new();
        let mut day = first;
        while day <= last && !self.watched.is_empty() {
            let ids: Vec<CompactString> = self.watched.iter().cloned().collect();
            for id in ids {
                let Some(state) = self.map.get_mut(&id) else { continue };
                changes.extend(state.pass_day(&id, day, rules, &self.calendars));
                state.forget_changes();
                let watch = state.watch(rules);
                set_watched(&mut self.watched, &id, watch);
            }
            let Some(next) = day.next_day() else { break };
            day = next;
        }
        changes
    }

    /// A day of `event`'s school became a school day or stopped being one: every student
    /// enrolled there is counted again, if the day has passed (a day to come counts for nobody
    /// yet). In student id order.
    fn calendar_changed(&mut self, event: &Event<'_>, rules: &Rules) -> Vec<FlagChange> {
        if self.clock.closed_through().is_none_or(|closed| event.date > closed) {
            return Vec::new();
        }
        let mut ids: Vec<CompactString> = (self.map.iter())
            .filter(|(_, s)| s.enrolled_at(&event.school_id))
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort_unstable();
        let days = Days::new(&self.calendars, self.clock.closed_through());
        let mut changes = Vec::new();
        for id in ids {
            let Some(state) = self.map.get_mut(&id) else { continue };
            let cause = Cause { student_id: &id, ..Cause::of(event) };
            changes.extend(state.refresh(rules, &days, &cause));
            state.forget_changes();
            set_watched(&mut self.watched, &id, state.watch(rules));
        }
        changes
    }
}

fn set_watched(watched: &mut BTreeSet<CompactString>, id: &str, watch: bool) {
    if watch {
        if !watched.contains(id) {
            watched.insert(CompactString::from(id));
        }
    } else {
        watched.remove(id);
    }
}

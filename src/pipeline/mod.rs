//! One batch of input messages → one store commit: the service's unit of work.
//!
//! The Kafka loop (`service`) hands each batch it polled to [`Pipeline::process_groups`] (with
//! the partition groups caught up then; [`Pipeline::process`]: every group), which reads
//! like the dataflow: [`fold`] (decode, check, apply each event to its student's state, the
//! states kept between batches by [`cache`]), [`outputs`] (flag events, dead letters, raised
//! counts), the notification plan (`notify::plan`, pure, over what the batch's events need from
//! the store, loaded once), then one atomic, flushed commit of everything — states, the next
//! offset of every partition read, the outbox, the notifications — and [`report`]. Only after
//! that may the loop publish the outbox and commit offsets to Kafka. Kept apart from Kafka so it
//! is tested without a broker.

pub mod cache;
pub mod days;
mod fold;
pub mod outputs;
pub mod report;
mod size;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};

use time::Date;

use crate::core::{CalendarOutcome, Cause, Days, Event, EventBody, EventKind, FlagChange, Rules};
use crate::notify::plan::{Now, Planner, View};
use crate::store::{OFFSETS, Store, StoreError};
use crate::telemetry::Telemetry;

pub use cache::{DEFAULT_CACHE_MIB, DEFAULT_PACKED_MIB, cached_bytes};
pub use outputs::{dead_letter_record, raised_counts};
pub use report::BatchOutcome;
pub use size::{BatchSize, SMALLEST_BATCH};

/// Every table in the store, by prefix: the store's own, notify's and the pipeline's (a test
/// keeps the prefixes distinct).
pub fn tables() -> Vec<(u8, &'static str)> {
    let pipeline = [(outputs::RAISED.prefix(), outputs::RAISED.name)];
    [&crate::store::PREFIXES[..], &crate::notify::tables::PREFIXES, &pipeline, &days::PREFIXES]
        .concat()
}

/// `[topics]`: the five student inputs (co-partitioned, keyed by `student_id`), the calendar
/// (keyed by `school_id`, read whole by every instance) and the two outputs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Topics {
    pub attendance: String,
    pub discipline: String,
    pub grades: String,
    pub assignments: String,
    pub enrollment: String,
    pub calendar: String,
    pub flags: String,
    pub dead_letter: String,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            attendance: "sis.attendance".into(),
            discipline: "sis.discipline".into(),
            grades: "sis.grades".into(),
            assignments: "roster.assignments".into(),
            enrollment: "sis.enrollment".into(),
            calendar: "sis.calendar".into(),
            flags: "ontrack.flags".into(),
            dead_letter: "ontrack.dead-letter".into(),
        }
    }
}

impl Topics {
    /// The five co-partitioned inputs a consumer group shares out, in the contract table's
    /// order.
    pub fn inputs(&self) -> [&str; 5] {
        [&self.attendance, &self.discipline, &self.grades, &self.assignments, &self.enrollment]
    }

    /// Every input, the calendar last, in the contract table's order (which breaks ties of time
    /// across topics).
    pub fn all_inputs(&self) -> [&str; 6] {
        let [a, d, g, r, e] = self.inputs();
        [a, d, g, r, e, &self.calendar]
    }

    /// The two outputs.
    pub fn outputs(&self) -> [&str; 2] {
        [&self.flags, &self.dead_letter]
    }

    /// The input topic events of `kind` belong on.
    pub fn input_of(&self, kind: EventKind) -> &str {
        match kind {
            EventKind::Attendance => &self.attendance,
            EventKind::Discipline => &self.discipline,
            EventKind::Grade => &self.grades,
            EventKind::Assignment => &self.assignments,
            EventKind::Enrollment => &self.enrollment,
            EventKind::Calendar => &self.calendar,
        }
    }
}

/// One consumed message, as the Kafka loop saw it.
#[derive(Debug, Clone, Copy)]
pub struct InputMessage<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
    /// The message's Kafka timestamp (unix milliseconds), if it has one.
    pub timestamp_ms: Option<i64>,
}

impl<'a> From<&'a rdkafka::message::OwnedMessage> for InputMessage<'a> {
    fn from(m: &'a rdkafka::message::OwnedMessage) -> Self {
        use rdkafka::Message as _;
        InputMessage {
            topic: m.topic(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key(),
            payload: m.payload(),
            timestamp_ms: m.timestamp().to_millis(),
        }
    }
}

/// One worker per core (what `batch.workers = 0` means).
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn caches(workers: usize) -> Vec<cache::StateCache> {
    (0..workers.max(1)).map(|_| cache::StateCache::default()).collect()
}

/// The core around the store.
#[derive(Debug)]
pub struct Pipeline {
    store: Store,
    rules: Rules,
    topics: Topics,
    /// `None`: notifications are off.
    planner: Option<Arc<Planner>>,
    telemetry: Arc<Telemetry>,
    /// States of recently touched students (decoded, or packed as stored), equal to the store's:
    /// a share per worker (the batch's students are folded by `workers` shards side by side).
    cache: Mutex<Vec<cache::StateCache>>,
    cache_limits: cache::CacheLimits,
    /// The calendars and the groups' day clocks, equal to the store's (`None`: read at the next
    /// batch).
    days: Mutex<Option<days::DayState>>,
    /// The partitions this instance owns now, whose students passing days and calendar changes
    /// re-evaluate (`None`: every partition in the store).
    owned: Mutex<Option<BTreeSet<i32>>>,
    /// The partition groups caught up after the last batch (`None`: none known, or every group
    /// after a batch that named none).
    followed: Mutex<Option<BTreeSet<i32>>>,
}

impl Pipeline {
    pub fn new(store: Store, rules: Rules, topics: Topics) -> Pipeline {
        Pipeline {
            store,
            rules,
            topics,
            planner: None,
            telemetry: Arc::default(),
            cache: Mutex::new(caches(default_workers())),
            cache_limits: cache::CacheLimits {
                decoded: DEFAULT_CACHE_MIB << 20,
                packed: cache::DEFAULT_PACKED_MIB << 20,
            },
            days: Mutex::default(),
            owned: Mutex::default(),
            followed: Mutex::default(),
        }
    }

    /// The partitions this instance owns from now on (the consumer group's assignment).
    pub fn set_owned(&self, partitions: Option<BTreeSet<i32>>) {
        *self.owned.lock().unwrap_or_else(PoisonError::into_inner) = partitions;
        // A partition that comes back may have been moved on by another instance meanwhile: no
        // group counts as caught up until a batch says so.
        *self.followed.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Keeps decoded states in up to about `mib` MiB of memory (0: none).
    pub fn with_cache_mib(mut self, mib: usize) -> Pipeline {
        self.cache_limits.decoded = mib << 20;
        self
    }

    /// Keeps the states that do not fit decoded packed, in up to about `mib` MiB (0: none).
    pub fn with_packed_cache_mib(mut self, mib: usize) -> Pipeline {
        self.cache_limits.packed = mib << 20;
        self
    }

    /// Keeps decoded states in up to about `decoded` bytes and packed ones in `packed` (tests
    /// use tiny caches).
    pub fn with_cache_bytes(mut self, decoded: usize, packed: usize) -> Pipeline {
        self.cache_limits = cache::CacheLimits { decoded, packed };
        self
    }

    /// Drops every cached state: the store may change under them (partitions moved to another
    /// instance and back).
    pub fn forget_cached(&self) {
        let mut caches = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        *caches = self::caches(caches.len());
    }

    /// Folds each batch's students in `workers` shards side by side (0: one per core).
    pub fn with_workers(mut self, workers: usize) -> Pipeline {
        let workers = if workers == 0 { default_workers() } else { workers };
        self.cache = Mutex::new(caches(workers));
        self
    }

    /// Counts into `telemetry` (a pipeline of its own counts into a private one).
    pub fn with_telemetry(mut self, telemetry: Arc<Telemetry>) -> Pipeline {
        self.telemetry = telemetry;
        self
    }

    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.telemetry
    }

    /// Plans advocate notifications for every batch.
    pub fn with_notifications(mut self, planner: Arc<Planner>) -> Pipeline {
        self.planner = Some(planner);
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Folds `batch` (in order) and commits its effects atomically; `now` stamps `emitted_at` and
    /// decides what "today" is for absence alerts.
    /// On `Err` nothing of the batch was written: the caller must not commit its offsets.
    /// Every partition group is taken as caught up (see [`Pipeline::process_groups`]).
    pub fn process(
        &self,
        batch: &[InputMessage<'_>],
        now: jiff::Timestamp,
    ) -> Result<BatchOutcome, StoreError> {
        self.process_groups(batch, now, None)
    }

    /// [`Pipeline::process`], told which partition groups were caught up once `batch` left the
    /// time order (`None`: every group): no message of theirs older than the batch's can still
    /// come. A group caught up before and after the batch follows the instance's day — a
    /// record that closes days in one such group closes them in all, in each once its own
    /// records reach that record's time (the batch serves the groups in turn), or at the end —
    /// and a group caught up after it takes the latest day at its end. A group that is behind (catching up a
    /// backlog) counts only the days its own records (and the calendar's) close, so the days
    /// that live groups pass never reach its students before their records do.
    pub fn process_groups(
        &self,
        batch: &[InputMessage<'_>],
        now: jiff::Timestamp,
        caught_up: Option<&BTreeSet<i32>>,
    ) -> Result<BatchOutcome, StoreError> {
        let mut days = self.days.lock().unwrap_or_else(PoisonError::into_inner);
        let mut followed = self.followed.lock().unwrap_or_else(PoisonError::into_inner);
        // Told which groups are caught up: before the first such batch, none was known to be.
        let before = caught_up.map(|_| followed.clone().unwrap_or_default());
        let groups = days::Following { before: before.as_ref(), after: caught_up };
        let result = self.process_with(batch, now, &mut days, groups);
        match result {
            Ok(_) => *followed = caught_up.cloned(),
            // The calendars and clock in memory may be ahead of the store's: read them again.
            Err(_) => *days = None,
        }
        result
    }

    fn process_with(
        &self,
        batch: &[InputMessage<'_>],
        now: jiff::Timestamp,
        days: &mut Option<days::DayState>,
        following: days::Following<'_>,
    ) -> Result<BatchOutcome, StoreError> {
        let started = std::time::Instant::now();
        let read = report::ReadRanges::of(batch);
        let span = tracing::info_span!("batch", messages = batch.len(), offsets = %read);
        let _in_batch = span.enter();
        let day_state = match days {
            Some(d) => d,
            None => days.insert(days::DayState::load(&self.store)?),
        };
        let clocks_before = day_state.clocks.clone();
        let owned = self.owned.lock().unwrap_or_else(PoisonError::into_inner).clone();
        // The groups whose days pass here: the owned (else every group with a clock so far).
        let all_groups = |clocks: &days::Clocks| -> Vec<i32> {
            match owned.as_ref() {
                Some(owned) => owned.iter().copied().collect(),
                None => clocks.partitions().collect(),
            }
        };
        let mut caches = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let workers = caches.len();
        let mut fold = fold::Shards::new(&self.store, &self.rules, &mut caches, batch.len());
        let mut out = Out {
            outputs: outputs::Outputs::new(&self.topics, now),
            report: report::Report::default(),
            facts: Vec::new(),
            today: Now::new(now),
        };
        let mut calendar_writes = Vec::new();
        let mut enrolled = Vec::new();
        let decoded = self.decode_all(batch, workers);
        // A message's time: its Kafka timestamp, else its recorded_at.
        let source: Vec<i64> = (batch.iter().zip(&decoded))
            .map(|(m, e)| match (m.timestamp_ms, e) {
                (Some(ms), _) => ms,
                (None, Ok(e)) => {
                    e.recorded_at.secs * 1000 + i64::from(e.recorded_at.nanos / 1_000_000)
                }
                (None, Err(_)) => 0,
            })
            .collect();
        // Messages are gathered into segments the shards fold side by side; a record that
        // closes days or a calendar record is taken alone, in its place.
        let mut segment =
            Segment { batch, decoded: &decoded, source: &source, pending: Vec::new() };
        // Days another group closed, waiting to pass in a group that follows the instance's
        // day until its own records reach the time of the record that closed them (a batch
        // serves the groups in turn, not in time order across them): group → (time, through
        // which day, the record).
        let mut lifts: BTreeMap<i32, Vec<(i64, Date, days::Closer)>> = BTreeMap::new();
        for (i, m) in batch.iter().enumerate() {
            let Ok(event) = &decoded[i] else {
                segment.pending.push(i);
                continue;
            };
            let calendar = matches!(event.body, EventBody::CalendarDay { .. });
            // Before a calendar record, every group's; else this group's once its records reach
            // the time of the closing record.
            let reached = |(at, ..): &(i64, Date, days::Closer)| calendar || *at <= source[i];
            let lift_now: Vec<i32> = match calendar {
                true => lifts.keys().copied().collect(),
                false => (lifts.get(&m.partition).is_some_and(|l| l.iter().any(reached)))
                    .then_some(m.partition)
                    .into_iter()
                    .collect(),
            };
            if !lift_now.is_empty() {
                self.flush(&mut fold, &mut segment, day_state, &mut out, &mut enrolled)?;
            }
            for p in lift_now {
                let (now, later): (Vec<_>, Vec<_>) =
                    lifts.remove(&p).unwrap_or_default().into_iter().partition(reached);
                if !later.is_empty() {
                    lifts.insert(p, later);
                }
                self.lift(&mut fold, day_state, p, now, &mut out)?;
            }
            // A calendar record takes its place in every group's order: it moves the clocks of
            // the owned partitions (of every group the store has, when none are named).
            // (A record's own group is borrowed: no allocation per message.)
            let every;
            let groups: &[i32] = match calendar {
                true => {
                    every = all_groups(&day_state.clocks);
                    &every
                }
                false => std::slice::from_ref(&m.partition),
            };
            // A duplicate changes nothing, not even the clock (checked apart only when the event
            // would close days: applying checks it anyway).
            let closes = groups.iter().any(|p| day_state.clocks.of(*p).would_close(event));
            if !calendar && !closes {
                segment.pending.push(i);
                continue;
            }
            self.flush(&mut fold, &mut segment, day_state, &mut out, &mut enrolled)?;
            let source_ms = source[i];
            if closes && !calendar && fold.has_seen(event, m.partition)? {
                out.report.duplicate(m.topic);
                continue;
            }
            // The school days the event closes in its groups pass before it is applied; in
            // every group that follows the instance's day too, if its own does.
            let by = days::Closer::of(event, source_ms);
            for &partition in groups {
                if let Some(days) = day_state.clocks.of_mut(partition).observe(event) {
                    self.pass_days(&mut fold, day_state, (partition, days), by, &mut out)?;
                }
            }
            if !calendar && following.throughout(m.partition) {
                day_state.last_closer = Some(by);
                if let Some(through) = day_state.clocks.of(m.partition).closed_through() {
                    let others = all_groups(&day_state.clocks);
                    let others = others.into_iter().filter(|p| *p != m.partition);
                    for p in others.filter(|p| following.throughout(*p)) {
                        lifts.entry(p).or_default().push((source_ms, through, by));
                    }
                }
            }
            if calendar {
                match day_state.calendars.apply(event) {
                    CalendarOutcome::Duplicate => {
                        out.report.duplicate(m.topic);
                        continue;
                    }
                    CalendarOutcome::Lost => {}
                    CalendarOutcome::Changed { was, now } => {
                        if let Some(record) =
                            day_state.calendars.record(&event.school_id, event.date)
                        {
                            calendar_writes.push((event.school_id.to_string(), record.clone()));
                        }
                        // Only a group that has passed the day counts it again.
                        let passed = groups.iter().any(|p| day_state.clocks.passed(*p, event.date));
                        if was != now && passed {
                            self.calendar_changed(
                                &mut fold,
                                day_state,
                                owned.as_ref(),
                                &enrolled,
                                event,
                                source_ms,
                                &mut out,
                            )?;
                        }
                    }
                }
                out.report.applied(m.topic, std::iter::empty());
                continue;
            }
            segment.pending.push(i);
            self.flush(&mut fold, &mut segment, day_state, &mut out, &mut enrolled)?;
        }
        self.flush(&mut fold, &mut segment, day_state, &mut out, &mut enrolled)?;
        for (p, waiting) in lifts {
            self.lift(&mut fold, day_state, p, waiting, &mut out)?;
        }
        // A group caught up by now takes the latest day of the groups (one that caught up a
        // backlog in this batch: the days the others passed meanwhile).
        let all_groups = all_groups(&day_state.clocks);
        if let Some(latest) = day_state.clocks.latest(&all_groups) {
            let by = day_state.last_closer.unwrap_or(days::Closer {
                recorded_at_s: now.as_second(),
                source_ms: now.as_millisecond(),
            });
            for &p in all_groups.iter().filter(|p| following.after(**p)) {
                if let Some(days) = day_state.clocks.of_mut(p).close_through(latest) {
                    self.pass_days(&mut fold, day_state, (p, days), by, &mut out)?;
                }
            }
        }

        let Out { outputs, mut report, facts, today } = out;
        let mut commit = self.store.batch();
        fold.write(&mut commit);
        for (partition, school, student) in &enrolled {
            days::put_enrolled(&mut commit, *partition, school, student);
        }
        for (school, record) in &calendar_writes {
            days::write_calendar(&mut commit, school, record);
        }
        day_state.clocks.write_changed(&clocks_before, &mut commit);
        for (topic, partition, next) in read.next_offsets() {
            OFFSETS.put(&mut commit, &(topic, partition), &next);
        }
        let raised = outputs.write(&mut commit)?;
        if let Some(planner) = &self.planner {
            let intents = planner.plan(&View::load(&self.store, &facts)?, &facts, &today);
            intents.write(&mut commit)?;
            report.planned(&intents);
        }
        let committing = std::time::Instant::now();
        self.store.commit(commit)?;
        self.telemetry.committed(committing.elapsed());

        report.outcome.offsets =
            read.next_offsets().map(|(t, p, o)| (t.to_owned(), p, o)).collect();
        let reads = fold.reads();
        fold.finish(self.cache_limits);
        Ok(report.committed(&self.telemetry, batch.len(), &raised, reads, started.elapsed()))
    }

    /// Decodes and checks every message of `batch`, `workers` parts side by side.
    fn decode_all<'m>(
        &self,
        batch: &[InputMessage<'m>],
        workers: usize,
    ) -> Vec<Result<Event<'m>, (&'static str, String)>> {
        let topics = &self.topics;
        let chunks: Vec<_> = batch.chunks(batch.len().div_ceil(workers.max(1)).max(1)).collect();
        let parallel = batch.len() >= 2 * fold::PARALLEL_FROM;
        let parts = fold::side_by_side(chunks, parallel, |c: &[InputMessage<'m>]| {
            c.iter().map(|m| fold::check(topics, m)).collect::<Vec<_>>()
        });
        parts.into_iter().flatten().collect()
    }

    /// Folds the pending messages of `segment` (the shards side by side) and takes their
    /// outcomes, dead letters and flags in message order.
    fn flush<'m>(
        &self,
        fold: &mut fold::Shards<'_>,
        segment: &mut Segment<'_, 'm>,
        day_state: &days::DayState,
        out: &mut Out<'m>,
        enrolled: &mut Vec<(i32, String, String)>,
    ) -> Result<(), StoreError> {
        if segment.pending.is_empty() {
            return Ok(());
        }
        let (batch, decoded) = (segment.batch, segment.decoded);
        let events: Vec<fold::Item<'_, '_>> = (segment.pending.iter())
            .filter_map(|&i| decoded[i].as_ref().ok().map(|e| (i, e, batch[i].partition)))
            .collect();
        let along = fold::Along {
            calendars: &day_state.calendars,
            clocks: &day_state.clocks,
            planner: self.planner.as_deref(),
            today: &out.today,
        };
        let mut applied = fold.apply_segment(&events, &along)?.into_iter();
        for &i in &segment.pending {
            let m = &batch[i];
            let event = match &decoded[i] {
                Ok(event) => event,
                Err((label, reason)) => {
                    out.report.rejected(m, label);
                    out.outputs.dead_letter(m, reason);
                    continue;
                }
            };
            match applied.next() {
                Some((_, fold::Applied::Duplicate)) => out.report.duplicate(m.topic),
                Some((_, fold::Applied::Changes { changes, facts })) => {
                    out.report.applied(m.topic, changes.iter().map(|c| (c.flag, c.change)));
                    out.outputs.flags(&changes, segment.source[i]);
                    out.facts.extend(facts.map(|f| *f));
                    if let EventBody::Enrolled { .. } = event.body {
                        let (school, student) = (&event.school_id, &event.student_id);
                        enrolled.push((m.partition, school.to_string(), student.to_string()));
                    }
                }
                None => {}
            }
        }
        segment.pending.clear();
        Ok(())
    }

    /// Days other groups closed pass in `partition`'s group, in the order they were closed.
    fn lift(
        &self,
        fold: &mut fold::Shards<'_>,
        day_state: &mut days::DayState,
        partition: i32,
        closed: Vec<(i64, Date, days::Closer)>,
        out: &mut Out<'_>,
    ) -> Result<(), StoreError> {
        for (_, through, by) in closed {
            if let Some(days) = day_state.clocks.of_mut(partition).close_through(through) {
                self.pass_days(fold, day_state, (partition, days), by, out)?;
            }
        }
        Ok(())
    }

    /// School days `first` to `last` have ended in `partition`'s group: every watched student
    /// of the group is counted again, day by day, in student order. `by`: the record that closed
    /// the days.
    fn pass_days(
        &self,
        fold: &mut fold::Shards<'_>,
        day_state: &days::DayState,
        (partition, (first, last)): (i32, (Date, Date)),
        by: days::Closer,
        out: &mut Out<'_>,
    ) -> Result<(), StoreError> {
        let mut students = days::watched(&self.store, Some(&BTreeSet::from([partition])))?;
        // The batch's own states: watched now or not, whatever the store says.
        students.retain(|(_, id)| fold.watched_now(id) != Some(false));
        for (id, t) in fold.states() {
            if t.partition == partition && t.stored.state.watch(&self.rules) {
                students.insert((t.partition, id.clone()));
            }
        }
        // Passing days only ever take students off the list (a present day raises nothing new).
        let mut day = first;
        while day <= last && !students.is_empty() {
            let mut done = Vec::new();
            for (partition, id) in &students {
                let touched = fold.whole_state(id, *partition)?;
                let state = &mut touched.stored.state;
                let changes = state.pass_day(id, day, &self.rules, &day_state.calendars);
                self.emit(id, state, &changes, day, by, out);
                if !state.watch(&self.rules) {
                    done.push((*partition, id.clone()));
                }
            }
            for student in &done {
                students.remove(student);
            }
            let Some(next) = day.next_day() else { break };
            day = next;
        }
        Ok(())
    }

    /// A day of `event`'s school became a school day or stopped being one: every student of the
    /// owned partitions ever enrolled there whose group has passed that day is counted again, in
    /// (partition, student) order.
    #[allow(clippy::too_many_arguments)]
    fn calendar_changed(
        &self,
        fold: &mut fold::Shards<'_>,
        day_state: &days::DayState,
        owned: Option<&BTreeSet<i32>>,
        enrolled_in_batch: &[(i32, String, String)],
        event: &Event<'_>,
        source_ms: i64,
        out: &mut Out<'_>,
    ) -> Result<(), StoreError> {
        let mut students = days::enrolled_at(&self.store, owned, &event.school_id)?;
        for (partition, school, student) in enrolled_in_batch {
            if *school == event.school_id && owned.is_none_or(|o| o.contains(partition)) {
                students.insert((*partition, student.clone()));
            }
        }
        for (partition, id) in students {
            if !day_state.clocks.passed(partition, event.date) {
                continue;
            }
            let closed = day_state.clocks.of(partition).closed_through();
            let days = Days::new(&day_state.calendars, closed);
            let touched = fold.whole_state(&id, partition)?;
            let state = &mut touched.stored.state;
            let cause = Cause { student_id: &id, ..Cause::of(event) };
            let changes = state.refresh(&self.rules, &days, &cause);
            let by = days::Closer::of(event, source_ms);
            self.emit(&id, state, &changes, event.date, by, out);
        }
        Ok(())
    }

    /// Publishes flag changes no event of the student caused (`by`: the record that made
    /// them), and plans their alerts.
    fn emit(
        &self,
        student_id: &str,
        state: &crate::core::StudentState,
        changes: &[FlagChange],
        date: Date,
        by: days::Closer,
        out: &mut Out<'_>,
    ) {
        if changes.is_empty() {
            return;
        }
        out.report.flags(changes.iter().map(|c| (c.flag, c.change)));
        out.outputs.flags(changes, by.source_ms);
        if let Some(planner) = &self.planner {
            out.facts.extend(planner.facts_of_day(
                student_id,
                state,
                changes,
                date,
                by.recorded_at_s,
                &out.today,
            ));
        }
    }
}

/// The messages of a batch, decoded, and those waiting to be folded together.
struct Segment<'b, 'm> {
    batch: &'b [InputMessage<'m>],
    decoded: &'b [Result<Event<'m>, (&'static str, String)>],
    /// Each message's time (unix ms) for the flags it causes.
    source: &'b [i64],
    /// Message indices, in order.
    pending: Vec<usize>,
}

/// What a batch produces besides states: flag events and dead letters, its report, and the
/// facts its notifications are planned from.
struct Out<'p> {
    outputs: outputs::Outputs<'p>,
    report: report::Report<'p>,
    facts: Vec<crate::notify::plan::Facts>,
    today: Now,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_two_tables_share_a_prefix() {
        let tables = tables();
        let mut prefixes: Vec<u8> = tables.iter().map(|(p, _)| *p).collect();
        prefixes.sort_unstable();
        prefixes.dedup();
        assert_eq!(prefixes.len(), tables.len(), "{tables:?}");
    }
}

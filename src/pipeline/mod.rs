//! One batch of input messages → one store commit: the service's unit of work.
//!
//! The Kafka loop (`service`) hands each batch it polled to [`Pipeline::process`], which reads
//! like the dataflow: [`fold`] (decode, check, apply each event to its student's state, the
//! states kept between batches by [`cache`]), [`outputs`] (flag events, dead letters, raised
//! counts), the notification plan (`notify::plan`, pure, over what the batch's events need from
//! the store, loaded once), then one atomic, flushed commit of everything — states, the next
//! offset of every partition read, the outbox, the notifications — and [`report`]. Only after
//! that may the loop publish the outbox and commit offsets to Kafka. Kept apart from Kafka so it
//! is tested without a broker.

pub mod cache;
mod fold;
pub mod outputs;
pub mod report;

use std::sync::Arc;

use crate::core::{EventKind, Outcome, Rules};
use crate::notify::plan::{Now, Planner, View};
use crate::store::{OFFSETS, Store, StoreError};
use crate::telemetry::Telemetry;

pub use cache::{DEFAULT_CACHE_MIB, cached_bytes};
pub use outputs::raised_counts;
pub use report::BatchOutcome;

/// Every table in the store, by prefix: the store's own, notify's and the pipeline's (a test
/// keeps the prefixes distinct).
pub fn tables() -> Vec<(u8, &'static str)> {
    let pipeline = [(outputs::RAISED.prefix(), outputs::RAISED.name)];
    [&crate::store::PREFIXES[..], &crate::notify::tables::PREFIXES, &pipeline].concat()
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

    /// The place of `topic` in [`Topics::all_inputs`] (`usize::MAX`: not an input).
    pub fn order_of(&self, topic: &str) -> usize {
        self.all_inputs().iter().position(|t| *t == topic).unwrap_or(usize::MAX)
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

/// The core around the store.
#[derive(Debug)]
pub struct Pipeline {
    store: Store,
    rules: Rules,
    topics: Topics,
    /// `None`: notifications are off.
    planner: Option<Arc<Planner>>,
    telemetry: Arc<Telemetry>,
    /// Decoded states of recently touched students, equal to the store's.
    cache: std::sync::Mutex<cache::StateCache>,
    cache_bytes: usize,
}

impl Pipeline {
    pub fn new(store: Store, rules: Rules, topics: Topics) -> Pipeline {
        Pipeline {
            store,
            rules,
            topics,
            planner: None,
            telemetry: Arc::default(),
            cache: std::sync::Mutex::default(),
            cache_bytes: DEFAULT_CACHE_MIB << 20,
        }
    }

    /// Keeps decoded states in up to about `mib` MiB of memory (0: none).
    pub fn with_cache_mib(mut self, mib: usize) -> Pipeline {
        self.cache_bytes = mib << 20;
        self
    }

    /// Keeps decoded states in up to about `bytes` bytes (tests use tiny caches).
    pub fn with_cache_bytes(mut self, bytes: usize) -> Pipeline {
        self.cache_bytes = bytes;
        self
    }

    /// Drops every cached state: the store may change under them (partitions moved to another
    /// instance and back).
    pub fn forget_cached(&self) {
        *self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
            cache::StateCache::default();
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
    pub fn process(
        &self,
        batch: &[InputMessage<'_>],
        now: jiff::Timestamp,
    ) -> Result<BatchOutcome, StoreError> {
        let started = std::time::Instant::now();
        let read = report::ReadRanges::of(batch);
        let span = tracing::info_span!("batch", messages = batch.len(), offsets = %read);
        let _in_batch = span.enter();
        let mut cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut fold = fold::Fold::new(&self.store, &self.rules, &self.topics, &mut cache);
        let mut outputs = outputs::Outputs::new(&self.topics, now);
        let mut report = report::Report::default();
        let mut facts = Vec::new();
        let today = Now::new(now);
        for m in batch {
            let event = match fold.check(m) {
                Ok(event) => event,
                Err((label, reason)) => {
                    report.rejected(m, label);
                    outputs.dead_letter(m, &reason);
                    continue;
                }
            };
            let (state, outcome) = fold.apply(&event, m.partition)?;
            let changes = match outcome {
                Outcome::Duplicate => {
                    report.duplicate(m.topic);
                    continue;
                }
                Outcome::Applied(changes) => changes,
            };
            report.applied(m.topic, changes.iter().map(|c| (c.flag, c.change)));
            let source_ms = m.timestamp_ms.unwrap_or(
                event.recorded_at.secs * 1000 + i64::from(event.recorded_at.nanos / 1_000_000),
            );
            outputs.flags(&changes, source_ms);
            if let Some(planner) = &self.planner {
                facts.extend(planner.facts(&event, state, &changes, &today));
            }
        }

        let mut commit = self.store.batch();
        fold.write(&mut commit);
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
        let reads = (fold.from_cache, fold.states.len() as u64 - fold.from_cache);
        fold.finish(self.cache_bytes);
        Ok(report.committed(&self.telemetry, batch.len(), &raised, reads, started.elapsed()))
    }
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

//! What a batch did: the offsets it read (computed once, for the store, the log and Kafka's
//! commit), its outcome for the caller, and its counts for the telemetry.

use std::collections::BTreeMap;

use super::InputMessage;
use crate::core::{Change, Flag};
use crate::notify::plan::Intents;
use crate::telemetry::{BatchSummary, Consumed, StateReads, Telemetry};

/// The first and last offset read of each partition in a batch.
#[derive(Debug, Default)]
pub(super) struct ReadRanges<'m>(BTreeMap<(&'m str, i32), (i64, i64)>);

impl<'m> ReadRanges<'m> {
    pub fn of(batch: &[InputMessage<'m>]) -> ReadRanges<'m> {
        let mut ranges: BTreeMap<(&str, i32), (i64, i64)> = BTreeMap::new();
        for m in batch {
            let r = ranges.entry((m.topic, m.partition)).or_insert((m.offset, m.offset));
            *r = (r.0.min(m.offset), r.1.max(m.offset));
        }
        ReadRanges(ranges)
    }

    /// `(topic, partition, next offset to read)` of every partition read.
    pub fn next_offsets(&self) -> impl Iterator<Item = (&'m str, i32, i64)> + '_ {
        self.0.iter().map(|((t, p), (_, last))| (*t, *p, last + 1))
    }
}

impl std::fmt::Display for ReadRanges<'_> {
    /// `topic/partition:first-last` each, for the batch's log span.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, ((t, p), (a, b))) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{t}/{p}:{a}-{b}")?;
        }
        Ok(())
    }
}

/// What a batch did, for metrics and logs (no student data).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    pub events: u64,
    pub duplicates: u64,
    pub rejected: u64,
    /// Every flag change, in emission order.
    pub flags: Vec<(Flag, Change)>,
    /// Notifications queued for immediate delivery.
    pub notifications: u64,
    /// Alerts queued for a daily digest.
    pub digest_items: u64,
    /// Alerts that could not be addressed (kept as failed notifications).
    pub unroutable: u64,
    /// `(topic, partition, next offset)`: where the store now resumes each partition read (and
    /// what to commit to Kafka for lag monitoring).
    pub offsets: Vec<(String, i32, i64)>,
    /// Messages in the batch, and the students it touched (states written).
    pub messages: u64,
    pub students: u64,
}

/// The batch's counts, reported to the telemetry once it is committed (a labelled counter costs
/// a lookup per call: counted per batch, not per event).
#[derive(Debug, Default)]
pub(super) struct Report<'m> {
    pub outcome: BatchOutcome,
    consumed: BTreeMap<(&'m str, Consumed), u64>,
    rejections: Vec<(&'static str, &'m str, i32, i64)>,
    /// The channel of each notification queued.
    channels: Vec<&'static str>,
}

impl<'m> Report<'m> {
    pub fn rejected(&mut self, m: &InputMessage<'m>, label: &'static str) {
        self.outcome.rejected += 1;
        *self.consumed.entry((m.topic, Consumed::Rejected)).or_default() += 1;
        self.rejections.push((label, m.topic, m.partition, m.offset));
    }

    pub fn duplicate(&mut self, topic: &'m str) {
        self.outcome.events += 1;
        self.outcome.duplicates += 1;
        *self.consumed.entry((topic, Consumed::Duplicate)).or_default() += 1;
    }

    pub fn applied(&mut self, topic: &'m str, flags: impl Iterator<Item = (Flag, Change)>) {
        self.outcome.events += 1;
        *self.consumed.entry((topic, Consumed::Applied)).or_default() += 1;
        self.outcome.flags.extend(flags);
    }

    /// Flag changes no event of their student caused (a school day passed, a calendar changed).
    pub fn flags(&mut self, flags: impl Iterator<Item = (Flag, Change)>) {
        self.outcome.flags.extend(flags);
    }

    /// What the notification plan queued.
    pub fn planned(&mut self, intents: &Intents) {
        let o = &mut self.outcome;
        o.notifications = intents.notifications.len() as u64;
        o.digest_items = intents.digest_items.len() as u64;
        o.unroutable = intents.failed.len() as u64;
        self.channels = intents.notifications.iter().map(|n| n.to.channel()).collect();
    }

    /// Reports a committed batch of `messages` messages that took `took`.
    pub fn committed(
        self,
        telemetry: &Telemetry,
        messages: usize,
        raised: &[(&'static str, String, i64)],
        state_reads: StateReads,
        took: std::time::Duration,
    ) -> BatchOutcome {
        for (label, topic, partition, offset) in self.rejections {
            telemetry.rejected(label, topic, partition, offset);
        }
        for (flag, change) in &self.outcome.flags {
            telemetry.flag_changed(*flag, *change);
        }
        for (flag, school, count) in raised {
            telemetry.flags_raised(flag, school, *count);
        }
        for ((topic, what), n) in self.consumed {
            telemetry.consumed(topic, what, n);
        }
        telemetry.state_reads(state_reads);
        telemetry.notifications_queued(self.channels.into_iter(), self.outcome.unroutable as usize);
        let o = &self.outcome;
        let summary = BatchSummary {
            messages,
            events: o.events,
            rejected: o.rejected,
            flags: o.flags.len(),
            notifications: o.notifications,
        };
        telemetry.batch(took, &summary);
        let (messages, students) = (messages as u64, state_reads.total());
        BatchOutcome { messages, students, ..self.outcome }
    }
}

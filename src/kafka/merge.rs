//! Time order across topics: the messages read from every assigned partition wait here and
//! leave in the order of their Kafka timestamps, ties by the contract table's topic order, then
//! partition and offset — the way Kafka Streams picks a task's next record, over all the
//! partitions this instance reads (so the day clock of the instance sees one order, the order a
//! `replay` of the same messages sorted by time sees).
//!
//! The head leaves only when no partition could still deliver an older message: every
//! partition with nothing buffered must be caught up (its next offset at its high watermark, as
//! last fetched or reported by librdkafka's statistics). A partition whose watermark is unknown
//! is asked for it. If a partition stays behind longer than `max_idle` (a broker away, offsets
//! that skip, as transaction markers do), the head leaves anyway, as Kafka Streams does after
//! `max.task.idle.ms`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::message::OwnedMessage;

/// A partition buffering more than this is paused until it is down to half (at 5,000 the
/// resume delay halved a backlog's throughput).
const PAUSE_OVER: usize = 10_000;

/// How long a partition's watermark is not asked again after it was.
const ASK_AGAIN: Duration = Duration::from_secs(1);

/// One assigned partition's waiting messages.
#[derive(Debug)]
struct Queue {
    topic: String,
    partition: i32,
    /// The topic's place in the contract table.
    rank: usize,
    buf: VecDeque<OwnedMessage>,
    /// The offset the consumer hands out next (`None`: from the beginning, not known yet).
    next: Option<i64>,
    /// The first offset (from the last watermark query).
    low: Option<i64>,
    /// The high watermark (last stable offset) last known.
    high: Option<i64>,
    asked: Option<Instant>,
    /// The consumer is told not to fetch more of it (its buffer is full).
    paused: bool,
}

impl Queue {
    fn caught_up(&self) -> Option<bool> {
        let high = self.high?;
        // After retention the stored position may lie before the log's start.
        let at = match (self.next, self.low) {
            (Some(next), Some(low)) => next.max(low),
            (next, low) => next.or(low)?,
        };
        Some(at >= high)
    }

    /// The order key of the head: timestamp, contract table order, partition, offset.
    fn head_key(&self) -> Option<(i64, usize, i32, i64)> {
        let m = self.buf.front()?;
        Some((m.timestamp().to_millis().unwrap_or(0), self.rank, m.partition(), m.offset()))
    }
}

/// What to do next.
#[derive(Debug)]
pub enum Next {
    /// The next message in time order.
    Ready(Box<OwnedMessage>),
    /// Ask these partitions' watermarks ([`Merge::set_watermarks`]), then ask again.
    AskWatermarks(Vec<(String, i32)>),
    /// A partition may still deliver an older message: read on.
    Wait,
    /// Nothing is buffered.
    Empty,
}

/// The merge of every assigned partition's messages in time order.
#[derive(Debug)]
pub struct Merge {
    /// Topic names in the contract table's order.
    order: Vec<String>,
    queues: Vec<Queue>,
    max_idle: Duration,
    /// Since when the head has waited for a partition behind.
    blocked_since: Option<Instant>,
    /// Heads that left before a partition behind caught up.
    pub forced: u64,
    /// Nothing leaves (the consumer group has not assigned partitions yet).
    held: bool,
    buffered: usize,
    /// The most messages buffered at once.
    pub peak: usize,
}

impl Merge {
    pub fn new(order: Vec<String>, max_idle: Duration) -> Merge {
        Merge {
            order,
            queues: Vec::new(),
            max_idle,
            blocked_since: None,
            forced: 0,
            held: false,
            buffered: 0,
            peak: 0,
        }
    }

    /// A merge that lets nothing leave until [`Merge::hold`]`(false)`.
    pub fn held(mut self) -> Merge {
        self.held = true;
        self
    }

    /// Whether nothing may leave: until the partitions whose messages may be older than the
    /// ones buffered are known.
    pub fn hold(&mut self, held: bool) {
        self.held = held;
    }

    fn find(&mut self, topic: &str, partition: i32) -> Option<&mut Queue> {
        self.queues.iter_mut().find(|q| q.partition == partition && q.topic == topic)
    }

    /// A partition is read from `next` (`None`: its beginning).
    pub fn assign(&mut self, topic: &str, partition: i32, next: Option<i64>) {
        self.revoke_one(topic, partition);
        let rank = self.order.iter().position(|o| o == topic).unwrap_or(usize::MAX);
        self.queues.push(Queue {
            topic: topic.to_owned(),
            partition,
            rank,
            buf: VecDeque::new(),
            next,
            low: None,
            high: None,
            asked: None,
            paused: false,
        });
    }

    fn revoke_one(&mut self, topic: &str, partition: i32) {
        if let Some(i) =
            self.queues.iter().position(|q| q.partition == partition && q.topic == topic)
        {
            self.buffered -= self.queues[i].buf.len();
            self.queues.swap_remove(i);
        }
    }

    /// Forgets the partitions of `topics` and what they buffered (read again from the stored
    /// offsets when they come back).
    pub fn revoke(&mut self, topics: &[&str]) {
        self.queues.retain(|q| !topics.contains(&q.topic.as_str()));
        self.buffered = self.queues.iter().map(|q| q.buf.len()).sum();
        self.blocked_since = None;
    }

    /// Puts messages that left but were not applied back at the head of their queues (in the
    /// order they left), to leave again in turn.
    pub fn put_back(&mut self, messages: Vec<OwnedMessage>) {
        for m in messages.into_iter().rev() {
            if let Some(q) = self.find(m.topic(), m.partition()) {
                q.buf.push_front(m);
                self.buffered += 1;
            }
        }
    }

    /// Buffers a message; `false` (and dropped) when its partition is not assigned.
    pub fn push(&mut self, m: OwnedMessage) -> bool {
        let Some(q) = self.find(m.topic(), m.partition()) else { return false };
        q.next = Some(m.offset() + 1);
        q.buf.push_back(m);
        self.buffered += 1;
        self.peak = self.peak.max(self.buffered);
        true
    }

    /// A partition's watermarks, as just queried.
    pub fn set_watermarks(&mut self, topic: &str, partition: i32, low: i64, high: i64) {
        if let Some(q) = self.find(topic, partition) {
            q.low = Some(low);
            q.high = Some(high);
        }
    }

    /// A partition's high watermark, as librdkafka's statistics report it (they lag: only a
    /// higher one is taken).
    pub fn raise_high(&mut self, topic: &str, partition: i32, high: i64) {
        if let Some(q) = self.find(topic, partition)
            && high >= 0
            && q.high.is_some_and(|h| high > h)
        {
            q.high = Some(high);
        }
    }

    /// Messages buffered in all.
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// Partitions to pause (`true`: buffering too much) or resume (`false`: down to half),
    /// marked as such.
    pub fn flow(&mut self) -> Vec<(String, i32, bool)> {
        let mut out = Vec::new();
        for q in &mut self.queues {
            let pause =
                if q.paused { q.buf.len() > PAUSE_OVER / 2 } else { q.buf.len() > PAUSE_OVER };
            if pause != q.paused {
                q.paused = pause;
                out.push((q.topic.clone(), q.partition, pause));
            }
        }
        out
    }

    /// The next step at `now`.
    pub fn next(&mut self, now: Instant) -> Next {
        if self.held {
            return if self.buffered > 0 { Next::Wait } else { Next::Empty };
        }
        let head = (self.queues.iter().enumerate())
            .filter_map(|(i, q)| q.head_key().map(|k| (k, i)))
            .min()
            .map(|(_, i)| i);
        let Some(head) = head else {
            self.blocked_since = None;
            return Next::Empty;
        };
        let mut ask = Vec::new();
        let mut behind = false;
        for q in self.queues.iter_mut().filter(|q| q.buf.is_empty()) {
            match q.caught_up() {
                Some(true) => {}
                Some(false) => {
                    tracing::trace!(topic = %q.topic, partition = q.partition, next = ?q.next, high = ?q.high, "time order: behind");
                    behind = true;
                }
                None if q.asked.is_none_or(|at| now.duration_since(at) >= ASK_AGAIN) => {
                    q.asked = Some(now);
                    ask.push((q.topic.clone(), q.partition));
                }
                None => behind = true,
            }
        }
        if !ask.is_empty() {
            return Next::AskWatermarks(ask);
        }
        if behind {
            // Once waited out, messages go on until the partition behind delivers (as Kafka
            // Streams' enforced processing): a partition that never catches up (offsets that
            // skip, as transaction markers do) does not cost 2 s a message.
            let since = *self.blocked_since.get_or_insert(now);
            if now.duration_since(since) < self.max_idle {
                return Next::Wait;
            }
            self.forced += 1;
        } else {
            self.blocked_since = None;
        }
        match self.queues[head].buf.pop_front() {
            Some(m) => {
                self.buffered -= 1;
                Next::Ready(Box::new(m))
            }
            None => Next::Empty,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::Timestamp;

    fn msg(topic: &str, partition: i32, offset: i64, ts: i64) -> OwnedMessage {
        OwnedMessage::new(
            None,
            None,
            topic.into(),
            Timestamp::CreateTime(ts),
            partition,
            offset,
            None,
        )
    }

    fn drain(m: &mut Merge, now: Instant) -> Vec<(String, i64)> {
        let mut out = Vec::new();
        while let Next::Ready(x) = m.next(now) {
            out.push((x.topic().to_owned(), x.offset()));
        }
        out
    }

    fn merge() -> Merge {
        let order = ["a", "b", "c"].map(String::from).to_vec();
        let mut m = Merge::new(order, Duration::from_secs(5));
        for t in ["a", "b", "c"] {
            m.assign(t, 0, Some(0));
        }
        m
    }

    #[test]
    fn messages_leave_in_time_order_ties_by_topic_order_then_offset() {
        let mut m = merge();
        for (t, o, ts) in [("b", 0, 10), ("b", 1, 30), ("a", 0, 20), ("a", 1, 30), ("c", 0, 5)] {
            m.push(msg(t, 0, o, ts));
        }
        for t in ["a", "b", "c"] {
            m.set_watermarks(t, 0, 0, 2);
        }
        m.set_watermarks("c", 0, 0, 1);
        let now = Instant::now();
        let got = drain(&mut m, now);
        let want = [("c", 0), ("b", 0), ("a", 0), ("a", 1), ("b", 1)];
        assert_eq!(got, want.map(|(t, o)| (t.to_owned(), o)).to_vec());
    }

    #[test]
    fn the_head_waits_for_a_partition_that_can_still_deliver_older_messages() {
        let mut m = merge();
        m.push(msg("b", 0, 0, 50));
        let now = Instant::now();
        // Nothing is known of a and c: their watermarks are asked first.
        match m.next(now) {
            Next::AskWatermarks(ask) => assert_eq!(ask.len(), 2),
            other => panic!("{other:?}"),
        }
        m.set_watermarks("a", 0, 0, 3);
        m.set_watermarks("c", 0, 0, 0);
        m.set_watermarks("b", 0, 0, 1);
        // a has 3 messages not read yet: b's waits.
        assert!(matches!(m.next(now), Next::Wait));
        m.push(msg("a", 0, 0, 10));
        m.push(msg("a", 0, 1, 60));
        // Within a partition, offset order: a's offset 1 leaves after b's older message.
        let got = drain(&mut m, now);
        assert_eq!(got, [("a", 0), ("b", 0), ("a", 1)].map(|(t, o)| (t.to_owned(), o)).to_vec());
        // a's offset 2 may be older than b's next: b's waits for it.
        m.set_watermarks("b", 0, 0, 2);
        m.push(msg("b", 0, 1, 70));
        assert!(matches!(m.next(now), Next::Wait));
        m.push(msg("a", 0, 2, 65));
        assert_eq!(drain(&mut m, now), vec![("a".to_owned(), 2), ("b".to_owned(), 1)]);
        assert_eq!(m.forced, 0);
    }

    #[test]
    fn a_partition_behind_for_longer_than_max_idle_is_not_waited_for() {
        let mut m = merge();
        for t in ["a", "b", "c"] {
            m.set_watermarks(t, 0, 0, 5);
        }
        m.push(msg("b", 0, 0, 50));
        m.push(msg("c", 0, 0, 60));
        let t0 = Instant::now();
        assert!(matches!(m.next(t0), Next::Wait));
        let later = t0 + Duration::from_secs(6);
        assert!(matches!(m.next(later), Next::Ready(_)));
        // Waited out once: the next goes too, while the partition behind has not delivered.
        assert!(matches!(m.next(later), Next::Ready(_)));
        assert_eq!(m.forced, 2);
        // Nothing behind any more: the next partition to fall behind is waited for anew.
        m.set_watermarks("a", 0, 0, 0);
        m.set_watermarks("b", 0, 0, 1);
        m.set_watermarks("c", 0, 0, 2);
        m.push(msg("c", 0, 1, 80));
        assert!(matches!(m.next(later), Next::Ready(_)));
        assert_eq!(m.forced, 2);
        m.raise_high("b", 0, 3);
        m.set_watermarks("c", 0, 0, 3);
        m.push(msg("c", 0, 2, 90));
        assert!(matches!(m.next(later), Next::Wait), "b is behind: c waits");
    }

    #[test]
    fn messages_put_back_leave_again_first_in_their_order() {
        let mut m = merge();
        for t in ["a", "b", "c"] {
            m.set_watermarks(t, 0, 0, 0);
        }
        m.push(msg("a", 0, 2, 30));
        m.put_back(vec![msg("a", 0, 0, 10), msg("a", 0, 1, 20)]);
        let got: Vec<i64> = drain(&mut m, Instant::now()).into_iter().map(|(_, o)| o).collect();
        assert_eq!(got, vec![0, 1, 2]);
    }

    #[test]
    fn revoked_partitions_drop_what_they_buffered() {
        let mut m = merge();
        m.push(msg("a", 0, 0, 1));
        m.revoke(&["a"]);
        assert_eq!(m.buffered(), 0);
        assert!(!m.push(msg("a", 0, 1, 2)));
    }
}

//! Time order across topics, per partition group: the messages read from every assigned
//! partition wait here; those of one partition group (partition *i* of every co-partitioned
//! input) leave in the order of their Kafka timestamps, ties by the contract table's topic order,
//! then offset — the way Kafka Streams picks a task's next record. The groups are served in turn,
//! so a group that catches up a backlog does not hold back one that is live (each group has its
//! own day clock: `pipeline::days`). The global topics (the calendar, read whole by every
//! instance) take their place in every group's order: their head leaves once it is older than
//! every group's, and a group's messages after it wait for it.
//!
//! A head leaves only when no partition could still deliver an older message: every partition
//! of its group (and of the global topics) with nothing buffered must be caught up (its next
//! offset at its high watermark, as last fetched or reported by librdkafka's statistics). A
//! partition whose watermark is unknown is asked for it. If a partition stays behind longer than
//! `max_idle` (a broker away, offsets that skip, as transaction markers do), the head leaves
//! anyway, as Kafka Streams does after `max.task.idle.ms`.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
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
    /// A global topic's partition (read whole by every instance): in every group's order.
    global: bool,
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
    /// The next message in time order; `live`: its group has caught up (nothing else buffered,
    /// no partition behind its watermark), so it is a live record, not a backlog's.
    Ready { message: Box<OwnedMessage>, live: bool },
    /// Ask these partitions' watermarks ([`Merge::set_watermarks`]), then ask again.
    AskWatermarks(Vec<(String, i32)>),
    /// A partition may still deliver an older message (or a global message waits for its
    /// turn): read on.
    Wait,
    /// Nothing is buffered.
    Empty,
}

/// The merge of every assigned partition's messages, each partition group's in time order.
#[derive(Debug)]
pub struct Merge {
    /// Topic names in the contract table's order.
    order: Vec<String>,
    /// Topics read whole by every instance (the calendar): in every group's order.
    global: Vec<String>,
    queues: Vec<Queue>,
    max_idle: Duration,
    /// Since when each group's head (the global topics': [`GLOBAL`]) has waited for a
    /// partition behind.
    blocked_since: HashMap<i32, Instant>,
    /// The group served last.
    turn: i32,
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
            global: Vec::new(),
            queues: Vec::new(),
            max_idle,
            blocked_since: HashMap::new(),
            turn: GLOBAL,
            forced: 0,
            held: false,
            buffered: 0,
            peak: 0,
        }
    }

    /// `topic` is read whole by every instance (the calendar): its messages take their place
    /// in every partition group's order.
    pub fn global(mut self, topic: &str) -> Merge {
        self.global.push(topic.to_owned());
        self
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
            global: self.global.iter().any(|g| g == topic),
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
        self.blocked_since.clear();
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

    /// The partition groups caught up now: every partition of theirs has nothing buffered and
    /// is at its high watermark, so no message of theirs older than one that left can still come.
    pub fn caught_up_groups(&self) -> BTreeSet<i32> {
        let mut groups = BTreeMap::new();
        for q in self.queues.iter().filter(|q| !q.global) {
            let caught_up = q.buf.is_empty() && q.caught_up() == Some(true);
            *groups.entry(q.partition).or_insert(true) &= caught_up;
        }
        groups.into_iter().filter(|(_, caught_up)| *caught_up).map(|(p, _)| p).collect()
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

    /// The next step at `now`: the head of a partition group (partition *i* of every group
    /// topic) whose turn has come, the groups served in turn; the global topics' head when it
    /// is older than every group's.
    pub fn next(&mut self, now: Instant) -> Next {
        if self.held {
            return if self.buffered > 0 { Next::Wait } else { Next::Empty };
        }
        let mut ask = Vec::new();
        let mut groups: Vec<Group> = Vec::new();
        let mut global = Group::new(GLOBAL);
        for (i, q) in self.queues.iter_mut().enumerate() {
            let slot = if q.global {
                &mut global
            } else {
                let at = match groups.binary_search_by_key(&q.partition, |g| g.id) {
                    Ok(at) => at,
                    Err(at) => {
                        groups.insert(at, Group::new(q.partition));
                        at
                    }
                };
                &mut groups[at]
            };
            if let Some(key) = q.head_key() {
                if slot.head.is_none_or(|(k, _)| key < k) {
                    slot.head = Some((key, i));
                }
                continue;
            }
            match q.caught_up() {
                Some(true) => {}
                Some(false) => {
                    tracing::trace!(topic = %q.topic, partition = q.partition, next = ?q.next, high = ?q.high, "time order: behind");
                    slot.behind = true;
                }
                None if q.asked.is_none_or(|at| now.duration_since(at) >= ASK_AGAIN) => {
                    q.asked = Some(now);
                    ask.push((q.topic.clone(), q.partition));
                    slot.behind = true;
                }
                None => slot.behind = true,
            }
        }
        // Asked even with nothing buffered: whether a group has caught up needs them.
        if !ask.is_empty() {
            return Next::AskWatermarks(ask);
        }
        if global.head.is_none() && groups.iter().all(|g| g.head.is_none()) {
            self.blocked_since.clear();
            return Next::Empty;
        }
        // What each head waits for: the global head, for a partition behind anywhere (once it
        // is older than every group's head); a group's, for a partition of its own or of the
        // global topics behind, or for an older global message.
        let global_key = global.head.map(|(k, _)| k);
        let global_older = global_key
            .is_some_and(|key| groups.iter().all(|g| g.head.is_none_or(|(k, _)| key < k)));
        let global_waits = global_older && (global.behind || groups.iter().any(|g| g.behind));
        let waits = |g: &Group| {
            g.head.is_some_and(|(key, _)| {
                g.behind || global.behind || global_key.is_some_and(|k| k < key)
            })
        };
        // A wait is kept while its cause lasts (a group waited out goes on until it ends, even
        // between two of its messages), and dropped with it: the global head's while it waits.
        self.blocked_since.retain(|id, _| match *id {
            GLOBAL => global_waits,
            id => groups
                .iter()
                .any(|g| g.id == id && (g.behind || global.behind || global_key.is_some())),
        });
        // The global head goes first when its turn has come: older than every group's head, no
        // partition anywhere able to deliver an older message.
        if let Some((_, i)) = global.head
            && global_older
            && self.may_go(GLOBAL, global_waits, now)
        {
            return self.pop(i);
        }
        // Then the groups in turn, from the one after the group served last.
        let start = groups.partition_point(|g| g.id <= self.turn);
        for at in (start..groups.len()).chain(0..start) {
            let g = &groups[at];
            let Some((_, i)) = g.head else { continue };
            // An older global message goes first: waited for like a partition behind (it waits
            // for the groups older than it, one of which may be catching up a backlog), so for
            // at most `max_idle`.
            if self.may_go(g.id, waits(g), now) {
                self.turn = g.id;
                return self.pop(i);
            }
        }
        Next::Wait
    }

    /// Whether a head of `group` may leave, `behind` a partition that could still deliver an
    /// older one: not while behind, unless it has waited `max_idle` since it began to wait (then
    /// messages go on until the partition behind delivers, as Kafka Streams' enforced
    /// processing: a partition that never catches up, with offsets that skip as transaction
    /// markers do, does not cost `max_idle` a message).
    fn may_go(&mut self, group: i32, behind: bool, now: Instant) -> bool {
        if !behind {
            self.blocked_since.remove(&group);
            return true;
        }
        let since = *self.blocked_since.entry(group).or_insert(now);
        if now.duration_since(since) < self.max_idle {
            return false;
        }
        self.forced += 1;
        true
    }

    fn pop(&mut self, queue: usize) -> Next {
        let Some(m) = self.queues[queue].buf.pop_front() else { return Next::Empty };
        self.buffered -= 1;
        let q = &self.queues[queue];
        let live = !q.global
            && (self.queues.iter())
                .filter(|o| !o.global && o.partition == q.partition)
                .all(|o| o.buf.is_empty() && o.caught_up() == Some(true));
        Next::Ready { message: Box::new(m), live }
    }
}

/// The group of the global topics' partitions.
const GLOBAL: i32 = i32::MIN;

/// A partition group's head (order key, queue) and whether one of its partitions is behind.
struct Group {
    id: i32,
    head: Option<((i64, usize, i32, i64), usize)>,
    behind: bool,
}

impl Group {
    fn new(id: i32) -> Group {
        Group { id, head: None, behind: false }
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
        drain_grouped(m, now).into_iter().map(|(topic, _, offset)| (topic, offset)).collect()
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
        assert!(matches!(m.next(later), Next::Ready { .. }));
        // Waited out once: the next goes too, while the partition behind has not delivered.
        assert!(matches!(m.next(later), Next::Ready { .. }));
        assert_eq!(m.forced, 2);
        // Nothing behind any more: the next partition to fall behind is waited for anew.
        m.set_watermarks("a", 0, 0, 0);
        m.set_watermarks("b", 0, 0, 1);
        m.set_watermarks("c", 0, 0, 2);
        m.push(msg("c", 0, 1, 80));
        assert!(matches!(m.next(later), Next::Ready { .. }));
        assert_eq!(m.forced, 2);
        m.raise_high("b", 0, 3);
        m.set_watermarks("c", 0, 0, 3);
        m.push(msg("c", 0, 2, 90));
        assert!(matches!(m.next(later), Next::Wait), "b is behind: c waits");
    }

    /// Topics a, b (partitions 0 and 1: two groups) and the global topic g (partition 0), with
    /// the high watermarks of a-0, b-0, a-1, b-1 and g-0.
    fn grouped(highs: [i64; 5]) -> Merge {
        let order = ["a", "b", "g"].map(String::from).to_vec();
        let mut m = Merge::new(order, Duration::from_secs(5)).global("g");
        let partitions = [("a", 0), ("b", 0), ("a", 1), ("b", 1), ("g", 0)];
        for ((t, p), high) in partitions.into_iter().zip(highs) {
            m.assign(t, p, Some(0));
            m.set_watermarks(t, p, 0, high);
        }
        m
    }

    fn drain_grouped(m: &mut Merge, now: Instant) -> Vec<(String, i32, i64)> {
        let mut out = Vec::new();
        while let Next::Ready { message: x, .. } = m.next(now) {
            out.push((x.topic().to_owned(), x.partition(), x.offset()));
        }
        out
    }

    fn at(t: &str, p: i32, o: i64) -> (String, i32, i64) {
        (t.to_owned(), p, o)
    }

    #[test]
    fn a_group_behind_does_not_hold_back_another_and_groups_take_turns() {
        let mut m = grouped([2, 5, 2, 1, 0]);
        // Group 0 catches up a backlog (b still has 5 to read); group 1 is live.
        m.push(msg("a", 0, 0, 10));
        m.push(msg("a", 0, 1, 20));
        m.push(msg("a", 1, 0, 1_000));
        m.push(msg("b", 1, 0, 900));
        m.push(msg("a", 1, 1, 1_100));
        let now = Instant::now();
        // Group 1's messages leave; the last is live (its group caught up, nothing buffered).
        let mut got = Vec::new();
        while let Next::Ready { message: x, live } = m.next(now) {
            got.push((at(x.topic(), x.partition(), x.offset()), live));
        }
        let want = [(at("b", 1, 0), false), (at("a", 1, 0), false), (at("a", 1, 1), true)];
        assert_eq!(got, want.to_vec());
        // Group 0's b delivers: both groups have messages, and they take turns, each in its
        // own time order.
        for o in 0..5 {
            m.push(msg("b", 0, o, 15 + o));
        }
        m.push(msg("a", 1, 2, 1_200));
        m.push(msg("b", 1, 1, 1_150));
        m.set_watermarks("a", 1, 0, 3);
        m.set_watermarks("b", 1, 0, 2);
        let got = drain_grouped(&mut m, now);
        let want = [
            at("a", 0, 0),
            at("b", 1, 1),
            at("b", 0, 0),
            at("a", 1, 2),
            at("b", 0, 1),
            at("b", 0, 2),
            at("b", 0, 3),
            at("b", 0, 4),
            at("a", 0, 1),
        ];
        assert_eq!(got, want.to_vec());
        assert_eq!(m.forced, 0);
    }

    #[test]
    fn a_global_message_takes_its_place_in_every_groups_order() {
        let mut m = grouped([2, 0, 2, 0, 1]);
        m.push(msg("g", 0, 0, 50));
        m.push(msg("a", 0, 0, 10));
        m.push(msg("a", 0, 1, 60));
        m.push(msg("a", 1, 0, 70));
        let now = Instant::now();
        // Group 1 waits for the older global message, which waits for group 0's older one.
        let got = drain_grouped(&mut m, now);
        assert_eq!(got, vec![at("a", 0, 0), at("g", 0, 0), at("a", 1, 0), at("a", 0, 1)]);
        // A group behind holds back the global message (it could deliver an older one), and
        // with it every later message, until max_idle.
        m.set_watermarks("b", 0, 0, 3);
        m.set_watermarks("g", 0, 0, 2);
        m.push(msg("g", 0, 1, 100));
        m.push(msg("a", 1, 1, 120));
        assert!(matches!(m.next(now), Next::Wait));
        let later = now + Duration::from_secs(6);
        assert_eq!(drain_grouped(&mut m, later), vec![at("g", 0, 1), at("a", 1, 1)]);
        assert_eq!(m.forced, 1);
    }

    #[test]
    fn a_group_waits_for_an_older_global_message_at_most_max_idle() {
        let mut m = grouped([1000, 0, 1, 0, 1]);
        m.push(msg("g", 0, 0, 500));
        m.push(msg("a", 1, 0, 1_000));
        m.push(msg("a", 0, 0, 10));
        let now = Instant::now();
        // Group 0 catches up a backlog older than the global message: it goes; group 1 waits.
        assert_eq!(drain_grouped(&mut m, now), vec![at("a", 0, 0)]);
        // The backlog goes on delivering older messages: the global one keeps waiting for it,
        // group 1 no longer than max_idle.
        m.push(msg("a", 0, 1, 20));
        let later = now + Duration::from_secs(6);
        assert_eq!(drain_grouped(&mut m, later), vec![at("a", 1, 0), at("a", 0, 1)]);
        assert_eq!(m.forced, 1);
        // Waited out: while the global message still waits, group 1's next message goes at
        // once, though the group had nothing buffered in between.
        m.push(msg("a", 1, 1, 1_100));
        let soon = later + Duration::from_millis(100);
        assert_eq!(drain_grouped(&mut m, soon), vec![at("a", 1, 1)]);
        assert_eq!(m.forced, 2);
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

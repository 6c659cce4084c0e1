//! `ontrack loadgen`: a seeded synthetic district produced into the input topics, as fast as
//! possible or at a fixed rate. Every message carries its produce time as its Kafka timestamp,
//! which ontrack copies onto the flags it causes (`ontrack.source.timestamp_ms`), so the
//! event-produced → flag-acknowledged latency can be read off the flags topic.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, Producer};

use crate::pipeline::Topics;
use crate::synth::{District, DistrictSpec};

/// What to produce, where, and how fast.
#[derive(Debug, Clone)]
pub struct Load {
    pub district: DistrictSpec,
    pub brokers: String,
    pub topics: Topics,
    /// Events per second; 0: as fast as possible.
    pub rate: u64,
    /// Stop after this long (the district's days permitting); `None`: the whole district.
    pub duration: Option<Duration>,
    /// The first school day produced: the days before it are made (the district is the same)
    /// but not sent, as when a stream goes on from a history already produced.
    pub from_day: u32,
    /// Only some partitions: the students whose partition ([`Split::partition_of`]) is one of
    /// these, each sent to it (a backlog in some partitions, a live stream in others); calendar
    /// records, which every instance reads whole, go to the first. `None`: every student, as
    /// the producer's partitioner places it.
    pub split: Option<Split>,
}

/// Partitions chosen by the load generator itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// The partitions to produce into.
    pub partitions: Vec<i32>,
    /// The topics' partition count.
    pub of: i32,
}

impl Split {
    /// A student's partition: xxh3-64 of its id, modulo the partition count.
    pub fn partition_of(&self, student_id: &str) -> i32 {
        let of = u64::try_from(self.of.max(1)).unwrap_or(1);
        i32::try_from(xxhash_rust::xxh3::xxh3_64(student_id.as_bytes()) % of).unwrap_or(0)
    }

    /// Where `e` goes (`None`: not produced).
    fn place(&self, e: &crate::synth::SynthEvent) -> Option<i32> {
        if e.kind == crate::core::EventKind::Calendar {
            return self.partitions.first().copied();
        }
        let p = self.partition_of(&e.student_id);
        self.partitions.contains(&p).then_some(p)
    }
}

/// What was produced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Produced {
    pub events: u64,
    pub took: Duration,
}

impl Produced {
    pub fn per_second(&self) -> f64 {
        self.events as f64 / self.took.as_secs_f64().max(1e-9)
    }
}

/// Produces `load` and waits until the broker has acknowledged every message.
pub fn run(load: &Load) -> anyhow::Result<Produced> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &load.brokers)
        // Idempotent: retries never reorder a student's events.
        .set("enable.idempotence", "true")
        .set("linger.ms", if load.rate == 0 { "20" } else { "1" })
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .context("loadgen: cannot create the producer")?;
    let mut district = District::new(load.district.clone());
    let mut started = Instant::now();
    let mut events = 0u64;
    'days: for day in 0..load.district.days {
        let made = district.day(day);
        if day < load.from_day {
            continue;
        }
        if day == load.from_day {
            // The rate and the duration count from the first event sent, not from making the
            // days before it (a large district's take seconds: sent at once, they would be a
            // burst, not a stream at the rate).
            started = Instant::now();
        }
        for e in made {
            if load.duration.is_some_and(|d| started.elapsed() >= d) {
                break 'days;
            }
            if load.rate > 0 {
                // Keep to the rate: event i goes out at i / rate seconds.
                let due = Duration::from_secs_f64(events as f64 / load.rate as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
            let partition = match &load.split {
                Some(split) => match split.place(&e) {
                    Some(p) => Some(p),
                    None => continue,
                },
                None => None,
            };
            let (key, payload) = (e.student_id.as_bytes(), e.json.as_bytes());
            let topic = load.topics.input_of(e.kind);
            crate::kafka::send_waiting_to(&producer, topic, partition, key, payload)
                .context("loadgen: cannot produce")?;
            events += 1;
            if events.is_multiple_of(1024) {
                producer.poll(Duration::ZERO);
            }
        }
    }
    producer.flush(Duration::from_secs(120)).context("loadgen: the broker did not acknowledge")?;
    Ok(Produced { events, took: started.elapsed() })
}

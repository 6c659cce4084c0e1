//! Start-up checks: the topics exist (or are created) and the inputs are co-partitioned.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::FromClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use super::KafkaConfig;

/// Why the topics are not usable; start-up stops with this message.
#[derive(Debug, thiserror::Error)]
pub enum TopicsError {
    #[error("kafka: cannot reach the brokers at {brokers} ({source}); check kafka.brokers")]
    Unreachable { brokers: String, source: KafkaError },
    #[error("kafka: topic {topic} is missing; create it, or set kafka.create_topics = true")]
    Missing { topic: String },
    #[error("kafka: creating topic {topic} failed: {reason}")]
    Create { topic: String, reason: String },
    #[error(
        "kafka: the input topics are not co-partitioned ({counts}); every input topic needs the \
         same number of partitions, so that one consumer owns all of a student's events"
    )]
    NotCoPartitioned { counts: String },
}

fn unreachable(kafka: &KafkaConfig) -> impl Fn(KafkaError) -> TopicsError + '_ {
    |source| TopicsError::Unreachable { brokers: kafka.brokers.clone(), source }
}

/// A client of the admin role (a metadata consumer or the admin client).
fn client<T: FromClientConfig>(kafka: &KafkaConfig) -> Result<T, TopicsError> {
    super::with_overrides(super::client_config(kafka, "admin"), kafka)
        .create()
        .map_err(unreachable(kafka))
}

/// Partition counts of `topics` (0 for a missing topic).
/// Each topic's partition count (0: the topic does not exist).
pub fn partition_counts(kafka: &KafkaConfig, topics: &[&str]) -> Result<Vec<usize>, TopicsError> {
    let consumer: BaseConsumer = client(kafka)?;
    let metadata =
        consumer.fetch_metadata(None, Duration::from_secs(10)).map_err(unreachable(kafka))?;
    Ok(topics
        .iter()
        .map(|t| {
            metadata
                .topics()
                .iter()
                .find(|m| m.name() == *t && m.error().is_none())
                .map_or(0, |m| m.partitions().len())
        })
        .collect())
}

/// Makes sure the co-partitioned inputs and the other topics (the calendar, the outputs) exist
/// and the inputs share one partition count; returns it.
pub fn ensure_topics(
    kafka: &KafkaConfig,
    inputs: &[&str],
    outputs: &[&str],
) -> Result<usize, TopicsError> {
    let all: Vec<&str> = inputs.iter().chain(outputs).copied().collect();
    let counts = partition_counts(kafka, &all)?;
    let missing: Vec<&str> =
        all.iter().zip(&counts).filter(|(_, n)| **n == 0).map(|(t, _)| *t).collect();
    if !missing.is_empty() {
        if !kafka.create_topics {
            return Err(TopicsError::Missing { topic: missing[0].to_owned() });
        }
        // New inputs get the partition count of the existing ones, if any.
        let existing = counts[..inputs.len()].iter().copied().find(|n| *n > 0);
        let partitions = existing.map_or(kafka.partitions, |n| n as i32);
        create(kafka, &missing, partitions)?;
    }
    // Metadata of topics just created reaches the brokers' caches a moment later.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let mut counts = partition_counts(kafka, inputs)?;
    while counts.contains(&0) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        counts = partition_counts(kafka, inputs)?;
    }
    if counts.iter().any(|n| *n != counts[0]) || counts.first().is_none_or(|n| *n == 0) {
        let counts = inputs
            .iter()
            .zip(&counts)
            .map(|(t, n)| format!("{t}: {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(TopicsError::NotCoPartitioned { counts });
    }
    Ok(counts[0])
}

fn create(kafka: &KafkaConfig, topics: &[&str], partitions: i32) -> Result<(), TopicsError> {
    let admin: AdminClient<DefaultClientContext> = client(kafka)?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(kafka.replication_factor)))
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| TopicsError::Create { topic: topics.join(", "), reason: e.to_string() })?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = runtime
        .block_on(admin.create_topics(&new, &options))
        .map_err(|e| TopicsError::Create { topic: topics.join(", "), reason: e.to_string() })?;
    for result in results {
        match result {
            Ok(_) => {}
            // Another instance created it first: fine.
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(TopicsError::Create { topic, reason: code.to_string() });
            }
        }
    }
    Ok(())
}

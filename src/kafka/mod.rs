//! Kafka, behind one folder: client settings, topic checks, the consumer's settings and context,
//! and the outbox publisher.

pub mod admin;
pub mod config;
pub mod consumer;
pub mod merge;
pub mod publisher;

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord};

pub use config::KafkaConfig;

/// Settings shared by the consumer, the producer and the admin client; the raw `librdkafka`
/// pass-through map is applied last, so it can override any of them.
pub fn client_config(kafka: &KafkaConfig, role: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &kafka.brokers)
        .set("client.id", format!("ontrack-{role}"))
        // Reconnect quickly after a broker restart, without hammering it.
        .set("reconnect.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "5000");
    c
}

/// Applies the pass-through settings.
pub fn with_overrides(mut c: ClientConfig, kafka: &KafkaConfig) -> ClientConfig {
    for (k, v) in &kafka.librdkafka {
        c.set(k, v);
    }
    c
}

/// Queues one keyed message, waiting (and serving delivery reports) while the producer's local
/// queue is full; any other error is returned. For the demo, the load generator and the tests.
pub fn send_waiting(
    producer: &BaseProducer,
    topic: &str,
    key: &[u8],
    payload: &[u8],
) -> KafkaResult<()> {
    send_waiting_to(producer, topic, None, key, payload)
}

/// [`send_waiting`] to `partition` (`None`: where the producer's partitioner places the key).
pub fn send_waiting_to(
    producer: &BaseProducer,
    topic: &str,
    partition: Option<i32>,
    key: &[u8],
    payload: &[u8],
) -> KafkaResult<()> {
    let mut record = BaseRecord::to(topic).key(key).payload(payload);
    if let Some(p) = partition {
        record = record.partition(p);
    }
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                producer.poll(Duration::from_millis(1));
            }
            Err((e, _)) => return Err(e),
        }
    }
}

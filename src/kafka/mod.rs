//! Kafka, behind one folder: client settings, topic checks, and the outbox publisher.

pub mod admin;
pub mod publisher;

use rdkafka::ClientConfig;

use crate::config::KafkaConfig;

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

//! `[kafka]`: the brokers, the consumer group and the topics' creation, with a pass-through map
//! of raw librdkafka settings.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `[kafka]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port]`.
    pub brokers: String,
    pub group_id: String,
    /// Static membership: a restarted instance with the same id gets its partitions back without
    /// waiting out the session timeout. Empty: dynamic membership.
    pub group_instance_id: String,
    pub session_timeout_ms: u32,
    /// Create missing topics at start-up (with `partitions` partitions, replication factor
    /// `replication_factor`).
    pub create_topics: bool,
    pub partitions: i32,
    pub replication_factor: i32,
    /// Raw librdkafka settings, applied last to both consumer and producer
    /// (e.g. `"security.protocol" = "SASL_SSL"`); numbers and booleans are taken as text.
    #[serde(deserialize_with = "scalars_as_text")]
    pub librdkafka: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            group_id: "ontrack".into(),
            group_instance_id: String::new(),
            session_timeout_ms: 10_000,
            create_topics: true,
            partitions: 4,
            replication_factor: 1,
            librdkafka: BTreeMap::new(),
        }
    }
}

fn scalars_as_text<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    let raw = BTreeMap::<String, toml::Value>::deserialize(d)?;
    raw.into_iter()
        .map(|(k, v)| match v {
            toml::Value::String(s) => Ok((k, s)),
            toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_) => {
                Ok((k, v.to_string()))
            }
            other => Err(serde::de::Error::custom(format!(
                "kafka.librdkafka.{k}: expected a string, number or boolean, got a {}",
                other.type_str()
            ))),
        })
        .collect()
}

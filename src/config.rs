//! The service's configuration: one TOML tree, every key optional, every key overridable from the
//! environment (`ONTRACK__KAFKA__BROKERS=host:9092` sets `kafka.brokers`).
//!
//! An unknown key or an impossible value stops start-up with a message that names the key.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::clock::Clock;
pub use crate::kafka::KafkaConfig;
use crate::notify::NotifyConfig;
use crate::pipeline::Topics;

/// Everything `ontrack run` needs; defaults in one place ([`Default`] impls below).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the store (fjall) lives.
    pub data_dir: PathBuf,
    /// A rules file (TOML, see README); the defaults of DESIGN.md without one.
    pub rules_file: Option<PathBuf>,
    pub kafka: KafkaConfig,
    pub topics: Topics,
    pub batch: BatchConfig,
    pub store: crate::store::StoreOptions,
    pub notify: NotifyConfig,
    pub admin: AdminConfig,
    /// `ontrack edfi`: the DMS change topic, the translator's store and admin address, and the
    /// descriptor mappings.
    pub edfi: crate::edfi::EdfiConfig,
    /// For demos and tests: the service's clock starts at this RFC 3339 instant (and runs at
    /// normal speed), which sets what "today" is for absence alerts. Empty: the system clock.
    pub clock_start: String,
}

/// `[admin]`: the admin HTTP server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Where `/metrics`, `/healthz` and `/readyz` listen (`--admin-addr`). Empty: no server.
    pub addr: String,
    /// `/readyz` answers 503 while the consumer lag summed over the assigned partitions is above this.
    pub ready_max_lag: i64,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig { addr: "127.0.0.1:9898".into(), ready_max_lag: 10_000 }
    }
}

/// `[batch]`: one store fsync and one Kafka commit per batch, not per event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchConfig {
    /// A batch closes at this many messages (a backlog's batches shrink to 5,000 while they
    /// touch each student about once: see [`crate::pipeline::BatchSize`]) ...
    pub max_events: usize,
    /// ... or this long after its first message, whichever comes first, once the batch before
    /// it is committed (while one commits, the next keeps gathering: a backlog is folded in
    /// large batches, each student's state written once for several of its events).
    pub max_wait_ms: u64,
    /// Memory (MiB) for decoded student states kept between batches (0: none); each cached
    /// student saves a store read and decode per batch that touches it.
    pub state_cache_mib: usize,
    /// Memory (MiB) for the states that do not fit `state_cache_mib`, kept packed as the store
    /// has them (0: none); a packed state is decoded again, but costs no store read.
    pub packed_cache_mib: usize,
    /// Workers folding a batch side by side, each with its own students (by a hash of the id)
    /// and its share of the state cache; 0: one per core.
    pub workers: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./data"),
            rules_file: None,
            kafka: KafkaConfig::default(),
            topics: Topics::default(),
            batch: BatchConfig::default(),
            store: crate::store::StoreOptions::default(),
            notify: NotifyConfig::default(),
            admin: AdminConfig::default(),
            edfi: crate::edfi::EdfiConfig::default(),
            clock_start: String::new(),
        }
    }
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_events: 50_000,
            max_wait_ms: 20,
            state_cache_mib: crate::pipeline::DEFAULT_CACHE_MIB,
            packed_cache_mib: crate::pipeline::DEFAULT_PACKED_MIB,
            workers: 0,
        }
    }
}

/// A configuration that cannot be used: the message names the key and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config: {0}")]
pub struct ConfigError(pub String);

/// Environment variables that override config keys start with this.
pub const ENV_PREFIX: &str = "ONTRACK__";

impl Config {
    /// Reads `file` (if any), then applies `ONTRACK__…` variables from `env`, then checks.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut tree = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?
            }
            None => toml::Table::new(),
        };
        for (name, value) in env {
            let Some(path) = name.strip_prefix(ENV_PREFIX) else { continue };
            set_path(&mut tree, &name, path, &value)?;
        }
        let config = Config::deserialize(toml::Value::Table(tree))
            .map_err(|e| ConfigError(e.to_string().trim_end().to_owned()))?;
        config.check()?;
        Ok(config)
    }

    /// The service's clock (see `clock_start`).
    pub fn clock(&self) -> Clock {
        match self.clock_start.parse::<jiff::Timestamp>() {
            Ok(start) if !self.clock_start.is_empty() => Clock::starting_at(start),
            _ => Clock::system(),
        }
    }

    fn check(&self) -> Result<(), ConfigError> {
        let fail = |key: &str, why: &str| Err(ConfigError(format!("{key}: {why}")));
        if !self.clock_start.is_empty() && self.clock_start.parse::<jiff::Timestamp>().is_err() {
            return fail("clock_start", "must be an RFC 3339 instant, e.g. 2026-09-14T13:40:00Z");
        }
        if let Err((key, why)) = self.notify.check() {
            return fail(&key, &why);
        }
        if self.kafka.brokers.trim().is_empty() {
            return fail("kafka.brokers", "must name at least one broker, e.g. 127.0.0.1:9092");
        }
        if self.kafka.group_id.is_empty() {
            return fail("kafka.group_id", "must not be empty");
        }
        if self.kafka.partitions < 1 {
            return fail("kafka.partitions", "must be at least 1");
        }
        if self.kafka.replication_factor < 1 {
            return fail("kafka.replication_factor", "must be at least 1");
        }
        if self.batch.max_events == 0 {
            return fail("batch.max_events", "must be at least 1");
        }
        if self.store.cache_mib == 0 {
            return fail("store.cache_mib", "must be at least 1 (MiB of block cache)");
        }
        if self.store.memtable_mib == 0 {
            return fail("store.memtable_mib", "must be at least 1 (MiB of memtable)");
        }
        if let Err((key, why)) = crate::edfi::Mapping::new(&self.edfi) {
            return fail(&key, &why);
        }
        let t = &self.topics;
        let names = [
            ("topics.attendance", &t.attendance),
            ("topics.discipline", &t.discipline),
            ("topics.grades", &t.grades),
            ("topics.assignments", &t.assignments),
            ("topics.enrollment", &t.enrollment),
            ("topics.calendar", &t.calendar),
            ("topics.flags", &t.flags),
            ("topics.dead_letter", &t.dead_letter),
            ("edfi.topic", &self.edfi.topic),
        ];
        for (i, (key, name)) in names.iter().enumerate() {
            if name.is_empty() || name.len() > 249 {
                return fail(key, "must be a topic name of 1 to 249 characters");
            }
            if let Some((other, _)) = names[..i].iter().find(|(_, n)| n == name) {
                return fail(key, &format!("is the same topic as {other}; give each its own"));
            }
        }
        Ok(())
    }
}

/// Sets `a__b__c` (lower-cased) in `tree`; the value is read as TOML when it parses as a TOML
/// value (numbers, booleans), else taken as a string.
fn set_path(tree: &mut toml::Table, var: &str, path: &str, value: &str) -> Result<(), ConfigError> {
    let keys: Vec<String> = path.split("__").map(str::to_lowercase).collect();
    let (last, parents) = keys.split_last().ok_or_else(|| ConfigError(format!("{var}: no key")))?;
    let mut table = tree;
    for key in parents {
        let entry =
            table.entry(key.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = entry
            .as_table_mut()
            .ok_or_else(|| ConfigError(format!("{var}: {key} is a value, not a section")))?;
    }
    let parsed = format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .filter(|v| !v.is_table() && !v.is_array())
        .unwrap_or_else(|| toml::Value::String(value.to_owned()));
    table.insert(last.clone(), parsed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn nothing_given_is_the_documented_defaults() {
        let c = Config::load(None, env(&[("PATH", "/bin")])).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.kafka.brokers, "127.0.0.1:9092");
        assert_eq!(c.topics.attendance, "sis.attendance");
        assert_eq!(c.data_dir, PathBuf::from("./data"));
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ontrack.toml");
        std::fs::write(
            &file,
            "[kafka]\nbrokers = \"a:1\"\npartitions = 8\n[batch]\nmax_wait_ms = 10\n",
        )
        .unwrap();
        let c = Config::load(
            Some(&file),
            env(&[
                ("ONTRACK__KAFKA__BROKERS", "b:2"),
                ("ONTRACK__BATCH__MAX_EVENTS", "100"),
                ("ONTRACK__KAFKA__LIBRDKAFKA__FETCH.MIN.BYTES", "1"),
                ("ONTRACK__DATA_DIR", "/var/lib/ontrack"),
            ]),
        )
        .unwrap();
        assert_eq!(c.kafka.brokers, "b:2");
        assert_eq!(c.kafka.partitions, 8);
        assert_eq!((c.batch.max_events, c.batch.max_wait_ms), (100, 10));
        assert_eq!(c.kafka.librdkafka.get("fetch.min.bytes").map(String::as_str), Some("1"));
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/ontrack"));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let err = Config::load(None, env(&[("ONTRACK__KAFKA__BROKER", "x")])).unwrap_err();
        assert!(err.0.contains("broker"), "{err}");
        let err = Config::load(None, env(&[("ONTRACK__BATCH__MAX_EVENTS", "0")])).unwrap_err();
        assert!(err.0.starts_with("batch.max_events"), "{err}");
        let err = Config::load(None, env(&[("ONTRACK__TOPICS__FLAGS", "sis.grades")])).unwrap_err();
        assert!(err.0.starts_with("topics.flags: is the same topic as topics.grades"), "{err}");
        let err = Config::load(None, env(&[("ONTRACK__KAFKA__PARTITIONS", "many")])).unwrap_err();
        assert!(err.0.contains("partitions"), "{err}");
    }

    #[test]
    fn notification_settings_are_checked_at_start_up() {
        let cases = [
            (
                "ONTRACK__NOTIFY__WEBHOOK__SECRET",
                "hunter2",
                "notify.webhook.secret: must be whsec_",
            ),
            ("ONTRACK__NOTIFY__DEFAULT_TIMEZONE", "Mars/Olympus", "notify.default_timezone"),
            ("ONTRACK__NOTIFY__DIGEST_AT", "4pm", "notify.digest_at: must be a local time HH:MM"),
            ("ONTRACK__NOTIFY__LINK_TEMPLATE", "https://x/{name}", "{name} is unknown"),
            ("ONTRACK__NOTIFY__DELIVERY", "hourly", "daily_digest"),
            ("ONTRACK__NOTIFY__EMAIL__SECURITY", "none", "starttls"),
            ("ONTRACK__CLOCK_START", "yesterday", "clock_start: must be an RFC 3339 instant"),
        ];
        for (var, value, expected) in cases {
            let err = Config::load(None, env(&[(var, value)])).unwrap_err();
            assert!(err.0.contains(expected), "{var}={value}: {err}");
        }
        let err = Config::load(
            None,
            env(&[
                ("ONTRACK__NOTIFY__EMAIL__SMTP_HOST", "smtp.example"),
                ("ONTRACK__NOTIFY__EMAIL__FROM", ""),
            ]),
        )
        .unwrap_err();
        assert!(err.0.starts_with("notify.email.from"), "{err}");
        let ok = Config::load(
            None,
            env(&[
                ("ONTRACK__NOTIFY__WEBHOOK__SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
                ("ONTRACK__NOTIFY__DELIVERY", "daily_digest"),
                ("ONTRACK__CLOCK_START", "2026-09-14T13:40:00Z"),
            ]),
        )
        .unwrap();
        assert!(ok.notify.active());
        assert!(!Config::default().notify.active(), "no channel configured: notifications off");
    }
}

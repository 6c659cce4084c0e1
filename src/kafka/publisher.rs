//! Publishes the store's outbox to Kafka (idempotent producer, `acks=all`) and removes what the
//! broker acknowledged. A record is sent again only if its delivery failed, or after a restart.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};

use super::KafkaConfig;
use crate::store::{Store, StoreError};
use crate::telemetry::Telemetry;

/// Kafka header on flag events: unix milliseconds of the causing event (its Kafka timestamp, else
/// its `recorded_at`), from which the publisher measures event-to-flag latency.
pub const SOURCE_TIME_HEADER: &str = "ontrack.source.timestamp_ms";

/// Delivery reports: which outbox records the broker has (or has not) taken.
#[derive(Debug)]
pub struct Deliveries {
    in_flight: Mutex<HashSet<u64>>,
    acked: Mutex<Vec<u64>>,
    /// A delivery failed: its record is still in the outbox and must be sent again.
    failed: std::sync::atomic::AtomicBool,
    telemetry: Arc<Telemetry>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = Box<u64>;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: Box<u64>) {
        self.in_flight.lock().unwrap_or_else(PoisonError::into_inner).remove(&seq);
        match result {
            Ok(message) => {
                self.acked.lock().unwrap_or_else(PoisonError::into_inner).push(*seq);
                // Flag events carry the time of their causing event.
                let source = message.headers().and_then(|h| {
                    h.iter().find(|h| h.key == SOURCE_TIME_HEADER).and_then(|h| h.value)
                });
                if let Some(ms) = source
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .and_then(|v| v.parse::<i64>().ok())
                {
                    let now_ms = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as i64);
                    let age = Duration::from_millis((now_ms - ms).max(0) as u64);
                    self.telemetry.flag_acknowledged(age);
                }
            }
            Err((e, _)) => {
                self.failed.store(true, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(error = %e, "delivery failed; the record stays in the outbox")
            }
        }
    }
}

/// The outbox publisher.
pub struct Publisher {
    producer: BaseProducer<Deliveries>,
    /// The highest sequence number sent so far: only later records are new.
    sent_up_to: Mutex<Option<u64>>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").finish_non_exhaustive()
    }
}

impl Publisher {
    pub fn new(kafka: &KafkaConfig, telemetry: Arc<Telemetry>) -> Result<Publisher, KafkaError> {
        let mut c = super::client_config(kafka, "producer");
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            // Keep a record in flight across a broker outage rather than failing it.
            .set("message.timeout.ms", "0");
        let producer = super::with_overrides(c, kafka).create_with_context(Deliveries {
            in_flight: Mutex::default(),
            acked: Mutex::default(),
            failed: std::sync::atomic::AtomicBool::new(false),
            telemetry,
        })?;
        Ok(Publisher { producer, sent_up_to: Mutex::new(None) })
    }

    /// Sends every pending outbox record that is not already in flight, waits up to `wait` for
    /// acknowledgements, and removes the acknowledged ones. Returns how many were acknowledged.
    pub fn publish(&self, store: &Store, wait: Duration) -> Result<usize, StoreError> {
        let mut sent_up_to = self.sent_up_to.lock().unwrap_or_else(PoisonError::into_inner);
        // After a failed delivery, look at the whole outbox again; else only at new records.
        let after = match self
            .producer
            .context()
            .failed
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            true => None,
            false => *sent_up_to,
        };
        for item in store.pending_after(after) {
            let (seq, record) = item?;
            *sent_up_to = Some(sent_up_to.map_or(seq, |s| s.max(seq)));
            if !self
                .producer
                .context()
                .in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(seq)
            {
                continue;
            }
            let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
            for (name, value) in &record.headers {
                headers = headers.insert(Header { key: name, value: Some(value) });
            }
            let mut base = BaseRecord::with_opaque_to(&record.topic, Box::new(seq))
                .payload(&record.payload)
                .headers(headers);
            if let Some(key) = &record.key {
                base = base.key(key);
            }
            loop {
                match self.producer.send(base) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        base = back;
                        self.producer.poll(Duration::from_millis(10));
                    }
                    Err((e, _)) => {
                        self.producer
                            .context()
                            .in_flight
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .remove(&seq);
                        tracing::warn!(error = %e, "could not queue an outbox record; will retry");
                        break;
                    }
                }
            }
        }
        drop(sent_up_to);
        // Waits for the queue to drain (or `wait`), serving delivery reports.
        let _ = self.producer.flush(wait);
        self.take_acked(store)
    }

    /// Serves the delivery reports that arrived and removes the acknowledged records; sends
    /// nothing new. Cheap: the loop calls it while records are in flight.
    pub fn serve(&self, store: &Store) -> Result<usize, StoreError> {
        self.producer.poll(Duration::ZERO);
        self.take_acked(store)
    }

    fn take_acked(&self, store: &Store) -> Result<usize, StoreError> {
        let acked = std::mem::take(
            &mut *self.producer.context().acked.lock().unwrap_or_else(PoisonError::into_inner),
        );
        // The loop calls this for every message while records are in flight: no empty batches.
        if !acked.is_empty() {
            store.acked(&acked)?;
        }
        Ok(acked.len())
    }

    /// Records sent and not yet acknowledged or failed.
    pub fn in_flight(&self) -> usize {
        self.producer.context().in_flight.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

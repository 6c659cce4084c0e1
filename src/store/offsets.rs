//! Where to resume reading each input partition: written in the same batch as the states the
//! input produced, read when a partition is assigned.

use super::table::{BigEndianI64, Table, TopicPartition};
use super::{Store, StoreError};

/// `o` + topic length (u8) + topic + partition (i32, BE) → the next offset to read (i64, BE).
pub const OFFSETS: Table<TopicPartition, BigEndianI64> = Table::new(b'o', "input offsets");

impl Store {
    /// Where to resume reading `topic`/`partition`: the offset after the last one committed.
    pub fn next_offset(&self, topic: &str, partition: i32) -> Result<Option<i64>, StoreError> {
        OFFSETS.get(self, &(topic, partition))
    }
}

//! Transactions: the transaction coordinator's state per `transactional.id`,
//! kept in the Pharaoh shard the id hashes to (as groups are), persisted as
//! records in that shard's partition and replayed on start.
//!
//! A transaction moves Empty → Ongoing (first AddPartitionsToTxn) →
//! PrepareCommit/PrepareAbort (EndTxn, timeout, or fencing by a new
//! producer) → CompleteCommit/CompleteAbort once every partition holds its
//! marker and the transaction's offsets are settled. The prepare record is
//! written before any marker, so a crash between them is finished on start.

use std::collections::BTreeSet;

use bytes::{BufMut, Bytes, BytesMut};

use crate::records::{
    RecordError, get_count, get_i16, get_i32, get_i64, get_string, get_u8, put_str,
};

mod admin;
mod coordinator;
mod expiry;
mod offsets;

pub use coordinator::{
    LocalMarkers, MarkerWriter, MarkersFuture, TIMED_OUT_METRIC, TRANSACTIONS_METRIC,
    TransactionCoordinator, TxnConfig, TxnMarker, append_marker,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
}

impl TxnState {
    const ALL: [TxnState; 6] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
    ];

    /// The name Kafka's admin APIs and tools use.
    pub fn kafka_name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
        }
    }

    pub fn from_kafka_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.kafka_name() == name)
    }

    fn code(self) -> u8 {
        Self::ALL.iter().position(|s| *s == self).unwrap_or(0) as u8
    }

    fn from_code(c: u8) -> Result<Self, RecordError> {
        Self::ALL
            .get(c as usize)
            .copied()
            .ok_or(RecordError("unknown transaction state"))
    }

    pub fn is_prepare(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMetadata {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// The epoch before the coordinator fenced it (a timeout abort), -1 if
    /// none: that producer may still re-initialise with it (KIP-588).
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    /// Partitions holding the open transaction's data.
    pub partitions: BTreeSet<(String, i32)>,
    /// Groups whose offsets the transaction commits (AddOffsetsToTxn).
    pub groups: BTreeSet<String>,
    /// When the open transaction started (ms), -1 when none is open.
    pub start_ms: i64,
    pub update_ms: i64,
}

impl TxnMetadata {
    /// version:u8 producer_id:i64 epoch:i16 last_epoch:i16 timeout:i32 state:u8 start:i64
    /// update:i64 partitions:[topic:str16 partition:i32] groups:[str16]
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(64);
        b.put_u8(0);
        b.put_i64(self.producer_id);
        b.put_i16(self.producer_epoch);
        b.put_i16(self.last_producer_epoch);
        b.put_i32(self.timeout_ms);
        b.put_u8(self.state.code());
        b.put_i64(self.start_ms);
        b.put_i64(self.update_ms);
        b.put_i32(self.partitions.len() as i32);
        for (t, p) in &self.partitions {
            put_str(&mut b, Some(t));
            b.put_i32(*p);
        }
        b.put_i32(self.groups.len() as i32);
        for g in &self.groups {
            put_str(&mut b, Some(g));
        }
        b.freeze()
    }

    pub fn decode(transactional_id: &str, mut buf: Bytes) -> Result<Self, RecordError> {
        if get_u8(&mut buf)? != 0 {
            return Err(RecordError("unknown transaction value version"));
        }
        let producer_id = get_i64(&mut buf)?;
        let producer_epoch = get_i16(&mut buf)?;
        let last_producer_epoch = get_i16(&mut buf)?;
        let timeout_ms = get_i32(&mut buf)?;
        let state = TxnState::from_code(get_u8(&mut buf)?)?;
        let start_ms = get_i64(&mut buf)?;
        let update_ms = get_i64(&mut buf)?;
        let mut partitions = BTreeSet::new();
        for _ in 0..get_count(&mut buf, 6)? {
            partitions.insert((get_string(&mut buf)?, get_i32(&mut buf)?));
        }
        let mut groups = BTreeSet::new();
        for _ in 0..get_count(&mut buf, 2)? {
            groups.insert(get_string(&mut buf)?);
        }
        Ok(TxnMetadata {
            transactional_id: transactional_id.to_string(),
            producer_id,
            producer_epoch,
            last_producer_epoch,
            timeout_ms,
            state,
            partitions,
            groups,
            start_ms,
            update_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> TxnMetadata {
        TxnMetadata {
            transactional_id: "tx".into(),
            producer_id: (3 << 48) | 17,
            producer_epoch: 4,
            last_producer_epoch: 3,
            timeout_ms: 60_000,
            state: TxnState::Ongoing,
            partitions: [("a".to_string(), 0), ("b".to_string(), 3)].into(),
            groups: ["g".to_string()].into(),
            start_ms: 1_700_000_000_000,
            update_ms: 1_700_000_000_500,
        }
    }

    #[test]
    fn round_trips_and_truncations_are_errors() {
        let m = meta();
        let bytes = m.encode();
        assert_eq!(TxnMetadata::decode("tx", bytes.clone()).unwrap(), m);
        for cut in 0..bytes.len() {
            assert!(
                TxnMetadata::decode("tx", bytes.slice(..cut)).is_err(),
                "cut {cut}"
            );
        }
        for s in TxnState::ALL {
            assert_eq!(TxnState::from_kafka_name(s.kafka_name()), Some(s));
        }
    }
}

#[cfg(test)]
mod coordinator_tests;

//! What the log tells idempotence and transactions: the last stable
//! offset, aborted transactions, producer state, verification guards.

use std::sync::atomic::Ordering;

use super::producer_state::{self, CompletedTxn};
use super::txn_index::AbortedTxn;
use super::{Log, lock};

impl Log {
    /// A verification token for a transactional produce, taken before the
    /// coordinator is asked (see `ProducerStateManager::add_guard`).
    pub fn txn_verification_guard(&self, producer_id: i64) -> u64 {
        lock(&self.append).producers.add_guard(producer_id)
    }

    /// Releases a token whose produce was refused before its append.
    pub fn release_txn_verification_guard(&self, producer_id: i64, token: u64) {
        lock(&self.append)
            .producers
            .remove_guard(producer_id, token);
    }

    /// The read_committed bound: the first offset of the oldest open
    /// transaction, or the high watermark when none is open.
    pub fn last_stable_offset(&self) -> i64 {
        self.last_stable_offset
            .load(Ordering::Acquire)
            .min(self.high_watermark())
    }

    /// The last stable offset by this log's own producer state, not bounded
    /// by the high watermark: on a follower, every transaction with records
    /// below it has its marker in this log.
    pub fn own_last_stable_offset(&self) -> i64 {
        self.last_stable_offset.load(Ordering::Acquire)
    }

    /// Aborted transactions overlapping `[from, upto)`, for read_committed fetches.
    pub fn aborted_txns(&self, from: i64, upto: i64) -> Vec<AbortedTxn> {
        self.txn_index.overlapping(from, upto)
    }

    /// A copy of one producer's state on this partition (DescribeProducers, tests).
    pub fn producer_entry(&self, producer_id: i64) -> Option<producer_state::ProducerEntry> {
        lock(&self.append).producers.entry(producer_id).cloned()
    }

    /// Every producer with state on this partition.
    pub fn producer_entries(&self) -> Vec<(i64, producer_state::ProducerEntry)> {
        lock(&self.append)
            .producers
            .producers()
            .map(|(p, e)| (*p, e.clone()))
            .collect()
    }
}

pub(super) fn aborted_entry(c: &CompletedTxn, last_stable_offset: i64) -> AbortedTxn {
    AbortedTxn {
        producer_id: c.producer_id,
        first_offset: c.first_offset,
        last_offset: c.last_offset,
        last_stable_offset,
    }
}

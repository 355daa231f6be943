//! Transaction state the cleaner carries while it walks a log in offset
//! order (Kafka's `CleanedTransactionMetadata`): which batches belong to
//! aborted transactions (dropped), and when a COMMIT or ABORT marker may
//! go. A marker stays while batches of its transaction were seen in this
//! pass; once none are left it becomes removable, and is then kept for
//! `delete.retention.ms` more (a delete horizon, as for tombstones) so a
//! consumer part-way through the transaction still sees it end.

use std::collections::{HashMap, HashSet};

use karnak_protocol::control::ControlType;
use karnak_protocol::record_batch::BatchHeader;

use crate::log::txn_index::AbortedTxn;

struct OngoingAbort {
    txn: AbortedTxn,
    /// A batch of this transaction was seen in this pass.
    seen_batch: bool,
}

#[derive(Default)]
pub struct CleanedTxns {
    /// Aborted transactions not reached yet, by first offset, descending
    /// (the next one is popped from the end).
    pending: Vec<AbortedTxn>,
    known: HashSet<(i64, i64)>,
    aborted: HashMap<i64, OngoingAbort>,
    committed: HashSet<i64>,
    /// Aborted transactions whose marker this pass keeps, for the cleaned
    /// segment's transaction index.
    retained: Vec<AbortedTxn>,
}

impl CleanedTxns {
    /// Adds aborted transactions (from the log's transaction index); ones
    /// already known are skipped.
    pub fn add_aborted(&mut self, txns: impl IntoIterator<Item = AbortedTxn>) {
        for t in txns {
            if self.known.insert((t.producer_id, t.first_offset)) {
                self.pending.push(t);
            }
        }
        self.pending
            .sort_unstable_by_key(|t| std::cmp::Reverse(t.first_offset));
    }

    fn reach(&mut self, offset: i64) {
        while self
            .pending
            .last()
            .is_some_and(|t| t.first_offset <= offset)
        {
            if let Some(t) = self.pending.pop() {
                self.aborted.entry(t.producer_id).or_insert(OngoingAbort {
                    txn: t,
                    seen_batch: false,
                });
            }
        }
    }

    /// A data batch: true when it belongs to an aborted transaction (its
    /// records go).
    pub fn on_batch(&mut self, h: &BatchHeader) -> bool {
        self.reach(h.last_offset());
        if !h.is_transactional() {
            return false;
        }
        match self.aborted.get_mut(&h.producer_id) {
            Some(a) => {
                a.seen_batch = true;
                true
            }
            None => {
                self.committed.insert(h.producer_id);
                false
            }
        }
    }

    /// A control batch with marker `kind` (None: not an end-transaction
    /// marker; `empty`: its record was already cleaned away): true when
    /// no data of its transaction was seen in this pass, so it may go
    /// once its delete horizon has passed.
    pub fn on_control(&mut self, h: &BatchHeader, kind: Option<ControlType>, empty: bool) -> bool {
        self.reach(h.last_offset());
        if empty {
            return true;
        }
        match kind {
            Some(ControlType::Abort) => match self.aborted.remove(&h.producer_id) {
                Some(a) if a.seen_batch => {
                    self.retained.push(a.txn);
                    false
                }
                _ => true,
            },
            Some(ControlType::Commit) => !self.committed.remove(&h.producer_id),
            None => false,
        }
    }

    /// The aborted transactions whose markers were kept since the last call.
    pub fn take_retained(&mut self) -> Vec<AbortedTxn> {
        std::mem::take(&mut self.retained)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(base: i64, pid: i64, txn: bool, control: bool) -> BatchHeader {
        let mut h = BatchHeader::parse(&crate::test_support::build_batch(0, &[b"x"])).unwrap();
        h.base_offset = base;
        h.producer_id = pid;
        h.attributes = if txn { 0x10 } else { 0 } | if control { 0x20 } else { 0 };
        h
    }

    #[test]
    fn aborted_batches_go_and_markers_wait_for_their_data() {
        let mut t = CleanedTxns::default();
        t.add_aborted([AbortedTxn {
            producer_id: 1,
            first_offset: 10,
            last_offset: 12,
            last_stable_offset: 13,
        }]);
        assert!(!t.on_batch(&header(5, 1, false, false)));
        assert!(t.on_batch(&header(10, 1, true, false)));
        assert!(!t.on_batch(&header(11, 2, true, false)));
        // Data of the abort was seen: its marker stays, indexed.
        assert!(!t.on_control(&header(12, 1, true, true), Some(ControlType::Abort), false));
        assert_eq!(t.take_retained().len(), 1);
        // The commit's data was seen too.
        assert!(!t.on_control(&header(13, 2, true, true), Some(ControlType::Commit), false));
        // A commit with nothing of its transaction left may go.
        assert!(t.on_control(&header(14, 2, true, true), Some(ControlType::Commit), false));
        assert!(t.on_control(&header(15, 3, true, true), None, true));
    }
}

//! What the admin APIs read: DescribeTransactions, ListTransactions.

use std::collections::BTreeMap;

use super::{TransactionCoordinator, TxnMetadata, TxnState};

impl TransactionCoordinator {
    /// DescribeTransactions.
    pub fn describe(&self, tid: &str) -> Option<TxnMetadata> {
        self.shard(tid).ok()?.lock().txns.get(tid).cloned()
    }

    /// ListTransactions: every transaction matching the filters (empty
    /// filters match all).
    pub fn list(&self, states: &[TxnState], producer_ids: &[i64]) -> Vec<TxnMetadata> {
        let mut out = Vec::new();
        for s in &self.shards() {
            out.extend(
                s.lock()
                    .txns
                    .values()
                    .filter(|m| states.is_empty() || states.contains(&m.state))
                    .filter(|m| producer_ids.is_empty() || producer_ids.contains(&m.producer_id))
                    .cloned(),
            );
        }
        out.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        out
    }

    /// Counts by state, for metrics and logs.
    pub fn state_counts(&self) -> BTreeMap<&'static str, usize> {
        let mut out = BTreeMap::new();
        for s in &self.shards() {
            for m in s.lock().txns.values() {
                *out.entry(m.state.kafka_name()).or_default() += 1;
            }
        }
        out
    }
}

//! A transaction's consumed offsets (TxnOffsetCommit): held in the group's
//! shard, keyed by producer id, until EndTxn settles them.

use super::TransactionCoordinator;
use crate::errors::*;
use crate::records::RecordKey;
use crate::shard::OffsetCommit;
use crate::txn::TxnState;

impl TransactionCoordinator {
    /// TxnOffsetCommit: offsets held back until the transaction ends.
    pub async fn txn_offset_commit(
        &self,
        tid: &str,
        group: &str,
        producer_id: i64,
        epoch: i16,
        offsets: Vec<OffsetCommit>,
        partition_exists: &(dyn Fn(&str, i32) -> bool + Sync),
    ) -> Vec<i16> {
        // The transaction's shard may be led by another broker: then this
        // group coordinator takes the producer's word, as Kafka's did
        // before KIP-890 verification.
        let check = match self.shard(tid) {
            Err(_) => Ok(()),
            Ok(txn_shard) => match txn_shard.lock().txns.get(tid) {
                None => Err(INVALID_PRODUCER_ID_MAPPING),
                Some(m) if m.producer_id != producer_id => Err(INVALID_PRODUCER_ID_MAPPING),
                Some(m) if m.producer_epoch != epoch => Err(INVALID_PRODUCER_EPOCH),
                Some(m) if m.state != TxnState::Ongoing || !m.groups.contains(group) => {
                    Err(INVALID_TXN_STATE)
                }
                Some(_) => Ok(()),
            },
        };
        if let Err(code) = check {
            return vec![code; offsets.len()];
        }
        let shard = match self.shard(group) {
            Ok(s) => s,
            Err(code) => return vec![code; offsets.len()],
        };
        let failed = |codes: Vec<i16>, e: crate::shard::ShardError| -> Vec<i16> {
            tracing::error!(shard = shard.id, group, error = %e, "could not persist transactional offsets");
            let failed = e.code();
            codes
                .into_iter()
                .map(|c| if c == NONE { failed } else { c })
                .collect()
        };
        let (codes, last) = {
            let mut st = shard.lock();
            let (codes, accepted) = shard.accept_offsets(offsets, partition_exists);
            let records: Vec<_> = accepted
                .iter()
                .map(|((topic, partition), stored)| {
                    (
                        RecordKey::TxnOffset {
                            group: group.to_string(),
                            producer_id,
                            topic: topic.clone(),
                            partition: *partition,
                        },
                        Some(stored.encode()),
                    )
                })
                .collect();
            if records.is_empty() {
                return codes;
            }
            let last = match shard.append(records) {
                Ok(last) => last,
                Err(e) => return failed(codes, e),
            };
            // Pending from the append on, in the log's order: they are what a
            // replay of this leader's log would find, and nobody reads them
            // before the transaction ends.
            st.txn_offsets
                .entry((group.to_string(), producer_id))
                .or_default()
                .extend(accepted);
            (codes, last)
        };
        // Durable before the answer (Kafka writes it with acks=all): a
        // transaction committed after it must find these offsets again
        // after a crash, or its records would show without its offsets.
        match shard.wait_durable(last, self.cfg.durable).await {
            Ok(()) => codes,
            Err(e) => failed(codes, e),
        }
    }

    /// At a transaction's end: the producer's offsets pending in shard
    /// `id` (any of its groups) become the groups' (commit) or are dropped;
    /// either way their pending records are tombstoned. What a marker on a
    /// shard's partition does (Kafka's markers on __consumer_offsets).
    pub async fn settle_shard_offsets(&self, id: u32, producer_id: i64, commit: bool) -> i16 {
        let shard = match self.groups.shard_by_id(id) {
            Ok(s) => s,
            Err(code) => return code,
        };
        let last = {
            let mut st = shard.lock();
            let keys: Vec<(String, i64)> = st
                .txn_offsets
                .keys()
                .filter(|(_, pid)| *pid == producer_id)
                .cloned()
                .collect();
            let mut records = Vec::new();
            for key in &keys {
                let group = &key.0;
                for ((topic, partition), o) in &st.txn_offsets[key] {
                    if commit {
                        records.push((
                            RecordKey::Offset {
                                group: group.clone(),
                                topic: topic.clone(),
                                partition: *partition,
                            },
                            Some(o.encode()),
                        ));
                    }
                    records.push((
                        RecordKey::TxnOffset {
                            group: group.clone(),
                            producer_id,
                            topic: topic.clone(),
                            partition: *partition,
                        },
                        None,
                    ));
                }
            }
            if records.is_empty() {
                return NONE;
            }
            let last = match shard.append(records) {
                Ok(last) => last,
                Err(e) => {
                    tracing::error!(shard = shard.id, producer_id, error = %e, "could not settle transactional offsets");
                    return e.code();
                }
            };
            for key in keys {
                let Some(pending) = st.txn_offsets.remove(&key) else {
                    continue;
                };
                if commit {
                    // Shown as any commit is, once durable, in the log's order
                    // with the group's other commits.
                    let group = key.0;
                    st.unflushed_offsets
                        .entry(last)
                        .or_default()
                        .extend(pending.into_iter().map(|(tp, o)| (group.clone(), tp, o)));
                }
            }
            last
        };
        // Durable before the transaction is recorded complete (that record
        // is in another shard and may reach the disk first): otherwise a
        // crash could keep the completion and lose the offsets.
        if let Err(e) = shard.wait_durable(last, self.cfg.durable).await {
            tracing::error!(shard = shard.id, producer_id, error = %e, "could not settle transactional offsets");
            return e.code();
        }
        shard.show_durable_offsets(&mut shard.lock());
        NONE
    }

    /// Whether a group has transactional offsets not yet settled on a
    /// partition (OffsetFetch with require_stable answers UNSTABLE_OFFSET_COMMIT).
    pub fn has_pending_offsets(&self, group: &str, topic: &str, partition: i32) -> bool {
        let Ok(shard) = self.shard(group) else {
            return false;
        };
        let st = shard.lock();
        let key = (topic.to_string(), partition);
        st.txn_offsets
            .iter()
            .any(|((g, _), m)| g == group && m.contains_key(&key))
    }
}

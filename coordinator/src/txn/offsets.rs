//! A transaction's consumed offsets (TxnOffsetCommit): held in the group's
//! shard, keyed by producer id, until EndTxn settles them.

use super::TransactionCoordinator;
use crate::errors::*;
use crate::group::Group;
use crate::records::RecordKey;
use crate::shard::OffsetCommit;
use crate::txn::TxnState;

impl TransactionCoordinator {
    /// TxnOffsetCommit: offsets held back until the transaction ends.
    pub fn txn_offset_commit(
        &self,
        tid: &str,
        group: &str,
        producer_id: i64,
        epoch: i16,
        offsets: Vec<OffsetCommit>,
        partition_exists: &dyn Fn(&str, i32) -> bool,
    ) -> Vec<i16> {
        let check = {
            let st = self.shard(tid).lock();
            match st.txns.get(tid) {
                None => Err(INVALID_PRODUCER_ID_MAPPING),
                Some(m) if m.producer_id != producer_id => Err(INVALID_PRODUCER_ID_MAPPING),
                Some(m) if m.producer_epoch != epoch => Err(INVALID_PRODUCER_EPOCH),
                Some(m) if m.state != TxnState::Ongoing || !m.groups.contains(group) => {
                    Err(INVALID_TXN_STATE)
                }
                Some(_) => Ok(()),
            }
        };
        if let Err(code) = check {
            return vec![code; offsets.len()];
        }
        let shard = self.shard(group);
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
        // Durable before the answer (Kafka writes it with acks=all): a
        // transaction committed after it must find these offsets again
        // after a crash, or its records would show without its offsets.
        if let Err(e) = shard.append_durable(records, self.cfg.durable) {
            tracing::error!(shard = shard.id, group, error = %e, "could not persist transactional offsets");
            return codes
                .into_iter()
                .map(|c| if c == NONE { KAFKA_STORAGE_ERROR } else { c })
                .collect();
        }
        st.txn_offsets
            .entry((group.to_string(), producer_id))
            .or_default()
            .extend(accepted);
        codes
    }

    /// At a transaction's end: its offsets become the group's (commit) or
    /// are dropped (abort); either way their pending records are tombstoned.
    pub(super) fn settle_offsets(
        &self,
        group: &str,
        producer_id: i64,
        commit: bool,
    ) -> Result<(), i16> {
        let shard = self.shard(group);
        let mut st = shard.lock();
        let Some(pending) = st.txn_offsets.remove(&(group.to_string(), producer_id)) else {
            return Ok(());
        };
        let mut records = Vec::with_capacity(pending.len() * 2);
        for ((topic, partition), o) in &pending {
            if commit {
                records.push((
                    RecordKey::Offset {
                        group: group.to_string(),
                        topic: topic.clone(),
                        partition: *partition,
                    },
                    Some(o.encode()),
                ));
            }
            records.push((
                RecordKey::TxnOffset {
                    group: group.to_string(),
                    producer_id,
                    topic: topic.clone(),
                    partition: *partition,
                },
                None,
            ));
        }
        // Durable before the transaction is recorded complete (that record
        // is in another shard and may reach the disk first): otherwise a
        // crash could keep the completion and lose the offsets.
        if let Err(e) = shard.append_durable(records, self.cfg.durable) {
            tracing::error!(shard = shard.id, group, error = %e, "could not settle transactional offsets");
            st.txn_offsets
                .insert((group.to_string(), producer_id), pending);
            return Err(KAFKA_STORAGE_ERROR);
        }
        if commit {
            let g = st
                .groups
                .entry(group.to_string())
                .or_insert_with(|| Group::new(group));
            g.offsets.extend(pending);
        }
        Ok(())
    }

    /// Whether a group has transactional offsets not yet settled on a
    /// partition (OffsetFetch with require_stable answers UNSTABLE_OFFSET_COMMIT).
    pub fn has_pending_offsets(&self, group: &str, topic: &str, partition: i32) -> bool {
        let st = self.shard(group).lock();
        let key = (topic.to_string(), partition);
        st.txn_offsets
            .iter()
            .any(|((g, _), m)| g == group && m.contains_key(&key))
    }
}

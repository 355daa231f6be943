//! The coordinator's timer work: aborting transactions past their
//! timeout, finishing prepared ones, forgetting idle transactional ids.

use std::sync::Arc;

use super::coordinator::now_ms;
use super::{TIMED_OUT_METRIC, TransactionCoordinator, TxnState};
use crate::records::RecordKey;

impl TransactionCoordinator {
    /// Aborts transactions open longer than their timeout (bumping the
    /// epoch, so the producer is fenced) and retries prepared ones whose
    /// markers could not all be written. Returns how many it finished.
    pub async fn abort_timed_out(&self, now: i64) -> usize {
        let mut expired = Vec::new();
        for s in &self.shards() {
            for m in s.lock().txns.values() {
                if m.state == TxnState::Ongoing
                    && m.start_ms >= 0
                    && now.saturating_sub(m.start_ms) > m.timeout_ms as i64
                {
                    expired.push(m.transactional_id.clone());
                }
            }
        }
        let mut done = 0;
        for tid in expired {
            match self.end(&tid, false, true).await {
                Ok(epoch) => {
                    tracing::info!(transactional_id = %tid, epoch, "aborted a transaction past its timeout");
                    metrics::counter!(TIMED_OUT_METRIC).increment(1);
                    done += 1;
                }
                Err(code) => {
                    tracing::warn!(transactional_id = %tid, code, "could not abort a timed-out transaction")
                }
            }
        }
        done + self.complete_prepared().await + self.expire_ids(now)
    }

    /// Forgets transactional ids idle past `id_expiration_ms` (a tombstone
    /// in the shard's log, so they stay forgotten after a restart).
    pub(super) fn expire_ids(&self, now: i64) -> usize {
        let mut expired = 0;
        for shard in &self.shards() {
            let mut st = shard.lock();
            let idle: Vec<String> = st
                .txns
                .values()
                .filter(|m| m.state != TxnState::Ongoing && !m.state.is_prepare())
                .filter(|m| now.saturating_sub(m.update_ms) > self.cfg.id_expiration_ms)
                // A state being written would land after the tombstone.
                .filter(|m| !st.txn_writes.contains_key(&m.transactional_id))
                .map(|m| m.transactional_id.clone())
                .collect();
            if idle.is_empty() {
                continue;
            }
            let records = idle
                .iter()
                .map(|t| (RecordKey::Txn(t.clone()), None))
                .collect();
            if let Err(e) = shard.append(records) {
                tracing::error!(shard = shard.id, error = %e, "could not expire transactional ids");
                continue;
            }
            for t in &idle {
                st.txns.remove(t);
            }
            expired += idle.len();
            tracing::info!(
                shard = shard.id,
                count = idle.len(),
                "expired idle transactional ids"
            );
        }
        expired
    }

    pub(super) async fn complete_prepared(&self) -> usize {
        let mut prepared = Vec::new();
        for s in &self.shards() {
            prepared.extend(
                s.lock()
                    .txns
                    .values()
                    .filter(|m| m.state.is_prepare())
                    .cloned(),
            );
        }
        let mut done = 0;
        for m in &prepared {
            done += self.complete(m).await.is_ok() as usize;
        }
        done
    }

    /// The timer task: aborts timed-out transactions every `interval`.
    pub async fn run_timeouts(
        self: Arc<Self>,
        interval: std::time::Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            self.abort_timed_out(now_ms()).await;
        }
    }
}

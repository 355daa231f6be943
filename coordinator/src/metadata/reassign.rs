//! Partition reassignment (KIP-455), with the rules of Kafka's KRaft
//! controller: a reassignment to target replicas T first widens the
//! replica set to T followed by the current replicas not in T (`adding` =
//! T minus current, `removing` = current minus T), so the new replicas
//! copy the log from the leader as followers do; once every adding replica
//! is in sync, the set narrows to T, the in-sync set to its members of T,
//! and a leader outside T hands over to the first in-sync replica of T.
//! Clients keep producing and fetching throughout: only the replica set
//! and, at the end, perhaps the leader change.

use std::collections::BTreeSet;

use super::MetadataReply;
use super::state::{ClusterMetadata, MetadataError, NO_LEADER, PartitionState};

type Applied = Result<MetadataReply, MetadataError>;

impl ClusterMetadata {
    /// Starts (`Some`) or cancels (`None`) the reassignment of a partition.
    pub(super) fn reassign(
        &mut self,
        topic: &str,
        partition: i32,
        target: Option<&[i32]>,
    ) -> Applied {
        if let Some(t) = target {
            // Registered brokers, fenced or not, as Kafka allows.
            self.check_replicas(t, "the target replica list")?;
        }
        let live = self.live_brokers();
        let min_isr = self.policy_of(topic).min_isr;
        let p = self.partition_mut(topic, partition)?;
        let old_leader = p.leader;
        let old_isr = p.isr.clone();
        match target {
            Some(target) => p.start_reassignment(target),
            None => p.cancel_reassignment()?,
        }
        if !p.replicas.contains(&p.leader) || (p.leader != NO_LEADER && !p.isr.contains(&p.leader))
        {
            p.leader = first_in_sync(p, &p.replicas, &live);
        }
        p.finish_reassignment(&live);
        p.track_elr(&old_isr, min_isr);
        p.bump(old_leader);
        Ok(MetadataReply::Done)
    }
}

impl PartitionState {
    /// A reassignment is under way.
    pub fn reassigning(&self) -> bool {
        !self.adding.is_empty() || !self.removing.is_empty()
    }

    /// The replicas before the reassignment under way (all of them when
    /// there is none).
    fn original(&self) -> Vec<i32> {
        self.replicas
            .iter()
            .copied()
            .filter(|r| !self.adding.contains(r))
            .collect()
    }

    fn start_reassignment(&mut self, target: &[i32]) {
        // A new target over one under way starts again from the replicas
        // the partition had before it, as Kafka does.
        let original = self.original();
        let mut replicas = target.to_vec();
        replicas.extend(original.iter().filter(|r| !target.contains(r)));
        self.adding = target
            .iter()
            .copied()
            .filter(|r| !original.contains(r))
            .collect();
        self.removing = original
            .iter()
            .copied()
            .filter(|r| !target.contains(r))
            .collect();
        self.isr.retain(|r| replicas.contains(r));
        self.replicas = replicas;
    }

    fn cancel_reassignment(&mut self) -> Result<(), MetadataError> {
        if !self.reassigning() {
            return Err(MetadataError::NoReassignment);
        }
        let original = self.original();
        let isr: Vec<i32> = self
            .isr
            .iter()
            .copied()
            .filter(|r| original.contains(r))
            .collect();
        if isr.is_empty() {
            // The set never empties: keep the reassignment until one of the
            // original replicas is in sync again.
            return Err(MetadataError::InvalidRequest(
                "no replica of the original assignment is in sync; cancel later".into(),
            ));
        }
        self.isr = isr;
        self.replicas = original;
        self.adding.clear();
        self.removing.clear();
        Ok(())
    }

    /// Completes the reassignment under way once every adding replica is
    /// in sync (and some replica of the target is). Called after every
    /// change of the in-sync set; the caller bumps the epochs.
    pub(super) fn finish_reassignment(&mut self, live: &BTreeSet<i32>) {
        if !self.reassigning() || !self.adding.iter().all(|r| self.isr.contains(r)) {
            return;
        }
        let target: Vec<i32> = self
            .replicas
            .iter()
            .copied()
            .filter(|r| !self.removing.contains(r))
            .collect();
        let isr: Vec<i32> = self
            .isr
            .iter()
            .copied()
            .filter(|r| target.contains(r))
            .collect();
        if isr.is_empty() {
            return;
        }
        self.isr = isr;
        self.replicas = target;
        self.adding.clear();
        self.removing.clear();
        if !self.isr.contains(&self.leader) {
            self.leader = first_in_sync(self, &self.replicas, live);
        }
    }
}

/// The first of `replicas` that is in sync and live: a clean leader.
fn first_in_sync(p: &PartitionState, replicas: &[i32], live: &BTreeSet<i32>) -> i32 {
    replicas
        .iter()
        .copied()
        .find(|r| p.isr.contains(r) && live.contains(r))
        .unwrap_or(NO_LEADER)
}

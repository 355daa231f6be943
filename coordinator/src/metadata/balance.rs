//! Leadership back to the preferred replicas (Kafka's
//! `auto.leader.rebalance.enable`): after a broker restarts, the partitions
//! it led stay with the replicas that took over, so one broker can end up
//! leading everything. As KRaft's controller does every
//! `leader.imbalance.check.interval.seconds`, the controller elects the
//! preferred (first) replica of every partition it does not lead, where
//! that replica is live and in sync.

use super::state::{ClusterMetadata, NO_LEADER};

/// At most this many elections per check (KRaft's cap per balancing pass),
/// so one pass never floods the metadata log.
pub const MAX_ELECTIONS_PER_CHECK: usize = 1_000;

impl ClusterMetadata {
    /// Partitions whose preferred replica could lead and does not:
    /// (topic, partition), at most [`MAX_ELECTIONS_PER_CHECK`]. A partition
    /// being reassigned is left to its reassignment.
    pub fn preferred_elections_due(&self) -> Vec<(String, i32)> {
        let live = self.live_brokers();
        let mut due = Vec::new();
        for (name, t) in &self.topics {
            for (i, p) in t.partitions.iter().enumerate() {
                let Some(&preferred) = p.replicas.first() else {
                    continue;
                };
                if p.leader != NO_LEADER
                    && p.leader != preferred
                    && p.adding.is_empty()
                    && p.removing.is_empty()
                    && p.isr.contains(&preferred)
                    && live.contains(&preferred)
                {
                    due.push((name.clone(), i as i32));
                    if due.len() == MAX_ELECTIONS_PER_CHECK {
                        return due;
                    }
                }
            }
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::{AlterPartition, ElectionKind, MetadataCommand};
    use super::*;

    fn cluster() -> ClusterMetadata {
        let mut m = ClusterMetadata::default();
        for id in 0..3 {
            m.apply(&MetadataCommand::RegisterBroker {
                id,
                incarnation: [id as u8; 16],
                listeners: vec![],
                rack: None,
                unclean_shutdown: false,
            })
            .unwrap();
            m.apply(&MetadataCommand::UnfenceBroker { id }).unwrap();
        }
        m.apply(&MetadataCommand::CreateTopic {
            name: "t".into(),
            id: [7; 16],
            configs: BTreeMap::new(),
            assignments: vec![vec![0, 1, 2], vec![1, 2, 0]],
        })
        .unwrap();
        m
    }

    fn set_isr(m: &mut ClusterMetadata, partition: i32, isr: Vec<i32>) {
        let p = m.partition("t", partition).unwrap().clone();
        m.apply(&MetadataCommand::AlterPartition(AlterPartition {
            topic: "t".into(),
            partition,
            leader: p.leader,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            isr,
        }))
        .unwrap();
    }

    #[test]
    fn a_preferred_replica_back_in_sync_is_due_and_nothing_else() {
        let mut m = cluster();
        assert!(m.preferred_elections_due().is_empty());
        // Broker 0 dies: partition 0 moves to 1.
        m.apply(&MetadataCommand::FenceBroker { id: 0 }).unwrap();
        assert_eq!(m.partition("t", 0).unwrap().leader, 1);
        assert!(m.preferred_elections_due().is_empty(), "0 is not live");
        // Back but not yet in sync: not due.
        m.apply(&MetadataCommand::UnfenceBroker { id: 0 }).unwrap();
        assert!(m.preferred_elections_due().is_empty(), "0 is not in sync");
        set_isr(&mut m, 0, vec![1, 2, 0]);
        assert_eq!(m.preferred_elections_due(), vec![("t".to_string(), 0)]);
        m.apply(&MetadataCommand::ElectLeader {
            topic: "t".into(),
            partition: 0,
            kind: ElectionKind::Preferred,
        })
        .unwrap();
        assert_eq!(m.partition("t", 0).unwrap().leader, 0);
        assert!(m.preferred_elections_due().is_empty());
    }
}

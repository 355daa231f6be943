//! Eligible leader replicas (KIP-966 part 1).
//!
//! With the strict min ISR rule the high watermark does not move while the
//! in-sync set is smaller than `min.insync.replicas`, and acks=all writes
//! are refused. So a replica that leaves the in-sync set when (or after) it
//! drops below that size holds everything below the high watermark, and so
//! every acknowledged write: it may lead without losing any. Such replicas
//! are kept in the partition's ELR; when no in-sync replica is live, the
//! first live one of them (in assignment order) leads, a clean election
//! where Kafka before 4.0 waited for the last in-sync replica to return.
//!
//! As in Kafka: the ELR is cleared once the in-sync set reaches
//! `min.insync.replicas` again, or when that setting changes; a replica
//! that restarts after an unclean shutdown (its logs may have lost what was
//! not yet fsynced) leaves the ELR for the last known ELR, which only tells
//! operators where the newest data may be. One difference, kept from the
//! rule before KIP-966: the in-sync set never empties here. Its last member
//! stays in it while fenced (Kafka moves it to the ELR and elects it again
//! as the "last known leader"), so it still leads when it is the first to
//! come back.

use std::collections::{BTreeMap, BTreeSet};

use super::command::ControllerDefaults;
use super::state::{ClusterMetadata, NO_LEADER, PartitionState};

/// The topic config and the broker config that set the in-sync minimum.
pub const MIN_INSYNC_REPLICAS: &str = "min.insync.replicas";
/// The topic config and the broker config that let an out-of-sync replica
/// lead when no in-sync or eligible one is live.
pub const UNCLEAN_LEADER_ELECTION: &str = "unclean.leader.election.enable";

/// What a partition's leader elections may do, from its topic's configs.
#[derive(Debug, Clone, Copy)]
pub(super) struct ElectionPolicy {
    pub min_isr: usize,
    pub unclean: bool,
}

/// The in-sync minimum of a topic: its own config, else the cluster-wide
/// dynamic default, else the controller's `--min-insync-replicas` as the
/// metadata recorded it. Never below 1.
pub(super) fn min_insync(
    topic_configs: &BTreeMap<String, String>,
    cluster_configs: &BTreeMap<String, String>,
    controller_default: i32,
) -> usize {
    let parse = |m: &BTreeMap<String, String>| m.get(MIN_INSYNC_REPLICAS)?.parse::<i32>().ok();
    let n = parse(topic_configs)
        .or_else(|| parse(cluster_configs))
        .unwrap_or(controller_default);
    usize::try_from(n).unwrap_or(1).max(1)
}

/// As [`min_insync`], for `unclean.leader.election.enable`.
fn unclean_allowed(
    topic_configs: &BTreeMap<String, String>,
    cluster_configs: &BTreeMap<String, String>,
    controller_default: bool,
) -> bool {
    let parse = |m: &BTreeMap<String, String>| {
        m.get(UNCLEAN_LEADER_ELECTION)?
            .trim()
            .to_ascii_lowercase()
            .parse::<bool>()
            .ok()
    };
    parse(topic_configs)
        .or_else(|| parse(cluster_configs))
        .unwrap_or(controller_default)
}

impl ElectionPolicy {
    pub(super) fn of(
        topic_configs: &BTreeMap<String, String>,
        cluster_configs: &BTreeMap<String, String>,
        m: &ControllerDefaults,
    ) -> ElectionPolicy {
        ElectionPolicy {
            min_isr: min_insync(topic_configs, cluster_configs, m.min_insync_replicas),
            unclean: unclean_allowed(topic_configs, cluster_configs, m.unclean_leader_election),
        }
    }
}

impl PartitionState {
    /// Brings the ELR up to date after the in-sync set changed from
    /// `old_isr` to the current one (Kafka's PartitionChangeBuilder rule):
    /// below the minimum, everyone who was in sync or eligible and is not
    /// in sync now is eligible.
    pub(super) fn track_elr(&mut self, old_isr: &[i32], min_isr: usize) {
        if self.isr.len() >= min_isr {
            self.clear_elr();
            return;
        }
        let candidates: BTreeSet<i32> = self.elr.iter().chain(old_isr).copied().collect();
        self.elr = self
            .replicas
            .iter()
            .copied()
            .filter(|r| candidates.contains(r) && !self.isr.contains(r))
            .collect();
        let (isr, elr, replicas) = (&self.isr, &self.elr, &self.replicas);
        self.last_known_elr
            .retain(|r| replicas.contains(r) && !isr.contains(r) && !elr.contains(r));
    }

    pub(super) fn clear_elr(&mut self) {
        self.elr.clear();
        self.last_known_elr.clear();
    }

    /// Gives a leaderless partition a leader if one may lead: a live
    /// in-sync replica, else a live eligible one, else (when the policy
    /// allows unclean elections) any live replica, which then is the whole
    /// in-sync set and leaves no one eligible. Returns whether it did; the
    /// caller bumps the epochs.
    pub(super) fn elect_if_leaderless(
        &mut self,
        live: &BTreeSet<i32>,
        policy: ElectionPolicy,
    ) -> bool {
        if self.leader != NO_LEADER {
            return false;
        }
        if let Some(r) = self
            .replicas
            .iter()
            .copied()
            .find(|r| self.isr.contains(r) && live.contains(r))
        {
            self.leader = r;
        } else if let Some(e) = self.eligible_leader(live) {
            self.lead_from_elr(e, policy.min_isr);
        } else if let Some(r) = policy
            .unclean
            .then(|| self.replicas.iter().copied().find(|r| live.contains(r)))
            .flatten()
        {
            // What the old in-sync set had and this replica lacks is gone.
            self.isr = vec![r];
            self.clear_elr();
            self.leader = r;
        } else {
            return false;
        }
        true
    }

    /// The first live eligible replica, in assignment order.
    pub(super) fn eligible_leader(&self, live: &BTreeSet<i32>) -> Option<i32> {
        self.replicas
            .iter()
            .copied()
            .find(|r| self.elr.contains(r) && live.contains(r))
    }

    /// `leader`, an eligible replica, leads and is the in-sync set; the
    /// caller bumps the epochs.
    pub(super) fn lead_from_elr(&mut self, leader: i32, min_isr: usize) {
        let old_isr = std::mem::replace(&mut self.isr, vec![leader]);
        self.leader = leader;
        self.track_elr(&old_isr, min_isr);
    }

    /// Broker `id` restarted after an unclean shutdown: it may lack what it
    /// had acknowledged to the leader, so it is no longer eligible.
    /// Returns whether anything changed.
    pub(super) fn drop_unclean(&mut self, id: i32) -> bool {
        let Some(i) = self.elr.iter().position(|r| *r == id) else {
            return false;
        };
        self.elr.remove(i);
        self.last_known_elr.push(id);
        true
    }
}

impl ClusterMetadata {
    /// The election policy of `topic` (the defaults for one that does not exist).
    pub(super) fn policy_of(&self, topic: &str) -> ElectionPolicy {
        let configs = self.topics.get(topic).map(|t| &t.configs);
        ElectionPolicy::of(
            configs.unwrap_or(&BTreeMap::new()),
            &self.default_broker_configs,
            &self.controller_defaults,
        )
    }

    /// The in-sync minimum a partition leader of `topic` enforces: as the
    /// election rules have it, or `local_default` (its own flag) where that
    /// is higher. A leader stricter than the controller is safe: an
    /// eligible replica still holds everything below its high watermark.
    pub fn min_insync_replicas(&self, topic: &str, local_default: i32) -> usize {
        let configs = self.topics.get(topic).map(|t| &t.configs);
        let fallback = self
            .controller_defaults
            .min_insync_replicas
            .max(local_default);
        min_insync(
            configs.unwrap_or(&BTreeMap::new()),
            &self.default_broker_configs,
            fallback,
        )
    }

    /// Elects a leader for every leaderless partition (of `topic`, or all)
    /// that has one it may elect: after a change that may have made one
    /// electable (a broker back, a policy changed).
    pub(super) fn elect_leaderless(&mut self, topic: Option<&str>) {
        let live = self.live_brokers();
        let (cluster, defaults) = (&self.default_broker_configs, &self.controller_defaults);
        for (name, t) in &mut self.topics {
            if topic.is_some_and(|n| n != name) {
                continue;
            }
            let policy = ElectionPolicy::of(&t.configs, cluster, defaults);
            for p in &mut t.partitions {
                if p.elect_if_leaderless(&live, policy) {
                    p.bump(NO_LEADER);
                }
            }
        }
    }

    /// A new controller's defaults: a changed minimum clears every ELR,
    /// and a policy may now elect where it could not.
    pub(super) fn set_controller_defaults(&mut self, d: &ControllerDefaults) {
        let old = std::mem::replace(&mut self.controller_defaults, d.clone());
        if old.min_insync_replicas != d.min_insync_replicas {
            self.clear_elrs(None);
        }
        self.elect_leaderless(None);
    }

    /// A changed in-sync minimum invalidates what the ELRs were built on:
    /// clear them (all topics, or one), as Kafka does.
    pub(super) fn clear_elrs(&mut self, topic: Option<&str>) {
        for (name, t) in &mut self.topics {
            if topic.is_some_and(|n| n != name) {
                continue;
            }
            for p in &mut t.partitions {
                if !p.elr.is_empty() || !p.last_known_elr.is_empty() {
                    p.clear_elr();
                    p.partition_epoch += 1;
                }
            }
        }
    }

    /// Broker `id` registered after an unclean shutdown.
    pub(super) fn drop_unclean_everywhere(&mut self, id: i32) {
        for t in self.topics.values_mut() {
            for p in &mut t.partitions {
                if p.drop_unclean(id) {
                    p.partition_epoch += 1;
                }
            }
        }
    }
}

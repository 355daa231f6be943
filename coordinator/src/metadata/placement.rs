//! Where a new partition's replicas go: Kafka's assignment, so a Kafka
//! operator finds replicas where they expect them. Leaders (first replicas)
//! go round-robin over the brokers from a random start; each partition's
//! followers follow its leader at a shift that moves once per round of
//! brokers, so a broker's followers are spread over the others. With racks,
//! the broker list alternates racks and a partition's replicas take every
//! rack before any takes a second broker from one.
//!
//! The proposer calls this and puts the result in the command, so the
//! randomness (`seed`) never reaches the state machine.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::error::ResponseError;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum PlacementError {
    #[error("replication factor {factor} is larger than the {brokers} live brokers")]
    TooFewBrokers { factor: usize, brokers: usize },
    #[error("replication factor must be at least 1")]
    NoReplicas,
    #[error("some brokers have a rack and some do not: {0:?} have none")]
    MixedRacks(Vec<i32>),
}

impl PlacementError {
    pub fn code(&self) -> ResponseError {
        ResponseError::InvalidReplicationFactor
    }
}

/// Replica lists for partitions `first_partition..first_partition + count`
/// over `brokers` (id, rack).
pub fn assign_replicas(
    brokers: &[(i32, Option<String>)],
    count: usize,
    factor: usize,
    first_partition: usize,
    seed: u64,
) -> Result<Vec<Vec<i32>>, PlacementError> {
    if factor == 0 {
        return Err(PlacementError::NoReplicas);
    }
    if factor > brokers.len() {
        return Err(PlacementError::TooFewBrokers {
            factor,
            brokers: brokers.len(),
        });
    }
    let racked = brokers.iter().filter(|b| b.1.is_some()).count();
    if racked != 0 && racked != brokers.len() {
        let none = brokers
            .iter()
            .filter(|b| b.1.is_none())
            .map(|b| b.0)
            .collect();
        return Err(PlacementError::MixedRacks(none));
    }
    let order = if racked == 0 {
        let mut ids: Vec<i32> = brokers.iter().map(|b| b.0).collect();
        ids.sort_unstable();
        ids
    } else {
        rack_alternated(brokers)
    };
    let rack_of: BTreeMap<i32, Option<&str>> =
        brokers.iter().map(|(id, r)| (*id, r.as_deref())).collect();
    let racks: BTreeSet<Option<&str>> = rack_of.values().copied().collect();
    let n = order.len();
    let start = (seed % n as u64) as usize;
    let base_shift = ((seed / n as u64) % n as u64) as usize;
    let mut out = Vec::with_capacity(count);
    for p in first_partition..first_partition + count {
        // The followers' shift moves once per round of leaders, so the
        // same partition gets the same replicas however it was created.
        let shift = base_shift + p / n;
        let first = (p + start) % n;
        let mut replicas = vec![order[first]];
        let mut used_racks = BTreeSet::from([rack_of[&order[first]]]);
        let mut k = 0;
        while replicas.len() < factor {
            let b = order[follower_index(first, shift, k, n)];
            k += 1;
            if replicas.contains(&b) {
                continue;
            }
            // In the first pass over the candidates, a rack already used
            // waits until every rack has a replica.
            let rack = rack_of[&b];
            if k < n && used_racks.len() < racks.len() && used_racks.contains(&rack) {
                continue;
            }
            used_racks.insert(rack);
            replicas.push(b);
        }
        out.push(replicas);
    }
    Ok(out)
}

/// The `k`th candidate follower of a partition led by `order[first]`.
fn follower_index(first: usize, shift: usize, k: usize, n: usize) -> usize {
    if n == 1 {
        return first;
    }
    (first + 1 + (shift + k) % (n - 1)) % n
}

/// Brokers ordered so that racks alternate: the first of each rack, then
/// the second of each, and so on (racks and brokers in sorted order).
fn rack_alternated(brokers: &[(i32, Option<String>)]) -> Vec<i32> {
    let mut by_rack: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (id, rack) in brokers {
        by_rack
            .entry(rack.as_deref().unwrap_or(""))
            .or_default()
            .push(*id);
    }
    for ids in by_rack.values_mut() {
        ids.sort_unstable();
    }
    let longest = by_rack.values().map(Vec::len).max().unwrap_or(0);
    (0..longest)
        .flat_map(|i| by_rack.values().filter_map(move |ids| ids.get(i).copied()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(n: i32) -> Vec<(i32, Option<String>)> {
        (0..n).map(|b| (b, None)).collect()
    }

    #[test]
    fn leaders_round_robin_and_followers_spread() {
        let a = assign_replicas(&plain(3), 6, 3, 0, 0).unwrap();
        for r in &a {
            let distinct: BTreeSet<i32> = r.iter().copied().collect();
            assert_eq!(distinct.len(), 3, "{r:?}");
        }
        let leaders: Vec<i32> = a.iter().map(|r| r[0]).collect();
        assert_eq!(leaders, vec![0, 1, 2, 0, 1, 2]);
        // The shift moves after a round: the second round's followers differ.
        assert_ne!(a[0][1], a[3][1]);
        // Deterministic for a seed; partitions added later continue the pattern.
        assert_eq!(a, assign_replicas(&plain(3), 6, 3, 0, 0).unwrap());
        assert_eq!(
            &a[4..],
            &assign_replicas(&plain(3), 2, 3, 4, 0).unwrap()[..]
        );
    }

    #[test]
    fn every_broker_leads_and_follows_evenly() {
        let a = assign_replicas(&plain(5), 100, 3, 0, 7).unwrap();
        let mut leads = BTreeMap::new();
        let mut holds = BTreeMap::new();
        for r in &a {
            *leads.entry(r[0]).or_insert(0) += 1;
            for b in r {
                *holds.entry(*b).or_insert(0) += 1;
            }
        }
        assert!(leads.values().all(|n| *n == 20), "{leads:?}");
        assert!(holds.values().all(|n| *n == 60), "{holds:?}");
    }

    #[test]
    fn replicas_take_every_rack_first() {
        let brokers: Vec<(i32, Option<String>)> = (0..6)
            .map(|b| (b, Some(format!("rack-{}", b % 3))))
            .collect();
        for r in assign_replicas(&brokers, 30, 3, 0, 11).unwrap() {
            let racks: BTreeSet<i32> = r.iter().map(|b| b % 3).collect();
            assert_eq!(racks.len(), 3, "{r:?} does not span the racks");
        }
        // More replicas than racks: every rack, then a second from some.
        let two_racks: Vec<(i32, Option<String>)> =
            (0..4).map(|b| (b, Some(format!("r{}", b % 2)))).collect();
        for r in assign_replicas(&two_racks, 8, 3, 0, 3).unwrap() {
            let racks: BTreeSet<i32> = r.iter().map(|b| b % 2).collect();
            assert_eq!((r.len(), racks.len()), (3, 2), "{r:?}");
        }
    }

    #[test]
    fn bad_requests_are_refused() {
        assert_eq!(
            assign_replicas(&plain(2), 1, 3, 0, 0),
            Err(PlacementError::TooFewBrokers {
                factor: 3,
                brokers: 2
            })
        );
        assert_eq!(
            assign_replicas(&plain(2), 1, 0, 0, 0),
            Err(PlacementError::NoReplicas)
        );
        let mixed = vec![(0, Some("a".to_string())), (1, None)];
        assert_eq!(
            assign_replicas(&mixed, 1, 1, 0, 0),
            Err(PlacementError::MixedRacks(vec![1]))
        );
        assert_eq!(
            assign_replicas(&plain(1), 3, 1, 0, 5).unwrap(),
            vec![vec![0]; 3]
        );
    }
}

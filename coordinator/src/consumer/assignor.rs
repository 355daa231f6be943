//! Server-side assignors for KIP-848 groups: the coordinator, not a leader
//! member, decides who consumes what. `uniform` (Kafka's default) balances
//! every topic over its subscribers and keeps partitions where they are when
//! it can, so a rebalance moves as little as possible; `range` gives each
//! subscriber a contiguous block per topic, as the classic range assignor.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{Assignment, TopicId};

pub const UNIFORM: &str = "uniform";
pub const RANGE: &str = "range";
/// The assignors a member may name in `server_assignor`; the first is the
/// default, as `group.consumer.assignors` lists it in Kafka.
pub const ASSIGNORS: [&str; 2] = [UNIFORM, RANGE];

/// One member as an assignor sees it.
pub struct Subscriber<'a> {
    pub member_id: &'a str,
    pub topics: &'a BTreeSet<TopicId>,
}

/// Computes the target assignment. `topics` maps each subscribed topic to
/// its partition count; `previous` is the last target (for stickiness).
/// Members are visited in the order given, so the result is deterministic.
pub fn assign(
    assignor: &str,
    members: &[Subscriber<'_>],
    topics: &BTreeMap<TopicId, i32>,
    previous: &HashMap<String, Assignment>,
) -> HashMap<String, Assignment> {
    let mut out: HashMap<String, Assignment> = members
        .iter()
        .map(|m| (m.member_id.to_string(), Assignment::new()))
        .collect();
    let mut load: HashMap<&str, usize> = members.iter().map(|m| (m.member_id, 0)).collect();
    for (&tid, &count) in topics {
        let count = count.max(0);
        let mut subs: Vec<&str> = members
            .iter()
            .filter(|m| m.topics.contains(&tid))
            .map(|m| m.member_id)
            .collect();
        if subs.is_empty() || count == 0 {
            continue;
        }
        subs.sort_unstable();
        let per_member = if assignor == RANGE {
            range(&subs, count)
        } else {
            uniform(&subs, count, tid, previous, &load)
        };
        for (m, parts) in per_member {
            *load.entry(m).or_default() += parts.len();
            if !parts.is_empty()
                && let Some(a) = out.get_mut(m)
            {
                a.insert(tid, parts);
            }
        }
    }
    out
}

fn range<'a>(subs: &[&'a str], count: i32) -> Vec<(&'a str, BTreeSet<i32>)> {
    let k = subs.len() as i32;
    let (base, extra) = (count / k, count % k);
    subs.iter()
        .enumerate()
        .map(|(i, m)| {
            let i = i as i32;
            let start = i * base + i.min(extra);
            let len = base + i32::from(i < extra);
            (*m, (start..start + len).collect())
        })
        .collect()
}

fn uniform<'a>(
    subs: &[&'a str],
    count: i32,
    tid: TopicId,
    previous: &HashMap<String, Assignment>,
    load: &HashMap<&str, usize>,
) -> Vec<(&'a str, BTreeSet<i32>)> {
    let k = subs.len();
    let (base, extra) = (count as usize / k, count as usize % k);
    let held = |m: &str| -> Vec<i32> {
        previous
            .get(m)
            .and_then(|a| a.get(&tid))
            .map(|s| s.iter().copied().filter(|p| *p < count).collect())
            .unwrap_or_default()
    };
    // Who gets one more than the base share: members that already held
    // more of this topic first (stickiness), then the least loaded overall.
    let mut order: Vec<&str> = subs.to_vec();
    order.sort_by_key(|m| {
        (
            std::cmp::Reverse(held(m).len()),
            load.get(m).copied().unwrap_or(0),
            *m,
        )
    });
    let quota: HashMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, m)| (*m, base + usize::from(i < extra)))
        .collect();
    let mut got: HashMap<&str, BTreeSet<i32>> =
        subs.iter().map(|m| (*m, BTreeSet::new())).collect();
    let mut taken = BTreeSet::new();
    for m in &order {
        for p in held(m) {
            let mine = got.get_mut(m).map(|s| s.len()).unwrap_or(0);
            if mine < quota[m] && taken.insert(p) {
                got.entry(m).or_default().insert(p);
            }
        }
    }
    let mut free = (0..count).filter(|p| !taken.contains(p));
    for m in &order {
        let set = got.entry(m).or_default();
        while set.len() < quota[m] {
            match free.next() {
                Some(p) => {
                    set.insert(p);
                }
                None => break,
            }
        }
    }
    order
        .into_iter()
        .map(|m| (m, got.remove(m).unwrap_or_default()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T1: TopicId = [1; 16];
    const T2: TopicId = [2; 16];

    fn run(
        assignor: &str,
        members: &[(&str, &[TopicId])],
        topics: &[(TopicId, i32)],
        prev: &HashMap<String, Assignment>,
    ) -> HashMap<String, Assignment> {
        let sets: Vec<BTreeSet<TopicId>> = members
            .iter()
            .map(|(_, t)| t.iter().copied().collect())
            .collect();
        let subs: Vec<Subscriber> = members
            .iter()
            .zip(&sets)
            .map(|((m, _), t)| Subscriber {
                member_id: m,
                topics: t,
            })
            .collect();
        assign(assignor, &subs, &topics.iter().copied().collect(), prev)
    }

    fn count(a: &HashMap<String, Assignment>, m: &str) -> usize {
        a[m].values().map(|s| s.len()).sum()
    }

    #[test]
    fn every_partition_once_and_balanced() {
        for assignor in ASSIGNORS {
            let a = run(
                assignor,
                &[("a", &[T1, T2]), ("b", &[T1, T2]), ("c", &[T1, T2])],
                &[(T1, 6), (T2, 4)],
                &HashMap::new(),
            );
            for (t, n) in [(T1, 6), (T2, 4)] {
                let mut all: Vec<i32> = a
                    .values()
                    .flat_map(|x| x.get(&t).into_iter().flatten().copied())
                    .collect();
                all.sort();
                assert_eq!(all, (0..n).collect::<Vec<_>>(), "{assignor}");
            }
            let mut counts: Vec<usize> = ["a", "b", "c"].iter().map(|m| count(&a, m)).collect();
            counts.sort();
            assert!(counts[2] - counts[0] <= 2, "{assignor}: {counts:?}");
        }
    }

    #[test]
    fn uniform_is_sticky_when_a_member_leaves() {
        let three = run(
            UNIFORM,
            &[("a", &[T1]), ("b", &[T1]), ("c", &[T1])],
            &[(T1, 6)],
            &HashMap::new(),
        );
        let two = run(UNIFORM, &[("a", &[T1]), ("b", &[T1])], &[(T1, 6)], &three);
        for m in ["a", "b"] {
            assert!(
                three[m][&T1].is_subset(&two[m][&T1]),
                "{m} kept its partitions"
            );
            assert_eq!(count(&two, m), 3);
        }
    }

    #[test]
    fn only_subscribers_get_a_topic() {
        let a = run(
            UNIFORM,
            &[("a", &[T1]), ("b", &[T2])],
            &[(T1, 3), (T2, 2)],
            &HashMap::new(),
        );
        assert_eq!(a["a"].keys().collect::<Vec<_>>(), vec![&T1]);
        assert_eq!(a["b"][&T2].len(), 2);
    }
}

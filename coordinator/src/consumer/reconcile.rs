//! Moves one member from what it has towards its target assignment, the
//! way KIP-848 reconciles: partitions leave a member before they are given
//! to another (revoke first, then assign), and a partition another member
//! still holds is withheld until that member lets it go.

use tokio::time::{Duration, Instant};

use super::{Assignment, ConsumerMember, MemberState, TopicId};

fn intersects(a: &Assignment, b: &Assignment) -> bool {
    a.iter()
        .any(|(t, ps)| b.get(t).is_some_and(|qs| !ps.is_disjoint(qs)))
}

pub fn is_subset(a: &Assignment, b: &Assignment) -> bool {
    a.iter()
        .all(|(t, ps)| ps.is_empty() || b.get(t).is_some_and(|qs| ps.is_subset(qs)))
}

pub fn normalise(a: &mut Assignment) {
    a.retain(|_, ps| !ps.is_empty());
}

/// Advances `m` given the group's target epoch and the member's target.
/// `owned` is what the member says it owns (None: unchanged since the last
/// heartbeat); `held_by_others` tells whether another member still holds a
/// partition. Returns whether the member changed.
pub fn reconcile(
    m: &mut ConsumerMember,
    target_epoch: i32,
    target: &Assignment,
    owned: Option<&Assignment>,
    held_by_others: &dyn Fn(&TopicId, i32) -> bool,
    now: Instant,
) -> bool {
    match m.state {
        MemberState::UnrevokedPartitions => {
            // Wait until the member reports it no longer owns what it must give up.
            match owned {
                Some(o) if !intersects(o, &m.revoking) => {
                    next(m, target_epoch, target, owned, held_by_others, now)
                }
                _ => false,
            }
        }
        MemberState::UnreleasedPartitions => {
            next(m, target_epoch, target, owned, held_by_others, now)
        }
        MemberState::Stable if m.epoch != target_epoch => {
            next(m, target_epoch, target, owned, held_by_others, now)
        }
        MemberState::Stable => false,
    }
}

fn next(
    m: &mut ConsumerMember,
    target_epoch: i32,
    target: &Assignment,
    owned: Option<&Assignment>,
    held_by_others: &dyn Fn(&TopicId, i32) -> bool,
    now: Instant,
) -> bool {
    let mut keep = Assignment::new();
    let mut revoke = Assignment::new();
    let mut add = Assignment::new();
    let mut unreleased = false;
    let topics: std::collections::BTreeSet<TopicId> =
        m.assigned.keys().chain(target.keys()).copied().collect();
    for t in topics {
        let empty = Default::default();
        let cur = m.assigned.get(&t).unwrap_or(&empty);
        let tgt = target.get(&t).unwrap_or(&empty);
        keep.insert(t, cur.intersection(tgt).copied().collect());
        revoke.insert(t, cur.difference(tgt).copied().collect());
        let mut a = std::collections::BTreeSet::new();
        for &p in tgt.difference(cur) {
            if held_by_others(&t, p) {
                unreleased = true;
            } else {
                a.insert(p);
            }
        }
        add.insert(t, a);
    }
    normalise(&mut keep);
    normalise(&mut revoke);
    normalise(&mut add);
    let before = (m.epoch, m.state, m.assigned.clone(), m.revoking.clone());
    // A member that already dropped the partitions (it said so) skips the
    // revocation round trip.
    let must_revoke = !revoke.is_empty() && owned.is_none_or(|o| intersects(o, &revoke));
    if must_revoke {
        m.state = MemberState::UnrevokedPartitions;
        m.assigned = keep;
        m.revoking = revoke;
        m.revoke_deadline = Some(now + Duration::from_millis(m.rebalance_timeout_ms.max(0) as u64));
    } else {
        if m.epoch != target_epoch {
            m.previous_epoch = m.epoch;
            m.epoch = target_epoch;
        }
        for (t, ps) in add {
            keep.entry(t).or_default().extend(ps);
        }
        m.assigned = keep;
        m.revoking = Assignment::new();
        m.revoke_deadline = None;
        m.state = if unreleased {
            MemberState::UnreleasedPartitions
        } else {
            MemberState::Stable
        };
    }
    before != (m.epoch, m.state, m.assigned.clone(), m.revoking.clone())
}

//! The KIP-848 state machine driven directly: joins, revoke-before-assign,
//! epoch fencing, static members and timeouts.

use std::collections::HashMap;

use tokio::time::{Duration, Instant};

use super::*;
use crate::errors::*;
use crate::group::GroupConfig;

const T: TopicId = [9; 16];

struct Topics(HashMap<String, (TopicId, i32)>);

impl TopicView for Topics {
    fn lookup(&self, name: &str) -> Option<(TopicId, i32)> {
        self.0.get(name).copied()
    }
    fn name_of(&self, id: &TopicId) -> Option<String> {
        self.0
            .iter()
            .find(|(_, v)| v.0 == *id)
            .map(|(k, _)| k.clone())
    }
    fn names(&self) -> Vec<String> {
        self.0.keys().cloned().collect()
    }
}

fn topics() -> Topics {
    Topics([("t".to_string(), (T, 6)), ("u".to_string(), ([8; 16], 2))].into())
}

fn join(id: &str) -> ConsumerHeartbeat {
    ConsumerHeartbeat {
        version: 1,
        group_id: "g".into(),
        member_id: id.into(),
        member_epoch: 0,
        rebalance_timeout_ms: 30_000,
        subscribed_topic_names: Some(vec!["t".into()]),
        owned: Some(Assignment::new()),
        client_id: "c".into(),
        ..Default::default()
    }
}

fn beat(id: &str, epoch: i32, owned: Option<&Assignment>) -> ConsumerHeartbeat {
    ConsumerHeartbeat {
        version: 1,
        group_id: "g".into(),
        member_id: id.into(),
        member_epoch: epoch,
        rebalance_timeout_ms: -1,
        owned: owned.cloned(),
        ..Default::default()
    }
}

fn run(g: &mut ConsumerGroup, req: &ConsumerHeartbeat, now: Instant) -> HeartbeatOutcome {
    let cfg = GroupConfig::default();
    g.heartbeat(req, &cfg, now, &topics(), &mut || Ok("minted".to_string()))
}

fn parts(a: &Assignment) -> usize {
    a.values().map(|s| s.len()).sum()
}

#[test]
fn two_members_split_six_partitions_revoking_before_assigning() {
    let now = Instant::now();
    let mut g = ConsumerGroup::new();
    let a = run(&mut g, &join("a"), now);
    assert_eq!(a.error, NONE, "{a:?}");
    let a_owned = a.assignment.clone().unwrap();
    assert_eq!(parts(&a_owned), 6);
    assert_eq!(g.state_name(), "Stable");

    let b = run(&mut g, &join("b"), now);
    assert_eq!(b.error, NONE);
    // a still holds all six: b gets nothing until a lets go.
    assert_eq!(parts(b.assignment.as_ref().unwrap()), 0);
    assert_eq!(g.state_name(), "Reconciling");

    // a's heartbeat: asked to revoke three, epoch unchanged.
    let r = run(&mut g, &beat("a", a.member_epoch, None), now);
    assert_eq!(r.member_epoch, a.member_epoch);
    let kept = r.assignment.clone().unwrap();
    assert_eq!(parts(&kept), 3);
    // Still owning them (null owned list): nothing moves.
    let r2 = run(&mut g, &beat("a", a.member_epoch, None), now);
    assert_eq!(r2.member_epoch, a.member_epoch);
    assert!(r2.assignment.is_none());
    // a acks with what it now owns: it moves to the new epoch.
    let r3 = run(&mut g, &beat("a", a.member_epoch, Some(&kept)), now);
    assert_eq!(r3.member_epoch, g.assignment_epoch);
    // b picks up the released three.
    let rb = run(
        &mut g,
        &beat("b", b.member_epoch, Some(&Assignment::new())),
        now,
    );
    let b_parts = rb.assignment.unwrap();
    assert_eq!(parts(&b_parts), 3);
    assert!(b_parts[&T].is_disjoint(&kept[&T]));
    assert_eq!(g.state_name(), "Stable");
}

#[test]
fn epochs_are_fenced_as_kafka_fences_them() {
    let now = Instant::now();
    let mut g = ConsumerGroup::new();
    let a = run(&mut g, &join("a"), now);
    let e = a.member_epoch;
    assert_eq!(
        run(&mut g, &beat("a", e + 1, None), now).error,
        FENCED_MEMBER_EPOCH
    );
    assert_eq!(
        run(&mut g, &beat("a", e - 1, None), now).error,
        FENCED_MEMBER_EPOCH
    );
    assert_eq!(
        run(&mut g, &beat("zz", e, None), now).error,
        UNKNOWN_MEMBER_ID
    );
    // The previous epoch with a subset of the assignment is a lost answer: accepted.
    run(&mut g, &join("b"), now);
    let owned = a.assignment.clone().unwrap();
    let r = run(&mut g, &beat("a", e, Some(&owned)), now);
    assert_eq!(r.error, NONE);
    let kept = r.assignment.unwrap();
    let r = run(&mut g, &beat("a", e, Some(&kept)), now);
    assert!(r.member_epoch > e);
    let r = run(&mut g, &beat("a", e, Some(&kept)), now);
    assert_eq!(r.error, NONE, "previous epoch + subset is accepted");
    assert_eq!(
        run(&mut g, &beat("a", e, Some(&owned)), now).error,
        FENCED_MEMBER_EPOCH
    );
}

#[test]
fn leaving_frees_partitions_and_a_session_timeout_fences() {
    let now = Instant::now();
    let cfg = GroupConfig::default();
    let mut g = ConsumerGroup::new();
    run(&mut g, &join("a"), now);
    run(&mut g, &join("b"), now);
    let leave = ConsumerHeartbeat {
        member_epoch: LEAVE_EPOCH,
        ..beat("b", 0, None)
    };
    let r = run(&mut g, &leave, now);
    assert_eq!((r.error, r.member_epoch), (NONE, LEAVE_EPOCH));
    assert_eq!(g.members.len(), 1);
    let a = g.members["a"].epoch;
    let r = run(&mut g, &beat("a", a, None), now);
    assert_eq!(r.member_epoch, g.assignment_epoch);
    assert_eq!(parts(&g.members["a"].assigned), 6);
    assert_eq!(g.state_name(), "Stable");

    let later = now + Duration::from_millis(cfg.consumer_session_timeout_ms as u64 + 1);
    assert!(g.next_deadline().is_some_and(|d| d <= later));
    g.on_timer(later);
    assert!(g.members.is_empty());
    assert_eq!(g.state_name(), "Empty");
}

#[test]
fn a_static_member_comes_back_to_its_partitions() {
    let now = Instant::now();
    let mut g = ConsumerGroup::new();
    let static_join = |id: &str| ConsumerHeartbeat {
        instance_id: Some("inst".into()),
        ..join(id)
    };
    let a = run(&mut g, &static_join("a1"), now);
    run(&mut g, &join("b"), now);
    let kept = run(&mut g, &beat("a1", a.member_epoch, None), now)
        .assignment
        .unwrap();
    run(&mut g, &beat("a1", a.member_epoch, Some(&kept)), now);
    let epoch = g.epoch;
    // Another process claiming the instance while a1 is live is refused.
    assert_eq!(
        run(&mut g, &static_join("a2"), now).error,
        UNRELEASED_INSTANCE_ID
    );
    let leave = ConsumerHeartbeat {
        member_epoch: STATIC_LEAVE_EPOCH,
        instance_id: Some("inst".into()),
        ..beat("a1", 0, None)
    };
    assert_eq!(run(&mut g, &leave, now).member_epoch, STATIC_LEAVE_EPOCH);
    let back = run(&mut g, &static_join("a2"), now);
    assert_eq!(back.error, NONE);
    assert_eq!(
        back.assignment.unwrap(),
        kept,
        "same partitions, no rebalance"
    );
    assert_eq!(g.epoch, epoch, "group epoch unchanged");
    assert!(!g.members.contains_key("a1"));
}

#[test]
fn bad_requests_get_kafkas_errors() {
    let mut r = join("a");
    r.server_assignor = Some("sticky-ish".into());
    assert_eq!(
        heartbeat::validate(&r).unwrap_err().error,
        UNSUPPORTED_ASSIGNOR
    );
    let mut r = join("a");
    r.subscribed_topic_regex = Some("(unclosed".into());
    assert_eq!(
        heartbeat::validate(&r).unwrap_err().error,
        INVALID_REGULAR_EXPRESSION
    );
    let mut r = join("");
    assert_eq!(heartbeat::validate(&r).unwrap_err().error, INVALID_REQUEST);
    r.version = 0;
    assert!(
        heartbeat::validate(&r).is_ok(),
        "v0 joins may let the server pick the id"
    );
    let mut r = join("a");
    r.owned = Some([(T, [1].into_iter().collect())].into());
    assert_eq!(heartbeat::validate(&r).unwrap_err().error, INVALID_REQUEST);
    let mut r = join("a");
    r.subscribed_topic_names = None;
    assert_eq!(heartbeat::validate(&r).unwrap_err().error, INVALID_REQUEST);
    let r = beat("a", -3, None);
    assert_eq!(heartbeat::validate(&r).unwrap_err().error, INVALID_REQUEST);
    let r = ConsumerHeartbeat {
        member_epoch: STATIC_LEAVE_EPOCH,
        ..beat("a", 0, None)
    };
    assert_eq!(heartbeat::validate(&r).unwrap_err().error, INVALID_REQUEST);
}

#[test]
fn a_regex_subscription_follows_new_topics() {
    let now = Instant::now();
    let mut g = ConsumerGroup::new();
    let mut j = join("a");
    j.subscribed_topic_names = Some(vec![]);
    j.subscribed_topic_regex = Some("t|u".into());
    let r = run(&mut g, &j, now);
    assert_eq!(parts(r.assignment.as_ref().unwrap()), 8);
    assert_eq!(g.subscribed_topics().len(), 2);
}

//! Eligible leader replicas (KIP-966) and unclean elections, as commands
//! applied to the metadata state.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;

use super::reassign_tests::in_sync as alter;
use super::tests::{register, state, three};
use super::*;

/// Brokers 0-2 up, topic `t` with one partition on [0, 1, 2], led by 0.
fn topic(configs: &[(&str, &str)]) -> ClusterMetadata {
    let mut m = three();
    m.apply(&MetadataCommand::CreateTopic {
        name: "t".into(),
        id: [9; 16],
        configs: configs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        assignments: vec![vec![0, 1, 2]],
    })
    .unwrap();
    m
}

fn elr(m: &ClusterMetadata) -> (Vec<i32>, Vec<i32>) {
    let p = m.partition("t", 0).unwrap();
    (p.elr.clone(), p.last_known_elr.clone())
}

fn fence(m: &mut ClusterMetadata, id: i32) {
    m.apply(&MetadataCommand::FenceBroker { id }).unwrap();
}

fn unfence(m: &mut ClusterMetadata, id: i32) {
    m.apply(&MetadataCommand::UnfenceBroker { id }).unwrap();
}

#[test]
fn replicas_leaving_a_set_below_the_minimum_become_eligible_until_it_is_big_enough() {
    let mut m = topic(&[("min.insync.replicas", "2")]);
    alter(&mut m, vec![0, 1]);
    assert_eq!(elr(&m), (vec![], vec![]), "2 in sync is enough");
    alter(&mut m, vec![0]);
    assert_eq!(elr(&m), (vec![1], vec![]));
    // 2 was not in sync when the set fell below the minimum: never eligible.
    assert_eq!(state(&m, "t", 0).3, vec![0]);
    alter(&mut m, vec![0, 2]);
    assert_eq!(elr(&m), (vec![], vec![]), "big enough again: cleared");
}

#[test]
fn a_lost_leader_with_no_live_in_sync_replica_hands_over_to_an_eligible_one() {
    let mut m = topic(&[("min.insync.replicas", "2")]);
    fence(&mut m, 2);
    assert_eq!(state(&m, "t", 0).3, vec![0, 1]);
    alter(&mut m, vec![0]); // 1 lags
    assert_eq!(elr(&m).0, vec![1]);
    let (_, epoch, _, _) = state(&m, "t", 0);
    fence(&mut m, 0);
    let (leader, new_epoch, _, isr) = state(&m, "t", 0);
    assert_eq!((leader, isr), (1, vec![1]));
    assert_eq!(new_epoch, epoch + 1);
    // 0 was the last in sync: it holds the high watermark too.
    assert_eq!(elr(&m).0, vec![0]);
}

#[test]
fn a_leaderless_partition_is_led_by_the_first_eligible_replica_to_come_back() {
    let mut m = topic(&[("min.insync.replicas", "2")]);
    fence(&mut m, 2);
    fence(&mut m, 1);
    assert_eq!(elr(&m).0, vec![1]);
    fence(&mut m, 0);
    // Without ELR the partition would wait for 0, its last in-sync replica.
    assert_eq!(state(&m, "t", 0).0, NO_LEADER);
    assert_eq!(state(&m, "t", 0).3, vec![0]);
    unfence(&mut m, 2);
    assert_eq!(state(&m, "t", 0).0, NO_LEADER, "2 was never eligible");
    unfence(&mut m, 1);
    assert_eq!((state(&m, "t", 0).0, state(&m, "t", 0).3), (1, vec![1]));
    assert_eq!(elr(&m).0, vec![0]);
    // 0 back and caught up: the set is big enough, no one needs to be eligible.
    unfence(&mut m, 0);
    alter(&mut m, vec![1, 0]);
    assert_eq!(elr(&m), (vec![], vec![]));
}

#[test]
fn a_broker_back_from_an_unclean_shutdown_is_no_longer_eligible() {
    let mut m = topic(&[("min.insync.replicas", "2")]);
    fence(&mut m, 2);
    fence(&mut m, 1);
    fence(&mut m, 0);
    assert_eq!(elr(&m).0, vec![1]);
    // A clean restart keeps it eligible; a crash may have lost what it held.
    m.apply(&MetadataCommand::RegisterBroker {
        id: 1,
        incarnation: [7; 16],
        listeners: vec![],
        rack: None,
        unclean_shutdown: true,
    })
    .unwrap();
    assert_eq!(elr(&m), (vec![], vec![1]));
    unfence(&mut m, 1);
    assert_eq!(state(&m, "t", 0).0, NO_LEADER);
    // Its last in-sync replica still leads when it comes back.
    register(&mut m, 0, 7);
    unfence(&mut m, 0);
    assert_eq!((state(&m, "t", 0).0, state(&m, "t", 0).3), (0, vec![0]));
}

#[test]
fn changing_the_minimum_clears_what_it_decided() {
    let mut m = topic(&[("min.insync.replicas", "2")]);
    alter(&mut m, vec![0]);
    assert_eq!(elr(&m).0, vec![1, 2]);
    let epoch = state(&m, "t", 0).2;
    m.apply(&MetadataCommand::AlterConfigs {
        resource: ConfigResource::Topic("t".into()),
        changes: BTreeMap::from([("min.insync.replicas".into(), Some("3".into()))]),
    })
    .unwrap();
    assert_eq!(elr(&m), (vec![], vec![]));
    assert_eq!(state(&m, "t", 0).2, epoch + 1);
}

#[test]
fn the_controller_default_minimum_applies_to_topics_without_their_own() {
    let mut m = topic(&[]);
    alter(&mut m, vec![0]);
    assert_eq!(elr(&m).0, Vec::<i32>::new(), "minimum 1: nothing to keep");
    m.apply(&MetadataCommand::SetControllerDefaults(
        ControllerDefaults {
            min_insync_replicas: 2,
            unclean_leader_election: false,
        },
    ))
    .unwrap();
    unfence(&mut m, 1);
    alter(&mut m, vec![0, 1]);
    alter(&mut m, vec![0]);
    assert_eq!(elr(&m).0, vec![1]);
    assert_eq!(m.min_insync_replicas("t", 1), 2);
    assert_eq!(
        m.min_insync_replicas("t", 3),
        3,
        "a stricter leader flag wins"
    );
    let refused = m.apply(&MetadataCommand::SetControllerDefaults(
        ControllerDefaults {
            min_insync_replicas: 0,
            unclean_leader_election: false,
        },
    ));
    assert_eq!(refused.unwrap_err().code(), ResponseError::InvalidRequest);
}

#[test]
fn unclean_elections_happen_only_where_the_policy_allows_them() {
    let mut m = topic(&[]);
    alter(&mut m, vec![0]); // minimum 1: no one eligible
    fence(&mut m, 0);
    assert_eq!(state(&m, "t", 0).0, NO_LEADER, "off by default");
    // Turned on for the topic: a live replica leads at once, alone in sync.
    m.apply(&MetadataCommand::AlterConfigs {
        resource: ConfigResource::Topic("t".into()),
        changes: BTreeMap::from([(UNCLEAN_LEADER_ELECTION.into(), Some("true".into()))]),
    })
    .unwrap();
    assert_eq!((state(&m, "t", 0).0, state(&m, "t", 0).3), (1, vec![1]));

    // The controller's flag does the same for topics without the config,
    // when the leader is lost.
    let mut m = topic(&[]);
    m.apply(&MetadataCommand::SetControllerDefaults(
        ControllerDefaults {
            min_insync_replicas: 1,
            unclean_leader_election: true,
        },
    ))
    .unwrap();
    alter(&mut m, vec![0]);
    fence(&mut m, 0);
    assert_eq!((state(&m, "t", 0).0, state(&m, "t", 0).3), (1, vec![1]));
}

#[test]
fn an_unclean_election_request_prefers_an_eligible_replica() {
    let mut m = topic(&[("min.insync.replicas", "3")]);
    fence(&mut m, 1);
    fence(&mut m, 2);
    // ISR {0}; 1 and 2 left below the minimum: both eligible, both down.
    assert_eq!(elr(&m).0, vec![1, 2]);
    fence(&mut m, 0);
    register(&mut m, 1, 8);
    m.apply(&MetadataCommand::RegisterBroker {
        id: 2,
        incarnation: [8; 16],
        listeners: vec![],
        rack: None,
        unclean_shutdown: true,
    })
    .unwrap();
    assert_eq!(elr(&m), (vec![1], vec![2]));
    unfence(&mut m, 2);
    assert_eq!(state(&m, "t", 0).0, NO_LEADER);
    let elect = MetadataCommand::ElectLeader {
        topic: "t".into(),
        partition: 0,
        kind: ElectionKind::Unclean,
    };
    // Only 2 is live, and it is not eligible: the unclean choice, after
    // which no one is eligible (what it lacks is gone).
    let mut unclean = m.clone();
    unclean.apply(&elect).unwrap();
    assert_eq!(
        (state(&unclean, "t", 0).0, state(&unclean, "t", 0).3),
        (2, vec![2])
    );
    assert_eq!(
        unclean
            .partition("t", 0)
            .map(|p| p.elr.is_empty() && p.last_known_elr.is_empty()),
        Some(true)
    );
    unfence(&mut m, 1);
    // 1 came back and led at once (eligible), so there is nothing to elect.
    assert_eq!(state(&m, "t", 0).0, 1);
    assert_eq!(
        m.apply(&elect).unwrap_err().code(),
        ResponseError::ElectionNotNeeded
    );
}

#[test]
fn state_from_before_elr_still_loads() {
    let mut m = topic(&[]);
    m.controller_defaults = ControllerDefaults::default();
    let mut json: serde_json::Value = serde_json::to_value(&m).unwrap();
    json.as_object_mut().unwrap().remove("controller_defaults");
    let back: ClusterMetadata = serde_json::from_value(json).unwrap();
    assert_eq!(back, m);
    let old_register = r#"{"RegisterBroker":{"id":4,"incarnation":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1],"listeners":[],"rack":null}}"#;
    let cmd: MetadataCommand = serde_json::from_str(old_register).unwrap();
    assert!(matches!(
        cmd,
        MetadataCommand::RegisterBroker {
            unclean_shutdown: false,
            ..
        }
    ));
}

use super::*;
use crate::metadata::{ClusterMetadata, MetadataCommand, MetadataReply};

use AclOperation::*;
use AclPermission::*;
use PatternType::*;
use ResourceType::*;

fn acl(
    rt: ResourceType,
    pt: PatternType,
    name: &str,
    principal: &str,
    op: AclOperation,
    perm: AclPermission,
) -> AclBinding {
    AclBinding {
        resource_type: rt,
        pattern_type: pt,
        resource_name: name.into(),
        entry: AclEntry {
            principal: principal.into(),
            host: "*".into(),
            operation: op,
            permission: perm,
        },
    }
}

fn store(bindings: &[AclBinding]) -> AclStore {
    AclStore::from(bindings.to_vec())
}

const ALICE: Requester<'static> = Requester {
    principal: "User:alice",
    host: "10.0.0.1",
};
const BOB: Requester<'static> = Requester {
    principal: "User:bob",
    host: "10.0.0.2",
};

#[test]
fn literal_allow_and_implied_describe() {
    let s = store(&[acl(Topic, Literal, "orders", "User:alice", Read, Allow)]);
    assert!(s.authorize(ALICE, Read, Topic, "orders", false));
    assert!(s.authorize(ALICE, Describe, Topic, "orders", false));
    assert!(!s.authorize(ALICE, Write, Topic, "orders", false));
    assert!(!s.authorize(BOB, Read, Topic, "orders", false));
    // No ACL on the resource: the default decides.
    assert!(!s.authorize(ALICE, Read, Topic, "payments", false));
    assert!(s.authorize(ALICE, Read, Topic, "payments", true));
    // An ACL exists, so allow.everyone.if.no.acl.found does not apply.
    assert!(!s.authorize(BOB, Read, Topic, "orders", true));
}

#[test]
fn deny_wins_and_denies_only_its_operation() {
    let s = store(&[
        acl(Topic, Literal, "*", "User:*", All, Allow),
        acl(Topic, Prefixed, "secret-", "User:bob", Read, Deny),
    ]);
    assert!(s.authorize(BOB, Read, Topic, "orders", false));
    assert!(!s.authorize(BOB, Read, Topic, "secret-plans", false));
    // DENY READ leaves DESCRIBE to the ALLOW ALL.
    assert!(s.authorize(BOB, Describe, Topic, "secret-plans", false));
    assert!(s.authorize(ALICE, Read, Topic, "secret-plans", false));
    let all = store(&[
        acl(Group, Literal, "g", "User:alice", Read, Allow),
        acl(Group, Literal, "g", "User:alice", All, Deny),
    ]);
    assert!(!all.authorize(ALICE, Read, Group, "g", false));
}

#[test]
fn hosts_and_principal_wildcard() {
    let mut b = acl(Cluster, Literal, CLUSTER_NAME, "User:*", Create, Allow);
    b.entry.host = "10.0.0.1".into();
    let s = store(&[b]);
    assert!(s.authorize(ALICE, Create, Cluster, CLUSTER_NAME, false));
    assert!(!s.authorize(BOB, Create, Cluster, CLUSTER_NAME, false));
    let group = Requester {
        principal: "Group:ops",
        host: "10.0.0.1",
    };
    assert!(!s.authorize(group, Create, Cluster, CLUSTER_NAME, false));
}

#[test]
fn describe_configs_implied_by_alter_configs() {
    let s = store(&[acl(Topic, Literal, "t", "User:alice", AlterConfigs, Allow)]);
    assert!(s.authorize(ALICE, DescribeConfigs, Topic, "t", false));
    assert!(!s.authorize(ALICE, Describe, Topic, "t", false));
}

#[test]
fn prefixes_found_among_many_keys() {
    let names = [
        "a",
        "ab",
        "abc-",
        "abd",
        "abz",
        "b",
        "or",
        "ord",
        "orders",
        "orders-eu",
        "ordx",
        "é",
        "éa",
    ];
    let s = store(
        &names
            .iter()
            .map(|n| acl(Topic, Prefixed, n, "User:alice", Read, Allow))
            .collect::<Vec<_>>(),
    );
    let found = |name: &str| -> Vec<String> {
        let mut v: Vec<String> = s
            .index
            .get(&(Topic, Prefixed))
            .map(|names| {
                names
                    .iter()
                    .filter(|(_, e)| {
                        prefixes_of(names, name)
                            .iter()
                            .any(|p| std::ptr::eq(*p, *e))
                    })
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    assert_eq!(found("orders-eu-1"), ["or", "ord", "orders", "orders-eu"]);
    assert_eq!(found("abd"), ["a", "ab", "abd"]);
    assert_eq!(found("abc"), ["a", "ab"]);
    assert_eq!(found("éab"), ["é", "éa"]);
    assert!(found("zzz").is_empty());
    // Brute force against every name made of the keys' letters.
    let letters = ['a', 'b', 'c', 'd', 'o', 'r', 'é', '-'];
    for x in letters {
        for y in letters {
            for z in letters {
                let name: String = [x, y, z].iter().collect();
                let mut want: Vec<String> = names
                    .iter()
                    .filter(|n| name.starts_with(**n))
                    .map(|n| n.to_string())
                    .collect();
                want.sort();
                assert_eq!(found(&name), want, "{name}");
            }
        }
    }
}

#[test]
fn filters_match_as_kafka_does() {
    let lit = acl(Topic, Literal, "orders", "User:alice", Read, Allow);
    let wild = acl(Topic, Literal, "*", "User:alice", Read, Allow);
    let pre = acl(Topic, Prefixed, "ord", "User:alice", Read, Allow);
    let other = acl(Group, Literal, "orders", "User:bob", Write, Deny);
    let s = store(&[lit.clone(), wild.clone(), pre.clone(), other.clone()]);
    let mut f = AclFilter::any();
    assert_eq!(s.matching(&f).len(), 4);
    f.pattern = PatternFilter::Match;
    f.resource_name = Some("orders".into());
    f.resource_type = Some(Topic);
    let mut m = s.matching(&f);
    m.sort();
    let mut want = vec![lit.clone(), wild, pre.clone()];
    want.sort();
    assert_eq!(m, want);
    f.pattern = PatternFilter::Exactly(Prefixed);
    f.resource_name = None;
    assert_eq!(s.matching(&f), vec![pre]);
    let by_principal = AclFilter {
        principal: Some("User:bob".into()),
        ..AclFilter::any()
    };
    assert_eq!(s.matching(&by_principal), vec![other]);
}

#[test]
fn wire_validation() {
    let ok = AclBinding::from_wire(2, "t", 3, "User:a", "*", 3, 3).unwrap();
    assert_eq!(ok, acl(Topic, Literal, "t", "User:a", Read, Allow));
    use AclError as E;
    let cases = [
        (
            AclBinding::from_wire(1, "t", 3, "User:a", "*", 3, 3),
            "resource type",
        ),
        (
            AclBinding::from_wire(2, "t", 2, "User:a", "*", 3, 3),
            "pattern",
        ),
        (
            AclBinding::from_wire(2, "t", 3, "User:a", "*", 1, 3),
            "operation",
        ),
        (
            AclBinding::from_wire(2, "t", 3, "User:a", "*", 3, 0),
            "permission",
        ),
    ];
    for (r, what) in cases {
        assert!(matches!(r, Err(E::BadCode(..))), "{what}: {r:?}");
    }
    assert_eq!(
        AclBinding::from_wire(2, "", 3, "User:a", "*", 3, 3),
        Err(E::EmptyName)
    );
    assert_eq!(
        AclBinding::from_wire(4, "x", 3, "User:a", "*", 7, 3),
        Err(E::ClusterName)
    );
    // Kafka takes PREFIXED "*" as the prefix "*", not the wildcard.
    assert!(AclBinding::from_wire(2, "*", 4, "User:a", "*", 3, 3).is_ok());
    assert!(matches!(
        AclBinding::from_wire(2, "t", 3, "alice", "*", 3, 3),
        Err(E::Principal(_))
    ));
    assert!(AclFilter::from_wire(0, None, 1, None, None, 1, 1).is_err());
    assert!(AclFilter::from_wire(1, None, 1, None, None, 1, 1).is_ok());
}

#[test]
fn by_resource_type() {
    let s = store(&[
        acl(Topic, Prefixed, "a", "User:alice", Write, Allow),
        acl(Topic, Literal, "b", "User:bob", Write, Allow),
        acl(Topic, Literal, "b", "User:bob", Write, Deny),
    ]);
    assert!(s.authorize_any(ALICE, Write, Topic, false));
    assert!(!s.authorize_any(BOB, Write, Topic, false));
    assert!(!s.authorize_any(ALICE, Read, Topic, false));
    let denied = store(&[
        acl(Topic, Prefixed, "ab", "User:alice", Write, Allow),
        acl(Topic, Prefixed, "a", "User:alice", Write, Deny),
    ]);
    assert!(!denied.authorize_any(ALICE, Write, Topic, false));
    assert!(store(&[]).authorize_any(ALICE, Write, Topic, true));
}

#[test]
fn replicated_through_commands_and_snapshots() {
    let mut m = ClusterMetadata::default();
    let a = acl(Topic, Literal, "t", "User:alice", Read, Allow);
    let b = acl(Group, Prefixed, "g", "User:bob", Read, Allow);
    m.apply(&MetadataCommand::CreateAcls {
        bindings: vec![a.clone(), b.clone(), a.clone()],
    })
    .unwrap();
    assert_eq!(m.acls.len(), 2);
    let json = serde_json::to_string(&m).unwrap();
    let back: ClusterMetadata = serde_json::from_str(&json).unwrap();
    assert_eq!(back, m);
    let reply = m
        .apply(&MetadataCommand::DeleteAcls {
            filters: vec![
                AclFilter {
                    resource_type: Some(Topic),
                    ..AclFilter::any()
                },
                AclFilter::any(),
            ],
        })
        .unwrap();
    // The second filter matches `a` too: both answer it.
    assert_eq!(
        reply,
        MetadataReply::AclsDeleted(vec![vec![a.clone()], vec![a, b]])
    );
    assert!(m.acls.is_empty());
}

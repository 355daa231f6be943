use std::collections::BTreeMap;

use bytes::Bytes;
use karnak_storage::test_support::build_batch;
use karnak_storage::{LogConfig, LogManager, StorageError};

fn cfg(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn create_list_delete_reopen() {
    let d = tempfile::tempdir().unwrap();
    let m = LogManager::open(d.path(), LogConfig::default()).unwrap();
    let a = m
        .create_topic("orders", 3, cfg(&[("retention.ms", "1000")]))
        .unwrap();
    assert_eq!(a.logs.len(), 3);
    assert_eq!(a.config.retention_ms, 1000);
    assert_ne!(a.meta.id, [0u8; 16]);
    m.create_topic("audit", 1, BTreeMap::new()).unwrap();
    let names: Vec<_> = m.topics().iter().map(|t| t.meta.name.clone()).collect();
    assert_eq!(names, vec!["audit", "orders"]);
    m.log("orders", 2)
        .unwrap()
        .append(&Bytes::from(build_batch(1, &[b"x", b"y"])), 0, None)
        .unwrap();
    assert!(m.log("orders", 3).is_none());
    assert!(m.log("orders", -1).is_none());
    let pm = std::fs::read_to_string(d.path().join("orders-1/partition.metadata")).unwrap();
    assert!(pm.starts_with("version: 0\ntopic_id: "), "{pm}");
    assert_eq!(pm.trim_end().rsplit(' ').next().unwrap().len(), 22);

    assert!(matches!(
        m.create_topic("orders", 1, BTreeMap::new()),
        Err(StorageError::TopicAlreadyExists(_))
    ));
    assert!(matches!(
        m.create_topic("bad name", 1, BTreeMap::new()),
        Err(StorageError::InvalidTopic { .. })
    ));
    assert!(matches!(
        m.create_topic("..", 1, BTreeMap::new()),
        Err(StorageError::InvalidTopic { .. })
    ));
    assert!(matches!(
        m.create_topic("p0", 0, BTreeMap::new()),
        Err(StorageError::InvalidPartitions(0))
    ));
    assert!(matches!(
        m.create_topic("c", 1, cfg(&[("nope", "1")])),
        Err(StorageError::InvalidConfig { .. })
    ));
    assert!(m.topic("c").is_none());

    let audit = m.delete_topic("audit").unwrap();
    assert!(m.topic("audit").is_none());
    assert!(m.topic_by_id(&audit.id).is_none());
    assert!(!d.path().join("audit-0").exists());
    assert!(matches!(
        m.delete_topic("audit"),
        Err(StorageError::UnknownTopic(_))
    ));
    let id = a.meta.id;
    m.shutdown().unwrap();
    drop((m, a));

    let m = LogManager::open(d.path(), LogConfig::default()).unwrap();
    let names: Vec<_> = m.topics().iter().map(|t| t.meta.name.clone()).collect();
    assert_eq!(names, vec!["orders"]);
    let t = m.topic_by_id(&id).unwrap();
    assert_eq!(t.meta.name, "orders");
    assert_eq!(t.config.retention_ms, 1000);
    assert_eq!(t.meta.configs, cfg(&[("retention.ms", "1000")]));
    assert_eq!(m.log("orders", 2).unwrap().log_end_offset(), 2);
    // A recreated topic gets a fresh id and empty logs.
    m.delete_topic("orders").unwrap();
    let again = m.create_topic("orders", 3, BTreeMap::new()).unwrap();
    assert_ne!(again.meta.id, id);
    assert_eq!(again.logs[2].log_end_offset(), 0);
}

#[test]
fn data_dir_is_locked_and_half_deleted_dirs_removed() {
    let d = tempfile::tempdir().unwrap();
    let m = LogManager::open(d.path(), LogConfig::default()).unwrap();
    match LogManager::open(d.path(), LogConfig::default()) {
        Err(StorageError::DataDirLocked(p)) => assert_eq!(p, d.path()),
        other => panic!("expected DataDirLocked, got {:?}", other.err()),
    }
    drop(m);
    let doomed = d.path().join("gone-0.0123abcd-delete");
    std::fs::create_dir(&doomed).unwrap();
    std::fs::write(doomed.join("00000000000000000000.log"), b"x").unwrap();
    let _m = LogManager::open(d.path(), LogConfig::default()).unwrap();
    assert!(!doomed.exists());
}

#[test]
fn partitions_grow_configs_change_live_and_removed_configs_are_dropped() {
    let d = tempfile::tempdir().unwrap();
    let m = LogManager::open(d.path(), LogConfig::default()).unwrap();
    m.create_topic("grow", 2, cfg(&[("retention.ms", "1000")]))
        .unwrap();
    assert!(matches!(
        m.create_partitions("grow", 2),
        Err(StorageError::PartitionsNotIncreased { current: 2, .. })
    ));
    let t = m.create_partitions("grow", 4).unwrap();
    assert_eq!((t.meta.partitions, t.logs.len()), (4, 4));
    // A live log takes a new config; the topic's other overrides stay.
    let log = m.log("grow", 3).unwrap();
    m.alter_topic_configs("grow", &cfg(&[("segment.bytes", "2048")]), &[])
        .unwrap();
    assert_eq!(log.config().segment_bytes, 2048);
    assert_eq!(log.config().retention_ms, 1000);
    assert!(matches!(
        m.alter_topic_configs("grow", &cfg(&[("segment.bytes", "abc")]), &[]),
        Err(StorageError::InvalidConfig { .. })
    ));
    assert_eq!(
        log.config().segment_bytes,
        2048,
        "a refused change changes nothing"
    );
    // A dynamic broker default reaches topics without an override.
    let mut dynamic = m.dynamic_broker_configs();
    dynamic
        .broker
        .insert("retention.bytes".into(), "5000".into());
    m.set_dynamic_broker_configs(dynamic).unwrap();
    assert_eq!(log.config().retention_bytes, 5000);
    drop(log);
    m.shutdown().unwrap();
    drop(m);

    // A topic whose metadata names a config Kafka 4.0 removed still loads.
    let meta = d.path().join("__karnak_meta/topics/grow.json");
    let text = std::fs::read_to_string(&meta).unwrap();
    let text = text.replace(
        "\"retention.ms\": \"1000\"",
        "\"retention.ms\": \"1000\",\n    \"message.format.version\": \"2.8\"",
    );
    assert!(text.contains("message.format.version"));
    std::fs::write(&meta, text).unwrap();
    let m = LogManager::open(d.path(), LogConfig::default()).unwrap();
    let t = m.topic("grow").unwrap();
    assert_eq!(t.meta.partitions, 4);
    assert!(!t.meta.configs.contains_key("message.format.version"));
    assert_eq!(t.config.segment_bytes, 2048);
    assert_eq!(
        t.config.retention_bytes, 5000,
        "dynamic broker configs persist"
    );
}

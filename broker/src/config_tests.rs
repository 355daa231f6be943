//! The configuration's tests: defaults, precedence, and the listeners' rules.

use super::*;

#[test]
fn defaults_match_the_readme() {
    let c = Config::load(Args::default()).unwrap();
    assert_eq!(c.listeners.specs[0].bind.to_string(), "127.0.0.1:9092");
    assert!(c.tls.is_none());
    assert_eq!(c.admin_addr.to_string(), "127.0.0.1:9644");
    assert_eq!(
        c.sql.as_ref().map(|s| s.addr.to_string()).as_deref(),
        Some("127.0.0.1:5433")
    );
    assert_eq!(c.data_dir, PathBuf::from("./data"));
    assert_eq!(c.num_partitions, 1);
    assert!(c.auto_create_topics && c.flush_on_acks_all);
}

#[test]
fn flags_override_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.toml");
    std::fs::write(
        &path,
        "num_partitions = 3\nnode_id = 4\nadvertised_kafka_addr = \"kafka.local:19092\"\n",
    )
    .unwrap();
    let args = Args {
        config: Some(path),
        node_id: Some(7),
        ..Default::default()
    };
    let c = Config::load(args).unwrap();
    assert_eq!((c.num_partitions, c.node_id), (3, 7));
    assert_eq!(
        c.listeners.specs[0].advertised,
        Some(("kafka.local".into(), 19092))
    );
}

#[test]
fn brokers_reach_each_other_in_plaintext_for_now() {
    let args = |listeners: &str, peers: Option<&str>| Args {
        listeners: Some(listeners.into()),
        ssl_certificate_file: Some("cert.pem".into()),
        ssl_key_file: Some("key.pem".into()),
        cluster_peers: peers.map(String::from),
        ..Default::default()
    };
    let two = Some("0@127.0.0.1:19190,1@127.0.0.1:19191");
    let err = Config::load(args("SSL://127.0.0.1:19093", two)).unwrap_err();
    assert!(format!("{err:#}").contains("PLAINTEXT listener"), "{err:#}");
    // One node alone may have only an SSL listener; a cluster names a
    // PLAINTEXT one for its brokers.
    assert!(Config::load(args("SSL://127.0.0.1:19093", None)).is_ok());
    assert!(
        Config::load(args(
            "PLAINTEXT://127.0.0.1:19092,SSL://127.0.0.1:19093",
            two
        ))
        .is_ok()
    );
}

#[test]
fn bad_file_is_an_error_that_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.toml");
    std::fs::write(&path, "no_such_key = 1\n").unwrap();
    let err = Config::load(Args {
        config: Some(path),
        ..Default::default()
    })
    .unwrap_err();
    assert!(format!("{err:#}").contains("k.toml"));
}

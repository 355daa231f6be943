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
fn brokers_reach_each_other_in_plaintext_or_mutual_tls() {
    let args = |listeners: &str, peers: Option<&str>, truststore: bool| Args {
        listeners: Some(listeners.into()),
        ssl_certificate_file: Some("cert.pem".into()),
        ssl_key_file: Some("key.pem".into()),
        ssl_truststore_file: truststore.then(|| "ca.pem".into()),
        cluster_peers: peers.map(String::from),
        ..Default::default()
    };
    let two = Some("0@127.0.0.1:19190,1@127.0.0.1:19191");
    // An SSL inter-broker listener: mutual TLS, so a truststore is needed.
    let err = Config::load(args("SSL://127.0.0.1:19093", two, false)).unwrap_err();
    assert!(
        format!("{err:#}").contains("--ssl-truststore-file"),
        "{err:#}"
    );
    let c = Config::load(args("SSL://127.0.0.1:19093", two, true)).unwrap();
    assert!(c.peer_tls());
    // SASL between brokers is not served.
    let err = Config::load(args("SASL_SSL://127.0.0.1:19093", two, true)).unwrap_err();
    assert!(format!("{err:#}").contains("PLAINTEXT or SSL"), "{err:#}");
    // One node alone needs no peer TLS; a PLAINTEXT inter-broker listener
    // beside an SSL one for clients neither.
    assert!(
        !Config::load(args("SSL://127.0.0.1:19093", None, false))
            .unwrap()
            .peer_tls()
    );
    let c = Config::load(args(
        "PLAINTEXT://127.0.0.1:19092,SSL://127.0.0.1:19093",
        two,
        false,
    ))
    .unwrap();
    assert!(!c.peer_tls());
}

#[test]
fn sql_ssl_follows_the_certificate_unless_told() {
    let with_cert = |sql_ssl: Option<&str>| Args {
        ssl_certificate_file: Some("cert.pem".into()),
        ssl_key_file: Some("key.pem".into()),
        sql_ssl: sql_ssl.map(String::from),
        ..Default::default()
    };
    let ssl = |c: &Config| c.sql.as_ref().map(|s| s.ssl);
    use karnak_sql::auth::SqlSsl;
    let c = Config::load(with_cert(None)).unwrap();
    assert_eq!(ssl(&c), Some(SqlSsl::On));
    assert!(c.tls.is_some(), "the SQL port needs the certificate");
    assert_eq!(
        ssl(&Config::load(with_cert(Some("require"))).unwrap()),
        Some(SqlSsl::Require)
    );
    let off = Config::load(with_cert(Some("off"))).unwrap();
    assert_eq!(ssl(&off), Some(SqlSsl::Off));
    assert!(off.tls.is_none());
    let err = Config::load(Args {
        sql_ssl: Some("on".into()),
        ..Default::default()
    })
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("--ssl-certificate-file"),
        "{err:#}"
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

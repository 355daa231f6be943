//! Broker configuration: command-line flags, `KARNAK_*` environment variables
//! and an optional TOML file, in that order of precedence, over defaults that
//! let `karnak` with no flags serve Kafka on 127.0.0.1:9092 with data in ./data.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Parser;
use serde::Deserialize;

use crate::cluster::config::{ClusterConfig, parse_peers};

/// A Kafka-wire-compatible broker whose log is also queryable with SQL.
#[derive(Debug, Parser, Default)]
#[command(
    name = "karnak",
    version,
    about = "Karnak: a Kafka-wire-compatible broker. Every flag can also be set as a KARNAK_* environment variable or in a TOML --config file."
)]
pub struct Args {
    /// TOML file with any of the settings below (keys use underscores, e.g. `data_dir`).
    #[arg(long, env = "KARNAK_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory holding topic-partition logs. [default: ./data]
    #[arg(long, env = "KARNAK_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address the Kafka listener binds: the one-listener shorthand for `--listeners PLAINTEXT://ADDR`. [default: 127.0.0.1:9092]
    #[arg(long, env = "KARNAK_KAFKA_ADDR")]
    pub kafka_addr: Option<SocketAddr>,
    /// host:port clients are told to connect to (Metadata), with one listener. [default: the Kafka listener address]
    #[arg(long, env = "KARNAK_ADVERTISED_KAFKA_ADDR")]
    pub advertised_kafka_addr: Option<String>,
    /// Kafka `listeners`: `NAME://host:port,...`, e.g. `PLAINTEXT://127.0.0.1:9092,SSL://0.0.0.0:9093` (an empty host binds every interface).
    #[arg(long, env = "KARNAK_LISTENERS")]
    pub listeners: Option<String>,
    /// Kafka `advertised.listeners`: what clients of each listener are told. [default: each listener's bound address]
    #[arg(long, env = "KARNAK_ADVERTISED_LISTENERS")]
    pub advertised_listeners: Option<String>,
    /// Kafka `listener.security.protocol.map`: `NAME:PROTOCOL,...` (PLAINTEXT or SSL). [default: each protocol's own name]
    #[arg(long, env = "KARNAK_LISTENER_SECURITY_PROTOCOL_MAP")]
    pub listener_security_protocol_map: Option<String>,
    /// Kafka `inter.broker.listener.name`: the listener brokers reach each other on. [default: the only listener, else PLAINTEXT]
    #[arg(long, env = "KARNAK_INTER_BROKER_LISTENER_NAME")]
    pub inter_broker_listener_name: Option<String>,
    /// PEM certificate chain of the SSL listeners (reloaded when the file changes or on SIGHUP).
    #[arg(long, env = "KARNAK_SSL_CERTIFICATE_FILE")]
    pub ssl_certificate_file: Option<PathBuf>,
    /// PEM private key of that certificate.
    #[arg(long, env = "KARNAK_SSL_KEY_FILE")]
    pub ssl_key_file: Option<PathBuf>,
    /// Kafka `ssl.client.auth`: `none`, `requested` or `required` client certificates. [default: none]
    #[arg(long, env = "KARNAK_SSL_CLIENT_AUTH")]
    pub ssl_client_auth: Option<String>,
    /// PEM CA certificates that client certificates must chain to.
    #[arg(long, env = "KARNAK_SSL_TRUSTSTORE_FILE")]
    pub ssl_truststore_file: Option<PathBuf>,
    /// Kafka `ssl.principal.mapping.rules`: how a client certificate's subject (RFC 2253, e.g. `CN=alice,O=Org`) becomes a principal: `RULE:pattern/replacement/[LU],...,DEFAULT`. [default: DEFAULT]
    #[arg(long, env = "KARNAK_SSL_PRINCIPAL_MAPPING_RULES")]
    pub ssl_principal_mapping_rules: Option<String>,
    /// Kafka `sasl.enabled.mechanisms` of the SASL listeners: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512. [default: SCRAM-SHA-256,SCRAM-SHA-512]
    #[arg(long, env = "KARNAK_SASL_ENABLED_MECHANISMS")]
    pub sasl_enabled_mechanisms: Option<String>,
    /// `user:password` lines: the users SASL clients and SQL logins (--sql-auth scram-sha-256) log in as, added to the metadata at start (kept only as salted SCRAM credentials).
    #[arg(long, env = "KARNAK_SASL_USERS_FILE")]
    pub sasl_users_file: Option<PathBuf>,
    /// Kafka `sasl.oauthbearer.jwks.endpoint.url` for OAUTHBEARER: a JWKS file (`file:///path` or a path) whose keys sign the tokens.
    #[arg(long, env = "KARNAK_SASL_OAUTHBEARER_JWKS_ENDPOINT_URL")]
    pub sasl_oauthbearer_jwks_endpoint_url: Option<String>,
    /// Kafka `sasl.oauthbearer.expected.issuer`: the `iss` a token must have.
    #[arg(long, env = "KARNAK_SASL_OAUTHBEARER_EXPECTED_ISSUER")]
    pub sasl_oauthbearer_expected_issuer: Option<String>,
    /// Kafka `sasl.oauthbearer.expected.audience`: an `aud` a token must have.
    #[arg(long, env = "KARNAK_SASL_OAUTHBEARER_EXPECTED_AUDIENCE")]
    pub sasl_oauthbearer_expected_audience: Option<String>,
    /// Kafka `sasl.oauthbearer.sub.claim.name`: the claim naming the user. [default: sub]
    #[arg(long, env = "KARNAK_SASL_OAUTHBEARER_SUB_CLAIM_NAME")]
    pub sasl_oauthbearer_sub_claim_name: Option<String>,
    /// Kafka `sasl.oauthbearer.clock.skew.seconds`. [default: 30]
    #[arg(long, env = "KARNAK_SASL_OAUTHBEARER_CLOCK_SKEW_SECONDS")]
    pub sasl_oauthbearer_clock_skew_seconds: Option<u64>,
    /// Kafka `connections.max.reauth.ms` (KIP-368): a SASL login lasts this long, then the client logs in again or is disconnected; 0 never. [default: 0]
    #[arg(long, env = "KARNAK_CONNECTIONS_MAX_REAUTH_MS")]
    pub connections_max_reauth_ms: Option<u64>,
    /// Authorize requests against ACLs (`acl`, Kafka's StandardAuthorizer rules; managed with kafka-acls) or not at all (`none`). [default: none]
    #[arg(long, env = "KARNAK_AUTHORIZER")]
    pub authorizer: Option<String>,
    /// Kafka `super.users`: principals allowed everything, `;`-separated, e.g. `User:admin;User:ops`.
    #[arg(long, env = "KARNAK_SUPER_USERS")]
    pub super_users: Option<String>,
    /// Kafka `allow.everyone.if.no.acl.found`: a resource no ACL names is open to all. [default: false]
    #[arg(long, env = "KARNAK_ALLOW_EVERYONE_IF_NO_ACL_FOUND")]
    pub allow_everyone_if_no_acl_found: Option<bool>,
    /// Kafka `quota.window.num`: samples a client's rate is measured over. [default: 11]
    #[arg(long, env = "KARNAK_QUOTA_WINDOW_NUM")]
    pub quota_window_num: Option<u32>,
    /// Kafka `quota.window.size.seconds`: the length of each sample. [default: 1]
    #[arg(long, env = "KARNAK_QUOTA_WINDOW_SIZE_SECONDS")]
    pub quota_window_size_seconds: Option<u64>,
    /// Kafka `max.connections`: connections served at once; past it, the listeners stop accepting until one closes (the inter-broker listener of a cluster is exempt). [default: no limit]
    #[arg(long, env = "KARNAK_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Kafka `max.connections.per.ip`: more connections from one address are closed at once. [default: no limit]
    #[arg(long, env = "KARNAK_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<usize>,
    /// Kafka `max.connection.creation.rate`: new connections per second the listeners accept; past it, accepting waits. [default: no limit]
    #[arg(long, env = "KARNAK_MAX_CONNECTION_CREATION_RATE")]
    pub max_connection_creation_rate: Option<f64>,
    /// Kafka `connection.failed.authentication.delay.ms`: a failed SASL login is answered, and its connection closed, this much later (slows a client guessing passwords). [default: 100]
    #[arg(long, env = "KARNAK_CONNECTION_FAILED_AUTHENTICATION_DELAY_MS")]
    pub connection_failed_authentication_delay_ms: Option<u64>,
    /// Failed SASL logins a second one client address may cost: past that its attempts wait their turn (up to 5 s), then are refused unchecked, so a flood of wrong passwords from one address cannot take the cores (0: no limit). [default: 10]
    #[arg(long, env = "KARNAK_FAILED_AUTHENTICATION_RATE_PER_IP")]
    pub failed_authentication_rate_per_ip: Option<f64>,
    /// Address of the HTTP admin endpoint serving Prometheus metrics at /metrics. [default: 127.0.0.1:9644]
    #[arg(long, env = "KARNAK_ADMIN_ADDR")]
    pub admin_addr: Option<SocketAddr>,
    /// Address of the Postgres-wire SQL gateway (psql -h .. -p ..). [default: 127.0.0.1:5433]
    #[arg(long, env = "KARNAK_SQL_ADDR")]
    pub sql_addr: Option<SocketAddr>,
    /// Serve SQL at all. [default: true]
    #[arg(long, env = "KARNAK_SQL_ENABLED")]
    pub sql_enabled: Option<bool>,
    /// SQL connections served at once; more are refused. [default: 256]
    #[arg(long, env = "KARNAK_SQL_MAX_CONNECTIONS")]
    pub sql_max_connections: Option<usize>,
    /// SQL authentication: `trust` (any user, no password, as a fresh Postgres on loopback) or `scram-sha-256` (the broker's users: the same SCRAM credentials Kafka clients log in with). [default: trust]
    #[arg(long, env = "KARNAK_SQL_AUTH")]
    pub sql_auth: Option<String>,
    /// `user:password` lines added to the broker's users at start, as --sasl-users-file (kept for compatibility; one user store serves Kafka and SQL).
    #[arg(long, env = "KARNAK_SQL_PASSWORD_FILE")]
    pub sql_password_file: Option<PathBuf>,
    /// TLS on the SQL port with the Kafka listeners' certificate (--ssl-certificate-file): `off`, `on` (for clients that ask, as Postgres `ssl=on`) or `require` (a connection without TLS is refused). [default: on when --ssl-certificate-file is given, else off]
    #[arg(long, env = "KARNAK_SQL_SSL")]
    pub sql_ssl: Option<String>,
    /// This broker's node id (Kafka `node.id`). [default: 0]
    #[arg(long, env = "KARNAK_NODE_ID")]
    pub node_id: Option<i32>,
    /// Cluster id reported in Metadata. [default: generated once and stored in the data dir]
    #[arg(long, env = "KARNAK_CLUSTER_ID")]
    pub cluster_id: Option<String>,
    /// Partitions of auto-created topics (Kafka `num.partitions`). [default: 1]
    #[arg(long, env = "KARNAK_NUM_PARTITIONS")]
    pub num_partitions: Option<i32>,
    /// Create topics on first produce or metadata request (Kafka `auto.create.topics.enable`). [default: true]
    #[arg(long, env = "KARNAK_AUTO_CREATE_TOPICS")]
    pub auto_create_topics: Option<bool>,
    /// Largest request accepted, in bytes (Kafka `socket.request.max.bytes`). [default: 104857600]
    #[arg(long, env = "KARNAK_SOCKET_REQUEST_MAX_BYTES")]
    pub socket_request_max_bytes: Option<usize>,
    /// Segment size before rolling (Kafka `log.segment.bytes`). [default: 1073741824]
    #[arg(long, env = "KARNAK_LOG_SEGMENT_BYTES")]
    pub log_segment_bytes: Option<u64>,
    /// Most bytes of disk blocks reserved (fallocate) ahead of a partition's active segment end, never more than the segment holds; released at roll. Makes appends cheaper on ext4; 0 turns it off. [default: 8388608]
    #[arg(long, env = "KARNAK_LOG_PREALLOCATE_AHEAD_BYTES")]
    pub log_preallocate_ahead_bytes: Option<u64>,
    /// Segment age before rolling, ms (Kafka `log.roll.ms`). [default: 604800000]
    #[arg(long, env = "KARNAK_LOG_ROLL_MS")]
    pub log_roll_ms: Option<u64>,
    /// fsync a partition after this many messages (Kafka `log.flush.interval.messages`). [default: never]
    #[arg(long, env = "KARNAK_LOG_FLUSH_INTERVAL_MESSAGES")]
    pub log_flush_interval_messages: Option<u64>,
    /// fsync every partition at this interval, ms (Kafka `log.flush.interval.ms`). [default: never]
    #[arg(long, env = "KARNAK_LOG_FLUSH_INTERVAL_MS")]
    pub log_flush_interval_ms: Option<u64>,
    /// How often segments past `retention.ms` / `retention.bytes` are deleted and producers idle for a day forgotten, ms (Kafka `log.retention.check.interval.ms`). [default: 300000]
    #[arg(long, env = "KARNAK_LOG_RETENTION_CHECK_INTERVAL_MS")]
    pub log_retention_check_interval_ms: Option<u64>,
    /// Kafka `offsets.retention.minutes`: committed offsets a group no longer uses are dropped after this long. [default: 10080]
    #[arg(long, env = "KARNAK_OFFSETS_RETENTION_MINUTES")]
    pub offsets_retention_minutes: Option<u64>,
    /// Kafka `offsets.retention.check.interval.ms`: how often expired offsets are looked for. [default: 600000]
    #[arg(long, env = "KARNAK_OFFSETS_RETENTION_CHECK_INTERVAL_MS")]
    pub offsets_retention_check_interval_ms: Option<u64>,
    /// Kafka `log.cleaner.enable`: run the log cleaner (compaction of `cleanup.policy=compact` topics). [default: true]
    #[arg(long, env = "KARNAK_LOG_CLEANER_ENABLE")]
    pub log_cleaner_enable: Option<bool>,
    /// Kafka `log.cleaner.io.max.bytes.per.second`: the cleaner's reads plus writes, bytes/s, so produce latency does not move; 0: no limit (Kafka's default). [default: 67108864]
    #[arg(long, env = "KARNAK_LOG_CLEANER_IO_MAX_BYTES_PER_SECOND")]
    pub log_cleaner_io_max_bytes_per_second: Option<u64>,
    /// Kafka `log.cleaner.dedupe.buffer.size`: most memory for one cleaning's key map, bytes. [default: 134217728]
    #[arg(long, env = "KARNAK_LOG_CLEANER_DEDUPE_BUFFER_SIZE")]
    pub log_cleaner_dedupe_buffer_size: Option<usize>,
    /// Kafka `log.cleaner.backoff.ms`: how long the cleaner sleeps when no log needs cleaning. [default: 15000]
    #[arg(long, env = "KARNAK_LOG_CLEANER_BACKOFF_MS")]
    pub log_cleaner_backoff_ms: Option<u64>,
    /// Build the Arrow face (`<base>.arrow`) of sealed segments for SQL scans; off: scans decode the log. [default: true when SQL is on]
    #[arg(long, env = "KARNAK_SQL_ARROW_FACES")]
    pub sql_arrow_faces: Option<bool>,
    /// fsync before answering an acks=all produce (group commit). [default: true]
    #[arg(long, env = "KARNAK_FLUSH_ON_ACKS_ALL")]
    pub flush_on_acks_all: Option<bool>,
    /// Kafka `log.message.timestamp.type` for new topics: CreateTime or LogAppendTime. [default: CreateTime]
    #[arg(long, env = "KARNAK_LOG_MESSAGE_TIMESTAMP_TYPE")]
    pub log_message_timestamp_type: Option<String>,
    /// Coordinator shards (Pharaoh shards) groups are spread over; fixed for a data dir. [default: 64]
    #[arg(long, env = "KARNAK_GROUP_COORDINATOR_SHARDS")]
    pub group_coordinator_shards: Option<u32>,
    /// Kafka `group.initial.rebalance.delay.ms`: how long a new group waits for more members. [default: 3000]
    #[arg(long, env = "KARNAK_GROUP_INITIAL_REBALANCE_DELAY_MS")]
    pub group_initial_rebalance_delay_ms: Option<u64>,
    /// Kafka `group.min.session.timeout.ms`. [default: 6000]
    #[arg(long, env = "KARNAK_GROUP_MIN_SESSION_TIMEOUT_MS")]
    pub group_min_session_timeout_ms: Option<i32>,
    /// Kafka `group.max.session.timeout.ms`. [default: 1800000]
    #[arg(long, env = "KARNAK_GROUP_MAX_SESSION_TIMEOUT_MS")]
    pub group_max_session_timeout_ms: Option<i32>,
    /// Kafka `group.max.size`: members (and joining members) per group. [default: 10000]
    #[arg(long, env = "KARNAK_GROUP_MAX_SIZE")]
    pub group_max_size: Option<usize>,
    /// Kafka `group.consumer.session.timeout.ms`: KIP-848 (group.protocol=consumer) members are fenced after this long without a heartbeat. [default: 45000]
    #[arg(long, env = "KARNAK_GROUP_CONSUMER_SESSION_TIMEOUT_MS")]
    pub group_consumer_session_timeout_ms: Option<i32>,
    /// Kafka `group.consumer.heartbeat.interval.ms`: how often KIP-848 members heartbeat. [default: 5000]
    #[arg(long, env = "KARNAK_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS")]
    pub group_consumer_heartbeat_interval_ms: Option<i32>,
    /// Kafka `transaction.max.timeout.ms`: the largest `transaction.timeout.ms` a producer may ask for. [default: 900000]
    #[arg(long, env = "KARNAK_TRANSACTION_MAX_TIMEOUT_MS")]
    pub transaction_max_timeout_ms: Option<i32>,
    /// Kafka `transaction.abort.timed.out.transaction.cleanup.interval.ms`: how often transactions past their timeout are aborted. [default: 10000]
    #[arg(
        long,
        env = "KARNAK_TRANSACTION_ABORT_TIMED_OUT_TRANSACTION_CLEANUP_INTERVAL_MS"
    )]
    pub transaction_abort_timed_out_transaction_cleanup_interval_ms: Option<u64>,
    /// Kafka `transactional.id.expiration.ms`: a transactional id idle this long (no open transaction) is forgotten. [default: 604800000]
    #[arg(long, env = "KARNAK_TRANSACTIONAL_ID_EXPIRATION_MS")]
    pub transactional_id_expiration_ms: Option<i64>,
    /// The metadata quorum's voters, the same on every node (Kafka `controller.quorum.voters`): `0@host:port,1@host:port,2@host:port`, each a node id and its cluster listener. [default: this node alone]
    #[arg(long, env = "KARNAK_CLUSTER_PEERS")]
    pub cluster_peers: Option<String>,
    /// Address the cluster listener (Raft and replication between brokers) binds. [default: this node's entry in --cluster-peers]
    #[arg(long, env = "KARNAK_CLUSTER_ADDR")]
    pub cluster_addr: Option<SocketAddr>,
    /// Kafka `broker.rack`: replicas of a partition are spread over racks.
    #[arg(long, env = "KARNAK_RACK")]
    pub rack: Option<String>,
    /// Kafka `default.replication.factor` for new topics. [default: min(3, live brokers)]
    #[arg(long, env = "KARNAK_DEFAULT_REPLICATION_FACTOR")]
    pub default_replication_factor: Option<i16>,
    /// Kafka `min.insync.replicas`: in-sync replicas an acks=all write needs. [default: 1]
    #[arg(long, env = "KARNAK_MIN_INSYNC_REPLICAS")]
    pub min_insync_replicas: Option<i32>,
    /// Kafka `replica.lag.time.max.ms`: a follower not caught up for this long leaves the in-sync set. [default: 30000]
    #[arg(long, env = "KARNAK_REPLICA_LAG_TIME_MAX_MS")]
    pub replica_lag_time_max_ms: Option<u64>,
    /// Kafka `unclean.leader.election.enable` (the topic config's default): when no in-sync or eligible (KIP-966) replica is live, let any live replica lead (may lose acknowledged writes). [default: false]
    #[arg(long, env = "KARNAK_UNCLEAN_LEADER_ELECTION")]
    pub unclean_leader_election: Option<bool>,
    /// Kafka `broker.heartbeat.interval.ms`: how often a broker tells the metadata leader it is alive. [default: 250]
    #[arg(long, env = "KARNAK_BROKER_HEARTBEAT_INTERVAL_MS")]
    pub broker_heartbeat_interval_ms: Option<u64>,
    /// Kafka `broker.session.timeout.ms`: a broker silent this long is fenced and its partitions move. [default: 1500]
    #[arg(long, env = "KARNAK_BROKER_SESSION_TIMEOUT_MS")]
    pub broker_session_timeout_ms: Option<u64>,
    /// Kafka `auto.leader.rebalance.enable`: the controller gives leadership back to each partition's preferred (first) replica once it is live and in sync. [default: true]
    #[arg(long, env = "KARNAK_AUTO_LEADER_REBALANCE_ENABLE")]
    pub auto_leader_rebalance_enable: Option<bool>,
    /// Kafka `leader.imbalance.check.interval.seconds`: how often the controller looks for partitions to give back. [default: 300]
    #[arg(long, env = "KARNAK_LEADER_IMBALANCE_CHECK_INTERVAL_SECONDS")]
    pub leader_imbalance_check_interval_seconds: Option<u64>,
}

/// The same settings as read from a TOML file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    kafka_addr: Option<SocketAddr>,
    advertised_kafka_addr: Option<String>,
    listeners: Option<String>,
    advertised_listeners: Option<String>,
    listener_security_protocol_map: Option<String>,
    inter_broker_listener_name: Option<String>,
    ssl_certificate_file: Option<PathBuf>,
    ssl_key_file: Option<PathBuf>,
    ssl_client_auth: Option<String>,
    ssl_truststore_file: Option<PathBuf>,
    ssl_principal_mapping_rules: Option<String>,
    sasl_enabled_mechanisms: Option<String>,
    sasl_users_file: Option<PathBuf>,
    connections_max_reauth_ms: Option<u64>,
    connection_failed_authentication_delay_ms: Option<u64>,
    failed_authentication_rate_per_ip: Option<f64>,
    sasl_oauthbearer_jwks_endpoint_url: Option<String>,
    sasl_oauthbearer_expected_issuer: Option<String>,
    sasl_oauthbearer_expected_audience: Option<String>,
    sasl_oauthbearer_sub_claim_name: Option<String>,
    sasl_oauthbearer_clock_skew_seconds: Option<u64>,
    authorizer: Option<String>,
    super_users: Option<String>,
    quota_window_num: Option<u32>,
    quota_window_size_seconds: Option<u64>,
    max_connections: Option<usize>,
    max_connections_per_ip: Option<usize>,
    max_connection_creation_rate: Option<f64>,
    allow_everyone_if_no_acl_found: Option<bool>,
    admin_addr: Option<SocketAddr>,
    sql_addr: Option<SocketAddr>,
    sql_enabled: Option<bool>,
    sql_max_connections: Option<usize>,
    sql_auth: Option<String>,
    sql_password_file: Option<PathBuf>,
    sql_ssl: Option<String>,
    node_id: Option<i32>,
    cluster_id: Option<String>,
    num_partitions: Option<i32>,
    auto_create_topics: Option<bool>,
    socket_request_max_bytes: Option<usize>,
    log_segment_bytes: Option<u64>,
    log_preallocate_ahead_bytes: Option<u64>,
    log_roll_ms: Option<u64>,
    log_flush_interval_messages: Option<u64>,
    log_flush_interval_ms: Option<u64>,
    log_retention_check_interval_ms: Option<u64>,
    offsets_retention_minutes: Option<u64>,
    offsets_retention_check_interval_ms: Option<u64>,
    log_cleaner_enable: Option<bool>,
    log_cleaner_io_max_bytes_per_second: Option<u64>,
    log_cleaner_dedupe_buffer_size: Option<usize>,
    log_cleaner_backoff_ms: Option<u64>,
    sql_arrow_faces: Option<bool>,
    flush_on_acks_all: Option<bool>,
    log_message_timestamp_type: Option<String>,
    group_coordinator_shards: Option<u32>,
    group_initial_rebalance_delay_ms: Option<u64>,
    group_min_session_timeout_ms: Option<i32>,
    group_max_session_timeout_ms: Option<i32>,
    group_max_size: Option<usize>,
    group_consumer_session_timeout_ms: Option<i32>,
    group_consumer_heartbeat_interval_ms: Option<i32>,
    transaction_max_timeout_ms: Option<i32>,
    transaction_abort_timed_out_transaction_cleanup_interval_ms: Option<u64>,
    transactional_id_expiration_ms: Option<i64>,
    cluster_peers: Option<String>,
    cluster_addr: Option<SocketAddr>,
    rack: Option<String>,
    default_replication_factor: Option<i16>,
    min_insync_replicas: Option<i32>,
    replica_lag_time_max_ms: Option<u64>,
    unclean_leader_election: Option<bool>,
    broker_heartbeat_interval_ms: Option<u64>,
    broker_session_timeout_ms: Option<u64>,
    auto_leader_rebalance_enable: Option<bool>,
    leader_imbalance_check_interval_seconds: Option<u64>,
}

/// `--log-cleaner-io-max-bytes-per-second` when not given: 64 MiB/s.
const DEFAULT_CLEANER_IO: u64 = 64 << 20;

/// Resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listeners: crate::listeners::Listeners,
    /// The SSL listeners' certificate (None: no SSL listener).
    pub tls: Option<crate::tls::TlsSettings>,
    /// The SASL listeners' mechanisms (None: no SASL listener).
    pub sasl: Option<std::sync::Arc<crate::sasl::SaslConfig>>,
    /// `--sasl-users-file`'s and `--sql-password-file`'s users, added to
    /// the metadata at start.
    pub users: Option<std::sync::Arc<crate::sasl::Users>>,
    /// Quota windows and connection limits.
    pub quotas: crate::quotas::QuotaConfig,
    /// Client certificate subject -> principal.
    pub ssl_principal_mapping: crate::tls_principal::PrincipalMapping,
    /// `--authorizer acl` (None: every request is allowed).
    pub authorizer: Option<std::sync::Arc<crate::authz::AuthorizerConfig>>,
    pub admin_addr: SocketAddr,
    /// None: SQL is off.
    pub sql: Option<karnak_sql::SqlConfig>,
    pub node_id: i32,
    pub cluster_id: Option<String>,
    pub num_partitions: i32,
    pub auto_create_topics: bool,
    pub socket_request_max_bytes: usize,
    pub flush_on_acks_all: bool,
    pub log_retention_check_interval: std::time::Duration,
    /// Build Arrow faces of sealed segments (only with SQL on).
    pub arrow_faces: bool,
    pub log_defaults: karnak_storage::LogConfig,
    pub cleaner: karnak_storage::CleanerConfig,
    pub offsets_retention_ms: i64,
    pub offsets_retention_check_interval: std::time::Duration,
    pub group_coordinator_shards: u32,
    pub groups: karnak_coordinator::GroupConfig,
    pub transactions: karnak_coordinator::TxnConfig,
    pub transaction_cleanup_interval: std::time::Duration,
    pub cluster: ClusterConfig,
}

fn parse_host_port(s: &str) -> anyhow::Result<(String, i32)> {
    let (host, port) = s
        .rsplit_once(':')
        .with_context(|| format!("`{s}` is not host:port"))?;
    let port: u16 = port.parse().with_context(|| format!("bad port in `{s}`"))?;
    if host.is_empty() {
        bail!("empty host in `{s}`");
    }
    Ok((host.trim_matches(['[', ']']).to_string(), port as i32))
}

impl Config {
    pub fn load(args: Args) -> anyhow::Result<Config> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        macro_rules! pick {
            ($f:ident, $default:expr) => {
                args.$f.or(file.$f).unwrap_or($default)
            };
        }
        let mut log_defaults = karnak_storage::LogConfig::default();
        log_defaults.segment_bytes = pick!(log_segment_bytes, log_defaults.segment_bytes);
        log_defaults.segment_ms = pick!(log_roll_ms, log_defaults.segment_ms);
        log_defaults.preallocate_ahead_bytes = pick!(
            log_preallocate_ahead_bytes,
            log_defaults.preallocate_ahead_bytes
        );
        log_defaults.flush_messages = args
            .log_flush_interval_messages
            .or(file.log_flush_interval_messages);
        log_defaults.flush_ms = args.log_flush_interval_ms.or(file.log_flush_interval_ms);
        if let Some(t) = args
            .log_message_timestamp_type
            .or(file.log_message_timestamp_type)
        {
            let overrides = [("message.timestamp.type".to_string(), t)]
                .into_iter()
                .collect();
            log_defaults = log_defaults
                .with_overrides(&overrides)
                .context("log_message_timestamp_type")?;
        }
        let advertised = args.advertised_kafka_addr.or(file.advertised_kafka_addr);
        let listeners = crate::listeners::Listeners::resolve(crate::listeners::ListenerFlags {
            listeners: args.listeners.or(file.listeners),
            advertised_listeners: args.advertised_listeners.or(file.advertised_listeners),
            protocol_map: args
                .listener_security_protocol_map
                .or(file.listener_security_protocol_map),
            inter_broker_listener_name: args
                .inter_broker_listener_name
                .or(file.inter_broker_listener_name),
            kafka_addr: args.kafka_addr.or(file.kafka_addr),
            advertised_kafka_addr: advertised
                .as_deref()
                .map(parse_host_port)
                .transpose()?
                .map(|(h, p)| (h, p as u16)),
        })?;
        let certificate_file = args.ssl_certificate_file.or(file.ssl_certificate_file);
        let sql_ssl = match args.sql_ssl.or(file.sql_ssl).as_deref() {
            None if certificate_file.is_some() => karnak_sql::auth::SqlSsl::On,
            None | Some("off") => karnak_sql::auth::SqlSsl::Off,
            Some("on") => karnak_sql::auth::SqlSsl::On,
            Some("require") => karnak_sql::auth::SqlSsl::Require,
            Some(other) => bail!("--sql-ssl {other:?}: expected off, on or require"),
        };
        let sql_on = pick!(sql_enabled, true);
        let sql_tls = sql_on && sql_ssl != karnak_sql::auth::SqlSsl::Off;
        let tls = crate::tls::settings(
            &listeners,
            sql_tls,
            certificate_file,
            args.ssl_key_file.or(file.ssl_key_file),
            args.ssl_client_auth.or(file.ssl_client_auth).as_deref(),
            args.ssl_truststore_file.or(file.ssl_truststore_file),
        )?;
        let sasl_users_file = args.sasl_users_file.or(file.sasl_users_file);
        let sasl = crate::sasl::settings(
            &listeners,
            args.sasl_enabled_mechanisms
                .or(file.sasl_enabled_mechanisms)
                .as_deref(),
            args.connections_max_reauth_ms
                .or(file.connections_max_reauth_ms)
                .unwrap_or(0),
            args.connection_failed_authentication_delay_ms
                .or(file.connection_failed_authentication_delay_ms)
                .unwrap_or(100),
            {
                let r = args
                    .failed_authentication_rate_per_ip
                    .or(file.failed_authentication_rate_per_ip)
                    .unwrap_or(10.0);
                if !(r.is_finite() && r >= 0.0) {
                    bail!("--failed-authentication-rate-per-ip must be 0 (no limit) or more");
                }
                r
            },
            crate::sasl::OAuthFlags {
                jwks: args
                    .sasl_oauthbearer_jwks_endpoint_url
                    .or(file.sasl_oauthbearer_jwks_endpoint_url),
                issuer: args
                    .sasl_oauthbearer_expected_issuer
                    .or(file.sasl_oauthbearer_expected_issuer),
                audience: args
                    .sasl_oauthbearer_expected_audience
                    .or(file.sasl_oauthbearer_expected_audience),
                sub_claim: args
                    .sasl_oauthbearer_sub_claim_name
                    .or(file.sasl_oauthbearer_sub_claim_name),
                clock_skew_secs: args
                    .sasl_oauthbearer_clock_skew_seconds
                    .or(file.sasl_oauthbearer_clock_skew_seconds),
            },
        )?;
        let ssl_principal_mapping = match args
            .ssl_principal_mapping_rules
            .or(file.ssl_principal_mapping_rules)
        {
            None => crate::tls_principal::PrincipalMapping::default(),
            Some(rules) => crate::tls_principal::PrincipalMapping::parse(&rules)
                .context("--ssl-principal-mapping-rules")?,
        };
        let quotas = crate::quotas::QuotaConfig {
            window: std::time::Duration::from_secs(pick!(quota_window_size_seconds, 1)),
            samples: pick!(quota_window_num, 11),
            max_connections: args.max_connections.or(file.max_connections),
            max_connections_per_ip: args.max_connections_per_ip.or(file.max_connections_per_ip),
            max_connection_creation_rate: args
                .max_connection_creation_rate
                .or(file.max_connection_creation_rate),
        };
        if quotas.samples < 1 || quotas.window.is_zero() {
            bail!("--quota-window-num and --quota-window-size-seconds must be at least 1");
        }
        if quotas.max_connections == Some(0) || quotas.max_connections_per_ip == Some(0) {
            bail!("--max-connections and --max-connections-per-ip must be at least 1");
        }
        if quotas
            .max_connection_creation_rate
            .is_some_and(|r| !(r.is_finite() && r > 0.0))
        {
            bail!("--max-connection-creation-rate must be a positive number");
        }
        let authorizer = crate::authz::settings(
            args.authorizer.or(file.authorizer).as_deref(),
            args.super_users.or(file.super_users).as_deref(),
            args.allow_everyone_if_no_acl_found
                .or(file.allow_everyone_if_no_acl_found),
        )?;
        let password_file = args.sql_password_file.or(file.sql_password_file);
        let sql_auth = match args.sql_auth.or(file.sql_auth).as_deref() {
            None | Some("trust") => {
                if password_file.is_some() {
                    bail!("--sql-password-file needs --sql-auth scram-sha-256");
                }
                karnak_sql::auth::SqlAuthMethod::Trust
            }
            Some("scram-sha-256") => karnak_sql::auth::SqlAuthMethod::ScramSha256,
            Some(other) => bail!("--sql-auth {other:?}: expected trust or scram-sha-256"),
        };
        let user_files: Vec<PathBuf> = sasl_users_file.into_iter().chain(password_file).collect();
        let users = (!user_files.is_empty())
            .then(|| crate::sasl::Users::load_all(&user_files))
            .transpose()?
            .map(std::sync::Arc::new);
        if users.is_none() && (sasl.is_some() || sql_auth != karnak_sql::auth::SqlAuthMethod::Trust)
        {
            tracing::warn!(
                "SASL or SQL logins without --sasl-users-file: only users created with AlterUserScramCredentials can log in"
            );
        }
        let config = Config {
            data_dir: pick!(data_dir, PathBuf::from("./data")),
            listeners,
            tls,
            sasl,
            users,
            authorizer,
            ssl_principal_mapping,
            quotas,
            admin_addr: pick!(admin_addr, SocketAddr::from(([127, 0, 0, 1], 9644))),
            sql: sql_on.then(|| karnak_sql::SqlConfig {
                addr: pick!(sql_addr, SocketAddr::from(([127, 0, 0, 1], 5433))),
                max_connections: pick!(sql_max_connections, 256),
                auth: sql_auth,
                ssl: sql_ssl,
                default_partitions: pick!(num_partitions, 1),
            }),
            node_id: pick!(node_id, 0),
            cluster_id: args.cluster_id.or(file.cluster_id),
            num_partitions: pick!(num_partitions, 1),
            auto_create_topics: pick!(auto_create_topics, true),
            socket_request_max_bytes: pick!(
                socket_request_max_bytes,
                karnak_protocol::frame::DEFAULT_MAX_REQUEST_BYTES
            ),
            flush_on_acks_all: pick!(flush_on_acks_all, true),
            log_retention_check_interval: std::time::Duration::from_millis(
                pick!(log_retention_check_interval_ms, 300_000).max(1),
            ),
            arrow_faces: pick!(sql_enabled, true) && pick!(sql_arrow_faces, true),
            log_defaults,
            cleaner: {
                let d = karnak_storage::CleanerConfig::default();
                // Kafka leaves the cleaner unthrottled; a bound keeps a big
                // first cleaning from taking the disk from producers.
                let io = pick!(log_cleaner_io_max_bytes_per_second, DEFAULT_CLEANER_IO);
                karnak_storage::CleanerConfig {
                    enabled: pick!(log_cleaner_enable, d.enabled),
                    io_max_bytes_per_second: if io == 0 { f64::INFINITY } else { io as f64 },
                    dedupe_buffer_bytes: pick!(
                        log_cleaner_dedupe_buffer_size,
                        d.dedupe_buffer_bytes
                    )
                    .max(1 << 20),
                    backoff_ms: pick!(log_cleaner_backoff_ms, d.backoff_ms),
                    ..d
                }
            },
            offsets_retention_ms: (pick!(offsets_retention_minutes, 10_080) as i64)
                .saturating_mul(60_000),
            offsets_retention_check_interval: std::time::Duration::from_millis(
                pick!(offsets_retention_check_interval_ms, 600_000).max(1),
            ),
            group_coordinator_shards: pick!(group_coordinator_shards, 64),
            groups: {
                let d = karnak_coordinator::GroupConfig::default();
                karnak_coordinator::GroupConfig {
                    initial_rebalance_delay: std::time::Duration::from_millis(pick!(
                        group_initial_rebalance_delay_ms,
                        d.initial_rebalance_delay.as_millis() as u64
                    )),
                    min_session_timeout_ms: pick!(
                        group_min_session_timeout_ms,
                        d.min_session_timeout_ms
                    ),
                    max_session_timeout_ms: pick!(
                        group_max_session_timeout_ms,
                        d.max_session_timeout_ms
                    ),
                    max_size: pick!(group_max_size, d.max_size),
                    consumer_session_timeout_ms: pick!(
                        group_consumer_session_timeout_ms,
                        d.consumer_session_timeout_ms
                    ),
                    consumer_heartbeat_interval_ms: pick!(
                        group_consumer_heartbeat_interval_ms,
                        d.consumer_heartbeat_interval_ms
                    ),
                    durable_commits: pick!(flush_on_acks_all, true),
                    ..d
                }
            },
            transactions: karnak_coordinator::TxnConfig {
                max_timeout_ms: pick!(transaction_max_timeout_ms, 900_000),
                durable: pick!(flush_on_acks_all, true),
                id_expiration_ms: pick!(transactional_id_expiration_ms, 604_800_000).max(1),
            },
            transaction_cleanup_interval: std::time::Duration::from_millis(
                pick!(
                    transaction_abort_timed_out_transaction_cleanup_interval_ms,
                    10_000
                )
                .max(1),
            ),
            cluster: {
                let d = ClusterConfig::default();
                let ms = std::time::Duration::from_millis;
                ClusterConfig {
                    peers: match args.cluster_peers.or(file.cluster_peers) {
                        Some(p) => parse_peers(&p).context("--cluster-peers")?,
                        None => Default::default(),
                    },
                    cluster_addr: args.cluster_addr.or(file.cluster_addr),
                    rack: args.rack.or(file.rack),
                    default_replication_factor: args
                        .default_replication_factor
                        .or(file.default_replication_factor),
                    min_insync_replicas: pick!(min_insync_replicas, d.min_insync_replicas),
                    replica_lag_time_max: ms(pick!(
                        replica_lag_time_max_ms,
                        d.replica_lag_time_max.as_millis() as u64
                    )),
                    unclean_leader_election: pick!(
                        unclean_leader_election,
                        d.unclean_leader_election
                    ),
                    heartbeat_interval: ms(pick!(
                        broker_heartbeat_interval_ms,
                        d.heartbeat_interval.as_millis() as u64
                    )),
                    session_timeout: ms(pick!(
                        broker_session_timeout_ms,
                        d.session_timeout.as_millis() as u64
                    )),
                    auto_leader_rebalance: pick!(
                        auto_leader_rebalance_enable,
                        d.auto_leader_rebalance
                    ),
                    leader_imbalance_check_interval: std::time::Duration::from_secs(pick!(
                        leader_imbalance_check_interval_seconds,
                        d.leader_imbalance_check_interval.as_secs()
                    )),
                }
            },
        };
        if config.transactions.max_timeout_ms < 1 {
            bail!("transaction_max_timeout_ms must be at least 1");
        }
        if !(1..=1024).contains(&config.group_coordinator_shards) {
            bail!("group_coordinator_shards must be between 1 and 1024");
        }
        if config.groups.min_session_timeout_ms > config.groups.max_session_timeout_ms {
            bail!("group_min_session_timeout_ms is above group_max_session_timeout_ms");
        }
        if config.groups.consumer_heartbeat_interval_ms < 1
            || config.groups.consumer_heartbeat_interval_ms
                >= config.groups.consumer_session_timeout_ms
        {
            bail!(
                "group_consumer_heartbeat_interval_ms must be at least 1 and below group_consumer_session_timeout_ms"
            );
        }
        if config.num_partitions < 1 {
            bail!("num_partitions must be at least 1");
        }
        if config.node_id < 0 {
            bail!("node_id must not be negative");
        }
        config.cluster.validate(config.node_id)?;
        if config.cluster.is_multi_node()
            && let Some(l) = config
                .listeners
                .specs
                .iter()
                .find(|l| l.name == config.listeners.inter_broker)
            && l.protocol.sasl()
        {
            // Replica fetchers, transaction markers and remote SQL reads
            // dial other brokers in plaintext or with mutual TLS; they
            // have no SASL credentials of their own.
            bail!(
                "--inter-broker-listener-name {} is {}: brokers reach each other on a PLAINTEXT or SSL (mutual TLS) listener",
                l.name,
                l.protocol.name()
            );
        }
        if config.peer_tls()
            && config
                .tls
                .as_ref()
                .is_none_or(|t| t.truststore_file.is_none())
        {
            bail!(
                "the inter-broker listener {} is SSL: brokers check each other's certificates against --ssl-truststore-file; give it",
                config.listeners.inter_broker
            );
        }
        if config.socket_request_max_bytes < karnak_protocol::frame::MIN_REQUEST_BYTES
            || config.socket_request_max_bytes > i32::MAX as usize
        {
            bail!(
                "socket_request_max_bytes must be between 10 and {}",
                i32::MAX
            );
        }
        Ok(config)
    }
}

impl Config {
    /// Whether brokers use mutual TLS with each other: a cluster whose
    /// inter-broker listener is SSL (its Raft listener then is too).
    pub fn peer_tls(&self) -> bool {
        self.cluster.is_multi_node()
            && self
                .listeners
                .specs
                .iter()
                .any(|l| l.name == self.listeners.inter_broker && l.protocol.tls())
    }
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;

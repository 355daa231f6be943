//! The settings' sources: flags (with their `KARNAK_*` variables) and the
//! TOML file's keys, the same names in both.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Parser;
use serde::Deserialize;

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
    /// Kafka `max.connections`: connections served at once; past it, new connections are closed as soon as they are accepted, the open ones keep being served (the inter-broker listener of a cluster is exempt). [default: no limit]
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
    /// The largest message an SQL client may send (a query's text, a prepared statement's parameters); a larger one gets FATAL 54000 and its connection is closed. Postgres allows 1 GiB per message; this broker's SQL clients share its memory with its Kafka clients (CockroachDB's default is the same 16 MiB). [default: 16777216]
    #[arg(long, env = "KARNAK_SQL_MAX_MESSAGE_BYTES")]
    pub sql_max_message_bytes: Option<u64>,
    /// SQL authentication: `trust` (any user, no password, as a fresh Postgres on loopback) or `scram-sha-256` (the broker's users: the same SCRAM credentials Kafka clients log in with). [default: trust]
    #[arg(long, env = "KARNAK_SQL_AUTH")]
    pub sql_auth: Option<String>,
    /// `user:password` lines added to the broker's users at start, as --sasl-users-file (kept for compatibility; one user store serves Kafka and SQL).
    #[arg(long, env = "KARNAK_SQL_PASSWORD_FILE")]
    pub sql_password_file: Option<PathBuf>,
    /// TLS on the SQL port with the Kafka listeners' certificate (--ssl-certificate-file): `off`, `on` (for clients that ask, as Postgres `ssl=on`) or `require` (a connection without TLS is refused). [default: on when --ssl-certificate-file is given, else off]
    #[arg(long, env = "KARNAK_SQL_SSL")]
    pub sql_ssl: Option<String>,
    /// Memory SQL queries' sorts, aggregates and joins may hold at once, in bytes; past their share they spill to temporary files (the system temp dir), and a query that cannot spill fails with SQLSTATE 53200 instead of growing the broker. -1: no bound. [default: 536870912]
    #[arg(
        long,
        env = "KARNAK_SQL_MEMORY_LIMIT_BYTES",
        allow_negative_numbers = true
    )]
    pub sql_memory_limit_bytes: Option<i64>,
    /// Memory for partitions' newest records (those no Parquet face covers yet) kept decoded for every SQL query: decoded once, extended as they grow; one partition takes at most a quarter, and a full cache makes room only from tails unused for 10 s. 0: each query decodes them itself. [default: 268435456]
    #[arg(long, env = "KARNAK_SQL_TAIL_CACHE_BYTES")]
    pub sql_tail_cache_bytes: Option<u64>,
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
    /// Kafka `queued.max.request.bytes`: bytes of requests read and not yet handled, over all connections; past it, connections wait before reading their next request's body (a request larger than this is read alone). -1: no bound. [default: 268435456]
    #[arg(
        long,
        env = "KARNAK_QUEUED_MAX_REQUEST_BYTES",
        allow_negative_numbers = true
    )]
    pub queued_max_request_bytes: Option<i64>,
    /// Free bytes kept in the data dir's file system (as Redpanda's `storage_min_free_bytes`): a client's produce that would go below it gets KAFKA_STORAGE_ERROR, so the metadata log, committed offsets, transaction markers and topic deletions still have room. 0: off. [default: 5 % of the file system, at most 1 GiB]
    #[arg(long, env = "KARNAK_LOG_DIR_MIN_FREE_BYTES")]
    pub log_dir_min_free_bytes: Option<u64>,
    /// Kafka `connections.max.idle.ms`: a connection with no request read or answered for this long is closed. -1: never. [default: 600000]
    #[arg(
        long,
        env = "KARNAK_CONNECTIONS_MAX_IDLE_MS",
        allow_negative_numbers = true
    )]
    pub connections_max_idle_ms: Option<i64>,
    /// Time a client has to send the whole of a request once its first byte arrived; a slower one (a slowloris) is disconnected. Time waiting under --queued-max-request-bytes does not count. Bounds an SQL client's message the same way (the time between its messages is not bounded, as in Postgres). [default: 30000, Kafka clients' request.timeout.ms: such a client has given up on the request by then]
    #[arg(long, env = "KARNAK_REQUEST_READ_TIMEOUT_MS")]
    pub request_read_timeout_ms: Option<u64>,
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
    /// Build the SQL face (`<base>.parquet`: Parquet with typed value columns) of sealed segments; off: scans decode the log. [default: true when SQL is on]
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
pub(super) struct FileConfig {
    pub(super) data_dir: Option<PathBuf>,
    pub(super) kafka_addr: Option<SocketAddr>,
    pub(super) advertised_kafka_addr: Option<String>,
    pub(super) listeners: Option<String>,
    pub(super) advertised_listeners: Option<String>,
    pub(super) listener_security_protocol_map: Option<String>,
    pub(super) inter_broker_listener_name: Option<String>,
    pub(super) ssl_certificate_file: Option<PathBuf>,
    pub(super) ssl_key_file: Option<PathBuf>,
    pub(super) ssl_client_auth: Option<String>,
    pub(super) ssl_truststore_file: Option<PathBuf>,
    pub(super) ssl_principal_mapping_rules: Option<String>,
    pub(super) sasl_enabled_mechanisms: Option<String>,
    pub(super) sasl_users_file: Option<PathBuf>,
    pub(super) connections_max_reauth_ms: Option<u64>,
    pub(super) connection_failed_authentication_delay_ms: Option<u64>,
    pub(super) failed_authentication_rate_per_ip: Option<f64>,
    pub(super) sasl_oauthbearer_jwks_endpoint_url: Option<String>,
    pub(super) sasl_oauthbearer_expected_issuer: Option<String>,
    pub(super) sasl_oauthbearer_expected_audience: Option<String>,
    pub(super) sasl_oauthbearer_sub_claim_name: Option<String>,
    pub(super) sasl_oauthbearer_clock_skew_seconds: Option<u64>,
    pub(super) authorizer: Option<String>,
    pub(super) super_users: Option<String>,
    pub(super) quota_window_num: Option<u32>,
    pub(super) quota_window_size_seconds: Option<u64>,
    pub(super) max_connections: Option<usize>,
    pub(super) max_connections_per_ip: Option<usize>,
    pub(super) max_connection_creation_rate: Option<f64>,
    pub(super) queued_max_request_bytes: Option<i64>,
    pub(super) log_dir_min_free_bytes: Option<u64>,
    pub(super) connections_max_idle_ms: Option<i64>,
    pub(super) request_read_timeout_ms: Option<u64>,
    pub(super) allow_everyone_if_no_acl_found: Option<bool>,
    pub(super) admin_addr: Option<SocketAddr>,
    pub(super) sql_addr: Option<SocketAddr>,
    pub(super) sql_enabled: Option<bool>,
    pub(super) sql_memory_limit_bytes: Option<i64>,
    pub(super) sql_tail_cache_bytes: Option<u64>,
    pub(super) sql_max_connections: Option<usize>,
    pub(super) sql_max_message_bytes: Option<u64>,
    pub(super) sql_auth: Option<String>,
    pub(super) sql_password_file: Option<PathBuf>,
    pub(super) sql_ssl: Option<String>,
    pub(super) node_id: Option<i32>,
    pub(super) cluster_id: Option<String>,
    pub(super) num_partitions: Option<i32>,
    pub(super) auto_create_topics: Option<bool>,
    pub(super) socket_request_max_bytes: Option<usize>,
    pub(super) log_segment_bytes: Option<u64>,
    pub(super) log_preallocate_ahead_bytes: Option<u64>,
    pub(super) log_roll_ms: Option<u64>,
    pub(super) log_flush_interval_messages: Option<u64>,
    pub(super) log_flush_interval_ms: Option<u64>,
    pub(super) log_retention_check_interval_ms: Option<u64>,
    pub(super) offsets_retention_minutes: Option<u64>,
    pub(super) offsets_retention_check_interval_ms: Option<u64>,
    pub(super) log_cleaner_enable: Option<bool>,
    pub(super) log_cleaner_io_max_bytes_per_second: Option<u64>,
    pub(super) log_cleaner_dedupe_buffer_size: Option<usize>,
    pub(super) log_cleaner_backoff_ms: Option<u64>,
    pub(super) sql_arrow_faces: Option<bool>,
    pub(super) flush_on_acks_all: Option<bool>,
    pub(super) log_message_timestamp_type: Option<String>,
    pub(super) group_coordinator_shards: Option<u32>,
    pub(super) group_initial_rebalance_delay_ms: Option<u64>,
    pub(super) group_min_session_timeout_ms: Option<i32>,
    pub(super) group_max_session_timeout_ms: Option<i32>,
    pub(super) group_max_size: Option<usize>,
    pub(super) group_consumer_session_timeout_ms: Option<i32>,
    pub(super) group_consumer_heartbeat_interval_ms: Option<i32>,
    pub(super) transaction_max_timeout_ms: Option<i32>,
    pub(super) transaction_abort_timed_out_transaction_cleanup_interval_ms: Option<u64>,
    pub(super) transactional_id_expiration_ms: Option<i64>,
    pub(super) cluster_peers: Option<String>,
    pub(super) cluster_addr: Option<SocketAddr>,
    pub(super) rack: Option<String>,
    pub(super) default_replication_factor: Option<i16>,
    pub(super) min_insync_replicas: Option<i32>,
    pub(super) replica_lag_time_max_ms: Option<u64>,
    pub(super) unclean_leader_election: Option<bool>,
    pub(super) broker_heartbeat_interval_ms: Option<u64>,
    pub(super) broker_session_timeout_ms: Option<u64>,
    pub(super) auto_leader_rebalance_enable: Option<bool>,
    pub(super) leader_imbalance_check_interval_seconds: Option<u64>,
}

pub(super) fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

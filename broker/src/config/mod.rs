//! Broker configuration: command-line flags, `KARNAK_*` environment variables
//! and an optional TOML file, in that order of precedence, over defaults that
//! let `karnak` with no flags serve Kafka on 127.0.0.1:9092 with data in ./data.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};

use crate::cluster::config::{ClusterConfig, parse_peers};

mod args;

pub use args::Args;
use args::{FileConfig, read_file};

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
    /// `--queued-max-request-bytes` (None: no bound).
    pub queued_max_request_bytes: Option<usize>,
    /// `--log-dir-min-free-bytes` (None: 5 % of the file system, at most 1 GiB).
    pub log_dir_min_free_bytes: Option<u64>,
    /// `--connections-max-idle-ms` (None: never).
    pub connections_max_idle: Option<std::time::Duration>,
    pub request_read_timeout: std::time::Duration,
    pub flush_on_acks_all: bool,
    pub log_retention_check_interval: std::time::Duration,
    /// Build SQL faces of sealed segments (only with SQL on).
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
        let sql_memory_limit = match pick!(sql_memory_limit_bytes, 512 << 20) {
            -1 => None,
            n if n > 0 => Some(usize::try_from(n).context("--sql-memory-limit-bytes")?),
            n => bail!("--sql-memory-limit-bytes {n}: expected a positive size or -1"),
        };
        let sql_tail_cache_bytes = usize::try_from(pick!(sql_tail_cache_bytes, 256 << 20))
            .context("--sql-tail-cache-bytes")?;
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
        // Kafka requests and SQL messages alike.
        let request_read_timeout = match pick!(request_read_timeout_ms, 30_000) {
            0 => bail!("--request-read-timeout-ms must be at least 1"),
            n => std::time::Duration::from_millis(n),
        };
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
                max_message_bytes: pick!(sql_max_message_bytes, 16 << 20),
                message_read_timeout: request_read_timeout,
                auth: sql_auth,
                ssl: sql_ssl,
                default_partitions: pick!(num_partitions, 1),
                memory_limit: sql_memory_limit,
                tail_cache_bytes: sql_tail_cache_bytes,
            }),
            node_id: pick!(node_id, 0),
            cluster_id: args.cluster_id.or(file.cluster_id),
            num_partitions: pick!(num_partitions, 1),
            auto_create_topics: pick!(auto_create_topics, true),
            socket_request_max_bytes: pick!(
                socket_request_max_bytes,
                karnak_protocol::frame::DEFAULT_MAX_REQUEST_BYTES
            ),
            queued_max_request_bytes: match pick!(queued_max_request_bytes, 256 << 20) {
                -1 => None,
                n if n > 0 => Some(usize::try_from(n).context("--queued-max-request-bytes")?),
                n => bail!("--queued-max-request-bytes {n}: expected a positive size or -1"),
            },
            log_dir_min_free_bytes: args.log_dir_min_free_bytes.or(file.log_dir_min_free_bytes),
            connections_max_idle: match pick!(connections_max_idle_ms, 600_000) {
                -1 => None,
                n if n > 0 => Some(std::time::Duration::from_millis(n as u64)),
                n => bail!("--connections-max-idle-ms {n}: expected a positive time or -1"),
            },
            request_read_timeout,
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

#[cfg(test)]
mod tests;

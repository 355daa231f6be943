//! The SQL face of Karnak: a Postgres-wire server whose tables are topics.
//!
//! `psql -h 127.0.0.1 -p 5433` lists topics as tables in `public` and
//! queries them with DataFusion, reading the same partition logs the Kafka
//! side serves: sealed segments through their Parquet faces
//! (`karnak_storage::face`), the rest decoded from the log
//! (`karnak_storage::columnar`). Depends on
//! storage only, never on the broker: INSERTs go through the [`Producer`]
//! the broker hands in (its own produce path).

pub mod access;
pub mod auth;
pub mod catalog;
pub mod compat;
pub mod ddl;
mod decode;
pub mod errors;
mod faces;
pub mod insert;
/// JSON values as typed columns (storage builds them into segment faces).
pub use karnak_storage::value_format::json;
pub mod message_guard;
pub mod pushdown;
pub mod remote;
pub mod server;
pub mod session;
pub mod table;
pub mod tail;
pub mod visible;

use std::net::SocketAddr;
use std::sync::Arc;

use std::num::NonZeroUsize;

use datafusion::execution::context::SessionConfig;
use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::SessionContext;
use karnak_storage::LogManager;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use insert::{ProduceError, Producer};

#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error("binding the SQL listener on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("setting up the SQL catalog: {0}")]
    Catalog(String),
}

#[derive(Debug, Clone)]
pub struct SqlConfig {
    pub addr: SocketAddr,
    pub max_connections: usize,
    /// The largest frontend message (a query's text, a Bind's parameters)
    /// read from a client; a larger one closes its connection (FATAL 54000).
    pub max_message_bytes: u64,
    /// Time from a message's first byte to its last (a slowloris is
    /// disconnected); the time between messages is not bounded.
    pub message_read_timeout: std::time::Duration,
    pub auth: auth::SqlAuthMethod,
    pub ssl: auth::SqlSsl,
    /// Partitions of a topic made by `CREATE TABLE` without `partitions`.
    pub default_partitions: i32,
    /// Memory all queries' sorts, aggregates and joins may hold at once;
    /// past their share they spill to temporary files, and a query that
    /// cannot spill fails with `53200 out of memory` (None: no bound).
    pub memory_limit: Option<usize>,
    /// Bytes of partitions' newest records kept decoded for every query
    /// (the tail cache; 0: none).
    pub tail_cache_bytes: usize,
}

/// The DataFusion context every connection shares: topics in
/// `datafusion.public`, `information_schema`, and the `pg_catalog` tables
/// and functions psql and drivers query. Without a producer the topics
/// are read-only; with `remote` (a cluster) partitions with no replica
/// here are fetched from their leaders.
pub fn session_context(
    logs: Arc<LogManager>,
    producer: Option<Arc<dyn Producer>>,
    remote: Option<Arc<dyn remote::RemotePartitions>>,
    memory_limit: Option<usize>,
    tail_cache_bytes: usize,
) -> Result<Arc<SessionContext>, SqlError> {
    let mut config = SessionConfig::new()
        .with_information_schema(true)
        .with_default_catalog_and_schema("datafusion", "public");
    let mut runtime = RuntimeEnvBuilder::new();
    if let Some(limit) = memory_limit {
        // What each sort keeps back for merging its spills (10 MB by
        // default): a sixteenth of a small limit, so sorts still run there.
        let e = &mut config.options_mut().execution;
        e.sort_spill_reservation_bytes = e.sort_spill_reservation_bytes.min(limit / 16);
    }
    if let Some(limit) = memory_limit {
        // Fair shares between the spilling operators of concurrent queries;
        // an error names the largest consumers.
        runtime = runtime.with_memory_pool(Arc::new(TrackConsumersPool::new(
            FairSpillPool::new(limit),
            NonZeroUsize::MIN.saturating_add(4),
        )));
    }
    let runtime = runtime
        .build_arc()
        .map_err(|e| SqlError::Catalog(format!("the query runtime: {e}")))?;
    let ctx = SessionContext::new_with_config_rt(config, runtime);
    let catalog = ctx
        .catalog("datafusion")
        .ok_or_else(|| SqlError::Catalog("no default catalog".into()))?;
    catalog
        .register_schema(
            "public",
            Arc::new(catalog::TopicSchema::new(
                logs,
                producer,
                remote,
                Arc::new(tail::TailCache::new(tail_cache_bytes)),
            )),
        )
        .map_err(|e| SqlError::Catalog(e.to_string()))?;
    datafusion_postgres::datafusion_pg_catalog::setup_pg_catalog(
        &ctx,
        "datafusion",
        datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider,
    )
    .map_err(|e| SqlError::Catalog(e.to_string()))?;
    compat::register_functions(&ctx);
    Ok(Arc::new(ctx))
}

/// Who may connect and what they may do, from the broker.
#[derive(Default)]
pub struct SqlSecurity {
    pub auth: auth::SqlAuth,
    /// Offered to clients that ask for TLS (`--sql-ssl on|require`).
    pub tls: Option<datafusion_postgres::pgwire::tokio::TlsAcceptor>,
    /// The broker's ACLs (`--authorizer acl`).
    pub access: Option<Arc<dyn access::TopicAccess>>,
}

/// Binds the listener (so a bad address fails the start) and returns the
/// future that serves it until `stop`.
pub async fn start(
    cfg: &SqlConfig,
    logs: Arc<LogManager>,
    producer: Arc<dyn Producer>,
    admin: Arc<dyn ddl::TopicAdmin>,
    remote: Option<Arc<dyn remote::RemotePartitions>>,
    security: SqlSecurity,
    stop: watch::Receiver<bool>,
) -> Result<(SocketAddr, impl Future<Output = ()> + Send + 'static), SqlError> {
    let listener = TcpListener::bind(cfg.addr)
        .await
        .map_err(|source| SqlError::Bind {
            addr: cfg.addr,
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| SqlError::Bind {
        addr: cfg.addr,
        source,
    })?;
    let handlers = Arc::new(server::Handlers::new(
        session_context(
            logs.clone(),
            Some(producer),
            remote,
            cfg.memory_limit,
            cfg.tail_cache_bytes,
        )?,
        security.auth,
        cfg.ssl,
        ddl::DdlHook::new(admin, cfg.default_partitions),
        security.access.map(access::AccessHook::new),
    ));
    let tls = match cfg.ssl {
        auth::SqlSsl::Off => None,
        _ => security.tls,
    };
    Ok((
        bound,
        server::serve(
            listener,
            handlers,
            tls,
            cfg.max_connections,
            cfg.max_message_bytes,
            cfg.message_read_timeout,
            stop,
        ),
    ))
}

//! The Karnak broker: the whole `karnak` program as a library (`main.rs`
//! only parses the command line), so the deterministic simulation and
//! fuzz targets can drive the same code.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tracing::info;

mod authz;
mod broker;
mod cluster;
mod config;
mod config_synonyms;
mod config_throttles;
mod configs;
mod connection;
mod fetch_session;
pub mod fuzz;
mod handlers;
mod listeners;
mod metrics;
pub mod peer_net;
mod quotas;
mod replication;
mod response;
mod sasl;
mod server;
mod sql;
mod sql_remote;
mod tls;
mod tls_principal;
mod topics;

use broker::Broker;
pub use config::Args;
use config::Config;

/// How often partitions with `flush.ms` set are checked for a due fsync.
const FLUSH_TICK: Duration = Duration::from_millis(200);
const MAINTENANCE_TICK: Duration = Duration::from_millis(500);

/// Large blocks mapped without reserve: a request claiming billions of
/// elements must not abort the process (see karnak_protocol::alloc).
/// Here rather than in main.rs so the unit tests run on it too.
#[global_allocator]
static ALLOCATOR: karnak_protocol::alloc::Allocator = karnak_protocol::alloc::Allocator;

/// Runs the broker until SIGTERM or Ctrl-C, then shuts it down cleanly.
pub fn main(args: Args) -> anyhow::Result<()> {
    // Logging first: loading the configuration may warn (unused TLS or SASL files).
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KARNAK_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=off")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = Config::load(args)?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(run(config, None))
}

/// A broker run inside another program (the deterministic simulation):
/// its one listener's connections come from `connections` instead of a
/// socket, and those of its cluster listener (a node of a cluster) from
/// `cluster_connections`; it dials its peers through
/// [`peer_net::set_dialer`]'s dialer. No metrics endpoint is served, no
/// signal is listened for, and it shuts down cleanly when `shutdown`
/// completes.
pub struct Embedded {
    pub connections: tokio::sync::mpsc::Receiver<(Box<dyn Duplex>, std::net::SocketAddr)>,
    pub cluster_connections: Option<peer_net::PeerConnections>,
    pub shutdown: std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>,
}

pub use connection::Duplex;

/// Runs a broker configured by `args` (as on the command line) inside the
/// caller's runtime until `embedded.shutdown`; see [`Embedded`].
pub async fn run_embedded(args: Args, embedded: Embedded) -> anyhow::Result<()> {
    run(Config::load(args)?, Some(embedded)).await
}

async fn run(config: Config, embedded: Option<Embedded>) -> anyhow::Result<()> {
    karnak_storage::create_dir_durable(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    if config.cluster.is_multi_node()
        && config.cluster_id.is_none()
        && !config.data_dir.join("meta.properties").exists()
    {
        // Each node would mint its own id and refuse the others.
        anyhow::bail!(
            "a new cluster needs --cluster-id, the same on every node (any string; `uuidgen` makes one)"
        );
    }
    let cluster_id = broker::load_cluster_id(&config.data_dir, config.cluster_id.as_deref())?;
    let started = std::time::Instant::now();
    let logs = karnak_storage::LogManager::open_with_cleaner(
        &config.data_dir,
        config.log_defaults.clone(),
        config.cleaner.clone(),
    )
    .with_context(|| format!("opening logs in {}", config.data_dir.display()))?;
    let logs = Arc::new(logs);
    info!(
        topics = logs.topics().len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "loaded logs from {}",
        config.data_dir.display()
    );
    let tls = config
        .tls
        .clone()
        .map(tls::Tls::new)
        .transpose()
        .context("setting up TLS for the SSL listeners")?;
    // Brokers of a cluster whose inter-broker listener is SSL use mutual
    // TLS with each other, there and on the cluster (Raft) listener.
    let peer_tls = match (&tls, config.peer_tls()) {
        (Some(t), true) => Some(Arc::new(t.peer().context("TLS between brokers")?)),
        _ => None,
    };
    let mut listening = Vec::new();
    let is_embedded = embedded.is_some();
    let (mut embedded_connections, peer_connections, shutdown) = match embedded {
        Some(e) => {
            anyhow::ensure!(
                config.listeners.specs.len() == 1,
                "an embedded broker has one listener"
            );
            (Some(e.connections), e.cluster_connections, e.shutdown)
        }
        None => (None, None, Box::pin(shutdown_signal()) as _),
    };
    for spec in &config.listeners.specs {
        let (socket, addr) = match embedded_connections.take() {
            Some(rx) => (server::Acceptor::Embedded(rx), spec.bind),
            None => {
                let socket = TcpListener::bind(spec.bind).await.with_context(|| {
                    format!("binding the Kafka listener {} on {}", spec.name, spec.bind)
                })?;
                let addr = socket.local_addr()?;
                (server::Acceptor::Tcp(socket), addr)
            }
        };
        let advertised = spec
            .advertised
            .clone()
            .unwrap_or_else(|| (addr.ip().to_string(), addr.port()));
        listening.push(server::Listening {
            socket,
            info: Arc::new(listeners::Bound {
                name: spec.name.clone(),
                protocol: spec.protocol,
                addr,
                advertised,
            }),
            tls: match (&peer_tls, &tls) {
                _ if !spec.protocol.tls() => None,
                // Other brokers come in here: their certificates are required.
                (Some(p), _) if spec.name == config.listeners.inter_broker => {
                    Some(p.acceptor.clone())
                }
                (_, Some(t)) => Some(tokio_rustls::TlsAcceptor::from(t.config.clone())),
                (_, None) => None,
            },
        });
    }
    if let Some(t) = &tls {
        t.spawn_reloader();
    }
    let bound: Vec<Arc<listeners::Bound>> = listening.iter().map(|l| l.info.clone()).collect();
    if !is_embedded {
        metrics::install(config.admin_addr)?;
    }
    metrics::record_log_end_offsets(&logs);
    let (stop_tx, stopping) = tokio::sync::watch::channel(false);
    let cluster = cluster::ClusterNode::start(
        &config.cluster,
        cluster::node::Joining {
            node_id: config.node_id,
            cluster_id: &cluster_id,
            peer_tls,
            peer_connections,
        },
        &config.data_dir,
        bound.iter().map(|l| l.registration()).collect(),
        logs.opened_after_crash(),
        stopping.clone(),
    )
    .await?;
    let replicas = replication::ReplicaManager::new(
        config.node_id,
        logs.clone(),
        cluster.clone(),
        config.cluster.replica_lag_time_max,
        config.cluster.min_insync_replicas,
        replication::throttle::Throttles::open(&logs.data_dir().join("__karnak_meta"))
            .context("opening the replication throttles")?,
        config.listeners.inter_broker.clone(),
    );
    let groups = Arc::new(karnak_coordinator::GroupCoordinator::new(
        config.group_coordinator_shards,
        config.groups.clone(),
        cluster::shards::shard_leases(cluster.clone(), &config.data_dir),
        Some(Arc::new(cluster::shards::ShardLogReplication(
            replicas.clone(),
        ))),
    ));
    let markers = Arc::new(cluster::markers::BrokerMarkers::new(cluster.peer_tls()));
    let txns = Arc::new(karnak_coordinator::TransactionCoordinator::new(
        groups.clone(),
        markers.clone(),
        cluster::shards::producer_ids(cluster.clone(), &config.data_dir, groups.shard_count())?,
        config.transactions.clone(),
    ));
    tokio::spawn(
        txns.clone()
            .run_timeouts(config.transaction_cleanup_interval, stopping.clone()),
    );
    let reconciler = Arc::new(cluster::reconcile::Reconciler::new(
        logs.clone(),
        config.node_id,
        replicas.clone(),
    ));
    let sasl = config.sasl.clone();
    let broker = Arc::new(Broker {
        quotas: quotas::QuotaManager::new(config.quotas.clone()),
        request_memory: connection::RequestMemory::new(config.queued_max_request_bytes),
        free_space: karnak_storage::FreeSpace::new(&config.data_dir, config.log_dir_min_free_bytes),
        shard_loads: Default::default(),
        sasl,
        groups,
        txns,
        config,
        logs,
        cluster_id,
        listeners: bound,
        stopping: stopping.clone(),
        fetch_sessions: Default::default(),
        reconciler,
        replicas,
        cluster,
    });
    markers.attach(&broker);
    {
        let b = Arc::downgrade(&broker);
        broker.reconciler.on_applied(Arc::new(move |meta| {
            if let Some(b) = b.upgrade() {
                cluster::shards::follow(&b, meta);
            }
        }));
    }
    if broker.cluster.fresh {
        topics::adopt_strays(&broker).await?;
    }
    let shards = broker.groups.shard_count();
    if broker.config.cluster.is_multi_node() {
        // Placed once enough brokers are up; groups wait (NOT_COORDINATOR).
        let b = broker.clone();
        tokio::spawn(async move {
            if let Err(e) = cluster::shards::ensure_coordinator_topic(&b, shards).await {
                tracing::error!(error = %e, "the coordinator shards could not be placed");
            }
        });
    } else {
        cluster::shards::ensure_coordinator_topic(&broker, shards)
            .await
            .context("placing the coordinator shards")?;
    }
    // Roles known before the first request: no NOT_LEADER_OR_FOLLOWER at
    // start, and the shards led here replayed.
    let first = broker.clone();
    karnak_storage::blocking::spawn(move || first.reconciler.run(first.cluster.metadata())).await?;
    cluster::shards::wait_loaded(&broker).await;
    sasl::bootstrap(&broker).await?;
    tokio::spawn(
        broker
            .reconciler
            .clone()
            .follow_changes(broker.cluster.watch(), stopping.clone()),
    );
    // Kafka checks for lagging followers every replica.lag.time.max.ms / 2.
    let shrinker = broker.replicas.clone();
    let every = (broker.config.cluster.replica_lag_time_max / 2).max(Duration::from_millis(100));
    let mut stop = stopping.clone();
    let mut background = vec![tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = tick.tick() => shrinker.shrink_lagging(),
                _ = stop.changed() => return,
            }
        }
    })];
    // Said once registered: until then the listener only queues connections.
    let listed: Vec<String> = broker
        .listeners
        .iter()
        .map(|l| {
            let kind = if l.name == l.protocol.name() {
                l.name.clone()
            } else {
                format!("{} {}", l.name, l.protocol.name())
            };
            format!(
                "{} ({kind}, advertised {}:{})",
                l.addr, l.advertised.0, l.advertised.1
            )
        })
        .collect();
    info!(
        node_id = broker.node_id(),
        cluster_id = %broker.cluster_id,
        "Karnak serving Kafka on {}, metrics on http://{}/metrics",
        listed.join(", "),
        broker.config.admin_addr
    );
    if let Some(sql) = &broker.config.sql {
        let remote = Arc::new(sql_remote::BrokerRemote::new(broker.clone()));
        let producer = Arc::new(sql::BrokerProducer {
            broker: broker.clone(),
            remote: remote.clone(),
        });
        let admin = Arc::new(sql::BrokerTopicAdmin(broker.clone()));
        let auth = match sql.auth {
            karnak_sql::auth::SqlAuthMethod::Trust => karnak_sql::auth::SqlAuth::Trust,
            karnak_sql::auth::SqlAuthMethod::ScramSha256 => {
                karnak_sql::auth::SqlAuth::ScramSha256(Arc::new(sql::SqlLogins {
                    cluster: broker.cluster.clone(),
                    secret: sasl::scram::random_bytes(32),
                }))
            }
        };
        let security = karnak_sql::SqlSecurity {
            auth,
            tls: match (&tls, sql.ssl) {
                (_, karnak_sql::auth::SqlSsl::Off) | (None, _) => None,
                (Some(t), _) => Some(tokio_rustls::TlsAcceptor::from(
                    t.sql_config().context("TLS for the SQL port")?,
                )),
            },
            access: broker.config.authorizer.as_ref().map(|config| {
                Arc::new(sql::SqlAcls {
                    config: config.clone(),
                    cluster: broker.cluster.clone(),
                    trust: sql.auth == karnak_sql::auth::SqlAuthMethod::Trust,
                }) as Arc<dyn karnak_sql::access::TopicAccess>
            }),
        };
        let auth = format!(
            "auth {:?}, ssl {}",
            security.auth,
            match sql.ssl {
                karnak_sql::auth::SqlSsl::Off => "off",
                karnak_sql::auth::SqlSsl::On => "on",
                karnak_sql::auth::SqlSsl::Require => "required",
            }
        );
        let (bound, serve) = karnak_sql::start(
            sql,
            broker.logs.clone(),
            producer,
            admin,
            Some(remote as Arc<dyn karnak_sql::remote::RemotePartitions>),
            security,
            stopping.clone(),
        )
        .await
        .context("starting the SQL gateway")?;
        info!(
            "Karnak serving SQL (Postgres wire) on {bound}: psql -h {} -p {} ({auth})",
            bound.ip(),
            bound.port()
        );
        tokio::spawn(serve);
    }

    let flusher = broker.clone();
    let mut stop = stopping.clone();
    background.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(FLUSH_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for n in 0u64.. {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            let b = flusher.clone();
            let _ = karnak_storage::blocking::spawn(move || {
                b.logs.flush_due(handlers::now_ms());
                // The log-end-offset gauges, once a second here rather than
                // per produce request (a label lookup and two allocations
                // per partition on the hot path).
                if n % 5 == 0 {
                    metrics::record_log_end_offsets(&b.logs);
                }
                // Kafka's replica.high.watermark.checkpoint.interval.ms (5 s).
                if n % 25 == 0
                    && let Err(e) = b.logs.checkpoint_high_watermarks()
                {
                    tracing::error!(error = %e, "writing the high-watermark checkpoint");
                }
            })
            .await;
        }
    }));
    background.push(spawn_log_maintenance(broker.clone(), stopping));

    server::run(listening, broker, stop_tx, shutdown, background).await
}

/// Retention, committed offsets' expiry, and the SQL faces of newly sealed segments: slow file work
/// on one blocking thread at a time, off the produce path.
fn spawn_log_maintenance(
    broker: Arc<Broker>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let retention_every = broker.config.log_retention_check_interval;
    let offsets_every = broker.config.offsets_retention_check_interval;
    let offsets_retention_ms = broker.config.offsets_retention_ms;
    let faces = broker.config.arrow_faces;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(MAINTENANCE_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_retention = tokio::time::Instant::now();
        let mut last_offsets = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            let retention = last_retention.elapsed() >= retention_every;
            if retention {
                last_retention = tokio::time::Instant::now();
            }
            let offsets = last_offsets.elapsed() >= offsets_every;
            if offsets {
                last_offsets = tokio::time::Instant::now();
            }
            let b = broker.clone();
            let _ = karnak_storage::blocking::spawn(move || {
                if retention {
                    let n = b.logs.enforce_retention(handlers::now_ms());
                    if n > 0 {
                        info!("retention deleted {n} segments");
                    }
                }
                if offsets {
                    let n = b
                        .groups
                        .expire_offsets(handlers::now_ms(), offsets_retention_ms);
                    if n > 0 {
                        info!("expired {n} committed offsets (offsets.retention.minutes)");
                    }
                }
                if faces {
                    // A few segments per tick, so retention is never held up long.
                    b.logs.attach_faces(4, &b.free_space);
                }
            })
            .await;
        }
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot listen for SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => info!("received Ctrl-C"),
        _ = term.recv() => info!("received SIGTERM"),
    }
}

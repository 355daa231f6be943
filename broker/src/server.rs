//! The Kafka listeners: each accepts connections (an SSL one completes the
//! TLS handshake first) and hands them to `connection::serve`; on shutdown
//! they stop accepting, connections answer what they have read, then every
//! log is closed cleanly.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::broker::Broker;
use crate::connection::{self, Duplex, Stream};
use crate::listeners::Bound;
use crate::quotas::{QuotaManager, Refused};

/// A bound listener, ready to accept: with the TLS acceptor of an SSL one.
pub struct Listening {
    pub socket: Acceptor,
    pub info: Arc<Bound>,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Where a listener's connections come from: its socket, or (a broker
/// embedded in the deterministic simulation) whoever holds the sender.
pub enum Acceptor {
    Tcp(TcpListener),
    Embedded(mpsc::Receiver<(Box<dyn Duplex>, SocketAddr)>),
}

/// An accepted connection, before TLS.
enum Conn {
    Tcp(TcpStream),
    Embedded(Box<dyn Duplex>, SocketAddr),
}

impl Acceptor {
    async fn accept(&mut self) -> std::io::Result<(Conn, SocketAddr)> {
        match self {
            Acceptor::Tcp(l) => l.accept().await.map(|(s, peer)| (Conn::Tcp(s), peer)),
            Acceptor::Embedded(rx) => match rx.recv().await {
                Some((s, peer)) => Ok((Conn::Embedded(s, peer), peer)),
                // Nothing more will come: wait to be stopped.
                None => std::future::pending().await,
            },
        }
    }
}

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// An accepted socket, with what its listener gives it and its place
/// under `max.connections`.
type Accepted = (
    Conn,
    Arc<Bound>,
    Option<tokio_rustls::TlsAcceptor>,
    Option<OwnedSemaphorePermit>,
);

/// Accepts on one listener until the receiver is gone (or the task is
/// aborted: the socket closes with it). Past `max.connections` a new
/// connection is closed as soon as it is accepted: the client sees it at
/// once and retries with its backoff, while the connections already open
/// are untouched (waiting in the backlog instead would leave clients
/// hanging until their connect timeout). Under
/// `max.connection.creation.rate` it paces its accepts.
async fn accept_loop(
    mut l: Listening,
    tx: mpsc::Sender<Accepted>,
    quotas: Arc<QuotaManager>,
    exempt: bool,
) {
    loop {
        match l.socket.accept().await {
            Ok((stream, peer)) => {
                let permit = match &quotas.connection_permits {
                    Some(s) if !exempt => match s.clone().try_acquire_owned() {
                        Ok(p) => Some(p),
                        Err(_) => {
                            debug!(%peer, listener = %l.info.name, "max.connections reached: closing a new connection");
                            metrics::counter!(crate::metrics::CONNECTION_ERRORS, "reason" => "max_connections")
                                .increment(1);
                            drop(stream);
                            continue;
                        }
                    },
                    _ => None,
                };
                if tx
                    .send((stream, l.info.clone(), l.tls.clone(), permit))
                    .await
                    .is_err()
                {
                    return;
                }
                let delay = quotas.accept_delay();
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
            }
            Err(e) => {
                // EMFILE and friends: keep serving the connections we have.
                warn!(listener = %l.info.name, "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// One accepted connection: the TLS handshake where the listener has TLS,
/// then the Kafka protocol.
async fn connection(
    (stream, info, tls, _permit): Accepted,
    broker: Arc<Broker>,
    stop: watch::Receiver<bool>,
) {
    let peer = match &stream {
        Conn::Tcp(s) => match s.peer_addr() {
            Ok(peer) => peer,
            Err(_) => return,
        },
        Conn::Embedded(_, peer) => *peer,
    };
    // max.connections.per.ip and the address's connection_creation_rate.
    let _slot = match broker.quotas.admit(&broker.cluster.metadata(), peer.ip()) {
        Ok(slot) => slot,
        Err(why) => {
            debug!(%peer, listener = %info.name, ?why, "connection refused");
            let reason = match why {
                Refused::PerIpLimit => "max_connections_per_ip",
                Refused::IpCreationRate(_) => "connection_creation_rate",
            };
            metrics::counter!(crate::metrics::CONNECTION_ERRORS, "reason" => reason).increment(1);
            if let Refused::IpCreationRate(delay) = why {
                // Held unread, then closed: a client retrying at once is
                // slowed to the quota (Kafka's delayed close).
                let mut stop = stop;
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.changed() => {}
                }
            }
            drop(stream);
            return;
        }
    };
    let stream = match (stream, &tls) {
        (Conn::Embedded(s, _), None) => Stream::Other(s),
        (Conn::Embedded(..), Some(_)) => {
            warn!(%peer, listener = %info.name, "TLS is not served to embedded connections");
            return;
        }
        (Conn::Tcp(stream), None) => {
            let _ = stream.set_nodelay(true);
            Stream::Plain(stream)
        }
        (Conn::Tcp(stream), Some(acceptor)) => {
            let _ = stream.set_nodelay(true);
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => Stream::Tls(Box::new(tls)),
                Ok(Err(e)) => {
                    // Plaintext on a TLS listener, a certificate refused, ...:
                    // this connection only.
                    warn!(%peer, listener = %info.name, "TLS handshake failed: {e}");
                    metrics::counter!(crate::metrics::CONNECTION_ERRORS, "reason" => "tls_handshake")
                        .increment(1);
                    return;
                }
                Err(_) => {
                    warn!(%peer, listener = %info.name, "TLS handshake not finished in {HANDSHAKE_TIMEOUT:?}");
                    metrics::counter!(crate::metrics::CONNECTION_ERRORS, "reason" => "tls_handshake")
                        .increment(1);
                    return;
                }
            }
        }
    };
    connection::serve(stream, peer, info, broker, stop).await;
}

/// How long shutdown waits for connections to finish in-flight requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for a background round (a flush, a retention
/// pass, a face build) to end before closing the logs.
const BACKGROUND_STOP_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn run(
    listeners: Vec<Listening>,
    broker: Arc<Broker>,
    stop_tx: watch::Sender<bool>,
    shutdown: impl std::future::Future<Output = ()>,
    mut background: Vec<tokio::task::JoinHandle<()>>,
) -> anyhow::Result<()> {
    let stop_rx = stop_tx.subscribe();
    let mut connections = JoinSet::new();
    let (tx, mut accepted) = mpsc::channel(64);
    let mut acceptors = JoinSet::new();
    // Brokers reach each other on the inter-broker listener of a cluster
    // whatever the client count (as Kafka protects it).
    let clustered = broker.config.cluster.peers.len() > 1;
    for l in listeners {
        let exempt = clustered && l.info.name == broker.inter_broker_listener();
        acceptors.spawn(accept_loop(l, tx.clone(), broker.quotas.clone(), exempt));
    }
    drop(tx);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(a) = accepted.recv() => {
                connections.spawn(connection(a, broker.clone(), stop_rx.clone()));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    info!(
        connections = connections.len(),
        "shutting down: answering in-flight requests"
    );
    acceptors.abort_all();
    drop(accepted);
    let _ = stop_tx.send(true);
    // Controlled shutdown first, so the cluster moves on while we drain:
    // requests waiting on a partition led elsewhere now end at once.
    broker.cluster.fence_for_shutdown().await;
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!("some connections did not finish within {DRAIN_TIMEOUT:?}; closing them");
        connections.abort_all();
    } else {
        info!("every connection answered and closed");
    }
    broker.replicas.stop_fetching();
    broker.cluster.stop_voter().await;
    // The timers (flush, retention, faces, ISR) saw the stop: each ends
    // after the round it is in, so none touches a log while they close,
    // and none keeps the broker (its open files) alive after it, as an
    // embedding process would see.
    let stopped = tokio::time::timeout(BACKGROUND_STOP_TIMEOUT, async {
        for task in &mut background {
            let _ = task.await;
        }
    })
    .await;
    if stopped.is_err() {
        warn!("a background task did not stop within {BACKGROUND_STOP_TIMEOUT:?}; aborting it");
        background.iter().for_each(|t| t.abort());
    }
    let b = broker.clone();
    karnak_storage::blocking::spawn(move || b.logs.shutdown()).await??;
    info!("all logs flushed and closed");
    Ok(())
}

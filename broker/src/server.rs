//! The Kafka listeners: each accepts connections (an SSL one completes the
//! TLS handshake first) and hands them to `connection::serve`; on shutdown
//! they stop accepting, connections answer what they have read, then every
//! log is closed cleanly.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::broker::Broker;
use crate::connection::{self, Stream};
use crate::listeners::Bound;

/// A bound listener, ready to accept: with the TLS acceptor of an SSL one.
pub struct Listening {
    pub socket: TcpListener,
    pub info: Arc<Bound>,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// An accepted socket, with what its listener gives it.
type Accepted = (TcpStream, Arc<Bound>, Option<tokio_rustls::TlsAcceptor>);

/// Accepts on one listener until the receiver is gone (or the task is
/// aborted: the socket closes with it).
async fn accept_loop(l: Listening, tx: mpsc::Sender<Accepted>) {
    loop {
        match l.socket.accept().await {
            Ok((stream, _)) => {
                if tx
                    .send((stream, l.info.clone(), l.tls.clone()))
                    .await
                    .is_err()
                {
                    return;
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
    (stream, info, tls): Accepted,
    broker: Arc<Broker>,
    stop: watch::Receiver<bool>,
) {
    let Ok(peer) = stream.peer_addr() else {
        return;
    };
    let _ = stream.set_nodelay(true);
    let stream = match &tls {
        None => Stream::Plain(stream),
        Some(acceptor) => {
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

pub async fn run(
    listeners: Vec<Listening>,
    broker: Arc<Broker>,
    stop_tx: watch::Sender<bool>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let stop_rx = stop_tx.subscribe();
    let mut connections = JoinSet::new();
    let (tx, mut accepted) = mpsc::channel(64);
    let mut acceptors = JoinSet::new();
    for l in listeners {
        acceptors.spawn(accept_loop(l, tx.clone()));
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
    let b = broker.clone();
    tokio::task::spawn_blocking(move || b.logs.shutdown()).await??;
    info!("all logs flushed and closed");
    Ok(())
}

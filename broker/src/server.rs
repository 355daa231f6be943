//! The Kafka listener: accepts connections, hands each to `connection::serve`,
//! and on shutdown stops accepting, lets connections answer what they have
//! read, then closes every log cleanly.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::broker::Broker;
use crate::connection;

/// How long shutdown waits for connections to finish in-flight requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn run(
    listener: TcpListener,
    broker: Arc<Broker>,
    stop_tx: watch::Sender<bool>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let stop_rx = stop_tx.subscribe();
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(connection::serve(stream, broker.clone(), stop_rx.clone()));
                }
                Err(e) => {
                    // EMFILE and friends: keep serving the connections we have.
                    warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    info!(
        connections = connections.len(),
        "shutting down: answering in-flight requests"
    );
    drop(listener);
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

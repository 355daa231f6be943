//! How this broker reaches the other brokers (the metadata group's Raft
//! connections, replica fetchers, transaction markers) and how their
//! connections reach its cluster listener: TCP, unless the program that
//! embeds the broker brings its own network (the deterministic simulation's
//! turmoil network: [`set_dialer`], and [`crate::Embedded`]'s
//! `cluster_connections`).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use tokio::net::TcpListener;
use tokio::sync::mpsc;

pub use crate::tls::PeerStream;

/// A connection being dialled.
pub type Dialing = Pin<Box<dyn Future<Output = std::io::Result<Box<dyn PeerStream>>> + Send>>;
/// Dials `host:port`.
pub type Dialer = Arc<dyn Fn(&str) -> Dialing + Send + Sync>;
/// Connections to an embedded broker's cluster listener.
pub type PeerConnections = mpsc::Receiver<(Box<dyn PeerStream>, SocketAddr)>;

/// The process's dialer, once an embedding program has set one. Process
/// wide: every broker of a simulation shares the one network, which knows
/// which simulated host is dialling.
static DIALER: OnceLock<Dialer> = OnceLock::new();

/// Makes every dial of this process go through `dialer`. False if one
/// was set already (the first stays).
pub fn set_dialer(dialer: Dialer) -> bool {
    DIALER.set(dialer).is_ok()
}

/// Dials another broker at `addr` (`host:port`), before any TLS.
pub async fn dial(addr: &str) -> std::io::Result<Box<dyn PeerStream>> {
    if let Some(d) = DIALER.get() {
        return d(addr).await;
    }
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(Box::new(stream))
}

/// Where the cluster listener's connections come from.
pub enum ClusterAcceptor {
    Tcp(TcpListener),
    Embedded(PeerConnections),
}

impl ClusterAcceptor {
    pub async fn accept(&mut self) -> std::io::Result<(Box<dyn PeerStream>, SocketAddr)> {
        match self {
            ClusterAcceptor::Tcp(l) => {
                let (s, peer) = l.accept().await?;
                let _ = s.set_nodelay(true);
                Ok((Box::new(s), peer))
            }
            ClusterAcceptor::Embedded(rx) => match rx.recv().await {
                Some(c) => Ok(c),
                // Nothing more will come: wait to be stopped.
                None => std::future::pending().await,
            },
        }
    }
}

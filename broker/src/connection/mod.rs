//! One Kafka client connection: a reader that frames and dispatches requests
//! in order, and a writer that sends responses in the same order, with record
//! bytes going from segment files to the socket by `sendfile(2)` (over TLS,
//! through a buffer: the kernel cannot encrypt what it sends for us).
//!
//! Requests are dispatched as they arrive (so produce appends keep the
//! client's order) while slow answers (acks=all, fetch long-poll) complete in
//! the background; the writer awaits them one by one, which is Kafka's
//! per-connection ordering guarantee.

mod memory;
mod reader;
mod writer;

pub use memory::RequestMemory;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_rustls::server::TlsStream;
use tracing::{Instrument, debug, info_span, warn};

use crate::broker::Broker;
use crate::handlers::{self, Dispatched, Session};
use crate::metrics as m;
use crate::response::Reply;
use reader::{Frame, FrameReader, ReadLimits, ReadSide};
use writer::{WriteSide, write_loop};

/// Responses that may be outstanding on one connection before the reader
/// stops reading (back-pressure on a pipelining client).
const MAX_IN_FLIGHT: usize = 64;
struct InFlight {
    correlation_id: i32,
    header_version: i16,
    api: &'static str,
    started: Instant,
    reply: Reply,
}

/// A client's socket: plain TCP, or TLS over it; or a byte stream the
/// broker did not accept itself (the deterministic simulation's network),
/// served as TLS is: buffered reads, record regions copied, not sent by
/// `sendfile`.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Other(Box<dyn Duplex>),
}

/// Any connected byte stream (see [`Stream::Other`]).
pub trait Duplex: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Duplex for T {}

impl Stream {
    /// The client's certificate (the first of its chain), if it sent one.
    fn peer_certificate(&self) -> Option<Vec<u8>> {
        match self {
            Stream::Plain(_) | Stream::Other(_) => None,
            Stream::Tls(s) => s
                .get_ref()
                .1
                .peer_certificates()?
                .first()
                .map(|c| c.to_vec()),
        }
    }

    fn split(self) -> (ReadSide, WriteSide) {
        match self {
            Stream::Plain(s) => {
                let (r, w) = s.into_split();
                (ReadSide::Plain(r), WriteSide::Plain(w))
            }
            Stream::Tls(s) => {
                let (r, w) = tokio::io::split(*s);
                (
                    ReadSide::Buffered(Box::new(r)),
                    WriteSide::Buffered(Box::new(w)),
                )
            }
            Stream::Other(s) => {
                let (r, w) = tokio::io::split(s);
                (
                    ReadSide::Buffered(Box::new(r)),
                    WriteSide::Buffered(Box::new(w)),
                )
            }
        }
    }
}

pub async fn serve(
    stream: Stream,
    peer_addr: std::net::SocketAddr,
    listener: Arc<crate::listeners::Bound>,
    broker: Arc<Broker>,
    mut shutdown: watch::Receiver<bool>,
) {
    let peer = peer_addr.to_string();
    // A client certificate names the principal (Kafka's SSL principal
    // builder); one no mapping rule accepts is refused.
    let tls_principal = match stream.peer_certificate() {
        None => None,
        Some(der) => {
            let user = crate::tls_principal::subject_dn(&der)
                .and_then(|dn| broker.config.ssl_principal_mapping.map(&dn));
            match user {
                Some(user) => Some(Arc::from(format!("User:{user}"))),
                None => {
                    warn!(%peer, listener = %listener.name, "no ssl.principal.mapping.rules rule matches the client certificate's subject: closing");
                    return;
                }
            }
        }
    };
    let (hangup, hangup_rx) = watch::channel(false);
    let session = Session {
        peer: peer_addr,
        listener: Arc::from(listener.name.as_str()),
        auth: crate::sasl::ConnAuth::new(listener.protocol.sasl()),
        tls_principal,
        host: Arc::from(peer_addr.ip().to_string()),
        gate: Default::default(),
        hangup: hangup_rx,
    };
    metrics::gauge!(m::CONNECTIONS).increment(1.0);
    let (reader, writer) = stream.split();
    let bytes_in = metrics::counter!(m::BYTES_IN);
    let (tx, rx) = mpsc::channel::<InFlight>(MAX_IN_FLIGHT);
    let waiting = Arc::new(std::sync::Mutex::new(None));
    let mut writer_task = tokio::spawn(
        write_loop(writer, rx, waiting.clone()).instrument(info_span!("writer", %peer)),
    );
    let limits = ReadLimits {
        max_frame: broker.config.socket_request_max_bytes,
        memory: broker.request_memory.clone(),
        idle: broker.config.connections_max_idle,
        request_timeout: broker.config.request_read_timeout,
    };
    let mut reader = FrameReader::new(reader, limits);
    let mut first = true;
    loop {
        // Throttled (KIP-219): nothing more is read until the pause ends.
        if let Some(until) = session.gate.muted_until() {
            tokio::select! {
                _ = shutdown.changed() => break,
                // A span, not the std instant: tokio's clock is not the
                // system's in the simulation.
                _ = tokio::time::sleep(until.saturating_duration_since(Instant::now())) => {}
            }
        }
        let frame = tokio::select! {
            _ = shutdown.changed() => break,
            // A failed login: the answers owed go out, then the connection closes.
            _ = session.auth.closing() => break,
            f = reader.next() => f,
        };
        let Frame { bytes, charged } = match frame {
            Ok(Some(f)) => f,
            Ok(None) => break,
            // Idle: but a reply still owed (a long poll) is activity.
            Err(ConnError::Idle)
                if tx.capacity() < MAX_IN_FLIGHT
                    || waiting.lock().unwrap_or_else(|e| e.into_inner()).is_some() =>
            {
                continue;
            }
            Err(ConnError::Idle) => {
                debug!(%peer, "closing connection: idle past connections.max.idle.ms");
                metrics::counter!(m::CONNECTION_ERRORS, "reason" => "idle").increment(1);
                break;
            }
            Err(e @ ConnError::RequestTimeout { .. }) => {
                warn!(%peer, "closing connection: {e}");
                metrics::counter!(m::CONNECTION_ERRORS, "reason" => "request_timeout").increment(1);
                break;
            }
            Err(e) => {
                if first && reader.looks_like_tls() {
                    warn!(%peer, listener = %listener.name, "closing connection: a TLS handshake on a {} listener", listener.protocol.name());
                } else {
                    warn!(%peer, "closing connection: {e}");
                }
                metrics::counter!(m::CONNECTION_ERRORS, "reason" => "bad_frame").increment(1);
                break;
            }
        };
        first = false;
        // A request pipelined behind a login still being checked waits for
        // its outcome, as Kafka reads it after the login.
        if session.auth.is_checking() {
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = session.auth.closing() => break,
                checked = tokio::time::timeout(LOGIN_CHECK_WAIT, session.auth.checked()) => {
                    if checked.is_err() {
                        warn!(%peer, "closing connection: a login still checked after {LOGIN_CHECK_WAIT:?}");
                        break;
                    }
                }
            }
        }
        bytes_in.increment(bytes.len() as u64 + 4);
        let started = Instant::now();
        let dispatched = handlers::dispatch(&broker, bytes, &session);
        // The handler has taken the request: its bytes leave the budget
        // (a reply that waits holds only what it made of them).
        drop(charged);
        match dispatched {
            Ok(Dispatched {
                correlation_id,
                header_version,
                api,
                reply,
            }) => {
                let item = InFlight {
                    correlation_id,
                    header_version,
                    api,
                    started,
                    reply,
                };
                if tx.send(item).await.is_err() {
                    break; // the writer hit a socket error
                }
            }
            Err(e) => {
                warn!(%peer, "closing connection: {e}");
                metrics::counter!(m::CONNECTION_ERRORS, "reason" => "bad_request").increment(1);
                break;
            }
        }
    }
    // Let responses already owed go out (a clean shutdown answers in-flight
    // requests), long polls answering at once: nothing more is read.
    let _ = hangup.send(true);
    drop(tx);
    if *shutdown.borrow()
        && tokio::time::timeout(SLOW_DRAIN_NOTICE, &mut writer_task)
            .await
            .is_err()
    {
        // Says what holds the shutdown up (the server gives up on it later).
        let api = *waiting.lock().unwrap_or_else(|e| e.into_inner());
        warn!(%peer, ?api, "still answering a request at shutdown");
        let _ = writer_task.await;
    } else if !writer_task.is_finished() {
        let _ = writer_task.await;
    }
    metrics::gauge!(m::CONNECTIONS).decrement(1.0);
    debug!(%peer, principal = ?session.auth.principal(), "connection closed");
}
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Frame(#[from] karnak_protocol::ProtocolError),
    #[error("peer closed mid-request after {got} of {expected} bytes")]
    Truncated { expected: usize, got: usize },
    #[error("idle past connections.max.idle.ms")]
    Idle,
    #[error("request not whole within the read timeout ({got} bytes came)")]
    RequestTimeout { got: usize },
    #[error("segment file ended {0} bytes early while sending records")]
    ShortFile(usize),
}
/// How long a request pipelined behind a login waits for the login's check
/// (a password hash, an OAUTHBEARER token: milliseconds).
const LOGIN_CHECK_WAIT: Duration = Duration::from_secs(30);
/// How long a connection answers in-flight requests at shutdown before it
/// says which request it is waiting on.
const SLOW_DRAIN_NOTICE: Duration = Duration::from_secs(2);

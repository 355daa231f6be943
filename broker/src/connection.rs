//! One Kafka client connection: a reader that frames and dispatches requests
//! in order, and a writer that sends responses in the same order, with record
//! bytes going from segment files to the socket by `sendfile(2)` (over TLS,
//! through a buffer: the kernel cannot encrypt what it sends for us).
//!
//! Requests are dispatched as they arrive (so produce appends keep the
//! client's order) while slow answers (acks=all, fetch long-poll) complete in
//! the background; the writer awaits them one by one, which is Kafka's
//! per-connection ordering guarantee.

use std::io::IoSlice;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use karnak_protocol::fetch_response::Part;
use karnak_protocol::frame;
use karnak_storage::FileSlice;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt, Interest, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, watch};
use tokio_rustls::server::TlsStream;
use tracing::{Instrument, debug, info_span, warn};

use crate::broker::Broker;
use crate::handlers::{self, Dispatched, Session};
use crate::metrics as m;
use crate::response::{Reply, Response};

/// Responses that may be outstanding on one connection before the reader
/// stops reading (back-pressure on a pipelining client).
const MAX_IN_FLIGHT: usize = 64;

/// Largest buffer reserved ahead of data actually received, so a frame that
/// claims 100 MiB and sends 10 bytes does not cost 100 MiB.
const READ_CHUNK: usize = 1 << 20;

/// Smallest read: enough for many small pipelined requests in one `recv`.
const READ_MIN: usize = 64 << 10;

/// The first read of a request over TLS (see FrameReader::next).
const TLS_IDLE_READ: usize = 4 << 10;

/// Responses gathered into one `writev` at most (IOV_MAX is 1024 slices).
const MAX_GATHERED: usize = 256;

struct InFlight {
    correlation_id: i32,
    header_version: i16,
    api: &'static str,
    started: Instant,
    reply: Reply,
}

/// A client's socket: plain TCP, or TLS over it.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    /// The client's certificate (the first of its chain), if it sent one.
    fn peer_certificate(&self) -> Option<Vec<u8>> {
        match self {
            Stream::Plain(_) => None,
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
                (ReadSide::Tls(r), WriteSide::Tls(w))
            }
        }
    }
}

enum ReadSide {
    Plain(OwnedReadHalf),
    Tls(ReadHalf<TlsStream<TcpStream>>),
}

/// The writing half. Plain sockets take record regions by `sendfile`;
/// TLS ones through a buffer (and need a flush: rustls holds what it
/// has not yet written to the socket).
enum WriteSide {
    Plain(OwnedWriteHalf),
    Tls(WriteHalf<TlsStream<TcpStream>>),
}

impl AsyncWrite for WriteSide {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            WriteSide::Plain(w) => Pin::new(w).poll_write(cx, buf),
            WriteSide::Tls(w) => Pin::new(w).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            WriteSide::Plain(w) => Pin::new(w).poll_write_vectored(cx, bufs),
            WriteSide::Tls(w) => Pin::new(w).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            WriteSide::Plain(w) => w.is_write_vectored(),
            WriteSide::Tls(w) => w.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            WriteSide::Plain(w) => Pin::new(w).poll_flush(cx),
            WriteSide::Tls(w) => Pin::new(w).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            WriteSide::Plain(w) => Pin::new(w).poll_shutdown(cx),
            WriteSide::Tls(w) => Pin::new(w).poll_shutdown(cx),
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
    let session = Session {
        peer: peer_addr,
        listener: Arc::from(listener.name.as_str()),
        auth: crate::sasl::ConnAuth::new(listener.protocol.sasl()),
        tls_principal,
        host: Arc::from(peer_addr.ip().to_string()),
        gate: Default::default(),
    };
    metrics::gauge!(m::CONNECTIONS).increment(1.0);
    let (reader, writer) = stream.split();
    let bytes_in = metrics::counter!(m::BYTES_IN);
    let (tx, rx) = mpsc::channel::<InFlight>(MAX_IN_FLIGHT);
    let waiting = Arc::new(std::sync::Mutex::new(None));
    let mut writer_task = tokio::spawn(
        write_loop(writer, rx, waiting.clone()).instrument(info_span!("writer", %peer)),
    );
    let mut reader = FrameReader::new(reader, broker.config.socket_request_max_bytes);
    let mut first = true;
    loop {
        // Throttled (KIP-219): nothing more is read until the pause ends.
        if let Some(until) = session.gate.muted_until() {
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = tokio::time::sleep_until(until.into()) => {}
            }
        }
        let frame = tokio::select! {
            _ = shutdown.changed() => break,
            // A failed login: the answers owed go out, then the connection closes.
            _ = session.auth.closing() => break,
            f = reader.next() => f,
        };
        let frame = match frame {
            Ok(Some(f)) => f,
            Ok(None) => break,
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
        bytes_in.increment(frame.len() as u64 + 4);
        let started = Instant::now();
        match handlers::dispatch(&broker, frame, &session) {
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
    // Let responses already owed go out (a clean shutdown answers in-flight requests).
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

/// Frames requests out of a read buffer: one `recv` brings in as many
/// pipelined requests as have arrived (not one read for the size and one for
/// the body of each), and frames are split off the buffer without a copy.
struct FrameReader {
    rd: ReadSide,
    buf: BytesMut,
    max: usize,
    /// Size of the last frame (clamped to READ_MIN..=READ_CHUNK): what a
    /// read at a frame boundary reserves, since clients tend to send
    /// requests of one size.
    hint: usize,
}

impl FrameReader {
    fn new(rd: ReadSide, max: usize) -> Self {
        FrameReader {
            rd,
            buf: BytesMut::new(),
            max,
            hint: READ_MIN,
        }
    }

    /// The next size-prefixed frame. `Ok(None)` on a clean EOF between frames.
    async fn next(&mut self) -> Result<Option<Bytes>, ConnError> {
        loop {
            // Large frames are read up to their end and no further: split
            // off, such a frame leaves the buffer empty, and the next one
            // starts in a fresh allocation instead of having its head
            // copied out of this one's (which the frame's Bytes still holds).
            let (want, limit) = if let Some(raw) = self.size_prefix() {
                let size = frame::check_frame_size(raw, self.max)?;
                if self.buf.len() - 4 >= size {
                    self.buf.advance(4);
                    self.hint = (4 + size).clamp(READ_MIN, READ_CHUNK);
                    return Ok(Some(self.buf.split_to(size).freeze()));
                }
                // Reserve for the rest of this frame, a chunk at a time, so a
                // frame that claims 100 MiB and sends 10 bytes costs 1 MiB.
                let rest = 4 + size - self.buf.len();
                let limit = if 4 + size > READ_MIN {
                    rest
                } else {
                    usize::MAX
                };
                (rest.clamp(READ_MIN, READ_CHUNK), limit)
            } else if self.buf.is_empty() && self.hint > READ_MIN {
                // At a boundary after a large frame: room for one like it at
                // once (no regrowth copy once its size is known).
                (self.hint, self.hint)
            } else {
                // Small frames: as many as have arrived, in one recv.
                (READ_MIN, usize::MAX)
            };
            let n = match &mut self.rd {
                ReadSide::Plain(rd) => {
                    if self.buf.is_empty() {
                        // Between requests a connection holds no buffer (10,000
                        // idle clients must stay cheap): wait for data, then allocate.
                        self.buf = BytesMut::new();
                        rd.readable().await.map_err(ConnError::Io)?;
                    }
                    self.buf.reserve(want);
                    match rd.try_read_buf(&mut (&mut self.buf).limit(limit)) {
                        Ok(n) => n,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            rd.readable().await.map_err(ConnError::Io)?;
                            continue;
                        }
                        Err(e) => return Err(ConnError::Io(e)),
                    }
                }
                ReadSide::Tls(rd) => {
                    // No readiness to wait on through TLS: an idle
                    // connection waits with a small buffer instead.
                    let want = if self.buf.is_empty() {
                        TLS_IDLE_READ
                    } else {
                        want
                    };
                    self.buf.reserve(want);
                    rd.read_buf(&mut (&mut self.buf).limit(limit.min(want)))
                        .await
                        .map_err(ConnError::Io)?
                }
            };
            if n == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(ConnError::Truncated {
                    expected: self.size_prefix().map_or(4, |s| s.max(0) as usize),
                    got: self.buf.len().saturating_sub(4),
                });
            }
        }
    }

    /// The buffer starts like a TLS handshake record (content type 22,
    /// version 3.x): a TLS client on a plaintext listener.
    fn looks_like_tls(&self) -> bool {
        matches!(self.buf.get(..3), Some([0x16, 0x03, 0..=4]))
    }

    /// The size prefix of the frame at the head of the buffer, once read.
    fn size_prefix(&self) -> Option<i32> {
        let b = self.buf.get(..4)?;
        Some(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Frame(#[from] karnak_protocol::ProtocolError),
    #[error("peer closed mid-request after {got} of {expected} bytes")]
    Truncated { expected: usize, got: usize },
    #[error("segment file ended {0} bytes early while sending records")]
    ShortFile(usize),
}

/// Sends responses in request order. Responses that are ready back to back
/// (a pipelining client) go out in one `writev`; a response that must wait
/// (acks=all, a fetch long-poll) first sends what is gathered.
/// How long a connection answers in-flight requests at shutdown before it
/// says which request it is waiting on.
const SLOW_DRAIN_NOTICE: Duration = Duration::from_secs(2);

/// `waiting`: the API of the reply being awaited, if any (for shutdown's log).
async fn write_loop(
    mut writer: WriteSide,
    mut rx: mpsc::Receiver<InFlight>,
    waiting: Arc<std::sync::Mutex<Option<&'static str>>>,
) {
    let mut out = Outbox::default();
    loop {
        let item = match rx.try_recv() {
            Ok(item) => item,
            Err(mpsc::error::TryRecvError::Disconnected) => break,
            Err(mpsc::error::TryRecvError::Empty) => {
                if out.flush(&mut writer).await.is_err() {
                    return;
                }
                match rx.recv().await {
                    Some(item) => item,
                    None => break,
                }
            }
        };
        let response = match item.reply {
            Reply::Nothing => {
                out.metrics.record(item.api, 0, item.started);
                continue;
            }
            Reply::Ready(r) => Ok(r),
            Reply::Later(fut) => {
                if out.flush(&mut writer).await.is_err() {
                    return;
                }
                *waiting.lock().unwrap_or_else(|e| e.into_inner()) = Some(item.api);
                let r = fut.await;
                *waiting.lock().unwrap_or_else(|e| e.into_inner()) = None;
                r
            }
        };
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                let _ = out.flush(&mut writer).await;
                warn!(api = item.api, "closing connection: {e}");
                return;
            }
        };
        let code = response.error_code;
        if let Err(e) = out
            .push(
                &mut writer,
                item.correlation_id,
                item.header_version,
                response,
            )
            .await
        {
            // A client that disconnects mid-response is normal; nothing else is affected.
            debug!(api = item.api, "write failed: {e}");
            return;
        }
        out.done.push((item.api, code, item.started));
        if out.pending.len() >= MAX_GATHERED && out.flush(&mut writer).await.is_err() {
            return;
        }
    }
    if out.flush(&mut writer).await.is_ok() {
        let _ = writer.shutdown().await;
    }
}

/// Responses encoded and not yet written, and the requests they answer
/// (counted in the metrics once their bytes are on the socket).
#[derive(Default)]
struct Outbox {
    pending: Vec<Bytes>,
    done: Vec<(&'static str, i16, Instant)>,
    metrics: RequestMetrics,
}

impl Outbox {
    /// Appends a response; record regions go out by sendfile at once, after
    /// everything gathered before them.
    async fn push(
        &mut self,
        writer: &mut WriteSide,
        correlation_id: i32,
        header_version: i16,
        response: Response,
    ) -> Result<(), ConnError> {
        let mut head = BytesMut::with_capacity(9);
        let header_len = if header_version >= 1 { 5 } else { 4 };
        head.put_i32((header_len + response.len) as i32);
        head.put_i32(correlation_id);
        if header_version >= 1 {
            head.put_u8(0); // no tagged fields
        }
        self.metrics
            .bytes_out
            .increment((head.len() + response.len) as u64);
        self.pending.push(head.freeze());
        for part in response.parts {
            match part {
                Part::Bytes(b) => self.pending.push(b),
                Part::Region(slice) => {
                    write_all_vectored(writer, &mut self.pending).await?;
                    send_file(writer, &slice, &self.metrics.sendfile_bytes).await?;
                }
            }
        }
        Ok(())
    }

    async fn flush(&mut self, writer: &mut WriteSide) -> Result<(), ConnError> {
        if let Err(e) = write_all_vectored(writer, &mut self.pending).await {
            debug!("write failed: {e}");
            return Err(e);
        }
        for (api, code, started) in self.done.drain(..) {
            self.metrics.record(api, code, started);
        }
        Ok(())
    }
}

/// Metric handles, looked up once per connection rather than per request.
struct RequestMetrics {
    bytes_out: metrics::Counter,
    sendfile_bytes: metrics::Counter,
    /// (api, error code) -> requests counter, latency histograms.
    by_api: Vec<(
        &'static str,
        i16,
        metrics::Counter,
        metrics::Histogram,
        Option<metrics::Histogram>,
    )>,
}

impl Default for RequestMetrics {
    fn default() -> Self {
        RequestMetrics {
            bytes_out: metrics::counter!(m::BYTES_OUT),
            sendfile_bytes: metrics::counter!(m::FETCH_SENDFILE_BYTES),
            by_api: Vec::new(),
        }
    }
}

impl RequestMetrics {
    fn record(&mut self, api: &'static str, error_code: i16, started: Instant) {
        let i = match self
            .by_api
            .iter()
            .position(|(a, c, ..)| *c == error_code && *a == api)
        {
            Some(i) => i,
            None => {
                let per_api = match api {
                    "Produce" => Some(metrics::histogram!(m::PRODUCE_LATENCY)),
                    "Fetch" => Some(metrics::histogram!(m::FETCH_LATENCY)),
                    _ => None,
                };
                self.by_api.push((
                    api,
                    error_code,
                    metrics::counter!(m::REQUESTS, "api" => api, "error" => m::error_name(error_code)),
                    metrics::histogram!(m::REQUEST_LATENCY, "api" => api),
                    per_api,
                ));
                self.by_api.len() - 1
            }
        };
        let (_, _, requests, latency, per_api) = &self.by_api[i];
        requests.increment(1);
        let secs = started.elapsed().as_secs_f64();
        latency.record(secs);
        if let Some(h) = per_api {
            h.record(secs);
        }
    }
}

async fn write_all_vectored(
    writer: &mut WriteSide,
    bufs: &mut Vec<Bytes>,
) -> Result<(), ConnError> {
    let mut slices: Vec<IoSlice<'_>> = bufs
        .iter()
        .filter(|b| !b.is_empty())
        .map(|b| IoSlice::new(b))
        .collect();
    let mut slices = &mut slices[..];
    while !slices.is_empty() {
        let n = writer.write_vectored(slices).await?;
        if n == 0 {
            return Err(ConnError::Io(std::io::ErrorKind::WriteZero.into()));
        }
        IoSlice::advance_slices(&mut slices, n);
    }
    bufs.clear();
    if let WriteSide::Tls(w) = writer {
        w.flush().await?;
    }
    Ok(())
}

/// Sends a segment region with `sendfile(2)`: page cache to socket, no copy
/// through this process.
async fn send_file(
    writer: &mut WriteSide,
    slice: &FileSlice,
    sent: &metrics::Counter,
) -> Result<(), ConnError> {
    let plain = match writer {
        WriteSide::Plain(w) => w,
        WriteSide::Tls(_) => return copy_file(writer, slice, slice.position, slice.len).await,
    };
    let stream: &TcpStream = plain.as_ref();
    let mut offset = slice.position;
    let mut remaining = slice.len;
    while remaining > 0 {
        stream.writable().await?;
        let res = stream.try_io(Interest::WRITABLE, || {
            rustix::fs::sendfile(
                stream.as_fd(),
                slice.file.as_fd(),
                Some(&mut offset),
                remaining,
            )
            .map_err(std::io::Error::from)
        });
        match res {
            Ok(0) => return Err(ConnError::ShortFile(remaining)),
            Ok(n) => {
                remaining -= n;
                sent.increment(n as u64);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
                // Filesystems without sendfile support: copy through a buffer.
                return copy_file(writer, slice, offset, remaining).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

async fn copy_file(
    writer: &mut WriteSide,
    slice: &FileSlice,
    mut offset: u64,
    mut remaining: usize,
) -> Result<(), ConnError> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; remaining.min(256 * 1024)];
    while remaining > 0 {
        let want = remaining.min(buf.len());
        let n = slice.file.read_at(&mut buf[..want], offset)?;
        if n == 0 {
            return Err(ConnError::ShortFile(remaining));
        }
        writer.write_all(&buf[..n]).await?;
        metrics::counter!(m::FETCH_COPIED_BYTES).increment(n as u64);
        offset += n as u64;
        remaining -= n;
    }
    writer.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut v = (body.len() as i32).to_be_bytes().to_vec();
        v.extend_from_slice(body);
        v
    }

    /// A FrameReader on the accepted side of a loopback connection, and the
    /// client side to write to.
    async fn pair(max: usize) -> (FrameReader, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (rd, _wr) = server.into_split();
        (FrameReader::new(ReadSide::Plain(rd), max), client)
    }

    #[tokio::test]
    async fn frames_arrive_whole_however_the_bytes_are_cut() {
        // Many frames in one write, then the same frames one byte at a time.
        let bodies: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i; i as usize * 37]).collect();
        let wire: Vec<u8> = bodies.iter().flat_map(|b| framed(b)).collect();
        let (mut reader, mut client) = pair(1 << 20).await;
        client.write_all(&wire).await.unwrap();
        for b in &bodies {
            assert_eq!(reader.next().await.unwrap().unwrap(), &b[..]);
        }
        let writer = tokio::spawn(async move {
            for byte in wire {
                client.write_all(&[byte]).await.unwrap();
                client.flush().await.unwrap();
            }
            client
        });
        for b in &bodies {
            assert_eq!(reader.next().await.unwrap().unwrap(), &b[..]);
        }
        drop(writer.await.unwrap());
        assert!(reader.next().await.unwrap().is_none(), "clean EOF");
    }

    #[tokio::test]
    async fn a_frame_larger_than_a_read_chunk_is_read_whole() {
        let body: Vec<u8> = (0..(3 * READ_CHUNK + 17)).map(|i| i as u8).collect();
        let (mut reader, mut client) = pair(8 << 20).await;
        let wire = framed(&body);
        tokio::spawn(async move { client.write_all(&wire).await.unwrap() });
        assert_eq!(reader.next().await.unwrap().unwrap(), &body[..]);
    }

    #[tokio::test]
    async fn large_pipelined_frames_are_read_up_to_their_end() {
        // Three 300 KiB frames in one write, then a small one: each large
        // frame is split off an exactly filled buffer (nothing of the next
        // frame is left behind to be copied into a new allocation).
        let bodies: Vec<Vec<u8>> = (1..=3u8).map(|i| vec![i; 300 << 10]).collect();
        let mut wire: Vec<u8> = bodies.iter().flat_map(|b| framed(b)).collect();
        wire.extend(framed(b"small"));
        let (mut reader, mut client) = pair(1 << 20).await;
        tokio::spawn(async move { client.write_all(&wire).await.unwrap() });
        for b in &bodies {
            assert_eq!(reader.next().await.unwrap().unwrap(), &b[..]);
            assert!(
                reader.buf.is_empty(),
                "{} bytes left over after frame {}",
                reader.buf.len(),
                b[0]
            );
        }
        assert_eq!(reader.next().await.unwrap().unwrap(), &b"small"[..]);
    }

    #[tokio::test]
    async fn oversized_negative_and_truncated_frames_are_errors() {
        let (mut reader, mut client) = pair(1000).await;
        client.write_all(&1001i32.to_be_bytes()).await.unwrap();
        assert!(matches!(reader.next().await, Err(ConnError::Frame(_))));

        let (mut reader, mut client) = pair(1000).await;
        client.write_all(&(-5i32).to_be_bytes()).await.unwrap();
        assert!(matches!(reader.next().await, Err(ConnError::Frame(_))));

        // Claims 900 bytes, sends 10, hangs up.
        let (mut reader, mut client) = pair(1000).await;
        let mut wire = 900i32.to_be_bytes().to_vec();
        wire.extend_from_slice(&[7; 10]);
        client.write_all(&wire).await.unwrap();
        drop(client);
        match reader.next().await {
            Err(ConnError::Truncated { expected, got }) => assert_eq!((expected, got), (900, 10)),
            other => panic!("expected a truncated frame, got {other:?}"),
        }

        // Half a size prefix, then EOF.
        let (mut reader, mut client) = pair(1000).await;
        client.write_all(&[0, 0]).await.unwrap();
        drop(client);
        assert!(matches!(
            reader.next().await,
            Err(ConnError::Truncated { .. })
        ));
    }
}

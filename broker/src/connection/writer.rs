//! Sending responses: in request order, gathered into `writev`s, record
//! regions by `sendfile(2)`.

use std::io::IoSlice;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use karnak_protocol::fetch_response::Part;
use karnak_storage::FileSlice;
use tokio::io::{AsyncWrite, AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::{ConnError, InFlight};
use crate::metrics as m;
use crate::response::{Reply, Response};

/// Responses gathered into one `writev` at most (IOV_MAX is 1024 slices).
const MAX_GATHERED: usize = 256;
/// The writing half. Plain sockets take record regions by `sendfile`;
/// other streams (TLS, the simulation's network) through a buffer, and
/// need a flush (rustls holds what it has not yet written to the socket).
pub(super) enum WriteSide {
    Plain(OwnedWriteHalf),
    Buffered(Box<dyn AsyncWrite + Send + Unpin>),
}

impl AsyncWrite for WriteSide {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            WriteSide::Plain(w) => Pin::new(w).poll_write(cx, buf),
            WriteSide::Buffered(w) => Pin::new(w).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            WriteSide::Plain(w) => Pin::new(w).poll_write_vectored(cx, bufs),
            WriteSide::Buffered(w) => Pin::new(w).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            WriteSide::Plain(w) => w.is_write_vectored(),
            WriteSide::Buffered(w) => w.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            WriteSide::Plain(w) => Pin::new(w).poll_flush(cx),
            WriteSide::Buffered(w) => Pin::new(w).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            WriteSide::Plain(w) => Pin::new(w).poll_shutdown(cx),
            WriteSide::Buffered(w) => Pin::new(w).poll_shutdown(cx),
        }
    }
}

/// Sends responses in request order. Responses that are ready back to back
/// (a pipelining client) go out in one `writev`; a response that must wait
/// (acks=all, a fetch long-poll) first sends what is gathered.
/// `waiting`: the API of the reply being awaited, if any (for shutdown's log).
pub(super) async fn write_loop(
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
    if let WriteSide::Buffered(w) = writer {
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
        WriteSide::Buffered(_) => {
            return copy_file(writer, slice, slice.position, slice.len).await;
        }
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
            Err(e) => {
                // EIO is the file's (a socket reports EPIPE, ECONNRESET):
                // the disk failed a read the fetch had counted on.
                if e.raw_os_error() == Some(rustix::io::Errno::IO.raw_os_error()) {
                    slice.health.read_failed(&e);
                }
                return Err(e.into());
            }
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
        let n = slice
            .file
            .read_at(&mut buf[..want], offset)
            .inspect_err(|e| slice.health.read_failed(e))?;
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

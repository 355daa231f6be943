//! One Kafka client connection: a reader that frames and dispatches requests
//! in order, and a writer that sends responses in the same order, with record
//! bytes going from segment files to the socket by `sendfile(2)`.
//!
//! Requests are dispatched as they arrive (so produce appends keep the
//! client's order) while slow answers (acks=all, fetch long-poll) complete in
//! the background; the writer awaits them one by one, which is Kafka's
//! per-connection ordering guarantee.

use std::io::IoSlice;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use karnak_protocol::fetch_response::Part;
use karnak_protocol::frame;
use karnak_storage::FileSlice;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, watch};
use tracing::{Instrument, debug, info_span, warn};

use crate::broker::Broker;
use crate::handlers::{self, Dispatched};
use crate::metrics as m;
use crate::response::{Reply, Response};

/// Responses that may be outstanding on one connection before the reader
/// stops reading (back-pressure on a pipelining client).
const MAX_IN_FLIGHT: usize = 64;

/// Largest buffer reserved ahead of data actually received, so a frame that
/// claims 100 MiB and sends 10 bytes does not cost 100 MiB.
const READ_CHUNK: usize = 1 << 20;

struct InFlight {
    correlation_id: i32,
    header_version: i16,
    api: &'static str,
    started: Instant,
    reply: Reply,
}

pub async fn serve(stream: TcpStream, broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let peer_addr = stream
        .peer_addr()
        .unwrap_or_else(|_| std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
    let peer = peer_addr.to_string();
    let _ = stream.set_nodelay(true);
    metrics::gauge!(m::CONNECTIONS).increment(1.0);
    let (mut reader, writer) = stream.into_split();
    let (tx, rx) = mpsc::channel::<InFlight>(MAX_IN_FLIGHT);
    let writer_task = tokio::spawn(write_loop(writer, rx).instrument(info_span!("writer", %peer)));
    let max = broker.config.socket_request_max_bytes;
    loop {
        let frame = tokio::select! {
            _ = shutdown.changed() => break,
            f = read_frame(&mut reader, max) => f,
        };
        let frame = match frame {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                warn!(%peer, "closing connection: {e}");
                metrics::counter!(m::CONNECTION_ERRORS, "reason" => "bad_frame").increment(1);
                break;
            }
        };
        metrics::counter!(m::BYTES_IN).increment(frame.len() as u64 + 4);
        let started = Instant::now();
        match handlers::dispatch(&broker, frame, peer_addr) {
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
    let _ = writer_task.await;
    metrics::gauge!(m::CONNECTIONS).decrement(1.0);
    debug!(%peer, "connection closed");
}

/// Reads one size-prefixed frame. `Ok(None)` on a clean EOF between frames.
async fn read_frame(reader: &mut OwnedReadHalf, max: usize) -> Result<Option<Bytes>, ConnError> {
    let mut size = [0u8; 4];
    match reader.read_exact(&mut size).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(ConnError::Io(e)),
    }
    let size = frame::check_frame_size(i32::from_be_bytes(size), max)?;
    let mut buf = BytesMut::with_capacity(size.min(READ_CHUNK));
    while buf.len() < size {
        let want = (size - buf.len()).min(READ_CHUNK);
        buf.reserve(want);
        let n = reader
            .read_buf(&mut (&mut buf).limit(want))
            .await
            .map_err(ConnError::Io)?;
        if n == 0 {
            return Err(ConnError::Truncated {
                expected: size,
                got: buf.len(),
            });
        }
    }
    Ok(Some(buf.freeze()))
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

async fn write_loop(mut writer: OwnedWriteHalf, mut rx: mpsc::Receiver<InFlight>) {
    while let Some(item) = rx.recv().await {
        let response = match item.reply {
            Reply::Nothing => {
                record(item.api, 0, item.started);
                continue;
            }
            Reply::Ready(r) => Ok(r),
            Reply::Later(fut) => fut.await,
        };
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                warn!(api = item.api, "closing connection: {e}");
                return;
            }
        };
        let code = response.error_code;
        if let Err(e) = write_response(
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
        record(item.api, code, item.started);
    }
    let _ = writer.shutdown().await;
}

fn record(api: &'static str, error_code: i16, started: Instant) {
    metrics::counter!(m::REQUESTS, "api" => api, "error" => m::error_name(error_code)).increment(1);
    let secs = started.elapsed().as_secs_f64();
    metrics::histogram!(m::REQUEST_LATENCY, "api" => api).record(secs);
    match api {
        "Produce" => metrics::histogram!(m::PRODUCE_LATENCY).record(secs),
        "Fetch" => metrics::histogram!(m::FETCH_LATENCY).record(secs),
        _ => {}
    }
}

async fn write_response(
    writer: &mut OwnedWriteHalf,
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
    metrics::counter!(m::BYTES_OUT).increment((head.len() + response.len) as u64);

    // Gather runs of in-memory parts into one vectored write; records regions
    // go by sendfile between them.
    let mut pending: Vec<Bytes> = vec![head.freeze()];
    for part in response.parts {
        match part {
            Part::Bytes(b) => pending.push(b),
            Part::Region(slice) => {
                write_all_vectored(writer, &mut pending).await?;
                send_file(writer, &slice).await?;
            }
        }
    }
    write_all_vectored(writer, &mut pending).await?;
    Ok(())
}

async fn write_all_vectored(
    writer: &mut OwnedWriteHalf,
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
    Ok(())
}

/// Sends a segment region with `sendfile(2)`: page cache to socket, no copy
/// through this process.
async fn send_file(writer: &mut OwnedWriteHalf, slice: &FileSlice) -> Result<(), ConnError> {
    let stream: &TcpStream = writer.as_ref();
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
                metrics::counter!(m::FETCH_SENDFILE_BYTES).increment(n as u64);
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
    writer: &mut OwnedWriteHalf,
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
    Ok(())
}

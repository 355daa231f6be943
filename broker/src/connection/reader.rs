//! Framing requests off a client's socket.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use karnak_protocol::frame;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::time::Instant;

use super::ConnError;
use super::memory::{Charged, RequestMemory};

/// Largest buffer reserved ahead of data actually received, so a frame that
/// claims 100 MiB and sends 10 bytes does not cost 100 MiB.
const READ_CHUNK: usize = 1 << 20;

/// Smallest read: enough for many small pipelined requests in one `recv`.
const READ_MIN: usize = 64 << 10;

/// The first read of a request over TLS (see FrameReader::next).
const TLS_IDLE_READ: usize = 4 << 10;

/// The reading half: a plain socket (read when readable, so an idle
/// connection holds no buffer), or a stream read through a buffer (TLS,
/// the simulation's network).
pub(super) enum ReadSide {
    Plain(OwnedReadHalf),
    Buffered(Box<dyn AsyncRead + Send + Unpin>),
}

/// Frames requests out of a read buffer: one `recv` brings in as many
/// pipelined requests as have arrived (not one read for the size and one for
/// the body of each), and frames are split off the buffer without a copy.
pub(super) struct FrameReader {
    rd: ReadSide,
    buf: BytesMut,
    max: usize,
    /// Size of the last frame (clamped to READ_MIN..=READ_CHUNK): what a
    /// read at a frame boundary reserves, since clients tend to send
    /// requests of one size.
    hint: usize,
    limits: ReadLimits,
    /// The head frame's charge under `queued.max.request.bytes`, once its
    /// size is known.
    charged: Option<Charged>,
    /// When the head frame's first bytes were seen: it must be whole by
    /// `request_timeout` after.
    started: Option<Instant>,
}

/// What a connection's reading is bounded by.
#[derive(Clone)]
pub(super) struct ReadLimits {
    pub max_frame: usize,
    pub memory: RequestMemory,
    /// `connections.max.idle.ms`: waiting for a request's first byte.
    pub idle: Option<Duration>,
    /// Reading one request, first byte to last.
    pub request_timeout: Duration,
}

/// Awaits `io` until `deadline` (see FrameReader::deadline); `got`: bytes
/// of the request read so far, for the error.
async fn bounded<T>(
    deadline: Option<(Instant, bool)>,
    got: usize,
    io: impl Future<Output = std::io::Result<T>>,
) -> Result<T, ConnError> {
    let Some((at, idle)) = deadline else {
        return io.await.map_err(ConnError::Io);
    };
    match tokio::time::timeout_at(at, io).await {
        Ok(r) => r.map_err(ConnError::Io),
        Err(_) if idle => Err(ConnError::Idle),
        Err(_) => Err(ConnError::RequestTimeout { got }),
    }
}

/// A request's bytes, and their charge (dropped once it is dispatched).
#[derive(Debug)]
pub(super) struct Frame {
    pub bytes: Bytes,
    pub charged: Option<Charged>,
}

impl FrameReader {
    pub(super) fn new(rd: ReadSide, limits: ReadLimits) -> Self {
        FrameReader {
            rd,
            buf: BytesMut::new(),
            max: limits.max_frame,
            hint: READ_MIN,
            limits,
            charged: None,
            started: None,
        }
    }

    /// How long the next wait for bytes may last, and what it means when it
    /// runs out: between requests the idle bound, within one the read bound.
    fn deadline(&self, idle_since: Instant) -> Option<(Instant, bool)> {
        match self.started {
            Some(t) => Some((t + self.limits.request_timeout, false)),
            None => self.limits.idle.map(|idle| (idle_since + idle, true)),
        }
    }

    /// The next size-prefixed frame. `Ok(None)` on a clean EOF between
    /// frames. Cancel-safe: what was read stays in the buffer.
    pub(super) async fn next(&mut self) -> Result<Option<Frame>, ConnError> {
        let idle_since = Instant::now();
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
                    let bytes = self.buf.split_to(size).freeze();
                    // The next request's bytes, if some came with this
                    // one, start its clock.
                    self.started = (!self.buf.is_empty()).then(Instant::now);
                    return Ok(Some(Frame {
                        bytes,
                        charged: self.charged.take(),
                    }));
                }
                if self.charged.is_none() && 4 + size > READ_MIN {
                    // A body that needs its own buffer: nothing more of this
                    // connection is read until it fits in the budget (small
                    // requests come whole in the reads any connection
                    // makes, and never wait behind large ones). Time spent
                    // waiting here is not the client's.
                    let waited = Instant::now();
                    self.charged = self.limits.memory.charge(4 + size).await;
                    if let Some(t) = &mut self.started {
                        *t += waited.elapsed();
                    }
                }
                let rest = 4 + size - self.buf.len();
                if self.charged.is_some() {
                    // Its bytes are budgeted: one buffer of the frame's size
                    // (no regrowth copies on the way).
                    (rest, rest)
                } else {
                    // Reserve for the rest of this frame, a chunk at a time,
                    // so a frame that claims 100 MiB and sends 10 bytes
                    // costs 1 MiB.
                    let limit = if 4 + size > READ_MIN {
                        rest
                    } else {
                        usize::MAX
                    };
                    (rest.clamp(READ_MIN, READ_CHUNK), limit)
                }
            } else if self.buf.is_empty() && self.hint > READ_MIN && !self.limits.memory.bounded() {
                // At a boundary after a large frame: room for one like it at
                // once (no regrowth copy once its size is known). Not under
                // a budget: that room would be taken before being charged.
                (self.hint, self.hint)
            } else {
                // Small frames: as many as have arrived, in one recv.
                (READ_MIN, usize::MAX)
            };
            let deadline = self.deadline(idle_since);
            let got = self.buf.len();
            let n = match &mut self.rd {
                ReadSide::Plain(rd) => {
                    if self.buf.is_empty() {
                        // Between requests a connection holds no buffer (10,000
                        // idle clients must stay cheap): wait for data, then allocate.
                        self.buf = BytesMut::new();
                        bounded(deadline, got, rd.readable()).await?;
                    }
                    self.buf.reserve(want);
                    match rd.try_read_buf(&mut (&mut self.buf).limit(limit)) {
                        Ok(n) => n,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            bounded(deadline, got, rd.readable()).await?;
                            continue;
                        }
                        Err(e) => return Err(ConnError::Io(e)),
                    }
                }
                ReadSide::Buffered(rd) => {
                    // No readiness to wait on through TLS: an idle
                    // connection waits with a small buffer instead.
                    let want = if self.buf.is_empty() {
                        TLS_IDLE_READ
                    } else {
                        want
                    };
                    self.buf.reserve(want);
                    let mut into = (&mut self.buf).limit(limit.min(want));
                    bounded(deadline, got, rd.read_buf(&mut into)).await?
                }
            };
            if n > 0 && self.started.is_none() {
                self.started = Some(Instant::now());
            }
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
    pub(super) fn looks_like_tls(&self) -> bool {
        matches!(self.buf.get(..3), Some([0x16, 0x03, 0..=4]))
    }

    /// The size prefix of the frame at the head of the buffer, once read.
    fn size_prefix(&self) -> Option<i32> {
        let b = self.buf.get(..4)?;
        Some(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut v = (body.len() as i32).to_be_bytes().to_vec();
        v.extend_from_slice(body);
        v
    }

    fn limits(max: usize) -> ReadLimits {
        ReadLimits {
            max_frame: max,
            memory: RequestMemory::new(None),
            idle: None,
            request_timeout: Duration::from_secs(60),
        }
    }

    /// A FrameReader on the accepted side of a loopback connection, and the
    /// client side to write to.
    async fn pair(max: usize) -> (FrameReader, TcpStream) {
        pair_with(limits(max)).await
    }

    async fn pair_with(limits: ReadLimits) -> (FrameReader, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (rd, _wr) = server.into_split();
        (FrameReader::new(ReadSide::Plain(rd), limits), client)
    }

    #[tokio::test]
    async fn a_request_not_whole_in_time_is_an_error_and_an_idle_wait_another() {
        let (mut reader, mut client) = pair_with(ReadLimits {
            idle: Some(Duration::from_millis(100)),
            request_timeout: Duration::from_millis(200),
            ..limits(1000)
        })
        .await;
        assert!(matches!(
            tokio::time::timeout(Duration::from_secs(10), reader.next()).await,
            Ok(Err(ConnError::Idle))
        ));
        // A whole request after the idle error is read as usual.
        client.write_all(&framed(b"ok")).await.unwrap();
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(10), reader.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap()
                .bytes,
            &b"ok"[..]
        );
        // Claims 100 bytes, sends 10: cut off at the read timeout, not idle.
        let mut wire = 100i32.to_be_bytes().to_vec();
        wire.extend_from_slice(&[1; 10]);
        client.write_all(&wire).await.unwrap();
        match tokio::time::timeout(Duration::from_secs(10), reader.next()).await {
            Ok(Err(ConnError::RequestTimeout { got })) => assert_eq!(got, 14),
            other => panic!("expected a read timeout, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn large_requests_wait_for_the_budget_and_small_ones_do_not() {
        let memory = RequestMemory::new(Some(200 << 10));
        let held = memory.charge(200 << 10).await.unwrap();
        let budgeted = |max| ReadLimits {
            memory: memory.clone(),
            ..limits(max)
        };
        let (mut large, mut c1) = pair_with(budgeted(1 << 20)).await;
        let (mut small, mut c2) = pair_with(budgeted(1 << 20)).await;
        let body = vec![7u8; 150 << 10];
        let wire = framed(&body);
        let sender = tokio::spawn(async move {
            c1.write_all(&wire).await.unwrap();
            c1
        });
        c2.write_all(&framed(b"small")).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(10), small.next()).await;
        assert_eq!(got.unwrap().unwrap().unwrap().bytes, &b"small"[..]);
        // The large one is not read while the budget is taken ...
        let early = tokio::time::timeout(Duration::from_millis(200), large.next()).await;
        assert!(early.is_err(), "read past a full budget");
        assert!(
            large.buf.len() <= READ_MIN,
            "{} bytes read ahead of the budget",
            large.buf.len()
        );
        // ... and is once the budget has room.
        drop(held);
        let frame = tokio::time::timeout(Duration::from_secs(10), large.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(frame.bytes, &body[..]);
        assert!(frame.charged.is_some());
        drop(sender.await.unwrap());
    }

    #[tokio::test]
    async fn frames_arrive_whole_however_the_bytes_are_cut() {
        // Many frames in one write, then the same frames one byte at a time.
        let bodies: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i; i as usize * 37]).collect();
        let wire: Vec<u8> = bodies.iter().flat_map(|b| framed(b)).collect();
        let (mut reader, mut client) = pair(1 << 20).await;
        client.write_all(&wire).await.unwrap();
        for b in &bodies {
            assert_eq!(reader.next().await.unwrap().unwrap().bytes, &b[..]);
        }
        let writer = tokio::spawn(async move {
            for byte in wire {
                client.write_all(&[byte]).await.unwrap();
                client.flush().await.unwrap();
            }
            client
        });
        for b in &bodies {
            assert_eq!(reader.next().await.unwrap().unwrap().bytes, &b[..]);
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
        assert_eq!(reader.next().await.unwrap().unwrap().bytes, &body[..]);
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
            assert_eq!(reader.next().await.unwrap().unwrap().bytes, &b[..]);
            assert!(
                reader.buf.is_empty(),
                "{} bytes left over after frame {}",
                reader.buf.len(),
                b[0]
            );
        }
        assert_eq!(reader.next().await.unwrap().unwrap().bytes, &b"small"[..]);
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

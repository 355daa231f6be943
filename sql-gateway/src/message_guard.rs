//! A bound on the size of one Postgres frontend message, checked on the
//! byte stream before pgwire buffers the message. pgwire accepts up to
//! Postgres's own 1 GiB per message, which one process per connection can
//! afford but a broker serving hundreds of SQL connections beside its Kafka
//! clients cannot. Default 16 MiB, as CockroachDB's
//! `sql.conn.max_read_buffer_message_size`.
//!
//! The guard follows the framing: the first message after TLS negotiation
//! (startup or cancel) is a 4-byte length and body; every later one a type
//! byte, a 4-byte length (counting itself) and body. It also bounds the
//! time from a message's first byte to its last (a slowloris holds a
//! connection slot, and pgwire its partial message, for as long as it
//! likes otherwise); the time between messages is not bounded, as in
//! Postgres (`idle_session_timeout` is off by default).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// A frontend message longer than the bound.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("a message of {len} bytes is larger than the {max} allowed (--sql-max-message-bytes)")]
pub struct MessageTooLarge {
    pub len: u64,
    pub max: u64,
}

/// Where the reader is in the frontend framing.
#[derive(Debug, Clone, Copy)]
enum At {
    /// Reading a header: `have` of its bytes seen, length so far.
    Header { typed: bool, have: u8, len: u32 },
    /// Skipping over the rest of a body.
    Body { left: u64 },
}

/// A message begun and not finished within the read timeout.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("a message was not sent whole within {0:?} of its first byte (--request-read-timeout-ms)")]
pub struct MessageTimedOut(pub Duration);

/// Checks the length of every frontend message read through it.
#[derive(Debug, Clone, Copy)]
pub struct Framing {
    at: At,
    max: u64,
    /// Messages read to their end so far.
    completed: u64,
}

impl Framing {
    /// At the start of a connection's first (untyped) message.
    pub fn new(max: u64) -> Framing {
        Framing {
            at: At::Header {
                typed: false,
                have: 0,
                len: 0,
            },
            max,
            completed: 0,
        }
    }

    /// Part of a message has been read, not all of it.
    pub fn mid_message(&self) -> bool {
        !matches!(self.at, At::Header { have: 0, .. })
    }

    /// Follows `bytes`, the next ones of the stream.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), MessageTooLarge> {
        while !bytes.is_empty() {
            match &mut self.at {
                At::Body { left } => {
                    let n = (*left).min(bytes.len() as u64);
                    *left -= n;
                    bytes = &bytes[n as usize..];
                    if *left == 0 {
                        self.completed += 1;
                        self.at = At::Header {
                            typed: true,
                            have: 0,
                            len: 0,
                        };
                    }
                }
                At::Header { typed, have, len } => {
                    let b = bytes[0];
                    bytes = &bytes[1..];
                    let length_at = u8::from(*typed);
                    if *have >= length_at {
                        *len = (*len << 8) | u32::from(b);
                    }
                    *have += 1;
                    if *have == length_at + 4 {
                        let total = u64::from(*len);
                        if total > self.max {
                            return Err(MessageTooLarge {
                                len: total,
                                max: self.max,
                            });
                        }
                        // The length counts its own 4 bytes; a shorter one
                        // is pgwire's to refuse, so nothing is skipped.
                        let left = total.saturating_sub(4);
                        self.at = if left == 0 {
                            self.completed += 1;
                            At::Header {
                                typed: true,
                                have: 0,
                                len: 0,
                            }
                        } else {
                            At::Body { left }
                        };
                    }
                }
            }
        }
        Ok(())
    }
}

/// A stream whose reads fail with [`MessageTooLarge`] (as
/// `io::ErrorKind::InvalidData`) at the header of an oversized message,
/// and with [`MessageTimedOut`] (`io::ErrorKind::TimedOut`) when a message
/// begun is not whole within `read_timeout`.
pub struct MessageGuard<IO> {
    inner: IO,
    framing: Framing,
    read_timeout: Duration,
    /// When the message being read must be whole. Started when the
    /// decoder first waits for the rest of a message, not when its first
    /// byte arrived: bytes of the next message read along with the last
    /// one wait, unread, while the gateway runs that one's query, and that
    /// is not the client's time.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<IO> MessageGuard<IO> {
    pub fn new(inner: IO, framing: Framing, read_timeout: Duration) -> MessageGuard<IO> {
        MessageGuard {
            inner,
            framing,
            read_timeout,
            deadline: None,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for MessageGuard<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        if this.framing.mid_message() && this.deadline.is_none() {
            this.deadline = Some(Box::pin(tokio::time::sleep(this.read_timeout)));
        }
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let new = &buf.filled()[before..];
                let completed = this.framing.completed;
                match this.framing.feed(new) {
                    Ok(()) => {
                        if this.framing.completed != completed {
                            this.deadline = None;
                        }
                        Poll::Ready(Ok(()))
                    }
                    Err(e) => {
                        // Nothing of this read reaches the decoder.
                        buf.set_filled(before);
                        Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)))
                    }
                }
            }
            Poll::Pending => {
                let expired = this
                    .deadline
                    .as_mut()
                    .is_some_and(|d| d.as_mut().poll(cx).is_ready());
                if expired {
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        MessageTimedOut(this.read_timeout),
                    )))
                } else {
                    Poll::Pending
                }
            }
            other => other,
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for MessageGuard<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(t: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![t];
        m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    fn startup() -> Vec<u8> {
        let body = b"\x00\x03\x00\x00user\x00k\x00\x00";
        let mut m = (body.len() as u32 + 4).to_be_bytes().to_vec();
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn follows_messages_split_anywhere() {
        let mut stream = startup();
        stream.extend(typed(b'Q', b"select 1\0"));
        stream.extend(typed(b'S', b""));
        stream.extend(typed(b'Q', &[b'x'; 100]));
        for cut in 0..stream.len() {
            let mut f = Framing::new(200);
            f.feed(&stream[..cut]).unwrap();
            f.feed(&stream[cut..]).unwrap();
            assert!(matches!(
                f.at,
                At::Header {
                    have: 0,
                    typed: true,
                    ..
                }
            ));
        }
        let mut g = Framing::new(200);
        for b in &stream {
            g.feed(std::slice::from_ref(b)).unwrap();
        }
        assert!(matches!(
            g.at,
            At::Header {
                have: 0,
                typed: true,
                ..
            }
        ));
        // One byte more than the bound in a later message is refused
        // wherever the stream was cut.
        let mut over = stream.clone();
        over.extend(typed(b'Q', &[b'y'; 197]));
        let mut h = Framing::new(200);
        assert!(h.feed(&over).is_err());
    }

    #[test]
    fn refuses_the_header_of_an_oversized_message() {
        let mut f = Framing::new(64);
        f.feed(&startup()).unwrap();
        f.feed(&typed(b'Q', &[b'x'; 60])).unwrap();
        let mut big = vec![b'Q'];
        big.extend_from_slice(&1_000_000u32.to_be_bytes());
        let e = f.feed(&big).unwrap_err();
        assert_eq!((e.len, e.max), (1_000_000, 64));
        // An oversized startup packet too.
        let e = Framing::new(64)
            .feed(&[0x7f, 0xff, 0xff, 0xff])
            .unwrap_err();
        assert_eq!(e.len, 0x7fff_ffff);
    }
}

//! A follower's Kafka connection to a partition leader: typed requests
//! encoded with the kafka-protocol crate, one in flight, every answer's
//! size bounded before it is read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};

use crate::tls::{PeerStream, PeerTls};

/// Replica fetches ask for at most a few MiB; nothing else comes near this.
const MAX_RESPONSE: usize = 128 << 20;

pub struct LeaderConn {
    stream: BufReader<Box<dyn PeerStream>>,
    correlation: i32,
    client_id: StrBytes,
}

fn invalid(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
}

impl LeaderConn {
    pub async fn connect(
        addr: &str,
        node: i32,
        timeout: Duration,
        tls: Option<&PeerTls>,
    ) -> std::io::Result<LeaderConn> {
        Self::connect_as(addr, format!("karnak-replica-fetcher-{node}"), timeout, tls).await
    }

    /// A connection whose requests carry `client_id` (the leader's logs and
    /// quotas tell replica fetchers from other peers by it).
    pub async fn connect_as(
        addr: &str,
        client_id: String,
        timeout: Duration,
        tls: Option<&PeerTls>,
    ) -> std::io::Result<LeaderConn> {
        let stream = tokio::time::timeout(timeout, crate::tls::dial_peer(addr, tls))
            .await
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("connecting to {addr}"),
                )
            })??;
        Ok(LeaderConn {
            stream: BufReader::with_capacity(256 << 10, stream),
            correlation: 0,
            client_id: StrBytes::from_string(client_id),
        })
    }

    /// Sends `req` as `key` v`version` and decodes the answer.
    pub async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        req: &Req,
        timeout: Duration,
    ) -> std::io::Result<Resp> {
        self.correlation = self.correlation.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(self.client_id.clone()));
        let mut buf = BytesMut::with_capacity(256);
        buf.put_i32(0);
        header
            .encode(&mut buf, key.request_header_version(version))
            .map_err(|e| invalid(format!("encoding a {key:?} header: {e}")))?;
        req.encode(&mut buf, version)
            .map_err(|e| invalid(format!("encoding {key:?}: {e}")))?;
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        let exchange = async {
            self.stream.get_mut().write_all(&buf).await?;
            let size = self.stream.read_i32().await?;
            let size = usize::try_from(size)
                .ok()
                .filter(|s| *s >= 4 && *s <= MAX_RESPONSE)
                .ok_or_else(|| invalid(format!("a {key:?} response of {size} bytes")))?;
            let mut body = vec![0u8; size];
            self.stream.read_exact(&mut body).await?;
            Ok::<_, std::io::Error>(Bytes::from(body))
        };
        let mut body = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, format!("no {key:?} answer"))
            })??;
        let correlation = body.get_i32();
        if correlation != self.correlation {
            return Err(invalid(format!(
                "answer {correlation} to request {}",
                self.correlation
            )));
        }
        if key.response_header_version(version) >= 1 {
            // Tagged fields of the response header: none are used.
            if !body.has_remaining() || body.get_u8() != 0 {
                return Err(invalid("tagged fields in a response header".into()));
            }
        }
        Resp::decode(&mut body, version).map_err(|e| invalid(format!("decoding {key:?}: {e}")))
    }
}

/// Why a pooled call failed: the connection could not be made (nothing
/// was sent), or the exchange failed (the request may have arrived).
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("{key:?} to {addr}: {source}")]
    Exchange {
        key: ApiKey,
        addr: String,
        source: std::io::Error,
    },
}

/// Idle connections to other brokers' Kafka listeners, by address, so
/// requests between brokers (transaction markers, the SQL gateway's reads)
/// do not pay a connect each. A connection whose exchange failed is
/// dropped, never returned.
pub struct PeerPool {
    client_id: String,
    per_addr: usize,
    tls: Option<Arc<PeerTls>>,
    idle: Mutex<HashMap<String, Vec<LeaderConn>>>,
}

impl PeerPool {
    pub fn new(client_id: String, per_addr: usize, tls: Option<Arc<PeerTls>>) -> PeerPool {
        PeerPool {
            client_id,
            per_addr,
            tls,
            idle: Mutex::new(HashMap::new()),
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<LeaderConn>>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends `req` to `addr` on an idle connection or a new one.
    pub async fn call<Req: Encodable, Resp: Decodable>(
        &self,
        addr: &str,
        key: ApiKey,
        version: i16,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, PoolError> {
        let pooled = self.idle().get_mut(addr).and_then(Vec::pop);
        let mut conn = match pooled {
            Some(c) => c,
            None => {
                LeaderConn::connect_as(addr, self.client_id.clone(), timeout, self.tls.as_deref())
                    .await
                    .map_err(|source| PoolError::Connect {
                        addr: addr.to_string(),
                        source,
                    })?
            }
        };
        let resp = conn
            .call(key, version, req, timeout)
            .await
            .map_err(|source| PoolError::Exchange {
                key,
                addr: addr.to_string(),
                source,
            })?;
        let mut idle = self.idle();
        let conns = idle.entry(addr.to_string()).or_default();
        if conns.len() < self.per_addr {
            conns.push(conn);
        }
        Ok(resp)
    }
}

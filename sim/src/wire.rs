//! A Kafka client as small as the simulation needs: typed requests over
//! turmoil's TCP, one in flight per connection.

use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use turmoil::net::TcpStream;

/// Largest response taken (the workloads ask for little).
const MAX_RESPONSE: usize = 16 << 20;

pub struct Conn {
    stream: TcpStream,
    correlation: i32,
}

/// The connection failed or the answer made no sense: either way the
/// client reconnects and carries on.
pub type Failed = String;

impl Conn {
    pub async fn connect(addr: &str) -> Result<Conn, Failed> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        Ok(Conn {
            stream,
            correlation: 0,
        })
    }

    pub async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        req: &Req,
    ) -> Result<Resp, Failed> {
        self.correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("sim")));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, key.request_header_version(version))
            .map_err(|e| format!("encoding a {key:?} header: {e}"))?;
        req.encode(&mut body, version)
            .map_err(|e| format!("encoding {key:?} v{version}: {e}"))?;
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_u32(body.len() as u32);
        frame.extend_from_slice(&body);
        self.stream
            .write_all(&frame)
            .await
            .map_err(|e| format!("sending {key:?}: {e}"))?;
        let len = self
            .stream
            .read_u32()
            .await
            .map_err(|e| format!("reading the {key:?} answer: {e}"))? as usize;
        if len > MAX_RESPONSE {
            return Err(format!("a {len}-byte {key:?} answer"));
        }
        let mut resp = BytesMut::zeroed(len);
        self.stream
            .read_exact(&mut resp)
            .await
            .map_err(|e| format!("reading the {key:?} answer: {e}"))?;
        if resp.remaining() < 4 || resp.get_i32() != self.correlation {
            return Err(format!("{key:?} answered out of order"));
        }
        if key.response_header_version(version) >= 1 {
            // The response header's tagged fields (none are sent).
            if resp.remaining() < 1 || resp.get_u8() != 0 {
                return Err(format!("{key:?} answer with header tags"));
            }
        }
        Resp::decode(&mut resp, version).map_err(|e| format!("decoding {key:?} v{version}: {e}"))
    }
}

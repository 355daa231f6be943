//! What a handler hands back: a response body made of in-memory bytes and
//! file regions, or a future that produces one later (acks=all, long poll).

use std::future::Future;
use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use kafka_protocol::protocol::Encodable;
use karnak_protocol::fetch_response::Part;
use karnak_storage::FileSlice;

/// An encoded response body (without the size prefix and response header).
pub struct Response {
    pub parts: Vec<Part<FileSlice>>,
    pub len: usize,
    /// Top-level error code, for the requests metric.
    pub error_code: i16,
}

impl Response {
    pub fn from_bytes(bytes: Bytes, error_code: i16) -> Self {
        let len = bytes.len();
        Response {
            parts: vec![Part::Bytes(bytes)],
            len,
            error_code,
        }
    }

    /// Encodes a typed message from the `kafka-protocol` crate.
    pub fn encode<M: Encodable>(
        msg: &M,
        version: i16,
        error_code: i16,
    ) -> Result<Self, HandlerError> {
        let mut buf = BytesMut::with_capacity(msg.compute_size(version).unwrap_or(64));
        msg.encode(&mut buf, version)
            .map_err(|e| HandlerError::Encode(format!("{e:#}")))?;
        Ok(Response::from_bytes(buf.freeze(), error_code))
    }
}

pub type ResponseFuture = Pin<Box<dyn Future<Output = Result<Response, HandlerError>> + Send>>;

/// The outcome of handling one request.
pub enum Reply {
    Ready(Response),
    /// Answered once the future completes; later requests on the connection
    /// may be read meanwhile, but responses still go out in request order.
    Later(ResponseFuture),
    /// acks=0 produce: Kafka sends nothing back.
    Nothing,
}

/// Failures that end the connection, as Kafka does when a request cannot be
/// parsed or answered in its own format.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("could not decode {api} v{version}: {reason}")]
    Decode {
        api: &'static str,
        version: i16,
        reason: String,
    },
    #[error("could not encode response: {0}")]
    Encode(String),
    #[error("{0}")]
    Internal(String),
}

/// Decodes a request body with the `kafka-protocol` crate.
pub fn decode<M: kafka_protocol::protocol::Decodable>(
    body: &mut Bytes,
    api: &'static str,
    version: i16,
) -> Result<M, HandlerError> {
    M::decode(body, version).map_err(|e| HandlerError::Decode {
        api,
        version,
        reason: format!("{e:#}"),
    })
}

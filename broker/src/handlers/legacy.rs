//! Old versions of APIs whose handlers only know newer ones (KIP-896's
//! list, see `karnak_protocol::legacy`): the body is rewritten to the
//! nearest version the crate decodes, the API's own handler answers it,
//! and the answer is rewritten back. Produce v0-2 and Fetch v0-3 change
//! the record format too, so their handlers convert themselves.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use karnak_protocol::fetch_response::Part;
use karnak_protocol::legacy::{self, LegacyError};

use super::DispatchError;
use crate::response::{HandlerError, Reply, Response};

fn legacy_error(api: ApiKey, version: i16) -> impl Fn(LegacyError) -> DispatchError {
    move |source| DispatchError::Legacy {
        api,
        version,
        source,
    }
}

/// Serves `version` of `api` through `handler`, which answers the
/// upgraded body at the version it is given.
pub fn serve(
    api: ApiKey,
    version: i16,
    body: &[u8],
    handler: impl FnOnce(&mut Bytes, i16) -> Result<Reply, DispatchError>,
) -> Result<Reply, DispatchError> {
    let target = legacy::upgrade_target(api, version)
        .ok_or(LegacyError::NotLegacy { api, version })
        .map_err(legacy_error(api, version))?;
    let mut upgraded =
        legacy::upgrade_request(api, version, body).map_err(legacy_error(api, version))?;
    let downgrade = move |r: Response| -> Result<Response, HandlerError> {
        let error_code = r.error_code;
        let body = contiguous(r)?;
        let old = legacy::downgrade_response(api, version, &body)
            .map_err(|e| HandlerError::Encode(format!("{api:?} v{version} answer: {e}")))?;
        Ok(Response::from_bytes(old, error_code))
    };
    Ok(match handler(&mut upgraded, target)? {
        Reply::Ready(r) => Reply::Ready(downgrade(r)?),
        Reply::Later(f) => Reply::Later(Box::pin(async move { downgrade(f.await?) })),
        Reply::Nothing => Reply::Nothing,
    })
}

/// The answer's bytes in one piece. Only Fetch answers carry file regions,
/// and Fetch is not served through here.
fn contiguous(r: Response) -> Result<Bytes, HandlerError> {
    if let [Part::Bytes(b)] = r.parts.as_slice() {
        return Ok(b.clone());
    }
    let mut out = BytesMut::with_capacity(r.len);
    for part in r.parts {
        match part {
            Part::Bytes(b) => out.extend_from_slice(&b),
            Part::Region(_) => {
                return Err(HandlerError::Internal(
                    "a rewritten answer holds a file region".into(),
                ));
            }
        }
    }
    Ok(out.freeze())
}

//! SaslHandshake (key 17, v0-1): the client names a mechanism; an enabled one
//! starts the exchange SaslAuthenticate carries. Kafka's answers: an
//! unknown mechanism gets UNSUPPORTED_SASL_MECHANISM with the enabled list
//! (and the connection closes); a handshake on a listener without SASL, or
//! in the middle of an exchange, gets ILLEGAL_SASL_STATE.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{SaslHandshakeRequest, SaslHandshakeResponse};
use kafka_protocol::protocol::StrBytes;

use super::Session;
use crate::broker::Broker;
use crate::response::{HandlerError, Reply, Response, decode};

pub fn handle(
    broker: &Arc<Broker>,
    body: &mut Bytes,
    version: i16,
    session: &Session,
) -> Result<Reply, HandlerError> {
    let req: SaslHandshakeRequest = decode(body, "SaslHandshake", version)?;
    // `code`: None for success.
    let answer = |code: Option<ResponseError>, names: Vec<&'static str>| {
        let code = code.map_or(0, |c| c.code());
        let resp = SaslHandshakeResponse::default()
            .with_error_code(code)
            .with_mechanisms(names.into_iter().map(StrBytes::from_static_str).collect());
        Response::encode(&resp, version, code).map(Reply::Ready)
    };
    let sasl = match &broker.sasl {
        Some(s) if session.auth.is_sasl() => s,
        _ => return answer(Some(ResponseError::IllegalSaslState), Vec::new()),
    };
    if version == 0 {
        // Raw SASL tokens outside Kafka framing would follow: not served.
        tracing::warn!(peer = %session.peer, "SaslHandshake v0 (raw SASL tokens) is not served; closing");
        session.auth.failed();
        return answer(Some(ResponseError::UnsupportedVersion), sasl.names());
    }
    let Some(m) = sasl.enabled(req.mechanism.as_str()) else {
        tracing::warn!(peer = %session.peer, mechanism = %req.mechanism.as_str(), "SASL mechanism not enabled; closing");
        session.auth.failed();
        return answer(Some(ResponseError::UnsupportedSaslMechanism), sasl.names());
    };
    if session.auth.begin(m).is_err() {
        session.auth.failed();
        return answer(Some(ResponseError::IllegalSaslState), sasl.names());
    }
    answer(None, sasl.names())
}

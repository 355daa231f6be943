//! Answers for Kafka APIs Karnak does not serve yet. ApiVersions does not
//! list them, so well-behaved clients never send them; a client that does gets
//! UNSUPPORTED_VERSION in the API's own response format where it has a
//! top-level error code, and a closed connection otherwise (as Kafka does for
//! requests it cannot parse).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, Message};

use crate::response::{HandlerError, Response};

const UNSUPPORTED_VERSION: i16 = ResponseError::UnsupportedVersion.code();

fn encode<M: Encodable + Message>(msg: M, version: i16) -> Option<Result<Response, HandlerError>> {
    if version < M::VERSIONS.min || version > M::VERSIONS.max {
        return None;
    }
    Some(Response::encode(&msg, version, UNSUPPORTED_VERSION))
}

pub fn response(key: ApiKey, version: i16) -> Option<Result<Response, HandlerError>> {
    let e = UNSUPPORTED_VERSION;
    match key {
        ApiKey::FindCoordinator if version < 4 => encode(
            FindCoordinatorResponse::default()
                .with_error_code(e)
                .with_node_id(BrokerId(-1))
                .with_port(-1),
            version,
        ),
        ApiKey::JoinGroup => encode(JoinGroupResponse::default().with_error_code(e), version),
        ApiKey::SyncGroup => encode(SyncGroupResponse::default().with_error_code(e), version),
        ApiKey::Heartbeat => encode(HeartbeatResponse::default().with_error_code(e), version),
        ApiKey::LeaveGroup => encode(LeaveGroupResponse::default().with_error_code(e), version),
        ApiKey::ListGroups => encode(ListGroupsResponse::default().with_error_code(e), version),
        ApiKey::SaslHandshake => {
            encode(SaslHandshakeResponse::default().with_error_code(e), version)
        }
        ApiKey::SaslAuthenticate => encode(
            SaslAuthenticateResponse::default().with_error_code(e),
            version,
        ),
        ApiKey::OffsetFetch if version >= 2 => {
            encode(OffsetFetchResponse::default().with_error_code(e), version)
        }
        ApiKey::DescribeClientQuotas => encode(
            DescribeClientQuotasResponse::default().with_error_code(e),
            version,
        ),
        _ => None,
    }
}

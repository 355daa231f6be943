//! CreateAcls (key 30): SECURITY_DISABLED for every creation, as Kafka
//! answers without an authorizer (see describe_acls.rs).

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::{CreateAclsRequest, CreateAclsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::response::{HandlerError, Reply, Response, decode};

pub fn handle(body: &mut Bytes, version: i16) -> Result<Reply, HandlerError> {
    let request: CreateAclsRequest = decode(body, "CreateAcls", version)?;
    let results = request
        .creations
        .iter()
        .map(|_| {
            AclCreationResult::default()
                .with_error_code(ResponseError::SecurityDisabled.code())
                .with_error_message(Some(StrBytes::from_static_str(
                    "No Authorizer is configured.",
                )))
        })
        .collect();
    let response = CreateAclsResponse::default().with_results(results);
    Ok(Reply::Ready(Response::encode(&response, version, 0)?))
}

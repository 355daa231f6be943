//! DeleteAcls (key 31): SECURITY_DISABLED for every filter, as Kafka
//! answers without an authorizer (see describe_acls.rs).

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_acls_response::DeleteAclsFilterResult;
use kafka_protocol::messages::{DeleteAclsRequest, DeleteAclsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::response::{HandlerError, Reply, Response, decode};

pub fn handle(body: &mut Bytes, version: i16) -> Result<Reply, HandlerError> {
    let request: DeleteAclsRequest = decode(body, "DeleteAcls", version)?;
    let results = request
        .filters
        .iter()
        .map(|_| {
            DeleteAclsFilterResult::default()
                .with_error_code(ResponseError::SecurityDisabled.code())
                .with_error_message(Some(StrBytes::from_static_str(
                    "No Authorizer is configured.",
                )))
        })
        .collect();
    let response = DeleteAclsResponse::default().with_filter_results(results);
    Ok(Reply::Ready(Response::encode(&response, version, 0)?))
}

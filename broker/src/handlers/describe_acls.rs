//! DescribeAcls (key 29): answered as Kafka answers without an authorizer
//! (`authorizer.class.name` unset): SECURITY_DISABLED. Tools that sync ACLs
//! (MirrorMaker 2) take that as "nothing to sync"; ACLs come with issue 19.

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{DescribeAclsRequest, DescribeAclsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::response::{HandlerError, Reply, Response, decode};

pub fn handle(body: &mut Bytes, version: i16) -> Result<Reply, HandlerError> {
    let _: DescribeAclsRequest = decode(body, "DescribeAcls", version)?;
    let code = ResponseError::SecurityDisabled.code();
    let response = DescribeAclsResponse::default()
        .with_error_code(code)
        .with_error_message(Some(StrBytes::from_static_str(
            "No Authorizer is configured.",
        )));
    Ok(Reply::Ready(Response::encode(&response, version, code)?))
}

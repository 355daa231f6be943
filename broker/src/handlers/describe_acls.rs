//! DescribeAcls (key 29): the ACLs a filter matches, grouped by resource
//! pattern, for a caller with DESCRIBE on the cluster (`kafka-acls --list`).
//! Without an authorizer Kafka answers SECURITY_DISABLED, and so do we:
//! tools that sync ACLs (MirrorMaker 2) take that as "nothing to sync".

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{DescribeAclsRequest, DescribeAclsResponse};
use kafka_protocol::protocol::StrBytes;
use karnak_coordinator::metadata::acls::{AclFilter, AclOperation};

use crate::authz::Authz;
use crate::broker::Broker;
use crate::response::{HandlerError, Reply, Response, decode};

pub fn handle(
    broker: &Arc<Broker>,
    body: &mut Bytes,
    version: i16,
    authz: &Authz,
) -> Result<Reply, HandlerError> {
    let r: DescribeAclsRequest = decode(body, "DescribeAcls", version)?;
    let refuse = |e: ResponseError, message: String| -> Result<Reply, HandlerError> {
        let response = DescribeAclsResponse::default()
            .with_error_code(e.code())
            .with_error_message(Some(StrBytes::from_string(message)));
        Ok(Reply::Ready(Response::encode(
            &response,
            version,
            e.code(),
        )?))
    };
    if let Some((code, message)) = authz.acl_api_refusal(
        AclOperation::Describe,
        "DESCRIBE on the cluster is needed to list ACLs",
    ) {
        return refuse(code, message);
    }
    let filter = match AclFilter::from_wire(
        r.resource_type_filter,
        r.resource_name_filter.as_deref(),
        r.pattern_type_filter,
        r.principal_filter.as_deref(),
        r.host_filter.as_deref(),
        r.operation,
        r.permission_type,
    ) {
        Ok(f) => f,
        Err(e) => return refuse(ResponseError::InvalidRequest, e.to_string()),
    };
    let meta = broker.cluster.metadata();
    let mut grouped: BTreeMap<_, Vec<AclDescription>> = BTreeMap::new();
    for b in meta.acls.matching(&filter) {
        grouped
            .entry((b.resource_type, b.resource_name, b.pattern_type))
            .or_default()
            .push(
                AclDescription::default()
                    .with_principal(StrBytes::from_string(b.entry.principal))
                    .with_host(StrBytes::from_string(b.entry.host))
                    .with_operation(b.entry.operation.code())
                    .with_permission_type(b.entry.permission.code()),
            );
    }
    let resources = grouped
        .into_iter()
        .map(|((rt, name, pt), acls)| {
            DescribeAclsResource::default()
                .with_resource_type(rt.code())
                .with_resource_name(StrBytes::from_string(name))
                .with_pattern_type(pt.code())
                .with_acls(acls)
        })
        .collect();
    let response = DescribeAclsResponse::default().with_resources(resources);
    Ok(Reply::Ready(Response::encode(&response, version, 0)?))
}

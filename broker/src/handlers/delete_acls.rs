//! DeleteAcls (key 31): each filter removes the bindings it matches when
//! the metadata log applies it, for a caller with ALTER on the cluster
//! (`kafka-acls --remove`); the answer lists what each filter removed.
//! A caller without it removes nothing, however wide its filters.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::{DeleteAclsRequest, DeleteAclsResponse};
use kafka_protocol::protocol::StrBytes;
use karnak_coordinator::metadata::acls::{AclFilter, AclOperation};
use karnak_coordinator::metadata::{MetadataCommand, MetadataReply};

use crate::authz::Authz;
use crate::broker::Broker;
use crate::response::{HandlerError, Reply, Response, decode};

const TIMEOUT: Duration = Duration::from_secs(30);

fn failed(code: ResponseError, message: String) -> DeleteAclsFilterResult {
    DeleteAclsFilterResult::default()
        .with_error_code(code.code())
        .with_error_message(Some(StrBytes::from_string(message)))
}

pub fn handle(
    broker: &Arc<Broker>,
    body: &mut Bytes,
    version: i16,
    authz: &Authz,
) -> Result<Reply, HandlerError> {
    let request: DeleteAclsRequest = decode(body, "DeleteAcls", version)?;
    let refuse_all = |code: ResponseError, message: &str| -> Result<Reply, HandlerError> {
        let results = request
            .filters
            .iter()
            .map(|_| failed(code, message.to_string()))
            .collect();
        let response = DeleteAclsResponse::default().with_filter_results(results);
        Ok(Reply::Ready(Response::encode(&response, version, 0)?))
    };
    if let Some((code, message)) = authz.acl_api_refusal(
        AclOperation::Alter,
        "ALTER on the cluster is needed to delete ACLs",
    ) {
        return refuse_all(code, &message);
    }
    let checked: Vec<Result<AclFilter, String>> = request
        .filters
        .iter()
        .map(|f| {
            AclFilter::from_wire(
                f.resource_type_filter,
                f.resource_name_filter.as_deref(),
                f.pattern_type_filter,
                f.principal_filter.as_deref(),
                f.host_filter.as_deref(),
                f.operation,
                f.permission_type,
            )
            .map_err(|e| e.to_string())
        })
        .collect();
    let filters: Vec<AclFilter> = checked.iter().filter_map(|c| c.clone().ok()).collect();
    let broker = broker.clone();
    Ok(Reply::Later(Box::pin(async move {
        let outcome = if filters.is_empty() {
            Ok(Vec::new())
        } else {
            match broker
                .cluster
                .propose(MetadataCommand::DeleteAcls { filters }, TIMEOUT)
                .await
            {
                Ok(MetadataReply::AclsDeleted(per_filter)) => Ok(per_filter),
                Ok(other) => Err((
                    ResponseError::UnknownServerError,
                    format!("unexpected metadata reply {other:?}"),
                )),
                Err(e) => Err((e.code(), e.to_string())),
            }
        };
        let mut removed = match &outcome {
            Ok(per_filter) => per_filter.clone().into_iter(),
            Err(_) => Vec::new().into_iter(),
        };
        let results = checked
            .into_iter()
            .map(|c| match (c, &outcome) {
                (Err(message), _) => failed(ResponseError::InvalidRequest, message),
                (Ok(_), Err((code, message))) => failed(*code, message.clone()),
                (Ok(_), Ok(_)) => {
                    let matching = removed
                        .next()
                        .unwrap_or_default()
                        .into_iter()
                        .map(|b| {
                            DeleteAclsMatchingAcl::default()
                                .with_resource_type(b.resource_type.code())
                                .with_resource_name(StrBytes::from_string(b.resource_name))
                                .with_pattern_type(b.pattern_type.code())
                                .with_principal(StrBytes::from_string(b.entry.principal))
                                .with_host(StrBytes::from_string(b.entry.host))
                                .with_operation(b.entry.operation.code())
                                .with_permission_type(b.entry.permission.code())
                        })
                        .collect();
                    DeleteAclsFilterResult::default().with_matching_acls(matching)
                }
            })
            .collect();
        let response = DeleteAclsResponse::default().with_filter_results(results);
        Response::encode(&response, version, 0)
    })))
}

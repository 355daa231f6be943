//! CreateAcls (key 30): bindings validated as Kafka's controller validates
//! them, then added through the metadata log in one command, for a caller
//! with ALTER on the cluster (`kafka-acls --add`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::{CreateAclsRequest, CreateAclsResponse};
use kafka_protocol::protocol::StrBytes;
use karnak_coordinator::metadata::MetadataCommand;
use karnak_coordinator::metadata::acls::{AclBinding, AclOperation};

use crate::authz::Authz;
use crate::broker::Broker;
use crate::response::{HandlerError, Reply, Response, decode};

const TIMEOUT: Duration = Duration::from_secs(30);

fn result(code: ResponseError, message: String) -> AclCreationResult {
    AclCreationResult::default()
        .with_error_code(code.code())
        .with_error_message(Some(StrBytes::from_string(message)))
}

pub fn handle(
    broker: &Arc<Broker>,
    body: &mut Bytes,
    version: i16,
    authz: &Authz,
) -> Result<Reply, HandlerError> {
    let request: CreateAclsRequest = decode(body, "CreateAcls", version)?;
    let refuse_all = |code: ResponseError, message: &str| -> Result<Reply, HandlerError> {
        let results = request
            .creations
            .iter()
            .map(|_| result(code, message.to_string()))
            .collect();
        let response = CreateAclsResponse::default().with_results(results);
        Ok(Reply::Ready(Response::encode(&response, version, 0)?))
    };
    if let Some((code, message)) = authz.acl_api_refusal(
        AclOperation::Alter,
        "ALTER on the cluster is needed to create ACLs",
    ) {
        return refuse_all(code, &message);
    }
    let checked: Vec<Result<AclBinding, String>> = request
        .creations
        .iter()
        .map(|c| {
            AclBinding::from_wire(
                c.resource_type,
                &c.resource_name,
                c.resource_pattern_type,
                &c.principal,
                &c.host,
                c.operation,
                c.permission_type,
            )
            .map_err(|e| e.to_string())
        })
        .collect();
    let bindings: Vec<AclBinding> = checked.iter().filter_map(|c| c.clone().ok()).collect();
    let broker = broker.clone();
    Ok(Reply::Later(Box::pin(async move {
        let outcome = if bindings.is_empty() {
            None
        } else {
            broker
                .cluster
                .propose(MetadataCommand::CreateAcls { bindings }, TIMEOUT)
                .await
                .err()
        };
        let results = checked
            .into_iter()
            .map(|c| match (c, &outcome) {
                (Err(message), _) => result(ResponseError::InvalidRequest, message),
                (Ok(_), Some(e)) => result(e.code(), e.to_string()),
                (Ok(_), None) => AclCreationResult::default(),
            })
            .collect();
        let response = CreateAclsResponse::default().with_results(results);
        Response::encode(&response, version, 0)
    })))
}

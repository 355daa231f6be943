//! AlterConfigs (key 33), the legacy whole-set form: the configs given
//! replace every override of the resource (what is left out returns to its
//! default), as Kafka does.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};

use crate::authz::{AclOperation, Authz};
use crate::broker::Broker;
use crate::configs::{self, ConfigOp, OpType, ResourceChange};
use crate::response::{HandlerError, Reply, Response, decode};

pub fn handle(
    broker: &Arc<Broker>,
    body: &mut Bytes,
    version: i16,
    authz: &Authz,
) -> Result<Reply, HandlerError> {
    let request: AlterConfigsRequest = decode(body, "AlterConfigs", version)?;
    let changes: Vec<ResourceChange> = request
        .resources
        .into_iter()
        .map(|r| {
            let ops: Vec<ConfigOp> = r
                .configs
                .iter()
                .map(|c| ConfigOp {
                    name: c.name.as_str().to_string(),
                    op: OpType::Set,
                    value: c.value.as_ref().map(|v| v.as_str().to_string()),
                })
                .collect();
            let ops = authz
                .config_resource(
                    AclOperation::AlterConfigs,
                    r.resource_type,
                    r.resource_name.as_str(),
                )
                .map_err(|e| (e, e.to_string()))
                .map(|()| ops);
            ResourceChange {
                resource_type: r.resource_type,
                name: r.resource_name.as_str().to_string(),
                ops,
            }
        })
        .collect();
    let (broker, validate_only) = (broker.clone(), request.validate_only);
    Ok(Reply::Later(Box::pin(async move {
        let outcomes = configs::alter_resources(&broker, changes, true, validate_only).await;
        let responses = configs::resource_responses!(AlterConfigsResourceResponse, outcomes);
        let response = AlterConfigsResponse::default().with_responses(responses);
        Response::encode(&response, version, 0)
    })))
}

//! IncrementalAlterConfigs (key 44): SET, DELETE, APPEND and SUBTRACT on
//! topic configs and on the broker's dynamic log defaults, as
//! `kafka-configs --alter` and the AdminClient send them.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};

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
    let request: IncrementalAlterConfigsRequest = decode(body, "IncrementalAlterConfigs", version)?;
    let changes: Vec<ResourceChange> = request
        .resources
        .into_iter()
        .map(|r| {
            let ops: Result<Vec<ConfigOp>, _> = r
                .configs
                .iter()
                .map(|c| {
                    OpType::from_wire(c.config_operation)
                        .map(|op| ConfigOp {
                            name: c.name.as_str().to_string(),
                            op,
                            value: c.value.as_ref().map(|v| v.as_str().to_string()),
                        })
                        .ok_or_else(|| {
                            (
                                ResponseError::InvalidRequest,
                                format!("unknown config operation {}", c.config_operation),
                            )
                        })
                })
                .collect();
            let ops = authz
                .config_resource(
                    AclOperation::AlterConfigs,
                    r.resource_type,
                    r.resource_name.as_str(),
                )
                .map_err(|e| (e, e.to_string()))
                .and(ops);
            ResourceChange {
                resource_type: r.resource_type,
                name: r.resource_name.as_str().to_string(),
                ops,
            }
        })
        .collect();
    let (broker, validate_only) = (broker.clone(), request.validate_only);
    Ok(Reply::Later(Box::pin(async move {
        let outcomes = configs::alter_resources(&broker, changes, false, validate_only).await;
        let responses = configs::resource_responses!(AlterConfigsResourceResponse, outcomes);
        let response = IncrementalAlterConfigsResponse::default().with_responses(responses);
        Response::encode(&response, version, 0)
    })))
}

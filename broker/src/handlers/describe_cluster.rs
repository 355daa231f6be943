//! DescribeCluster (key 60): the live brokers and the active controller, from the metadata log.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;

use crate::authz::{AclOperation, Authz, CLUSTER_NAME, CLUSTER_OPERATIONS, ResourceType};
use crate::broker::Broker;
use crate::response::{HandlerError, Reply, Response, decode};

/// `listener`: the client's; brokers are listed with their address on it.
pub fn handle(
    broker: &Arc<Broker>,
    body: &mut Bytes,
    version: i16,
    listener: &str,
    authz: &Authz,
) -> Result<Reply, HandlerError> {
    let request: DescribeClusterRequest = decode(body, "DescribeCluster", version)?;
    // endpoint_type 1 = brokers; 2 = controllers, which a combined node also is.
    if version >= 1 && !(1..=2).contains(&request.endpoint_type) {
        let response = DescribeClusterResponse::default()
            .with_error_code(ResponseError::InvalidRequest.code())
            .with_error_message(Some(StrBytes::from_static_str("unknown endpoint type")))
            .with_endpoint_type(request.endpoint_type);
        return Ok(Reply::Ready(Response::encode(&response, version, 42)?));
    }
    let brokers = broker
        .live_brokers(listener)
        .into_iter()
        .map(|b| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(b.id))
                .with_host(StrBytes::from_string(b.host))
                .with_port(b.port)
                .with_rack(b.rack.map(StrBytes::from_string))
        })
        .collect();
    let response = DescribeClusterResponse::default()
        .with_cluster_id(StrBytes::from_string(broker.cluster_id.clone()))
        .with_controller_id(BrokerId(broker.controller_id()))
        .with_endpoint_type(if version >= 1 {
            request.endpoint_type
        } else {
            1
        })
        .with_cluster_authorized_operations(if !request.include_cluster_authorized_operations {
            i32::MIN
        } else if authz.allows(AclOperation::Describe, ResourceType::Cluster, CLUSTER_NAME) {
            authz.authorized_operations(ResourceType::Cluster, CLUSTER_NAME, CLUSTER_OPERATIONS)
        } else {
            0
        })
        .with_brokers(brokers);
    Ok(Reply::Ready(Response::encode(&response, version, 0)?))
}

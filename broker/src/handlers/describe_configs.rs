//! DescribeConfigs (key 32): topic configs (overrides and defaults) and the
//! broker's own settings under Kafka's names, with Kafka's synonym chains
//! when asked (v1+ `include_synonyms`).

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::authz::{AclOperation, Authz};
use crate::broker::Broker;
use crate::configs::{
    ConfigEntry, RESOURCE_BROKER, RESOURCE_TOPIC, broker_configs, cluster_default_configs,
    topic_configs,
};
use crate::response::{HandlerError, Reply, Response, decode};

pub fn handle(
    broker: &Arc<Broker>,
    body: &mut Bytes,
    version: i16,
    authz: &Authz,
) -> Result<Reply, HandlerError> {
    let request: DescribeConfigsRequest = decode(body, "DescribeConfigs", version)?;
    let results = request
        .resources
        .into_iter()
        .map(|r| {
            let name = r.resource_name.as_str();
            let result = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            let entries = match r.resource_type {
                _ if let Err(e) =
                    authz.config_resource(AclOperation::DescribeConfigs, r.resource_type, name) =>
                {
                    Err((e.code(), e.to_string()))
                }
                RESOURCE_TOPIC => match broker.logs.topic(name) {
                    Some(t) => Ok(topic_configs(broker, &t.config, &t.meta.configs)),
                    None => Err((
                        ResponseError::UnknownTopicOrPartition.code(),
                        format!("Topic {name} does not exist"),
                    )),
                },
                RESOURCE_BROKER if name.is_empty() => Ok(cluster_default_configs(broker)),
                RESOURCE_BROKER if name == broker.node_id().to_string() => {
                    Ok(broker_configs(broker))
                }
                RESOURCE_BROKER => Err((
                    ResponseError::InvalidRequest.code(),
                    format!("broker {name} is not this broker ({})", broker.node_id()),
                )),
                other => Err((
                    ResponseError::InvalidRequest.code(),
                    format!("resource type {other} is not supported"),
                )),
            };
            match entries {
                Err((code, msg)) => result
                    .with_error_code(code)
                    .with_error_message(Some(StrBytes::from_string(msg))),
                Ok(entries) => {
                    // Null or empty both mean "all", as in Kafka.
                    let wanted = r.configuration_keys.as_ref().filter(|k| !k.is_empty());
                    let configs = entries
                        .into_iter()
                        .filter(|e| {
                            wanted.is_none_or(|keys| keys.iter().any(|k| k.as_str() == e.name))
                        })
                        .map(|e| to_result(e, version, request.include_synonyms))
                        .collect();
                    result.with_configs(configs)
                }
            }
        })
        .collect();
    let response = DescribeConfigsResponse::default().with_results(results);
    Ok(Reply::Ready(Response::encode(&response, version, 0)?))
}

fn to_result(e: ConfigEntry, version: i16, synonyms: bool) -> DescribeConfigsResourceResult {
    let synonyms = if synonyms && version >= 1 {
        e.synonyms
            .into_iter()
            .map(|s| {
                DescribeConfigsSynonym::default()
                    .with_name(StrBytes::from_string(s.name))
                    .with_value(Some(StrBytes::from_string(s.value)))
                    .with_source(s.source)
            })
            .collect()
    } else {
        Vec::new()
    };
    let mut r = DescribeConfigsResourceResult::default()
        .with_name(StrBytes::from_string(e.name))
        .with_synonyms(synonyms)
        .with_read_only(e.read_only)
        .with_config_source(e.source);
    if version >= 3 {
        r = r.with_config_type(e.config_type);
    }
    // Kafka sends documentation only when asked (v3+ include_documentation);
    // null, not "", tells clients there is none.
    r.with_value(Some(StrBytes::from_string(e.value)))
        .with_documentation(None)
}

//! DescribeClientQuotas (key 48): the quotas of the entities a filter
//! matches (`kafka-configs --describe --entity-type users|clients|ips`),
//! for a caller with DESCRIBE_CONFIGS on the cluster. The filter is
//! checked as Kafka's controller checks it.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_client_quotas_response::{EntityData, EntryData, ValueData};
use kafka_protocol::messages::{DescribeClientQuotasRequest, DescribeClientQuotasResponse};
use kafka_protocol::protocol::StrBytes;
use karnak_coordinator::metadata::quotas::{CLIENT_ID, IP, Match, USER};

use crate::authz::{AclOperation, Authz};
use crate::broker::Broker;
use crate::response::{HandlerError, Reply, Response, decode};

const MATCH_EXACT: i8 = 0;
const MATCH_DEFAULT: i8 = 1;
const MATCH_SPECIFIED: i8 = 2;

/// The components as (entity type, how it matches), or Kafka's refusal.
fn components(
    req: &DescribeClientQuotasRequest,
) -> Result<Vec<(String, Match)>, (ResponseError, String)> {
    let invalid = |m: String| (ResponseError::InvalidRequest, m);
    let mut out: Vec<(String, Match)> = Vec::new();
    for c in &req.components {
        let kind = c.entity_type.to_string();
        if kind.is_empty() {
            return Err(invalid("Invalid empty entity type.".into()));
        }
        if out.iter().any(|(k, _)| *k == kind) {
            return Err(invalid(format!(
                "Entity type {kind} cannot appear more than once in the filter."
            )));
        }
        if ![USER, CLIENT_ID, IP].contains(&kind.as_str()) {
            return Err((
                ResponseError::UnsupportedVersion,
                format!("Unsupported entity type {kind}"),
            ));
        }
        let m = match (c.match_type, &c._match) {
            (MATCH_EXACT, Some(name)) => Match::Exactly(Some(name.to_string())),
            (MATCH_DEFAULT, None) => Match::Exactly(None),
            (MATCH_SPECIFIED, None) => Match::Specified,
            (t @ (MATCH_EXACT | MATCH_DEFAULT | MATCH_SPECIFIED), _) => {
                return Err(invalid(format!(
                    "match type {t} does not go with a match string of {:?}",
                    c._match.as_deref()
                )));
            }
            (t, _) => return Err(invalid(format!("Unknown match type {t}"))),
        };
        out.push((kind, m));
    }
    let has = |k: &str| out.iter().any(|(kind, _)| kind == k);
    if has(IP) && (has(USER) || has(CLIENT_ID)) {
        return Err(invalid(
            "Invalid entity filter component combination. IP filter component should not be used with user or clientId filter component.".into(),
        ));
    }
    Ok(out)
}

pub fn handle(
    broker: &Arc<Broker>,
    body: &mut Bytes,
    version: i16,
    authz: &Authz,
) -> Result<Reply, HandlerError> {
    let req: DescribeClientQuotasRequest = decode(body, "DescribeClientQuotas", version)?;
    let refused = if !authz.cluster(AclOperation::DescribeConfigs) {
        Err((
            ResponseError::ClusterAuthorizationFailed,
            "DESCRIBE_CONFIGS on the cluster is needed to describe quotas".to_string(),
        ))
    } else {
        components(&req)
    };
    let response = match refused {
        Err((e, message)) => DescribeClientQuotasResponse::default()
            .with_error_code(e.code())
            .with_error_message(Some(StrBytes::from_string(message))),
        Ok(components) => {
            let meta = broker.cluster.metadata();
            let entries = meta
                .quotas
                .describe(&components, req.strict)
                .map(|(entity, values)| {
                    EntryData::default()
                        .with_entity(
                            entity
                                .iter()
                                .map(|(kind, name)| {
                                    EntityData::default()
                                        .with_entity_type(StrBytes::from_string(kind.clone()))
                                        .with_entity_name(name.clone().map(StrBytes::from_string))
                                })
                                .collect(),
                        )
                        .with_values(
                            values
                                .iter()
                                .map(|(k, v)| {
                                    ValueData::default()
                                        .with_key(StrBytes::from_string(k.clone()))
                                        .with_value(v.0)
                                })
                                .collect(),
                        )
                })
                .collect();
            DescribeClientQuotasResponse::default().with_entries(Some(entries))
        }
    };
    let code = response.error_code;
    Ok(Reply::Ready(Response::encode(&response, version, code)?))
}

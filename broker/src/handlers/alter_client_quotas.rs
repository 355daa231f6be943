//! AlterClientQuotas (key 49): quotas of users, client ids and IP
//! addresses set or removed through the metadata log
//! (`kafka-configs --alter --add-config producer_byte_rate=1048576
//! --entity-type users --entity-name alice`), for a caller with
//! ALTER_CONFIGS on the cluster. Each entry is checked as Kafka's
//! controller checks it; valid ones go in one command.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_client_quotas_request::EntryData;
use kafka_protocol::messages::alter_client_quotas_response::{self as resp, EntityData};
use kafka_protocol::messages::{AlterClientQuotasRequest, AlterClientQuotasResponse};
use kafka_protocol::protocol::StrBytes;
use karnak_coordinator::metadata::MetadataCommand;
use karnak_coordinator::metadata::quotas::{
    QuotaAlteration, QuotaEntity, QuotaError, QuotaValue, validate_entity, validate_op,
};

use crate::authz::{AclOperation, Authz};
use crate::broker::Broker;
use crate::response::{HandlerError, Reply, Response, decode};

const TIMEOUT: Duration = Duration::from_secs(30);

/// One entry as a validated alteration.
fn alteration(e: &EntryData) -> Result<QuotaAlteration, QuotaError> {
    let mut entity = QuotaEntity::new();
    for part in &e.entity {
        let kind = part.entity_type.to_string();
        if entity
            .insert(
                kind.clone(),
                part.entity_name.as_ref().map(|n| n.to_string()),
            )
            .is_some()
        {
            return Err(QuotaError::EntityType(format!("{kind} (twice)")));
        }
    }
    validate_entity(&entity)?;
    let mut ops: Vec<(String, Option<QuotaValue>)> = Vec::new();
    for op in &e.ops {
        let key = op.key.to_string();
        if ops.iter().any(|(k, _)| *k == key) {
            return Err(QuotaError::DuplicateKey(key));
        }
        let value = (!op.remove).then_some(op.value);
        validate_op(&entity, &key, value)?;
        ops.push((key, value.map(QuotaValue)));
    }
    Ok(QuotaAlteration { entity, ops })
}

pub fn handle(
    broker: &Arc<Broker>,
    body: &mut Bytes,
    version: i16,
    authz: &Authz,
) -> Result<Reply, HandlerError> {
    let req: AlterClientQuotasRequest = decode(body, "AlterClientQuotas", version)?;
    let allowed = authz.cluster(AclOperation::AlterConfigs);
    let checked: Vec<Result<QuotaAlteration, (ResponseError, String)>> = req
        .entries
        .iter()
        .map(|e| {
            if !allowed {
                return Err((
                    ResponseError::ClusterAuthorizationFailed,
                    "ALTER_CONFIGS on the cluster is needed to alter quotas".into(),
                ));
            }
            alteration(e).map_err(|err| (ResponseError::InvalidRequest, err.to_string()))
        })
        .collect();
    let entities: Vec<Vec<EntityData>> = req
        .entries
        .iter()
        .map(|e| {
            e.entity
                .iter()
                .map(|p| {
                    EntityData::default()
                        .with_entity_type(p.entity_type.clone())
                        .with_entity_name(p.entity_name.clone())
                })
                .collect()
        })
        .collect();
    let valid: Vec<QuotaAlteration> = checked.iter().filter_map(|c| c.clone().ok()).collect();
    let validate_only = req.validate_only;
    let broker = broker.clone();
    Ok(Reply::Later(Box::pin(async move {
        let outcome = if valid.is_empty() || validate_only {
            None
        } else {
            broker
                .cluster
                .propose(
                    MetadataCommand::AlterClientQuotas { alterations: valid },
                    TIMEOUT,
                )
                .await
                .err()
                .map(|e| (e.code(), e.to_string()))
        };
        let entries = checked
            .into_iter()
            .zip(entities)
            .map(|(c, entity)| {
                let (code, message) = match (c, &outcome) {
                    (Err((e, m)), _) => (e.code(), Some(m)),
                    (Ok(_), Some((e, m))) => (e.code(), Some(m.clone())),
                    (Ok(_), None) => (0, None),
                };
                resp::EntryData::default()
                    .with_error_code(code)
                    .with_error_message(message.map(StrBytes::from_string))
                    .with_entity(entity)
            })
            .collect();
        Response::encode(
            &AlterClientQuotasResponse::default().with_entries(entries),
            version,
            0,
        )
    })))
}

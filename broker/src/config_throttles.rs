//! The replication throttle rates as broker config resources: what
//! DescribeConfigs lists for them and how (Incremental)AlterConfigs sets
//! them. They are broker configs, not log defaults, so they live beside
//! the dynamic log configs (replication/throttle.rs), not among them.

use crate::broker::Broker;
use crate::config_synonyms::Synonym;
use crate::configs::{
    AlterError, ConfigEntry, ConfigOp, OpType, SOURCE_DYNAMIC_BROKER, SOURCE_DYNAMIC_DEFAULT_BROKER,
};
use crate::replication::throttle::{RATES, RateConfigs};
use kafka_protocol::error::ResponseError;

/// Kafka's type for the rates: LONG.
const TYPE_LONG: i8 = 5;

pub fn is_rate(name: &str) -> bool {
    RATES.contains(&name)
}

/// The rates set on this broker (or, `default_resource`, on the cluster
/// default), as Kafka lists dynamic broker configs: only those set, each
/// with its chain of sources.
pub fn entries(broker: &Broker, default_resource: bool) -> Vec<ConfigEntry> {
    let c = broker.replicas.throttles.configs();
    RATES
        .iter()
        .filter_map(|name| {
            let mut synonyms = Vec::new();
            if !default_resource && let Some(v) = c.broker.get(*name) {
                synonyms.push(Synonym {
                    name: name.to_string(),
                    value: v.clone(),
                    source: SOURCE_DYNAMIC_BROKER,
                });
            }
            if let Some(v) = c.cluster_default.get(*name) {
                synonyms.push(Synonym {
                    name: name.to_string(),
                    value: v.clone(),
                    source: SOURCE_DYNAMIC_DEFAULT_BROKER,
                });
            }
            let first = synonyms.first()?;
            Some(ConfigEntry {
                name: name.to_string(),
                value: first.value.clone(),
                source: first.source,
                read_only: false,
                config_type: TYPE_LONG,
                synonyms,
            })
        })
        .collect()
}

/// The rates after `ops` (only rate ops; `replace`: the legacy
/// AlterConfigs, which replaces the resource's whole set). Validated, not
/// yet applied: [`apply`] does that.
pub fn alter(
    broker: &Broker,
    for_this_broker: bool,
    ops: &[ConfigOp],
    replace: bool,
) -> Result<RateConfigs, AlterError> {
    let mut c = broker.replicas.throttles.configs();
    let current = if for_this_broker {
        &mut c.broker
    } else {
        &mut c.cluster_default
    };
    if replace {
        current.clear();
    }
    for op in ops {
        match (op.op, &op.value) {
            (OpType::Set, Some(v)) => {
                current.insert(op.name.clone(), v.trim().to_string());
            }
            (OpType::Set, None) => {
                return Err((
                    ResponseError::InvalidRequest,
                    format!("Null value not supported for : {}", op.name),
                ));
            }
            (OpType::Delete, _) => {
                current.remove(&op.name);
            }
            (OpType::Append, _) | (OpType::Subtract, _) => {
                let verb = if op.op == OpType::Append {
                    "append"
                } else {
                    "subtract"
                };
                return Err((
                    ResponseError::InvalidConfig,
                    format!(
                        "Config value {verb} is not allowed for config key: {}",
                        op.name
                    ),
                ));
            }
        }
    }
    c.validate()
        .map_err(|e| (ResponseError::InvalidRequest, e))?;
    Ok(c)
}

pub fn apply(broker: &Broker, c: RateConfigs) -> Result<(), AlterError> {
    broker
        .replicas
        .throttles
        .set(c)
        .map_err(|e| (ResponseError::KafkaStorageError, e))
}

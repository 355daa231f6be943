//! Config resources as Kafka's DescribeConfigs, AlterConfigs and
//! IncrementalAlterConfigs see them: topic configs (overrides over the
//! broker's defaults) and the broker's own settings, the log defaults among
//! them changeable on a live broker (dynamic broker configs).

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use karnak_storage::config::{BROKER_LOG_CONFIGS, topic_config_for_broker_config};
use karnak_storage::{LogConfig, StorageError};

use crate::broker::Broker;
use crate::config_synonyms::{Sources, Synonym};
use crate::config_throttles;

/// Kafka's ConfigResource types.
pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

/// Kafka's config sources, as DescribeConfigs and CreateTopics report them.
pub const SOURCE_TOPIC: i8 = 1;
pub const SOURCE_DYNAMIC_BROKER: i8 = 2;
pub const SOURCE_DYNAMIC_DEFAULT_BROKER: i8 = 3;
pub const SOURCE_STATIC_BROKER: i8 = 4;
pub const SOURCE_DEFAULT: i8 = 5;

/// One config as Kafka describes it.
pub struct ConfigEntry {
    pub name: String,
    pub value: String,
    pub source: i8,
    pub read_only: bool,
    /// Kafka's ConfigType: 1 boolean, 2 string, 3 int, 5 long, 6 double, 7 list.
    pub config_type: i8,
    /// Where the value could come from, most precedent first (the first is
    /// `source`); sent when the client asks for synonyms.
    pub synonyms: Vec<Synonym>,
}

/// Kafka's rule: the source is the first synonym's, DEFAULT_CONFIG when
/// there is none.
fn source_of(chain: &[Synonym]) -> i8 {
    chain.first().map_or(SOURCE_DEFAULT, |s| s.source)
}

/// Topic configs whose value is a comma-separated list (APPEND/SUBTRACT apply).
fn is_list(topic_config: &str) -> bool {
    topic_config == "cleanup.policy" || topic_config.ends_with(".throttled.replicas")
}

/// Configs Kafka declares as INT (others that parse as numbers are LONG);
/// a broker log default has its topic config's type.
const INT_CONFIGS: &[&str] = &[
    "node.id",
    "broker.id",
    "num.partitions",
    "socket.request.max.bytes",
    "offsets.retention.minutes",
    "segment.bytes",
    "segment.index.bytes",
    "index.interval.bytes",
    "max.message.bytes",
    "min.insync.replicas",
    "compression.gzip.level",
    "compression.lz4.level",
    "compression.zstd.level",
    "max.decompressed.message.bytes",
];

fn config_type(name: &str, value: &str) -> i8 {
    let topic_name = topic_config_for_broker_config(name).unwrap_or(name);
    if is_list(topic_name) {
        7
    } else if INT_CONFIGS.contains(&topic_name) {
        3
    } else if value == "true" || value == "false" {
        1
    } else if value.parse::<i64>().is_ok() {
        5
    } else if value.parse::<f64>().is_ok() {
        6
    } else {
        2
    }
}

/// Every topic config with its effective value and where it comes from.
pub fn topic_configs(
    broker: &Broker,
    config: &LogConfig,
    overrides: &BTreeMap<String, String>,
) -> Vec<ConfigEntry> {
    let sources = Sources::new(
        broker.logs.dynamic_broker_configs(),
        broker.logs.static_defaults(),
    );
    config
        .describe()
        .into_iter()
        .map(|(name, value)| {
            let mut chain = sources.topic_chain(&name);
            // An override reads back as it was set (a list keeps its order).
            let value = match overrides.get(&name) {
                Some(raw) => {
                    let raw = raw.trim().to_string();
                    chain.insert(
                        0,
                        Synonym {
                            name: name.clone(),
                            value: raw.clone(),
                            source: SOURCE_TOPIC,
                        },
                    );
                    raw
                }
                None => value,
            };
            ConfigEntry {
                source: source_of(&chain),
                config_type: config_type(&name, &value),
                read_only: false,
                synonyms: chain,
                name,
                value,
            }
        })
        .collect()
}

/// The broker settings a Kafka operator looks for, under Kafka's names:
/// fixed ones (read-only) and the log defaults, which may change live.
pub fn broker_configs(broker: &Broker) -> Vec<ConfigEntry> {
    let c = &broker.config;
    let fixed = [
        ("node.id", c.node_id.to_string()),
        ("broker.id", c.node_id.to_string()),
        ("log.dirs", c.data_dir.display().to_string()),
        (
            "listeners",
            join_listeners(broker, |l| (l.addr.ip().to_string(), l.addr.port())),
        ),
        (
            "advertised.listeners",
            join_listeners(broker, |l| l.advertised.clone()),
        ),
        (
            "listener.security.protocol.map",
            broker
                .listeners
                .iter()
                .map(|l| format!("{}:{}", l.name, l.protocol.name()))
                .collect::<Vec<_>>()
                .join(","),
        ),
        (
            "inter.broker.listener.name",
            broker.inter_broker_listener().to_string(),
        ),
        ("num.partitions", c.num_partitions.to_string()),
        (
            "auto.create.topics.enable",
            c.auto_create_topics.to_string(),
        ),
        (
            "socket.request.max.bytes",
            c.socket_request_max_bytes.to_string(),
        ),
        (
            "offsets.retention.minutes",
            (c.offsets_retention_ms / 60_000).to_string(),
        ),
        (
            "offsets.retention.check.interval.ms",
            c.offsets_retention_check_interval.as_millis().to_string(),
        ),
        ("log.cleaner.enable", c.cleaner.enabled.to_string()),
        (
            "log.cleaner.io.max.bytes.per.second",
            // Kafka prints its unlimited default as Double.MAX_VALUE.
            if c.cleaner.io_max_bytes_per_second.is_finite() {
                format!("{:.1}", c.cleaner.io_max_bytes_per_second)
            } else {
                "1.7976931348623157E308".to_string()
            },
        ),
        (
            "log.cleaner.dedupe.buffer.size",
            c.cleaner.dedupe_buffer_bytes.to_string(),
        ),
        ("log.cleaner.backoff.ms", c.cleaner.backoff_ms.to_string()),
    ]
    .into_iter()
    .map(|(name, value)| ConfigEntry {
        config_type: config_type(name, &value),
        synonyms: vec![Synonym {
            name: name.to_string(),
            value: value.clone(),
            source: SOURCE_STATIC_BROKER,
        }],
        name: name.to_string(),
        value,
        source: SOURCE_STATIC_BROKER,
        read_only: true,
    });
    let sources = Sources::new(
        broker.logs.dynamic_broker_configs(),
        broker.logs.static_defaults(),
    );
    let effective = broker.logs.defaults().describe();
    let log_defaults = BROKER_LOG_CONFIGS
        .iter()
        .filter_map(|(broker_name, topic_name)| {
            let value = effective.get(*topic_name)?.clone();
            let chain = sources.broker_chain(broker_name);
            Some(ConfigEntry {
                source: source_of(&chain),
                config_type: config_type(broker_name, &value),
                synonyms: chain,
                name: broker_name.to_string(),
                value,
                read_only: false,
            })
        });
    fixed
        .chain(log_defaults)
        .chain(config_throttles::entries(broker, false))
        .collect()
}

/// `NAME://host:port,...` of the listeners, each address as `addr` gives it.
fn join_listeners(
    broker: &Broker,
    addr: impl Fn(&crate::listeners::Bound) -> (String, u16),
) -> String {
    broker
        .listeners
        .iter()
        .map(|l| {
            let (host, port) = addr(l);
            if host.contains(':') {
                format!("{}://[{host}]:{port}", l.name)
            } else {
                format!("{}://{host}:{port}", l.name)
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The cluster-wide default resource (broker name ""): only the dynamic
/// defaults set on it, as Kafka lists `--entity-default`.
pub fn cluster_default_configs(broker: &Broker) -> Vec<ConfigEntry> {
    let sources = Sources::new(
        broker.logs.dynamic_broker_configs(),
        broker.logs.static_defaults(),
    );
    BROKER_LOG_CONFIGS
        .iter()
        .filter_map(|(broker_name, topic_name)| {
            let value = sources.dynamic.cluster_default.get(*topic_name)?.clone();
            // Kafka keeps only the cluster-default links here.
            let mut chain = sources.broker_chain(broker_name);
            chain.retain(|s| s.source == SOURCE_DYNAMIC_DEFAULT_BROKER);
            Some(ConfigEntry {
                config_type: config_type(broker_name, &value),
                synonyms: chain,
                name: broker_name.to_string(),
                value,
                source: SOURCE_DYNAMIC_DEFAULT_BROKER,
                read_only: false,
            })
        })
        .chain(config_throttles::entries(broker, true))
        .collect()
}

/// Kafka's AlterConfigOp types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpType {
    Set,
    Delete,
    Append,
    Subtract,
}

impl OpType {
    pub fn from_wire(op: i8) -> Option<OpType> {
        match op {
            0 => Some(OpType::Set),
            1 => Some(OpType::Delete),
            2 => Some(OpType::Append),
            3 => Some(OpType::Subtract),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct ConfigOp {
    pub name: String,
    pub op: OpType,
    pub value: Option<String>,
}

/// A refused alteration: the error code and the message the client shows.
pub type AlterError = (ResponseError, String);

fn invalid_config(msg: String) -> AlterError {
    (ResponseError::InvalidConfig, msg)
}

fn storage_refusal(e: StorageError) -> AlterError {
    match e {
        StorageError::InvalidConfig { .. } => invalid_config(e.to_string()),
        StorageError::UnknownTopic(name) => (
            ResponseError::UnknownTopicOrPartition,
            format!("Topic {name} does not exist"),
        ),
        other => {
            tracing::error!(error = %other, "altering configs");
            (ResponseError::UnknownServerError, other.to_string())
        }
    }
}

/// Applies `ops` to `current` (overrides by topic-config name). `key`
/// maps a request's config name to the topic-config name it sets (the
/// identity for topics; `log.retention.ms` -> `retention.ms` for brokers),
/// or refuses it. `defaults` gives a list config's value when it has no
/// override (what APPEND and SUBTRACT start from).
fn apply_ops(
    mut current: BTreeMap<String, String>,
    ops: &[ConfigOp],
    key: impl Fn(&str) -> Result<&'static str, AlterError>,
    defaults: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, AlterError> {
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = ops.iter().find(|o| !seen.insert(o.name.as_str())) {
        return Err((
            ResponseError::InvalidRequest,
            format!("Error due to duplicate config keys: {}", dup.name),
        ));
    }
    for op in ops {
        let k = key(&op.name)?;
        match op.op {
            OpType::Set => {
                let Some(v) = &op.value else {
                    return Err((
                        ResponseError::InvalidRequest,
                        format!("Null value not supported for : {}", op.name),
                    ));
                };
                current.insert(k.to_string(), v.clone());
            }
            OpType::Delete => {
                current.remove(k);
            }
            OpType::Append | OpType::Subtract => {
                if !is_list(k) {
                    let verb = if op.op == OpType::Append {
                        "append"
                    } else {
                        "subtract"
                    };
                    return Err(invalid_config(format!(
                        "Config value {verb} is not allowed for config key: {}",
                        op.name
                    )));
                }
                let base = current
                    .get(k)
                    .or_else(|| defaults.get(k))
                    .cloned()
                    .unwrap_or_default();
                let mut items: Vec<String> = base
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
                let given = op.value.as_deref().unwrap_or("");
                for item in given.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    if op.op == OpType::Append {
                        if !items.iter().any(|i| i == item) {
                            items.push(item.to_string());
                        }
                    } else {
                        items.retain(|i| i != item);
                    }
                }
                current.insert(k.to_string(), items.join(","));
            }
        }
    }
    Ok(current)
}

fn known_topic_config(name: &str) -> Result<&'static str, AlterError> {
    karnak_storage::config::check_known(name)
        .map_err(|_| invalid_config(format!("Unknown topic config name: {name}")))
}

/// One resource of an AlterConfigs or IncrementalAlterConfigs request:
/// its operations, or why they were refused before any change.
pub struct ResourceChange {
    pub resource_type: i8,
    pub name: String,
    pub ops: Result<Vec<ConfigOp>, AlterError>,
}

/// The per-resource answers of AlterConfigs and IncrementalAlterConfigs
/// from [`alter_resources`]' outcomes: the two responses' resource types
/// are distinct generated structs with the same fields.
macro_rules! resource_responses {
    ($ty:ty, $outcomes:expr) => {
        $outcomes
            .into_iter()
            .map(|(resource_type, name, outcome)| {
                let response = <$ty>::default()
                    .with_resource_type(resource_type)
                    .with_resource_name(kafka_protocol::protocol::StrBytes::from_string(name));
                match outcome {
                    Ok(()) => response,
                    Err((code, msg)) => {
                        response
                            .with_error_code(code.code())
                            .with_error_message(Some(
                                kafka_protocol::protocol::StrBytes::from_string(msg),
                            ))
                    }
                }
            })
            .collect()
    };
}
pub(crate) use resource_responses;

/// Alters each resource of an AlterConfigs (`replace`) or
/// IncrementalAlterConfigs request in request order, a topic's change
/// awaited through the metadata group; one (type, name, outcome) per
/// resource.
pub async fn alter_resources(
    broker: &Arc<Broker>,
    changes: Vec<ResourceChange>,
    replace: bool,
    validate_only: bool,
) -> Vec<(i8, String, Result<(), AlterError>)> {
    let mut outcomes = Vec::with_capacity(changes.len());
    for c in changes {
        let (kind, name) = (c.resource_type, c.name.as_str());
        let outcome = match c.ops {
            Ok(ops) => alter_resource(broker, kind, name, &ops, replace, validate_only).await,
            Err(e) => Err(e),
        };
        outcomes.push((c.resource_type, c.name, outcome));
    }
    outcomes
}

async fn alter_resource(
    broker: &Arc<Broker>,
    resource_type: i8,
    name: &str,
    ops: &[ConfigOp],
    replace: bool,
    validate_only: bool,
) -> Result<(), AlterError> {
    match resource_type {
        RESOURCE_TOPIC => alter_topic(broker, name, ops, replace, validate_only).await,
        RESOURCE_BROKER => alter_broker(broker, name, ops, replace, validate_only),
        other => Err((
            ResponseError::InvalidRequest,
            format!("resource type {other} is not supported"),
        )),
    }
}

/// Alters a topic's configs: incrementally (`replace` false) or, for the
/// legacy AlterConfigs, replacing every override with `ops`' SETs.
async fn alter_topic(
    broker: &Arc<Broker>,
    name: &str,
    ops: &[ConfigOp],
    replace: bool,
    validate_only: bool,
) -> Result<(), AlterError> {
    let current = broker
        .cluster
        .metadata()
        .topics
        .get(name)
        .map(|t| t.configs.clone())
        .ok_or_else(|| {
            (
                ResponseError::UnknownTopicOrPartition,
                format!("Topic {name} does not exist"),
            )
        })?;
    let start = if replace { BTreeMap::new() } else { current };
    let defaults = broker.logs.defaults().describe();
    let configs = apply_ops(start, ops, known_topic_config, &defaults)?;
    broker
        .logs
        .defaults()
        .with_overrides(&configs)
        .map_err(storage_refusal)?;
    if validate_only {
        return Ok(());
    }
    match crate::topics::set_configs(broker, name, configs).await {
        Ok(_) => Ok(()),
        Err(crate::topics::TopicError::Storage(e)) => Err(storage_refusal(e)),
        Err(crate::topics::TopicError::Cluster(e)) => Err((e.code(), e.to_string())),
        Err(e) => Err((ResponseError::InvalidRequest, e.to_string())),
    }
}

/// Kafka's throttle for moving replicas between a broker's log dirs
/// (`kafka-reassign-partitions --replica-alter-log-dirs-throttle`). One
/// log dir per broker here: setting it is refused (naming it), removing it
/// is the no-op it is when nothing is set, so the tool's clean-up works.
const LOG_DIRS_THROTTLE: &str = "replica.alter.log.dirs.io.max.bytes.per.second";

/// Alters the dynamic broker configs: this broker's (`resource_name` its
/// id) or the cluster-wide default (`resource_name` empty).
fn alter_broker(
    broker: &Broker,
    resource_name: &str,
    ops: &[ConfigOp],
    replace: bool,
    validate_only: bool,
) -> Result<(), AlterError> {
    let for_this_broker = if resource_name.is_empty() {
        false
    } else if resource_name == broker.node_id().to_string() {
        true
    } else {
        return Err((
            ResponseError::InvalidRequest,
            format!(
                "broker {resource_name} is not this broker ({})",
                broker.node_id()
            ),
        ));
    };
    if let Some(op) = ops
        .iter()
        .find(|o| o.name == LOG_DIRS_THROTTLE && o.op != OpType::Delete)
    {
        return Err(invalid_config(format!(
            "{} is not supported: a Karnak broker has one log dir",
            op.name
        )));
    }
    // The replication throttle rates are broker configs of their own.
    let (rate_ops, ops): (Vec<ConfigOp>, Vec<ConfigOp>) = ops
        .iter()
        .filter(|o| o.name != LOG_DIRS_THROTTLE)
        .cloned()
        .partition(|o| config_throttles::is_rate(&o.name));
    let rates = config_throttles::alter(broker, for_this_broker, &rate_ops, replace)?;
    let ops = ops.as_slice();
    let fixed: Vec<String> = broker_configs(broker)
        .into_iter()
        .filter(|e| e.read_only)
        .map(|e| e.name)
        .collect();
    let key = |name: &str| -> Result<&'static str, AlterError> {
        if let Some(t) = topic_config_for_broker_config(name) {
            Ok(t)
        } else if fixed.iter().any(|f| f == name) {
            Err((
                ResponseError::InvalidRequest,
                format!("Cannot update these configs dynamically: [{name}]"),
            ))
        } else {
            Err(invalid_config(format!(
                "Unknown broker config name: {name}"
            )))
        }
    };
    let mut all = broker.logs.dynamic_broker_configs();
    let start = match (replace, for_this_broker) {
        (true, _) => BTreeMap::new(),
        (false, true) => all.broker.clone(),
        (false, false) => all.cluster_default.clone(),
    };
    let defaults = broker.logs.defaults().describe();
    let updated = apply_ops(start, ops, key, &defaults)?;
    if for_this_broker {
        all.broker = updated;
    } else {
        all.cluster_default = updated;
    }
    // Kafka refuses a bad broker value with INVALID_REQUEST, naming the
    // broker config.
    let to_broker_name = |e: StorageError| match e {
        StorageError::InvalidConfig { name, reason } => {
            let shown = BROKER_LOG_CONFIGS
                .iter()
                .find(|(_, t)| *t == name)
                .map_or(name.as_str(), |(b, _)| *b);
            let reason = reason.replacen(
                &format!("configuration {name}:"),
                &format!("configuration {shown}:"),
                1,
            );
            (ResponseError::InvalidRequest, reason)
        }
        other => storage_refusal(other),
    };
    if validate_only {
        return broker
            .logs
            .static_defaults()
            .with_overrides(&all.cluster_default)
            .and_then(|c| c.with_overrides(&all.broker))
            .map(|_| ())
            .map_err(to_broker_name);
    }
    broker
        .logs
        .set_dynamic_broker_configs(all)
        .map_err(to_broker_name)?;
    config_throttles::apply(broker, rates)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(list: &[(&str, OpType, Option<&str>)]) -> Vec<ConfigOp> {
        list.iter()
            .map(|(n, op, v)| ConfigOp {
                name: n.to_string(),
                op: *op,
                value: v.map(str::to_string),
            })
            .collect()
    }

    #[test]
    fn incremental_ops_follow_kafka() {
        let defaults = LogConfig::default().describe();
        let current: BTreeMap<String, String> =
            [("retention.ms".to_string(), "1000".to_string())].into();
        let out = apply_ops(
            current.clone(),
            &ops(&[
                ("retention.ms", OpType::Delete, None),
                ("cleanup.policy", OpType::Append, Some("compact")),
                ("segment.bytes", OpType::Set, Some("2048")),
            ]),
            known_topic_config,
            &defaults,
        )
        .unwrap();
        assert_eq!(out.get("retention.ms"), None);
        assert_eq!(out["cleanup.policy"], "delete,compact");
        assert_eq!(out["segment.bytes"], "2048");
        let out = apply_ops(
            out,
            &ops(&[("cleanup.policy", OpType::Subtract, Some("delete"))]),
            known_topic_config,
            &defaults,
        )
        .unwrap();
        assert_eq!(out["cleanup.policy"], "compact");
        for bad in [
            ops(&[("retention.ms", OpType::Append, Some("5"))]),
            ops(&[("no.such.config", OpType::Set, Some("5"))]),
        ] {
            let (code, _) =
                apply_ops(current.clone(), &bad, known_topic_config, &defaults).unwrap_err();
            assert_eq!(code, ResponseError::InvalidConfig);
        }
        let dup = ops(&[
            ("retention.ms", OpType::Set, Some("5")),
            ("retention.ms", OpType::Delete, None),
        ]);
        let (code, _) =
            apply_ops(current.clone(), &dup, known_topic_config, &defaults).unwrap_err();
        assert_eq!(code, ResponseError::InvalidRequest);
        let null = ops(&[("retention.ms", OpType::Set, None)]);
        let (code, _) = apply_ops(current, &null, known_topic_config, &defaults).unwrap_err();
        assert_eq!(code, ResponseError::InvalidRequest);
    }
}

//! Per-topic log configuration: Kafka's topic config names, defaults and
//! validation of overrides.

use std::collections::BTreeMap;

use karnak_protocol::record_batch::TimestampType;

use crate::error::StorageError;

/// `cleanup.policy`: `delete` removes whole old segments (retention),
/// `compact` keeps the newest record per key (see [`crate::cleaner`]),
/// `compact,delete` does both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CleanupPolicy {
    #[default]
    Delete,
    Compact,
    /// "compact,delete"
    CompactDelete,
}

impl CleanupPolicy {
    pub fn as_kafka_str(self) -> &'static str {
        match self {
            CleanupPolicy::Delete => "delete",
            CleanupPolicy::Compact => "compact",
            CleanupPolicy::CompactDelete => "compact,delete",
        }
    }

    /// Whether the log cleaner compacts logs with this policy.
    pub fn compacts(self) -> bool {
        matches!(self, CleanupPolicy::Compact | CleanupPolicy::CompactDelete)
    }

    fn parse(v: &str) -> Option<Self> {
        let mut parts: Vec<&str> = v
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        parts.sort_unstable();
        parts.dedup();
        match parts.as_slice() {
            ["delete"] => Some(CleanupPolicy::Delete),
            ["compact"] => Some(CleanupPolicy::Compact),
            ["compact", "delete"] => Some(CleanupPolicy::CompactDelete),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct LogConfig {
    pub segment_bytes: u64,
    pub segment_ms: u64,
    pub index_interval_bytes: u32,
    pub segment_index_bytes: u32,
    pub flush_messages: Option<u64>,
    pub flush_ms: Option<u64>,
    pub max_message_bytes: u32,
    pub message_timestamp_type: TimestampType,
    pub timestamp_before_max_ms: i64,
    pub timestamp_after_max_ms: i64,
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub cleanup_policy: CleanupPolicy,
    /// `delete.retention.ms`: how long a tombstone (and a transaction
    /// marker whose data is gone) outlives the cleaning that first saw it.
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms`: records younger than this stay uncompacted.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: dirty records older than this force a
    /// cleaning even below the dirty ratio.
    pub max_compaction_lag_ms: i64,
    /// `min.cleanable.dirty.ratio`: dirty bytes over all bytes below which
    /// a log is not cleaned.
    pub min_cleanable_dirty_ratio: f64,
    /// Most disk blocks reserved ahead of an active segment's end (a broker
    /// setting, not a topic config; 0: none). See
    /// [`crate::segment::LogSegment::append`].
    pub preallocate_ahead_bytes: u64,
    /// Known Kafka topic configs we store and report but do not act on
    /// (e.g. compression.type), by name. Only overridden ones are held;
    /// `describe` fills in the defaults.
    pub other: BTreeMap<String, String>,
}

impl Default for LogConfig {
    fn default() -> Self {
        // Kafka 4.x defaults.
        LogConfig {
            segment_bytes: 1_073_741_824,
            segment_ms: 604_800_000,
            index_interval_bytes: 4096,
            segment_index_bytes: 10_485_760,
            flush_messages: None,
            flush_ms: None,
            max_message_bytes: 1_048_588,
            message_timestamp_type: TimestampType::CreateTime,
            timestamp_before_max_ms: i64::MAX,
            timestamp_after_max_ms: 3_600_000,
            retention_ms: 604_800_000,
            retention_bytes: -1,
            cleanup_policy: CleanupPolicy::Delete,
            delete_retention_ms: 86_400_000,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            min_cleanable_dirty_ratio: 0.5,
            preallocate_ahead_bytes: crate::segment::PREALLOCATE_AHEAD,
            other: BTreeMap::new(),
        }
    }
}

/// Stored-only configs and Kafka's default for each.
const PASSTHROUGH: &[(&str, &str, Kind)] = &[
    (
        "compression.type",
        "producer",
        Kind::OneOf(&["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"]),
    ),
    ("compression.gzip.level", "-1", Kind::Int),
    ("compression.lz4.level", "9", Kind::Int),
    ("compression.zstd.level", "3", Kind::Int),
    ("min.insync.replicas", "1", Kind::Int),
    ("unclean.leader.election.enable", "false", Kind::Bool),
    ("preallocate", "false", Kind::Bool),
    ("file.delete.delay.ms", "60000", Kind::Long),
    ("segment.jitter.ms", "0", Kind::Long),
    ("local.retention.ms", "-2", Kind::Long),
    ("local.retention.bytes", "-2", Kind::Long),
    ("remote.storage.enable", "false", Kind::Bool),
    ("follower.replication.throttled.replicas", "", Kind::Any),
    ("leader.replication.throttled.replicas", "", Kind::Any),
    ("remote.copy.lag.bytes", "-1", Kind::Long),
    ("remote.copy.lag.ms", "0", Kind::Long),
    ("remote.log.copy.disable", "false", Kind::Bool),
    ("remote.log.delete.on.disable", "false", Kind::Bool),
    ("max.decompressed.message.bytes", "2147483639", Kind::Int),
    ("errors.deadletterqueue.group.enable", "false", Kind::Bool),
    // Karnak's own: how the SQL gateway reads values (`json`: typed columns
    // from the JSON fields, declared here or inferred when empty).
    (
        "karnak.value.format",
        "binary",
        Kind::OneOf(&["binary", "json"]),
    ),
    ("karnak.value.schema", "", Kind::ValueSchema),
];

/// Topic configs Kafka 4.0 removed. Stored overrides of them (a topic
/// created before) are dropped when the topic is loaded, as Kafka does.
pub const REMOVED_TOPIC_CONFIGS: &[&str] = &[
    "message.downconversion.enable",
    "message.format.version",
    "message.timestamp.difference.max.ms",
];

/// Kafka broker configs that set a topic config's default, as (broker
/// name, topic name): what `kafka-configs --entity-type brokers` may change
/// on a live broker, and what a topic's config falls back to.
pub const BROKER_LOG_CONFIGS: &[(&str, &str)] = &[
    ("log.segment.bytes", "segment.bytes"),
    ("log.roll.ms", "segment.ms"),
    ("log.index.interval.bytes", "index.interval.bytes"),
    ("log.index.size.max.bytes", "segment.index.bytes"),
    ("log.flush.interval.messages", "flush.messages"),
    ("log.flush.interval.ms", "flush.ms"),
    ("message.max.bytes", "max.message.bytes"),
    ("log.message.timestamp.type", "message.timestamp.type"),
    (
        "log.message.timestamp.before.max.ms",
        "message.timestamp.before.max.ms",
    ),
    (
        "log.message.timestamp.after.max.ms",
        "message.timestamp.after.max.ms",
    ),
    ("log.retention.ms", "retention.ms"),
    ("log.retention.bytes", "retention.bytes"),
    ("log.cleanup.policy", "cleanup.policy"),
    ("compression.type", "compression.type"),
    ("min.insync.replicas", "min.insync.replicas"),
    (
        "unclean.leader.election.enable",
        "unclean.leader.election.enable",
    ),
    ("log.cleaner.min.compaction.lag.ms", "min.compaction.lag.ms"),
    ("log.cleaner.max.compaction.lag.ms", "max.compaction.lag.ms"),
    ("log.cleaner.delete.retention.ms", "delete.retention.ms"),
    (
        "log.cleaner.min.cleanable.ratio",
        "min.cleanable.dirty.ratio",
    ),
    ("log.preallocate", "preallocate"),
    ("log.segment.delete.delay.ms", "file.delete.delay.ms"),
];

/// The topic config a broker config sets the default of.
pub fn topic_config_for_broker_config(broker_name: &str) -> Option<&'static str> {
    BROKER_LOG_CONFIGS
        .iter()
        .find(|(b, _)| *b == broker_name)
        .map(|(_, t)| *t)
}

/// Topic configs the log acts on (typed fields of [`LogConfig`]).
const TYPED: &[&str] = &[
    "segment.bytes",
    "segment.ms",
    "index.interval.bytes",
    "segment.index.bytes",
    "flush.messages",
    "flush.ms",
    "max.message.bytes",
    "message.timestamp.type",
    "message.timestamp.before.max.ms",
    "message.timestamp.after.max.ms",
    "retention.ms",
    "retention.bytes",
    "cleanup.policy",
    "delete.retention.ms",
    "min.compaction.lag.ms",
    "max.compaction.lag.ms",
    "min.cleanable.dirty.ratio",
];

/// Every topic config name we know, acted on or stored only.
pub fn topic_config_names() -> impl Iterator<Item = &'static str> {
    TYPED
        .iter()
        .copied()
        .chain(PASSTHROUGH.iter().map(|(k, _, _)| *k))
}

/// The known topic config called `name` (`InvalidConfig` when unknown).
pub fn check_known(name: &str) -> Result<&'static str, StorageError> {
    topic_config_names()
        .find(|k| *k == name)
        .ok_or_else(|| unknown(name))
}

#[derive(Clone, Copy)]
enum Kind {
    Int,
    Long,
    Bool,
    OneOf(&'static [&'static str]),
    Any,
    /// `name type, ...` as `karnak.value.schema` takes it (empty: inferred).
    ValueSchema,
}

/// A refused value, in Kafka's words: "Invalid value X for configuration
/// NAME: WHY".
fn invalid(name: &str, value: &str, why: impl std::fmt::Display) -> StorageError {
    StorageError::InvalidConfig {
        name: name.to_string(),
        reason: format!(
            "Invalid value {} for configuration {name}: {why}",
            value.trim()
        ),
    }
}

fn unknown(name: &str) -> StorageError {
    StorageError::InvalidConfig {
        name: name.to_string(),
        reason: format!("Unknown topic config name: {name}"),
    }
}

/// The type Kafka declares a numeric topic config with.
fn kafka_type(name: &str) -> &'static str {
    match name {
        "segment.bytes"
        | "index.interval.bytes"
        | "segment.index.bytes"
        | "max.message.bytes"
        | "min.insync.replicas"
        | "max.decompressed.message.bytes" => "INT",
        "min.cleanable.dirty.ratio" => "DOUBLE",
        _ => "LONG",
    }
}

fn parse_num<T: std::str::FromStr + PartialOrd + std::fmt::Display>(
    name: &str,
    value: &str,
    min: T,
) -> Result<T, StorageError> {
    let v: T = value.trim().parse().map_err(|_| {
        invalid(
            name,
            value,
            format!("Not a number of type {}", kafka_type(name)),
        )
    })?;
    if v < min {
        return Err(invalid(
            name,
            value,
            format!("Value must be at least {min}"),
        ));
    }
    Ok(v)
}

fn check_kind(name: &str, value: &str, kind: Kind) -> Result<(), StorageError> {
    let v = value.trim();
    let ok = match kind {
        Kind::Int => v.parse::<i32>().is_ok(),
        Kind::Long => v.parse::<i64>().is_ok(),
        Kind::Bool => v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("false"),
        Kind::OneOf(options) => options.contains(&v),
        Kind::Any => true,
        Kind::ValueSchema => {
            // Refused here, with the parser's reason, rather than failing
            // every later query of the topic.
            if !v.is_empty()
                && let Err(why) = crate::value_format::json::parse_declared(v)
            {
                return Err(invalid(name, value, why));
            }
            true
        }
    };
    if ok {
        return Ok(());
    }
    let why = match kind {
        Kind::Int => "Not a number of type INT".to_string(),
        Kind::Long => "Not a number of type LONG".to_string(),
        Kind::Bool => "Expected value to be either true or false".to_string(),
        Kind::OneOf(options) => format!("String must be one of: {}", options.join(", ")),
        Kind::Any | Kind::ValueSchema => String::new(),
    };
    Err(invalid(name, value, why))
}

impl LogConfig {
    /// Kafka topic-config overrides on top of `self` (the broker defaults).
    /// Unknown names and unparsable values are `InvalidConfig`.
    pub fn with_overrides(
        &self,
        overrides: &BTreeMap<String, String>,
    ) -> Result<LogConfig, StorageError> {
        let mut c = self.clone();
        for (name, value) in overrides {
            let n = name.as_str();
            match n {
                "segment.bytes" => c.segment_bytes = parse_num(n, value, 14u64)?,
                "segment.ms" => c.segment_ms = parse_num(n, value, 1u64)?,
                "index.interval.bytes" => c.index_interval_bytes = parse_num(n, value, 0u32)?,
                "segment.index.bytes" => c.segment_index_bytes = parse_num(n, value, 8u32)?,
                "flush.messages" => {
                    let v: i64 = parse_num(n, value, 1i64)?;
                    // Kafka's default is Long.MAX_VALUE, meaning "never".
                    c.flush_messages = (v != i64::MAX).then_some(v as u64);
                }
                "flush.ms" => {
                    let v: i64 = parse_num(n, value, 0i64)?;
                    c.flush_ms = (v != i64::MAX).then_some(v as u64);
                }
                "max.message.bytes" => c.max_message_bytes = parse_num(n, value, 0u32)?,
                "message.timestamp.type" => {
                    c.message_timestamp_type = match value.trim() {
                        "CreateTime" => TimestampType::CreateTime,
                        "LogAppendTime" => TimestampType::LogAppendTime,
                        _ => {
                            return Err(invalid(
                                n,
                                value,
                                "String must be one of: CreateTime, LogAppendTime",
                            ));
                        }
                    }
                }
                "message.timestamp.before.max.ms" => {
                    c.timestamp_before_max_ms = parse_num(n, value, 0i64)?
                }
                "message.timestamp.after.max.ms" => {
                    c.timestamp_after_max_ms = parse_num(n, value, 0i64)?
                }
                "retention.ms" => c.retention_ms = parse_num(n, value, -1i64)?,
                "retention.bytes" => c.retention_bytes = parse_num(n, value, i64::MIN)?,
                "cleanup.policy" => {
                    c.cleanup_policy = CleanupPolicy::parse(value).ok_or_else(|| {
                        invalid(n, value, "String must be one of: compact, delete")
                    })?
                }
                "delete.retention.ms" => c.delete_retention_ms = parse_num(n, value, 0i64)?,
                "min.compaction.lag.ms" => c.min_compaction_lag_ms = parse_num(n, value, 0i64)?,
                "max.compaction.lag.ms" => c.max_compaction_lag_ms = parse_num(n, value, 1i64)?,
                "min.cleanable.dirty.ratio" => {
                    let r: f64 = parse_num(n, value, 0.0f64)?;
                    if !(0.0..=1.0).contains(&r) {
                        return Err(invalid(n, value, "Value must be no more than 1"));
                    }
                    c.min_cleanable_dirty_ratio = r;
                }
                _ => match PASSTHROUGH.iter().find(|(k, _, _)| *k == n) {
                    Some((_, _, kind)) => {
                        check_kind(n, value, *kind)?;
                        c.other.insert(name.clone(), value.trim().to_string());
                    }
                    None => return Err(unknown(n)),
                },
            }
        }
        // Kafka refuses the pair that could never be satisfied.
        if c.min_compaction_lag_ms > c.max_compaction_lag_ms {
            return Err(invalid(
                "min.compaction.lag.ms",
                &c.min_compaction_lag_ms.to_string(),
                format!(
                    "conflict topic config setting min.compaction.lag.ms ({}) > max.compaction.lag.ms ({})",
                    c.min_compaction_lag_ms, c.max_compaction_lag_ms
                ),
            ));
        }
        Ok(c)
    }

    /// How long the active segment may stay open: `segment.ms`, or
    /// `max.compaction.lag.ms` when smaller on a compacted topic (Kafka's
    /// maxSegmentMs), since the cleaner never touches the active segment.
    pub fn max_segment_ms(&self) -> u64 {
        if self.cleanup_policy.compacts() {
            self.segment_ms
                .min(self.max_compaction_lag_ms.max(1) as u64)
        } else {
            self.segment_ms
        }
    }

    /// The effective value of every known topic config as Kafka would
    /// report it (name -> value string).
    pub fn describe(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        let mut put = |k: &str, v: String| {
            m.insert(k.to_string(), v);
        };
        put("segment.bytes", self.segment_bytes.to_string());
        put("segment.ms", self.segment_ms.to_string());
        put(
            "index.interval.bytes",
            self.index_interval_bytes.to_string(),
        );
        put("segment.index.bytes", self.segment_index_bytes.to_string());
        put(
            "flush.messages",
            self.flush_messages
                .map_or(i64::MAX.to_string(), |v| v.to_string()),
        );
        put(
            "flush.ms",
            self.flush_ms
                .map_or(i64::MAX.to_string(), |v| v.to_string()),
        );
        put("max.message.bytes", self.max_message_bytes.to_string());
        put(
            "message.timestamp.type",
            match self.message_timestamp_type {
                TimestampType::CreateTime => "CreateTime",
                TimestampType::LogAppendTime => "LogAppendTime",
            }
            .to_string(),
        );
        put(
            "message.timestamp.before.max.ms",
            self.timestamp_before_max_ms.to_string(),
        );
        put(
            "message.timestamp.after.max.ms",
            self.timestamp_after_max_ms.to_string(),
        );
        put("retention.ms", self.retention_ms.to_string());
        put("retention.bytes", self.retention_bytes.to_string());
        put(
            "cleanup.policy",
            self.cleanup_policy.as_kafka_str().to_string(),
        );
        put("delete.retention.ms", self.delete_retention_ms.to_string());
        put(
            "min.compaction.lag.ms",
            self.min_compaction_lag_ms.to_string(),
        );
        put(
            "max.compaction.lag.ms",
            self.max_compaction_lag_ms.to_string(),
        );
        put(
            "min.cleanable.dirty.ratio",
            self.min_cleanable_dirty_ratio.to_string(),
        );
        for (k, default, _) in PASSTHROUGH {
            let v = self.other.get(*k).map_or(*default, String::as_str);
            put(k, v.to_string());
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn overrides_apply_and_describe_reports_them() {
        let c = LogConfig::default()
            .with_overrides(&o(&[
                ("segment.bytes", "1024"),
                ("cleanup.policy", "delete,compact"),
                ("compression.type", "zstd"),
                ("message.timestamp.type", "LogAppendTime"),
                ("flush.messages", "1"),
            ]))
            .unwrap();
        assert_eq!(c.segment_bytes, 1024);
        assert_eq!(c.cleanup_policy, CleanupPolicy::CompactDelete);
        assert_eq!(c.flush_messages, Some(1));
        assert_eq!(c.message_timestamp_type, TimestampType::LogAppendTime);
        let d = c.describe();
        assert_eq!(d["compression.type"], "zstd");
        assert_eq!(d["segment.bytes"], "1024");
        assert_eq!(d["cleanup.policy"], "compact,delete");
        assert_eq!(d["min.insync.replicas"], "1");
        assert_eq!(
            LogConfig::default().describe()["flush.ms"],
            i64::MAX.to_string()
        );
    }

    #[test]
    fn every_known_name_is_described() {
        let d = LogConfig::default().describe();
        assert_eq!(topic_config_names().count(), d.len());
        assert!(topic_config_names().all(|n| d.contains_key(n)));
        assert!(check_known("retention.ms").is_ok());
        assert!(check_known("retention.mss").is_err());
    }

    #[test]
    fn compacted_topics_roll_by_max_compaction_lag() {
        let c = LogConfig::default()
            .with_overrides(&o(&[("max.compaction.lag.ms", "5000")]))
            .unwrap();
        assert_eq!(c.max_segment_ms(), c.segment_ms);
        let c = LogConfig::default()
            .with_overrides(&o(&[
                ("max.compaction.lag.ms", "5000"),
                ("cleanup.policy", "compact"),
            ]))
            .unwrap();
        assert_eq!(c.max_segment_ms(), 5000);
        assert!(
            LogConfig::default()
                .with_overrides(&o(&[
                    ("min.compaction.lag.ms", "10"),
                    ("max.compaction.lag.ms", "5")
                ]))
                .is_err()
        );
    }

    #[test]
    fn a_value_schema_is_parsed_when_set() {
        let c = LogConfig::default()
            .with_overrides(&o(&[
                ("karnak.value.format", "json"),
                (
                    "karnak.value.schema",
                    "total double precision, at timestamptz",
                ),
            ]))
            .unwrap();
        assert_eq!(c.other["karnak.value.format"], "json");
        let StorageError::InvalidConfig { reason, .. } = LogConfig::default()
            .with_overrides(&o(&[("karnak.value.schema", "total dollars")]))
            .unwrap_err()
        else {
            panic!("not InvalidConfig");
        };
        assert!(
            reason
                .starts_with("Invalid value total dollars for configuration karnak.value.schema: "),
            "{reason}"
        );
        assert!(
            LogConfig::default()
                .with_overrides(&o(&[("karnak.value.schema", " ")]))
                .is_ok()
        );
    }

    #[test]
    fn bad_overrides_are_rejected() {
        for (k, v) in [
            ("no.such.config", "1"),
            ("segment.bytes", "abc"),
            ("segment.bytes", "-5"),
            ("cleanup.policy", "shred"),
            ("preallocate", "maybe"),
            ("message.timestamp.type", "Now"),
            ("min.cleanable.dirty.ratio", "2"),
            ("min.cleanable.dirty.ratio", "NaN"),
            ("max.compaction.lag.ms", "0"),
            ("delete.retention.ms", "-1"),
            ("karnak.value.format", "xml"),
            ("karnak.value.schema", "total dollars"),
            ("karnak.value.schema", "a bigint, a text"),
        ] {
            let err = LogConfig::default()
                .with_overrides(&o(&[(k, v)]))
                .unwrap_err();
            assert!(
                matches!(err, StorageError::InvalidConfig { ref name, .. } if name == k),
                "{k}={v}"
            );
        }
    }
}

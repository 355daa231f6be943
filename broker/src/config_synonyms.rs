//! DescribeConfigs synonyms as Kafka builds them (its ConfigHelper): for a
//! config, every place a value could come from, most to least precedent,
//! and the config's source is the first of them.
//!
//! A topic config's chain is its override (DYNAMIC_TOPIC_CONFIG), then its
//! broker config and that config's synonyms (`log.retention.ms`,
//! `log.retention.minutes`, `log.retention.hours`) from the dynamic
//! per-broker configs, the dynamic cluster default, the static settings
//! and Kafka's defaults, in that order; entries before the broker config's
//! own name are dropped, so `retention.ms` shows no
//! `DEFAULT_CONFIG:log.retention.hours=168` (Kafka's `log.retention.ms`
//! has no default of its own) while `log.retention.ms` set on a broker does.

use std::collections::BTreeMap;

use karnak_storage::config::BROKER_LOG_CONFIGS;
use karnak_storage::{DynamicBrokerConfigs, LogConfig};

use crate::configs::{
    SOURCE_DEFAULT, SOURCE_DYNAMIC_BROKER, SOURCE_DYNAMIC_DEFAULT_BROKER, SOURCE_STATIC_BROKER,
};

/// One link of a chain: a config name, its value there and the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synonym {
    pub name: String,
    pub value: String,
    pub source: i8,
}

/// Kafka's topic config -> broker config pairs (ServerTopicConfigSynonyms)
/// beyond storage's [`BROKER_LOG_CONFIGS`], whose broker configs Karnak can
/// change: these exist in Kafka but are not settable on a Karnak broker, yet
/// their defaults still show in the chains.
const KAFKA_ONLY: &[(&str, &str)] = &[
    ("segment.jitter.ms", "log.roll.jitter.ms"),
    ("compression.gzip.level", "compression.gzip.level"),
    ("compression.lz4.level", "compression.lz4.level"),
    ("compression.zstd.level", "compression.zstd.level"),
    ("local.retention.ms", "log.local.retention.ms"),
    ("local.retention.bytes", "log.local.retention.bytes"),
    ("remote.copy.lag.ms", "log.remote.copy.lag.ms"),
    ("remote.copy.lag.bytes", "log.remote.copy.lag.bytes"),
    (
        "max.decompressed.message.bytes",
        "max.decompressed.message.bytes",
    ),
];

/// Every (broker config, topic config) pair Kafka knows.
fn pairs() -> impl Iterator<Item = (&'static str, &'static str)> {
    BROKER_LOG_CONFIGS
        .iter()
        .copied()
        .chain(KAFKA_ONLY.iter().map(|(t, b)| (*b, *t)))
}

fn broker_name_of(topic_config: &str) -> Option<&'static str> {
    pairs().find(|(_, t)| *t == topic_config).map(|(b, _)| b)
}

fn topic_name_of(broker_config: &str) -> Option<&'static str> {
    pairs().find(|(b, _)| *b == broker_config).map(|(_, t)| t)
}

/// Kafka's broker config synonyms (DynamicBrokerConfig.brokerConfigSynonyms).
fn broker_synonym_names(name: &str) -> Vec<&str> {
    match name {
        "log.roll.ms" | "log.roll.hours" => vec!["log.roll.ms", "log.roll.hours"],
        "log.roll.jitter.ms" | "log.roll.jitter.hours" => {
            vec!["log.roll.jitter.ms", "log.roll.jitter.hours"]
        }
        "log.flush.interval.ms" => vec!["log.flush.interval.ms", "log.flush.scheduler.interval.ms"],
        "log.retention.ms" | "log.retention.minutes" | "log.retention.hours" => vec![
            "log.retention.ms",
            "log.retention.minutes",
            "log.retention.hours",
        ],
        other => vec![other],
    }
}

/// Kafka's default of a broker config: that of its topic config, except for
/// the ones with no default (their coarser synonym has it).
fn kafka_default(broker_name: &str, topic_defaults: &BTreeMap<String, String>) -> Option<String> {
    match broker_name {
        "log.retention.ms"
        | "log.retention.minutes"
        | "log.roll.ms"
        | "log.roll.jitter.ms"
        | "log.flush.interval.ms" => None,
        "log.retention.hours" | "log.roll.hours" => Some("168".into()),
        "log.roll.jitter.hours" => Some("0".into()),
        "log.flush.scheduler.interval.ms" => Some(i64::MAX.to_string()),
        other => topic_name_of(other).and_then(|t| topic_defaults.get(t).cloned()),
    }
}

/// What a chain is built from.
pub struct Sources {
    pub dynamic: DynamicBrokerConfigs,
    /// The broker's static log settings (topic-config names).
    pub statics: BTreeMap<String, String>,
    /// Kafka's topic-config defaults.
    pub defaults: BTreeMap<String, String>,
}

impl Sources {
    pub fn new(dynamic: DynamicBrokerConfigs, statics: &LogConfig) -> Self {
        Sources {
            dynamic,
            statics: statics.describe(),
            defaults: LogConfig::default().describe(),
        }
    }

    /// The chain of broker config `name` (as the broker resource lists it).
    pub fn broker_chain(&self, name: &str) -> Vec<Synonym> {
        let names = broker_synonym_names(name);
        let mut out = Vec::new();
        let topic_value = |map: &BTreeMap<String, String>, n: &str| {
            topic_name_of(n).and_then(|t| map.get(t).cloned())
        };
        for (map, source) in [
            (&self.dynamic.broker, SOURCE_DYNAMIC_BROKER),
            (&self.dynamic.cluster_default, SOURCE_DYNAMIC_DEFAULT_BROKER),
        ] {
            for n in &names {
                if let Some(value) = topic_value(map, n) {
                    out.push(link(n, value, source));
                }
            }
        }
        // Static: what the broker's settings make different from Kafka's
        // default (Kafka lists what server.properties sets).
        for n in &names {
            if let Some(t) = topic_name_of(n)
                && let Some(v) = self.statics.get(t)
                && self.defaults.get(t) != Some(v)
            {
                out.push(link(n, v.clone(), SOURCE_STATIC_BROKER));
            }
        }
        for n in &names {
            if let Some(v) = kafka_default(n, &self.defaults) {
                out.push(link(n, v, SOURCE_DEFAULT));
            }
        }
        let first = out.iter().position(|s| s.name == name).unwrap_or(out.len());
        out.split_off(first)
    }

    /// The chain of topic config `name`, after the topic's own override.
    pub fn topic_chain(&self, name: &str) -> Vec<Synonym> {
        broker_name_of(name)
            .map(|b| self.broker_chain(b))
            .unwrap_or_default()
    }
}

fn link(name: &str, value: String, source: i8) -> Synonym {
    Synonym {
        name: name.to_string(),
        value,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(broker: &[(&str, &str)], cluster: &[(&str, &str)]) -> Sources {
        let map = |kv: &[(&str, &str)]| {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        Sources::new(
            DynamicBrokerConfigs {
                broker: map(broker),
                cluster_default: map(cluster),
            },
            &LogConfig::default(),
        )
    }

    fn show(chain: &[Synonym]) -> Vec<String> {
        chain
            .iter()
            .map(|s| format!("{}:{}={}", s.source, s.name, s.value))
            .collect()
    }

    /// The chains Apache Kafka 4.4 answered in the CLI differential test.
    #[test]
    fn chains_match_kafkas() {
        let s = sources(&[], &[]);
        assert!(s.topic_chain("retention.ms").is_empty());
        assert!(s.topic_chain("segment.ms").is_empty());
        assert!(s.topic_chain("flush.ms").is_empty());
        assert!(s.topic_chain("remote.storage.enable").is_empty());
        assert_eq!(
            show(&s.topic_chain("max.message.bytes")),
            ["5:message.max.bytes=1048588"]
        );
        assert_eq!(
            show(&s.topic_chain("cleanup.policy")),
            ["5:log.cleanup.policy=delete"]
        );

        let s = sources(
            &[("retention.ms", "7200000")],
            &[("retention.ms", "10800000"), ("segment.bytes", "104857600")],
        );
        assert_eq!(
            show(&s.topic_chain("retention.ms")),
            [
                "2:log.retention.ms=7200000",
                "3:log.retention.ms=10800000",
                "5:log.retention.hours=168"
            ]
        );
        assert_eq!(
            show(&s.broker_chain("log.segment.bytes")),
            [
                "3:log.segment.bytes=104857600",
                "5:log.segment.bytes=1073741824"
            ]
        );
    }
}

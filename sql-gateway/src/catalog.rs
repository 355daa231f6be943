//! The `public` schema: every topic is a table, looked up live, so a topic
//! created a moment ago is queryable and a deleted one is gone.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::AsArray;
use arrow::datatypes::DataType;
use async_trait::async_trait;
use datafusion::catalog::SchemaProvider;
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::TableProvider;
use karnak_storage::columnar::{COL_VALUE, PartitionScan};
use karnak_storage::{LogManager, Topic};

use crate::insert::Producer;
use crate::json::{self, JsonColumn};
use crate::remote::{RemotePartitions, RemoteRange, RemoteRead, RemoteTopic};
use crate::table::{TopicTable, topic_schema};
use crate::tail::TailCache;

/// Topics the broker keeps for itself are not tables.
fn visible(name: &str) -> bool {
    !name.starts_with("__karnak")
}

/// Records sampled (the newest, spread over partitions) to infer a JSON
/// topic's columns, and how long an inferred schema is reused.
const INFER_SAMPLE: i64 = 1000;
const INFER_TTL: Duration = Duration::from_secs(10);

type InferredFields = Arc<Vec<(String, DataType)>>;

pub struct TopicSchema {
    logs: Arc<LogManager>,
    producer: Option<Arc<dyn Producer>>,
    /// In a cluster: what has no replica here, and how to read it.
    remote: Option<Arc<dyn RemotePartitions>>,
    /// Inferred JSON fields by topic id, with when they were inferred.
    inferred: Mutex<HashMap<[u8; 16], (Instant, InferredFields)>>,
    tail: Arc<TailCache>,
}

impl std::fmt::Debug for TopicSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicSchema").finish_non_exhaustive()
    }
}

/// Where a topic's newest records are sampled from to infer its columns.
enum Sample<'a> {
    Local(&'a Arc<Topic>),
    Remote(&'a RemoteTopic, &'a Arc<dyn RemotePartitions>),
}

impl TopicSchema {
    pub fn new(
        logs: Arc<LogManager>,
        producer: Option<Arc<dyn Producer>>,
        remote: Option<Arc<dyn RemotePartitions>>,
        tail: Arc<TailCache>,
    ) -> Self {
        TopicSchema {
            logs,
            producer,
            remote,
            inferred: Mutex::new(HashMap::new()),
            tail,
        }
    }

    /// The JSON columns of a topic: none unless `karnak.value.format=json`;
    /// declared by `karnak.value.schema`, else inferred from its newest
    /// records.
    async fn json_columns(
        &self,
        name: &str,
        id: [u8; 16],
        configs: &BTreeMap<String, String>,
        sample: Sample<'_>,
    ) -> Result<Vec<JsonColumn>> {
        if configs.get(json::FORMAT_KEY).map(String::as_str) != Some("json") {
            return Ok(Vec::new());
        }
        let fields = match configs
            .get(json::SCHEMA_KEY)
            .filter(|s| !s.trim().is_empty())
        {
            Some(declared) => json::parse_declared(declared).map_err(|e| {
                DataFusionError::Plan(format!(
                    "topic {name} has an invalid {}: {e}",
                    json::SCHEMA_KEY
                ))
            })?,
            None => self
                .inferred_fields(name, id, sample)
                .await?
                .as_ref()
                .clone(),
        };
        let fixed: Vec<String> = topic_schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let fixed: Vec<&str> = fixed.iter().map(String::as_str).collect();
        Ok(json::columns(fields, &fixed))
    }

    async fn inferred_fields(
        &self,
        name: &str,
        id: [u8; 16],
        sample: Sample<'_>,
    ) -> Result<InferredFields> {
        if let Some((at, fields)) = lock(&self.inferred).get(&id)
            && at.elapsed() < INFER_TTL
        {
            return Ok(fields.clone());
        }
        let inferred = match sample {
            Sample::Local(topic) => {
                let t = topic.clone();
                karnak_storage::blocking::spawn(move || sample_and_infer(&t))
                    .await
                    .map_err(|e| DataFusionError::External(Box::new(e)))??
            }
            Sample::Remote(topic, remote) => sample_remote_and_infer(topic, remote).await?,
        };
        if inferred.dropped > 0 {
            tracing::warn!(
                topic = %name,
                "JSON values of topic {name} have {} more top-level fields than the {} made columns (first: {}); declare {} to choose them",
                inferred.dropped,
                json::MAX_INFERRED_COLUMNS,
                inferred.dropped_names.join(", "),
                json::SCHEMA_KEY
            );
        }
        let fields = Arc::new(inferred.fields);
        lock(&self.inferred).insert(id, (Instant::now(), fields.clone()));
        Ok(fields)
    }
}

/// Fetches the newest records of every partition of a topic held on other
/// brokers and infers JSON fields.
async fn sample_remote_and_infer(
    topic: &RemoteTopic,
    remote: &Arc<dyn RemotePartitions>,
) -> Result<json::Inferred> {
    let per_partition = (INFER_SAMPLE / i64::from(topic.partitions.max(1))).max(50);
    let mut values: Vec<Vec<u8>> = Vec::new();
    for partition in 0..topic.partitions {
        let (_, end) = remote
            .offsets(&topic.name, partition)
            .await
            .map_err(|e| DataFusionError::Execution(format!("sampling {}: {e}", topic.name)))?;
        let read = RemoteRead {
            remote: remote.clone(),
            topic: topic.name.clone(),
            partition,
            range: Arc::new(RemoteRange {
                offset_start: end - per_partition,
                offset_end: end,
                timestamp_start: None,
            }),
        };
        read.run(|batch| {
            if let Some(col) = batch
                .column_by_name(COL_VALUE)
                .and_then(|c| c.as_binary_opt::<i32>())
            {
                values.extend(col.iter().flatten().map(<[u8]>::to_vec));
            }
            std::future::ready(true)
        })
        .await?;
    }
    Ok(json::infer(values.iter().map(Vec::as_slice)))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Reads the newest records of every partition and infers JSON fields.
fn sample_and_infer(topic: &Topic) -> Result<json::Inferred> {
    let per_partition = (INFER_SAMPLE / topic.logs.len().max(1) as i64).max(50);
    let mut values: Vec<Vec<u8>> = Vec::new();
    for log in &topic.logs {
        let end = log.last_stable_offset();
        let start = (end - per_partition).max(log.log_start_offset());
        let mut scan = PartitionScan::new(log.clone(), start, end, 1024, 1 << 20);
        while let Some(batch) = scan
            .next_batch()
            .map_err(|e| DataFusionError::External(Box::new(e)))?
        {
            if let Some(col) = batch
                .column_by_name(COL_VALUE)
                .and_then(|c| c.as_binary_opt::<i32>())
            {
                values.extend(col.iter().flatten().map(<[u8]>::to_vec));
            }
        }
    }
    Ok(json::infer(values.iter().map(Vec::as_slice)))
}

#[async_trait]
impl SchemaProvider for TopicSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .logs
            .topics()
            .into_iter()
            .map(|t| t.meta.name.clone())
            .collect();
        if let Some(remote) = &self.remote {
            names.extend(remote.topics_elsewhere());
        }
        names.retain(|n| visible(n));
        names.sort();
        names.dedup();
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if !visible(name) {
            return Ok(None);
        }
        let mut caught_up = false;
        let topic = loop {
            if let Some(topic) = self.logs.topic(name) {
                break topic;
            }
            // No replica of it here: a cluster's other brokers hold it.
            let Some(remote) = self.remote.as_ref() else {
                return Ok(None);
            };
            let Some(rt) = remote.topic_elsewhere(name) else {
                // Created through another broker a moment ago, perhaps:
                // apply what the cluster has committed and look again.
                if caught_up {
                    return Ok(None);
                }
                remote.catch_up().await;
                caught_up = true;
                continue;
            };
            let json = self
                .json_columns(name, rt.id, &rt.configs, Sample::Remote(&rt, remote))
                .await?;
            return Ok(Some(Arc::new(TopicTable::remote_only(
                &rt,
                remote.clone(),
                self.producer.clone(),
                json,
            ))));
        };
        let json = self
            .json_columns(
                name,
                topic.meta.id,
                &topic.config.other,
                Sample::Local(&topic),
            )
            .await?;
        let mut table = TopicTable::new(topic, self.producer.clone(), json, self.tail.clone());
        if let Some(remote) = &self.remote {
            table = table.with_remote(remote.clone(), &remote.partitions_led_elsewhere(name));
        }
        Ok(Some(Arc::new(table)))
    }

    fn table_exist(&self, name: &str) -> bool {
        visible(name)
            && (self.logs.topic(name).is_some()
                || self
                    .remote
                    .as_ref()
                    .is_some_and(|r| r.topic_elsewhere(name).is_some()))
    }
}

//! `TopicTable`: a topic as a DataFusion table over its partitions, read up
//! to the last stable offset taken when the scan is planned (a query sees
//! every record acknowledged before it started, and nothing produced while
//! it runs). Sealed segments with a face are read by DataFusion's Parquet
//! scan ([`crate::faces`]), which prunes on every column's statistics; each
//! partition's tail (its newest records, no face yet) comes from the shared
//! [`crate::tail`] cache; what neither holds is decoded from the log by the
//! query ([`crate::decode`]). Predicates on `partition`, `offset` and
//! `timestamp` narrow what is read from the log.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::sink::DataSinkExec;
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::union::UnionExec;
use karnak_storage::columnar;
use karnak_storage::face::{Face, ValueFormat};
use karnak_storage::segment::LogSegment;
use karnak_storage::{Log, Topic};

use crate::decode::{PartitionReader, table_batch};
use crate::insert::{InsertError, Producer, TopicSink};
use crate::json::JsonColumn;
use crate::pushdown::{Ranges, is_pushable};
use crate::remote::{RemotePartitions, RemoteRange, RemoteReader, RemoteTopic};
use crate::tail::{TailCache, TailRows};

pub use karnak_storage::columnar::{COL_KEY_TEXT, COL_VALUE_TEXT};

/// Rows per Arrow batch a scan hands to DataFusion, and bytes per log read
/// (or per Fetch of a remote partition).
pub(crate) const SCAN_ROWS: usize = 8192;
pub(crate) const SCAN_CHUNK_BYTES: usize = 4 << 20;

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let base = columnar::schema();
    let mut fields: Vec<Field> = base.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(COL_KEY_TEXT, DataType::Utf8, true));
    fields.push(Field::new(COL_VALUE_TEXT, DataType::Utf8, true));
    Arc::new(Schema::new(fields))
});

/// A topic's table schema: the Arrow face plus text views of key and value.
pub fn topic_schema() -> SchemaRef {
    SCHEMA.clone()
}

pub struct TopicTable {
    name: String,
    /// Where each partition is read from, by partition index.
    sources: Vec<Source>,
    /// Reads the partitions led by a cluster's other brokers.
    remote: Option<Arc<dyn RemotePartitions>>,
    /// Where INSERTs go; `None` makes the table read-only.
    producer: Option<Arc<dyn Producer>>,
    /// Columns from JSON values (`karnak.value.format=json`), after the
    /// fixed ones.
    json: Arc<Vec<JsonColumn>>,
    /// The topic's value format, which a face must have been built for.
    format: ValueFormat,
    /// Partitions' newest records, decoded once for every query.
    tail: Arc<TailCache>,
    schema: SchemaRef,
}

/// Where a partition's records are.
#[derive(Clone)]
enum Source {
    /// The partition's log on this broker, which leads it (or a single
    /// node): its last stable offset is current.
    Local(Arc<Log>),
    /// Led by another broker, with a replica here: scanned here up to the
    /// leader's last stable offset when the replica has it (asked at query
    /// start), else fetched from the leader.
    Follower(Arc<Log>),
    /// Led by another broker: fetched from the leader.
    Remote,
}

impl std::fmt::Debug for TopicTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicTable")
            .field("topic", &self.name)
            .finish()
    }
}

fn table_schema(json: &[JsonColumn]) -> SchemaRef {
    if json.is_empty() {
        return topic_schema();
    }
    crate::tail::with_json_fields(&topic_schema(), json)
}

/// `karnak_sql_partition_reads_total{source}`: partitions a scan read
/// from a log this broker leads, from its follower's replica, or from the
/// leader over the network.
const READ_LEADER: &str = "leader";
const READ_FOLLOWER: &str = "follower";
const READ_REMOTE: &str = "remote";

fn record_read(source: &'static str) {
    metrics::counter!("karnak_sql_partition_reads_total", "source" => source).increment(1);
}

impl TopicTable {
    /// For each follower's replica the scan touches: the leader's (log
    /// start, last stable offset), if the replica holds the leader's
    /// records up to it and has seen every transaction below it decided
    /// (its own last stable offset is there too, so its aborted index
    /// covers them). Asked of all leaders at once.
    async fn follower_bounds(&self, ranges: &Ranges) -> Result<HashMap<i32, (i64, i64)>> {
        let Some(remote) = &self.remote else {
            return Ok(HashMap::new());
        };
        let asks = self
            .sources
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                Source::Follower(log) if ranges.partition_matches(i as i32) => {
                    let (remote, log, partition) = (remote.clone(), log.clone(), i as i32);
                    Some(async move {
                        let bounds = remote.follower_bounds(&self.name, partition).await;
                        bounds.map(|b| {
                            b.filter(|(_, stable)| log.own_last_stable_offset() >= *stable)
                                .map(|b| (partition, b))
                        })
                    })
                }
                _ => None,
            });
        let answers = futures::future::try_join_all(asks)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(answers.into_iter().flatten().collect())
    }

    /// A topic whose partitions all have a replica here.
    pub fn new(
        topic: Arc<Topic>,
        producer: Option<Arc<dyn Producer>>,
        json: Vec<JsonColumn>,
        tail: Arc<TailCache>,
    ) -> Self {
        TopicTable {
            tail,
            name: topic.meta.name.clone(),
            sources: topic.logs.iter().cloned().map(Source::Local).collect(),
            remote: None,
            producer,
            schema: table_schema(&json),
            json: Arc::new(json),
            format: ValueFormat::from_configs(&topic.config.other),
        }
    }

    /// A topic with no replica here at all: every partition is fetched.
    pub fn remote_only(
        topic: &RemoteTopic,
        remote: Arc<dyn RemotePartitions>,
        producer: Option<Arc<dyn Producer>>,
        json: Vec<JsonColumn>,
    ) -> Self {
        TopicTable {
            name: topic.name.clone(),
            sources: vec![Source::Remote; topic.partitions.max(0) as usize],
            remote: Some(remote),
            producer,
            schema: table_schema(&json),
            json: Arc::new(json),
            // Nothing is read from faces or cached here.
            format: ValueFormat::Raw,
            tail: Arc::new(TailCache::new(0)),
        }
    }

    /// Partitions in `elsewhere` are led by other brokers (this broker's
    /// log of them, if any, is a follower's or an empty placeholder): they
    /// are read through `remote`, from the leader or, where `remote` vouches
    /// for it, from the local replica.
    pub fn with_remote(mut self, remote: Arc<dyn RemotePartitions>, elsewhere: &[i32]) -> Self {
        for p in elsewhere {
            if let Some(s) = usize::try_from(*p)
                .ok()
                .and_then(|i| self.sources.get_mut(i))
            {
                *s = match s {
                    Source::Local(log) => Source::Follower(log.clone()),
                    _ => Source::Remote,
                };
            }
        }
        self.remote = Some(remote);
        self
    }
}

#[async_trait]
impl TableProvider for TopicTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Inexact: the scan narrows the range it reads from the log;
        // DataFusion still applies the predicate to what comes back (and
        // pushes its filters into the faces' Parquet scan itself).
        Ok(filters
            .iter()
            .map(|f| {
                if is_pushable(f) {
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let ranges = Ranges::from_filters(filters);
        let schema = self.schema.clone();
        let wanted = |i: usize| projection.is_none_or(|p| p.contains(&i));
        let wants_text = |name: &str| schema.index_of(name).is_ok_and(wanted);
        let text = (wants_text(COL_KEY_TEXT), wants_text(COL_VALUE_TEXT));
        let fixed = topic_schema().fields().len();
        let json_wanted: Arc<Vec<bool>> =
            Arc::new((0..self.json.len()).map(|j| wanted(fixed + j)).collect());
        let bounds = self.follower_bounds(&ranges).await?;
        let mut partitions: Vec<Arc<dyn PartitionStream>> = Vec::new();
        let mut faces: Vec<Arc<Face>> = Vec::new();
        // Ranges decoded from the log by this query, and tail ranges asked
        // of the cache: (log, where its tail starts, from, to).
        let mut logs: Vec<Arc<dyn PartitionStream>> = Vec::new();
        let mut tails: Vec<(Arc<Log>, i64, i64, i64)> = Vec::new();
        for (index, source) in self.sources.iter().enumerate() {
            let partition = index as i32;
            if !ranges.partition_matches(partition) {
                continue;
            }
            // Where this partition is read, and the leader's bounds for a
            // follower's replica that holds them.
            let local = match source {
                Source::Local(log) => Some((log, None)),
                Source::Follower(log) => bounds.get(&partition).map(|b| (log, Some(*b))),
                Source::Remote => None,
            };
            let (log, leader_bounds) = match local {
                Some((log, None)) => {
                    record_read(READ_LEADER);
                    (log, None)
                }
                Some((log, leader_bounds)) => {
                    record_read(READ_FOLLOWER);
                    (log, leader_bounds)
                }
                None => {
                    record_read(READ_REMOTE);
                    let Some(remote) = &self.remote else {
                        return Err(DataFusionError::Plan(format!(
                            "partition {partition} of topic {:?} has no replica on this broker",
                            self.name
                        )));
                    };
                    partitions.push(Arc::new(RemoteReader {
                        remote: remote.clone(),
                        topic: self.name.clone(),
                        partition,
                        range: Arc::new(RemoteRange {
                            offset_start: ranges.offset_start(),
                            offset_end: ranges.offset_end(),
                            timestamp_start: ranges.timestamp_start(),
                        }),
                        text,
                        json: self.json.clone(),
                        json_wanted: json_wanted.clone(),
                        schema: schema.clone(),
                    }));
                    continue;
                }
            };
            // The end is fixed now: the last stable offset at query start
            // (the high watermark unless a transaction is open), the
            // leader's for a follower's replica.
            let (leader_start, stable) =
                leader_bounds.unwrap_or((i64::MIN, log.last_stable_offset()));
            let end = stable.min(ranges.offset_end());
            let mut start = ranges
                .offset_start()
                .max(log.log_start_offset())
                .max(leader_start);
            if let Some(ts) = ranges.timestamp_start() {
                match log.offset_for_timestamp(ts) {
                    Ok(Some((off, _))) => start = start.max(off),
                    Ok(None) => start = end,
                    Err(e) => return Err(DataFusionError::External(Box::new(e))),
                }
            }
            if start >= end {
                continue;
            }
            // Records below the log start are gone, whatever a face holds.
            let hard_start = log.log_start_offset().max(leader_start);
            let sealed = log.sealed_segments();
            let tail_start = self.tail_start(&sealed);
            for (from, to) in self.split_by_faces(&sealed, start, end, hard_start, &mut faces) {
                // Below the tail (a segment whose face is missing): decoded
                // by this query; the tail from the shared cache.
                if from < tail_start.min(to) {
                    logs.push(self.reader(log, from, to.min(tail_start), text, &json_wanted));
                }
                if to > tail_start {
                    tails.push((log.clone(), tail_start, from.max(tail_start), to));
                }
            }
        }
        // LIMIT without a filter reads what is cached and decodes the rest
        // for itself: filling a long tail would cost more than the query.
        let fill = limit.is_none();
        let mut cached: Vec<Vec<RecordBatch>> = Vec::new();
        for (ask, rows) in tails.iter().zip(self.read_tails(&tails, fill).await?) {
            let (log, _, from, to) = ask;
            let covered = match rows {
                Some(TailRows { batches, covered }) => {
                    let batches = batches
                        .into_iter()
                        .map(|b| table_batch(b, &schema, text))
                        .collect::<Result<Vec<_>>>()?;
                    if !batches.is_empty() {
                        cached.push(batches);
                    }
                    covered
                }
                None => *from,
            };
            if covered < *to {
                logs.push(self.reader(log, covered, *to, text, &json_wanted));
            }
        }
        partitions.extend(logs);
        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        if !faces.is_empty() {
            inputs.push(crate::faces::scan(
                faces, &schema, &self.json, projection, limit,
            )?);
        }
        if !cached.is_empty() {
            // In memory, with exact row counts: `count(*)` over faces and
            // cached tails is answered from them without reading a row.
            let source = MemorySourceConfig::try_new(&cached, schema.clone(), projection.cloned())?
                .with_limit(limit);
            inputs.push(DataSourceExec::from_data_source(source));
        }
        if !partitions.is_empty() || inputs.is_empty() {
            let exec =
                StreamingTableExec::try_new(schema, partitions, projection, [], false, limit)?;
            inputs.push(Arc::new(exec));
        }
        UnionExec::try_new(inputs)
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if insert_op != InsertOp::Append {
            return Err(InsertError::sql(
                "0A000",
                format!("{insert_op} is not supported: a topic is append-only"),
            ));
        }
        let Some(producer) = &self.producer else {
            return Err(InsertError::sql(
                "25006",
                "the SQL gateway is read-only here",
            ));
        };
        let sink = TopicSink::new(
            self.name.clone(),
            self.sources.len() as i32,
            producer.clone(),
            &self.schema,
            self.json.clone(),
        );
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }
}

impl TopicTable {
    /// Splits `[start, end)` of a log with `sealed` segments into the
    /// faces that stand in for whole sealed segments (added to `faces`) and
    /// the ranges left to decode from the log. A face is used only inside
    /// `[hard_start, end)` (the log start and the stable end are not
    /// predicates a later filter re-applies) and only when built for this
    /// table's columns.
    fn split_by_faces(
        &self,
        sealed: &[Arc<LogSegment>],
        start: i64,
        end: i64,
        hard_start: i64,
        faces: &mut Vec<Arc<Face>>,
    ) -> Vec<(i64, i64)> {
        let mut ranges = Vec::new();
        let mut pos = start;
        for seg in sealed {
            let (base, next) = (seg.base_offset, seg.next_offset());
            if next <= pos {
                continue;
            }
            if base >= end {
                break;
            }
            let Some(face) = self.face_of(seg) else {
                continue;
            };
            if base < hard_start || next > end {
                continue;
            }
            if pos < base {
                ranges.push((pos, base));
            }
            faces.push(face);
            pos = next;
        }
        if pos < end {
            ranges.push((pos, end));
        }
        ranges
    }

    /// The segment's face, if it can stand in for the segment here.
    fn face_of(&self, seg: &LogSegment) -> Option<Arc<Face>> {
        seg.face().filter(|face| {
            face.next_offset() == seg.next_offset()
                && crate::faces::usable(face, &self.format, &self.json)
        })
    }

    /// Where a partition's tail starts: after its last face, or lower when
    /// no face is built yet, but never further back than the cache holds
    /// (the newest sealed segments without a face, and the active one).
    fn tail_start(&self, sealed: &[Arc<LogSegment>]) -> i64 {
        let Some(newest) = sealed.last() else {
            return i64::MIN;
        };
        let mut start = newest.next_offset();
        let mut bytes = 0;
        for seg in sealed.iter().rev() {
            bytes += seg.size();
            if bytes > self.tail.tail_log_bytes() || self.face_of(seg).is_some() {
                break;
            }
            start = seg.base_offset;
        }
        start
    }

    /// A stream decoding `[from, to)` of `log` for this query alone.
    fn reader(
        &self,
        log: &Arc<Log>,
        from: i64,
        to: i64,
        text: (bool, bool),
        json_wanted: &Arc<Vec<bool>>,
    ) -> Arc<dyn PartitionStream> {
        Arc::new(PartitionReader {
            log: log.clone(),
            start: from,
            end: to,
            text,
            json: self.json.clone(),
            json_wanted: json_wanted.clone(),
            schema: self.schema.clone(),
        })
    }

    /// The cache's rows for each tail range (filled first with `fill`),
    /// all partitions at once on blocking threads.
    async fn read_tails(
        &self,
        tails: &[(Arc<Log>, i64, i64, i64)],
        fill: bool,
    ) -> Result<Vec<Option<TailRows>>> {
        let reads = tails.iter().map(|(log, tail_start, from, to)| {
            let (cache, log, json) = (self.tail.clone(), log.clone(), self.json.clone());
            let (tail_start, from, to) = (*tail_start, *from, *to);
            karnak_storage::blocking::spawn(move || {
                cache.read(&log, tail_start, &json, from, to, fill)
            })
        });
        futures::future::try_join_all(reads)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?
            .into_iter()
            .collect()
    }
}

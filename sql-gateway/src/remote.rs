//! Partitions read from another broker. In a cluster a broker holds
//! replicas of some partitions only; the gateway still answers for every
//! topic: what it holds it scans from its own logs, the rest it fetches
//! from the partition's leader with the Kafka Fetch API as a
//! `read_committed` consumer (so never past the last stable offset, which
//! is at most the high watermark), and decodes the batches as it decodes
//! its own. The broker supplies the network side ([`RemotePartitions`]);
//! the gateway never talks to peers itself.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use bytes::Bytes;
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use karnak_protocol::record_batch::BatchIter;
use karnak_storage::columnar::RecordsBuilder;
use karnak_storage::log::txn_index::AbortedTxn;

use crate::decode::derived_columns;
use crate::json::JsonColumn;
use crate::table::{SCAN_CHUNK_BYTES, SCAN_ROWS};

/// A topic with no replica on this broker, as the cluster's metadata has it.
#[derive(Debug, Clone)]
pub struct RemoteTopic {
    pub name: String,
    pub id: [u8; 16],
    pub partitions: i32,
    /// The topic's config overrides (`karnak.value.format`, ...).
    pub configs: BTreeMap<String, String>,
}

/// One Fetch answer for one partition.
#[derive(Debug, Clone, Default)]
pub struct FetchedChunk {
    /// Record batches from the requested offset; the last may be cut short.
    pub records: Bytes,
    /// Aborted transactions overlapping the chunk: (producer id, first offset).
    pub aborted: Vec<(i64, i64)>,
}

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The offset is below the partition's log start (retention moved it).
    #[error("offset out of range: the log starts at {log_start_offset}")]
    OffsetOutOfRange { log_start_offset: i64 },
    #[error("{0}")]
    Unavailable(String),
}

/// What the broker provides so the gateway can read partitions it does
/// not lead. Every call finds the partition's current leader itself
/// (and retries across a leader change within its own deadline).
#[async_trait]
pub trait RemotePartitions: Send + Sync {
    /// Partitions of `topic` this broker does not lead. A follower's own
    /// replica is read only within [`Self::follower_bounds`]: its high
    /// watermark trails the leader's by up to a replica fetch wait, and a
    /// query must see every record acknowledged before it started.
    fn partitions_led_elsewhere(&self, topic: &str) -> Vec<i32>;
    /// The leader's log start and last stable offset, if this broker's
    /// replica of the partition holds the leader's records up to its own
    /// end (it follows in the leader's current epoch, truncated to where
    /// the two logs agree). The gateway then scans its own replica up to
    /// that bound when it has reached it. `None`: read from the leader.
    async fn follower_bounds(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Option<(i64, i64)>, RemoteError> {
        let _ = (topic, partition);
        Ok(None)
    }
    /// Returns once this broker has applied every cluster metadata change
    /// made before the call (a read barrier), so a table looked up and not
    /// found is looked up once more before "does not exist": the topic may
    /// have just been created through another broker.
    async fn catch_up(&self) {}
    /// Topics of the cluster with no replica at all on this broker.
    fn topics_elsewhere(&self) -> Vec<String>;
    fn topic_elsewhere(&self, name: &str) -> Option<RemoteTopic>;
    /// The log start offset and the last stable offset (read_committed
    /// ListOffsets: earliest and latest).
    async fn offsets(&self, topic: &str, partition: i32) -> Result<(i64, i64), RemoteError>;
    /// The first offset with a timestamp at or after `timestamp`, if any.
    async fn offset_for_timestamp(
        &self,
        topic: &str,
        partition: i32,
        timestamp: i64,
    ) -> Result<Option<i64>, RemoteError>;
    /// Up to about `max_bytes` of record batches from `offset`.
    async fn fetch(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: i32,
    ) -> Result<FetchedChunk, RemoteError>;
}

/// Where one partition of a scan reads from.
pub struct RemoteRange {
    pub offset_start: i64,
    pub offset_end: i64,
    pub timestamp_start: Option<i64>,
}

/// One remote partition's share of a scan.
pub struct RemoteReader {
    pub remote: Arc<dyn RemotePartitions>,
    pub topic: String,
    pub partition: i32,
    pub range: Arc<RemoteRange>,
    pub text: (bool, bool),
    pub json: Arc<Vec<JsonColumn>>,
    pub json_wanted: Arc<Vec<bool>>,
    pub schema: SchemaRef,
}

impl std::fmt::Debug for RemoteReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteReader")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .finish()
    }
}

fn remote_error(topic: &str, partition: i32, e: RemoteError) -> DataFusionError {
    DataFusionError::Execution(format!("reading {topic}-{partition} from its leader: {e}"))
}

impl PartitionStream for RemoteReader {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        // A task fills a small channel, so a client that stops reading (or a
        // LIMIT) stops the fetches.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<RecordBatch>>(2);
        let reader = RemoteRead {
            remote: self.remote.clone(),
            topic: self.topic.clone(),
            partition: self.partition,
            range: self.range.clone(),
        };
        let (text, schema) = (self.text, self.schema.clone());
        let (json, json_wanted) = (self.json.clone(), self.json_wanted.clone());
        tokio::spawn(async move {
            let send =
                |batch: RecordBatch| derived_columns(batch, &schema, text, &json, &json_wanted);
            let result = reader
                .run(|batch| {
                    let tx = tx.clone();
                    let item = send(batch);
                    async move { tx.send(item).await.is_ok() }
                })
                .await;
            if let Err(e) = result {
                let _ = tx.send(Err(e)).await;
            }
        });
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}

/// Reads one remote partition's records in a range as Arrow batches.
pub struct RemoteRead {
    pub remote: Arc<dyn RemotePartitions>,
    pub topic: String,
    pub partition: i32,
    pub range: Arc<RemoteRange>,
}

impl RemoteRead {
    /// Hands each batch of rows to `emit` until the range ends or `emit`
    /// answers false (the reader went away).
    pub async fn run<F, Fut>(&self, mut emit: F) -> Result<()>
    where
        F: FnMut(RecordBatch) -> Fut,
        Fut: Future<Output = bool>,
    {
        let (topic, partition) = (self.topic.as_str(), self.partition);
        let err = |e| remote_error(topic, partition, e);
        // The end is fixed now, as for a local partition: the last stable
        // offset when the scan starts.
        let (log_start, stable) = self.remote.offsets(topic, partition).await.map_err(err)?;
        let end = stable.min(self.range.offset_end);
        let mut next = self.range.offset_start.max(log_start);
        if let Some(ts) = self.range.timestamp_start {
            match self
                .remote
                .offset_for_timestamp(topic, partition, ts)
                .await
                .map_err(err)?
            {
                Some(off) => next = next.max(off),
                None => return Ok(()),
            }
        }
        let mut rows = RecordsBuilder::new();
        while next < end {
            let chunk = match self
                .remote
                .fetch(topic, partition, next, SCAN_CHUNK_BYTES as i32)
                .await
            {
                Ok(c) => c,
                // Retention removed what we were about to read: go on from
                // the new start, as a consumer would.
                Err(RemoteError::OffsetOutOfRange { log_start_offset })
                    if log_start_offset > next =>
                {
                    next = log_start_offset;
                    continue;
                }
                // Past the leader's end (its log is shorter than it said,
                // e.g. truncated after a failover): nothing more to read.
                Err(RemoteError::OffsetOutOfRange { .. }) => break,
                Err(e) => return Err(err(e)),
            };
            let whole = whole_batches(&chunk.records);
            if whole.is_empty() {
                // Nothing readable before the end.
                break;
            }
            let aborted = aborted_in(&whole, &chunk.aborted);
            let after = rows
                .push_batches(partition, &whole, next, end, &aborted)
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            if after <= next {
                break;
            }
            next = after;
            if rows.rows() >= SCAN_ROWS && !emit(rows.finish()).await {
                return Ok(());
            }
        }
        if rows.rows() > 0 {
            emit(rows.finish()).await;
        }
        Ok(())
    }
}

/// The whole batches at the start of a Fetch answer (Kafka may cut the last
/// one at the size limit).
fn whole_batches(records: &Bytes) -> Bytes {
    let mut it = BatchIter::new(records);
    while let Some(Ok(_)) = it.next() {}
    records.slice(..it.position())
}

/// The aborted transactions of a Fetch answer as ranges: a transaction
/// runs from its first offset to its producer's next control batch (the
/// abort marker), or past the chunk when that is not in it, which is how
/// a read_committed consumer skips them.
fn aborted_in(records: &Bytes, aborted: &[(i64, i64)]) -> Vec<AbortedTxn> {
    aborted
        .iter()
        .map(|&(producer_id, first_offset)| {
            let marker = BatchIter::new(records)
                .map_while(|b| b.ok())
                .find(|(_, h)| {
                    h.is_control() && h.producer_id == producer_id && h.base_offset >= first_offset
                })
                .map(|(_, h)| h.base_offset);
            AbortedTxn {
                producer_id,
                first_offset,
                last_offset: marker.unwrap_or(i64::MAX),
                last_stable_offset: -1,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use karnak_protocol::kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    fn batch(base: i64, n: i64, producer_id: i64, transactional: bool, control: bool) -> Bytes {
        let recs: Vec<Record> = (0..n)
            .map(|i| Record {
                transactional,
                control,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id,
                producer_epoch: if producer_id >= 0 { 0 } else { -1 },
                timestamp_type: TimestampType::Creation,
                offset: base + i,
                sequence: if producer_id >= 0 { i as i32 } else { -1 },
                timestamp: 1_000 + i,
                key: control.then(|| Bytes::from_static(&[0, 0, 0, 0])),
                value: Some(Bytes::from(format!("v{}", base + i))),
                headers: Default::default(),
            })
            .collect();
        let mut buf = bytes::BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &recs,
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .expect("encodes");
        buf.freeze()
    }

    fn concat(parts: &[Bytes]) -> Bytes {
        let mut out = Vec::new();
        for p in parts {
            out.extend_from_slice(p);
        }
        Bytes::from(out)
    }

    #[test]
    fn a_cut_last_batch_is_left_for_the_next_fetch() {
        let full = concat(&[batch(0, 3, -1, false, false), batch(3, 2, -1, false, false)]);
        let last = BatchIter::new(&full)
            .map_while(Result::ok)
            .last()
            .expect("batches")
            .1
            .total_size();
        assert_eq!(
            whole_batches(&full.slice(..full.len() - 1)).len(),
            full.len() - last
        );
        assert_eq!(whole_batches(&full).len(), full.len());
        assert!(whole_batches(&full.slice(..10)).is_empty());
    }

    #[test]
    fn an_aborted_transaction_ends_at_its_producers_marker() {
        // Producer 7 aborts (marker at 4), then writes again transactionally.
        let records = concat(&[
            batch(0, 2, 7, true, false),
            batch(2, 2, 8, true, false),
            batch(4, 1, 7, true, true),
            batch(5, 2, 7, true, false),
        ]);
        let ranges = aborted_in(&records, &[(7, 0), (8, 2)]);
        assert_eq!((ranges[0].first_offset, ranges[0].last_offset), (0, 4));
        // No marker for producer 8 in the chunk: aborted to its end.
        assert_eq!(
            (ranges[1].first_offset, ranges[1].last_offset),
            (2, i64::MAX)
        );
        let mut rows = RecordsBuilder::new();
        let after = rows
            .push_batches(0, &records, 0, 100, &ranges)
            .expect("decodes");
        assert_eq!(after, 7);
        let out = rows.finish();
        let offsets = out
            .column_by_name(karnak_storage::columnar::COL_OFFSET)
            .and_then(|c| c.as_any().downcast_ref::<arrow::array::Int64Array>())
            .expect("offset column");
        assert_eq!(offsets.values().to_vec(), vec![5, 6]);
    }
}

//! `INSERT INTO <topic>`: rows become Kafka records, produced through the
//! broker's own produce path (the same validation, metrics and acks=all
//! durability a Kafka producer gets), so Kafka consumers see them.
//!
//! Which columns count:
//! - `partition`: the target partition; when NULL or omitted, Kafka's
//!   default partitioner picks it (murmur2 of the key, as the Java client
//!   does), and rows without a key go round-robin.
//! - `timestamp`: the record's CreateTime; when NULL or omitted, now. A topic
//!   with `message.timestamp.type=LogAppendTime` overrides it, as for Kafka.
//! - `key` / `value` (bytea), or `key_text` / `value_text` when the bytes
//!   column is NULL; `headers`.
//! - `offset` and `timestamp_type` are assigned by the log and ignored, so
//!   `INSERT INTO copy SELECT * FROM original` works.
//!
//! An INSERT is not atomic: like a Kafka producer without transactions,
//! rows already appended stay if a later batch fails.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use arrow::array::ArrayRef;
use arrow::array::{
    Array, AsArray, BinaryArray, Int32Array, ListArray, RecordBatch, StringArray, StructArray,
    TimestampMillisecondArray,
};
use arrow::datatypes::{
    DataType, Field, Float64Type, Int32Type, Int64Type, Schema, SchemaRef, TimestampMillisecondType,
};
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::sink::DataSink;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType};
use futures::StreamExt;
use karnak_protocol::kafka_protocol::indexmap::IndexMap;
use karnak_protocol::kafka_protocol::protocol::StrBytes;
use karnak_protocol::kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions,
};
use karnak_protocol::record_batch::plain_record;
use karnak_storage::columnar::{COL_HEADERS, COL_KEY, COL_PARTITION, COL_TIMESTAMP, COL_VALUE};
use serde_json::Value;

use crate::json::JsonColumn;
use crate::table::{COL_KEY_TEXT, COL_VALUE_TEXT};

/// A produce that failed, with the Kafka error code the broker answered.
#[derive(Debug, thiserror::Error)]
#[error("{message} (Kafka error code {code})")]
pub struct ProduceError {
    pub code: i16,
    pub message: String,
}

/// How SQL writes to a topic: the broker's produce path.
#[async_trait]
pub trait Producer: Send + Sync {
    /// Appends `records` (whole v2 batches) to one partition and returns
    /// the base offset once they are acknowledged as `acks=all` would be.
    async fn produce(
        &self,
        topic: &str,
        partition: i32,
        records: Bytes,
    ) -> Result<i64, ProduceError>;
}

/// An INSERT that cannot be carried out, with the SQLSTATE Postgres would
/// use for it (the error handler finds it under DataFusion's wrapping).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct InsertError {
    pub sqlstate: &'static str,
    pub message: String,
}

impl InsertError {
    pub fn sql(sqlstate: &'static str, message: impl Into<String>) -> DataFusionError {
        DataFusionError::External(Box::new(InsertError {
            sqlstate,
            message: message.into(),
        }))
    }

    fn from_produce(topic: &str, partition: i32, e: ProduceError) -> DataFusionError {
        let sqlstate = match e.code {
            3 => "42P01",       // UNKNOWN_TOPIC_OR_PARTITION: gone meanwhile
            10 | 18 => "54000", // MESSAGE_TOO_LARGE, RECORD_LIST_TOO_LARGE
            32 => "22008",      // INVALID_TIMESTAMP
            17 | 29 => "42501", // INVALID_TOPIC, TOPIC_AUTHORIZATION_FAILED
            56 => "58030",      // KAFKA_STORAGE_ERROR
            _ => "XX000",
        };
        Self::sql(sqlstate, format!("producing to {topic}-{partition}: {e}"))
    }
}

/// Kafka's murmur2 (the Java client's `Utils.murmur2`): the hash its
/// default partitioner uses for keyed records.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= (tail[2] as u32) << 16;
    }
    if tail.len() >= 2 {
        h ^= (tail[1] as u32) << 8;
    }
    if !tail.is_empty() {
        h ^= tail[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner gives a key.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    ((murmur2(key) & 0x7fff_ffff) as u32 % partitions.max(1) as u32) as i32
}

/// Round-robin start for keyless rows, shared by all inserts so single-row
/// INSERTs spread over the partitions too.
static NEXT_KEYLESS: AtomicU32 = AtomicU32::new(0);

/// Records per partition of one input batch are cut into Kafka batches of
/// about this many bytes (below the default `max.message.bytes`).
const TARGET_BATCH_BYTES: usize = 512 * 1024;

pub struct TopicSink {
    topic: String,
    partitions: i32,
    producer: Arc<dyn Producer>,
    /// JSON columns: rows that give them (and no `value`) get a JSON object
    /// value built from them.
    json: Arc<Vec<JsonColumn>>,
    /// The table schema with every column nullable: omitted columns arrive
    /// as NULL and are filled in here, not rejected by DataFusion.
    schema: SchemaRef,
}

impl TopicSink {
    pub fn new(
        topic: String,
        partitions: i32,
        producer: Arc<dyn Producer>,
        table: &Schema,
        json: Arc<Vec<JsonColumn>>,
    ) -> Self {
        let fields: Vec<Field> = table
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        TopicSink {
            topic,
            partitions,
            producer,
            json,
            schema: Arc::new(Schema::new(fields)),
        }
    }

    fn name(&self) -> &str {
        &self.topic
    }
}

impl fmt::Debug for TopicSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TopicSink")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl DisplayAs for TopicSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TopicSink: topic={}", self.topic)
    }
}

#[async_trait]
impl DataSink for TopicSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(
        &self,
        mut data: SendableRecordBatchStream,
        _context: &Arc<TaskContext>,
    ) -> Result<u64> {
        let mut written = 0u64;
        while let Some(batch) = data.next().await {
            let batch = batch?;
            let per_partition = self.records_by_partition(&batch)?;
            let produces = per_partition.into_iter().map(|(partition, records)| {
                let name = self.name();
                async move {
                    for chunk in encode_batches(&records)? {
                        self.producer
                            .produce(name, partition, chunk)
                            .await
                            .map_err(|e| InsertError::from_produce(name, partition, e))?;
                    }
                    Ok::<_, DataFusionError>(records.len() as u64)
                }
            });
            // Partitions are independent logs: produce to them concurrently.
            for n in futures::future::try_join_all(produces).await? {
                written += n;
            }
        }
        Ok(written)
    }
}

impl TopicSink {
    /// The rows of one input batch as Kafka records, grouped by partition.
    fn records_by_partition(&self, batch: &RecordBatch) -> Result<BTreeMap<i32, Vec<Record>>> {
        let partitions = self.partitions;
        let cols = Columns::of(batch)?;
        let json: Vec<(&str, &ArrayRef)> = self
            .json
            .iter()
            .filter_map(|c| batch.column_by_name(&c.name).map(|a| (c.field.as_str(), a)))
            .collect();
        let now = now_ms();
        let mut out: BTreeMap<i32, Vec<Record>> = BTreeMap::new();
        for row in 0..batch.num_rows() {
            let key = cols.bytes(&cols.key, &cols.key_text, row);
            let value = cols
                .bytes(&cols.value, &cols.value_text, row)
                .or_else(|| json_object(&json, row));
            let partition = match cols.partition.filter(|p| p.is_valid(row)) {
                Some(p) => {
                    let p = p.value(row);
                    if p < 0 || p >= partitions {
                        return Err(InsertError::sql(
                            "22023",
                            format!(
                                "partition {p} does not exist: topic {} has partitions 0..{}",
                                self.name(),
                                partitions - 1
                            ),
                        ));
                    }
                    p
                }
                None => match &key {
                    Some(k) => partition_for_key(k, partitions),
                    None => {
                        (NEXT_KEYLESS.fetch_add(1, Ordering::Relaxed) % partitions as u32) as i32
                    }
                },
            };
            let timestamp = cols
                .timestamp
                .filter(|t| t.is_valid(row))
                .map_or(now, |t| t.value(row));
            let headers = cols.headers(row)?;
            let records = out.entry(partition).or_default();
            // Offsets count from 0 per partition: deltas within the batch;
            // the log assigns the base.
            records.push(plain_record(
                records.len() as i64,
                timestamp,
                key,
                value,
                headers,
            ));
        }
        Ok(out)
    }
}

/// The columns an INSERT reads, found by name (DataFusion hands the sink
/// rows in the table's schema).
struct Columns<'a> {
    partition: Option<&'a Int32Array>,
    timestamp: Option<&'a TimestampMillisecondArray>,
    key: Option<&'a BinaryArray>,
    key_text: Option<&'a StringArray>,
    value: Option<&'a BinaryArray>,
    value_text: Option<&'a StringArray>,
    headers: Option<&'a ListArray>,
}

impl<'a> Columns<'a> {
    fn of(batch: &'a RecordBatch) -> Result<Self> {
        let col = |name: &str| batch.column_by_name(name);
        Ok(Columns {
            partition: col(COL_PARTITION).and_then(|c| c.as_primitive_opt()),
            timestamp: col(COL_TIMESTAMP).and_then(|c| c.as_primitive_opt()),
            key: col(COL_KEY).and_then(|c| c.as_binary_opt()),
            key_text: col(COL_KEY_TEXT).and_then(|c| c.as_string_opt()),
            value: col(COL_VALUE).and_then(|c| c.as_binary_opt()),
            value_text: col(COL_VALUE_TEXT).and_then(|c| c.as_string_opt()),
            headers: col(COL_HEADERS).and_then(|c| c.as_list_opt()),
        })
    }

    /// The bytes column if set, else the text column's UTF-8, else NULL.
    fn bytes(
        &self,
        bin: &Option<&BinaryArray>,
        text: &Option<&StringArray>,
        row: usize,
    ) -> Option<Bytes> {
        if let Some(b) = bin.filter(|b| b.is_valid(row)) {
            return Some(Bytes::copy_from_slice(b.value(row)));
        }
        text.filter(|t| t.is_valid(row))
            .map(|t| Bytes::copy_from_slice(t.value(row).as_bytes()))
    }

    fn headers(&self, row: usize) -> Result<IndexMap<StrBytes, Option<Bytes>>> {
        let mut out = IndexMap::new();
        let Some(list) = self.headers.filter(|h| h.is_valid(row)) else {
            return Ok(out);
        };
        let entries = list.value(row);
        let Some(entries) = entries.as_any().downcast_ref::<StructArray>() else {
            return Err(InsertError::sql(
                "42804",
                "headers must be a list of {key, value} structs",
            ));
        };
        let keys = entries
            .column_by_name("key")
            .and_then(|c| c.as_string_opt::<i32>());
        let values = entries
            .column_by_name("value")
            .and_then(|c| c.as_binary_opt::<i32>());
        let Some(keys) = keys else {
            return Err(InsertError::sql(
                "42804",
                "headers must be a list of {key text, value bytea} structs",
            ));
        };
        for i in 0..entries.len() {
            if !entries.is_valid(i) || !keys.is_valid(i) {
                return Err(InsertError::sql("23502", "a header key is NULL"));
            }
            let v = values
                .filter(|v| v.is_valid(i))
                .map(|v| Bytes::copy_from_slice(v.value(i)));
            out.insert(StrBytes::from_string(keys.value(i).to_string()), v);
        }
        Ok(out)
    }
}

/// The row's JSON columns as a JSON object value, if any is set.
fn json_object(cols: &[(&str, &ArrayRef)], row: usize) -> Option<Bytes> {
    let mut obj = serde_json::Map::new();
    for (field, array) in cols {
        if array.is_null(row) {
            continue;
        }
        let v = match array.data_type() {
            DataType::Boolean => Value::from(array.as_boolean().value(row)),
            DataType::Int32 => Value::from(array.as_primitive::<Int32Type>().value(row)),
            DataType::Int64 => Value::from(array.as_primitive::<Int64Type>().value(row)),
            DataType::Float64 => Value::from(array.as_primitive::<Float64Type>().value(row)),
            DataType::Timestamp(_, _) => {
                // As RFC 3339 text, which the column reads back.
                let ms = array.as_primitive::<TimestampMillisecondType>().value(row);
                match arrow::temporal_conversions::timestamp_ms_to_datetime(ms) {
                    Some(t) => Value::from(t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()),
                    None => Value::from(ms),
                }
            }
            _ => match array.as_string_opt::<i32>() {
                Some(a) => Value::from(a.value(row)),
                None => continue,
            },
        };
        obj.insert((*field).to_string(), v);
    }
    (!obj.is_empty()).then(|| Bytes::from(Value::Object(obj).to_string()))
}

/// Encodes records as uncompressed v2 batches of about
/// `TARGET_BATCH_BYTES` each (a single bigger record gets its own batch;
/// the produce path then applies `max.message.bytes`).
fn encode_batches(records: &[Record]) -> Result<Vec<Bytes>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut size = 0usize;
    for (i, r) in records.iter().enumerate() {
        let rsize = 32
            + r.key.as_ref().map_or(0, |k| k.len())
            + r.value.as_ref().map_or(0, |v| v.len())
            + r.headers
                .iter()
                .map(|(k, v)| k.len() + v.as_ref().map_or(0, |v| v.len()) + 8)
                .sum::<usize>();
        if i > start && size + rsize > TARGET_BATCH_BYTES {
            out.push(encode(&records[start..i])?);
            start = i;
            size = 0;
        }
        size += rsize;
    }
    if start < records.len() {
        out.push(encode(&records[start..])?);
    }
    Ok(out)
}

fn encode(records: &[Record]) -> Result<Bytes> {
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| DataFusionError::Execution(format!("encoding a record batch: {e:#}")))?;
    Ok(buf.freeze())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka() {
        // Values from Kafka's own test of Utils.murmur2.
        assert_eq!(murmur2(b"21"), -973932308);
        assert_eq!(murmur2(b"foobar"), -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58897971
        );
        assert_eq!(murmur2(b"abc"), 479470107);
    }

    #[test]
    fn partition_for_key_is_in_range_and_stable() {
        for n in [1, 3, 7, 64] {
            for k in 0..200u32 {
                let key = k.to_be_bytes();
                let p = partition_for_key(&key, n);
                assert!((0..n).contains(&p));
                assert_eq!(p, partition_for_key(&key, n));
            }
        }
    }

    #[test]
    fn large_inserts_are_cut_into_bounded_batches() {
        let rec = |i: usize| {
            plain_record(
                i as i64,
                1,
                Some(Bytes::from(format!("k{i}"))),
                Some(Bytes::from(vec![b'x'; 10_000])),
                Default::default(),
            )
        };
        let records: Vec<Record> = (0..200).map(rec).collect();
        let batches = encode_batches(&records).expect("encodes");
        assert!(batches.len() >= 4, "{} batches", batches.len());
        let mut total = 0;
        for b in &batches {
            assert!(b.len() <= TARGET_BATCH_BYTES + 12_000, "{}", b.len());
            let summary = karnak_protocol::record_batch::BatchIter::new(b)
                .map(|r| r.expect("valid batch").1.last_offset_delta as usize + 1)
                .sum::<usize>();
            total += summary;
        }
        assert_eq!(total, 200);
    }
}

//! The Arrow face of a partition: the records of its v2 batches as Arrow
//! `RecordBatch`es, one row per record, cut at batch boundaries. Used by the
//! SQL gateway to scan topics; decompresses all four Kafka codecs. Control
//! records (transaction markers) are not rows.
//!
//! Columns (the fixed part of every topic's table):
//! `partition int32, offset int64, timestamp timestamp(ms, UTC),
//! timestamp_type utf8, key binary, value binary,
//! headers list<struct<key utf8, value binary>>`.

use std::sync::{Arc, LazyLock};

use arrow::array::AsArray;
use arrow::array::{
    ArrayRef, BinaryBuilder, Int32Builder, Int64Builder, ListBuilder, StringBuilder, StructBuilder,
    TimestampMillisecondBuilder,
};
use arrow::datatypes::{DataType, Field, Fields, Int64Type, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use karnak_protocol::record_batch::{BatchIter, TimestampType};
use karnak_protocol::records::BatchRecords;

use crate::StorageError;
use crate::face::{Face, FaceRows};
use crate::log::Log;
use crate::log::txn_index::AbortedTxn;

pub const COL_PARTITION: &str = "partition";
pub const COL_OFFSET: &str = "offset";
pub const COL_TIMESTAMP: &str = "timestamp";
pub const COL_TIMESTAMP_TYPE: &str = "timestamp_type";
pub const COL_KEY: &str = "key";
pub const COL_VALUE: &str = "value";
pub const COL_HEADERS: &str = "headers";
/// The SQL gateway's text views of key and value: not stored, but a typed
/// value column may not take their names.
pub const COL_KEY_TEXT: &str = "key_text";
pub const COL_VALUE_TEXT: &str = "value_text";

/// Names a typed column of the value may not take (it becomes
/// `value_<name>`): the fixed columns and the text views.
pub fn reserved_names() -> Vec<&'static str> {
    vec![
        COL_PARTITION,
        COL_OFFSET,
        COL_TIMESTAMP,
        COL_TIMESTAMP_TYPE,
        COL_KEY,
        COL_VALUE,
        COL_HEADERS,
        COL_KEY_TEXT,
        COL_VALUE_TEXT,
    ]
}

fn header_fields() -> Fields {
    Fields::from(vec![
        // Never NULL in a record, but nullable so SQL-built header lists
        // (`[named_struct('key', ...)]`) cast to this type on INSERT.
        Field::new("key", DataType::Utf8, true),
        Field::new("value", DataType::Binary, true),
    ])
}

fn headers_type() -> DataType {
    DataType::List(Arc::new(Field::new(
        "item",
        DataType::Struct(header_fields()),
        true,
    )))
}

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new(COL_PARTITION, DataType::Int32, false),
        Field::new(COL_OFFSET, DataType::Int64, false),
        Field::new(
            COL_TIMESTAMP,
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new(COL_TIMESTAMP_TYPE, DataType::Utf8, false),
        Field::new(COL_KEY, DataType::Binary, true),
        Field::new(COL_VALUE, DataType::Binary, true),
        Field::new(COL_HEADERS, headers_type(), false),
    ]))
});

/// The schema of a partition's Arrow face.
pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}

/// Accumulates records into Arrow columns.
pub struct RecordsBuilder {
    partition: Int32Builder,
    offset: Int64Builder,
    timestamp: TimestampMillisecondBuilder,
    timestamp_type: StringBuilder,
    key: BinaryBuilder,
    value: BinaryBuilder,
    headers: ListBuilder<StructBuilder>,
    rows: usize,
}

impl Default for RecordsBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl RecordsBuilder {
    pub fn new() -> Self {
        let header = StructBuilder::new(
            header_fields(),
            vec![
                Box::new(StringBuilder::new()),
                Box::new(BinaryBuilder::new()),
            ],
        );
        RecordsBuilder {
            partition: Int32Builder::new(),
            offset: Int64Builder::new(),
            timestamp: TimestampMillisecondBuilder::new().with_timezone("UTC"),
            timestamp_type: StringBuilder::new(),
            key: BinaryBuilder::new(),
            value: BinaryBuilder::new(),
            headers: ListBuilder::new(header).with_field(Arc::new(Field::new(
                "item",
                DataType::Struct(header_fields()),
                true,
            ))),
            rows: 0,
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Appends the records of the whole batches in `buf` whose offsets lie
    /// in `[from, to)`, leaving out control batches and the batches of
    /// `aborted` transactions. Returns the offset after the last batch read.
    pub fn push_batches(
        &mut self,
        partition: i32,
        buf: &Bytes,
        from: i64,
        to: i64,
        aborted: &[AbortedTxn],
    ) -> Result<i64, StorageError> {
        let corrupt = |reason: String| StorageError::Corrupt {
            path: std::path::PathBuf::from(format!("partition {partition}")),
            reason,
        };
        let mut next = from;
        for item in BatchIter::new(buf) {
            let (pos, h) = item.map_err(|e| corrupt(e.to_string()))?;
            next = next.max(h.next_offset());
            if h.is_control() || h.next_offset() <= from || h.base_offset >= to {
                continue;
            }
            if h.is_transactional()
                && aborted.iter().any(|a| {
                    a.producer_id == h.producer_id
                        && (a.first_offset..=a.last_offset).contains(&h.base_offset)
                })
            {
                continue;
            }
            let set = BatchRecords::decode(&buf[pos..pos + h.total_size()], &h)
                .map_err(|e| corrupt(e.to_string()))?;
            // LogAppendTime: every record carries the broker's time, which
            // the batch header holds (the records keep the producer's).
            let append_time =
                (h.timestamp_type() == TimestampType::LogAppendTime).then_some(h.max_timestamp);
            let ts_type = match h.timestamp_type() {
                TimestampType::LogAppendTime => "LogAppendTime",
                TimestampType::CreateTime => "CreateTime",
            };
            for r in &set.records {
                let offset = set.offset(r);
                if offset < from || offset >= to {
                    continue;
                }
                self.partition.append_value(partition);
                self.offset.append_value(offset);
                self.timestamp
                    .append_value(append_time.unwrap_or_else(|| set.timestamp(r)));
                self.timestamp_type.append_value(ts_type);
                self.key.append_option(set.key(r));
                self.value.append_option(set.value(r));
                let hb = self.headers.values();
                for (k, v) in set.headers(r) {
                    hb.field_builder::<StringBuilder>(0)
                        .ok_or_else(|| corrupt("header builder".into()))?
                        .append_value(String::from_utf8_lossy(k));
                    hb.field_builder::<BinaryBuilder>(1)
                        .ok_or_else(|| corrupt("header builder".into()))?
                        .append_option(v);
                    hb.append(true);
                }
                self.headers.append(true);
                self.rows += 1;
            }
        }
        Ok(next)
    }

    /// The rows so far as one `RecordBatch`; the builder starts empty again.
    pub fn finish(&mut self) -> RecordBatch {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.partition.finish()),
            Arc::new(self.offset.finish()),
            Arc::new(self.timestamp.finish()),
            Arc::new(self.timestamp_type.finish()),
            Arc::new(self.key.finish()),
            Arc::new(self.value.finish()),
            Arc::new(self.headers.finish()),
        ];
        self.rows = 0;
        // The builders produce exactly the schema's types.
        RecordBatch::try_new(schema(), columns).unwrap_or_else(|_| RecordBatch::new_empty(schema()))
    }
}

/// Reads a partition's records in `[from, to)` as Arrow batches of about
/// `rows` rows (fixed columns): from the face where a sealed segment has
/// one, else decoding the log in chunks of `chunk_bytes`. Blocking file
/// I/O: call from a blocking context.
pub struct PartitionScan {
    log: Arc<Log>,
    next: i64,
    end: i64,
    chunk_bytes: usize,
    rows: usize,
    use_faces: bool,
    /// Aborted transactions in the range: their batches are never rows.
    aborted: Vec<AbortedTxn>,
    /// The face being read, and the offset after its segment.
    reading: Option<(FaceRows, i64)>,
}

impl PartitionScan {
    pub fn new(log: Arc<Log>, from: i64, end: i64, rows: usize, chunk_bytes: usize) -> Self {
        let from = from.max(log.log_start_offset());
        let aborted = log.aborted_txns(from, end);
        PartitionScan {
            aborted,
            log,
            next: from,
            end,
            chunk_bytes: chunk_bytes.max(64 << 10),
            rows: rows.max(1),
            use_faces: true,
            reading: None,
        }
    }

    /// Decode the log even where an Arrow face exists (to build one, or to
    /// compare).
    pub fn from_log_only(mut self) -> Self {
        self.use_faces = false;
        self
    }

    /// The offset the next read starts from.
    pub fn position(&self) -> i64 {
        self.next
    }

    /// The face covering the next offset, if any.
    fn face(&self) -> Option<Arc<Face>> {
        if !self.use_faces {
            return None;
        }
        let seg = self.log.segment_for(self.next)?;
        let face = seg.face()?;
        // Faces are built once every transaction in them is decided; should
        // an abort still fall inside one, the log is read instead.
        let aborted_inside = self
            .aborted
            .iter()
            .any(|a| a.last_offset >= seg.base_offset && a.first_offset < face.next_offset());
        (self.next < face.next_offset() && !aborted_inside).then_some(face)
    }

    /// The next batch of rows, or None at the end of the range.
    pub fn next_batch(&mut self) -> Result<Option<RecordBatch>, StorageError> {
        use std::os::unix::fs::FileExt;
        let partition = self.log.partition();
        let mut b = RecordsBuilder::new();
        while self.next < self.end && b.rows() < self.rows {
            if self.reading.is_some() {
                // Retention or DeleteRecords moved the start past what the
                // face still holds: go on from the new start, as from the log.
                let start = self.log.log_start_offset();
                if start > self.next {
                    self.reading = None;
                    self.next = start;
                    continue;
                }
            }
            if let Some((rows, face_next)) = &mut self.reading {
                match rows.next() {
                    Some(Ok(batch)) => {
                        let offsets = batch.column(1).as_primitive::<Int64Type>();
                        if let Some(&last) = offsets.values().last() {
                            self.next = self.next.max(last + 1);
                        }
                        return Ok(Some(batch));
                    }
                    Some(Err(e)) => {
                        self.reading = None;
                        return Err(e);
                    }
                    None => {
                        self.next = self.next.max(*face_next);
                        self.reading = None;
                        continue;
                    }
                }
            }
            if let Some(face) = self.face() {
                if b.rows() > 0 {
                    // Hand over what the log gave first; the face is next.
                    break;
                }
                self.reading = Some((
                    face.rows(self.next, self.end, self.rows)?,
                    face.next_offset(),
                ));
                continue;
            }
            let read = match self.log.read(self.next, self.chunk_bytes, true) {
                Ok(r) => r,
                // Retention removed what we were about to read: go on from
                // the new start, as a consumer would.
                Err(StorageError::OffsetOutOfRange {
                    log_start_offset, ..
                }) if log_start_offset > self.next => {
                    self.next = log_start_offset;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let Some(slice) = read.slice else { break };
            let mut buf = vec![0u8; slice.len];
            slice
                .file
                .read_exact_at(&mut buf, slice.position)
                .map_err(|source| StorageError::Io {
                    context: format!("reading {} for a scan", self.log.dir().display()),
                    source,
                })?;
            let after = b.push_batches(
                partition,
                &Bytes::from(buf),
                self.next,
                self.end,
                &self.aborted,
            )?;
            if after <= self.next {
                break;
            }
            self.next = after;
        }
        if b.rows() == 0 {
            // The range is done, or nothing readable is left before its end.
            self.next = self.end;
            return Ok(None);
        }
        Ok(Some(b.finish()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::Int64Type;
    use karnak_protocol::kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions,
    };

    fn batch(base: i64, n: i64, compression: Compression) -> Bytes {
        let recs: Vec<Record> = (0..n)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: karnak_protocol::kafka_protocol::records::TimestampType::Creation,
                offset: base + i,
                sequence: -1,
                timestamp: 1_000 + i,
                key: (i % 2 == 0).then(|| Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(format!("v{}", base + i))),
                headers: [(
                    karnak_protocol::kafka_protocol::protocol::StrBytes::from_static_str("h"),
                    Some(Bytes::from_static(b"x")),
                )]
                .into_iter()
                .collect(),
            })
            .collect();
        let mut buf = bytes::BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &recs,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .unwrap();
        buf.freeze()
    }

    #[test]
    fn every_codec_decodes_to_rows_in_range() {
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let mut all = bytes::BytesMut::new();
            all.extend_from_slice(&batch(0, 5, c));
            all.extend_from_slice(&batch(5, 5, c));
            let all = all.freeze();
            let mut b = RecordsBuilder::new();
            let next = b.push_batches(3, &all, 2, 8, &[]).unwrap();
            assert_eq!(next, 10, "{c:?}");
            let rb = b.finish();
            assert_eq!(rb.num_rows(), 6, "{c:?}");
            let offs = rb.column(1).as_primitive::<Int64Type>();
            assert_eq!(offs.values().to_vec(), vec![2, 3, 4, 5, 6, 7]);
            let keys = rb.column(4).as_binary::<i32>();
            assert!(keys.is_null(1) && !keys.is_null(0));
            assert_eq!(rb.column(6).len(), 6);
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let good = batch(0, 3, Compression::None);
        for n in [1, 20, 61, good.len() - 1] {
            let mut b = RecordsBuilder::new();
            assert!(
                b.push_batches(0, &good.slice(..n), 0, 10, &[]).is_err(),
                "{n}"
            );
        }
    }
}

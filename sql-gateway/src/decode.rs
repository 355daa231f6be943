//! Rows one query decodes from a partition's log itself (what neither a
//! face nor the tail cache holds), and the columns every source derives
//! from the record: key_text / value_text and the JSON columns.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BinaryArray, RecordBatch, StringArray, new_null_array};
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use karnak_storage::Log;
use karnak_storage::columnar::{self, PartitionScan};

use crate::json::JsonColumn;
use crate::table::{SCAN_CHUNK_BYTES, SCAN_ROWS};

/// One Kafka partition's share of a scan.
pub(crate) struct PartitionReader {
    pub(crate) log: Arc<Log>,
    pub(crate) start: i64,
    pub(crate) end: i64,
    /// Whether key_text / value_text are wanted (else left null: the
    /// projection drops them).
    pub(crate) text: (bool, bool),
    pub(crate) json: Arc<Vec<JsonColumn>>,
    pub(crate) json_wanted: Arc<Vec<bool>>,
    pub(crate) schema: SchemaRef,
}

impl std::fmt::Debug for PartitionReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionReader")
            .field("partition", &self.log.partition())
            .field("start", &self.start)
            .field("end", &self.end)
            .finish()
    }
}

impl PartitionStream for PartitionReader {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        // File reads block: a blocking thread fills a small channel, so a
        // client that stops reading (or a LIMIT) stops the scan.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<RecordBatch>>(2);
        let mut scan = PartitionScan::new(
            self.log.clone(),
            self.start,
            self.end,
            SCAN_ROWS,
            SCAN_CHUNK_BYTES,
        );
        let (text, schema) = (self.text, self.schema.clone());
        let (json, json_wanted) = (self.json.clone(), self.json_wanted.clone());
        karnak_storage::blocking::spawn(move || {
            loop {
                let item = match scan.next_batch() {
                    Ok(None) => return,
                    Ok(Some(b)) => derived_columns(b, &schema, text, &json, &json_wanted),
                    Err(e) => Err(DataFusionError::External(Box::new(e))),
                };
                let stop = item.is_err();
                if tx.blocking_send(item).is_err() || stop {
                    return;
                }
            }
        });
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}

/// key_text / value_text: the key's and value's bytes as text where they
/// are UTF-8, or all NULL when the query does not read them.
fn text_columns(b: &RecordBatch, text: (bool, bool)) -> [ArrayRef; 2] {
    let n = b.num_rows();
    let as_text = |name: &str, wanted: bool| -> ArrayRef {
        let col = b.column_by_name(name);
        match (
            wanted,
            col.and_then(|c| c.as_any().downcast_ref::<BinaryArray>()),
        ) {
            (true, Some(bin)) => Arc::new(
                bin.iter()
                    .map(|v| v.and_then(|v| std::str::from_utf8(v).ok()))
                    .collect::<StringArray>(),
            ),
            _ => new_null_array(&DataType::Utf8, n),
        }
    };
    [
        as_text(columnar::COL_KEY, text.0),
        as_text(columnar::COL_VALUE, text.1),
    ]
}

/// A cached tail batch (the fixed columns, then the JSON ones) as a batch
/// of the table: key_text / value_text between them.
pub(crate) fn table_batch(
    b: RecordBatch,
    schema: &SchemaRef,
    text: (bool, bool),
) -> Result<RecordBatch> {
    let fixed = columnar::schema().fields().len();
    let (head, json) = b.columns().split_at_checked(fixed).ok_or_else(|| {
        DataFusionError::Internal(format!("a batch of {} columns", b.num_columns()))
    })?;
    let mut cols: Vec<ArrayRef> = head.to_vec();
    cols.extend(text_columns(&b, text));
    cols.extend(json.iter().cloned());
    Ok(RecordBatch::try_new(schema.clone(), cols)?)
}

/// Adds key_text / value_text and the JSON columns, computing only those
/// the query reads.
pub(crate) fn derived_columns(
    b: RecordBatch,
    schema: &SchemaRef,
    text: (bool, bool),
    json: &[JsonColumn],
    json_wanted: &[bool],
) -> Result<RecordBatch> {
    let decoded = crate::tail::with_json(b, &crate::tail::cached_schema(json), json, json_wanted)?;
    table_batch(decoded, schema, text)
}

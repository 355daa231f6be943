//! Reading a face's fixed columns in offset order, for scans that are not
//! DataFusion's (the gateway reads faces with DataFusion's Parquet scan).

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};

use super::Face;
use crate::error::StorageError;

/// The rows of a face with offsets in `[from, to)`, in batches of at most
/// `rows`, fixed columns only.
pub struct FaceRows {
    reader: Option<ParquetRecordBatchReader>,
    from: i64,
    to: i64,
    path: std::path::PathBuf,
}

impl Face {
    /// Rows from the row group holding `from` on; `to` ends the walk.
    pub fn rows(&self, from: i64, to: i64, rows: usize) -> Result<FaceRows, StorageError> {
        let first = self
            .firsts
            .partition_point(|&f| f <= from)
            .saturating_sub(1);
        let groups: Vec<usize> = (first..self.firsts.len())
            .take_while(|&i| self.firsts[i] < to)
            .collect();
        let fixed = crate::columnar::schema().fields().len();
        let reader = if groups.is_empty() || from >= self.next_offset() {
            None
        } else {
            let mask = ProjectionMask::roots(
                self.metadata.metadata().file_metadata().schema_descr(),
                0..fixed,
            );
            let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(
                self.data.clone(),
                self.metadata.clone(),
            )
            .with_row_groups(groups)
            .with_projection(mask)
            .with_batch_size(rows.max(1))
            .build()
            .map_err(|e| StorageError::Corrupt {
                path: self.path.clone(),
                reason: format!("reading: {e}"),
            })?;
            Some(reader)
        };
        Ok(FaceRows {
            reader,
            from,
            to,
            path: self.path.clone(),
        })
    }
}

impl Iterator for FaceRows {
    type Item = Result<RecordBatch, StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let batch = match self.reader.as_mut()?.next()? {
                Ok(b) => b,
                Err(e) => {
                    self.reader = None;
                    return Some(Err(StorageError::Corrupt {
                        path: self.path.clone(),
                        reason: format!("reading: {e}"),
                    }));
                }
            };
            let Some(offsets) = batch.column(1).as_primitive_opt::<Int64Type>() else {
                self.reader = None;
                return Some(Err(StorageError::Corrupt {
                    path: self.path.clone(),
                    reason: "the offset column is not int64".into(),
                }));
            };
            let values = offsets.values();
            let lo = values.partition_point(|&o| o < self.from);
            let hi = values.partition_point(|&o| o < self.to);
            if hi < values.len() {
                // Past the range: nothing after this batch is wanted.
                self.reader = None;
            }
            if lo < hi {
                return Some(Ok(batch.slice(lo, hi - lo)));
            }
            self.reader.as_ref()?;
        }
    }
}

impl Face {
    /// Every row and column of the face, in batches of 8 Ki rows.
    pub fn batches(&self) -> Result<Vec<RecordBatch>, StorageError> {
        let corrupt = |e: parquet::errors::ParquetError| StorageError::Corrupt {
            path: self.path.clone(),
            reason: format!("reading: {e}"),
        };
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(
            self.data.clone(),
            self.metadata.clone(),
        )
        .build()
        .map_err(corrupt)?;
        reader.map(|b| b.map_err(|e| corrupt(e.into()))).collect()
    }
}

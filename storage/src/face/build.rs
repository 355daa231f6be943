//! Writing a face: the segment decoded once more (twice for inferred JSON:
//! the fields first, then the rows), typed columns decoded from the values,
//! Parquet written to a temporary file and renamed, then its record.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use super::{FORMAT_VERSION, Manifest, ROW_GROUP_ROWS, ValueFormat, manifest_path, parquet_path};
use crate::columnar::{self, COL_VALUE, PartitionScan};
use crate::error::{IoContext, StorageError};
use crate::log::Log;
use crate::segment::LogSegment;
use crate::value_format::json::{self, JsonColumn};

/// Rows per batch handed to the writer.
const BUILD_ROWS: usize = 8192;
/// How much of the `.log` is read at a time.
const BUILD_CHUNK_BYTES: usize = 1 << 20;

fn tmp(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".tmp");
    PathBuf::from(p)
}

/// Writes `<base>.parquet` and then `<base>.face` for `seg`.
pub(super) fn write(
    log: &Arc<Log>,
    seg: &LogSegment,
    format: &ValueFormat,
) -> Result<(), StorageError> {
    let (dir, base, next) = (log.dir(), seg.base_offset, seg.next_offset());
    let log_bytes = seg.size();
    let (columns, dropped_fields) = typed_columns(log, base, next, format)?;
    let path = parquet_path(dir, base);
    let ptmp = tmp(&path);
    let written = write_parquet(log, &ptmp, base, next, &columns, format);
    let (parquet_bytes, crc32c, rows) = match written {
        Ok(w) => w,
        Err(e) => {
            let _ = std::fs::remove_file(&ptmp);
            return Err(e);
        }
    };
    std::fs::rename(&ptmp, &path).ctx(|| format!("renaming {} into place", ptmp.display()))?;
    let manifest = Manifest {
        version: FORMAT_VERSION,
        base_offset: base,
        next_offset: next,
        log_bytes,
        parquet_bytes,
        crc32c,
        rows,
        value_format: format.clone(),
        dropped_fields,
    };
    let mpath = manifest_path(dir, base);
    let mtmp = tmp(&mpath);
    let committed = (|| {
        let mut f = File::create(&mtmp).ctx(|| format!("creating {}", mtmp.display()))?;
        f.write_all(manifest.encode().as_bytes())
            .and_then(|()| f.sync_all())
            .ctx(|| format!("writing {}", mtmp.display()))?;
        std::fs::rename(&mtmp, &mpath).ctx(|| format!("renaming {} into place", mtmp.display()))
    })();
    if committed.is_err() {
        let _ = std::fs::remove_file(&mtmp);
    }
    committed
}

/// The typed columns of the face, and how many fields inference left out.
fn typed_columns(
    log: &Arc<Log>,
    base: i64,
    next: i64,
    format: &ValueFormat,
) -> Result<(Vec<JsonColumn>, usize), StorageError> {
    let reserved = columnar::reserved_names();
    match format {
        ValueFormat::Raw => Ok((Vec::new(), 0)),
        ValueFormat::Json {
            declared: Some(text),
        } => {
            // Checked by ValueFormat::from_configs; an error here is a bug
            // caught as a failed face, not a wrong one.
            let fields = json::parse_declared(text).map_err(|reason| StorageError::Corrupt {
                path: log.dir().to_path_buf(),
                reason: format!("declared schema: {reason}"),
            })?;
            Ok((json::columns(fields, &reserved), 0))
        }
        ValueFormat::Json { declared: None } => {
            let mut inferrer = json::Inferrer::default();
            let mut scan =
                PartitionScan::new(log.clone(), base, next, BUILD_ROWS, BUILD_CHUNK_BYTES)
                    .from_log_only();
            while let Some(batch) = scan.next_batch()? {
                if let Some(values) = batch
                    .column_by_name(COL_VALUE)
                    .and_then(|c| c.as_binary_opt::<i32>())
                {
                    values.iter().flatten().for_each(|v| inferrer.add(v));
                }
            }
            let inferred = inferrer.finish();
            Ok((json::columns(inferred.fields, &reserved), inferred.dropped))
        }
    }
}

/// The face's schema: the fixed columns, then the typed ones (nullable:
/// a value without the field, or not JSON, is NULL).
pub fn face_schema(columns: &[JsonColumn]) -> SchemaRef {
    let fixed = columnar::schema();
    let mut fields: Vec<Field> = fixed.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.extend(
        columns
            .iter()
            .map(|c| Field::new(&c.name, c.data_type.clone(), true)),
    );
    Arc::new(Schema::new(fields))
}

fn properties(format: &ValueFormat) -> WriterProperties {
    let format_name = match format {
        ValueFormat::Raw => "raw",
        ValueFormat::Json { .. } => "json",
    };
    // ZSTD level 1 throughout: the smallest faces of the candidates measured
    // (benches face-format), decompressing at memory speed.
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_statistics_enabled(EnabledStatistics::Page)
        // Values are rarely repeated: a dictionary is built and abandoned.
        .set_column_dictionary_enabled(ColumnPath::from(COL_VALUE), false)
        .set_created_by(format!("karnak {}", env!("CARGO_PKG_VERSION")))
        .set_key_value_metadata(Some(vec![parquet::file::metadata::KeyValue::new(
            "karnak.value.format".into(),
            format_name.to_string(),
        )]))
        .build()
}

/// Counts and checksums what goes to the file.
struct Summed<W> {
    inner: W,
    bytes: u64,
    crc: u32,
}

impl<W: Write> Write for Summed<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc = crc32c::crc32c_append(self.crc, &buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes the Parquet file; returns its length, CRC32C and rows.
fn write_parquet(
    log: &Arc<Log>,
    path: &Path,
    base: i64,
    next: i64,
    columns: &[JsonColumn],
    format: &ValueFormat,
) -> Result<(u64, u32, u64), StorageError> {
    // The writer's failures are the file system's (a full disk, EIO), or a
    // batch not of the schema (a bug): both fail the build.
    let io = |e: parquet::errors::ParquetError| {
        let source = match e {
            parquet::errors::ParquetError::External(b) => match b.downcast::<std::io::Error>() {
                Ok(io) => *io,
                Err(other) => std::io::Error::other(other),
            },
            other => std::io::Error::other(other),
        };
        StorageError::io(format!("writing the face {}", path.display()), source)
    };
    let file = File::create(path).ctx(|| format!("creating {}", path.display()))?;
    let out = Summed {
        inner: BufWriter::with_capacity(1 << 20, file),
        bytes: 0,
        crc: 0,
    };
    let schema = face_schema(columns);
    let mut writer =
        ArrowWriter::try_new(out, schema.clone(), Some(properties(format))).map_err(io)?;
    let wanted = vec![true; columns.len()];
    let mut scan =
        PartitionScan::new(log.clone(), base, next, BUILD_ROWS, BUILD_CHUNK_BYTES).from_log_only();
    let mut rows = 0u64;
    while let Some(batch) = scan.next_batch()? {
        if batch.num_rows() == 0 {
            continue;
        }
        rows += batch.num_rows() as u64;
        let mut cols: Vec<ArrayRef> = batch.columns().to_vec();
        if !columns.is_empty() {
            match batch
                .column_by_name(COL_VALUE)
                .and_then(|c| c.as_binary_opt::<i32>())
            {
                Some(values) => cols.extend(json::decode(values, columns, &wanted)),
                None => cols.extend(
                    columns
                        .iter()
                        .map(|c| arrow::array::new_null_array(&c.data_type, batch.num_rows())),
                ),
            }
        }
        let batch = RecordBatch::try_new(schema.clone(), cols)
            .map_err(|e| io(parquet::errors::ParquetError::ArrowError(e.to_string())))?;
        writer.write(&batch).map_err(io)?;
    }
    let out = writer.into_inner().map_err(io)?;
    let Summed {
        mut inner,
        bytes,
        crc,
    } = out;
    inner
        .flush()
        .ctx(|| format!("writing {}", path.display()))?;
    let file = inner
        .into_inner()
        .map_err(|e| StorageError::io(format!("writing {}", path.display()), e.into_error()))?;
    file.sync_all()
        .ctx(|| format!("fsync {}", path.display()))?;
    Ok((bytes, crc, rows))
}

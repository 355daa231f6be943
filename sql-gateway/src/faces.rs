//! Sealed segments read through their faces (`karnak_storage::face`) with
//! DataFusion's own Parquet scan: row groups and pages pruned on their
//! statistics, only the projected columns decoded, filters evaluated while
//! decoding so the other columns (the value's bytes above all) are only
//! decoded for matching rows. The files are read from the faces' memory
//! maps, their metadata parsed once when the face was opened.

use std::ops::Range;
use std::sync::Arc;

use arrow::datatypes::{DataType, SchemaRef};
use bytes::Bytes;
use datafusion::common::stats::Precision;
use datafusion::common::{DataFusionError, Result, Statistics};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{
    FileGroup, FileScanConfigBuilder, ParquetFileMetrics, ParquetFileReaderFactory, ParquetSource,
};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::parquet::arrow::arrow_reader::ArrowReaderOptions;
use datafusion::parquet::arrow::async_reader::AsyncFileReader;
use datafusion::parquet::errors::ParquetError;
use datafusion::parquet::file::metadata::ParquetMetaData;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{Column, TryCastExpr};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use datafusion::physical_plan::projection::ProjectionExec;
use futures::future::BoxFuture;
use karnak_storage::columnar::{COL_KEY, COL_KEY_TEXT, COL_VALUE, COL_VALUE_TEXT};
use karnak_storage::face::{Face, ValueFormat, face_schema};
use karnak_storage::value_format::json::JsonColumn;

/// Faces scanned per DataFusion partition at most: a few per core keeps
/// both cores busy without one partition per segment.
const FACES_PER_GROUP: usize = 8;

/// Whether `face` can stand in for its segment's records in a table with
/// `json` columns under `format`: built for the same value format, holding
/// each JSON column with the table's type or (when inferred, and no field
/// was left out) lacking it because the segment never had that field.
/// Otherwise the segment is read from the log.
pub(crate) fn usable(face: &Face, format: &ValueFormat, json: &[JsonColumn]) -> bool {
    let manifest = face.manifest();
    if &manifest.value_format != format {
        return false;
    }
    let schema = face.metadata().schema();
    json.iter().all(|c| match schema.field_with_name(&c.name) {
        Ok(f) => f.data_type() == &c.data_type,
        Err(_) => manifest.dropped_fields == 0,
    })
}

/// A scan of `faces` producing the table's `projection` of `table_schema`
/// (key_text / value_text computed from key / value).
pub(crate) fn scan(
    faces: Vec<Arc<Face>>,
    table_schema: &SchemaRef,
    json: &[JsonColumn],
    projection: Option<&Vec<usize>>,
    limit: Option<usize>,
) -> Result<Arc<dyn ExecutionPlan>> {
    // The columns a face holds in the table's terms (a face lacking a JSON
    // column reads NULL).
    let file_schema = face_schema(json);
    let wanted: Vec<usize> = match projection {
        Some(p) => p.clone(),
        None => (0..table_schema.fields().len()).collect(),
    };
    // The file columns the projection needs, in file order.
    let mut file_cols: Vec<usize> = Vec::new();
    let mut need = |name: &str| -> Result<()> {
        let i = file_schema.index_of(name)?;
        if !file_cols.contains(&i) {
            file_cols.push(i);
        }
        Ok(())
    };
    for &i in &wanted {
        match table_schema.field(i).name().as_str() {
            COL_KEY_TEXT => need(COL_KEY)?,
            COL_VALUE_TEXT => need(COL_VALUE)?,
            name => need(name)?,
        }
    }
    file_cols.sort_unstable();
    // The query's filters reach the source through DataFusion's own
    // filter pushdown (through the projection and the union above):
    // pruning, then filtering while decoding.
    let source = ParquetSource::new(file_schema.clone())
        .with_parquet_file_reader_factory(Arc::new(FaceReaderFactory))
        .with_pushdown_filters(true)
        .with_reorder_filters(true)
        .with_enable_page_index(true);
    // Row counts from the faces' footers: exact, so `count(*)` over faces
    // (and cached tails) is answered without reading a row.
    let rows: i64 = faces
        .iter()
        .map(|f| f.metadata().metadata().file_metadata().num_rows())
        .sum();
    let mut statistics = Statistics::new_unknown(&file_schema);
    statistics.num_rows = Precision::Exact(usize::try_from(rows).unwrap_or(0));
    let groups: Vec<FileGroup> = faces
        .chunks(FACES_PER_GROUP)
        .map(|chunk| FileGroup::new(chunk.iter().map(face_file).collect()))
        .collect();
    let config = FileScanConfigBuilder::new(ObjectStoreUrl::local_filesystem(), Arc::new(source))
        .with_file_groups(groups)
        .with_statistics(statistics)
        .with_limit(limit)
        .with_projection_indices(Some(file_cols.clone()))?
        .build();
    let exec: Arc<dyn ExecutionPlan> = DataSourceExec::from_data_source(config);
    // From the scanned columns to the table's projection.
    let scanned = exec.schema();
    let exprs = wanted
        .iter()
        .map(|&i| {
            let field = table_schema.field(i);
            let col = |name: &str| -> Result<Arc<dyn PhysicalExpr>> {
                Ok(Arc::new(Column::new_with_schema(name, &scanned)?))
            };
            let expr: Arc<dyn PhysicalExpr> = match field.name().as_str() {
                // Text where the bytes are UTF-8, else NULL.
                COL_KEY_TEXT => Arc::new(TryCastExpr::new(col(COL_KEY)?, DataType::Utf8)),
                COL_VALUE_TEXT => Arc::new(TryCastExpr::new(col(COL_VALUE)?, DataType::Utf8)),
                name => col(name)?,
            };
            Ok((expr, field.name().clone()))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Arc::new(ProjectionExec::try_new(exprs, exec)?))
}

/// The face as a file of the scan: its path names it in plans and
/// metrics; the reader factory finds the face itself in the extensions.
fn face_file(face: &Arc<Face>) -> PartitionedFile {
    let mut file = PartitionedFile::new(
        face.path()
            .to_string_lossy()
            .trim_start_matches('/')
            .to_string(),
        face.size_bytes() as u64,
    );
    file.extensions.insert(FaceFile(face.clone()));
    file
}

struct FaceFile(Arc<Face>);

/// Hands the Parquet scan readers over faces' memory maps.
#[derive(Debug)]
struct FaceReaderFactory;

impl ParquetFileReaderFactory for FaceReaderFactory {
    fn create_reader(
        &self,
        partition_index: usize,
        file: PartitionedFile,
        _metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> Result<Box<dyn AsyncFileReader + Send>> {
        let face = file
            .extensions
            .get::<FaceFile>()
            .map(|f| f.0.clone())
            .ok_or_else(|| {
                DataFusionError::Internal(format!(
                    "{} was planned without its face",
                    file.object_meta.location
                ))
            })?;
        let metrics =
            ParquetFileMetrics::new(partition_index, file.object_meta.location.as_ref(), metrics);
        Ok(Box::new(FaceReader { face, metrics }))
    }
}

struct FaceReader {
    face: Arc<Face>,
    metrics: ParquetFileMetrics,
}

impl AsyncFileReader for FaceReader {
    fn get_bytes(
        &mut self,
        range: Range<u64>,
    ) -> BoxFuture<'_, datafusion::parquet::errors::Result<Bytes>> {
        let data = self.face.bytes();
        let len = data.len() as u64;
        if range.start > range.end || range.end > len {
            let msg = format!(
                "range {range:?} of {} ({len} bytes)",
                self.face.path().display()
            );
            return Box::pin(async move { Err(ParquetError::EOF(msg)) });
        }
        let slice = data.slice(range.start as usize..range.end as usize);
        self.metrics.bytes_scanned.add(slice.len());
        Box::pin(async move {
            // Page faults on a cold face are disk reads: taken on a blocking
            // thread, not on the runtime's.
            karnak_storage::blocking::spawn(move || {
                touch(&slice);
                slice
            })
            .await
            .map_err(|e| ParquetError::External(Box::new(e)))
        })
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, datafusion::parquet::errors::Result<Arc<ParquetMetaData>>> {
        let metadata = self.face.metadata().metadata().clone();
        Box::pin(async move { Ok(metadata) })
    }
}

/// Reads one byte per page so the range is resident.
fn touch(b: &[u8]) {
    let mut sum = 0u8;
    for i in (0..b.len()).step_by(4096) {
        sum = sum.wrapping_add(b[i]);
    }
    std::hint::black_box(sum);
}

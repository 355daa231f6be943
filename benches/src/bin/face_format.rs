//! Which on-disk form should a segment's SQL face take (issue 21)? Builds
//! the face of one partition's records in each candidate form from the same
//! Kafka log bytes, and reports for each: build cost (the log's MB per second
//! of one core), size against the log, and the SQL bench's queries through
//! DataFusion over the file.
//!
//!   face-format --rows 2000000 --runs 5 --dir /tmp/faces
//!
//! Records are `sql_bench.py`'s (values like `{"uid": 17, "amount": 17,
//! "kind": "click"}`, timestamps 1 ms per 10 records), in uncompressed v2
//! batches of about 1 MiB, as its producer sends them. Forms:
//! - `ipc`: today's face (Arrow IPC file, fixed columns, uncompressed); the
//!   JSON query has no typed columns to read here, so it is not run;
//! - `ipc_typed[_lz4|_zstd]`: the same plus the JSON fields as typed columns,
//!   with IPC body compression;
//! - `parquet_typed_{snappy,lz4,zstd}`: Parquet with the typed columns,
//!   column statistics per row group and page, read by DataFusion's Parquet
//!   scan;
//! - `karnak_face`: the face the broker builds (`karnak_storage::face`,
//!   Parquet, ZSTD) from the same records as one sealed segment on disk,
//!   timed end to end (read, decode, type, write, check).
//!
//! Prints one JSON line per form; every form's answers must agree.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use bytes::{Bytes, BytesMut};
use datafusion::arrow::array::{ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::ipc::CompressionType;
use datafusion::arrow::ipc::writer::{FileWriter, IpcWriteOptions};
use datafusion::arrow::json::ReaderBuilder;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use karnak_protocol::kafka_protocol::records::{
    Compression as KafkaCompression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use karnak_storage::columnar::RecordsBuilder;
use karnak_storage::value_format::json;

const KINDS: [&str; 4] = ["click", "view", "buy", "share"];
/// Rows per face block / Arrow batch: the face builder's.
const BLOCK_ROWS: usize = 8192;
/// Rows per Parquet row group: a 16 MiB segment of these records holds about
/// 300 k, so five or so groups per segment to prune between.
const ROW_GROUP_ROWS: usize = 65_536;
const BATCH_BYTES: usize = 1 << 20;
const T0: i64 = 1_700_000_000_000;

struct Args {
    rows: u64,
    runs: usize,
    dir: PathBuf,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        rows: 2_000_000,
        runs: 5,
        dir: std::env::temp_dir().join("karnak-face-format"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--rows" => a.rows = v.parse()?,
            "--runs" => a.runs = v.parse()?,
            "--dir" => a.dir = v.into(),
            _ => bail!("unknown flag {flag}"),
        }
    }
    if a.rows == 0 || a.runs == 0 {
        bail!("--rows and --runs must be positive");
    }
    Ok(a)
}

/// The log: the bench's records in uncompressed v2 batches of ~1 MiB.
fn log_bytes(rows: u64) -> Result<Bytes> {
    let mut out = BytesMut::new();
    let mut recs: Vec<Record> = Vec::new();
    let mut size = 0;
    let flush = |recs: &mut Vec<Record>, out: &mut BytesMut| -> Result<()> {
        if !recs.is_empty() {
            let opts = RecordEncodeOptions {
                version: 2,
                compression: KafkaCompression::None,
            };
            RecordBatchEncoder::encode(out, recs.as_slice(), &opts)?;
            recs.clear();
        }
        Ok(())
    };
    for i in 0..rows {
        let (u, amt, k) = (i % 1000, i % 997, KINDS[(i / 7 % 4) as usize]);
        let key = Bytes::from(format!("u{u}"));
        let value = Bytes::from(format!(r#"{{"uid": {u}, "amount": {amt}, "kind": "{k}"}}"#));
        size += key.len() + value.len() + 16;
        recs.push(Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // Offsets and sequences advance together, or the encoder cuts a
            // batch per record.
            sequence: i as i32,
            timestamp: T0 + (i / 10) as i64,
            key: Some(key),
            value: Some(value),
            headers: Default::default(),
        });
        if size >= BATCH_BYTES {
            flush(&mut recs, &mut out)?;
            size = 0;
        }
    }
    flush(&mut recs, &mut out)?;
    Ok(out.freeze())
}

fn json_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("uid", DataType::Int64, true),
        Field::new("amount", DataType::Int64, true),
        Field::new("kind", DataType::Utf8, true),
    ]))
}

/// Kafka batches to the face's fixed columns, in blocks of `BLOCK_ROWS`
/// (the face builder's decode, one partition).
fn decode(log: &Bytes) -> Result<Vec<RecordBatch>> {
    let mut b = RecordsBuilder::new();
    b.push_batches(0, log, 0, i64::MAX, &[])?;
    let all = b.finish();
    let mut out = Vec::new();
    let mut at = 0;
    while at < all.num_rows() {
        let n = BLOCK_ROWS.min(all.num_rows() - at);
        out.push(all.slice(at, n));
        at += n;
    }
    Ok(out)
}

/// The JSON values of a block as typed columns with arrow-json's decoder
/// (values fed as one newline-separated stream): the alternative to
/// Karnak's own, timed beside it.
fn arrow_json(block: &RecordBatch) -> Result<RecordBatch> {
    let values = block
        .column_by_name("value")
        .context("no value column")?
        .as_binary::<i32>();
    let mut decoder = ReaderBuilder::new(json_schema())
        .with_batch_size(block.num_rows())
        .with_coerce_primitive(true)
        .with_ignore_type_conflicts(true)
        .build_decoder()?;
    for v in values.iter() {
        decoder.decode(v.unwrap_or(b"{}"))?;
        decoder.decode(b"\n")?;
    }
    let fields = decoder.flush()?.context("no rows decoded")?;
    if fields.num_rows() != block.num_rows() {
        bail!(
            "{} JSON rows for {} records",
            fields.num_rows(),
            block.num_rows()
        );
    }
    Ok(fields)
}

/// A block with its JSON values as typed columns (Karnak's decoder, as the
/// face builder runs it).
fn typed(block: &RecordBatch) -> Result<RecordBatch> {
    let values = block
        .column_by_name("value")
        .context("no value column")?
        .as_binary::<i32>();
    let fields: Vec<(String, DataType)> = json_schema()
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect();
    let cols = json::columns(fields, &[]);
    let decoded = json::decode(values, &cols, &vec![true; cols.len()]);
    // The partition column is the file's, not the rows': left out.
    let mut arrays: Vec<ArrayRef> = block.columns()[1..].to_vec();
    arrays.extend(decoded);
    let mut schema_fields: Vec<Field> = block.schema().fields()[1..]
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    schema_fields.extend(json_schema().fields().iter().map(|f| f.as_ref().clone()));
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(schema_fields)),
        arrays,
    )?)
}

fn write_ipc(path: &Path, blocks: &[RecordBatch], c: Option<CompressionType>) -> Result<()> {
    let file = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let opts = IpcWriteOptions::default().try_with_compression(c)?;
    let mut w = FileWriter::try_new_with_options(file, &blocks[0].schema(), opts)?;
    for b in blocks {
        w.write(b)?;
    }
    w.finish()?;
    Ok(())
}

fn write_parquet(path: &Path, blocks: &[RecordBatch], c: Compression) -> Result<()> {
    let props = WriterProperties::builder()
        .set_compression(c)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_statistics_enabled(EnabledStatistics::Page)
        .build();
    let mut w = ArrowWriter::try_new(File::create(path)?, blocks[0].schema(), Some(props))?;
    for b in blocks {
        w.write(b)?;
    }
    w.close()?;
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = parse_args()?;
    std::fs::create_dir_all(&a.dir).with_context(|| format!("creating {}", a.dir.display()))?;
    let log = log_bytes(a.rows)?;
    let log_len = log.len() as f64;

    let t = Instant::now();
    let blocks = decode(&log)?;
    let decode_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let typed_blocks: Vec<RecordBatch> = blocks.iter().map(typed).collect::<Result<_>>()?;
    let json_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let arrow_blocks: Vec<RecordBatch> = blocks.iter().map(arrow_json).collect::<Result<_>>()?;
    let arrow_json_s = t.elapsed().as_secs_f64();
    // Both decoders must read the bench's values alike.
    for (theirs, ours) in arrow_blocks.iter().zip(&typed_blocks) {
        if theirs.columns() != &ours.columns()[ours.num_columns() - theirs.num_columns()..] {
            bail!("arrow-json and Karnak's decoder disagree");
        }
    }
    println!(
        "{}",
        serde_json::json!({"rows": a.rows, "log_bytes": log.len(),
            "decode_s": decode_s, "decode_log_mb_s": log_len / decode_s / 1e6,
            "json_s": json_s, "json_log_mb_s": log_len / json_s / 1e6,
            "arrow_json_s": arrow_json_s, "arrow_json_log_mb_s": log_len / arrow_json_s / 1e6})
    );

    let last_pct = T0 + (a.rows as i64 * 99 / 100) / 10;
    let queries = [
        ("count", "select count(*) from t".to_string()),
        (
            "json_group_by",
            "select kind, count(*), sum(amount) from t where uid < 100 group by kind".to_string(),
        ),
        (
            "time_range",
            format!(
                "select count(*), max(\"offset\") from t \
                 where timestamp >= to_timestamp_millis({last_pct})"
            ),
        ),
    ];
    type Writer<'a> = Box<dyn Fn(&Path) -> Result<()> + 'a>;
    let forms: Vec<(&str, bool, Writer<'_>)> = vec![
        ("ipc", false, Box::new(|p| write_ipc(p, &blocks, None))),
        (
            "ipc_typed",
            true,
            Box::new(|p| write_ipc(p, &typed_blocks, None)),
        ),
        (
            "ipc_typed_lz4",
            true,
            Box::new(|p| write_ipc(p, &typed_blocks, Some(CompressionType::LZ4_FRAME))),
        ),
        (
            "ipc_typed_zstd",
            true,
            Box::new(|p| write_ipc(p, &typed_blocks, Some(CompressionType::ZSTD))),
        ),
        (
            "parquet_typed_snappy",
            true,
            Box::new(|p| write_parquet(p, &typed_blocks, Compression::SNAPPY)),
        ),
        (
            "parquet_typed_lz4",
            true,
            Box::new(|p| write_parquet(p, &typed_blocks, Compression::LZ4_RAW)),
        ),
        (
            "parquet_typed_zstd",
            true,
            Box::new(|p| write_parquet(p, &typed_blocks, Compression::ZSTD(ZstdLevel::default()))),
        ),
    ];
    let mut answers: Vec<(String, Vec<String>)> = Vec::new();
    for (name, is_typed, write) in &forms {
        let parquet = name.starts_with("parquet");
        let path = a.dir.join(format!(
            "{name}.{}",
            if parquet { "parquet" } else { "arrow" }
        ));
        let t = Instant::now();
        write(&path)?;
        let write_s = t.elapsed().as_secs_f64();
        let size = std::fs::metadata(&path)?.len() as f64;
        // The whole build: decode, JSON (typed forms), write.
        let build_s = decode_s + if *is_typed { json_s } else { 0.0 } + write_s;
        let ctx = SessionContext::new();
        let p = path.to_str().context("path is not UTF-8")?;
        if parquet {
            ctx.register_parquet("t", p, ParquetReadOptions::default())
                .await?;
        } else {
            ctx.register_arrow("t", p, Default::default()).await?;
        }
        let results = run_queries(&ctx, &queries, a.runs, *is_typed, name, &mut answers).await?;
        println!(
            "{}",
            serde_json::json!({"form": name, "bytes": size as u64,
                "vs_log": size / log_len, "write_s": write_s,
                "build_log_mb_s": log_len / build_s / 1e6, "queries": results})
        );
        std::fs::remove_file(&path).ok();
    }

    // The face Karnak builds (storage::face) from a sealed segment on disk:
    // read back from the file, decoded, typed, written, then checked (its
    // CRC read once more) as the broker opens it.
    let (build_s, face) = karnak_face(&a.dir, &log)?;
    let ctx = SessionContext::new();
    let p = face.path().to_str().context("path is not UTF-8")?;
    ctx.register_parquet("t", p, ParquetReadOptions::default())
        .await?;
    let results = run_queries(&ctx, &queries, a.runs, true, "karnak_face", &mut answers).await?;
    println!(
        "{}",
        serde_json::json!({"form": "karnak_face", "bytes": face.size_bytes(),
            "vs_log": face.size_bytes() as f64 / log_len,
            "build_log_mb_s": log_len / build_s / 1e6, "queries": results})
    );
    Ok(())
}

/// Runs each query `runs` times over table `t`; every form must answer as
/// the first did.
async fn run_queries(
    ctx: &SessionContext,
    queries: &[(&str, String)],
    runs: usize,
    is_typed: bool,
    name: &str,
    answers: &mut Vec<(String, Vec<String>)>,
) -> Result<serde_json::Map<String, serde_json::Value>> {
    let mut results = serde_json::Map::new();
    for (q, sql) in queries {
        if *q == "json_group_by" && !is_typed {
            continue;
        }
        let (secs, rows) = karnak_benches::timed_query(ctx, sql, runs).await?;
        let mut answer: Vec<String> = rows.iter().map(|r| r.join("|")).collect();
        answer.sort();
        match answers.iter().find(|(n, _)| n == q) {
            Some((_, first)) if *first != answer => {
                bail!("{name}: {q} answered {answer:?}, another form {first:?}")
            }
            Some(_) => {}
            None => answers.push((q.to_string(), answer)),
        }
        results.insert(
            q.to_string(),
            serde_json::json!({"median_s": median(secs.clone()), "seconds": secs}),
        );
    }
    Ok(results)
}

/// The log as one sealed segment of a partition on disk, and the seconds
/// `karnak_storage::face::build_face` takes over it.
fn karnak_face(dir: &Path, log: &Bytes) -> Result<(f64, karnak_storage::face::Face)> {
    use karnak_protocol::record_batch::BatchIter;
    use karnak_storage::face::{ValueFormat, build_face};
    use karnak_storage::{Log, LogConfig};
    let ldir = dir.join("karnak-face-0");
    let _ = std::fs::remove_dir_all(&ldir);
    let cfg = LogConfig {
        segment_bytes: log.len() as u64 * 2 + (1 << 20),
        ..Default::default()
    };
    let l = Arc::new(Log::open(&ldir, "bench", 0, cfg)?);
    for item in BatchIter::new(log) {
        let (pos, h) = item?;
        l.append(&log.slice(pos..pos + h.total_size()), 0, None)?;
    }
    l.roll()?;
    let seg = l
        .sealed_segments()
        .first()
        .cloned()
        .context("no sealed segment")?;
    let format = ValueFormat::Json {
        declared: Some("uid bigint, amount bigint, kind text".into()),
    };
    let t = Instant::now();
    let face = build_face(&l, &seg, &format)?;
    Ok((t.elapsed().as_secs_f64(), face))
}

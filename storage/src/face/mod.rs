//! The SQL face of a sealed segment: `<base>.parquet` beside `<base>.log`,
//! the segment's records as rows in the schema of [`columnar::schema`],
//! followed by one typed column per field of the topic's value format
//! (`karnak.value.format=json`: declared in `karnak.value.schema` or
//! inferred from every value of the segment), so a query reads columns and
//! never parses a value. Parquet carries what a query planner prunes with:
//! min/max and null counts per row group and per page for every column, the
//! page index, compression per column; the gateway reads faces with
//! DataFusion's own Parquet scan.
//!
//! Written once, after the segment is sealed and every transaction in it is
//! decided (its end is at or below the last stable offset, so aborted
//! records are left out at build and a face never changes), by a background
//! task off the produce path. `<base>.face`, written after the Parquet file
//! is in place, is the commit record: it names the segment range, the
//! `.log`'s size, the value format and the Parquet file's length and
//! CRC32C. A face whose record does not match its segment, its topic's value
//! format or its bytes is rebuilt; losing both files costs only the rebuild,
//! the `.log` stays the only source of truth.

mod build;
mod footer;
mod manifest;
mod read;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::file::metadata::PageIndexPolicy;
use parquet::file::statistics::Statistics;

pub use build::face_schema;
pub use manifest::Manifest;
pub use read::FaceRows;

use crate::error::{IoContext, StorageError};
use crate::log::Log;
use crate::segment::LogSegment;
use crate::value_format::json;

/// Bumped when the file layout or schema changes: older files are rebuilt.
/// 1 was the Arrow IPC face (`<base>.arrow`).
pub const FORMAT_VERSION: u32 = 2;
/// Rows per Parquet row group, the unit of pruning on row-group statistics
/// (pages within it are pruned by the page index).
pub const ROW_GROUP_ROWS: usize = 64 * 1024;

pub fn parquet_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{base:020}.parquet"))
}

pub fn manifest_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{base:020}.face"))
}

/// The Arrow IPC face of format 1, removed wherever it is found.
pub fn legacy_arrow_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{base:020}.arrow"))
}

/// Every file a segment's face may have left, for deleting a segment.
pub fn face_files(dir: &Path, base: i64) -> [PathBuf; 3] {
    [
        manifest_path(dir, base),
        parquet_path(dir, base),
        legacy_arrow_path(dir, base),
    ]
}

/// Whether `name` is a face's file name, or a temporary one (to remove).
pub fn is_face_file(name: &str) -> Option<(i64, bool)> {
    let (stem, temporary) = if let Some(s) = name.strip_suffix(".tmp") {
        (s, true)
    } else {
        (name, false)
    };
    let stem = stem
        .strip_suffix(".parquet")
        .or_else(|| stem.strip_suffix(".face"))
        .or_else(|| stem.strip_suffix(".arrow"))?;
    stem.parse::<i64>().ok().map(|base| (base, temporary))
}

/// What a topic's values are, as far as its faces' typed columns go.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ValueFormat {
    /// Bytes: no typed columns.
    #[default]
    Raw,
    /// JSON objects: one column per top-level field, declared (the text of
    /// `karnak.value.schema`) or, when `None`, inferred per segment.
    Json { declared: Option<String> },
}

impl ValueFormat {
    /// The topic's value format from its configs. A declared schema that
    /// does not parse gives no typed columns (the gateway reports it).
    pub fn from_configs(configs: &BTreeMap<String, String>) -> ValueFormat {
        if configs.get(json::FORMAT_KEY).map(String::as_str) != Some("json") {
            return ValueFormat::Raw;
        }
        match configs
            .get(json::SCHEMA_KEY)
            .filter(|s| !s.trim().is_empty())
        {
            None => ValueFormat::Json { declared: None },
            Some(s) if json::parse_declared(s).is_ok() => ValueFormat::Json {
                declared: Some(s.clone()),
            },
            Some(_) => ValueFormat::Raw,
        }
    }
}

/// An opened, checked face: the Parquet file memory-mapped, its metadata
/// (footer and page index) parsed once.
pub struct Face {
    path: PathBuf,
    manifest: Manifest,
    data: Bytes,
    metadata: ArrowReaderMetadata,
    /// First offset of each row group (they are in offset order).
    firsts: Vec<i64>,
}

impl std::fmt::Debug for Face {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Face")
            .field("path", &self.path)
            .field("row_groups", &self.firsts.len())
            .field("next_offset", &self.manifest.next_offset)
            .finish()
    }
}

impl Face {
    /// Opens the face of the segment `[base, next)` in `dir`, checking it
    /// against its record, and the record against the segment (`log_bytes`:
    /// a segment the cleaner replaced keeps its range but not its size) and
    /// the topic's value `format`. Reads the whole file once (its CRC32C).
    pub fn open(
        dir: &Path,
        base: i64,
        next: i64,
        log_bytes: u64,
        format: &ValueFormat,
    ) -> Result<Face, StorageError> {
        let mpath = manifest_path(dir, base);
        let path = parquet_path(dir, base);
        let corrupt = |reason: String| StorageError::Corrupt {
            path: path.clone(),
            reason,
        };
        let text =
            std::fs::read_to_string(&mpath).ctx(|| format!("reading {}", mpath.display()))?;
        let manifest = Manifest::decode(&text).map_err(|reason| StorageError::Corrupt {
            path: mpath.clone(),
            reason,
        })?;
        let want = (FORMAT_VERSION, base, next, log_bytes, format);
        let got = (
            manifest.version,
            manifest.base_offset,
            manifest.next_offset,
            manifest.log_bytes,
            &manifest.value_format,
        );
        if want != got {
            return Err(corrupt(format!(
                "built for {got:?}, wanted for (version, base, next, log bytes, format) {want:?}"
            )));
        }
        let file = std::fs::File::open(&path).ctx(|| format!("opening {}", path.display()))?;
        // SAFETY: the file is written in full under a temporary name and
        // renamed into place; nothing writes or truncates it afterwards
        // (deletion unlinks it, which keeps the mapping valid).
        let map = unsafe { memmap2::Mmap::map(&file) }
            .ctx(|| format!("memory-mapping {}", path.display()))?;
        if map.len() as u64 != manifest.parquet_bytes {
            return Err(corrupt(format!(
                "{} bytes, its record says {}",
                map.len(),
                manifest.parquet_bytes
            )));
        }
        let crc = crc32c::crc32c(&map);
        if crc != manifest.crc32c {
            return Err(corrupt(format!(
                "CRC32C {crc:#010x}, its record says {:#010x}",
                manifest.crc32c
            )));
        }
        // Only a writer with this CRC gets here; still, the Thrift parser
        // is not handed a footer it would spin on.
        footer::check(&map).map_err(corrupt)?;
        let data = Bytes::from_owner(map);
        let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required);
        let metadata = ArrowReaderMetadata::load(&data, options)
            .map_err(|e| corrupt(format!("Parquet metadata: {e}")))?;
        let schema = metadata.schema();
        let fixed = crate::columnar::schema();
        if schema.fields().len() < fixed.fields().len()
            || schema.fields()[..fixed.fields().len()] != fixed.fields()[..]
        {
            return Err(corrupt("fixed columns differ from this version's".into()));
        }
        let firsts = first_offsets(&metadata).map_err(corrupt)?;
        Ok(Face {
            path,
            manifest,
            data,
            metadata,
            firsts,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The offset after the segment this face was built from.
    pub fn next_offset(&self) -> i64 {
        self.manifest.next_offset
    }

    pub fn size_bytes(&self) -> usize {
        self.data.len()
    }

    /// The file's bytes (a memory map), for a Parquet reader.
    pub fn bytes(&self) -> &Bytes {
        &self.data
    }

    /// Footer, page index and Arrow schema, parsed at open.
    pub fn metadata(&self) -> &ArrowReaderMetadata {
        &self.metadata
    }
}

/// The smallest offset of each row group, from the offset column's
/// statistics; they must rise.
fn first_offsets(meta: &ArrowReaderMetadata) -> Result<Vec<i64>, String> {
    let offset_col = 1;
    let firsts = meta
        .metadata()
        .row_groups()
        .iter()
        .enumerate()
        .map(|(i, rg)| match rg.column(offset_col).statistics() {
            Some(Statistics::Int64(s)) => s
                .min_opt()
                .copied()
                .ok_or_else(|| format!("row group {i} has no smallest offset")),
            _ => Err(format!("row group {i} has no offset statistics")),
        })
        .collect::<Result<Vec<i64>, String>>()?;
    if firsts.windows(2).any(|w| w[0] >= w[1]) {
        return Err("row groups are not in offset order".into());
    }
    Ok(firsts)
}

/// Opens or builds the face of each sealed segment of `log` that lacks one
/// (or whose face was built for another value format), oldest first, at
/// most `budget` of them; only segments below the last stable offset.
/// Returns how many it attached. A face that does not check out is rebuilt.
pub fn attach_missing(
    log: &Arc<Log>,
    budget: usize,
    space: &crate::FreeSpace,
    format: &ValueFormat,
) -> Result<usize, StorageError> {
    let mut done = 0;
    let stable = log.last_stable_offset();
    for seg in log.sealed_segments() {
        if done >= budget || seg.next_offset() > stable {
            break;
        }
        if !seg.wants_face(format) {
            continue;
        }
        let (dir, base) = (log.dir(), seg.base_offset);
        let _ = std::fs::remove_file(legacy_arrow_path(dir, base));
        let face = match Face::open(dir, base, seg.next_offset(), seg.size(), format) {
            Ok(face) => face,
            Err(e) => {
                if manifest_path(dir, base).exists() {
                    tracing::info!("rebuilding the face of {}: {e}", seg.path.display());
                }
                // A face is a fraction of its segment (0.15-0.35 x on the
                // benchmark's data); built later if the disk has no room.
                if !space.room_for_derived(seg.size()) {
                    break;
                }
                match build_face(log, &seg, format) {
                    Ok(face) => face,
                    Err(e) => {
                        // A full disk is tried again later; anything else
                        // (a segment that does not decode) is not, until the
                        // format changes.
                        if !e.is_disk_full() {
                            seg.mark_face_failed(format);
                        }
                        return Err(e);
                    }
                }
            }
        };
        // Retention may have deleted the segment while we built: then the
        // files are orphans.
        if !log.holds_segment(&seg) {
            for p in face_files(dir, base) {
                let _ = std::fs::remove_file(p);
            }
            continue;
        }
        seg.set_face(Arc::new(face));
        done += 1;
    }
    Ok(done)
}

/// Builds the face of `seg` and opens it.
pub fn build_face(
    log: &Arc<Log>,
    seg: &LogSegment,
    format: &ValueFormat,
) -> Result<Face, StorageError> {
    let (dir, base, next) = (log.dir(), seg.base_offset, seg.next_offset());
    build::write(log, seg, format)?;
    Face::open(dir, base, next, seg.size(), format)
}

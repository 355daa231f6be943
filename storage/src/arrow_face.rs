//! The Arrow face of a sealed segment: `<base>.arrow` beside `<base>.log`,
//! an Arrow IPC file holding the segment's records as rows in the schema of
//! [`columnar::schema`], cut into blocks at Kafka batch boundaries.
//!
//! Written once, after the segment is sealed, by a background task (never on
//! the produce path), into a temporary file renamed into place, so a reader
//! never sees a partial file. Scans memory-map it: the arrays point into the
//! page cache, nothing is decoded or copied. Losing the file (crash, deletion)
//! costs only its rebuild; the `.log` stays the only source of truth.
//!
//! The footer's custom metadata records the segment range it was built from
//! and each block's first offset, so a scan seeks to the block holding an
//! offset without touching the others.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::buffer::Buffer;
use arrow::datatypes::Int64Type;
use arrow::ipc::reader::{FileDecoder, read_footer_length};
use arrow::ipc::writer::FileWriter;
use arrow::ipc::{Block, convert::fb_to_schema, root_as_footer};

use crate::columnar::{self, PartitionScan};
use crate::error::{IoContext, StorageError};
use crate::log::Log;
use crate::segment::LogSegment;

/// Bumped when the file layout or schema changes: older files are rebuilt.
const FORMAT_VERSION: &str = "1";
const META_VERSION: &str = "karnak.arrow_face.version";
const META_BASE: &str = "karnak.segment.base_offset";
const META_NEXT: &str = "karnak.segment.next_offset";
const META_FIRSTS: &str = "karnak.block.first_offsets";
/// The `.log`'s size when the face was built: a segment the cleaner
/// replaced keeps its base (and often its range) but not its size.
const META_LOG_BYTES: &str = "karnak.segment.log_bytes";

/// Rows per block: DataFusion's default batch size, so blocks flow through
/// plans without re-chunking.
pub const BLOCK_ROWS: usize = 8192;
/// How much of the `.log` is read at a time while building.
const BUILD_CHUNK_BYTES: usize = 1 << 20;
const TRAILER_LEN: usize = 10; // footer length (4) + "ARROW1"

pub fn arrow_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{base:020}.arrow"))
}

fn tmp_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{base:020}.arrow.tmp"))
}

/// A memory-mapped `<base>.arrow`.
pub struct ArrowFace {
    path: PathBuf,
    next_offset: i64,
    data: Buffer,
    decoder: FileDecoder,
    blocks: Vec<Block>,
    /// First offset of each block; block `i` covers `[firsts[i], firsts[i+1])`,
    /// the last one up to `next_offset`.
    firsts: Vec<i64>,
}

impl std::fmt::Debug for ArrowFace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArrowFace")
            .field("path", &self.path)
            .field("blocks", &self.blocks.len())
            .field("next_offset", &self.next_offset)
            .finish()
    }
}

impl ArrowFace {
    /// Builds `<base>.arrow` for the sealed segment `seg` of `log`, reading
    /// its batches from the `.log`, and opens it.
    pub fn build(log: &Arc<Log>, seg: &LogSegment) -> Result<ArrowFace, StorageError> {
        let (dir, base, next) = (log.dir(), seg.base_offset, seg.next_offset());
        let tmp = tmp_path(dir, base);
        let result = write_file(log, &tmp, base, next, seg.size());
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        let path = arrow_path(dir, base);
        std::fs::rename(&tmp, &path).ctx(|| format!("renaming {} into place", tmp.display()))?;
        ArrowFace::open_checked(&path, base, next, Some(seg.size()))
    }

    /// Opens and checks an existing file: it must have been built by this
    /// version from exactly the segment range `[base, next)`.
    pub fn open(path: &Path, base: i64, next: i64) -> Result<ArrowFace, StorageError> {
        Self::open_checked(path, base, next, None)
    }

    /// As [`Self::open`]; with `log_bytes`, a file built from a `.log` of
    /// another size (one the cleaner has since replaced) is refused too.
    pub fn open_checked(
        path: &Path,
        base: i64,
        next: i64,
        log_bytes: Option<u64>,
    ) -> Result<ArrowFace, StorageError> {
        let corrupt = |reason: String| StorageError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let file = File::open(path).ctx(|| format!("opening {}", path.display()))?;
        // SAFETY: the file is written in full under a temporary name and
        // renamed into place; nothing writes or truncates it afterwards
        // (deletion unlinks it, which keeps the mapping valid).
        let map = unsafe { memmap2::Mmap::map(&file) }
            .ctx(|| format!("memory-mapping {}", path.display()))?;
        let data = Buffer::from(bytes::Bytes::from_owner(map));
        let len = data.len();
        if len < TRAILER_LEN + 8 || &data[len - 6..] != b"ARROW1" {
            return Err(corrupt("not an Arrow IPC file".into()));
        }
        let mut trailer = [0u8; TRAILER_LEN];
        trailer.copy_from_slice(&data[len - TRAILER_LEN..]);
        let footer_len =
            read_footer_length(trailer).map_err(|e| corrupt(format!("footer length: {e}")))?;
        let footer_start = (len - TRAILER_LEN)
            .checked_sub(footer_len)
            .ok_or_else(|| corrupt("footer length past the file start".into()))?;
        let footer = root_as_footer(&data[footer_start..len - TRAILER_LEN])
            .map_err(|e| corrupt(format!("footer: {e}")))?;
        let schema = footer
            .schema()
            .map(fb_to_schema)
            .ok_or_else(|| corrupt("footer has no schema".into()))?;
        if schema.fields() != columnar::schema().fields() {
            return Err(corrupt("schema differs from this version's".into()));
        }
        let meta = |key: &str| -> Option<String> {
            footer.custom_metadata()?.iter().find_map(|kv| {
                (kv.key() == Some(key)).then(|| kv.value().unwrap_or_default().to_string())
            })
        };
        if meta(META_VERSION).as_deref() != Some(FORMAT_VERSION)
            || meta(META_BASE) != Some(base.to_string())
            || meta(META_NEXT) != Some(next.to_string())
        {
            return Err(corrupt(format!(
                "built by another version or for another range than [{base}, {next})"
            )));
        }
        if let (Some(want), Some(got)) = (log_bytes, meta(META_LOG_BYTES))
            && got != want.to_string()
        {
            return Err(corrupt(format!(
                "built from a {got}-byte segment, which is now {want} bytes (cleaned since)"
            )));
        }
        let firsts = meta(META_FIRSTS)
            .unwrap_or_default()
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<i64>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| corrupt(format!("block offsets: {e}")))?;
        let blocks: Vec<Block> = footer
            .recordBatches()
            .map(|b| b.iter().copied().collect())
            .unwrap_or_default();
        if blocks.len() != firsts.len() || firsts.windows(2).any(|w| w[0] >= w[1]) {
            return Err(corrupt("block offsets do not match the blocks".into()));
        }
        for b in &blocks {
            let end = (b.offset() as i128) + b.metaDataLength() as i128 + b.bodyLength() as i128;
            if b.offset() < 0 || b.metaDataLength() < 0 || b.bodyLength() < 0 || end > len as i128 {
                return Err(corrupt(format!(
                    "block at {} runs past the file",
                    b.offset()
                )));
            }
        }
        // The writer aligns every buffer, so reads stay zero-copy.
        let decoder = FileDecoder::new(columnar::schema(), footer.version());
        Ok(ArrowFace {
            path: path.to_path_buf(),
            next_offset: next,
            data,
            decoder,
            blocks,
            firsts,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The offset after the segment this face was built from.
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    pub fn size_bytes(&self) -> usize {
        self.data.len()
    }

    /// The rows of the block holding `from` (or the first block after it),
    /// cut to `[from, to)`, and the offset where the next read starts.
    /// `None` past the last block.
    pub fn read(&self, from: i64, to: i64) -> Result<Option<(RecordBatch, i64)>, StorageError> {
        let i = self
            .firsts
            .partition_point(|&f| f <= from)
            .saturating_sub(1);
        let Some(block) = self.blocks.get(i) else {
            return Ok(None);
        };
        let block_end = self.firsts.get(i + 1).copied().unwrap_or(self.next_offset);
        if block_end <= from {
            return Ok(None);
        }
        let len = block.metaDataLength() as usize + block.bodyLength() as usize;
        let bytes = self.data.slice_with_length(block.offset() as usize, len);
        let batch = self
            .decoder
            .read_record_batch(block, &bytes)
            .map_err(|e| StorageError::Corrupt {
                path: self.path.clone(),
                reason: format!("block {i}: {e}"),
            })?
            .ok_or_else(|| StorageError::Corrupt {
                path: self.path.clone(),
                reason: format!("block {i} holds no record batch"),
            })?;
        Ok(Some((slice_offsets(batch, from, to), block_end)))
    }
}

/// The rows of `batch` (sorted by offset) with offsets in `[from, to)`.
fn slice_offsets(batch: RecordBatch, from: i64, to: i64) -> RecordBatch {
    let Some(offsets) = batch.column(1).as_primitive_opt::<Int64Type>() else {
        return batch;
    };
    let values = offsets.values();
    let lo = values.partition_point(|&o| o < from);
    let hi = values.partition_point(|&o| o < to);
    if lo == 0 && hi == offsets.len() {
        batch
    } else {
        batch.slice(lo, hi.saturating_sub(lo))
    }
}

fn write_file(
    log: &Arc<Log>,
    tmp: &Path,
    base: i64,
    next: i64,
    log_bytes: u64,
) -> Result<(), StorageError> {
    // The writer's failures are the file system's (a full disk, EIO).
    let io = |e: arrow::error::ArrowError| {
        let source = match e {
            arrow::error::ArrowError::IoError(_, source) => source,
            other => std::io::Error::other(other),
        };
        StorageError::io(format!("writing the Arrow face {}", tmp.display()), source)
    };
    let file = File::create(tmp).ctx(|| format!("creating {}", tmp.display()))?;
    let schema = columnar::schema();
    let mut writer =
        FileWriter::try_new(BufWriter::with_capacity(1 << 20, file), &schema).map_err(io)?;
    let mut scan =
        PartitionScan::new(log.clone(), base, next, BLOCK_ROWS, BUILD_CHUNK_BYTES).from_log_only();
    let mut firsts = Vec::new();
    loop {
        let from = scan.position();
        let Some(batch) = scan.next_batch()? else {
            break;
        };
        if batch.num_rows() == 0 {
            continue;
        }
        firsts.push(from.to_string());
        writer.write(&batch).map_err(io)?;
    }
    writer.write_metadata(META_VERSION, FORMAT_VERSION);
    writer.write_metadata(META_BASE, base.to_string());
    writer.write_metadata(META_NEXT, next.to_string());
    writer.write_metadata(META_FIRSTS, firsts.join(","));
    writer.write_metadata(META_LOG_BYTES, log_bytes.to_string());
    writer.finish().map_err(io)?;
    let mut out = writer.into_inner().map_err(io)?;
    out.flush().ctx(|| format!("writing {}", tmp.display()))?;
    let file = out
        .into_inner()
        .map_err(|e| StorageError::io(format!("writing {}", tmp.display()), e.into_error()))?;
    file.sync_all().ctx(|| format!("fsync {}", tmp.display()))
}

/// Opens or builds the Arrow face of each sealed segment of `log` that has
/// none yet, oldest first, at most `budget` of them. Returns how many it
/// attached. A file that does not check out is rebuilt.
pub fn attach_missing(
    log: &Arc<Log>,
    budget: usize,
    space: &crate::FreeSpace,
) -> Result<usize, StorageError> {
    let mut done = 0;
    for seg in log.sealed_segments() {
        if done >= budget {
            break;
        }
        if !seg.wants_arrow_face() {
            continue;
        }
        let path = arrow_path(log.dir(), seg.base_offset);
        let face = match ArrowFace::open_checked(
            &path,
            seg.base_offset,
            seg.next_offset(),
            Some(seg.size()),
        ) {
            Ok(face) => face,
            Err(e) => {
                if path.exists() {
                    tracing::warn!("rebuilding {}: {e}", path.display());
                }
                // A face is about 1.6 x its segment; built later if the
                // disk has no room for it now.
                if !space.room_for_derived(seg.size().saturating_mul(2)) {
                    break;
                }
                ArrowFace::build(log, &seg).inspect_err(|e| {
                    // A full disk is tried again later; anything else
                    // (a segment that does not decode) is not.
                    if !e.is_disk_full() {
                        seg.mark_arrow_face_failed()
                    }
                })?
            }
        };
        // Retention may have deleted the segment while we built: then the
        // file is an orphan.
        if !log.holds_segment(&seg) {
            let _ = std::fs::remove_file(&path);
            continue;
        }
        seg.set_arrow_face(Arc::new(face));
        done += 1;
    }
    Ok(done)
}

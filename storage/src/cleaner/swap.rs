//! Swapping cleaned segments in, crash-safely (Kafka's replaceSegments and
//! its recovery in LogLoader):
//!
//! 1. the cleaner writes `<base>.*.cleaned` and fsyncs them;
//! 2. under the log's append lock, renames them to `<base>.*.swap`, the
//!    `.log` last, and fsyncs the directory: the `.log.swap` rename is the
//!    commit point;
//! 3. deletes the replaced segments' files;
//! 4. renames the `.swap` files to their final names, the `.log` last, and
//!    fsyncs the directory.
//!
//! On open, [`recover_swaps`] undoes an uncommitted swap (deletes
//! `.cleaned` files and any `.swap` without a `<base>.log.swap`) and
//! finishes a committed one: the old segments whose base lies in
//! `[base, end of the .log.swap)` are deleted (any still there), the swap
//! files renamed. An old segment past that range had no record left in
//! the cleaned one, so keeping it is harmless (it is compacted again).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use karnak_protocol::record_batch::{BatchHeader, HEADER_LEN};

use super::segment_io::{CLEANED_SUFFIX, SWAP_SUFFIX, segment_files, suffixed};
use crate::error::{IoContext, StorageError};
use crate::face::face_files;
use crate::log::sync_dir;
use crate::segment::log_path;

fn rename(from: &Path, to: &Path) -> Result<(), StorageError> {
    std::fs::rename(from, to).ctx(|| format!("renaming {} to {}", from.display(), to.display()))
}

fn remove_if_exists(p: &Path) -> Result<(), StorageError> {
    match std::fs::remove_file(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io(format!("removing {}", p.display()), e)),
    }
}

/// Step 2: `.cleaned` → `.swap`, the log last, then the directory fsync
/// that makes the swap happen even if we crash right after.
pub fn commit_cleaned(dir: &Path, base: i64) -> Result<(), StorageError> {
    for p in segment_files(dir, base) {
        rename(&suffixed(&p, CLEANED_SUFFIX), &suffixed(&p, SWAP_SUFFIX))?;
    }
    sync_dir(dir)
}

/// Step 4: `.swap` → final names, the log last; missing swap files are
/// skipped (a recovery that already renamed them).
pub fn install_swap(dir: &Path, base: i64) -> Result<(), StorageError> {
    for p in segment_files(dir, base) {
        let swap = suffixed(&p, SWAP_SUFFIX);
        if swap.exists() {
            rename(&swap, &p)?;
        }
    }
    sync_dir(dir)
}

/// Every file of the segment at `base`, the face included.
fn remove_segment(dir: &Path, base: i64) -> Result<(), StorageError> {
    for p in face_files(dir, base) {
        remove_if_exists(&p)?;
    }
    for p in segment_files(dir, base) {
        remove_if_exists(&p)?;
    }
    Ok(())
}

/// The offset after the last whole batch of the file at `path` (`base`
/// when it holds none). Lengths are checked against the file's size.
fn end_offset(path: &Path, base: i64) -> Result<i64, StorageError> {
    let ctx = || format!("reading {}", path.display());
    let file = std::fs::File::open(path).ctx(ctx)?;
    let len = file.metadata().ctx(ctx)?.len();
    let mut r = BufReader::with_capacity(64 << 10, file);
    let (mut pos, mut next) = (0u64, base);
    let mut head = [0u8; HEADER_LEN];
    while pos + HEADER_LEN as u64 <= len {
        r.read_exact(&mut head).ctx(ctx)?;
        let Ok(h) = BatchHeader::parse(&head) else {
            break;
        };
        let total = h.total_size() as u64;
        if total < HEADER_LEN as u64 || pos + total > len {
            break;
        }
        next = next.max(h.next_offset());
        r.seek_relative((total - HEADER_LEN as u64) as i64)
            .ctx(ctx)?;
        pos += total;
    }
    Ok(next)
}

/// `<base>.<kind>.<cleaned|swap>` → (base, kind, suffix).
fn parse_name(name: &str) -> Option<(i64, &str, &'static str)> {
    let (rest, suffix) = match name.strip_suffix(CLEANED_SUFFIX) {
        Some(r) => (r, CLEANED_SUFFIX),
        None => (name.strip_suffix(SWAP_SUFFIX)?, SWAP_SUFFIX),
    };
    let (stem, kind) = rest.split_once('.')?;
    let base = stem.parse::<i64>().ok()?;
    ["log", "index", "timeindex", "txnindex"]
        .contains(&kind)
        .then_some((base, kind, suffix))
}

/// Finishes or discards swaps a crash interrupted in `dir` (see the module
/// docs). Called by `Log::open` before it lists the segments.
pub fn recover_swaps(dir: &Path) -> Result<(), StorageError> {
    let mut cleaned: Vec<PathBuf> = Vec::new();
    let mut swaps: BTreeMap<i64, Vec<(String, PathBuf)>> = BTreeMap::new();
    let mut bases = BTreeSet::new();
    for entry in std::fs::read_dir(dir).ctx(|| format!("listing {}", dir.display()))? {
        let entry = entry.ctx(|| format!("listing {}", dir.display()))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some((base, kind, suffix)) = parse_name(name) {
            if suffix == CLEANED_SUFFIX {
                cleaned.push(entry.path());
            } else {
                swaps
                    .entry(base)
                    .or_default()
                    .push((kind.to_string(), entry.path()));
            }
        } else if let Some(b) = name
            .strip_suffix(".log")
            .and_then(|s| s.parse::<i64>().ok())
        {
            bases.insert(b);
        }
    }
    if cleaned.is_empty() && swaps.is_empty() {
        return Ok(());
    }
    for p in &cleaned {
        tracing::info!(path = %p.display(), "deleting the output of a cleaning that never swapped in");
        remove_if_exists(p)?;
    }
    for (base, files) in swaps {
        if !files.iter().any(|(kind, _)| kind == "log") {
            // Renamed before the log's own rename committed the swap.
            for (_, p) in &files {
                tracing::info!(path = %p.display(), "deleting an uncommitted swap file");
                remove_if_exists(p)?;
            }
            continue;
        }
        let end = end_offset(&suffixed(&log_path(dir, base), SWAP_SUFFIX), base)?;
        for old in bases.range(base + 1..end.max(base + 1)) {
            tracing::info!(
                base_offset = *old,
                "deleting a segment replaced by an interrupted swap"
            );
            remove_segment(dir, *old)?;
        }
        // The base's own files: the face and any index without a swap
        // file of its own (old, or new and already renamed: either way it is
        // rebuilt from the log rather than trusted).
        for p in face_files(dir, base) {
            remove_if_exists(&p)?;
        }
        for p in segment_files(dir, base) {
            let kind_has_swap = suffixed(&p, SWAP_SUFFIX).exists();
            if !kind_has_swap && p != log_path(dir, base) {
                remove_if_exists(&p)?;
            }
        }
        tracing::info!(base_offset = base, end_offset = end, dir = %dir.display(), "completing an interrupted swap of cleaned segments");
        install_swap(dir, base)?;
    }
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse() {
        assert_eq!(
            parse_name("00000000000000000100.log.swap"),
            Some((100, "log", SWAP_SUFFIX))
        );
        assert_eq!(
            parse_name("00000000000000000000.timeindex.cleaned"),
            Some((0, "timeindex", CLEANED_SUFFIX))
        );
        assert_eq!(parse_name("00000000000000000000.arrow.swap"), None);
        assert_eq!(parse_name("00000000000000000000.log"), None);
    }
}

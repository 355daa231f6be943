//! `cleaner-offset-checkpoint`: per data dir, the offset each compacted log
//! is cleaned up to, so a restart does not clean everything again. Kafka's
//! text layout: a version line (0), an entry count line, then one
//! `<topic> <partition> <offset>` line per log. Written to a temporary
//! file, fsynced and renamed into place (`write_atomic`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, StorageError};

pub const CHECKPOINT_FILE: &str = "cleaner-offset-checkpoint";
/// A checkpoint larger than this is not ours (10,000 partitions per topic
/// and 249-byte names stay far below).
const MAX_CHECKPOINT_BYTES: u64 = 64 << 20;

pub type Checkpoints = BTreeMap<(String, i32), i64>;

pub fn checkpoint_path(data_dir: &Path) -> PathBuf {
    data_dir.join(CHECKPOINT_FILE)
}

/// Reads the checkpoint; a missing file is empty, a malformed one is
/// `Corrupt` (the caller may then start every log from its start).
pub fn read(data_dir: &Path) -> Result<Checkpoints, StorageError> {
    read_at(&checkpoint_path(data_dir))
}

/// Reads a per-data-dir checkpoint of this layout at `path`.
pub fn read_at(path: &Path) -> Result<Checkpoints, StorageError> {
    let path = path.to_path_buf();
    let corrupt = |reason: String| StorageError::Corrupt {
        path: path.clone(),
        reason,
    };
    let len = match std::fs::metadata(&path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Checkpoints::new()),
        Err(e) => return Err(StorageError::io(format!("stat {}", path.display()), e)),
    };
    if len > MAX_CHECKPOINT_BYTES {
        return Err(corrupt(format!(
            "{len} bytes is too large for a checkpoint"
        )));
    }
    let text = std::fs::read_to_string(&path).ctx(|| format!("reading {}", path.display()))?;
    // Cut short, perhaps inside a number that still parses.
    if !text.ends_with('\n') {
        return Err(corrupt("no final newline".into()));
    }
    let mut lines = text.lines();
    if lines.next().map(str::trim) != Some("0") {
        return Err(corrupt("unknown version".into()));
    }
    let count: usize = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| corrupt("bad entry count".into()))?;
    let mut out = Checkpoints::new();
    for line in lines.by_ref().take(count) {
        let mut f = line.split_whitespace();
        let (Some(t), Some(p), Some(o), None) = (f.next(), f.next(), f.next(), f.next()) else {
            return Err(corrupt(format!("bad line {line:?}")));
        };
        let (Ok(p), Ok(o)) = (p.parse::<i32>(), o.parse::<i64>()) else {
            return Err(corrupt(format!("bad line {line:?}")));
        };
        out.insert((t.to_string(), p), o);
    }
    if out.len() != count || lines.any(|l| !l.trim().is_empty()) {
        return Err(corrupt(format!(
            "{} entries where {count} were announced",
            out.len()
        )));
    }
    Ok(out)
}

/// Replaces the checkpoint with `entries`.
pub fn write(data_dir: &Path, entries: &Checkpoints) -> Result<(), StorageError> {
    write_at(&checkpoint_path(data_dir), entries)
}

/// Replaces the checkpoint file at `path` with `entries`.
pub fn write_at(path: &Path, entries: &Checkpoints) -> Result<(), StorageError> {
    let mut text = format!("0\n{}\n", entries.len());
    for ((t, p), o) in entries {
        text.push_str(&format!("{t} {p} {o}\n"));
    }
    crate::checkpoint::write_atomic(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let d = tempfile::tempdir().unwrap();
        assert!(read(d.path()).unwrap().is_empty());
        let mut c = Checkpoints::new();
        c.insert(("orders".into(), 0), 42);
        c.insert(("orders".into(), 3), 7);
        write(d.path(), &c).unwrap();
        assert_eq!(read(d.path()).unwrap(), c);
        for bad in [
            "1\n0\n",
            "0\n2\nt 0 1\n",
            "0\n1\nt x 1\n",
            "0\n1\nt 0 1 9\n",
            "0\n1\nt 0 12",
            "",
        ] {
            std::fs::write(checkpoint_path(d.path()), bad).unwrap();
            assert!(read(d.path()).is_err(), "{bad:?}");
        }
    }
}

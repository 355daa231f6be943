//! Small metadata files written whole: Kafka's checkpoint format (a version
//! line, a count line, then one entry per line of space-separated numbers),
//! replaced atomically so a crash leaves the old file or the new one.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

use crate::error::{IoContext, StorageError};
use crate::log::sync_dir;

/// Checkpoint files are a few lines; a bigger one is not ours.
const MAX_CHECKPOINT_BYTES: u64 = 1 << 20;

/// Write tmp, fsync, rename, fsync dir: readers see the old or the new file.
/// Writers of one path take turns (it has one tmp file, so a crash leaves
/// at most one behind); writers of different paths do not wait.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), StorageError> {
    let _turn = WriterTurn::take(path);
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).ctx(|| format!("creating {}", tmp.display()))?;
    f.write_all(data)
        .ctx(|| format!("writing {}", tmp.display()))?;
    f.sync_all().ctx(|| format!("fsync {}", tmp.display()))?;
    std::fs::rename(&tmp, path).ctx(|| format!("renaming {}", tmp.display()))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// The paths being written by [`write_atomic`] now, in this process.
static WRITING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
static WRITTEN: Condvar = Condvar::new();

/// A path's turn to be written: held from the tmp file's creation to the
/// rename, so no other writer truncates or renames that tmp file meanwhile.
struct WriterTurn(PathBuf);

impl WriterTurn {
    fn take(path: &Path) -> Self {
        let mut writing = WRITING.lock().unwrap_or_else(|e| e.into_inner());
        while writing.iter().any(|p| p == path) {
            writing = WRITTEN.wait(writing).unwrap_or_else(|e| e.into_inner());
        }
        writing.push(path.to_path_buf());
        WriterTurn(path.to_path_buf())
    }
}

impl Drop for WriterTurn {
    fn drop(&mut self) {
        let mut writing = WRITING.lock().unwrap_or_else(|e| e.into_inner());
        writing.retain(|p| *p != self.0);
        drop(writing);
        WRITTEN.notify_all();
    }
}

/// Writes `entries` as a version-0 checkpoint.
pub(crate) fn write_checkpoint(path: &Path, entries: &[Vec<i64>]) -> Result<(), StorageError> {
    let mut text = format!("0\n{}\n", entries.len());
    for e in entries {
        let line: Vec<String> = e.iter().map(i64::to_string).collect();
        text.push_str(&line.join(" "));
        text.push('\n');
    }
    write_atomic(path, text.as_bytes())
}

/// Reads a version-0 checkpoint whose entries have `width` numbers each.
/// `Ok(None)` when the file does not exist.
pub(crate) fn read_checkpoint(
    path: &Path,
    width: usize,
) -> Result<Option<Vec<Vec<i64>>>, StorageError> {
    let corrupt = |reason: String| StorageError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let len = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::io(format!("stat {}", path.display()), e)),
    };
    if len > MAX_CHECKPOINT_BYTES {
        return Err(corrupt(format!(
            "{len} bytes is too large for a checkpoint"
        )));
    }
    let text = std::fs::read_to_string(path).ctx(|| format!("reading {}", path.display()))?;
    // Every line ends in a newline (Kafka's files too): without one the
    // file was cut short, perhaps inside a number that still parses.
    if !text.ends_with('\n') {
        return Err(corrupt("cut short: no final newline".into()));
    }
    let mut lines = text.lines();
    match lines.next().map(str::trim) {
        Some("0") => {}
        other => return Err(corrupt(format!("unknown version {other:?}"))),
    }
    let count: usize = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| corrupt("missing entry count".into()))?;
    let mut entries = Vec::with_capacity(count.min(4096));
    for line in lines.by_ref().take(count) {
        let nums: Vec<i64> = line
            .split_whitespace()
            .map(|n| n.parse::<i64>())
            .collect::<Result<_, _>>()
            .map_err(|e| corrupt(format!("bad entry {line:?}: {e}")))?;
        if nums.len() != width {
            return Err(corrupt(format!(
                "entry {line:?} has {} fields, not {width}",
                nums.len()
            )));
        }
        entries.push(nums);
    }
    if entries.len() != count {
        return Err(corrupt(format!(
            "{} entries, header says {count}",
            entries.len()
        )));
    }
    Ok(Some(entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cp");
        assert!(read_checkpoint(&p, 2).unwrap().is_none());
        write_checkpoint(&p, &[vec![0, 0], vec![3, 150]]).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "0\n2\n0 0\n3 150\n");
        assert_eq!(
            read_checkpoint(&p, 2).unwrap().unwrap(),
            vec![vec![0, 0], vec![3, 150]]
        );
        for bad in [
            "1\n0\n",
            "0\n2\n0 0\n",
            "0\nx\n",
            "0\n1\n0 zz\n",
            "0\n1\n1 2 3\n",
            "0\n1\n3 15",
            "",
        ] {
            std::fs::write(&p, bad).unwrap();
            assert!(
                matches!(read_checkpoint(&p, 2), Err(StorageError::Corrupt { .. })),
                "{bad:?}"
            );
        }
    }

    /// A log's recovery point is written by the flush timer and by close,
    /// the high-watermark checkpoint by the timer and by shutdown: writers of
    /// one file at once must each succeed, and the file be one of theirs.
    /// (They shared one tmp file: a writer's rename could find it renamed
    /// away, and a clean shutdown failed.)
    #[test]
    fn writers_of_one_file_at_once_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("recovery-point-offset-checkpoint");
        let written: Vec<Vec<i64>> = (0..4).map(|t| vec![t]).collect();
        std::thread::scope(|s| {
            for w in &written {
                let p = &p;
                s.spawn(move || {
                    for i in 0..100 {
                        if let Err(e) = write_checkpoint(p, std::slice::from_ref(w)) {
                            panic!("writer {w:?}, write {i}: {e}");
                        }
                    }
                });
            }
        });
        let last = read_checkpoint(&p, 1).unwrap().unwrap();
        assert!(written.contains(&last[0]), "{last:?}");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "only the checkpoint is left: {names:?}");
    }
}

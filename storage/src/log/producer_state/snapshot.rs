//! Producer state snapshots: `<offset>.snapshot`, the state as of that
//! offset, written when a segment rolls and on clean shutdown.
//!
//! Layout: "KPS1", CRC32C (of the rest), producer count, then per producer
//! id:i64 epoch:i16 coordinator_epoch:i32 last_timestamp:i64
//! txn_first_offset:i64 (-1: none) batches:u8, and per batch first_seq:i32
//! last_seq:i32 first_offset:i64 last_offset:i64 timestamp:i64.

use std::path::{Path, PathBuf};

use super::{BatchMeta, MAX_BATCHES, NO_OFFSET, ProducerEntry, ProducerStateManager};
use crate::error::{IoContext, StorageError};

pub(super) const SNAPSHOT_MAGIC: &[u8; 4] = b"KPS1";

pub fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!("{offset:020}.snapshot"))
}

impl ProducerStateManager {
    /// Serialises the state as of `offset` (see `load`).
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(16 + self.producers.len() * 64);
        body.extend_from_slice(&(self.producers.len() as u32).to_be_bytes());
        let mut pids: Vec<&i64> = self.producers.keys().collect();
        pids.sort_unstable();
        for pid in pids {
            let e = &self.producers[pid];
            body.extend_from_slice(&pid.to_be_bytes());
            body.extend_from_slice(&e.epoch.to_be_bytes());
            body.extend_from_slice(&e.coordinator_epoch.to_be_bytes());
            body.extend_from_slice(&e.last_timestamp.to_be_bytes());
            body.extend_from_slice(&e.txn_first_offset.unwrap_or(NO_OFFSET).to_be_bytes());
            body.push(e.batches.len() as u8);
            for b in &e.batches {
                body.extend_from_slice(&b.first_seq.to_be_bytes());
                body.extend_from_slice(&b.last_seq.to_be_bytes());
                body.extend_from_slice(&b.first_offset.to_be_bytes());
                body.extend_from_slice(&b.last_offset.to_be_bytes());
                body.extend_from_slice(&b.timestamp.to_be_bytes());
            }
        }
        let mut out = Vec::with_capacity(body.len() + 8);
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Parses a snapshot; every count is bounded by the bytes present.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() < 12 || &bytes[0..4] != SNAPSHOT_MAGIC {
            return Err("not a producer snapshot".into());
        }
        let crc = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        let body = &bytes[8..];
        if crc32c::crc32c(body) != crc {
            return Err("checksum mismatch".into());
        }
        let mut r = Reader(body);
        let count = r.u32()? as usize;
        // 31 bytes is the smallest entry: a count beyond that is a lie.
        if count > body.len() / 31 {
            return Err(format!("{count} producers cannot fit {} bytes", body.len()));
        }
        let mut mgr = ProducerStateManager::default();
        for _ in 0..count {
            let pid = r.i64()?;
            let mut e = ProducerEntry::new(r.i16()?);
            e.coordinator_epoch = r.i32()?;
            e.last_timestamp = r.i64()?;
            let first = r.i64()?;
            e.txn_first_offset = (first >= 0).then_some(first);
            let n = r.u8()? as usize;
            if n > MAX_BATCHES {
                return Err(format!("producer {pid} has {n} batches"));
            }
            for _ in 0..n {
                e.batches.push_back(BatchMeta {
                    first_seq: r.i32()?,
                    last_seq: r.i32()?,
                    first_offset: r.i64()?,
                    last_offset: r.i64()?,
                    timestamp: r.i64()?,
                });
            }
            mgr.apply(vec![(pid, e)]);
        }
        Ok(mgr)
    }

    /// Writes the snapshot for `offset` (write to a temp name, then rename,
    /// so a crash leaves either no file or a whole one). Not fsynced here:
    /// this runs under the append lock at a roll, so [`sync_snapshot`]
    /// makes it durable later, off that path. Until then a power cut can
    /// leave the new name with torn contents, which the CRC rejects, and
    /// start-up falls back to the older snapshots still kept.
    pub fn write_snapshot(&self, dir: &Path, offset: i64) -> Result<(), StorageError> {
        let path = snapshot_path(dir, offset);
        let tmp = path.with_extension("snapshot.tmp");
        std::fs::write(&tmp, self.encode()).ctx(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).ctx(|| format!("renaming {}", tmp.display()))
    }
}

/// Makes the snapshot at `offset` durable (its data; its name with the
/// caller's directory fsync) once the log below `offset` is, then keeps
/// only it and the one before it: older ones are not removed until a newer
/// one is on disk.
pub fn sync_snapshot(dir: &Path, offset: i64) -> Result<(), StorageError> {
    let path = snapshot_path(dir, offset);
    match std::fs::File::open(&path) {
        Ok(f) => f.sync_all().ctx(|| format!("fsync {}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StorageError::io(format!("opening {}", path.display()), e)),
    }
    let mut older: Vec<i64> = list_snapshots(dir)?
        .into_iter()
        .filter(|o| *o < offset)
        .collect();
    older.sort_unstable();
    older.pop();
    for o in older {
        let p = snapshot_path(dir, o);
        std::fs::remove_file(&p).ctx(|| format!("removing {}", p.display()))?;
    }
    Ok(())
}

/// Offsets of the snapshot files in `dir`.
pub fn list_snapshots(dir: &Path) -> Result<Vec<i64>, StorageError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).ctx(|| format!("listing {}", dir.display()))? {
        let entry = entry.ctx(|| format!("listing {}", dir.display()))?;
        let name = entry.file_name();
        if let Some(o) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".snapshot"))
            .and_then(|s| s.parse::<i64>().ok())
        {
            out.push(o);
        }
    }
    Ok(out)
}

/// Loads the newest readable snapshot at or below `log_end`, deleting any
/// beyond it (their offsets were truncated away). Returns the state and the
/// offset to replay from; `None` when there is no usable snapshot.
pub fn load_snapshot(
    dir: &Path,
    log_end: i64,
) -> Result<Option<(ProducerStateManager, i64)>, StorageError> {
    let mut offsets = list_snapshots(dir)?;
    offsets.sort_unstable_by(|a, b| b.cmp(a));
    for o in offsets {
        let path = snapshot_path(dir, o);
        if o > log_end {
            std::fs::remove_file(&path).ctx(|| format!("removing {}", path.display()))?;
            continue;
        }
        let bytes = std::fs::read(&path).ctx(|| format!("reading {}", path.display()))?;
        match ProducerStateManager::decode(&bytes) {
            Ok(m) => return Ok(Some((m, o))),
            Err(reason) => {
                tracing::warn!(path = %path.display(), %reason, "ignoring unreadable producer snapshot");
                std::fs::remove_file(&path).ctx(|| format!("removing {}", path.display()))?;
            }
        }
    }
    Ok(None)
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        if self.0.len() < N {
            return Err("snapshot is truncated".into());
        }
        let mut a = [0u8; N];
        a.copy_from_slice(&self.0[..N]);
        self.0 = &self.0[N..];
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take::<1>()?[0])
    }
    fn i16(&mut self) -> Result<i16, String> {
        Ok(i16::from_be_bytes(self.take()?))
    }
    fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_be_bytes(self.take()?))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_be_bytes(self.take()?))
    }
    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_be_bytes(self.take()?))
    }
}

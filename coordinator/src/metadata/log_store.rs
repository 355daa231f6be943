//! The metadata group's Raft log on disk: `raft.log`, an append-only file
//! of frames (length, CRC32C, the entry as JSON), fsynced before openraft is
//! told an append is durable; and `raft-state.json` (vote, committed and
//! last purged log ids), replaced atomically. The log is small (snapshots
//! purge it), so every live entry is also kept in memory.
//!
//! After a crash the file is read up to its first frame that is torn or
//! fails its CRC and cut there: Raft re-replicates anything after it that
//! a quorum has. Purged entries stay in the file until they are more than
//! half of it; then the rest is rewritten to a new file swapped in by
//! rename.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    Entry, LogId, LogState, OptionalSend, RaftLogId, RaftLogReader, StorageError, StorageIOError,
    Vote,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::MetadataStoreError;
use super::disk_full::until_written;
use super::files::{DiskFile, MetadataDisk, RealDisk};
use super::raft::MetadataRaft;
use karnak_storage::error::io_is_disk_full;

const LOG_FILE: &str = "raft.log";
const STATE_FILE: &str = "raft-state.json";
/// Frame header: payload length, CRC32C of the payload.
const HEADER: usize = 8;
/// No metadata command comes near this; a larger length is a torn header.
const MAX_FRAME: usize = 64 << 20;
/// A purged prefix smaller than this is never worth a rewrite.
const COMPACT_MIN_BYTES: u64 = 1 << 20;

type NodeId = u64;
type Err = StorageError<NodeId>;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct PersistedState {
    vote: Option<Vote<NodeId>>,
    committed: Option<LogId<NodeId>>,
    last_purged: Option<LogId<NodeId>>,
}

struct Inner {
    disk: Arc<dyn MetadataDisk>,
    dir: PathBuf,
    file: Box<dyn DiskFile>,
    /// Bytes of whole frames: where the next append goes.
    len: u64,
    /// Live entries by index, with their frame's position.
    entries: BTreeMap<u64, (u64, Entry<MetadataRaft>)>,
    state: PersistedState,
}

/// The Raft log store; clones share it (one is openraft's log reader).
#[derive(Clone)]
pub struct RaftLogStore {
    inner: Arc<Mutex<Inner>>,
}

impl RaftLogStore {
    /// Opens the log in `dir` (created durably if missing), cutting a torn tail.
    pub fn open(dir: &Path) -> Result<RaftLogStore, MetadataStoreError> {
        Self::open_on(RealDisk::shared(), dir)
    }

    /// As `open`, on the given file system (the simulation's).
    pub fn open_on(
        disk: Arc<dyn MetadataDisk>,
        dir: &Path,
    ) -> Result<RaftLogStore, MetadataStoreError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| MetadataStoreError::Io { path, source }
        };
        disk.create_dir_durable(dir)?;
        let state_path = dir.join(STATE_FILE);
        let state: PersistedState = match disk.read(&state_path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|source| MetadataStoreError::Decode {
                path: state_path.clone(),
                source,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => PersistedState::default(),
            Err(e) => return Err(io(&state_path)(e)),
        };
        let path = dir.join(LOG_FILE);
        let existed = disk.exists(&path);
        let file = disk.open_rw(&path, true).map_err(io(&path))?;
        if !existed {
            disk.sync_dir(dir).map_err(io(dir))?;
        }
        let bytes = disk.read(&path).map_err(io(&path))?;
        let (frames, good) = read_frames(&bytes);
        if good < bytes.len() as u64 {
            tracing::warn!(path = %path.display(), kept = good, dropped = bytes.len() as u64 - good,
                "raft log cut at its first torn or corrupt frame");
            file.set_len(good)
                .and_then(|_| file.sync_data())
                .map_err(io(&path))?;
        }
        let purged = state.last_purged.map(|l| l.index);
        let entries = frames
            .into_iter()
            .filter(|(_, e)| purged.is_none_or(|p| e.get_log_id().index > p))
            .map(|(pos, e)| (e.get_log_id().index, (pos, e)))
            .collect();
        Ok(RaftLogStore {
            inner: Arc::new(Mutex::new(Inner {
                disk,
                dir: dir.to_path_buf(),
                file,
                len: good,
                entries,
                state,
            })),
        })
    }
}

/// Frames from the start of `bytes` up to the first bad one: each with its
/// position, and the length of the good prefix.
fn read_frames(bytes: &[u8]) -> (Vec<(u64, Entry<MetadataRaft>)>, u64) {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while let Some(header) = bytes.get(pos..pos + HEADER) {
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        if len > MAX_FRAME {
            break;
        }
        let Some(payload) = bytes.get(pos + HEADER..pos + HEADER + len) else {
            break;
        };
        if crc32c::crc32c(payload) != crc {
            break;
        }
        let Ok(entry) = serde_json::from_slice::<Entry<MetadataRaft>>(payload) else {
            break;
        };
        // Indexes only grow along the file (a truncation cuts the file).
        if out
            .last()
            .is_some_and(|(_, e): &(u64, Entry<MetadataRaft>)| {
                e.get_log_id().index >= entry.get_log_id().index
            })
        {
            break;
        }
        out.push((pos as u64, entry));
        pos += HEADER + len;
    }
    (out, pos as u64)
}

fn frame(entry: &Entry<MetadataRaft>, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    let payload = serde_json::to_vec(entry)?;
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
    out.extend_from_slice(&payload);
    Ok(())
}

impl Inner {
    fn save_state(&self) -> Result<(), std::io::Error> {
        let json = serde_json::to_vec(&self.state).map_err(std::io::Error::other)?;
        self.disk
            .write_atomic(&self.dir.join(STATE_FILE), &json)
            .map_err(std::io::Error::other)
    }

    /// Appends at the end; a failed try leaves the end where it was (a
    /// short write past it is overwritten by the next try, or cut as a
    /// torn tail on open).
    fn append(&mut self, entries: &[Entry<MetadataRaft>]) -> Result<(), std::io::Error> {
        let mut buf = Vec::new();
        let mut at = Vec::with_capacity(entries.len());
        for e in entries {
            at.push(self.len + buf.len() as u64);
            frame(e, &mut buf).map_err(std::io::Error::other)?;
        }
        self.file.write_all_at(&buf, self.len)?;
        self.file.sync_data()?;
        self.len += buf.len() as u64;
        for (pos, e) in at.into_iter().zip(entries) {
            self.entries.insert(e.get_log_id().index, (pos, e.clone()));
        }
        Ok(())
    }

    fn truncate(&mut self, from: u64) -> Result<(), std::io::Error> {
        let Some((&_, &(pos, _))) = self.entries.range(from..).next() else {
            return Ok(());
        };
        self.file.set_len(pos)?;
        self.file.sync_data()?;
        self.len = pos;
        self.entries.split_off(&from);
        Ok(())
    }

    fn purge(&mut self, upto: LogId<NodeId>) -> Result<(), std::io::Error> {
        // Durable first: after a crash the entries below it are skipped.
        self.state.last_purged = Some(upto);
        self.save_state()?;
        self.entries = self.entries.split_off(&upto.index.saturating_add(1));
        let dead = self
            .entries
            .values()
            .next()
            .map_or(self.len, |(pos, _)| *pos);
        if dead >= COMPACT_MIN_BYTES && dead * 2 >= self.len {
            self.compact()?;
        }
        Ok(())
    }

    /// Rewrites the live entries to a new file, swapped in by rename.
    fn compact(&mut self) -> Result<(), std::io::Error> {
        let tmp = self.dir.join(format!("{LOG_FILE}.tmp"));
        let mut buf = Vec::new();
        // The entries stay in place until the new file is: a failed try
        // (a full disk) changes nothing.
        let mut moved = BTreeMap::new();
        for (&index, (_, e)) in &self.entries {
            let pos = buf.len() as u64;
            frame(e, &mut buf).map_err(std::io::Error::other)?;
            moved.insert(index, (pos, e.clone()));
        }
        let f = self.disk.create(&tmp)?;
        f.write_all_at(&buf, 0)?;
        f.sync_all()?;
        self.disk.rename(&tmp, &self.dir.join(LOG_FILE))?;
        self.disk.sync_dir(&self.dir)?;
        self.file = self.disk.open_rw(&self.dir.join(LOG_FILE), false)?;
        self.len = buf.len() as u64;
        self.entries = moved;
        Ok(())
    }
}

impl RaftLogReader<MetadataRaft> for RaftLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<MetadataRaft>>, Err> {
        let inner = self.inner.lock().await;
        Ok(inner
            .entries
            .range(range)
            .map(|(_, (_, e))| e.clone())
            .collect())
    }
}

impl RaftLogStorage<MetadataRaft> for RaftLogStore {
    type LogReader = RaftLogStore;

    async fn get_log_state(&mut self) -> Result<LogState<MetadataRaft>, Err> {
        let inner = self.inner.lock().await;
        let last = inner
            .entries
            .values()
            .next_back()
            .map(|(_, e)| *e.get_log_id())
            .or(inner.state.last_purged);
        Ok(LogState {
            last_purged_log_id: inner.state.last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), Err> {
        let mut inner = self.inner.lock().await;
        inner.state.vote = Some(*vote);
        until_written("raft vote", io_is_disk_full, || inner.save_state())
            .await
            .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, Err> {
        Ok(self.inner.lock().await.state.vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), Err> {
        let mut inner = self.inner.lock().await;
        inner.state.committed = committed;
        until_written("raft commit index", io_is_disk_full, || inner.save_state())
            .await
            .map_err(|e| StorageIOError::write(&e).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, Err> {
        Ok(self.inner.lock().await.state.committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<MetadataRaft>) -> Result<(), Err>
    where
        I: IntoIterator<Item = Entry<MetadataRaft>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<_> = entries.into_iter().collect();
        let mut inner = self.inner.lock().await;
        match until_written("raft log append", io_is_disk_full, || {
            inner.append(&entries)
        })
        .await
        {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let err = StorageIOError::write_logs(&e);
                callback.log_io_completed(Err(e));
                Err(err.into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), Err> {
        let mut inner = self.inner.lock().await;
        inner
            .truncate(log_id.index)
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), Err> {
        let mut inner = self.inner.lock().await;
        until_written("raft log purge", io_is_disk_full, || inner.purge(log_id))
            .await
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }
}

#[cfg(test)]
mod tests {
    use openraft::storage::RaftLogStorageExt;
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;
    use crate::metadata::MetadataCommand;

    fn entry(term: u64, index: u64) -> Entry<MetadataRaft> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 0), index),
            payload: EntryPayload::Normal(MetadataCommand::AllocateIdBlock {
                sequencer: format!("s{index}-{}", "x".repeat(1000)),
                size: index + 1,
                from: 0,
            }),
        }
    }

    async fn indexes(s: &mut RaftLogStore) -> Vec<u64> {
        s.try_get_log_entries(..)
            .await
            .unwrap()
            .iter()
            .map(|e| e.log_id.index)
            .collect()
    }

    #[tokio::test]
    async fn appends_survive_reopen_and_truncate_cuts_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = RaftLogStore::open(dir.path()).unwrap();
        s.blocking_append((1..=5).map(|i| entry(1, i)))
            .await
            .unwrap();
        s.save_vote(&Vote::new(2, 1)).await.unwrap();
        s.truncate(LogId::new(CommittedLeaderId::new(1, 0), 4))
            .await
            .unwrap();
        s.blocking_append([entry(2, 4)]).await.unwrap();
        drop(s);
        let mut s = RaftLogStore::open(dir.path()).unwrap();
        assert_eq!(indexes(&mut s).await, vec![1, 2, 3, 4]);
        let got = s.try_get_log_entries(4..5).await.unwrap();
        assert_eq!(got[0], entry(2, 4));
        assert_eq!(s.read_vote().await.unwrap(), Some(Vote::new(2, 1)));
        let state = s.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id.map(|l| l.index), Some(4));
    }

    #[tokio::test]
    async fn a_torn_tail_is_cut_and_later_appends_line_up() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = RaftLogStore::open(dir.path()).unwrap();
        s.blocking_append((1..=3).map(|i| entry(1, i)))
            .await
            .unwrap();
        drop(s);
        // A power cut left half a frame, then zeros.
        let path = dir.path().join(LOG_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let mut torn = Vec::new();
        frame(&entry(1, 4), &mut torn).unwrap();
        bytes.extend_from_slice(&torn[..torn.len() / 2]);
        bytes.extend_from_slice(&[0u8; 100]);
        std::fs::write(&path, &bytes).unwrap();
        let mut s = RaftLogStore::open(dir.path()).unwrap();
        assert_eq!(indexes(&mut s).await, vec![1, 2, 3]);
        s.blocking_append([entry(1, 4)]).await.unwrap();
        drop(s);
        let mut s = RaftLogStore::open(dir.path()).unwrap();
        assert_eq!(indexes(&mut s).await, vec![1, 2, 3, 4]);
        // A flipped byte in the middle: everything from there is cut.
        let mut bytes = std::fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let mut s = RaftLogStore::open(dir.path()).unwrap();
        let left = indexes(&mut s).await;
        assert!(left.len() < 4 && left.iter().copied().eq(1..=left.len() as u64));
    }

    #[tokio::test]
    async fn purged_entries_stay_purged_and_the_file_is_compacted() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = RaftLogStore::open(dir.path()).unwrap();
        // Big enough entries that the purged prefix passes the rewrite threshold.
        let many: Vec<_> = (1..=3000).map(|i| entry(1, i)).collect();
        s.blocking_append(many).await.unwrap();
        let before = std::fs::metadata(dir.path().join(LOG_FILE)).unwrap().len();
        let upto = LogId::new(CommittedLeaderId::new(1, 0), 2990);
        s.purge(upto).await.unwrap();
        let after = std::fs::metadata(dir.path().join(LOG_FILE)).unwrap().len();
        assert!(
            before > COMPACT_MIN_BYTES,
            "{before} bytes: too few to compact"
        );
        assert!(after < before / 100, "not compacted: {before} -> {after}");
        assert_eq!(indexes(&mut s).await, (2991..=3000).collect::<Vec<_>>());
        s.blocking_append([entry(2, 3001)]).await.unwrap();
        drop(s);
        let mut s = RaftLogStore::open(dir.path()).unwrap();
        assert_eq!(indexes(&mut s).await, (2991..=3001).collect::<Vec<_>>());
        let state = s.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(upto));
        // Everything purged: the last log id is the purged one.
        s.purge(LogId::new(CommittedLeaderId::new(2, 0), 3001))
            .await
            .unwrap();
        let state = s.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id.map(|l| l.index), Some(3001));
        assert!(indexes(&mut s).await.is_empty());
    }
}

//! The metadata group's state machine as openraft drives it: committed
//! entries applied to [`ClusterMetadata`] in log order, each change
//! published to the broker's subscribers, and snapshots (the whole state as
//! JSON, with the log id and membership it is as of) kept in
//! `metadata-snapshot.json`, replaced atomically. On start the state is the
//! snapshot's; openraft re-applies the committed entries after it.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, Snapshot,
    SnapshotMeta, StorageError, StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, watch};

use super::MetadataStoreError;
use super::command::MetadataReply;
use super::disk_full::until_written;
use super::files::{MetadataDisk, RealDisk};
use super::raft::{MetadataRaft, MetadataResult};
use super::state::ClusterMetadata;

const SNAPSHOT_FILE: &str = "metadata-snapshot.json";

type NodeId = u64;
type Err = StorageError<NodeId>;
type Meta = SnapshotMeta<NodeId, BasicNode>;

/// What a snapshot file holds.
#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: Meta,
    state: ClusterMetadata,
}

struct Inner {
    disk: Arc<dyn MetadataDisk>,
    dir: PathBuf,
    state: ClusterMetadata,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
    /// The newest snapshot, as stored.
    snapshot: Option<(Meta, Vec<u8>)>,
    snapshots_built: u64,
}

/// The state machine; clones share it (one is openraft's snapshot builder).
#[derive(Clone)]
pub struct MetadataStateMachine {
    inner: Arc<Mutex<Inner>>,
    published: Arc<watch::Sender<Arc<ClusterMetadata>>>,
}

impl MetadataStateMachine {
    /// Opens the state machine in `dir`, from its snapshot if there is one.
    pub fn open(dir: &Path) -> Result<MetadataStateMachine, MetadataStoreError> {
        Self::open_on(RealDisk::shared(), dir)
    }

    /// As `open`, on the given file system (the simulation's).
    pub fn open_on(
        disk: Arc<dyn MetadataDisk>,
        dir: &Path,
    ) -> Result<MetadataStateMachine, MetadataStoreError> {
        disk.create_dir_durable(dir)?;
        let path = dir.join(SNAPSHOT_FILE);
        let (mut state, last_applied, membership, snapshot) = match disk.read(&path) {
            Ok(bytes) => {
                let f: SnapshotFile = serde_json::from_slice(&bytes)
                    .map_err(|source| MetadataStoreError::Decode { path, source })?;
                let m = f.meta.clone();
                (
                    f.state,
                    m.last_log_id,
                    m.last_membership.clone(),
                    Some((m, bytes)),
                )
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (
                ClusterMetadata::default(),
                None,
                StoredMembership::default(),
                None,
            ),
            Err(source) => return Err(MetadataStoreError::Io { path, source }),
        };
        // Snapshots from before the field: the snapshot's own index.
        state.applied_index = last_applied.map_or(0, |l| l.index);
        let (tx, _) = watch::channel(Arc::new(state.clone()));
        Ok(MetadataStateMachine {
            inner: Arc::new(Mutex::new(Inner {
                disk,
                dir: dir.to_path_buf(),
                state,
                last_applied,
                membership,
                snapshot,
                snapshots_built: 0,
            })),
            published: Arc::new(tx),
        })
    }

    /// The metadata as of each applied entry; the broker reacts to changes.
    pub fn subscribe(&self) -> watch::Receiver<Arc<ClusterMetadata>> {
        self.published.subscribe()
    }

    /// The metadata now (a copy).
    pub async fn current(&self) -> ClusterMetadata {
        self.inner.lock().await.state.clone()
    }
}

impl Inner {
    /// Writes the snapshot file (waiting out a full disk) and keeps it.
    async fn store_snapshot(&mut self, meta: &Meta, bytes: Vec<u8>) -> Result<(), Err> {
        let path = self.dir.join(SNAPSHOT_FILE);
        until_written(
            "metadata snapshot",
            karnak_storage::StorageError::is_disk_full,
            || self.disk.write_atomic(&path, &bytes),
        )
        .await
        .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        self.snapshot = Some((meta.clone(), bytes));
        Ok(())
    }
}

impl RaftSnapshotBuilder<MetadataRaft> for MetadataStateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<MetadataRaft>, Err> {
        let mut inner = self.inner.lock().await;
        inner.snapshots_built += 1;
        let meta = Meta {
            last_log_id: inner.last_applied,
            last_membership: inner.membership.clone(),
            snapshot_id: format!(
                "{}-{}",
                inner.last_applied.map_or(0, |l| l.index),
                inner.snapshots_built
            ),
        };
        let file = SnapshotFile {
            meta: meta.clone(),
            state: inner.state.clone(),
        };
        let bytes = serde_json::to_vec(&file)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        inner.store_snapshot(&meta, bytes.clone()).await?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<MetadataRaft> for MetadataStateMachine {
    type SnapshotBuilder = MetadataStateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), Err> {
        let inner = self.inner.lock().await;
        Ok((inner.last_applied, inner.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<MetadataResult>, Err>
    where
        I: IntoIterator<Item = Entry<MetadataRaft>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut inner = self.inner.lock().await;
        let mut out = Vec::new();
        for e in entries {
            inner.last_applied = Some(e.log_id);
            inner.state.applied_index = e.log_id.index;
            out.push(match e.payload {
                EntryPayload::Blank => Ok(MetadataReply::Done),
                EntryPayload::Normal(cmd) => inner.state.apply(&cmd),
                EntryPayload::Membership(m) => {
                    inner.membership = StoredMembership::new(Some(e.log_id), m);
                    Ok(MetadataReply::Done)
                }
            });
        }
        self.published.send_replace(Arc::new(inner.state.clone()));
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, Err> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), Err> {
        let bytes = snapshot.into_inner();
        let file: SnapshotFile = serde_json::from_slice(&bytes)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        let mut inner = self.inner.lock().await;
        inner.store_snapshot(meta, bytes).await?;
        inner.state = file.state;
        inner.last_applied = meta.last_log_id;
        inner.state.applied_index = meta.last_log_id.map_or(0, |l| l.index);
        inner.membership = meta.last_membership.clone();
        self.published.send_replace(Arc::new(inner.state.clone()));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<MetadataRaft>>, Err> {
        let inner = self.inner.lock().await;
        Ok(inner.snapshot.as_ref().map(|(meta, bytes)| Snapshot {
            meta: meta.clone(),
            snapshot: Box::new(Cursor::new(bytes.clone())),
        }))
    }
}

//! Entry points for the fuzz targets in `fuzz/` and their regression tests:
//! the coordinator shards' records as read back from `__karnak_coordinator`,
//! the consumer protocol bytes clients send in JoinGroup, the metadata
//! group's Raft log, state and snapshot files as a crash may leave them,
//! and the messages metadata peers send each other.

use std::path::Path;

use bytes::Bytes;
use tokio::time::{Duration, Instant};

use crate::metadata::{MetadataStateMachine, RaftLogStore};
use crate::records::{RecordKey, StoredGroup, StoredOffset};

mod raft;
pub use raft::{raft_message, raft_message_seeds};

/// One shard record: a u16 key length, the key, then the value, which is
/// decoded as every kind of value a key may carry.
pub fn shard_record(data: &[u8]) {
    let [a, b, rest @ ..] = data else {
        return;
    };
    let len = usize::from(u16::from_be_bytes([*a, *b])).min(rest.len());
    let (key, value) = rest.split_at(len);
    let _ = RecordKey::decode(Bytes::copy_from_slice(key));
    let value = Bytes::copy_from_slice(value);
    let _ = StoredOffset::decode(value.clone());
    let _ = StoredGroup::decode(value.clone());
    let _ = crate::txn::TxnMetadata::decode("fuzz", value.clone());
    let _ = crate::consumer::ConsumerGroup::decode(value, Instant::now(), Duration::from_secs(45));
}

/// A classic consumer's JoinGroup subscription metadata.
pub fn subscription(data: &[u8]) {
    let _ = crate::consumer_protocol::subscription_topics(&Bytes::copy_from_slice(data));
}

/// The metadata group's files: a byte choosing what the second file is
/// (even: the state machine's snapshot, odd: Raft's vote and commit
/// state), a u16 length, the Raft log of that length, then the second
/// file. Both stores are opened in a fresh directory under `scratch`.
pub fn metadata_files(scratch: &Path, data: &[u8]) {
    let [which, a, b, rest @ ..] = data else {
        return;
    };
    let len = usize::from(u16::from_be_bytes([*a, *b])).min(rest.len());
    let (log, snapshot) = rest.split_at(len);
    let dir = scratch.join(format!("m-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    let _ = std::fs::write(dir.join("raft.log"), log);
    let target = if which & 1 == 0 {
        "metadata-snapshot.json"
    } else {
        "raft-state.json"
    };
    let _ = std::fs::write(dir.join(target), snapshot);
    let _ = RaftLogStore::open(&dir);
    let _ = MetadataStateMachine::open(&dir);
    let _ = std::fs::remove_dir_all(&dir);
}

//! Whether a partition's storage can be trusted. Shared by the log and the
//! file slices its reads hand out: a failure found while sending one (a
//! `sendfile` that meets a bad sector, long after the read returned) takes
//! the partition offline exactly as a failed read, write or fsync does.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{OFFLINE_PARTITIONS, lock};
use crate::error::StorageError;

#[derive(Debug)]
pub struct PartitionHealth {
    topic: String,
    partition: i32,
    /// Set by the first failure; never cleared while running. The flag is
    /// what append and read check (no lock on the hot path).
    offline: AtomicBool,
    cause: Mutex<Option<String>>,
}

impl PartitionHealth {
    pub(super) fn new(topic: &str, partition: i32) -> PartitionHealth {
        PartitionHealth {
            topic: topic.to_string(),
            partition,
            offline: AtomicBool::new(false),
            cause: Mutex::new(None),
        }
    }

    pub fn is_offline(&self) -> bool {
        self.offline.load(Ordering::Acquire)
    }

    /// Why the partition is offline, if it is.
    pub fn cause(&self) -> Option<String> {
        if !self.is_offline() {
            return None;
        }
        lock(&self.cause).clone()
    }

    /// Takes the partition offline after `cause` (once; the first cause is
    /// kept) and returns the error its caller reports.
    pub fn take_offline(&self, cause: &dyn std::fmt::Display) -> StorageError {
        let mut off = lock(&self.cause);
        if off.is_none() {
            tracing::error!(topic = %self.topic, partition = self.partition, error = %cause,
                "partition taken offline: the disk failed an fsync, a write or a read, so what it holds is in doubt; restart the broker once the disk is fixed");
            metrics::gauge!(OFFLINE_PARTITIONS).increment(1.0);
            *off = Some(cause.to_string());
            self.offline.store(true, Ordering::Release);
        }
        StorageError::Offline {
            topic: self.topic.clone(),
            partition: self.partition,
            cause: cause.to_string(),
        }
    }

    /// A slice of this partition's segments could not be read while being
    /// sent (`sendfile` or its copying fallback failed on the file side).
    pub fn read_failed(&self, e: &std::io::Error) {
        let _ = self.take_offline(&format_args!("sending a segment region: {e}"));
    }
}

//! Errors of the storage layer, with enough context (path, offset) for an
//! operator to find what went wrong.

use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum StorageError {
    #[error("I/O error: {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "offset {offset} is out of range (log start offset {log_start_offset}, log end offset {log_end_offset})"
    )]
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopic { name: String, reason: String },
    #[error("Topic '{0}' already exists.")]
    TopicAlreadyExists(String),
    #[error("unknown topic {0:?}")]
    UnknownTopic(String),
    #[error("invalid number of partitions {0} (must be 1..=10000)")]
    InvalidPartitions(i32),
    #[error(
        "Topic {topic} currently has {current} partitions, which is higher than or equal to the requested {requested}."
    )]
    PartitionsNotIncreased {
        topic: String,
        current: i32,
        requested: i32,
    },
    /// `reason` is the whole message, worded as Kafka words it.
    #[error("{reason}")]
    InvalidConfig { name: String, reason: String },
    /// Kafka's KAFKA_STORAGE_ERROR: an fsync or write failed, so what the
    /// page cache holds may never reach the disk ("fsyncgate"); the log
    /// takes nothing more and acknowledges nothing more until restarted.
    #[error("partition {topic}-{partition} is offline after a storage error: {cause}")]
    Offline {
        topic: String,
        partition: i32,
        cause: String,
    },
    #[error("data directory {0} is locked by another process")]
    DataDirLocked(PathBuf),
    #[error("corrupt file {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error(transparent)]
    Producer(#[from] crate::log::producer_state::ProducerError),
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    RecordTooLarge { size: usize, max: u32 },
    /// Kafka's INVALID_RECORD (87): compaction keeps the newest record per
    /// key, so a compacted topic refuses records that have none.
    #[error("compacted topic {topic} partition {partition} cannot accept a record without a key")]
    KeylessRecordOnCompactedTopic { topic: String, partition: i32 },
}

/// Whether an I/O error means the file system is full (or the quota spent).
pub fn io_is_disk_full(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{QuotaExceeded, StorageFull};
    matches!(e.kind(), StorageFull | QuotaExceeded)
        || e.get_ref()
            .and_then(|inner| inner.downcast_ref::<StorageError>())
            .is_some_and(StorageError::is_disk_full)
}

impl StorageError {
    /// A write failed because the file system is full.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StorageError::Io { source, .. } if io_is_disk_full(source))
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        StorageError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Attaches context to `io::Result`s.
pub(crate) trait IoContext<T> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T, StorageError>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T, StorageError> {
        self.map_err(|e| StorageError::io(f(), e))
    }
}

//! Partition logs on local disk, Kafka's design: a directory per
//! topic-partition holding segments (`.log` of v2 record batches as produced,
//! sparse memory-mapped `.index` and `.timeindex`), crash recovery of the
//! active segment's tail, a flush policy, and reads as file slices for
//! `sendfile`; and the Arrow face of sealed segments for SQL scans.

pub mod blocking;
mod checkpoint;
pub mod cleaner;
pub mod columnar;
pub mod config;
pub mod disk_space;
pub mod error;
pub mod face;
#[doc(hidden)]
pub mod fuzz;
pub mod group_commit;
pub mod index;
pub mod log;
pub mod manager;
pub mod segment;
pub mod topic;
pub mod value_format;

pub use checkpoint::write_atomic;
pub use cleaner::{CleanStats, Cleanable, Cleaner, CleanerConfig};
pub use config::{CleanupPolicy, LogConfig};
pub use disk_space::FreeSpace;
pub use error::StorageError;
pub use log::{AppendInfo, FileSlice, Log, ReadResult, create_dir_durable, sync_dir};
pub use manager::{DynamicBrokerConfigs, LogManager, Topic, TopicMeta};
pub use topic::validate_topic_name;

#[doc(hidden)]
pub mod test_support;

//! The request versions Kafka 4.0 stopped serving (KIP-896) and the
//! `kafka-protocol` crate no longer decodes, for clients from before about
//! 2019 (librdkafka with `broker.version.fallback`, kafka-python with an
//! old `api_version`, Sarama's default `V0_8_2_0`, Java clients before 0.11).
//! Karnak serves what Kafka 3.9 served.
//!
//! Most old versions differ from a newer one by a field or two, so they
//! are served by rewriting: [`upgrade_request`] turns the old body into the
//! nearest version the crate decodes (filling the new fields with what the
//! old version meant), the normal handler answers it, and
//! [`downgrade_response`] rewrites the answer into the old format. Produce
//! v0-2 and Fetch v0-3 also change the record format; their handlers use
//! [`produce`], [`fetch`] and [`message_set`] directly.

pub mod fetch;
pub mod message_set;
pub mod produce;
mod rewrite;
pub mod wire;

use kafka_protocol::messages::ApiKey;

pub use rewrite::{downgrade_response, upgrade_request};

/// A legacy body that could not be read or rewritten. The connection is
/// closed, as Kafka does for a request it cannot parse; record-level
/// problems are per-partition errors instead (see `kafka_error_code`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LegacyError {
    #[error("{what} runs past the end of the bytes sent (at byte {at})")]
    Truncated { what: &'static str, at: usize },
    #[error("{what} has an invalid length {len}")]
    Length { what: &'static str, len: i64 },
    #[error("{what} has an invalid count {count}")]
    Count { what: &'static str, count: i64 },
    #[error("{what} is not UTF-8")]
    Utf8 { what: &'static str },
    #[error("{bytes} unexpected bytes after {what}")]
    Trailing { what: &'static str, bytes: usize },
    #[error("message CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Crc { stored: u32, computed: u32 },
    #[error("message magic {0} is not 0 or 1")]
    Magic(i8),
    #[error("a message set mixes magic 0 and magic 1 messages")]
    MixedMagic,
    #[error("a message set mixes compression codecs")]
    MixedCodec,
    #[error("a compressed message inside a compressed message")]
    NestedCompression,
    #[error("unknown message codec {0}")]
    Codec(i8),
    #[error("message set holds no messages")]
    EmptySet,
    #[error("{0}")]
    Decompress(String),
    #[error("records of the v2 batch at offset {base_offset} do not parse")]
    V2Records { base_offset: i64 },
    #[error("building a v2 batch: {0}")]
    Encode(String),
    #[error("{api:?} v{version} is not a legacy version")]
    NotLegacy { api: ApiKey, version: i16 },
}

impl LegacyError {
    /// The Kafka error a producer gets when its message set is refused.
    pub fn kafka_error_code(&self) -> i16 {
        use kafka_protocol::error::ResponseError as E;
        match self {
            LegacyError::Codec(_) => E::UnsupportedCompressionType,
            LegacyError::Magic(_) => E::UnsupportedForMessageFormat,
            _ => E::CorruptMessage,
        }
        .code()
    }
}

/// For an old version the crate cannot decode, the version its request is
/// rewritten to. Produce and Fetch are absent: their handlers convert.
pub fn upgrade_target(api: ApiKey, version: i16) -> Option<i16> {
    use ApiKey as K;
    let target = match (api, version) {
        (K::ListOffsets, 0) => 1,
        (K::OffsetCommit, 0..=1) => 2,
        (K::OffsetFetch, 0) => 1,
        (K::CreateTopics, 0..=1) => 2,
        (K::DeleteTopics, 0) => 1,
        (K::DescribeConfigs, 0) => 1,
        (K::DescribeLogDirs, 0) => 1,
        (K::OffsetForLeaderEpoch, 0..=1) => 2,
        (K::DescribeAcls | K::CreateAcls | K::DeleteAcls, 0) => 1,
        _ => return None,
    };
    Some(target)
}

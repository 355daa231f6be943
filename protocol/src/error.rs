use thiserror::Error;

/// Errors found while reading bytes that came off the wire.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("frame size {size} is negative or above the limit of {limit} bytes")]
    FrameSize { size: i64, limit: usize },
    #[error("request header is truncated ({len} bytes)")]
    TruncatedHeader { len: usize },
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    #[error("record batch: {0}")]
    Batch(#[from] BatchError),
}

/// Why a v2 record batch was rejected. Each maps to a Kafka error code.
#[derive(Debug, Error, PartialEq, Eq, Clone)]
pub enum BatchError {
    #[error("records are {len} bytes, shorter than a batch header ({min} bytes)")]
    TooShort { len: usize, min: usize },
    #[error("batch length {length} at position {position} runs past the {available} bytes sent")]
    BadLength {
        position: usize,
        length: i32,
        available: usize,
    },
    #[error("unsupported magic byte {0} (only v2 batches are accepted)")]
    Magic(i8),
    #[error("CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Crc { stored: u32, computed: u32 },
    #[error("record count {count} does not fit last offset delta {last_offset_delta}")]
    RecordCount { count: i32, last_offset_delta: i32 },
    #[error("records section does not hold {count} well-formed records")]
    Records { count: i32 },
    #[error("unknown compression codec {0}")]
    Compression(i16),
    #[error("timestamp {timestamp} is outside the allowed window around broker time {now}")]
    Timestamp { timestamp: i64, now: i64 },
    #[error("no record batches in the request")]
    Empty,
}

impl BatchError {
    /// The Kafka error code a producer gets for this rejection.
    pub fn kafka_error_code(&self) -> i16 {
        use kafka_protocol::error::ResponseError as E;
        let code = match self {
            // The bytes are not what the producer meant to send.
            BatchError::Crc { .. }
            | BatchError::BadLength { .. }
            | BatchError::TooShort { .. }
            | BatchError::Records { .. }
            | BatchError::RecordCount { .. }
            | BatchError::Empty => E::CorruptMessage,
            BatchError::Magic(_) => E::UnsupportedForMessageFormat,
            BatchError::Compression(_) => E::UnsupportedCompressionType,
            BatchError::Timestamp { .. } => E::InvalidTimestamp,
        };
        code.code()
    }
}

//! Fetch v0-3 for clients older than Kafka 0.11: the request is served as
//! v4 (read_uncommitted, no session) and each partition's v2 batches are
//! down-converted to a message set (magic 0 for v0-1, magic 1 for v2-3),
//! uncompressed, without control batches or headers, as Kafka 3.x did.
//!
//! Differences from Kafka 3.x, on purpose: the first batch is returned even
//! when larger than the partition limit (KIP-74's rule; v0-2 brokers sent a
//! partial message and left the client to grow its fetch size), and a read
//! that converts to nothing (only transaction markers) reads on, so an old
//! client never sits on a marker's offset.

use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::FetchRequest;
use karnak_protocol::fetch_response::FetchResponseBody;
use karnak_protocol::legacy::{self, fetch::LegacyPartition, fetch::LegacyTopic};
use karnak_protocol::record_batch::BatchIter;
use karnak_storage::{FileSlice, Log};
use tracing::warn;

use super::fetch::WantedTopic;
use crate::response::{HandlerError, Response};

/// Reads past this many marker-only reads are not tried in one answer.
const MAX_EMPTY_READS: usize = 16;

pub fn decode(body: &Bytes, version: i16) -> Result<FetchRequest, HandlerError> {
    legacy::fetch::decode_request(body, version).map_err(|e| HandlerError::Decode {
        api: "Fetch",
        version,
        reason: e.to_string(),
    })
}

fn read_slice(slice: &FileSlice) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; slice.len];
    slice
        .file
        .read_exact_at(&mut buf, slice.position)
        .inspect_err(|e| {
            // Short is a segment truncated under the read, not a bad disk.
            if e.kind() != std::io::ErrorKind::UnexpectedEof {
                slice.health.read_failed(e)
            }
        })?;
    Ok(buf)
}

/// The offset after the last whole batch in `bytes`.
fn next_offset(bytes: &[u8]) -> Option<i64> {
    BatchIter::new(bytes)
        .map_while(Result::ok)
        .last()
        .map(|(_, h)| h.next_offset())
}

/// One partition's records as a message set of `magic`, reading on past
/// reads that hold only control batches.
fn convert(
    log: &Arc<Log>,
    first: Vec<u8>,
    fetch_offset: i64,
    max_bytes: usize,
    magic: i8,
) -> Result<Bytes, i16> {
    let mut bytes = first;
    let mut offset = fetch_offset;
    for _ in 0..MAX_EMPTY_READS {
        let set = legacy::message_set::from_batches(&bytes, magic, offset).map_err(|e| {
            warn!(
                topic = log.topic(),
                partition = log.partition(),
                "down-converting for an old fetch: {e}"
            );
            ResponseError::CorruptMessage.code()
        })?;
        if !set.is_empty() {
            return Ok(set);
        }
        let Some(next) = next_offset(&bytes) else {
            return Ok(set);
        };
        offset = next;
        let read = log
            .read_upto(offset, max_bytes, true, i64::MAX)
            .map_err(|e| super::storage_error_code(&e))?;
        match read.slice.filter(|s| s.len > 0) {
            None => return Ok(Bytes::new()),
            Some(s) => {
                bytes = read_slice(&s).map_err(|_| ResponseError::KafkaStorageError.code())?
            }
        }
    }
    Ok(Bytes::new())
}

/// The v0-3 answer for what the v4 read found.
pub fn answer(
    topics: &[WantedTopic],
    body: FetchResponseBody<FileSlice>,
    version: i16,
) -> Response {
    let magic = legacy::fetch::magic_for(version);
    let mut out = Vec::with_capacity(body.topics.len());
    for (t, wanted) in body.topics.into_iter().zip(topics) {
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for (p, w) in t.partitions.into_iter().zip(&wanted.partitions) {
            let mut part = LegacyPartition {
                partition: p.partition_index,
                error_code: p.error_code,
                high_watermark: p.high_watermark,
                records: Bytes::new(),
            };
            if let (Some((slice, _)), Ok(log)) = (p.records, &w.log) {
                let converted = read_slice(&slice)
                    .map_err(|e| {
                        warn!(
                            topic = log.topic(),
                            partition = log.partition(),
                            "read: {e}"
                        );
                        ResponseError::KafkaStorageError.code()
                    })
                    .and_then(|b| convert(log, b, w.fetch_offset, w.max_bytes, magic));
                match converted {
                    Ok(set) => part.records = set,
                    Err(code) => part.error_code = code,
                }
            }
            partitions.push(part);
        }
        out.push(LegacyTopic {
            name: t.name,
            partitions,
        });
    }
    Response::from_bytes(legacy::fetch::encode_response(&out, version), 0)
}

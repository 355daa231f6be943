//! Timestamp lookups (ListOffsets by time, max timestamp): the time index
//! narrows to a position, then batch and record headers are read from there.

use std::fs::File;
use std::path::Path;

use karnak_protocol::record_batch::{
    BatchHeader, Compression, HEADER_LEN, TimestampType, read_varint as varint,
};

use super::Log;
use crate::error::{IoContext, StorageError};
use crate::segment::LogSegment;

impl Log {
    /// ListOffsets by timestamp: (offset, timestamp) of the first record
    /// with timestamp >= `ts`.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>, StorageError> {
        for seg in self.segment_list() {
            if seg.max_ts().timestamp < ts {
                continue;
            }
            let end = seg.size();
            let mut pos = seg.time_lookup_position(ts);
            while let Some(h) = seg.header_at(pos, end)? {
                if h.max_timestamp >= ts {
                    return Ok(Some(self.record_for_timestamp(&seg, pos, &h, ts)?));
                }
                pos += h.total_size() as u64;
            }
        }
        Ok(None)
    }

    /// Within a batch whose max timestamp >= ts, the exact record when the
    /// batch is uncompressed CreateTime; otherwise the batch itself.
    fn record_for_timestamp(
        &self,
        seg: &LogSegment,
        pos: u64,
        h: &BatchHeader,
        ts: i64,
    ) -> Result<(i64, i64), StorageError> {
        if h.timestamp_type() != TimestampType::CreateTime
            || h.compression() != Ok(Compression::None)
        {
            return Ok((h.base_offset, h.max_timestamp));
        }
        let mut buf = vec![0u8; h.total_size()];
        seg.file.read_exact_at_ctx(&mut buf, pos, &seg.path)?;
        let mut rest = &buf[HEADER_LEN..];
        for _ in 0..h.record_count {
            let Some((len, n)) = varint(rest) else { break };
            let Some(body) = rest.get(n..n + len.max(0) as usize) else {
                break;
            };
            // attributes (1 byte), timestamp delta, offset delta
            let Some((ts_delta, n1)) = body.get(1..).and_then(varint) else {
                break;
            };
            let Some((off_delta, _)) = body.get(1 + n1..).and_then(varint) else {
                break;
            };
            let rts = h.base_timestamp + ts_delta;
            if rts >= ts {
                return Ok((h.base_offset + off_delta, rts));
            }
            rest = &rest[n + len.max(0) as usize..];
        }
        Ok((h.base_offset, h.max_timestamp))
    }

    /// ListOffsets MAX_TIMESTAMP: (timestamp, offset) of the batch with the
    /// largest max timestamp (its last offset). None when empty.
    pub fn max_timestamp_and_offset(&self) -> Result<Option<(i64, i64)>, StorageError> {
        let mut best: Option<(i64, i64)> = None;
        for seg in self.segment_list() {
            let m = seg.max_ts();
            if m.timestamp >= 0 && best.is_none_or(|(t, _)| m.timestamp > t) {
                best = Some((m.timestamp, m.offset));
            }
        }
        if best.is_none() && self.log_end_offset() > self.log_start_offset() {
            // Batches without timestamps: Kafka answers with the last record.
            return Ok(Some((-1, self.log_end_offset() - 1)));
        }
        Ok(best)
    }
}

trait ReadAtCtx {
    fn read_exact_at_ctx(&self, buf: &mut [u8], pos: u64, path: &Path) -> Result<(), StorageError>;
}
impl ReadAtCtx for File {
    fn read_exact_at_ctx(&self, buf: &mut [u8], pos: u64, path: &Path) -> Result<(), StorageError> {
        use std::os::unix::fs::FileExt;
        self.read_exact_at(buf, pos)
            .ctx(|| format!("reading {} at {pos}", path.display()))
    }
}

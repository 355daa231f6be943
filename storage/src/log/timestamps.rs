//! Timestamp lookups (ListOffsets by time, max timestamp): the time index
//! narrows to a position, then batch and record headers are read from there.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use karnak_protocol::record_batch::{BatchHeader, TimestampType};
use karnak_protocol::records::BatchRecords;

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

    /// Within a batch whose max timestamp >= ts, the first record with
    /// timestamp >= ts (compressed batches are decompressed, as Kafka
    /// does). LogAppendTime gives every record the batch's time, so the
    /// batch's first record; a batch that does not decode, the batch.
    fn record_for_timestamp(
        &self,
        seg: &LogSegment,
        pos: u64,
        h: &BatchHeader,
        ts: i64,
    ) -> Result<(i64, i64), StorageError> {
        if h.timestamp_type() != TimestampType::CreateTime {
            return Ok((h.base_offset, h.max_timestamp));
        }
        let mut buf = vec![0u8; h.total_size()];
        seg.file.read_exact_at_ctx(&mut buf, pos, &seg.path)?;
        match BatchRecords::decode(&buf, h) {
            Ok(set) => Ok(set
                .records
                .iter()
                .map(|r| (set.offset(r), set.timestamp(r)))
                .find(|(_, t)| *t >= ts)
                .unwrap_or((h.base_offset, h.max_timestamp))),
            Err(e) => {
                tracing::warn!(topic = %self.topic, partition = self.partition, offset = h.base_offset, error = %e, "timestamp lookup: batch does not decode");
                Ok((h.base_offset, h.max_timestamp))
            }
        }
    }

    /// ListOffsets MAX_TIMESTAMP: (timestamp, offset) of the first record
    /// with the largest timestamp (KAFKA-16310: the record, not its batch's
    /// last offset). None when empty.
    pub fn max_timestamp_and_offset(&self) -> Result<Option<(i64, i64)>, StorageError> {
        let mut best: Option<(i64, i64, Arc<LogSegment>)> = None;
        for seg in self.segment_list() {
            let m = seg.max_ts();
            if m.timestamp >= 0 && best.as_ref().is_none_or(|(t, _, _)| m.timestamp > *t) {
                best = Some((m.timestamp, m.offset, seg));
            }
        }
        let Some((ts, last_offset, seg)) = best else {
            if self.log_end_offset() > self.log_start_offset() {
                // Batches without timestamps: Kafka answers with the last record.
                return Ok(Some((-1, self.log_end_offset() - 1)));
            }
            return Ok(None);
        };
        match seg.find_batch(last_offset, seg.size())? {
            Some((pos, h)) => {
                let (offset, found_ts) = self.record_for_timestamp(&seg, pos, &h, ts)?;
                Ok(Some((found_ts, offset)))
            }
            None => Ok(Some((ts, last_offset))),
        }
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

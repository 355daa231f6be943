//! Reads: whole batches from an offset as a file slice for `sendfile`,
//! bounded by bytes (KIP-74 aware) and, for read_committed, by the last
//! stable offset.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{FileSlice, Log, ReadResult};
use crate::error::StorageError;
use crate::segment::{Extent, LogSegment};

impl Log {
    /// The segment holding `offset` and those after it; None when no
    /// segment starts at or below it.
    fn segments_from(&self, offset: i64) -> Option<Vec<Arc<LogSegment>>> {
        let segs = self.segments.read().unwrap_or_else(|e| e.into_inner());
        let (&first, _) = segs.range(..=offset).next_back()?;
        Some(segs.range(first..).map(|(_, s)| s.clone()).collect())
    }

    /// Reads whole batches from `offset`, up to `max_bytes` (KIP-74 aware).
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<ReadResult, StorageError> {
        self.read_upto(offset, max_bytes, min_one_batch, i64::MAX)
    }

    /// As [`Self::read`], returning only batches that end below
    /// `max_offset` (the last stable offset, for read_committed).
    pub fn read_upto(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
        max_offset: i64,
    ) -> Result<ReadResult, StorageError> {
        // An offline log's page cache may hold what the disk lost: serve none of it.
        self.check_online()?;
        match self.read_checked(offset, max_bytes, min_one_batch, max_offset) {
            // The disk failed a read (EIO): the partition goes offline, as
            // Kafka takes a log dir offline on any I/O error, so a replica
            // elsewhere can lead it.
            Err(e @ StorageError::Io { .. }) => Err(self.take_offline(e)),
            other => other,
        }
    }

    fn read_checked(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
        max_offset: i64,
    ) -> Result<ReadResult, StorageError> {
        let leo = self.log_end_offset.load(Ordering::Acquire);
        let start = self.log_start_offset();
        let hw = self.high_watermark();
        let result = |slice| ReadResult {
            slice,
            high_watermark: hw,
            log_start_offset: start,
        };
        if offset < start || offset > leo {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset: start,
                log_end_offset: leo,
            });
        }
        if offset == leo || offset >= max_offset {
            return Ok(result(None));
        }
        let Some(segments) = self.segments_from(offset) else {
            // Retention or DeleteRecords removed the segment holding
            // `offset` after the start was checked: it is below the log
            // start now. Serving the next segment would skip records
            // silently (a follower would get a hole in its log); Kafka
            // answers OFFSET_OUT_OF_RANGE when that segment is gone.
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset(),
                log_end_offset: leo,
            });
        };
        for seg in segments {
            if seg.base_offset >= max_offset {
                break;
            }
            let mut end = seg.size();
            if seg.next_offset() > max_offset {
                // Stop at the batch holding max_offset.
                if let Some((pos, _)) = seg.find_batch(max_offset, end)? {
                    end = pos;
                }
            }
            let Some((mut pos, h)) = seg.find_batch(offset, end)? else {
                continue;
            };
            if !seg.fully_checked() {
                // Bytes read back from disk unchecked are checked once on
                // the way out; a corrupt batch is left out (`segment::check`).
                loop {
                    match seg.checked_extent(pos, end, max_bytes as u64, min_one_batch)? {
                        Extent::Batches(0) => return Ok(result(None)),
                        Extent::Batches(len) => {
                            return Ok(result(Some(FileSlice {
                                file: seg.file.clone(),
                                position: pos,
                                len: len as usize,
                                health: self.health.clone(),
                            })));
                        }
                        Extent::CorruptAt { resume } => {
                            let mut next = resume;
                            if seg.next_header(&mut next, end)?.is_none() {
                                break;
                            }
                            pos = next;
                        }
                    }
                }
                continue;
            }
            let first = h.total_size() as u64;
            let len = if end - pos <= max_bytes as u64 {
                end - pos
            } else if first > max_bytes as u64 {
                if !min_one_batch {
                    return Ok(result(None));
                }
                first
            } else {
                seg.batch_boundary_below(pos, pos + max_bytes as u64, end)? - pos
            };
            return Ok(result(Some(FileSlice {
                file: seg.file.clone(),
                position: pos,
                len: len as usize,
                health: self.health.clone(),
            })));
        }
        Ok(result(None))
    }
}

//! One cleaning of one log: where its dirty section is ([`assess`]), the
//! offset map over it, and the rewrite of its sealed segments in groups.

use std::collections::HashMap;
use std::sync::Arc;

use karnak_protocol::control::parse_marker;
use karnak_protocol::record_batch::{BatchHeader, check_crc};

use super::offset_map::{OffsetMap, SLOT_BYTES};
use super::records::{self, BatchRecords, delete_horizon};
use super::segment_io::{BatchReader, CleanedWriter, IoGate, discard_cleaned};
use super::txn::CleanedTxns;
use super::{CleanStats, Cleanable, Cleaner};
use crate::error::StorageError;
use crate::log::{LastRecord, Log};
use crate::segment::LogSegment;

/// Where `log`'s dirty section is at `now_ms` (Kafka's cleanableOffsets,
/// calculateCleanableBytes and maxCompactionDelay).
pub fn assess(log: &Log, now_ms: i64) -> Result<Cleanable, StorageError> {
    let cfg = log.config();
    let segs = log.segment_list();
    let Some(active) = segs.last() else {
        return Ok(nothing(log.log_start_offset()));
    };
    let sealed = &segs[..segs.len() - 1];
    let start = log.log_start_offset();
    // A checkpoint behind the log start (retention) or past its end (a
    // log recreated or truncated) starts over from the log start.
    let first_dirty = match log.clean_offset() {
        Some(o) if o >= start && o <= log.log_end_offset() => o,
        _ => start,
    };
    // Segments holding offsets at or after `first_dirty`, the active one aside.
    let dirty_from = sealed.partition_point(|s| s.next_offset() <= first_dirty);
    let dirty = &sealed[dirty_from..];
    let mut uncleanable = log.last_stable_offset().min(active.base_offset);
    let min_lag = cfg.min_compaction_lag_ms.max(0);
    if min_lag > 0
        && let Some(s) = dirty
            .iter()
            .find(|s| s.max_ts().timestamp > now_ms.saturating_sub(min_lag))
    {
        uncleanable = uncleanable.min(s.base_offset);
    }
    let uncleanable = uncleanable.max(first_dirty);
    // Whole segments only: the one holding `uncleanable` is not cleaned.
    let first_uncleanable = sealed
        .iter()
        .rev()
        .find(|s| s.base_offset <= uncleanable)
        .filter(|_| uncleanable < active.base_offset)
        .map_or(active.base_offset, |s| s.base_offset);
    let clean_bytes: u64 = sealed
        .iter()
        .filter(|s| s.base_offset < first_dirty)
        .map(|s| s.size())
        .sum();
    let cleanable_bytes: u64 = dirty
        .iter()
        .filter(|s| s.base_offset < first_uncleanable)
        .map(|s| s.size())
        .sum();
    let total = clean_bytes + cleanable_bytes;
    let dirty_ratio = if total == 0 {
        0.0
    } else {
        cleanable_bytes as f64 / total as f64
    };
    let mut compaction_delay_ms = 0;
    let max_lag = cfg.max_compaction_lag_ms.max(0);
    if max_lag < i64::MAX {
        // Kafka looks at each dirty segment's first batch timestamp.
        let clean_until = now_ms.saturating_sub(max_lag);
        let mut earliest = i64::MAX;
        for s in dirty {
            if let Some(h) = s.header_at(0, s.size())?
                && h.max_timestamp > 0
            {
                earliest = earliest.min(h.max_timestamp);
            }
        }
        if earliest < clean_until {
            compaction_delay_ms = clean_until - earliest;
        }
    }
    Ok(Cleanable {
        first_dirty_offset: first_dirty,
        first_uncleanable_offset: first_uncleanable.max(first_dirty),
        clean_bytes,
        cleanable_bytes,
        dirty_ratio,
        compaction_delay_ms,
    })
}

fn nothing(start: i64) -> Cleanable {
    Cleanable {
        first_dirty_offset: start,
        first_uncleanable_offset: start,
        clean_bytes: 0,
        cleanable_bytes: 0,
        dirty_ratio: 0.0,
        compaction_delay_ms: 0,
    }
}

fn corrupt(seg: &LogSegment, pos: u64, reason: String) -> StorageError {
    StorageError::Corrupt {
        path: seg.path.clone(),
        reason: format!("batch at position {pos}: {reason}"),
    }
}

/// Cleans `log` (which must be compacted) over the section `c` describes.
pub(super) fn clean_log(
    cleaner: &mut Cleaner,
    log: &Log,
    c: &Cleanable,
    now_ms: i64,
) -> Result<CleanStats, StorageError> {
    let cfg = log.config();
    let mut stats = CleanStats {
        topic: log.topic().to_string(),
        partition: log.partition(),
        first_dirty_offset: c.first_dirty_offset,
        end_offset: c.first_dirty_offset,
        ..Default::default()
    };
    let started_sleeping = cleaner.throttler.slept();
    let chunk = cleaner.config.io_buffer_bytes;
    let load = cleaner.config.dedupe_buffer_load_factor.clamp(0.01, 0.99);
    // The map need not outgrow the section: it cannot hold more keys than
    // the section has offsets.
    let span = (c.first_uncleanable_offset - c.first_dirty_offset).max(1) as f64;
    let budget = (cleaner.config.dedupe_buffer_bytes / SLOT_BYTES).max(2);
    let slots = ((span / load) as usize).saturating_add(2).min(budget);
    let mut map = OffsetMap::with_slots(slots);
    let max_keys = ((slots as f64 * load) as usize).max(1);
    let segs = log.segment_list();
    let abort = log.cleaning_abort_flag();
    let mut gate = IoGate {
        throttler: &mut cleaner.throttler,
        stop: &cleaner.stop,
        abort,
        bytes_read: 0,
        bytes_written: 0,
    };
    build_offset_map(log, &segs, c, &mut map, max_keys, chunk, &mut gate)?;
    stats.map_keys = map.len();
    stats.map_utilization = map.utilization();
    let end = map.latest_offset() + 1;
    if end <= c.first_dirty_offset {
        tracing::warn!(topic = %log.topic(), partition = log.partition(),
            "the cleaner's offset map filled before any progress; raise log.cleaner.dedupe.buffer.size");
        return Ok(stats);
    }
    // Everything below `end` is rewritten: sealed segments only, since
    // `end` is at most the first uncleanable offset.
    let targets: Vec<Arc<LogSegment>> = segs[..segs.len().saturating_sub(1)]
        .iter()
        .filter(|s| s.base_offset < end)
        .cloned()
        .collect();
    let producers = log.producer_last_records();
    let mut txns = CleanedTxns::default();
    let mut filter = Filter {
        map: &map,
        now_ms,
        delete_retention_ms: cfg.delete_retention_ms,
        producers: &producers,
        round_upper: c.first_uncleanable_offset,
    };
    for group in group_segments(
        &targets,
        &segs,
        cfg.segment_bytes,
        c.first_uncleanable_offset,
    ) {
        let next_base = next_base_after(&segs, group[group.len() - 1].base_offset);
        let swapped = clean_group(
            log,
            group,
            next_base,
            &mut filter,
            &mut txns,
            chunk,
            &mut gate,
            &mut stats,
        )?;
        if !swapped {
            // Retention or a close got there first: try again next time.
            return Ok(stats);
        }
        stats.groups += 1;
        stats.segments_cleaned += group.len();
    }
    stats.end_offset = end;
    stats.bytes_read = gate.bytes_read;
    stats.bytes_written = gate.bytes_written;
    stats.throttled = cleaner.throttler.slept() - started_sleeping;
    tracing::info!(topic = %log.topic(), partition = log.partition(),
        dirty_from = stats.first_dirty_offset, dirty_to = stats.end_offset,
        segments = stats.segments_cleaned, groups = stats.groups,
        read_bytes = stats.bytes_read, written_bytes = stats.bytes_written,
        records_read = stats.records_read, records_kept = stats.records_retained,
        "cleaned log");
    Ok(stats)
}

fn next_base_after(segs: &[Arc<LogSegment>], base: i64) -> i64 {
    let i = segs.partition_point(|s| s.base_offset <= base);
    segs.get(i).map_or(i64::MAX, |s| s.base_offset)
}

#[allow(clippy::too_many_arguments)]
fn build_offset_map(
    log: &Log,
    segs: &[Arc<LogSegment>],
    c: &Cleanable,
    map: &mut OffsetMap,
    max_keys: usize,
    chunk: usize,
    gate: &mut IoGate<'_>,
) -> Result<(), StorageError> {
    let (from, upto) = (c.first_dirty_offset, c.first_uncleanable_offset);
    let mut txns = CleanedTxns::default();
    txns.add_aborted(log.aborted_txns(from, upto));
    let dirty: Vec<&Arc<LogSegment>> = segs
        .iter()
        .filter(|s| s.base_offset < upto && s.next_offset() > from)
        .collect();
    for (i, seg) in dirty.iter().enumerate() {
        let seg_upper = dirty.get(i + 1).map_or(upto, |s| s.base_offset);
        let Some((start, _)) = seg.find_batch(from, seg.size())? else {
            map.update_latest_offset(seg_upper - 1);
            continue;
        };
        let mut reader = BatchReader::new(seg, start, chunk);
        while let Some((pos, h, bytes)) = reader.next_batch(gate)? {
            if h.is_control() {
                let kind = parse_marker(bytes, &h).map(|(k, _)| k);
                txns.on_control(&h, kind, h.record_count == 0);
            } else if !txns.on_batch(&h) {
                let recs = BatchRecords::decode(bytes, &h)
                    .map_err(|e| corrupt(seg, pos, e.to_string()))?;
                for r in &recs.records {
                    let offset = recs.offset(r);
                    if let Some(key) = recs.key(r)
                        && offset >= from
                    {
                        // Full: the section is cleaned up to the last whole
                        // batch mapped; the rest waits for the next cleaning.
                        if map.len() >= max_keys || !map.put(key, offset) {
                            return Ok(());
                        }
                    }
                }
            }
            if h.last_offset() >= from {
                map.update_latest_offset(h.last_offset());
            }
        }
        // The offsets after the last batch (a gap) belong to this segment too.
        map.update_latest_offset(seg_upper - 1);
    }
    Ok(())
}

/// Consecutive segments whose sizes add up to at most `max_bytes` (and
/// whose offsets fit a 32-bit relative offset), each group to become one
/// cleaned segment (Kafka's groupSegmentsBySize).
fn group_segments<'a>(
    targets: &'a [Arc<LogSegment>],
    all: &[Arc<LogSegment>],
    max_bytes: u64,
    first_uncleanable: i64,
) -> Vec<&'a [Arc<LogSegment>]> {
    let max_bytes = max_bytes.min(i32::MAX as u64);
    let mut groups = Vec::new();
    let mut i = 0;
    while i < targets.len() {
        let first = targets[i].base_offset;
        let mut bytes = targets[i].size();
        let mut j = i + 1;
        while j < targets.len() {
            let s = &targets[j];
            // The worst case last offset of `s`: just below what follows it.
            let last = next_base_after(all, s.base_offset).min(first_uncleanable) - 1;
            if bytes + s.size() > max_bytes || (s.size() > 0 && last - first > i32::MAX as i64) {
                break;
            }
            bytes += s.size();
            j += 1;
        }
        groups.push(&targets[i..j]);
        i = j;
    }
    groups
}

/// The per-batch decision of a cleaning (Kafka's LogCleaner record filter).
struct Filter<'a> {
    map: &'a OffsetMap,
    now_ms: i64,
    delete_retention_ms: i64,
    producers: &'a HashMap<i64, LastRecord>,
    /// The first uncleanable offset: the batch ending there is kept even
    /// when emptied, so the cleaned range's last offset stays known.
    round_upper: i64,
}

enum Kept {
    Original,
    Rebuilt(Vec<u8>),
    Dropped,
}

impl Filter<'_> {
    fn is_last_of_producer(&self, h: &BatchHeader) -> bool {
        h.producer_id >= 0
            && self
                .producers
                .get(&h.producer_id)
                .is_some_and(|l| match l.last_data_offset {
                    // Its last data batch carries its last sequence number.
                    Some(o) => h.last_offset() == o,
                    // Only a marker left: it carries the producer's epoch.
                    None => h.is_control() && h.producer_epoch == l.epoch,
                })
    }

    fn keep_record(
        &self,
        h: &BatchHeader,
        recs: &BatchRecords<'_>,
        i: usize,
        stats: &mut CleanStats,
    ) -> bool {
        let r = &recs.records[i];
        let offset = recs.offset(r);
        if offset > self.map.latest_offset() {
            return true;
        }
        let Some(key) = recs.key(r) else {
            stats.keyless_records += 1;
            return false;
        };
        let newest = offset >= self.map.get(key);
        let keep_tombstone = delete_horizon(h).is_none_or(|t| self.now_ms < t);
        newest && (r.has_value() || keep_tombstone)
    }

    fn batch(
        &self,
        bytes: &[u8],
        h: &BatchHeader,
        txns: &mut CleanedTxns,
        stats: &mut CleanStats,
    ) -> Result<Kept, String> {
        let control = h.is_control();
        let can_discard = if control {
            let kind = parse_marker(bytes, h).map(|(k, _)| k);
            txns.on_control(h, kind, h.record_count == 0)
        } else {
            txns.on_batch(h)
        };
        let horizon = delete_horizon(h);
        // A marker with nothing of its transaction left still waits out
        // its delete horizon; an aborted batch's records go at once.
        let discard_records = if control {
            can_discard && horizon.is_some_and(|t| t <= self.now_ms)
        } else {
            can_discard
        };
        let retain_empty = self.is_last_of_producer(h) || h.next_offset() == self.round_upper;
        if discard_records && !retain_empty {
            return Ok(Kept::Dropped);
        }
        check_crc(bytes, h).map_err(|e| e.to_string())?;
        let recs = BatchRecords::decode(bytes, h).map_err(|e| e.to_string())?;
        let n = recs.records.len();
        stats.records_read += n as u64;
        let keep: Vec<bool> = (0..n)
            .map(|i| !discard_records && (control || self.keep_record(h, &recs, i, stats)))
            .collect();
        let kept = keep.iter().filter(|k| **k).count();
        stats.records_retained += kept as u64;
        if kept == 0 {
            return Ok(if retain_empty {
                Kept::Rebuilt(records::empty_batch(h))
            } else {
                Kept::Dropped
            });
        }
        let tombstones = recs
            .records
            .iter()
            .zip(&keep)
            .any(|(r, k)| *k && !r.has_value());
        // The first cleaning to keep a tombstone (or a removable marker)
        // starts its delete.retention.ms.
        let set_horizon = (tombstones || (can_discard && control)) && horizon.is_none();
        if kept == n && !set_horizon {
            return Ok(Kept::Original);
        }
        let horizon = if set_horizon {
            Some(self.now_ms.saturating_add(self.delete_retention_ms))
        } else {
            horizon
        };
        Ok(Kept::Rebuilt(records::rebuild(h, &recs, &keep, horizon)?))
    }
}

/// Rewrites one group into `<base>.log.cleaned` and swaps it in. False
/// when the swap was abandoned (segments gone, log closed).
#[allow(clippy::too_many_arguments)]
fn clean_group(
    log: &Log,
    group: &[Arc<LogSegment>],
    next_base: i64,
    filter: &mut Filter<'_>,
    txns: &mut CleanedTxns,
    chunk: usize,
    gate: &mut IoGate<'_>,
    stats: &mut CleanStats,
) -> Result<bool, StorageError> {
    let base = group[0].base_offset;
    let dir = log.dir();
    let cfg = log.config();
    let written = (|| {
        let mut out = CleanedWriter::create(dir, base, cfg.index_interval_bytes)?;
        for (i, seg) in group.iter().enumerate() {
            let upper = group.get(i + 1).map_or(next_base, |s| s.base_offset);
            txns.add_aborted(log.aborted_txns(seg.base_offset, upper));
            let mut reader = BatchReader::new(seg, 0, chunk);
            while let Some((pos, h, bytes)) = reader.next_batch(gate)? {
                match filter
                    .batch(bytes, &h, txns, stats)
                    .map_err(|e| corrupt(seg, pos, e))?
                {
                    Kept::Dropped => {}
                    Kept::Original => {
                        out.append(bytes, &h)?;
                        gate.wrote(bytes.len() as u64)?;
                    }
                    Kept::Rebuilt(b) => {
                        let nh =
                            BatchHeader::parse(&b).map_err(|e| corrupt(seg, pos, e.to_string()))?;
                        out.append(&b, &nh)?;
                        gate.wrote(b.len() as u64)?;
                    }
                }
            }
        }
        let retained = txns.take_retained();
        let seg = out.finish(&retained, next_base)?;
        Ok::<_, StorageError>((seg, retained))
    })();
    let (seg, retained) = match written {
        Ok(w) => w,
        Err(e) => {
            discard_cleaned(dir, base);
            return Err(e);
        }
    };
    log.replace_segments(group, seg, retained)
}

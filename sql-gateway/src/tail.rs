//! The tail cache: each partition's newest records (those no face covers
//! yet: the active segment, and sealed segments whose face is not built)
//! decoded once into Arrow batches with the topic's JSON columns, shared by
//! every query and extended as the partition grows. Without it each query
//! decodes the tail again, parsing every value's JSON, at several times the
//! cost per row of a face.
//!
//! An entry holds every record of its partition in `[start, end)` below
//! the last stable offset it was filled to, so what it holds never changes
//! under it except by the cleaner (which the log counts: [`Log::rewrites`])
//! or a truncation (which replaces the `Log`, and with it the key). Rows
//! below the partition's log start or under a face built since are trimmed
//! off; a query never reads them from here, since its ranges start above.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use arrow::array::{Array, ArrayRef, Int64Array, RecordBatch};
use arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::common::{DataFusionError, Result};
use karnak_storage::Log;
use karnak_storage::columnar::{self, COL_OFFSET, COL_VALUE, PartitionScan};
use karnak_storage::value_format::json::{self, JsonColumn};

/// Rows per cached batch, and bytes per log read while filling.
const FILL_ROWS: usize = 8192;
const FILL_CHUNK_BYTES: usize = 4 << 20;

/// An entry unused this long may make room for another; one used since
/// is kept, and the other partition's query decodes its tail itself (so
/// tails that do not fit together do not push each other out in turn).
const IDLE_AFTER: Duration = Duration::from_secs(10);

/// `karnak_sql_tail_cache_bytes`: Arrow bytes the cache holds.
const CACHE_BYTES: &str = "karnak_sql_tail_cache_bytes";
/// `karnak_sql_tail_rows_total{from}`: tail rows queries read from the
/// cache (`cache`) and rows decoded into it (`log`).
const TAIL_ROWS: &str = "karnak_sql_tail_rows_total";

pub struct TailCache {
    /// Arrow bytes all entries may hold together.
    budget: usize,
    /// Bytes of every live entry (an entry gives its bytes back when it is
    /// dropped, also one evicted while a query still held it).
    used: Arc<AtomicUsize>,
    entries: Mutex<HashMap<usize, Arc<Mutex<Entry>>>>,
    /// Rows per cached batch (at most) and
    /// bytes per log read while filling.
    fill_rows: usize,
    fill_chunk_bytes: usize,
    /// [`IDLE_AFTER`].
    idle_after: Duration,
}

impl std::fmt::Debug for TailCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TailCache")
            .field("budget", &self.budget)
            .field("used", &self.used.load(Ordering::Relaxed))
            .finish()
    }
}

struct Entry {
    log: Weak<Log>,
    /// The log's rewrite count when filled.
    rewrites: u64,
    json: Vec<JsonColumn>,
    /// Every record in `[start, end)` is in `batches` (offsets may be
    /// sparse: control records and aborted transactions have no row).
    start: i64,
    end: i64,
    batches: VecDeque<Cached>,
    bytes: usize,
    last_used: Instant,
    used: Arc<AtomicUsize>,
}

impl Entry {
    fn push(&mut self, c: Cached) {
        self.bytes += c.bytes;
        self.used.fetch_add(c.bytes, Ordering::Relaxed);
        self.batches.push_back(c);
    }

    fn pop_front(&mut self) {
        if let Some(c) = self.batches.pop_front() {
            self.bytes -= c.bytes;
            self.used.fetch_sub(c.bytes, Ordering::Relaxed);
        }
    }

    fn clear(&mut self) {
        self.used.fetch_sub(self.bytes, Ordering::Relaxed);
        self.bytes = 0;
        self.batches.clear();
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.clear();
    }
}

struct Cached {
    /// Offsets of the first and last row.
    first: i64,
    last: i64,
    batch: RecordBatch,
    bytes: usize,
}

/// What the cache returned for a range: rows for `[from, covered)`; the
/// caller decodes `[covered, to)` itself.
pub struct TailRows {
    pub batches: Vec<RecordBatch>,
    pub covered: i64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The cached batches' schema: the fixed columns, then the JSON ones.
pub fn cached_schema(json: &[JsonColumn]) -> SchemaRef {
    with_json_fields(&columnar::schema(), json)
}

/// `base`'s fields, then one nullable field per JSON column.
pub(crate) fn with_json_fields(base: &Schema, json: &[JsonColumn]) -> SchemaRef {
    let mut fields: Vec<Field> = base.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.extend(
        json.iter()
            .map(|c| Field::new(&c.name, c.data_type.clone(), true)),
    );
    Arc::new(Schema::new(fields))
}

impl TailCache {
    /// A cache of at most `budget` bytes (0: nothing is cached).
    pub fn new(budget: usize) -> Self {
        TailCache {
            budget,
            used: Arc::new(AtomicUsize::new(0)),
            entries: Mutex::new(HashMap::new()),
            fill_rows: FILL_ROWS,
            fill_chunk_bytes: FILL_CHUNK_BYTES,
            idle_after: IDLE_AFTER,
        }
    }

    /// Smaller reads while filling, so tests see the cap at work.
    #[cfg(test)]
    fn with_fill(mut self, rows: usize, chunk_bytes: usize) -> Self {
        self.fill_rows = rows;
        self.fill_chunk_bytes = chunk_bytes;
        self
    }

    #[cfg(test)]
    fn with_idle_after(mut self, idle_after: Duration) -> Self {
        self.idle_after = idle_after;
        self
    }

    /// Most bytes one partition's entry holds (give or take one log read):
    /// a quarter of the budget, so one long tail does not push every other
    /// partition out.
    pub fn entry_cap(&self) -> usize {
        self.budget / 4
    }

    /// Log bytes a partition's tail may span and still be cached: Arrow
    /// rows take about twice their log bytes (uncompressed, plus offsets).
    pub fn tail_log_bytes(&self) -> u64 {
        (self.entry_cap() / 2) as u64
    }

    pub fn bytes(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Rows of `log` in `[from, to)` (`to` at or below its last stable
    /// offset) from the cache, which holds the partition from
    /// `tail_start`; with `fill`, decoding what it lacks first, as far as
    /// its budget allows. None when the range starts below the cached part.
    /// Blocking file I/O when filling: call from a blocking thread.
    pub fn read(
        &self,
        log: &Arc<Log>,
        tail_start: i64,
        json: &[JsonColumn],
        from: i64,
        to: i64,
        fill: bool,
    ) -> Result<Option<TailRows>> {
        if self.budget == 0 {
            return Ok(None);
        }
        let start = tail_start.max(log.log_start_offset());
        let key = Arc::as_ptr(log) as usize;
        let mut entries = lock(&self.entries);
        if !entries.contains_key(&key) {
            // Entries of logs that are gone go when a new one comes, not
            // on every read (a sweep is a pass over every partition).
            entries.retain(|_, e| !e.try_lock().is_ok_and(|e| e.log.strong_count() == 0));
        }
        let entry = entries
            .entry(key)
            .or_insert_with(|| {
                Arc::new(Mutex::new(Entry {
                    log: Arc::downgrade(log),
                    rewrites: log.rewrites(),
                    json: json.to_vec(),
                    start,
                    end: start,
                    batches: VecDeque::new(),
                    bytes: 0,
                    last_used: Instant::now(),
                    used: self.used.clone(),
                }))
            })
            .clone();
        drop(entries);
        // Held while filling: a second query on this partition waits for
        // the first's decode instead of doing it again.
        let mut e = lock(&entry);
        e.last_used = Instant::now();
        let same_log = e.log.upgrade().is_some_and(|l| Arc::ptr_eq(&l, log));
        if !same_log || e.rewrites != log.rewrites() || e.json != json || start < e.start {
            self.reset(&mut e, log, json, start);
        } else if start > e.start {
            self.trim(&mut e, start);
        }
        if from < e.start {
            return Ok(None);
        }
        if fill && e.end < to {
            self.fill(&mut e, log, to)?;
        }
        let covered = to.min(e.end).max(from);
        let batches = slice(&e.batches, from, covered);
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        metrics::counter!(TAIL_ROWS, "from" => "cache").increment(rows as u64);
        drop(e);
        self.evict(key);
        Ok(Some(TailRows { batches, covered }))
    }

    fn reset(&self, e: &mut Entry, log: &Arc<Log>, json: &[JsonColumn], start: i64) {
        e.clear();
        e.log = Arc::downgrade(log);
        e.rewrites = log.rewrites();
        e.json = json.to_vec();
        e.start = start;
        e.end = start;
    }

    /// Drops the batches wholly below `start`.
    fn trim(&self, e: &mut Entry, start: i64) {
        while e.batches.front().is_some_and(|b| b.last < start) {
            e.pop_front();
        }
        e.start = start;
        e.end = e.end.max(start);
    }

    /// Decodes `[e.end, to)` into the entry, stopping at its cap.
    fn fill(&self, e: &mut Entry, log: &Arc<Log>, to: i64) -> Result<()> {
        let schema = cached_schema(&e.json);
        let all = vec![true; e.json.len()];
        let mut scan = PartitionScan::new(
            log.clone(),
            e.end,
            to,
            self.fill_rows,
            self.fill_chunk_bytes,
        );
        let cap = self.entry_cap();
        while e.bytes < cap {
            if self.bytes() >= self.budget && !self.evict_idle(Some(Arc::as_ptr(log) as usize)) {
                break;
            }
            let next = scan
                .next_batch()
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            let Some(b) = next else {
                e.end = to;
                return Ok(());
            };
            // Where the scan stands is past every row it returned.
            let end = scan.position().min(to);
            let decoded = with_json(b, &schema, &e.json, &all)?;
            metrics::counter!(TAIL_ROWS, "from" => "log").increment(decoded.num_rows() as u64);
            // A log read decodes into one batch of every record it held:
            // cut into batches of a query's size, each copied into its own
            // buffers (a slice would keep, and be counted with, the whole).
            for at in (0..decoded.num_rows()).step_by(self.fill_rows) {
                let n = self.fill_rows.min(decoded.num_rows() - at);
                let rows = arrow::array::UInt32Array::from_iter_values(at as u32..(at + n) as u32);
                let cached = arrow::compute::take_record_batch(&decoded, &rows)?;
                let Some((first, last)) = offsets(&cached)
                    .map(|o| o.values())
                    .and_then(|o| Some((*o.first()?, *o.last()?)))
                else {
                    return Err(DataFusionError::Internal(
                        "a tail batch without offsets".into(),
                    ));
                };
                let bytes = cached.get_array_memory_size();
                e.push(Cached {
                    first,
                    last,
                    batch: cached,
                    bytes,
                });
            }
            e.end = end;
        }
        Ok(())
    }

    /// Empties the least recently used entry idle for [`IDLE_AFTER`] (never
    /// `keep`, nor one a query holds). False when there is none.
    fn evict_idle(&self, keep: Option<usize>) -> bool {
        let mut entries = lock(&self.entries);
        let victim = entries
            .iter()
            .filter(|(k, _)| Some(**k) != keep)
            .filter_map(|(k, e)| e.try_lock().ok().map(|e| (*k, e.last_used, e.bytes)))
            .filter(|(_, used, bytes)| *bytes > 0 && used.elapsed() >= self.idle_after)
            .min_by_key(|(_, used, _)| *used);
        let Some((k, _, _)) = victim else {
            return false;
        };
        // Its bytes come back when the last holder lets go (now, unless a
        // query is just about to read it).
        entries.remove(&k);
        true
    }

    /// Over budget (a fill may pass it by one log read), drops idle
    /// entries.
    fn evict(&self, keep: usize) {
        while self.bytes() > self.budget && self.evict_idle(Some(keep)) {}
        metrics::gauge!(CACHE_BYTES).set(self.bytes() as f64);
    }
}

fn offsets(b: &RecordBatch) -> Option<&Int64Array> {
    b.column_by_name(COL_OFFSET)
        .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
}

/// The rows of `batches` with offsets in `[from, to)`, as slices.
fn slice(batches: &VecDeque<Cached>, from: i64, to: i64) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    for c in batches {
        if c.last < from || c.first >= to {
            continue;
        }
        let Some(offsets) = offsets(&c.batch).map(|o| o.values()) else {
            continue;
        };
        let lo = offsets.partition_point(|o| *o < from);
        let hi = offsets.partition_point(|o| *o < to);
        if hi > lo {
            out.push(c.batch.slice(lo, hi - lo));
        }
    }
    out
}

/// A batch of the fixed columns with the JSON columns decoded after them.
pub(crate) fn with_json(
    b: RecordBatch,
    schema: &SchemaRef,
    json: &[JsonColumn],
    wanted: &[bool],
) -> Result<RecordBatch> {
    let n = b.num_rows();
    let mut cols: Vec<ArrayRef> = b.columns().to_vec();
    if !json.is_empty() {
        match b
            .column_by_name(COL_VALUE)
            .and_then(|v| v.as_any().downcast_ref::<arrow::array::BinaryArray>())
        {
            Some(values) => cols.extend(json::decode(values, json, wanted)),
            None => cols.extend(
                json.iter()
                    .map(|c| arrow::array::new_null_array(&c.data_type, n)),
            ),
        }
    }
    Ok(RecordBatch::try_new(schema.clone(), cols)?)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use arrow::array::AsArray;
    use arrow::datatypes::{DataType, Int64Type};
    use bytes::Bytes;
    use karnak_protocol::record_batch::Compression;
    use karnak_storage::test_support::keyed_batch;
    use karnak_storage::{LogConfig, LogManager};

    use super::*;

    fn uid_column() -> Vec<JsonColumn> {
        json::columns(vec![("uid".into(), DataType::Int64)], &[])
    }

    /// A log of one partition; record i's value is `{"uid": i}` under key
    /// `k{i % keys}`.
    fn log_with(dir: &std::path::Path, configs: &[(&str, &str)]) -> (LogManager, Arc<Log>) {
        let logs = LogManager::open(dir, LogConfig::default()).unwrap();
        let configs: BTreeMap<String, String> = configs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let topic = logs.create_topic("t", 1, configs).unwrap();
        let log = topic.logs[0].clone();
        (logs, log)
    }

    fn append(log: &Log, from: i64, n: i64, keys: i64) {
        let kv: Vec<(Vec<u8>, Vec<u8>)> = (from..from + n)
            .map(|i| {
                let key = format!("k{}", i % keys).into_bytes();
                (key, format!("{{\"uid\": {i}}}").into_bytes())
            })
            .collect();
        let records: Vec<_> = kv
            .iter()
            .map(|(k, v)| (Some(k.as_slice()), Some(v.as_slice())))
            .collect();
        let batch = keyed_batch(1_000 + from, &records, Compression::Lz4, None);
        log.append(&Bytes::from(batch), 0, None).unwrap();
    }

    fn uids(rows: &TailRows) -> Vec<i64> {
        rows.batches
            .iter()
            .flat_map(|b| {
                let col = b.column_by_name("uid").unwrap().as_primitive::<Int64Type>();
                col.iter().map(|v| v.unwrap()).collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn the_tail_is_decoded_once_then_extended_as_the_log_grows() {
        let dir = tempfile::tempdir().unwrap();
        let (_logs, log) = log_with(dir.path(), &[]);
        let cache = TailCache::new(64 << 20).with_fill(100, 64 << 10);
        let json = uid_column();
        append(&log, 0, 100, 100);
        let end = log.last_stable_offset();
        let rows = cache
            .read(&log, i64::MIN, &json, 0, end, true)
            .unwrap()
            .unwrap();
        assert_eq!(rows.covered, 100);
        assert_eq!(uids(&rows), (0..100).collect::<Vec<_>>());
        assert!(cache.bytes() > 0);

        // Without filling, the cached part is all it gives: proof it is kept.
        append(&log, 100, 50, 100);
        let end = log.last_stable_offset();
        let rows = cache
            .read(&log, i64::MIN, &json, 10, end, false)
            .unwrap()
            .unwrap();
        assert_eq!((rows.covered, uids(&rows)), (100, (10..100).collect()));
        // Filling decodes only the new records.
        let rows = cache
            .read(&log, i64::MIN, &json, 10, end, true)
            .unwrap()
            .unwrap();
        assert_eq!((rows.covered, uids(&rows)), (150, (10..150).collect()));
        let rows = cache
            .read(&log, i64::MIN, &json, 120, 130, false)
            .unwrap()
            .unwrap();
        assert_eq!((rows.covered, uids(&rows)), (130, (120..130).collect()));

        // Another column set starts over.
        let other = json::columns(vec![("uid".into(), DataType::Utf8)], &[]);
        let rows = cache
            .read(&log, i64::MIN, &other, 0, end, false)
            .unwrap()
            .unwrap();
        assert_eq!((rows.covered, rows.batches.len()), (0, 0));

        // A tail that now starts later (a face was built below it) drops
        // what is below, and a range under it is not the cache's.
        cache.read(&log, i64::MIN, &json, 0, 100, true).unwrap();
        cache.read(&log, i64::MIN, &json, 0, end, true).unwrap();
        let before = cache.bytes();
        assert!(
            cache
                .read(&log, 100, &json, 50, end, false)
                .unwrap()
                .is_none()
        );
        let rows = cache
            .read(&log, 100, &json, 100, end, false)
            .unwrap()
            .unwrap();
        assert_eq!((rows.covered, uids(&rows)), (150, (100..150).collect()));
        assert!(cache.bytes() < before, "the batch below 100 is gone");
    }

    #[test]
    fn a_cleaned_log_is_decoded_again() {
        let dir = tempfile::tempdir().unwrap();
        let (_logs, log) = log_with(dir.path(), &[("cleanup.policy", "compact")]);
        let cache = TailCache::new(64 << 20);
        let json = uid_column();
        for i in 0..10 {
            append(&log, i * 20, 20, 4);
        }
        log.roll().unwrap();
        append(&log, 200, 4, 4);
        let end = log.last_stable_offset();
        let rows = cache
            .read(&log, i64::MIN, &json, 0, end, true)
            .unwrap()
            .unwrap();
        assert_eq!(uids(&rows).len(), 204);
        let stats = log.compact(i64::MAX / 2).unwrap();
        assert!(stats.is_some(), "the sealed segment was cleaned");
        let rows = cache
            .read(&log, i64::MIN, &json, 0, end, false)
            .unwrap()
            .unwrap();
        assert_eq!(
            rows.covered, 0,
            "what was cached before the cleaning is dropped"
        );
        let rows = cache
            .read(&log, i64::MIN, &json, 0, end, true)
            .unwrap()
            .unwrap();
        // Each key's last record below the active segment, and the active one.
        assert_eq!(uids(&rows), vec![196, 197, 198, 199, 200, 201, 202, 203]);
    }

    #[test]
    fn entries_stay_within_the_budget_and_busy_ones_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let logs = LogManager::open(dir.path(), LogConfig::default()).unwrap();
        let topic = logs.create_topic("t", 6, BTreeMap::new()).unwrap();
        let json = uid_column();
        for log in &topic.logs {
            for i in 0..20 {
                append(log, i * 1000, 1000, 1000);
            }
        }
        // What one partition's whole tail takes.
        let one = {
            let probe = TailCache::new(usize::MAX / 2);
            probe
                .read(&topic.logs[0], i64::MIN, &json, 0, 20_000, true)
                .unwrap();
            probe.bytes()
        };
        // A quarter of that per partition, and room for four quarters.
        let slack = one / 10;
        let fill = |idle: Duration| {
            let cache = TailCache::new(one)
                .with_fill(1000, 64 << 10)
                .with_idle_after(idle);
            let covered: Vec<i64> = topic
                .logs
                .iter()
                .map(|log| {
                    let rows = cache
                        .read(log, i64::MIN, &json, 0, 20_000, true)
                        .unwrap()
                        .unwrap();
                    assert_eq!(uids(&rows), (0..rows.covered).collect::<Vec<_>>());
                    assert!(cache.bytes() <= one + slack, "{} of {one}", cache.bytes());
                    rows.covered
                })
                .collect();
            let first = cache
                .read(&topic.logs[0], i64::MIN, &json, 0, 20_000, false)
                .unwrap();
            (covered, first.unwrap().covered)
        };
        // All in use: the first four keep their quarter, the last two get
        // nothing (their queries decode for themselves).
        let (covered, first) = fill(Duration::from_secs(3600));
        assert!(
            covered[..4].iter().all(|c| (4000..20_000).contains(c)),
            "{covered:?}"
        );
        assert_eq!(&covered[4..], [0, 0]);
        assert_eq!(first, covered[0]);
        // Idle entries make room, least recently used first.
        let (covered, first) = fill(Duration::ZERO);
        assert!(
            covered.iter().all(|c| (4000..20_000).contains(c)),
            "{covered:?}"
        );
        assert_eq!(first, 0, "the first partition went first");
        // Nothing at all with no budget.
        let none = TailCache::new(0);
        let read = none.read(&topic.logs[0], i64::MIN, &json, 0, 20_000, true);
        assert!(read.unwrap().is_none());
    }
}

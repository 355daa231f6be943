//! Compaction across crashes and restarts: each state a swap can be left
//! in, the cleaner checkpoint, the per-data-dir cleaner thread and its
//! thresholds, and the Arrow faces of replaced segments.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use karnak_storage::columnar::PartitionScan;
use karnak_storage::{CleanerConfig, LogConfig, LogManager};

fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn name(base: i64, kind: &str) -> String {
    format!("{base:020}.{kind}")
}

struct Fixture {
    /// The log as written: several sealed segments, then an empty active one.
    before: tempfile::TempDir,
    /// The same log cleaned into one segment at base 0.
    after: tempfile::TempDir,
    original: Vec<Rec>,
    compacted: Vec<Rec>,
    sealed_bases: Vec<i64>,
}

fn fixture() -> Fixture {
    let before = tempfile::tempdir().unwrap();
    let log = open(before.path(), compact_cfg(300));
    for i in 0..40 {
        let v = (i % 7 != 3).then(|| format!("v{i}"));
        put(&log, T + i, &[(&format!("k{}", i % 6), v.as_deref())]);
    }
    log.roll().unwrap();
    let sealed_bases: Vec<i64> = log
        .sealed_segments()
        .iter()
        .map(|s| s.base_offset)
        .collect();
    assert!(sealed_bases.len() > 3);
    let original = records(&log);
    log.close().unwrap();
    let after = tempfile::tempdir().unwrap();
    copy_dir(before.path(), after.path());
    // Larger segments here: the whole log is cleaned as one group.
    let log = open(after.path(), compact_cfg(1 << 20));
    let stats = log.compact(T + 100).unwrap().unwrap();
    assert_eq!(stats.groups, 1);
    let compacted = records(&log);
    assert!(compacted.len() < original.len());
    log.close().unwrap();
    // As a crash would leave it: no clean-shutdown marker.
    std::fs::remove_file(before.path().join(".karnak_clean_shutdown")).unwrap();
    Fixture {
        before,
        after,
        original,
        compacted,
        sealed_bases,
    }
}

impl Fixture {
    /// Copies the cleaned segment's `kinds` files into the old log dir,
    /// each under the name `rename(kind)`.
    fn plant(&self, kinds: &[&str], rename: impl Fn(&str) -> String) {
        for kind in kinds {
            std::fs::copy(
                self.after.path().join(name(0, kind)),
                self.before.path().join(rename(kind)),
            )
            .unwrap();
        }
    }

    fn remove_old(&self, bases: &[i64]) {
        for b in bases {
            for kind in ["log", "index", "timeindex", "txnindex"] {
                let _ = std::fs::remove_file(self.before.path().join(name(*b, kind)));
            }
        }
    }

    fn reopen(&self) -> Vec<Rec> {
        let log = open(self.before.path(), compact_cfg(1 << 20));
        assert!(files_with(self.before.path(), &[".cleaned", ".swap"]).is_empty());
        assert_eq!(log.log_end_offset(), 40);
        let recs = records(&log);
        // And it takes appends and cleans again.
        put(&log, T, &[("k0", Some("later"))]);
        log.roll().unwrap();
        log.compact(T + 200).unwrap().unwrap();
        recs
    }
}

const KINDS: [&str; 4] = ["log", "index", "timeindex", "txnindex"];

#[test]
fn crash_with_cleaned_files_only_discards_them() {
    let f = fixture();
    f.plant(&KINDS, |k| format!("{}.cleaned", name(0, k)));
    assert_eq!(f.reopen(), f.original);
}

#[test]
fn crash_before_the_log_swap_rename_discards_the_swap() {
    let f = fixture();
    f.plant(&["index", "timeindex", "txnindex"], |k| {
        format!("{}.swap", name(0, k))
    });
    f.plant(&["log"], |k| format!("{}.cleaned", name(0, k)));
    assert_eq!(f.reopen(), f.original);
}

#[test]
fn crash_after_the_commit_completes_the_swap() {
    let f = fixture();
    f.plant(&KINDS, |k| format!("{}.swap", name(0, k)));
    assert_eq!(f.reopen(), f.compacted);
    // Every replaced segment is gone.
    for b in &f.sealed_bases[1..] {
        assert!(!f.before.path().join(name(*b, "log")).exists(), "{b}");
    }
}

#[test]
fn crash_while_deleting_old_segments_completes_the_swap() {
    let f = fixture();
    f.plant(&KINDS, |k| format!("{}.swap", name(0, k)));
    f.remove_old(&f.sealed_bases[..2]);
    assert_eq!(f.reopen(), f.compacted);
}

#[test]
fn crash_while_renaming_swap_files_completes_the_swap() {
    let f = fixture();
    f.remove_old(&f.sealed_bases);
    // The indexes made it to their final names, the log did not.
    f.plant(&["index", "timeindex", "txnindex"], |k| name(0, k));
    f.plant(&["log"], |k| format!("{}.swap", name(0, k)));
    assert_eq!(f.reopen(), f.compacted);
}

fn manager(dir: &Path, backoff_ms: u64, enabled: bool) -> LogManager {
    let cleaner = CleanerConfig {
        enabled,
        backoff_ms,
        ..CleanerConfig::default()
    };
    LogManager::open_with_cleaner(dir, LogConfig::default(), cleaner).unwrap()
}

fn topic_cfg(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut m: BTreeMap<String, String> = [("cleanup.policy", "compact"), ("segment.bytes", "400")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    m.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    m
}

fn fill(log: &karnak_storage::Log, ts: i64, n: usize, keys: usize) {
    for i in 0..n {
        put(
            log,
            ts,
            &[(&format!("k{}", i % keys), Some(&format!("v{i}")))],
        );
    }
    log.roll().unwrap();
}

#[test]
fn clean_now_checkpoints_and_a_restart_resumes_from_the_checkpoint() {
    let d = tempfile::tempdir().unwrap();
    let m = manager(d.path(), 15_000, false);
    m.create_topic("c", 2, topic_cfg(&[])).unwrap();
    m.create_topic("plain", 1, BTreeMap::new()).unwrap();
    let log = m.log("c", 0).unwrap();
    fill(&log, T, 30, 5);
    fill(&m.log("plain", 0).unwrap(), T, 30, 5);
    let done = m.clean_now(T);
    assert_eq!(done.len(), 1, "only the compacted partition with data");
    assert_eq!((done[0].topic.as_str(), done[0].partition), ("c", 0));
    assert_eq!(records(&log).len(), 5);
    assert!(m.clean_now(T).is_empty(), "nothing dirty is left");
    let text = std::fs::read_to_string(d.path().join("cleaner-offset-checkpoint")).unwrap();
    assert_eq!(text, "0\n1\nc 0 30\n");
    m.shutdown().unwrap();
    drop((m, log));
    let m = manager(d.path(), 15_000, false);
    let log = m.log("c", 0).unwrap();
    assert_eq!(log.clean_offset(), Some(30));
    assert_eq!(log.cleanable(T).unwrap().first_dirty_offset, 30);
    assert!(m.clean_now(T).is_empty());
    // Deleting the topic drops its checkpoint entry.
    m.delete_topic("c").unwrap();
    let text = std::fs::read_to_string(d.path().join("cleaner-offset-checkpoint")).unwrap();
    assert_eq!(text, "0\n0\n");
}

#[test]
fn the_dirty_ratio_and_max_compaction_lag_decide_when_to_clean() {
    let d = tempfile::tempdir().unwrap();
    let m = manager(d.path(), 15_000, false);
    m.create_topic("r", 1, topic_cfg(&[("min.cleanable.dirty.ratio", "0.6")]))
        .unwrap();
    let r = m.log("r", 0).unwrap();
    fill(&r, T, 20, 20);
    assert_eq!(r.cleanable(T).unwrap().dirty_ratio, 1.0);
    assert_eq!(m.clean_now(T).len(), 1);
    // A little dirt on a large clean part stays below the ratio.
    fill(&r, T, 3, 20);
    let c = r.cleanable(T).unwrap();
    assert!(c.cleanable_bytes > 0 && c.dirty_ratio < 0.6, "{c:?}");
    assert!(m.clean_now(T).is_empty());

    m.create_topic(
        "lag",
        1,
        topic_cfg(&[
            ("min.cleanable.dirty.ratio", "0.99"),
            ("max.compaction.lag.ms", "60000"),
        ]),
    )
    .unwrap();
    let l = m.log("lag", 0).unwrap();
    fill(&l, T, 20, 20);
    assert_eq!(m.clean_now(T).len(), 1);
    fill(&l, T + 1_000, 3, 20);
    // Not overdue yet: the ratio rules, and it is low.
    assert!(m.clean_now(T + 30_000).is_empty());
    // Overdue: cleaned whatever the ratio.
    let now = T + 1_000 + 60_000 + 1;
    assert!(l.cleanable(now).unwrap().compaction_delay_ms > 0);
    let done = m.clean_now(now);
    assert_eq!(
        done.iter().map(|s| s.topic.as_str()).collect::<Vec<_>>(),
        vec!["lag"]
    );
}

#[test]
fn the_cleaner_thread_cleans_by_itself_and_stops_with_the_manager() {
    let d = tempfile::tempdir().unwrap();
    let m = manager(d.path(), 20, true);
    // One segment, sealed at the end: the thread sees all of it at once.
    m.create_topic("bg", 1, topic_cfg(&[("segment.bytes", "1048576")]))
        .unwrap();
    let log = m.log("bg", 0).unwrap();
    fill(&log, T, 40, 4);
    let deadline = Instant::now() + Duration::from_secs(30);
    // The offset is recorded just after the swap: wait for both.
    while records(&log).len() != 4 || log.clean_offset() != Some(40) {
        assert!(
            Instant::now() < deadline,
            "the cleaner thread never cleaned"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    m.shutdown().unwrap();
    assert!(files_with(&d.path().join("bg-0"), &[".cleaned", ".swap"]).is_empty());
}

#[test]
fn faces_of_replaced_segments_are_rebuilt() {
    let d = tempfile::tempdir().unwrap();
    let m = manager(d.path(), 15_000, false);
    m.create_topic("faces", 1, topic_cfg(&[])).unwrap();
    let log = m.log("faces", 0).unwrap();
    fill(&log, T, 30, 3);
    let sealed = log.sealed_segments().len();
    assert_eq!(
        m.attach_faces(100, &karnak_storage::FreeSpace::new(d.path(), Some(0))),
        sealed
    );
    let dir = d.path().join("faces-0");
    assert_eq!(files_with(&dir, &[".parquet"]).len(), sealed);
    assert_eq!(files_with(&dir, &[".face"]).len(), sealed);
    assert_eq!(m.clean_now(T).len(), 1);
    // The replaced segments' faces went with them; the new ones have none.
    assert!(
        log.sealed_segments()
            .iter()
            .all(|s| s.wants_face(&karnak_storage::face::ValueFormat::Raw))
    );
    assert!(files_with(&dir, &[".parquet"]).len() <= log.sealed_segments().len());
    m.attach_faces(100, &karnak_storage::FreeSpace::new(d.path(), Some(0)));
    let mut scan = PartitionScan::new(Arc::clone(&log), 0, log.log_end_offset(), 1000, 1 << 20);
    let mut rows = 0;
    while let Some(b) = scan.next_batch().unwrap() {
        rows += b.num_rows();
    }
    assert_eq!(rows, 3);
}

#[test]
fn appends_and_reads_go_on_while_the_cleaner_swaps_segments() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let d = tempfile::tempdir().unwrap();
    let log = Arc::new(open(d.path(), compact_cfg(2_000)));
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (log, done) = (log.clone(), done.clone());
        std::thread::spawn(move || {
            let mut want = BTreeMap::new();
            for i in 0..3_000 {
                let (k, v) = (format!("k{}", i % 50), format!("v{i}"));
                let off = put(&log, T, &[(&k, Some(&v))]);
                want.insert(k, (off, v));
                if i % 300 == 299 {
                    log.roll().unwrap();
                }
            }
            done.store(true, Ordering::Release);
            want
        })
    };
    let reader = {
        let (log, done) = (log.clone(), done.clone());
        std::thread::spawn(move || {
            let mut passes = 0;
            while !done.load(Ordering::Acquire) {
                // Checks CRCs, decodability and that offsets only grow.
                let recs = records(&log);
                assert!(recs.windows(2).all(|w| w[0].offset < w[1].offset));
                passes += 1;
            }
            passes
        })
    };
    let mut cleanings = 0;
    while !done.load(Ordering::Acquire) {
        if log.compact(T).unwrap().is_some() {
            cleanings += 1;
        }
    }
    let want = writer.join().unwrap();
    assert!(reader.join().unwrap() > 0);
    log.roll().unwrap();
    log.compact(T).unwrap();
    assert!(cleanings > 0);
    let got: BTreeMap<String, (i64, String)> = records(&log)
        .into_iter()
        .map(|r| {
            let (k, v) = r.kv();
            (k, (r.offset, v.unwrap()))
        })
        .collect();
    assert_eq!(got, want);
    assert_eq!(records(&log).len(), 50);
}

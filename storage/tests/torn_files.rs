//! Recovery from files cut short at every byte boundary of their last write:
//! the active segment, its indexes, producer snapshots, the transaction
//! index and the checkpoints. Each cut is opened from a copy of the
//! partition directory as a crash (or a damaged disk) left it; the log must
//! open, serve only whole, CRC-valid batches, keep every batch written
//! before the cut write, and take appends at the next dense offset.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use karnak_protocol::record_batch::{BatchIter, check_crc};
use karnak_storage::test_support::{build_batch, producer_batch};
use karnak_storage::{Log, LogConfig, StorageError};

const T: i64 = 1_700_000_000_000;

fn cfg() -> LogConfig {
    LogConfig {
        index_interval_bytes: 0,
        ..Default::default()
    }
}

fn open(dir: &Path) -> Log {
    Log::open(dir, "t", 0, cfg()).unwrap_or_else(|e| panic!("opening {}: {e}", dir.display()))
}

fn file(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

fn seg(base: i64, ext: &str) -> String {
    format!("{base:020}.{ext}")
}

/// A copy of the partition directory `from`.
fn copy(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        std::fs::copy(e.path(), to.path().join(e.file_name())).unwrap();
    }
    to
}

/// A copy of the partition directory `from` with `name` replaced by `bytes`.
fn copy_with(from: &Path, name: &str, bytes: &[u8]) -> tempfile::TempDir {
    let to = copy(from);
    std::fs::write(to.path().join(name), bytes).unwrap();
    to
}

/// Every batch the log serves from `from`: (base offset, last offset,
/// partition leader epoch), each CRC-checked.
fn batches(log: &Log) -> Vec<(i64, i64, i32)> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let r = log.read(offset, 1 << 20, true).unwrap();
        let Some(s) = r.slice else { break };
        let mut buf = vec![0u8; s.len];
        s.file.read_exact_at(&mut buf, s.position).unwrap();
        for b in BatchIter::new(&buf) {
            let (at, h) = b.expect("a whole batch");
            check_crc(&buf[at..], &h).expect("a CRC-valid batch");
            if h.last_offset() >= offset {
                out.push((h.base_offset, h.last_offset(), h.partition_leader_epoch));
                offset = h.last_offset() + 1;
            }
        }
    }
    out
}

fn append(log: &Log, b: Vec<u8>, epoch: i32) -> i64 {
    log.append(&Bytes::from(b), epoch, None)
        .unwrap()
        .base_offset
}

/// Six batches of three records, batch i at timestamp T + 10 i.
fn six_batches(log: &Log) {
    for i in 0..6 {
        append(log, build_batch(T + 10 * i, &[b"a", b"bb", b"ccc"]), 0);
    }
}

/// Each of [`six_batches`]'s timestamps is found at its batch.
fn assert_finds_six_timestamps(log: &Log, what: &str) {
    for i in 0..6 {
        assert_eq!(
            log.offset_for_timestamp(T + 10 * i)
                .unwrap()
                .map(|(o, _)| o),
            Some(3 * i),
            "{what}: timestamp of batch {i}"
        );
    }
}

/// Five batches of three records (epoch 5), durable, then a sixth (epoch
/// 6) whose write a crash cuts anywhere: the log ends after the fifth,
/// the file is cut back to it, the indexes (which the kernel may already
/// have written for the sixth) and the epoch cache forget it, and the next
/// append takes offset 15.
#[test]
fn a_log_cut_anywhere_in_its_last_write_recovers_to_the_batch_before() {
    let d = tempfile::tempdir().unwrap();
    let log = open(d.path());
    for i in 0..5 {
        append(&log, build_batch(T + 10 * i, &[b"a", b"bb", b"ccc"]), 5);
    }
    log.flush().unwrap();
    let name = seg(0, "log");
    let good = std::fs::read(file(d.path(), &name)).unwrap();
    append(&log, build_batch(T + 100, &[b"torn", b"away", b"here"]), 6);
    let full = std::fs::read(file(d.path(), &name)).unwrap();
    drop(log); // no close: a crash
    let before = {
        let c = copy_with(d.path(), &name, &good);
        batches(&open(c.path()))
    };
    assert_eq!(before.len(), 5);
    for cut in good.len()..full.len() {
        let c = copy_with(d.path(), &name, &full[..cut]);
        let log = open(c.path());
        assert_eq!(log.log_end_offset(), 15, "cut at {cut}");
        assert_eq!(batches(&log), before, "cut at {cut}");
        assert_eq!(
            log.latest_epoch(),
            5,
            "cut at {cut}: epoch 6 wrote nothing that survived"
        );
        assert_eq!(
            log.offset_for_timestamp(T + 100).unwrap().map(|(o, _)| o),
            None,
            "cut at {cut}: the torn batch's timestamp is not found"
        );
        assert_eq!(
            std::fs::metadata(file(c.path(), &name)).unwrap().len(),
            good.len() as u64,
            "cut at {cut}: the torn bytes are cut off"
        );
        assert_eq!(append(&log, build_batch(T + 200, &[b"next"]), 7), 15);
        assert_eq!(batches(&log).len(), 6, "cut at {cut}");
    }
    // The whole write survived: six batches.
    let c = copy_with(d.path(), &name, &full);
    assert_eq!(open(c.path()).log_end_offset(), 18);
}

/// The active segment's memory-mapped indexes as a crash leaves them: the
/// last entry written partly (some bytes still zero), or a page of garbage
/// after it. Recovery rebuilds them from the log; every offset and
/// timestamp is still found.
#[test]
fn torn_or_garbled_active_indexes_are_rebuilt() {
    let d = tempfile::tempdir().unwrap();
    let log = open(d.path());
    six_batches(&log);
    drop(log);
    for (ext, width) in [("index", 8usize), ("timeindex", 12)] {
        let name = seg(0, ext);
        let full = std::fs::read(file(d.path(), &name)).unwrap();
        let last = (0..full.len() / width)
            .rev()
            .find(|i| full[i * width..(i + 1) * width].iter().any(|&b| b != 0))
            .expect("entries were written");
        let mut damaged: Vec<Vec<u8>> = (0..width)
            .map(|keep| {
                let mut f = full.clone();
                f[last * width + keep..(last + 1) * width].fill(0);
                f
            })
            .collect();
        let mut garbage = full.clone();
        garbage[(last + 1) * width..(last + 1) * width + 4096].fill(0xA5);
        damaged.push(garbage);
        for (n, bytes) in damaged.into_iter().enumerate() {
            let c = copy_with(d.path(), &name, &bytes);
            let log = open(c.path());
            assert_eq!(log.log_end_offset(), 18, "{ext} damage {n}");
            for off in 0..18 {
                let r = log.read(off, 1 << 20, true).unwrap();
                let s = r.slice.expect("data");
                let mut buf = vec![0u8; 61];
                s.file.read_exact_at(&mut buf, s.position).unwrap();
                let base = i64::from_be_bytes(buf[..8].try_into().unwrap());
                assert!(
                    base <= off && off < base + 3,
                    "{ext} damage {n}: offset {off} read at batch {base}"
                );
            }
            assert_finds_six_timestamps(&log, &format!("{ext} damage {n}"));
        }
    }
}

/// A sealed segment's trimmed indexes cut at every byte (a damaged disk:
/// they were flushed before the roll finished): the log opens, and every
/// offset and timestamp of the segment is still found.
#[test]
fn sealed_indexes_cut_at_every_byte_still_find_every_offset() {
    let d = tempfile::tempdir().unwrap();
    let log = open(d.path());
    six_batches(&log);
    log.roll().unwrap();
    append(&log, build_batch(T + 100, &[b"after"]), 0);
    log.close().unwrap();
    drop(log);
    for ext in ["index", "timeindex"] {
        let name = seg(0, ext);
        let full = std::fs::read(file(d.path(), &name)).unwrap();
        assert!(!full.is_empty());
        for cut in 0..full.len() {
            let c = copy_with(d.path(), &name, &full[..cut]);
            let log = open(c.path());
            assert_eq!(log.log_end_offset(), 19, "{ext} cut at {cut}");
            assert_eq!(batches(&log).len(), 7, "{ext} cut at {cut}");
            assert_finds_six_timestamps(&log, &format!("{ext} cut at {cut}"));
            assert_eq!(
                log.offset_for_timestamp(T + 60).unwrap().map(|(o, _)| o),
                Some(18),
                "{ext} cut at {cut}: a timestamp past the sealed segment's"
            );
        }
    }
}

/// An idempotent producer's state comes back from a snapshot cut at any
/// byte (ignored, rebuilt from the log): a retry of its last batch is a
/// duplicate answered with the original offset, the next sequence is
/// taken, a gap is refused.
#[test]
fn a_producer_snapshot_cut_anywhere_is_rebuilt_from_the_log() {
    let d = tempfile::tempdir().unwrap();
    let log = open(d.path());
    let pid = 4242;
    let batch = |seq: i32, ts: i64| producer_batch(ts, &[b"x", b"y"], pid, 0, seq, false);
    for s in 0..3 {
        append(&log, batch(2 * s, T + s as i64), 0);
    }
    log.roll().unwrap(); // writes the snapshot at offset 6
    append(&log, batch(6, T + 10), 0);
    drop(log);
    let name = seg(6, "snapshot");
    let full = std::fs::read(file(d.path(), &name)).expect("a snapshot at the roll");
    for cut in 0..full.len() {
        let c = copy_with(d.path(), &name, &full[..cut]);
        let log = open(c.path());
        let retry = log.append(&Bytes::from(batch(6, T + 10)), 0, None).unwrap();
        assert!(
            retry.duplicate,
            "snapshot cut at {cut}: a retry is a duplicate"
        );
        assert_eq!(retry.base_offset, 6, "snapshot cut at {cut}");
        let gap = log.append(&Bytes::from(batch(12, T + 11)), 0, None);
        assert!(
            matches!(gap, Err(StorageError::Producer(_))),
            "snapshot cut at {cut}: a sequence gap is refused: {gap:?}"
        );
        assert_eq!(
            append(&log, batch(8, T + 12), 0),
            8,
            "snapshot cut at {cut}"
        );
    }
}

/// The checkpoints in a partition directory (leader epochs, the log start
/// offset after DeleteRecords, the recovery point) are written whole and
/// renamed into place, so only a damaged disk cuts one; cut at any byte,
/// the log still opens and falls back to what the log itself says: the
/// epochs are rebuilt from the batches, the log starts at its first
/// segment, every segment is checked.
#[test]
fn checkpoints_cut_anywhere_fall_back_to_the_log() {
    let d = tempfile::tempdir().unwrap();
    let log = open(d.path());
    for i in 0..4 {
        append(&log, build_batch(T + i, &[b"a", b"b"]), 3);
    }
    for i in 4..8 {
        append(&log, build_batch(T + i, &[b"a", b"b"]), 9);
    }
    assert_eq!(log.delete_records_before(3).unwrap(), 3);
    log.flush().unwrap();
    drop(log); // a crash: the recovery point checkpoint is read at open
    let epochs = |log: &Log| (log.end_offset_for_epoch(3), log.end_offset_for_epoch(9));
    let intact = copy(d.path());
    let want = epochs(&open(intact.path()));
    assert_eq!(want, ((3, 8), (9, 16)));
    let files: Vec<String> = std::fs::read_dir(d.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("checkpoint"))
        .collect();
    for name in ["leader-epoch-checkpoint", "log-start-offset-checkpoint"] {
        assert!(files.iter().any(|f| f == name), "{name} in {files:?}");
    }
    for name in &files {
        let full = std::fs::read(file(d.path(), name)).unwrap();
        for cut in 0..full.len() {
            let c = copy_with(d.path(), name, &full[..cut]);
            let log = open(c.path());
            assert_eq!(log.log_end_offset(), 16, "{name} cut at {cut}");
            assert_eq!(epochs(&log), want, "{name} cut at {cut}");
            let start = log.log_start_offset();
            if name == "log-start-offset-checkpoint" {
                assert_eq!(start, 0, "{name} cut at {cut}: the first segment's base");
            } else {
                assert_eq!(start, 3, "{name} cut at {cut}");
            }
            assert_eq!(batches(&log).first().map(|b| b.0), Some(start / 2 * 2));
            assert_eq!(append(&log, build_batch(T + 99, &[b"z"]), 9), 16);
        }
    }
}

/// Bits flipped in a sealed segment of a cleanly closed log (a damaged
/// disk; nothing reads sealed segments at start): reads serve every batch
/// but the damaged one, each CRC-valid, a read at the damaged batch's
/// offsets gets the next batch, and the damage is reported once.
#[test]
fn bits_flipped_in_a_sealed_segment_are_left_out_of_reads_and_reported() {
    let d = tempfile::tempdir().unwrap();
    let log = open(d.path());
    let mut size = 0;
    for i in 0..10 {
        let b = build_batch(T + i, &[b"aaaa", b"bbbb", format!("v{i}").as_bytes()]);
        size = b.len() as u64;
        append(&log, b, 0);
    }
    log.roll().unwrap();
    append(&log, build_batch(T + 10, &[b"after"]), 0);
    log.close().unwrap();
    drop(log);
    let name = seg(0, "log");
    let full = std::fs::read(file(d.path(), &name)).unwrap();
    let k = 4u64; // the damaged batch: offsets 12-14
    let at = |byte: u64| (k * size + byte) as usize;
    // (what, byte in the batch, bit): the base offset, the length (a little
    // and far past the file), the magic byte, the CRC, the attributes, the
    // last byte of the records.
    let flips = [
        ("base offset", 0, 6),
        ("length, by one", 11, 0),
        ("length, past the file", 8, 4),
        ("magic", 16, 1),
        ("crc", 18, 3),
        ("attributes", 22, 0),
        ("record bytes", size - 1, 2),
    ];
    for (what, byte, bit) in flips {
        let mut damaged = full.clone();
        damaged[at(byte)] ^= 1 << bit;
        let c = copy_with(d.path(), &name, &damaged);
        let log = open(c.path());
        assert_eq!(log.log_end_offset(), 31, "{what}");
        let served = batches(&log);
        let bases: Vec<i64> = served.iter().map(|b| b.0).collect();
        let want: Vec<i64> = (0..11).filter(|i| *i != k as i64).map(|i| 3 * i).collect();
        assert_eq!(bases, want, "{what}: every batch but the damaged one");
        for off in 12..15 {
            let r = log.read(off, 1 << 20, true).unwrap();
            let s = r.slice.expect("data after the damage");
            let mut head = [0u8; 8];
            s.file.read_exact_at(&mut head, s.position).unwrap();
            assert_eq!(
                i64::from_be_bytes(head),
                15,
                "{what}: a read at {off} resumes after it"
            );
        }
        let seg0 = log.segment_for(0).expect("segment 0");
        assert_eq!(seg0.corrupt_ranges().len(), 1, "{what}: reported once");
        assert_eq!(seg0.corrupt_ranges()[0].0, k * size, "{what}");
        assert!(
            seg0.fully_checked(),
            "{what}: one pass checked the whole segment"
        );
    }
}

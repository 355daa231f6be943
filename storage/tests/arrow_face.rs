//! The Arrow face of sealed segments: built from the log, read back the same
//! as decoding the log, rebuilt when broken, harmless when its segment goes.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use bytes::Bytes;
use karnak_storage::arrow_face::{ArrowFace, arrow_path, attach_missing};
use karnak_storage::columnar::PartitionScan;
use karnak_storage::test_support::build_batch;
use karnak_storage::{FreeSpace, Log, LogConfig};

const T: i64 = 1_700_000_000_000;

/// A log of `batches` 3-record batches over segments of about 4 batches.
fn log_with(dir: &Path, batches: usize) -> Arc<Log> {
    let size = build_batch(T, &[b"a", b"bb", b"value-00000"]).len() as u64;
    let cfg = LogConfig {
        segment_bytes: size * 4,
        ..Default::default()
    };
    let log = Arc::new(Log::open(dir, "t", 2, cfg).unwrap());
    for i in 0..batches {
        let v = format!("value-{i:05}");
        let b = build_batch(T + i as i64, &[b"a", b"bb", v.as_bytes()]);
        log.append(&Bytes::from(b), 0, None).unwrap();
    }
    log
}

/// Free space with no floor of its own: faces keep the default floor free.
fn room(dir: &Path) -> FreeSpace {
    FreeSpace::new(dir, Some(0))
}

/// (offset, value) of every row a scan of `[from, to)` returns.
fn rows(scan: &mut PartitionScan) -> Vec<(i64, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some(b) = scan.next_batch().unwrap() {
        out.extend(pairs(&b));
    }
    out
}

fn pairs(b: &RecordBatch) -> Vec<(i64, Vec<u8>)> {
    let offs = b.column(1).as_primitive::<Int64Type>();
    let vals = b.column(5).as_binary::<i32>();
    (0..b.num_rows())
        .map(|i| (offs.value(i), vals.value(i).to_vec()))
        .collect()
}

fn scan(log: &Arc<Log>, from: i64, to: i64) -> PartitionScan {
    PartitionScan::new(log.clone(), from, to, 5, 64 << 10)
}

#[test]
fn faces_read_back_exactly_what_the_log_holds() {
    let d = tempfile::tempdir().unwrap();
    let log = log_with(d.path(), 40);
    let sealed = log.sealed_segments();
    assert!(sealed.len() >= 5, "{} sealed segments", sealed.len());
    assert_eq!(
        attach_missing(&log, usize::MAX, &room(d.path())).unwrap(),
        sealed.len()
    );
    for seg in &sealed {
        assert!(arrow_path(d.path(), seg.base_offset).exists());
        assert!(seg.arrow_face().is_some());
    }
    // The active segment has none: it is still growing.
    let active = log.segment_for(log.log_end_offset() - 1).unwrap();
    assert!(active.arrow_face().is_none());
    assert!(!arrow_path(d.path(), active.base_offset).exists());
    // Nothing more to do on a second pass.
    assert_eq!(
        attach_missing(&log, usize::MAX, &room(d.path())).unwrap(),
        0
    );

    let end = log.high_watermark();
    assert_eq!(end, 120);
    for (from, to) in [(0, end), (1, end - 1), (7, 8), (13, 59), (117, end)] {
        let faced = rows(&mut scan(&log, from, to));
        let decoded = rows(&mut scan(&log, from, to).from_log_only());
        assert_eq!(faced.len() as i64, to - from, "[{from}, {to})");
        assert_eq!(faced, decoded, "[{from}, {to})");
        assert_eq!(faced[0].0, from);
    }
    // Proof the faces are what is read: with the sealed segments' .log
    // bytes gone, the faced scan still has every sealed row.
    let sealed_end = sealed.last().unwrap().next_offset();
    for seg in &sealed {
        seg.file.set_len(0).unwrap();
    }
    assert_eq!(
        rows(&mut scan(&log, 0, sealed_end)).len() as i64,
        sealed_end
    );
}

#[test]
fn a_broken_face_is_rebuilt_and_stray_files_go_on_open() {
    let d = tempfile::tempdir().unwrap();
    let log = log_with(d.path(), 12);
    attach_missing(&log, usize::MAX, &room(d.path())).unwrap();
    let first = log.sealed_segments()[0].clone();
    let path = arrow_path(d.path(), first.base_offset);
    let good = std::fs::read(&path).unwrap();
    let want = rows(&mut scan(&log, 0, log.high_watermark()));
    log.close().unwrap();
    drop(log);

    // Each kind of damage: garbage, truncation, a flipped byte in a block,
    // a face of another range.
    let mut other = good.clone();
    let n = other.len();
    other[n / 2] ^= 0xff;
    for (what, bytes) in [
        ("garbage", b"not arrow at all".to_vec()),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("flipped", other),
    ] {
        std::fs::write(&path, &bytes).unwrap();
        std::fs::write(d.path().join("00000000000000000099.arrow"), b"orphan").unwrap();
        std::fs::write(d.path().join("00000000000000000000.arrow.tmp"), b"half").unwrap();
        let log = Arc::new(Log::open(d.path(), "t", 2, LogConfig::default()).unwrap());
        assert!(
            !d.path().join("00000000000000000099.arrow").exists(),
            "{what}"
        );
        assert!(
            !d.path().join("00000000000000000000.arrow.tmp").exists(),
            "{what}"
        );
        // A flipped byte in the data may pass the checks (no CRC in Arrow
        // IPC), but the scan must not panic; the other two are rebuilt.
        attach_missing(&log, usize::MAX, &room(d.path())).unwrap();
        let got = rows(&mut scan(&log, 0, log.high_watermark()));
        if what != "flipped" {
            assert_eq!(got, want, "{what}");
            let rebuilt = log.sealed_segments()[0].arrow_face().unwrap();
            assert_eq!(rebuilt.size_bytes(), good.len(), "{what} rebuilt");
        }
        log.close().unwrap();
    }
    assert!(ArrowFace::open(&path, first.base_offset, first.next_offset() + 1).is_err());
    assert!(ArrowFace::open(&path, first.base_offset + 1, first.next_offset()).is_err());
}

#[test]
fn deleting_segments_under_a_running_scan_is_harmless() {
    let d = tempfile::tempdir().unwrap();
    let log = log_with(d.path(), 40);
    attach_missing(&log, usize::MAX, &room(d.path())).unwrap();
    let mut s = scan(&log, 0, log.high_watermark());
    let first = s.next_batch().unwrap().unwrap();
    let held = first.column(5).clone();
    // Everything but the active segment goes (as retention would).
    let deleted = log.delete_segments_below(log.log_end_offset()).unwrap();
    assert!(deleted >= 5);
    for seg in log.sealed_segments() {
        assert!(!arrow_path(d.path(), seg.base_offset).exists());
    }
    // The rows already handed out stay readable (the mapping outlives the
    // file), and the scan goes on from the new log start.
    assert_eq!(held.as_binary::<i32>().value(2), b"value-00000");
    let rest = rows(&mut s);
    assert!(!rest.is_empty());
    assert!(rest[0].0 >= log.log_start_offset());
    assert!(rest.windows(2).all(|w| w[0].0 < w[1].0));
    assert_eq!(rest.last().unwrap().0, log.high_watermark() - 1);
}

#[test]
fn a_face_reads_single_rows_and_stops_at_its_end() {
    let d = tempfile::tempdir().unwrap();
    let log = log_with(d.path(), 4);
    log.roll().unwrap();
    attach_missing(&log, usize::MAX, &room(d.path())).unwrap();
    let got = rows(&mut scan(&log, 0, log.high_watermark()));
    assert_eq!(got.len(), 12);
    assert!(got.iter().map(|r| r.1.len()).all(|l| l > 0));
    assert!(got.iter().zip(0..).all(|(r, i)| r.0 == i));
    let face = log.sealed_segments()[0].arrow_face().unwrap();
    assert!(face.size_bytes() > 0);
    // A read past the face's last block is None, not an error.
    assert!(
        face.read(face.next_offset(), face.next_offset() + 10)
            .unwrap()
            .is_none()
    );
    let (one, after) = face.read(1, 2).unwrap().unwrap();
    assert_eq!(pairs(&one), vec![(1, b"bb".to_vec())]);
    assert!(after > 1);
}

/// A face is rebuildable, so it never takes the space kept free: with no
/// room above the floor the build waits (no file, still wanted) and happens
/// once there is room.
#[test]
fn faces_wait_for_room_above_the_floor() {
    let d = tempfile::tempdir().unwrap();
    let log = log_with(d.path(), 40);
    let sealed = log.sealed_segments();
    let no_room = FreeSpace::new(d.path(), Some(u64::MAX / 2));
    assert_eq!(attach_missing(&log, usize::MAX, &no_room).unwrap(), 0);
    for seg in &sealed {
        assert!(!arrow_path(d.path(), seg.base_offset).exists());
        assert!(seg.wants_arrow_face(), "deferred, not given up");
    }
    assert_eq!(
        attach_missing(&log, usize::MAX, &room(d.path())).unwrap(),
        sealed.len()
    );
}

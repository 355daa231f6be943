//! The SQL faces of sealed segments (`<base>.parquet` and its record
//! `<base>.face`): built from the log, read back the same as decoding the
//! log, typed columns of JSON values, rebuilt when broken or when the
//! topic's value format changes, never holding an aborted record,
//! harmless when their segment goes.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use bytes::Bytes;
use karnak_protocol::control::{ControlType, end_txn_marker};
use karnak_storage::columnar::PartitionScan;
use karnak_storage::face::{self, Face, ValueFormat, manifest_path, parquet_path};
use karnak_storage::test_support::{build_batch, producer_batch};
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

fn attach_missing(log: &Arc<Log>, budget: usize, space: &FreeSpace) -> usize {
    face::attach_missing(log, budget, space, &ValueFormat::Raw).unwrap()
}

fn has_face(dir: &Path, base: i64) -> bool {
    parquet_path(dir, base).exists() && manifest_path(dir, base).exists()
}

/// Files a crash or an older version may leave: removed when the log opens.
const STRAYS: [&str; 5] = [
    "00000000000000000099.parquet",
    "00000000000000000099.face",
    "00000000000000000099.arrow",
    "00000000000000000000.parquet.tmp",
    "00000000000000000000.face.tmp",
];

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
        attach_missing(&log, usize::MAX, &room(d.path())),
        sealed.len()
    );
    for seg in &sealed {
        assert!(has_face(d.path(), seg.base_offset));
        assert!(seg.face().is_some());
    }
    // The active segment has none: it is still growing.
    let active = log.segment_for(log.log_end_offset() - 1).unwrap();
    assert!(active.face().is_none());
    assert!(!has_face(d.path(), active.base_offset));
    // Nothing more to do on a second pass.
    assert_eq!(attach_missing(&log, usize::MAX, &room(d.path())), 0);

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
    attach_missing(&log, usize::MAX, &room(d.path()));
    let first = log.sealed_segments()[0].clone();
    let (base, next) = (first.base_offset, first.next_offset());
    let path = parquet_path(d.path(), base);
    let good = std::fs::read(&path).unwrap();
    let record = std::fs::read(manifest_path(d.path(), base)).unwrap();
    let want = rows(&mut scan(&log, 0, log.high_watermark()));
    log.close().unwrap();
    drop(log);

    // Each kind of damage: garbage, truncation, one flipped bit anywhere
    // (the CRC in the record catches it), a missing or garbled record.
    let mut flipped = good.clone();
    let n = flipped.len();
    flipped[n / 3] ^= 0x10;
    let damages: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        ("garbage", b"not parquet at all".to_vec(), record.clone()),
        ("truncated", good[..good.len() / 2].to_vec(), record.clone()),
        ("flipped", flipped, record.clone()),
        ("no record", good.clone(), Vec::new()),
        ("garbled record", good.clone(), b"{\"version\": 2".to_vec()),
    ];
    for (what, bytes, rec) in damages {
        std::fs::write(&path, &bytes).unwrap();
        if rec.is_empty() {
            std::fs::remove_file(manifest_path(d.path(), base)).unwrap();
        } else {
            std::fs::write(manifest_path(d.path(), base), &rec).unwrap();
        }
        for stray in STRAYS {
            std::fs::write(d.path().join(stray), b"stray").unwrap();
        }
        let log = Arc::new(Log::open(d.path(), "t", 2, LogConfig::default()).unwrap());
        for stray in STRAYS {
            assert!(!d.path().join(stray).exists(), "{what}: {stray}");
        }
        assert!(
            Face::open(d.path(), base, next, first.size(), &ValueFormat::Raw).is_err(),
            "{what}"
        );
        attach_missing(&log, usize::MAX, &room(d.path()));
        assert_eq!(
            rows(&mut scan(&log, 0, log.high_watermark())),
            want,
            "{what}"
        );
        let rebuilt = log.sealed_segments()[0].face().unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            good,
            "{what}: rebuilt as built"
        );
        assert_eq!(rebuilt.size_bytes(), good.len(), "{what}");
        log.close().unwrap();
    }
    // A record for another range, size or value format is not this face's.
    let size = first.size();
    assert!(Face::open(d.path(), base, next, size, &ValueFormat::Raw).is_ok());
    assert!(Face::open(d.path(), base, next + 1, size, &ValueFormat::Raw).is_err());
    assert!(Face::open(d.path(), base, next, size + 1, &ValueFormat::Raw).is_err());
    let json = ValueFormat::Json { declared: None };
    assert!(Face::open(d.path(), base, next, size, &json).is_err());
}

#[test]
fn deleting_segments_under_a_running_scan_is_harmless() {
    let d = tempfile::tempdir().unwrap();
    let log = log_with(d.path(), 40);
    attach_missing(&log, usize::MAX, &room(d.path()));
    let mut s = scan(&log, 0, log.high_watermark());
    let first = s.next_batch().unwrap().unwrap();
    let held = first.column(5).clone();
    // Everything but the active segment goes (as retention would).
    let deleted = log.delete_segments_below(log.log_end_offset()).unwrap();
    assert!(deleted >= 5);
    for seg in log.sealed_segments() {
        assert!(!parquet_path(d.path(), seg.base_offset).exists());
        assert!(!manifest_path(d.path(), seg.base_offset).exists());
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
    attach_missing(&log, usize::MAX, &room(d.path()));
    let got = rows(&mut scan(&log, 0, log.high_watermark()));
    assert_eq!(got.len(), 12);
    assert!(got.iter().map(|r| r.1.len()).all(|l| l > 0));
    assert!(got.iter().zip(0..).all(|(r, i)| r.0 == i));
    let face = log.sealed_segments()[0].face().unwrap();
    assert!(face.size_bytes() > 0);
    // A read past the face's end is empty, not an error.
    let past = face
        .rows(face.next_offset(), face.next_offset() + 10, 5)
        .unwrap();
    assert_eq!(past.count(), 0);
    let one: Vec<RecordBatch> = face.rows(1, 2, 5).unwrap().map(Result::unwrap).collect();
    assert_eq!(one.len(), 1);
    assert_eq!(pairs(&one[0]), vec![(1, b"bb".to_vec())]);
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
    assert_eq!(attach_missing(&log, usize::MAX, &no_room), 0);
    for seg in &sealed {
        assert!(!parquet_path(d.path(), seg.base_offset).exists());
        assert!(!manifest_path(d.path(), seg.base_offset).exists());
        assert!(seg.wants_face(&ValueFormat::Raw), "deferred, not given up");
    }
    assert_eq!(
        attach_missing(&log, usize::MAX, &room(d.path())),
        sealed.len()
    );
}

/// Every column of a face, as the Parquet reader gives it.
fn face_batches(face: &Face) -> Vec<RecordBatch> {
    face.batches().unwrap()
}

fn json_log(dir: &Path) -> Arc<Log> {
    let values: Vec<String> = (0..30)
        .map(|i| match i % 3 {
            0 => format!(r#"{{"n": {i}, "s": "x{i}", "offset": {i}}}"#),
            1 => format!(r#"{{"n": {i}.5, "late": true}}"#),
            _ => "not json".to_string(),
        })
        .collect();
    let size = build_batch(T, &[values[0].as_bytes(); 3]).len() as u64;
    let cfg = LogConfig {
        segment_bytes: size * 4,
        ..Default::default()
    };
    let log = Arc::new(Log::open(dir, "t", 0, cfg).unwrap());
    for chunk in values.chunks(3) {
        let v: Vec<&[u8]> = chunk.iter().map(String::as_bytes).collect();
        log.append(&Bytes::from(build_batch(T, &v)), 0, None)
            .unwrap();
    }
    log
}

/// Inferred JSON fields become typed columns of each face (a field named
/// as a fixed column is renamed, a value that is not JSON is NULL in every
/// one); a change of the topic's value format rebuilds the faces.
#[test]
fn json_values_are_typed_columns_and_a_format_change_rebuilds_the_face() {
    let d = tempfile::tempdir().unwrap();
    let log = json_log(d.path());
    let sealed = log.sealed_segments();
    assert_eq!(
        attach_missing(&log, usize::MAX, &room(d.path())),
        sealed.len()
    );
    let raw_cols = face_batches(&sealed[0].face().unwrap())[0].num_columns();
    assert_eq!(raw_cols, 7, "the fixed columns only");

    let inferred = ValueFormat::Json { declared: None };
    assert!(sealed.iter().all(|s| s.wants_face(&inferred)));
    let n = face::attach_missing(&log, usize::MAX, &room(d.path()), &inferred).unwrap();
    assert_eq!(n, sealed.len(), "every face rebuilt");
    let mut seen = Vec::new();
    for seg in &sealed {
        let face = seg.face().unwrap();
        assert_eq!(face.manifest().value_format, inferred);
        for b in face_batches(&face) {
            let names: Vec<String> = b
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            assert_eq!(&names[7..], ["n", "s", "value_offset", "late"], "{names:?}");
            let offs = b.column(1).as_primitive::<Int64Type>();
            let n = b.column(7).as_primitive::<arrow::datatypes::Float64Type>();
            let s = b.column(8).as_string::<i32>();
            let late = b.column(10).as_boolean();
            for i in 0..b.num_rows() {
                let o = offs.value(i);
                match o % 3 {
                    0 => {
                        assert_eq!(n.value(i), o as f64);
                        assert_eq!(s.value(i), format!("x{o}"));
                        assert!(late.is_null(i));
                    }
                    1 => {
                        assert_eq!(n.value(i), o as f64 + 0.5);
                        assert!(s.is_null(i) && late.value(i));
                    }
                    _ => assert!(n.is_null(i) && s.is_null(i) && late.is_null(i)),
                }
                seen.push(o);
            }
        }
    }
    let sealed_end = sealed.last().unwrap().next_offset();
    assert_eq!(seen, (0..sealed_end).collect::<Vec<_>>());
    assert_eq!(
        face::attach_missing(&log, usize::MAX, &room(d.path()), &inferred).unwrap(),
        0
    );

    // A declared schema: its columns and types, whatever the values hold.
    let declared = ValueFormat::Json {
        declared: Some("s text, n bigint".into()),
    };
    face::attach_missing(&log, usize::MAX, &room(d.path()), &declared).unwrap();
    let b = &face_batches(&sealed[0].face().unwrap())[0];
    let names: Vec<String> = b
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(&names[7..], ["s", "n"]);
    assert_eq!(b.column(8).as_primitive::<Int64Type>().value(0), 0);
}

/// A face holds only decided records: a sealed segment with an open
/// transaction gets none until its marker, and aborted records are not in
/// the face that follows.
#[test]
fn faces_wait_for_open_transactions_and_leave_aborted_records_out() {
    let d = tempfile::tempdir().unwrap();
    let one = producer_batch(T, &[b"committed"], 7, 0, 0, false);
    let cfg = LogConfig {
        segment_bytes: one.len() as u64 * 3,
        ..Default::default()
    };
    let log = Arc::new(Log::open(d.path(), "t", 0, cfg).unwrap());
    let marker = |kind| Bytes::from(end_txn_marker(9, 0, kind, 0, T));
    log.append(&Bytes::from(one), 0, None).unwrap();
    // Producer 9's transaction spans the first segments.
    for seq in 0..4 {
        let b = producer_batch(T, &[b"aborted"], 9, 0, seq, true);
        log.append(&Bytes::from(b), 0, None).unwrap();
    }
    for seq in 1..4 {
        let b = producer_batch(T, &[b"plain"], 7, 0, seq, false);
        log.append(&Bytes::from(b), 0, None).unwrap();
    }
    assert!(log.sealed_segments().len() >= 2);
    assert_eq!(
        attach_missing(&log, usize::MAX, &room(d.path())),
        0,
        "undecided"
    );
    assert!(log.sealed_segments().iter().all(|s| s.face().is_none()));

    log.append(&marker(ControlType::Abort), 0, None).unwrap();
    log.roll().unwrap();
    let sealed = log.sealed_segments();
    assert_eq!(
        attach_missing(&log, usize::MAX, &room(d.path())),
        sealed.len()
    );
    let mut values = Vec::new();
    for seg in &sealed {
        for b in face_batches(&seg.face().unwrap()) {
            values.extend(pairs(&b).into_iter().map(|(_, v)| v));
        }
    }
    let want: Vec<&[u8]> = vec![b"committed", b"plain", b"plain", b"plain"];
    assert_eq!(values, want);
}

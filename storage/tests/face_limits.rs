//! Faces built from hostile values: thousands of distinct field names, a
//! value of 100 MB, a field whose type changes from one segment to the
//! next. Each is built, bounded, and reads back what the log holds.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type};
use bytes::Bytes;
use karnak_storage::face::{self, Face, ValueFormat};
use karnak_storage::test_support::build_batch;
use karnak_storage::value_format::json::MAX_INFERRED_COLUMNS;
use karnak_storage::{FreeSpace, Log, LogConfig};

const T: i64 = 1_700_000_000_000;
const FIXED: usize = 7;
const INFERRED: ValueFormat = ValueFormat::Json { declared: None };

fn open(dir: &Path) -> Arc<Log> {
    let cfg = LogConfig {
        // A topic raised to take the 100 MB value (max.message.bytes).
        max_message_bytes: 200 << 20,
        ..Default::default()
    };
    Arc::new(Log::open(dir, "t", 0, cfg).unwrap())
}

fn append(log: &Log, values: &[String]) {
    for chunk in values.chunks(500) {
        let v: Vec<&[u8]> = chunk.iter().map(String::as_bytes).collect();
        log.append(&Bytes::from(build_batch(T, &v)), 0, None)
            .unwrap();
    }
}

/// Builds every missing face (inferred JSON columns) and returns them.
fn faces(dir: &Path, log: &Arc<Log>) -> Vec<Arc<Face>> {
    let space = FreeSpace::new(dir, Some(0));
    face::attach_missing(log, usize::MAX, &space, &INFERRED).unwrap();
    log.sealed_segments()
        .iter()
        .map(|s| s.face().expect("a face for every sealed segment"))
        .collect()
}

fn batches(face: &Face) -> Vec<RecordBatch> {
    face.batches().unwrap()
}

fn json_fields(face: &Face) -> Vec<(String, DataType)> {
    face.metadata().schema().fields()[FIXED..]
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect()
}

/// 10,000 records, each with a field no other has (and one they share):
/// the face keeps the first 256 fields as columns and records how many it
/// left out; the values are all still there.
#[test]
fn ten_thousand_field_names_keep_256_columns_and_count_the_rest() {
    let d = tempfile::tempdir().unwrap();
    let log = open(d.path());
    let values: Vec<String> = (0..10_000)
        .map(|i| format!(r#"{{"id": {i}, "f{i}": true}}"#))
        .collect();
    append(&log, &values);
    log.roll().unwrap();
    let faces = faces(d.path(), &log);
    assert_eq!(faces.len(), 1);
    let fields = json_fields(&faces[0]);
    assert_eq!(fields.len(), MAX_INFERRED_COLUMNS);
    assert_eq!(fields[0], ("id".to_string(), DataType::Int64));
    assert_eq!(fields[1].0, "f0");
    assert_eq!(
        faces[0].manifest().dropped_fields,
        10_001 - MAX_INFERRED_COLUMNS
    );
    let mut rows = 0;
    for b in batches(&faces[0]) {
        let ids = b.column(FIXED).as_primitive::<Int64Type>();
        let values = b.column(5).as_binary::<i32>();
        for i in 0..b.num_rows() {
            assert_eq!(values.value(i), values_of(ids.value(i)).as_bytes());
        }
        rows += b.num_rows();
    }
    assert_eq!(rows, 10_000);

    fn values_of(i: i64) -> String {
        format!(r#"{{"id": {i}, "f{i}": true}}"#)
    }
}

/// One value of 100 MB (a JSON object with a 100 MB string) gets a face
/// like any other: its bytes and its typed column read back whole.
#[test]
fn a_value_of_100_mb_gets_a_face() {
    let d = tempfile::tempdir().unwrap();
    let log = open(d.path());
    let big = format!(r#"{{"id": 1, "blob": "{}"}}"#, "x".repeat(100 << 20));
    append(
        &log,
        &[r#"{"id": 0, "blob": "small"}"#.to_string(), big.clone()],
    );
    log.roll().unwrap();
    let faces = faces(d.path(), &log);
    assert_eq!(
        json_fields(&faces[0]),
        [
            ("id".into(), DataType::Int64),
            ("blob".into(), DataType::Utf8)
        ]
    );
    // Statistics keep a prefix of such a value, not the value: the face
    // stays about as small as its compressed column.
    assert!(
        faces[0].size_bytes() < 4 << 20,
        "a face of {} bytes",
        faces[0].size_bytes()
    );
    let all = batches(&faces[0]);
    let rows: usize = all.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(rows, 2);
    let last = all.last().unwrap();
    let n = last.num_rows() - 1;
    assert_eq!(last.column(5).as_binary::<i32>().value(n), big.as_bytes());
    assert_eq!(
        last.column(FIXED + 1).as_string::<i32>().value(n).len(),
        100 << 20
    );
}

/// A field that is a number in one segment and text in the next: each
/// face types it as its own segment holds it.
#[test]
fn a_field_whose_type_changes_between_segments_is_typed_per_face() {
    let d = tempfile::tempdir().unwrap();
    let log = open(d.path());
    append(
        &log,
        &(0..100)
            .map(|i| format!(r#"{{"n": {i}}}"#))
            .collect::<Vec<_>>(),
    );
    log.roll().unwrap();
    append(
        &log,
        &(0..100)
            .map(|i| format!(r#"{{"n": "t{i}"}}"#))
            .collect::<Vec<_>>(),
    );
    log.roll().unwrap();
    let faces = faces(d.path(), &log);
    assert_eq!(json_fields(&faces[0]), [("n".to_string(), DataType::Int64)]);
    assert_eq!(json_fields(&faces[1]), [("n".to_string(), DataType::Utf8)]);
    let b = &batches(&faces[1])[0];
    assert_eq!(b.column(FIXED).as_string::<i32>().value(7), "t7");
    assert!(b.column(FIXED).null_count() == 0);
}

/// Fuzz finding 9: Parquet footers that send the parquet crate's Thrift
/// decoder round a loop billions of times (a list of booleans it reads as
/// zero bytes each). Behind a record that vouches for them, they are
/// refused by the footer check, before that decoder sees them.
#[test]
fn footers_the_thrift_decoder_would_spin_on_are_refused_first() {
    use karnak_storage::face::{Manifest, manifest_path, parquet_path};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/face");
    let mut seen = 0;
    let mut refused_first = 0;
    for f in std::fs::read_dir(&dir).unwrap() {
        let name = f.unwrap().path();
        let data = std::fs::read(&name).unwrap();
        let d = tempfile::tempdir().unwrap();
        let manifest = Manifest::vouching_for(&data, 0, 1_000);
        std::fs::write(parquet_path(d.path(), 0), &data).unwrap();
        std::fs::write(manifest_path(d.path(), 0), manifest.encode()).unwrap();
        let Err(err) = Face::open(d.path(), 0, 1_000, 0, &ValueFormat::Raw) else {
            panic!("a footer the decoder spins on was accepted");
        };
        let by_check = err.to_string().contains("footer metadata");
        eprintln!("{}: {err}", name.display());
        refused_first += usize::from(by_check);
        seen += 1;
    }
    assert!(seen >= 3);
    // Those the decoder spins on never reach it (the others it refuses
    // quickly itself).
    assert!(
        refused_first >= 2,
        "{refused_first} of {seen} refused by the footer check"
    );
}

//! Inputs the fuzz targets (`fuzz/`) found a fault with, replayed through
//! the same entry points. Each must now return.

use karnak_protocol::fuzz::replay;
use karnak_storage::fuzz;

/// Among them, columnar/base-offset-overflow: a batch header at base
/// offset i64::MIN with a negative last offset delta, whose `last_offset`
/// overflowed (a panic where overflow is checked, as in the dev profile
/// the tests build; a wrapped offset otherwise); and
/// columnar/record-offset-delta-overflow: a gzip batch at base offset
/// i64::MAX - 15 whose records' offset deltas overflowed in the Kafka
/// crate's record decoder; columnar/snappy-block-claiming-256mib: a raw
/// snappy block whose claimed length was allocated and zeroed before
/// decompressing (seconds under the fuzzer's sanitiser).
#[test]
fn every_kept_input_of_the_storage_targets() {
    assert!(replay("columnar", fuzz::columnar) >= 3);
    replay("cleaner_records", fuzz::cleaner_records);
    replay("producer_snapshot", fuzz::producer_snapshot);
    let scratch = tempfile::tempdir().unwrap();
    replay("partition_dir", |d| fuzz::partition_dir(scratch.path(), d));
    replay("face", |d| fuzz::face(scratch.path(), d));
}

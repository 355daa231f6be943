//! Micro-benchmarks of the produce and fetch hot paths, each beside a
//! same-run reference (raw CRC32C over the same bytes; memcpy): batch
//! validation, offset rewrite, segment append, index lookup, fetch response
//! assembly and the Arrow decode of a batch.
//!
//!   cargo bench -p karnak-benches --bench storage

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use karnak_protocol::fetch_response::{FetchPartition, FetchResponseBody, FetchTopic};
use karnak_protocol::record_batch::{ValidationPolicy, assign_offsets, validate_batches};
use karnak_storage::columnar::RecordsBuilder;
use karnak_storage::test_support::build_batch;
use karnak_storage::{Log, LogConfig};

const RECORD: usize = 1024;
const RECORDS_PER_BATCH: usize = 64;

fn batch() -> Bytes {
    let now = karnak_benches::now_ms();
    let value = vec![b'x'; RECORD];
    let values: Vec<&[u8]> = (0..RECORDS_PER_BATCH).map(|_| value.as_slice()).collect();
    Bytes::from(build_batch(now, &values))
}

fn produce_path(c: &mut Criterion) {
    let b = batch();
    let mut g = c.benchmark_group("produce");
    g.throughput(Throughput::Bytes(b.len() as u64));
    g.bench_function("reference_crc32c", |bench| {
        bench.iter(|| crc32c::crc32c(&b))
    });
    g.bench_function("validate_batch_64x1KiB", |bench| {
        let now = karnak_benches::now_ms();
        bench.iter(|| validate_batches(&b, &ValidationPolicy::default(), now).unwrap())
    });
    g.bench_function("assign_offsets_in_place", |bench| {
        bench.iter_batched(
            || b.to_vec(),
            |mut v| assign_offsets(&mut v, 42, 0),
            BatchSize::SmallInput,
        )
    });
    // Appends into the page cache, with blocks reserved ahead (the default)
    // and without (ext4 then reserves delayed-allocation space per page).
    let dir = tempfile::tempdir().unwrap();
    for (name, ahead) in [
        (
            "log_append_page_cache",
            LogConfig::default().preallocate_ahead_bytes,
        ),
        ("log_append_page_cache_no_reserve", 0),
    ] {
        let config = LogConfig {
            segment_bytes: 256 << 20,
            preallocate_ahead_bytes: ahead,
            ..LogConfig::default()
        };
        let log = Log::open(&dir.path().join(name), "bench", 0, config).unwrap();
        g.bench_function(name, |bench| {
            bench.iter(|| log.append(&b, 0, None).unwrap())
        });
    }
    g.finish();
}

fn fetch_path(c: &mut Criterion) {
    let b = batch();
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(&dir.path().join("f-0"), "f", 0, LogConfig::default()).unwrap();
    for _ in 0..2000 {
        log.append(&b, 0, None).unwrap();
    }
    let end = log.log_end_offset();
    let mut g = c.benchmark_group("fetch");
    g.bench_function("log_read_lookup_1MiB", |bench| {
        let mut offset = 0;
        bench.iter(|| {
            offset = (offset + 7919) % end;
            log.read(offset, 1 << 20, true).unwrap()
        })
    });
    g.bench_function("encode_response_100_partitions", |bench| {
        bench.iter(|| {
            let partitions = (0..100)
                .map(|p| FetchPartition {
                    partition_index: p,
                    error_code: 0,
                    high_watermark: end,
                    last_stable_offset: end,
                    log_start_offset: 0,
                    aborted_transactions: None,
                    records: Some(((), 1 << 20)),
                    current_leader: None,
                })
                .collect();
            let body = FetchResponseBody {
                throttle_time_ms: 0,
                error_code: 0,
                session_id: 0,
                node_endpoints: vec![],
                topics: vec![FetchTopic {
                    name: Bytes::from_static(b"f"),
                    topic_id: [1; 16],
                    partitions,
                }],
            };
            body.encode(12)
        })
    });
    g.finish();
}

/// The Arrow face: a stored batch decoded into the SQL table's columns.
fn arrow_decode(c: &mut Criterion) {
    let mut b = batch().to_vec();
    assign_offsets(&mut b, 0, 0);
    let b = Bytes::from(b);
    let mut g = c.benchmark_group("sql");
    g.throughput(Throughput::Bytes(b.len() as u64));
    g.bench_function("reference_memcpy", |bench| bench.iter(|| b.to_vec()));
    g.bench_function("arrow_decode_batch_64x1KiB", |bench| {
        bench.iter(|| {
            let mut rb = RecordsBuilder::new();
            rb.push_batches(0, &b, 0, i64::MAX, &[]).unwrap();
            rb.finish()
        })
    });
    g.finish();
}

criterion_group!(benches, produce_path, fetch_path, arrow_decode);
criterion_main!(benches);

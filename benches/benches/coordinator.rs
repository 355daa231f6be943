//! Obelisk sequencer: ids/s with leased durability, against a plain
//! in-memory AtomicU64 (the floor) and a durable write per id (the ceiling
//! the lease avoids), in the same run.

use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use karnak_coordinator::Sequencer;

fn sequencer(c: &mut Criterion) {
    let mut g = c.benchmark_group("obelisk");
    g.throughput(Throughput::Elements(1));
    let counter = AtomicU64::new(0);
    g.bench_function("reference_atomic_u64", |b| {
        b.iter(|| counter.fetch_add(1, Ordering::Relaxed))
    });
    let dir = tempfile::tempdir().unwrap();
    let leased = Sequencer::open(&dir.path().join("leased"), 1, 4096, u64::MAX).unwrap();
    g.bench_function("next_lease_4096", |b| b.iter(|| leased.next().unwrap()));
    let durable = Sequencer::open(&dir.path().join("per-id"), 1, 1, u64::MAX).unwrap();
    g.bench_function("next_fdatasync_per_id", |b| {
        b.iter(|| durable.next().unwrap())
    });
    g.finish();
}

criterion_group!(benches, sequencer);
criterion_main!(benches);

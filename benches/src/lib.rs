//! Shared helpers for Karnak's benchmarks. The end-to-end load figures come
//! from `benches/e2e/` (a real librdkafka client); see `RESULTS.md`.

/// Wall-clock milliseconds since the epoch, for batch timestamps.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

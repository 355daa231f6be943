//! Shared helpers for Karnak's benchmarks and `karnak-bench`, the load tool
//! (`load`). Figures are in `RESULTS.md`.

pub mod load;

/// Wall-clock milliseconds since the epoch, for batch timestamps.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

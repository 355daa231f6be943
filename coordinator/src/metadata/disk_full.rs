//! Metadata writes on a full disk wait for space instead of failing.
//! openraft stops its core for good on any storage error: on a full disk
//! that would leave the broker without metadata (no topic created or
//! deleted, no config changed, no leader elected) until restarted, when
//! freeing space (retention, DeleteRecords, an operator) is all it takes.
//! (Kafka stops a broker whose metadata log dir fails.)

use std::time::Duration;

/// Metadata writes that found the disk full and waited for space.
pub const METADATA_DISK_FULL_WAITS: &str = "karnak_metadata_disk_full_waits_total";

const RETRY: Duration = Duration::from_millis(200);

/// Runs `write` until it does not fail for a full disk (`is_full`). Each
/// try must be whole or leave nothing the next one trips on.
pub(super) async fn until_written<T, E: std::fmt::Display>(
    what: &str,
    is_full: impl Fn(&E) -> bool,
    mut write: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    let mut waited = false;
    loop {
        match write() {
            Err(e) if is_full(&e) => {
                if !waited {
                    tracing::error!(%what, error = %e,
                        "metadata write on a full disk: waiting for space (retention, DeleteRecords or a deleted topic frees it)");
                    metrics::counter!(METADATA_DISK_FULL_WAITS).increment(1);
                    waited = true;
                }
                tokio::time::sleep(RETRY).await;
            }
            result => {
                if waited && result.is_ok() {
                    tracing::warn!(%what, "metadata write done: the disk has space again");
                }
                return result;
            }
        }
    }
}

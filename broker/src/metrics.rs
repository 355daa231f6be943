//! Metric names and the Prometheus endpoint on the admin port.
//!
//! Names are `karnak_*`; labels use Kafka's own words (API names such as
//! `Produce`, error names such as `UNKNOWN_TOPIC_OR_PARTITION`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::OnceLock;

use anyhow::Context;
use kafka_protocol::error::ResponseError;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

pub const REQUESTS: &str = "karnak_requests_total";
pub const REQUEST_LATENCY: &str = "karnak_request_latency_seconds";
pub const PRODUCE_LATENCY: &str = "karnak_produce_latency_seconds";
pub const FETCH_LATENCY: &str = "karnak_fetch_latency_seconds";
pub const BYTES_IN: &str = "karnak_bytes_in_total";
pub const BYTES_OUT: &str = "karnak_bytes_out_total";
pub const PRODUCED_RECORDS: &str = "karnak_produced_records_total";
/// Record bytes sent to sockets with `sendfile(2)` (no user-space copy).
pub const FETCH_SENDFILE_BYTES: &str = "karnak_fetch_sendfile_bytes_total";
/// Record bytes that went through a user-space buffer instead (fallback path).
pub const FETCH_COPIED_BYTES: &str = "karnak_fetch_copied_bytes_total";
/// Fetches parked waiting for `min_bytes` (Kafka's fetch purgatory).
pub const FETCH_PURGATORY: &str = "karnak_fetch_purgatory_size";
/// Incremental fetch sessions held (Kafka's NumIncrementalFetchSessions).
pub const FETCH_SESSIONS: &str = "karnak_fetch_sessions";
pub const LOG_END_OFFSET: &str = "karnak_log_end_offset";
pub const CONNECTIONS: &str = "karnak_connections";
/// SASL logins by mechanism and result (ok, failed).
pub const SASL_AUTHENTICATIONS: &str = "karnak_sasl_authentications_total";
pub const CONNECTION_ERRORS: &str = "karnak_connection_errors_total";
pub const QUOTA_THROTTLED: &str = "karnak_quota_throttled_total";
/// Idempotent producers' retries answered with the original offsets.
pub const DUPLICATE_BATCHES: &str = "karnak_produce_duplicate_batches_total";
/// Bytes of requests being read or handled (Kafka's MemoryPoolUsed), and
/// their bound, `--queued-max-request-bytes`.
pub const QUEUED_REQUEST_BYTES: &str = "karnak_queued_request_bytes";
pub const QUEUED_REQUEST_BYTES_MAX: &str = "karnak_queued_request_bytes_max";
/// Requests whose reading waited for room under that bound.
pub const QUEUED_REQUEST_WAITS: &str = "karnak_queued_request_waits_total";

/// Installs the global recorder and serves `/metrics` on `addr`.
pub fn install(addr: SocketAddr) -> anyhow::Result<()> {
    // Latency buckets from 50 µs to 10 s: produce on page cache is tens of µs,
    // fetch long-polls wait up to max_wait_ms.
    let buckets = [
        0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
        1.0, 2.5, 5.0, 10.0,
    ];
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
        .context("configuring histogram buckets")?
        .install()
        .with_context(|| format!("starting the metrics endpoint on {addr}"))?;
    describe();
    // Exported from the start so a scrape shows 0 rather than nothing.
    metrics::counter!(FETCH_COPIED_BYTES).absolute(0);
    metrics::counter!(FETCH_SENDFILE_BYTES).absolute(0);
    metrics::gauge!(FETCH_PURGATORY).set(0.0);
    metrics::gauge!(FETCH_SESSIONS).set(0.0);
    metrics::counter!(DUPLICATE_BATCHES).absolute(0);
    metrics::gauge!(QUEUED_REQUEST_BYTES).set(0.0);
    metrics::counter!(QUEUED_REQUEST_WAITS).absolute(0);
    Ok(())
}

fn describe() {
    metrics::describe_counter!(
        REQUESTS,
        "Requests answered, by Kafka API and top-level error"
    );
    metrics::describe_histogram!(
        REQUEST_LATENCY,
        "Time from request read to response written"
    );
    metrics::describe_histogram!(PRODUCE_LATENCY, "Produce: request read to acknowledgement");
    metrics::describe_histogram!(
        FETCH_LATENCY,
        "Fetch: request read to response written, long-poll included"
    );
    metrics::describe_counter!(BYTES_IN, "Bytes read from Kafka clients");
    metrics::describe_counter!(
        QUOTA_THROTTLED,
        "Requests that took a client over its quota (it was throttled), by quota"
    );
    metrics::describe_counter!(
        DUPLICATE_BATCHES,
        "Batches an idempotent producer sent again, answered with their first offsets"
    );
    metrics::describe_counter!(
        karnak_coordinator::txn::TRANSACTIONS_METRIC,
        "Transactions ended, by result (commit, abort)"
    );
    metrics::describe_counter!(
        karnak_coordinator::txn::TIMED_OUT_METRIC,
        "Transactions aborted by the coordinator past transaction.timeout.ms"
    );
    metrics::describe_counter!(BYTES_OUT, "Bytes written to Kafka clients");
    metrics::describe_gauge!(
        QUEUED_REQUEST_BYTES,
        "Bytes of requests being read or handled, under --queued-max-request-bytes"
    );
    metrics::describe_counter!(
        QUEUED_REQUEST_WAITS,
        "Requests that waited for room under --queued-max-request-bytes before being read"
    );
    metrics::describe_counter!(
        CONNECTION_ERRORS,
        "Connections closed by the broker, by reason (bad_frame, idle, request_timeout, max_connections, ...)"
    );
    metrics::describe_counter!(FETCH_SENDFILE_BYTES, "Record bytes sent with sendfile(2)");
    metrics::describe_counter!(FETCH_COPIED_BYTES, "Record bytes copied through user space");
    metrics::describe_gauge!(LOG_END_OFFSET, "Log end offset per topic-partition");
    metrics::describe_histogram!(
        karnak_storage::log::LOG_FLUSH_LATENCY,
        "Time of each log fsync (acks=all, flush.ms, flush.messages, shutdown)"
    );
    metrics::describe_gauge!(
        karnak_storage::log::OFFLINE_PARTITIONS,
        "Partitions taken offline by a failed fsync or write (KAFKA_STORAGE_ERROR until restart)"
    );
    metrics::gauge!(karnak_storage::log::OFFLINE_PARTITIONS).set(0.0);
    metrics::describe_counter!(
        karnak_storage::group_commit::GROUP_COMMIT_PASSES,
        "Passes of the group-commit flusher (one fsync per log written since the last)"
    );
    metrics::describe_counter!(
        karnak_storage::group_commit::GROUP_COMMIT_REQUESTS,
        "Requests the group-commit flusher made durable (acks=all produce, offset commits)"
    );
}

/// Sets the log-end-offset gauge of every partition (at start, before any produce).
pub fn record_log_end_offsets(logs: &karnak_storage::LogManager) {
    for topic in logs.topics() {
        for log in &topic.logs {
            metrics::gauge!(LOG_END_OFFSET, "topic" => topic.meta.name.clone(), "partition" => log.partition().to_string())
                .set(log.log_end_offset() as f64);
        }
    }
}

/// Kafka's name for an error code, e.g. 3 -> `UNKNOWN_TOPIC_OR_PARTITION`.
pub fn error_name(code: i16) -> &'static str {
    static NAMES: OnceLock<HashMap<i16, &'static str>> = OnceLock::new();
    if code == 0 {
        return "NONE";
    }
    let names = NAMES.get_or_init(|| {
        (-1i16..=150)
            .filter_map(|c| {
                let e = ResponseError::try_from_code(c)?;
                if matches!(e, ResponseError::Unknown(_)) {
                    return None;
                }
                Some((c, &*Box::leak(upper_snake(&e.to_string()).into_boxed_str())))
            })
            .collect()
    });
    names.get(&code).copied().unwrap_or("UNKNOWN")
}

fn upper_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, ch) in camel.chars().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(ch.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn error_names_are_kafkas() {
        assert_eq!(super::error_name(0), "NONE");
        assert_eq!(super::error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(super::error_name(2), "CORRUPT_MESSAGE");
        assert_eq!(super::error_name(35), "UNSUPPORTED_VERSION");
    }
}

//! Idle mode: what many open, idle Kafka connections cost the broker.
//! Opens `connections` sockets, proves each is served (one ApiVersions
//! round trip), then holds them idle while the broker's RSS and CPU are read
//! from /proc. Needs an open-files limit above `connections` on both sides
//! (`ulimit -n`).

use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::{Decodable, StrBytes};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::raw::{Frame, connect, read_response};
use super::{process_cpu_seconds, process_rss_bytes};

const API_VERSIONS_VERSION: i16 = 3;
/// Connections being opened at once (the broker's accept backlog is finite).
const OPENING_AT_ONCE: usize = 200;

pub struct IdleResult {
    pub connections: usize,
    pub open_seconds: f64,
    pub rss_before: u64,
    pub rss_open: u64,
    pub rss_after_idle: u64,
    pub idle_seconds: f64,
    pub idle_cpu_seconds: f64,
}

async fn open_one(bootstrap: String, frame: Vec<u8>) -> anyhow::Result<TcpStream> {
    let mut s = connect(&bootstrap).await?;
    s.write_all(&frame).await.context("sending ApiVersions")?;
    let hv = ApiKey::ApiVersions.response_header_version(API_VERSIONS_VERSION);
    let (_, mut body) = read_response(&mut s, hv).await?;
    let r = ApiVersionsResponse::decode(&mut body, API_VERSIONS_VERSION)
        .context("decoding ApiVersions")?;
    if r.error_code != 0 {
        anyhow::bail!("ApiVersions answered error {}", r.error_code);
    }
    Ok(s)
}

pub async fn idle(
    bootstrap: &str,
    connections: usize,
    hold: Duration,
    broker_pid: u32,
) -> anyhow::Result<IdleResult> {
    let req = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("karnak-bench"))
        .with_client_software_version(StrBytes::from_static_str("0"));
    let frame = Frame::encode(ApiKey::ApiVersions, API_VERSIONS_VERSION, &req)?.bytes;
    let rss_before = process_rss_bytes(broker_pid)?;
    let start = Instant::now();
    let opened: Vec<anyhow::Result<TcpStream>> = futures::stream::iter(0..connections)
        .map(|_| open_one(bootstrap.to_string(), frame.clone()))
        .buffer_unordered(OPENING_AT_ONCE)
        .collect()
        .await;
    let open_seconds = start.elapsed().as_secs_f64();
    let mut sockets = Vec::with_capacity(connections);
    for (i, s) in opened.into_iter().enumerate() {
        sockets.push(s.with_context(|| {
            format!("opening connection {i} of {connections} (is `ulimit -n` above it?)")
        })?);
    }
    let rss_open = process_rss_bytes(broker_pid)?;
    let cpu0 = process_cpu_seconds(broker_pid)?;
    let idle_start = Instant::now();
    tokio::time::sleep(hold).await;
    let idle_cpu_seconds = process_cpu_seconds(broker_pid)? - cpu0;
    let idle_seconds = idle_start.elapsed().as_secs_f64();
    let rss_after_idle = process_rss_bytes(broker_pid)?;
    drop(sockets);
    Ok(IdleResult {
        connections,
        open_seconds,
        rss_before,
        rss_open,
        rss_after_idle,
        idle_seconds,
        idle_cpu_seconds,
    })
}

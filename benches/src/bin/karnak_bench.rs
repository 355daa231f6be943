//! karnak-bench: load a Kafka broker and say what the machine allows.
//!
//!   karnak-bench limits --dir ./data
//!   karnak-bench produce --bootstrap 127.0.0.1:9092 --topic t --record-size 1024 --acks 1
//!   karnak-bench consume --bootstrap 127.0.0.1:9092 --topic t
//!
//! Every mode prints one JSON line (for scripts) and a summary. With
//! `--broker-pid`, the broker's CPU seconds per GB moved and its RSS are
//! read from /proc. Every run is bounded by `--records` and `--duration`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use karnak_benches::load::{self, limits, raw};
use serde_json::json;

#[derive(Parser)]
#[command(
    name = "karnak-bench",
    about = "Load a Kafka broker; measure the machine's limits"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Disk (write + fdatasync), page cache read, fsync latency, loopback TCP, CRC32C.
    Limits {
        /// Directory on the disk under test (the broker's data dir's disk).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
    },
    /// Produce: records/s, MB/s, send→ack latency.
    Produce(ProduceCmd),
    /// Consume a topic from offset 0 to the end it has when consuming starts.
    Consume(ConsumeCmd),
}

#[derive(Args)]
struct Common {
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    #[arg(long, default_value = "karnak-bench")]
    topic: String,
    #[arg(long, default_value_t = 1)]
    partitions: i32,
    /// Connections (each its own task).
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Stop after this many records (rounded up to whole requests).
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Stop after this many seconds.
    #[arg(long, default_value_t = 60.0)]
    duration: f64,
    /// The broker's pid: CPU seconds per GB and RSS from /proc.
    #[arg(long)]
    broker_pid: Option<u32>,
}

#[derive(Args)]
struct ProduceCmd {
    #[command(flatten)]
    common: Common,
    /// Bytes per record value (no key).
    #[arg(long, default_value_t = 1024)]
    record_size: usize,
    /// Records per batch; each request carries one batch per partition.
    #[arg(long, default_value_t = 1000)]
    batch_records: usize,
    /// 0, 1 or -1 (all).
    #[arg(long, default_value_t = 1, allow_hyphen_values = true)]
    acks: i16,
    /// Requests in flight per connection.
    #[arg(long, default_value_t = 5)]
    in_flight: usize,
    /// Target records/s over all connections (latency at a fixed load).
    #[arg(long)]
    rate: Option<u64>,
}

#[derive(Args)]
struct ConsumeCmd {
    #[command(flatten)]
    common: Common,
    #[arg(long, default_value_t = 64 << 20)]
    max_bytes: i32,
    #[arg(long, default_value_t = 16 << 20)]
    partition_max_bytes: i32,
}

/// Broker CPU and RSS around a run.
struct BrokerProbe {
    pid: Option<u32>,
    cpu0: f64,
}

impl BrokerProbe {
    fn start(pid: Option<u32>) -> anyhow::Result<Self> {
        let cpu0 = pid
            .map(load::process_cpu_seconds)
            .transpose()?
            .unwrap_or(0.0);
        Ok(BrokerProbe { pid, cpu0 })
    }

    fn finish(&self, bytes: u64) -> anyhow::Result<serde_json::Value> {
        let Some(pid) = self.pid else {
            return Ok(serde_json::Value::Null);
        };
        let cpu = load::process_cpu_seconds(pid)? - self.cpu0;
        let gb = bytes as f64 / 1e9;
        Ok(json!({
            "cpu_seconds": (cpu * 1000.0).round() / 1000.0,
            "cpu_seconds_per_GB": if gb > 0.0 { ((cpu / gb) * 1000.0).round() / 1000.0 } else { f64::NAN },
            "rss_MB": load::process_rss_bytes(pid)? as f64 / 1e6,
        }))
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cli.cmd {
        Cmd::Limits { dir, seconds } => {
            let v = limits::measure(&dir, seconds)?;
            println!("{}", json!({"mode": "limits", "dir": dir, "limits": v}));
        }
        Cmd::Produce(p) => {
            let c = &p.common;
            let args = raw::ProduceArgs {
                bootstrap: c.bootstrap.clone(),
                topic: c.topic.clone(),
                partitions: c.partitions.max(1),
                record_size: p.record_size,
                batch_records: p.batch_records.max(1),
                acks: p.acks,
                connections: c.connections.max(1),
                in_flight: p.in_flight.max(1),
                records: c.records,
                duration: Duration::from_secs_f64(c.duration.max(0.1)),
                rate: p.rate,
            };
            if !matches!(args.acks, -1..=1) {
                anyhow::bail!("--acks must be 0, 1 or -1");
            }
            let probe = BrokerProbe::start(c.broker_pid)?;
            let r = rt.block_on(raw::produce(&args))?;
            let broker = probe.finish(r.wire_bytes)?;
            let out = json!({
                "mode": "produce", "client": "raw", "topic": args.topic,
                "partitions": args.partitions, "record_size": args.record_size,
                "batch_records": args.batch_records, "acks": args.acks,
                "connections": args.connections, "in_flight": args.in_flight,
                "rate_target": args.rate,
                "records": r.records, "seconds": r.seconds, "errors": r.errors,
                "records_per_s": (r.records as f64 / r.seconds).round(),
                "MBps": (r.record_bytes as f64 / r.seconds / 1e6 * 10.0).round() / 10.0,
                "wire_MBps": (r.wire_bytes as f64 / r.seconds / 1e6 * 10.0).round() / 10.0,
                "latency_send_to_ack": r.latency.to_json(),
                "broker": broker,
            });
            println!("{out}");
            if r.errors > 0 {
                anyhow::bail!("{} partition errors in produce responses", r.errors);
            }
        }
        Cmd::Consume(cm) => {
            let c = &cm.common;
            let args = raw::ConsumeArgs {
                bootstrap: c.bootstrap.clone(),
                topic: c.topic.clone(),
                partitions: c.partitions.max(1),
                connections: c.connections.max(1),
                max_bytes: cm.max_bytes,
                partition_max_bytes: cm.partition_max_bytes,
                records: c.records,
                duration: Duration::from_secs_f64(c.duration.max(0.1)),
            };
            let probe = BrokerProbe::start(c.broker_pid)?;
            let r = rt.block_on(raw::consume(&args))?;
            let broker = probe.finish(r.bytes)?;
            println!(
                "{}",
                json!({
                    "mode": "consume", "client": "raw", "topic": args.topic,
                    "partitions": args.partitions, "connections": args.connections,
                    "records": r.records, "fetches": r.fetches, "seconds": r.seconds,
                    "errors": r.errors,
                    "records_per_s": (r.records as f64 / r.seconds).round(),
                    "MBps": (r.bytes as f64 / r.seconds / 1e6 * 10.0).round() / 10.0,
                    "broker": broker,
                })
            );
            if r.errors > 0 {
                anyhow::bail!("{} partition errors in fetch responses", r.errors);
            }
        }
    }
    Ok(())
}

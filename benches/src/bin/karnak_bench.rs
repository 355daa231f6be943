//! karnak-bench: load a Kafka broker and say what the machine allows.
//!
//!   karnak-bench limits --dir ./data
//!   karnak-bench produce --bootstrap 127.0.0.1:9092 --topic t --record-size 1024 --acks 1
//!   karnak-bench consume --bootstrap 127.0.0.1:9092 --topic t
//!   karnak-bench produce --client rdkafka --bootstrap mock --linger-ms 5
//!   karnak-bench e2e --bootstrap 127.0.0.1:9092 --rate 10000
//!   karnak-bench idle --connections 10000 --broker-pid $PID
//!
//! `--client raw` (the default) speaks the wire itself; `--client rdkafka`
//! loads through librdkafka, and `--bootstrap mock` points that at
//! librdkafka's in-process mock cluster, the same-run reference.
//!
//! Every mode prints one JSON line (for scripts) and a summary. With
//! `--broker-pid`, the broker's CPU seconds per GB moved and its RSS are
//! read from /proc. Every run is bounded by `--records` and `--duration`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use karnak_benches::load::{self, client, idle, limits, raw};
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
    /// Produce→consume latency through librdkafka (records carry their send time).
    E2e(ProduceCmd),
    /// Delete topics (the load matrix frees the disk between rows).
    Delete {
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap: String,
        /// Topic names.
        #[arg(required = true)]
        topics: Vec<String>,
    },
    /// Hold many idle connections open: the broker's RSS and CPU for them.
    Idle {
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap: String,
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        /// Seconds to hold them idle while the broker's CPU is read.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        #[arg(long)]
        broker_pid: u32,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Client {
    /// The tool's own wire encoder: the broker's cost only.
    Raw,
    /// librdkafka through the rdkafka crate.
    Rdkafka,
}

#[derive(Args)]
struct Common {
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    #[arg(long, default_value = "karnak-bench")]
    topic: String,
    #[arg(long, value_enum, default_value = "raw")]
    client: Client,
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
    /// rdkafka: linger.ms.
    #[arg(long, default_value_t = 5)]
    linger_ms: u32,
    /// rdkafka: batch.size in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    batch_size: u32,
    /// rdkafka: compression.type (none, gzip, snappy, lz4, zstd).
    #[arg(long, default_value = "none")]
    compression: String,
    /// Seconds at the start whose latency samples are left out (throughput
    /// counts the whole run).
    #[arg(long, default_value_t = 0.0)]
    warmup: f64,
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
    if let Cmd::Produce(p) | Cmd::E2e(p) = &cli.cmd {
        load::set_latency_warmup(Duration::from_secs_f64(p.warmup.max(0.0)));
    }
    match cli.cmd {
        Cmd::Limits { dir, seconds } => {
            let v = limits::measure(&dir, seconds)?;
            println!("{}", json!({"mode": "limits", "dir": dir, "limits": v}));
        }
        Cmd::Delete { bootstrap, topics } => {
            rt.block_on(raw::delete_topics(&bootstrap, &topics))?;
            println!("{}", json!({"mode": "delete", "topics": topics}));
        }
        Cmd::Produce(p) if p.common.client == Client::Rdkafka => rdkafka_produce(&rt, &p, false)?,
        Cmd::E2e(p) => rdkafka_produce(&rt, &p, true)?,
        Cmd::Idle {
            bootstrap,
            connections,
            seconds,
            broker_pid,
        } => {
            let hold = Duration::from_secs_f64(seconds.max(0.1));
            let r = rt.block_on(idle::idle(&bootstrap, connections, hold, broker_pid))?;
            let mb = |b: u64| (b as f64 / 1e6 * 10.0).round() / 10.0;
            println!(
                "{}",
                json!({
                    "mode": "idle", "connections": r.connections,
                    "open_seconds": r.open_seconds,
                    "broker_rss_MB_before": mb(r.rss_before),
                    "broker_rss_MB_open": mb(r.rss_open),
                    "broker_rss_MB_after_idle": mb(r.rss_after_idle),
                    "broker_rss_KB_per_connection":
                        ((r.rss_after_idle as f64 - r.rss_before as f64) / r.connections.max(1) as f64 / 1e3 * 10.0).round() / 10.0,
                    "idle_seconds": r.idle_seconds,
                    "broker_idle_cpu_seconds": r.idle_cpu_seconds,
                    "broker_idle_cpu_fraction": r.idle_cpu_seconds / r.idle_seconds,
                })
            );
        }
        Cmd::Consume(cm) if cm.common.client == Client::Rdkafka => rdkafka_consume(&cm)?,
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

/// Produce (or, with `e2e`, produce and consume) through librdkafka.
fn rdkafka_produce(rt: &tokio::runtime::Runtime, p: &ProduceCmd, e2e: bool) -> anyhow::Result<()> {
    let c = &p.common;
    let a = client::ProducerArgs {
        topic: c.topic.clone(),
        partitions: c.partitions.max(1),
        record_size: p.record_size,
        acks: p.acks,
        producers: c.connections.max(1),
        records: c.records,
        duration: Duration::from_secs_f64(c.duration.max(0.1)),
        rate: p.rate,
        linger_ms: p.linger_ms,
        batch_size: p.batch_size,
        compression: p.compression.clone(),
    };
    if !matches!(a.acks, -1..=1) {
        anyhow::bail!("--acks must be 0, 1 or -1");
    }
    let target = client::Target::new(&c.bootstrap, &a.topic, a.partitions)?;
    if !target.is_mock {
        rt.block_on(raw::ensure_topic(&c.bootstrap, &a.topic, a.partitions))?;
    }
    let probe = BrokerProbe::start(c.broker_pid)?;
    let (r, e2e_out) = if e2e {
        let r = client::end_to_end(&target, &a)?;
        let out =
            json!({"consumed": r.consumed, "latency_produce_to_consume": r.latency.to_json()});
        if r.consumed != r.produced.records {
            anyhow::bail!(
                "consumed {} of {} records produced",
                r.consumed,
                r.produced.records
            );
        }
        (r.produced, out)
    } else {
        (
            client::produce(&target, &a, std::time::Instant::now(), false)?,
            serde_json::Value::Null,
        )
    };
    let broker = probe.finish(r.record_bytes)?;
    println!(
        "{}",
        json!({
            "mode": if e2e { "e2e" } else { "produce" }, "client": "rdkafka",
            "target": if target.is_mock { "librdkafka-mock" } else { "broker" },
            "topic": a.topic, "partitions": a.partitions, "record_size": a.record_size,
            "acks": a.acks, "producers": a.producers, "linger_ms": a.linger_ms,
            "batch_size": a.batch_size, "compression": a.compression, "rate_target": a.rate,
            "records": r.records, "seconds": r.seconds, "errors": r.errors,
            "first_error": r.first_error,
            "records_per_s": (r.records as f64 / r.seconds).round(),
            "MBps": (r.record_bytes as f64 / r.seconds / 1e6 * 10.0).round() / 10.0,
            "latency_send_to_ack": r.latency.to_json(),
            "end_to_end": e2e_out,
            "broker": broker,
        })
    );
    if r.errors > 0 {
        anyhow::bail!("{} records failed delivery", r.errors);
    }
    Ok(())
}

/// Consume through librdkafka from each partition's start to its end now.
fn rdkafka_consume(cm: &ConsumeCmd) -> anyhow::Result<()> {
    let c = &cm.common;
    let partitions = c.partitions.max(1);
    let target = client::Target::new(&c.bootstrap, &c.topic, partitions)?;
    if target.is_mock {
        // A fresh mock cluster is empty: fill it with --records 1 KiB records.
        let fill = client::ProducerArgs {
            topic: c.topic.clone(),
            partitions,
            record_size: 1024,
            acks: 1,
            producers: 1,
            records: c.records,
            duration: Duration::from_secs(600),
            rate: None,
            linger_ms: 5,
            batch_size: 1 << 20,
            compression: "none".into(),
        };
        client::produce(&target, &fill, std::time::Instant::now(), false)?;
    }
    let probe = BrokerProbe::start(c.broker_pid)?;
    let r = client::consume(
        &target,
        &c.topic,
        partitions,
        Duration::from_secs_f64(c.duration.max(0.1)),
    )?;
    let broker = probe.finish(r.bytes)?;
    println!(
        "{}",
        json!({
            "mode": "consume", "client": "rdkafka", "topic": c.topic, "partitions": partitions,
            "records": r.records, "seconds": r.seconds,
            "records_per_s": (r.records as f64 / r.seconds).round(),
            "MBps": (r.bytes as f64 / r.seconds / 1e6 * 10.0).round() / 10.0,
            "broker": broker,
        })
    );
    Ok(())
}

//! The `broker_requests` fuzz target (`fuzz/`) and its regression test:
//! the bytes a client sends on one connection, given to a whole broker
//! running in this process (decoding, the handlers' own checks, the
//! coordinator, the logs), as a socket would give them. An input's first
//! byte picks the broker: even, a PLAINTEXT listener; odd, a SASL_PLAINTEXT
//! one (PLAIN and SCRAM, users `admin` a super user and `alice` with no
//! ACL, the ACL authorizer on); requests sent behind a login are served
//! after it, as Kafka does. After each input that broker must still
//! answer ApiVersions on a new connection: a handler that panics aborts the
//! fuzzer (libFuzzer's panic hook), one that wedges the broker fails the
//! check.
//!
//! One broker serves many inputs (starting one costs far more than an
//! input); every [`RESTART_EVERY`] inputs it is shut down cleanly and a
//! fresh one starts in a new directory, so what inputs create (topics,
//! groups, producer ids) stays bounded.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use crate::connection::Duplex;

/// Inputs one broker serves before a fresh one takes over.
const RESTART_EVERY: u64 = 1_000;
/// How long an input's answers are read; a long poll may hold them longer
/// and is left to finish on its own.
const ANSWER_WAIT: Duration = Duration::from_secs(1);
/// How long the broker has to answer ApiVersions after an input.
const HEALTHY_WITHIN: Duration = Duration::from_secs(10);
const PEER: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 40000);

type Connections = mpsc::Sender<(Box<dyn Duplex>, SocketAddr)>;

struct Harness {
    rt: tokio::runtime::Runtime,
    /// The PLAINTEXT broker and the SASL one.
    brokers: [Mutex<Generation>; 2],
}

/// One broker: its listener's channel, how to stop it, and its thread.
struct Generation {
    sasl: bool,
    number: u64,
    connections: Connections,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    dir: PathBuf,
    inputs: u64,
}

/// One input: which broker, then a connection's bytes from the client,
/// then its end.
pub fn requests(data: &[u8]) {
    answers(data);
}

/// [`requests`], returning what the broker sent back.
pub fn answers(data: &[u8]) -> Vec<u8> {
    let Some((which, data)) = data.split_first() else {
        return Vec::new();
    };
    let h = harness();
    let connections = {
        let mut g = h.brokers[usize::from(which & 1)]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        g.inputs += 1;
        if g.inputs > RESTART_EVERY {
            let next = start(&h.rt, g.sasl, g.number + 1);
            stop(std::mem::replace(&mut *g, next));
        }
        g.connections.clone()
    };
    h.rt.block_on(async {
        let answered = exchange(&connections, data).await;
        assert!(
            tokio::time::timeout(HEALTHY_WITHIN, answers_api_versions(&connections))
                .await
                .unwrap_or(false),
            "the broker did not answer ApiVersions within {HEALTHY_WITHIN:?} after an input"
        );
        answered
    })
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime for the fuzzed broker");
        let brokers = [
            Mutex::new(start(&rt, false, 0)),
            Mutex::new(start(&rt, true, 0)),
        ];
        Harness { rt, brokers }
    })
}

fn start(rt: &tokio::runtime::Runtime, sasl: bool, number: u64) -> Generation {
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!(
        "karnak-fuzz-broker-{}-{}-{number}",
        std::process::id(),
        if sasl { "sasl" } else { "plain" }
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let users = dir.with_extension("users");
    if sasl {
        std::fs::write(&users, "admin:admin-secret\nalice:alice-secret\n")
            .expect("the fuzzed broker's users file");
    }
    let (connections, rx) = mpsc::channel(16);
    let (stop, stopped) = oneshot::channel::<()>();
    let mut args = crate::Args {
        data_dir: Some(dir.clone()),
        kafka_addr: Some(([127, 0, 0, 1], 9092).into()),
        advertised_kafka_addr: Some("127.0.0.1:9092".into()),
        sql_enabled: Some(false),
        group_coordinator_shards: Some(2),
        group_initial_rebalance_delay_ms: Some(0),
        log_preallocate_ahead_bytes: Some(0),
        log_segment_bytes: Some(64 * 1024),
        log_cleaner_enable: Some(false),
        ..Default::default()
    };
    if sasl {
        args.kafka_addr = None;
        args.advertised_kafka_addr = None;
        args.listeners = Some("SASL_PLAINTEXT://127.0.0.1:9093".into());
        args.sasl_enabled_mechanisms = Some("PLAIN,SCRAM-SHA-256,SCRAM-SHA-512".into());
        args.sasl_users_file = Some(users.clone());
        args.authorizer = Some("acl".into());
        args.super_users = Some("User:admin".into());
        // Every failed login would otherwise hold its input 100 ms, and
        // the per-address guard would soon refuse every login unchecked.
        args.connection_failed_authentication_delay_ms = Some(0);
        args.failed_authentication_rate_per_ip = Some(0.0);
    }
    let handle = rt.handle().clone();
    let thread = std::thread::Builder::new()
        .name(format!("fuzzed-broker-{number}"))
        .spawn(move || {
            let embedded = crate::Embedded {
                connections: rx,
                cluster_connections: None,
                shutdown: Box::pin(async move {
                    let _ = stopped.await;
                }),
            };
            if let Err(e) = handle.block_on(crate::run_embedded(args, embedded)) {
                panic!("the fuzzed broker stopped: {e:#}");
            }
        })
        .expect("a thread for the fuzzed broker");
    Generation {
        sasl,
        number,
        connections,
        stop: Some(stop),
        thread: Some(thread),
        dir,
        inputs: 0,
    }
}

/// Shuts a broker down cleanly and removes its directory.
fn stop(mut g: Generation) {
    if let Some(stop) = g.stop.take() {
        let _ = stop.send(());
    }
    if let Some(thread) = g.thread.take()
        && thread.join().is_err()
    {
        panic!("the fuzzed broker panicked while shutting down");
    }
    let _ = std::fs::remove_dir_all(&g.dir);
    let _ = std::fs::remove_file(g.dir.with_extension("users"));
}

/// Sends `data` on a new connection and reads what comes back until the
/// broker closes it or [`ANSWER_WAIT`] passes.
async fn exchange(connections: &Connections, data: &[u8]) -> Vec<u8> {
    let (client, server) = tokio::io::duplex(256 << 10);
    if connections.send((Box::new(server), PEER)).await.is_err() {
        panic!("the fuzzed broker stopped taking connections");
    }
    let (mut r, mut w) = tokio::io::split(client);
    let write = async {
        let _ = w.write_all(data).await;
        let _ = w.shutdown().await;
    };
    let mut answered = Vec::new();
    let read = async {
        let mut buf = vec![0u8; 64 << 10];
        while let Ok(n) = r.read(&mut buf).await {
            if n == 0 {
                break;
            }
            // What a test looks at is small; the rest is only counted.
            if answered.len() < 1 << 20 {
                answered.extend_from_slice(&buf[..n]);
            }
        }
    };
    let _ = tokio::time::timeout(ANSWER_WAIT, async { tokio::join!(write, read) }).await;
    answered
}

/// ApiVersions v0 on a new connection answers with its correlation id and
/// no error.
async fn answers_api_versions(connections: &Connections) -> bool {
    let (mut client, server) = tokio::io::duplex(64 << 10);
    if connections.send((Box::new(server), PEER)).await.is_err() {
        return false;
    }
    // Size, api key 18, version 0, correlation id, null client id.
    let mut frame = Vec::new();
    frame.extend_from_slice(&10u32.to_be_bytes());
    frame.extend_from_slice(&18i16.to_be_bytes());
    frame.extend_from_slice(&0i16.to_be_bytes());
    frame.extend_from_slice(&0x4b41_524ei32.to_be_bytes());
    frame.extend_from_slice(&(-1i16).to_be_bytes());
    if client.write_all(&frame).await.is_err() {
        return false;
    }
    let Ok(len) = client.read_u32().await else {
        return false;
    };
    if !(6..=1 << 20).contains(&len) {
        return false;
    }
    let mut body = vec![0u8; len as usize];
    if client.read_exact(&mut body).await.is_err() {
        return false;
    }
    body[..4] == 0x4b41_524ei32.to_be_bytes() && body[4..6] == [0, 0]
}

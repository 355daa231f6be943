//! Starts the real `karnak` binary on free ports with a temp data dir, and
//! speaks Kafka to it over real sockets using the `kafka-protocol` crate.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

pub struct Broker {
    pub child: Option<Child>,
    pub kafka_port: u16,
    pub admin_port: u16,
    pub sql_port: u16,
    pub dir: tempfile::TempDir,
    pub extra: Vec<String>,
    /// Data dir elsewhere than `dir/data` (a power-cut mount).
    pub data: Option<PathBuf>,
    /// A process stopped with SIGSTOP (`child` is None meanwhile, so
    /// helpers that ask the running nodes leave it out).
    pub paused: Option<Child>,
    /// Run as this user (and group) id: firewall rules can then tell one
    /// broker's traffic from another's (the network partition test).
    pub uid: Option<u32>,
}

/// A port free now, for a broker to bind soon after. Taken from below the
/// kernel's ephemeral range (32768-60999 by default), where the client
/// sockets of tests running alongside (a thousand of them in limits.rs)
/// cannot land on it between this check and the broker's bind.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    // Each test process starts somewhere else in the span (test binaries
    // may run side by side), then walks through it.
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(7_919) % SPAN;
    for _ in 0..SPAN {
        let port = (LOW + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {LOW}..{}", LOW + SPAN);
}

impl Broker {
    pub fn start(extra: &[&str]) -> Broker {
        Self::start_in(None, extra)
    }

    /// As `start`, with the data dir at `data` if given.
    pub fn start_in(data: Option<PathBuf>, extra: &[&str]) -> Broker {
        let mut b = Broker::unstarted(data, extra);
        // free_port() closes the port it found: another process may bind it
        // first. Then this broker cannot bind and exits; try fresh ports.
        for _ in 0..3 {
            match b.try_spawn() {
                Ok(()) => return b,
                Err(log) if log.to_lowercase().contains("in use") => {
                    (b.kafka_port, b.admin_port, b.sql_port) =
                        (free_port(), free_port(), free_port());
                }
                Err(log) => panic!("karnak exited early: {log}"),
            }
        }
        panic!("karnak found no free ports in three tries: {}", b.log());
    }

    /// A broker with its ports and temp dir chosen, not yet started.
    pub fn unstarted(data: Option<PathBuf>, extra: &[&str]) -> Broker {
        Broker {
            child: None,
            kafka_port: free_port(),
            admin_port: free_port(),
            sql_port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            data,
            paused: None,
            uid: None,
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data
            .clone()
            .unwrap_or_else(|| self.dir.path().join("data"))
    }

    /// (Re)starts the broker on the same ports.
    pub fn spawn(&mut self) {
        if let Err(log) = self.try_spawn() {
            panic!("karnak exited early: {log}");
        }
    }

    /// Starts the broker; Err(log) if it exited before serving.
    fn try_spawn(&mut self) -> Result<(), String> {
        let from = self.launch();
        self.wait_ready(from)
    }

    /// Starts the process without waiting for it (the nodes of a cluster
    /// start together: each waits for the quorum). Returns where this
    /// start's part of the log begins, for [`Self::wait_ready`].
    pub fn launch(&mut self) -> usize {
        // The log is appended to across restarts: read only this start's part.
        let from = self.log().len();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("broker.log"))
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_karnak"));
        if let Some(uid) = self.uid {
            use std::os::unix::process::CommandExt;
            std::os::unix::fs::chown(self.dir.path(), Some(uid), Some(uid)).unwrap();
            if let Some(data) = &self.data {
                std::os::unix::fs::chown(data, Some(uid), Some(uid)).unwrap();
            }
            cmd.uid(uid).gid(uid);
        }
        // A test that names its listeners includes PLAINTEXT on kafka_port.
        if !self.extra.iter().any(|a| a == "--listeners") {
            cmd.arg("--kafka-addr")
                .arg(format!("127.0.0.1:{}", self.kafka_port));
        }
        let child = cmd
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--admin-addr")
            .arg(format!("127.0.0.1:{}", self.admin_port))
            .arg("--sql-addr")
            .arg(format!("127.0.0.1:{}", self.sql_port))
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn karnak");
        self.child = Some(child);
        from
    }

    /// Waits until the broker says it serves on our ports; Err(log) if it
    /// exited first.
    pub fn wait_ready(&mut self, from: usize) -> Result<(), String> {
        // Ready when the broker itself says it serves on our ports: a port
        // picked by free_port() can be taken by another test's broker in the
        // meantime, and a connect alone would reach that one.
        let kafka_line = format!("serving Kafka on 127.0.0.1:{} ", self.kafka_port);
        let sql_line = format!("(Postgres wire) on 127.0.0.1:{}:", self.sql_port);
        let sql_off = self
            .extra
            .windows(2)
            .any(|w| w == ["--sql-enabled", "false"]);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = self.log().get(from..).unwrap_or_default().to_string();
            if log.contains(&kafka_line) && (sql_off || log.contains(&sql_line)) {
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(format!("({status}) {log}"));
            }
            assert!(
                Instant::now() < deadline,
                "karnak did not listen in time: {log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default()
    }

    /// SIGTERM and wait; returns whether the exit was clean.
    pub fn stop(&mut self) -> bool {
        let mut child = self.child.take().expect("running");
        unsafe_kill(child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.success();
            }
            assert!(Instant::now() < deadline, "karnak did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGSTOP: the process is frozen (a long GC pause, a hung disk) with
    /// its sockets open.
    pub fn pause(&mut self) {
        let child = self.child.take().expect("running");
        unsafe_kill(child.id(), "STOP");
        self.paused = Some(child);
    }

    /// SIGCONT after [`Self::pause`].
    pub fn resume(&mut self) {
        let child = self.paused.take().expect("paused");
        unsafe_kill(child.id(), "CONT");
        self.child = Some(child);
    }

    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    pub fn connect(&self) -> Client {
        connect(self.kafka_port)
    }

    pub fn metrics(&self) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.admin_port)).unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    /// Sum of a metric's samples whose label set contains every `label=value` given.
    pub fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        self.metrics()
            .lines()
            .filter(|l| l.starts_with(name) && !l.starts_with('#'))
            .filter(|l| {
                let rest = &l[name.len()..];
                (rest.starts_with(' ') || rest.starts_with('{'))
                    && labels.iter().all(|lv| l.contains(lv))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

fn unsafe_kill(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take().or_else(|| self.paused.take()) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn connect(port: u16) -> Client {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    client_on(stream)
}

/// A client on a connection made elsewhere.
pub fn client_on(stream: TcpStream) -> Client {
    stream.set_nodelay(true).unwrap();
    Client {
        stream,
        correlation: 0,
        client_id: "wire-test".into(),
    }
}

pub struct Client {
    pub stream: TcpStream,
    correlation: i32,
    /// Sent in every request header.
    pub client_id: String,
}

impl Client {
    /// Sends a typed request and decodes the typed response.
    pub fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        req: &Req,
    ) -> Resp {
        let mut body = BytesMut::new();
        req.encode(&mut body, version).unwrap();
        let mut frame = self.frame(key, version, &body);
        let header_version = key.response_header_version(version);
        let correlation = self.correlation;
        self.stream.write_all(&frame.split()).unwrap();
        let mut resp = self.read_frame().expect("response");
        assert_eq!(resp.get_i32(), correlation);
        if header_version >= 1 {
            assert_eq!(resp.get_u8(), 0, "no tagged fields in response header");
        }
        Resp::decode(&mut resp, version).unwrap()
    }

    /// As `call`, but None when the connection fails (the broker died).
    pub fn try_call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        req: &Req,
    ) -> Option<Resp> {
        let mut body = BytesMut::new();
        req.encode(&mut body, version).unwrap();
        let mut frame = self.frame(key, version, &body);
        let correlation = self.correlation;
        self.stream.write_all(&frame.split()).ok()?;
        let mut resp = self.read_frame()?;
        assert_eq!(resp.get_i32(), correlation);
        if key.response_header_version(version) >= 1 {
            assert_eq!(resp.get_u8(), 0, "no tagged fields in response header");
        }
        Some(Resp::decode(&mut resp, version).unwrap())
    }

    pub fn frame(&mut self, key: ApiKey, version: i16, body: &[u8]) -> BytesMut {
        self.correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_string(self.client_id.clone())));
        let mut h = BytesMut::new();
        header
            .encode(&mut h, key.request_header_version(version))
            .unwrap();
        let mut frame = BytesMut::new();
        frame.put_i32((h.len() + body.len()) as i32);
        frame.put_slice(&h);
        frame.put_slice(body);
        frame
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Reads one response frame; None when the broker closed the connection.
    pub fn read_frame(&mut self) -> Option<Bytes> {
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).ok()?;
        let mut buf = vec![0u8; i32::from_be_bytes(size) as usize];
        self.stream.read_exact(&mut buf).ok()?;
        Some(Bytes::from(buf))
    }

    /// True when the broker closed the connection (EOF within the timeout).
    pub fn closed_by_broker(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.stream.read(&mut b), Ok(0) | Err(_))
    }
}

/// Encodes `values` (with keys `k<i>` and one header) as one v2 batch.
pub fn batch(values: &[&[u8]], compression: kafka_protocol::records::Compression) -> Bytes {
    let keys: Vec<String> = (0..values.len()).map(|i| format!("k{i}")).collect();
    let records: Vec<(Option<&[u8]>, &[u8])> = keys
        .iter()
        .zip(values)
        .map(|(k, v)| (Some(k.as_bytes()), *v))
        .collect();
    keyed_batch(&records, compression)
}

/// Encodes (key, value) records (each with one header) as one v2 batch.
pub fn keyed_batch(
    records: &[(Option<&[u8]>, &[u8])],
    compression: kafka_protocol::records::Compression,
) -> Bytes {
    producer_batch(records, compression, None)
}

/// As `keyed_batch`; with `producer` (id, epoch, base sequence) an
/// idempotent producer's batch.
pub fn producer_batch(
    records: &[(Option<&[u8]>, &[u8])],
    compression: kafka_protocol::records::Compression,
    producer: Option<(i64, i16, i32)>,
) -> Bytes {
    use kafka_protocol::records::*;
    let (producer_id, producer_epoch, base_sequence) = producer.unwrap_or((-1, -1, 0));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (k, v))| {
            let mut headers = indexmap::IndexMap::new();
            headers.insert(
                StrBytes::from_static_str("h"),
                Some(Bytes::from_static(b"x")),
            );
            Record {
                transactional: false,
                control: false,
                partition_leader_epoch: -1,
                producer_id,
                producer_epoch,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: base_sequence + i as i32,
                timestamp: now,
                key: k.map(Bytes::copy_from_slice),
                value: Some(Bytes::copy_from_slice(v)),
                headers,
                delete_horizon: false,
            }
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .unwrap();
    buf.freeze()
}

/// Produce v9 of one batch to one partition: (error code, base offset), or
/// None when the connection failed (the broker died).
pub fn try_produce(
    c: &mut Client,
    topic: &str,
    partition: i32,
    acks: i16,
    records: Bytes,
) -> Option<(i16, i64)> {
    use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName, produce_request};
    let req = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5000)
        .with_topic_data(vec![
            produce_request::TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(records)),
                ]),
        ]);
    let resp: ProduceResponse = c.try_call(ApiKey::Produce, 9, &req)?;
    let p = &resp.responses[0].partition_responses[0];
    Some((p.error_code, p.base_offset))
}

/// A Fetch (v12 and earlier field set) of one partition from `offset`.
pub fn fetch_request(
    topic: &str,
    offset: i64,
    max_wait_ms: i32,
) -> kafka_protocol::messages::FetchRequest {
    use kafka_protocol::messages::{BrokerId, FetchRequest, TopicName, fetch_request};
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![
            fetch_request::FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(vec![
                    fetch_request::FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ])
}

/// Creates a topic over the wire (CreateTopics v7) and returns its id.
pub fn create_topic(c: &mut Client, name: &str, partitions: i32) -> uuid::Uuid {
    use kafka_protocol::messages::{
        CreateTopicsRequest, CreateTopicsResponse, create_topics_request,
    };
    let r: CreateTopicsResponse = c.call(
        ApiKey::CreateTopics,
        7,
        &CreateTopicsRequest::default()
            .with_topics(vec![
                create_topics_request::CreatableTopic::default()
                    .with_name(StrBytes::from_string(name.to_string()).into())
                    .with_num_partitions(partitions)
                    .with_replication_factor(1),
            ])
            .with_timeout_ms(10_000),
    );
    assert_eq!(r.topics[0].error_code, 0, "creating {name}");
    r.topics[0].topic_id
}

/// DeleteRecords v2 of one partition below `offset`: (error code, low watermark).
pub fn delete_records(c: &mut Client, topic: &str, partition: i32, offset: i64) -> (i16, i64) {
    use kafka_protocol::messages::{
        DeleteRecordsRequest, DeleteRecordsResponse, TopicName, delete_records_request,
    };
    let req = DeleteRecordsRequest::default()
        .with_topics(vec![
            delete_records_request::DeleteRecordsTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(vec![
                    delete_records_request::DeleteRecordsPartition::default()
                        .with_partition_index(partition)
                        .with_offset(offset),
                ]),
        ])
        .with_timeout_ms(5000);
    let resp: DeleteRecordsResponse = c.call(ApiKey::DeleteRecords, 2, &req);
    let p = &resp.topics[0].partitions[0];
    (p.error_code, p.low_watermark)
}

/// IncrementalAlterConfigs v1 of one resource: (error code, message).
/// `ops`: (name, Kafka's AlterConfigOp type, value).
pub fn alter_configs(
    c: &mut Client,
    resource_type: i8,
    resource: &str,
    ops: &[(&str, i8, Option<&str>)],
) -> (i16, String) {
    let req = kafka_protocol::messages::IncrementalAlterConfigsRequest::default().with_resources(vec![
        kafka_protocol::messages::incremental_alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(StrBytes::from_string(resource.to_string()))
            .with_configs(
                ops.iter()
                    .map(|(n, op, v)| {
                        kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig::default()
                            .with_name(StrBytes::from_string(n.to_string()))
                            .with_config_operation(*op)
                            .with_value(v.map(|v| StrBytes::from_string(v.to_string())))
                    })
                    .collect(),
            ),
    ]);
    let resp: kafka_protocol::messages::IncrementalAlterConfigsResponse =
        c.call(ApiKey::IncrementalAlterConfigs, 1, &req);
    let r = &resp.responses[0];
    (
        r.error_code,
        r.error_message
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default(),
    )
}

/// Test certificates made with the `openssl` command: a CA, and leaf
/// certificates it signs (EC P-256, valid two days).
pub mod certs {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    fn openssl(dir: &Path, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("the openssl command (Debian's openssl package)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `ca.pem` and `ca.key` in `dir`.
    pub fn ca(dir: &Path) -> PathBuf {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=karnak-test-ca",
            ],
        );
        dir.join("ca.pem")
    }

    /// `<name>.pem` and `<name>.key` signed by the CA in `dir`: a server
    /// certificate for 127.0.0.1 and localhost, or (`client`) a client one.
    pub fn leaf(dir: &Path, name: &str, cn: &str, client: bool) -> (PathBuf, PathBuf) {
        let ext = if client {
            "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n"
        } else {
            "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
        };
        std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
        let (key, csr, pem, extf) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &format!("/CN={cn}"),
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                &extf,
            ],
        );
        (dir.join(pem), dir.join(key))
    }
}

//! Raw mode: the load tool speaks the Kafka wire itself (requests encoded
//! with `kafka-protocol`), so the figure is the broker's, not a client
//! library's. Each batch is built once and sent again and again: the broker
//! assigns offsets by rewriting the header, so identical bytes are valid
//! every time and the client spends nothing per record.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    FetchRequest, FetchResponse, ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use karnak_protocol::record_batch::BatchIter;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, Semaphore, mpsc};

use super::{Pacer, Percentiles};

const PRODUCE_VERSION: i16 = 9;
const FETCH_VERSION: i16 = 12;
const CREATE_TOPICS_VERSION: i16 = 5;
const DELETE_TOPICS_VERSION: i16 = 4;
/// Largest response the tool accepts (a fetch answers up to its max_bytes).
const MAX_RESPONSE: usize = 256 << 20;

/// A request as bytes on the wire, with its correlation id patchable.
pub(crate) struct Frame {
    pub(crate) bytes: Vec<u8>,
}

impl Frame {
    pub(crate) fn encode<R: Encodable + HeaderVersion>(
        key: ApiKey,
        version: i16,
        body: &R,
    ) -> anyhow::Result<Frame> {
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(0)
            .with_client_id(Some(StrBytes::from_static_str("karnak-bench")));
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        header
            .encode(&mut buf, R::header_version(version))
            .context("encoding a request header")?;
        body.encode(&mut buf, version)
            .context("encoding a request")?;
        let len = (buf.len() - 4) as i32;
        buf[0..4].copy_from_slice(&len.to_be_bytes());
        Ok(Frame {
            bytes: buf.to_vec(),
        })
    }

    /// The correlation id sits right after size, api key and version.
    fn set_correlation_id(&mut self, id: i32) {
        self.bytes[8..12].copy_from_slice(&id.to_be_bytes());
    }
}

pub(crate) async fn read_response(
    stream: &mut (impl AsyncReadExt + Unpin),
    header_version: i16,
) -> anyhow::Result<(i32, Bytes)> {
    let size = stream.read_i32().await.context("reading a response size")?;
    if size < 4 || size as usize > MAX_RESPONSE {
        bail!("response size {size} is out of bounds");
    }
    let mut buf = vec![0u8; size as usize];
    stream
        .read_exact(&mut buf)
        .await
        .context("reading a response")?;
    let mut b = Bytes::from(buf);
    let h = ResponseHeader::decode(&mut b, header_version).context("decoding a response header")?;
    Ok((h.correlation_id, b))
}

pub(crate) async fn connect(bootstrap: &str) -> anyhow::Result<TcpStream> {
    let s = TcpStream::connect(bootstrap)
        .await
        .with_context(|| format!("connecting to {bootstrap}"))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Sends one admin request on a new connection and decodes its answer.
async fn admin_request<Resp: Decodable>(
    bootstrap: &str,
    api: ApiKey,
    version: i16,
    req: &(impl Encodable + HeaderVersion),
) -> anyhow::Result<Resp> {
    let frame = Frame::encode(api, version, req)?;
    let mut s = connect(bootstrap).await?;
    s.write_all(&frame.bytes).await?;
    let (_, mut body) = read_response(&mut s, api.response_header_version(version)).await?;
    Resp::decode(&mut body, version).with_context(|| format!("decoding a {api:?} response"))
}

/// Creates the topic unless it exists (TOPIC_ALREADY_EXISTS is fine).
pub async fn ensure_topic(bootstrap: &str, topic: &str, partitions: i32) -> anyhow::Result<()> {
    let req = CreateTopicsRequest::default()
        .with_topics(vec![
            CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_num_partitions(partitions)
                .with_replication_factor(1),
        ])
        .with_timeout_ms(30_000);
    let resp: CreateTopicsResponse =
        admin_request(bootstrap, ApiKey::CreateTopics, CREATE_TOPICS_VERSION, &req).await?;
    for t in resp.topics {
        if t.error_code != 0 && t.error_code != ResponseError::TopicAlreadyExists.code() {
            bail!("creating {topic}: error {}", t.error_code);
        }
    }
    Ok(())
}

/// Deletes topics (UNKNOWN_TOPIC_OR_PARTITION is fine): the load matrix
/// drops each throughput topic once read, so a run fits a modest disk.
pub async fn delete_topics(bootstrap: &str, topics: &[String]) -> anyhow::Result<()> {
    let req = DeleteTopicsRequest::default()
        .with_topic_names(
            topics
                .iter()
                .map(|t| TopicName(StrBytes::from_string(t.clone())))
                .collect(),
        )
        .with_timeout_ms(30_000);
    let resp: DeleteTopicsResponse =
        admin_request(bootstrap, ApiKey::DeleteTopics, DELETE_TOPICS_VERSION, &req).await?;
    for r in resp.responses {
        if r.error_code != 0 && r.error_code != ResponseError::UnknownTopicOrPartition.code() {
            bail!("deleting {:?}: error {}", r.name, r.error_code);
        }
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub struct ProduceArgs {
    pub bootstrap: String,
    pub topic: String,
    pub partitions: i32,
    pub record_size: usize,
    /// Records per batch (one batch per partition per request).
    pub batch_records: usize,
    pub acks: i16,
    pub connections: usize,
    /// Requests in flight per connection.
    pub in_flight: usize,
    /// Stop after this many records, or after `duration`, whichever first.
    pub records: u64,
    pub duration: Duration,
    /// Records/s over all connections (None: as fast as acknowledged).
    pub rate: Option<u64>,
}

#[derive(Debug, Default)]
pub struct ProduceResult {
    pub records: u64,
    pub record_bytes: u64,
    pub wire_bytes: u64,
    pub seconds: f64,
    pub errors: u64,
    pub latency: Percentiles,
}

/// The partitions connection `k` of `n` writes to.
fn partitions_for(k: usize, n: usize, partitions: i32) -> Vec<i32> {
    let mine: Vec<i32> = (0..partitions).filter(|p| *p as usize % n == k).collect();
    if mine.is_empty() {
        vec![(k % partitions.max(1) as usize) as i32]
    } else {
        mine
    }
}

pub async fn produce(args: &ProduceArgs) -> anyhow::Result<ProduceResult> {
    ensure_topic(&args.bootstrap, &args.topic, args.partitions).await?;
    let value = vec![b'k'; args.record_size];
    let values: Vec<&[u8]> = (0..args.batch_records.max(1))
        .map(|_| value.as_slice())
        .collect();
    let batch = Bytes::from(karnak_storage::test_support::build_batch(
        crate::now_ms(),
        &values,
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let sent_records = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    crate::load::start_latency_clock();
    let mut tasks = Vec::new();
    let n = args.connections.max(1);
    for k in 0..n {
        let parts = partitions_for(k, n, args.partitions);
        let req = ProduceRequest::default()
            .with_acks(args.acks)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_string(args.topic.clone())))
                    .with_partition_data(
                        parts
                            .iter()
                            .map(|p| {
                                PartitionProduceData::default()
                                    .with_index(*p)
                                    .with_records(Some(batch.clone()))
                            })
                            .collect(),
                    ),
            ]);
        let frame = Frame::encode(ApiKey::Produce, PRODUCE_VERSION, &req)?;
        let per_request = (values.len() * parts.len()) as u64;
        let conn = Conn {
            frame,
            per_request,
            per_batch: values.len() as u64,
            args: args.clone(),
            stop: stop.clone(),
            sent_records: sent_records.clone(),
            start,
            rate_share: args.rate.map(|r| r as f64 / n as f64),
        };
        tasks.push(tokio::spawn(conn.run()));
    }
    let mut total = ProduceResult::default();
    for t in tasks {
        let r = t.await.context("producer task")??;
        total.records += r.records;
        total.wire_bytes += r.wire_bytes;
        total.errors += r.errors;
        total.latency.merge(&r.latency);
    }
    total.seconds = start.elapsed().as_secs_f64();
    total.record_bytes = total.records * args.record_size as u64;
    Ok(total)
}

struct Conn {
    frame: Frame,
    per_request: u64,
    per_batch: u64,
    args: ProduceArgs,
    stop: Arc<AtomicBool>,
    sent_records: Arc<AtomicU64>,
    start: Instant,
    rate_share: Option<f64>,
}

impl Conn {
    /// Pipelines requests (up to `in_flight`) on one connection; a reader
    /// task matches answers in order and records send→ack latency.
    async fn run(mut self) -> anyhow::Result<ProduceResult> {
        let stream = connect(&self.args.bootstrap).await?;
        let (mut rd, mut wr) = stream.into_split();
        let window = Arc::new(Semaphore::new(self.args.in_flight.max(1)));
        let acks = self.args.acks;
        let (tx, mut rx) = mpsc::unbounded_channel::<(i32, Instant)>();
        let result = Arc::new(Mutex::new(ProduceResult::default()));
        let reader = {
            let window = window.clone();
            let result = result.clone();
            let per_batch = self.per_batch;
            tokio::spawn(async move {
                let hv = ApiKey::Produce.response_header_version(PRODUCE_VERSION);
                let mut pending: VecDeque<(i32, Instant)> = VecDeque::new();
                loop {
                    if pending.is_empty() {
                        match rx.recv().await {
                            Some(p) => pending.push_back(p),
                            None => return Ok::<(), anyhow::Error>(()),
                        }
                    }
                    while let Ok(p) = rx.try_recv() {
                        pending.push_back(p);
                    }
                    let (cid, mut body) = read_response(&mut rd, hv).await?;
                    let Some((want, sent)) = pending.pop_front() else {
                        bail!("answer {cid} to no request");
                    };
                    if cid != want {
                        bail!("answer {cid} where {want} was due");
                    }
                    let resp = ProduceResponse::decode(&mut body, PRODUCE_VERSION)
                        .context("decoding Produce")?;
                    let (ok, failed) = resp
                        .responses
                        .iter()
                        .flat_map(|t| t.partition_responses.iter())
                        .fold((0u64, 0u64), |(ok, bad), p| {
                            if p.error_code == 0 {
                                (ok + 1, bad)
                            } else {
                                (ok, bad + 1)
                            }
                        });
                    let mut r = result.lock().await;
                    r.latency.record(sent.elapsed());
                    r.errors += failed;
                    r.records += ok * per_batch;
                    drop(r);
                    window.add_permits(1);
                }
            })
        };
        // Tokio's timer ticks in whole milliseconds, which would send a
        // 20 k/s load as bursts of 20; a thread on a fine timer paces it.
        let mut ticks = self.rate_share.map(|share| {
            let (tx, rx) = mpsc::unbounded_channel::<()>();
            let (start, per_request) = (self.start, self.per_request as f64);
            std::thread::spawn(move || {
                let pacer = Pacer::new(start, share / per_request);
                for i in 1u64.. {
                    pacer.wait(i);
                    if tx.send(()).is_err() {
                        return;
                    }
                }
            });
            rx
        });
        let mut cid = 0i32;
        let len = self.frame.bytes.len() as u64;
        loop {
            if self.stop.load(Ordering::Relaxed) || self.start.elapsed() >= self.args.duration {
                self.stop.store(true, Ordering::Relaxed);
                break;
            }
            let before = self
                .sent_records
                .fetch_add(self.per_request, Ordering::Relaxed);
            if before >= self.args.records {
                self.stop.store(true, Ordering::Relaxed);
                break;
            }
            if let Some(ticks) = ticks.as_mut() {
                // Open-loop pacing: request i leaves at i / rate, late or not.
                if ticks.recv().await.is_none() {
                    bail!("the pacer thread stopped");
                }
            }
            window
                .acquire()
                .await
                .context("in-flight window closed")?
                .forget();
            self.frame.set_correlation_id(cid);
            let sent = Instant::now();
            wr.write_all(&self.frame.bytes)
                .await
                .context("sending Produce")?;
            result.lock().await.wire_bytes += len;
            if acks == 0 {
                let mut r = result.lock().await;
                r.records += self.per_request;
                window.add_permits(1);
            } else {
                tx.send((cid, sent))
                    .map_err(|_| anyhow::anyhow!("the reader stopped early"))?;
            }
            cid = cid.wrapping_add(1);
        }
        drop(tx);
        if acks != 0 {
            reader.await.context("reader task")??;
        } else {
            reader.abort();
        }
        let _ = wr.shutdown().await;
        let mut r = result.lock().await;
        Ok(std::mem::take(&mut *r))
    }
}

#[derive(Debug, Clone)]
pub struct ConsumeArgs {
    pub bootstrap: String,
    pub topic: String,
    pub partitions: i32,
    pub connections: usize,
    /// Bytes asked for per fetch, and per partition.
    pub max_bytes: i32,
    pub partition_max_bytes: i32,
    /// Stop at this many records or this duration, or at the end offsets
    /// the topic had when consuming started, whichever first.
    pub records: u64,
    pub duration: Duration,
}

#[derive(Debug, Default)]
pub struct ConsumeResult {
    pub records: u64,
    pub bytes: u64,
    pub fetches: u64,
    pub seconds: f64,
    pub errors: u64,
}

pub async fn consume(args: &ConsumeArgs) -> anyhow::Result<ConsumeResult> {
    let start = Instant::now();
    let n = args.connections.max(1);
    let mut tasks = Vec::new();
    for k in 0..n {
        let parts = partitions_for(k, n, args.partitions);
        let args = args.clone();
        tasks.push(tokio::spawn(async move {
            fetch_loop(&args, parts, start).await
        }));
    }
    let mut total = ConsumeResult::default();
    for t in tasks {
        let r = t.await.context("consumer task")??;
        total.records += r.records;
        total.bytes += r.bytes;
        total.fetches += r.fetches;
        total.errors += r.errors;
    }
    total.seconds = start.elapsed().as_secs_f64();
    Ok(total)
}

async fn fetch_loop(
    args: &ConsumeArgs,
    parts: Vec<i32>,
    start: Instant,
) -> anyhow::Result<ConsumeResult> {
    let mut s = connect(&args.bootstrap).await?;
    let hv = ApiKey::Fetch.response_header_version(FETCH_VERSION);
    let mut next: Vec<(i32, i64, Option<i64>)> = parts.iter().map(|p| (*p, 0, None)).collect();
    let mut r = ConsumeResult::default();
    let mut cid = 0;
    let per_conn_records = args.records / args.connections.max(1) as u64;
    while start.elapsed() < args.duration && r.records < per_conn_records.max(1) {
        let wanted: Vec<FetchPartition> = next
            .iter()
            .filter(|(_, off, end)| end.is_none_or(|e| *off < e))
            .map(|(p, off, _)| {
                FetchPartition::default()
                    .with_partition(*p)
                    .with_fetch_offset(*off)
                    .with_partition_max_bytes(args.partition_max_bytes)
                    .with_current_leader_epoch(-1)
                    .with_log_start_offset(-1)
            })
            .collect();
        if wanted.is_empty() {
            break; // every partition read to the end it had at the start
        }
        let req = FetchRequest::default()
            .with_replica_id((-1).into())
            .with_max_wait_ms(500)
            .with_min_bytes(1)
            .with_max_bytes(args.max_bytes)
            .with_isolation_level(0)
            .with_session_epoch(-1)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(args.topic.clone())))
                    .with_partitions(wanted),
            ]);
        let mut frame = Frame::encode(ApiKey::Fetch, FETCH_VERSION, &req)?;
        frame.set_correlation_id(cid);
        cid += 1;
        s.write_all(&frame.bytes).await.context("sending Fetch")?;
        let (_, mut body) = read_response(&mut s, hv).await?;
        let resp = FetchResponse::decode(&mut body, FETCH_VERSION).context("decoding Fetch")?;
        r.fetches += 1;
        for t in resp.responses {
            for p in t.partitions {
                let Some(slot) = next
                    .iter_mut()
                    .find(|(idx, _, _)| *idx == p.partition_index)
                else {
                    continue;
                };
                if p.error_code != 0 {
                    r.errors += 1;
                    continue;
                }
                slot.2.get_or_insert(p.high_watermark);
                let Some(records) = p.records else { continue };
                r.bytes += records.len() as u64;
                let mut last = None;
                for item in BatchIter::new(&records) {
                    let Ok((_, h)) = item else { break };
                    if h.next_offset() <= slot.1 {
                        continue;
                    }
                    r.records += (h.next_offset() - h.base_offset.max(slot.1)) as u64;
                    last = Some(h.next_offset());
                }
                if let Some(o) = last {
                    slot.1 = o;
                }
            }
        }
    }
    Ok(r)
}

//! Client mode: load through librdkafka (the `rdkafka` crate), the client
//! most Kafka applications sit on. Its figures include the client's own
//! cost; raw mode (`raw.rs`) leaves it out. `--bootstrap mock` runs the same
//! load against librdkafka's in-process mock cluster, the same-run reference
//! the targets are stated against.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{
    BaseRecord, DefaultProducerContext, Producer, ProducerContext, ThreadedProducer,
};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::{Pacer, Percentiles};

/// Where the load goes: a broker, or librdkafka's mock cluster (`mock`).
pub struct Target {
    pub bootstrap: String,
    pub is_mock: bool,
    // Held for its lifetime: dropping it stops the mock brokers.
    _mock: Option<MockCluster<'static, DefaultProducerContext>>,
}

impl Target {
    /// For a real broker the topic is created by the caller (raw CreateTopics).
    pub fn new(bootstrap: &str, topic: &str, partitions: i32) -> anyhow::Result<Target> {
        if bootstrap != "mock" {
            return Ok(Target {
                bootstrap: bootstrap.to_string(),
                is_mock: false,
                _mock: None,
            });
        }
        let mock = MockCluster::new(1).context("starting librdkafka's mock cluster")?;
        mock.create_topic(topic, partitions, 1)
            .context("creating the topic on the mock cluster")?;
        Ok(Target {
            bootstrap: mock.bootstrap_servers(),
            is_mock: true,
            _mock: Some(mock),
        })
    }
}

#[derive(Clone, Debug)]
pub struct ProducerArgs {
    pub topic: String,
    pub partitions: i32,
    pub record_size: usize,
    pub acks: i16,
    /// Producer instances, each on its own thread.
    pub producers: usize,
    pub records: u64,
    pub duration: Duration,
    /// Records/s over all producers.
    pub rate: Option<u64>,
    pub linger_ms: u32,
    pub batch_size: u32,
    pub compression: String,
}

pub struct ProduceResult {
    pub records: u64,
    pub record_bytes: u64,
    pub seconds: f64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub latency: Percentiles,
}

#[derive(Default)]
struct Acks {
    acked: AtomicU64,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
    latency: Mutex<Percentiles>,
}

/// Delivery callbacks run on the producer's polling thread; the opaque is
/// the send time in nanoseconds since the run started (no allocation).
struct AckContext {
    start: Instant,
    acks: Arc<Acks>,
}

impl ClientContext for AckContext {}

impl ProducerContext for AckContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sent_ns: usize) {
        match result {
            Ok(_) => {
                let now = self.start.elapsed().as_nanos() as u64;
                self.acks.acked.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut h) = self.acks.latency.lock() {
                    h.record(Duration::from_nanos(now.saturating_sub(sent_ns as u64)));
                }
            }
            Err((e, _)) => {
                self.acks.errors.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut first) = self.acks.first_error.lock() {
                    first.get_or_insert_with(|| e.to_string());
                }
            }
        }
    }
}

fn producer_config(bootstrap: &str, a: &ProducerArgs) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("client.id", "karnak-bench")
        .set("acks", a.acks.to_string())
        .set("linger.ms", a.linger_ms.to_string())
        .set("batch.size", a.batch_size.to_string())
        .set("compression.type", &a.compression)
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("message.timeout.ms", "60000");
    c
}

/// The first 8 bytes of an end-to-end record: its send time (ns since start).
fn stamp(payload: &mut [u8], start: Instant) -> u64 {
    let ns = start.elapsed().as_nanos() as u64;
    if payload.len() >= 8 {
        payload[..8].copy_from_slice(&ns.to_be_bytes());
    }
    ns
}

/// Produces `records` records over `producers` librdkafka producers.
/// With `stamp_payload`, each value starts with its send time (for `e2e`).
/// Send times are measured from `epoch`; the run (pacing, duration, rate)
/// starts once every producer has the topic's metadata, so client start-up
/// is not counted as latency.
pub fn produce(
    target: &Target,
    a: &ProducerArgs,
    epoch: Instant,
    stamp_payload: bool,
) -> anyhow::Result<ProduceResult> {
    let acks = Arc::new(Acks::default());
    let per_producer = a.records.div_ceil(a.producers as u64);
    let mut producers = Vec::new();
    for _ in 0..a.producers {
        let ctx = AckContext {
            start: epoch,
            acks: acks.clone(),
        };
        let producer: ThreadedProducer<AckContext> = producer_config(&target.bootstrap, a)
            .create_with_context(ctx)
            .context("creating a librdkafka producer")?;
        producer
            .client()
            .fetch_metadata(Some(&a.topic), Duration::from_secs(10))
            .with_context(|| format!("fetching the metadata of {}", a.topic))?;
        producers.push(producer);
    }
    let start = Instant::now();
    crate::load::start_latency_clock();
    let deadline = start + a.duration;
    let mut threads = Vec::new();
    for (i, producer) in producers.into_iter().enumerate() {
        let count = per_producer.min(a.records.saturating_sub(i as u64 * per_producer));
        let a = a.clone();
        threads.push(std::thread::spawn(move || -> anyhow::Result<()> {
            let mut payload = vec![b'k'; a.record_size];
            let pacer = a
                .rate
                .map(|r| Pacer::new(start, r as f64 / a.producers as f64));
            for n in 0..count {
                if Instant::now() >= deadline {
                    break;
                }
                if let Some(p) = &pacer {
                    p.wait(n);
                }
                let sent = if stamp_payload {
                    stamp(&mut payload, epoch)
                } else {
                    epoch.elapsed().as_nanos() as u64
                };
                let mut record = BaseRecord::with_opaque_to(&a.topic, sent as usize)
                    .payload(&payload[..])
                    .partition((n % a.partitions as u64) as i32);
                loop {
                    match producer.send::<[u8], [u8]>(record) {
                        Ok(()) => break,
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                            record = r;
                            std::thread::sleep(Duration::from_micros(200));
                        }
                        Err((e, _)) => bail!("librdkafka refused a record: {e}"),
                    }
                }
            }
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_secs(10));
            producer
                .flush(left)
                .context("flushing the producer (records still unacknowledged)")?;
            Ok(())
        }));
    }
    for t in threads {
        t.join()
            .map_err(|_| anyhow::anyhow!("a producer thread panicked"))??;
    }
    let seconds = start.elapsed().as_secs_f64();
    let records = acks.acked.load(Ordering::Relaxed);
    let latency = std::mem::take(
        &mut *acks
            .latency
            .lock()
            .map_err(|_| anyhow::anyhow!("latency lock poisoned"))?,
    );
    let first_error = acks.first_error.lock().ok().and_then(|e| e.clone());
    Ok(ProduceResult {
        records,
        record_bytes: records * a.record_size as u64,
        seconds,
        errors: acks.errors.load(Ordering::Relaxed),
        first_error,
        latency,
    })
}

fn consumer(bootstrap: &str) -> anyhow::Result<BaseConsumer> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "karnak-bench")
        .set("group.id", "karnak-bench")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.max.bytes", "67108864")
        .set("max.partition.fetch.bytes", "16777216")
        .set("queued.max.messages.kbytes", "262144")
        .set("fetch.wait.max.ms", "100")
        .create()
        .context("creating a librdkafka consumer")
}

/// Each partition's (start, end) offsets now.
fn watermarks(c: &BaseConsumer, topic: &str, partitions: i32) -> anyhow::Result<Vec<(i64, i64)>> {
    (0..partitions)
        .map(|p| {
            c.fetch_watermarks(topic, p, Duration::from_secs(10))
                .with_context(|| format!("reading the offsets of {topic}-{p}"))
        })
        .collect()
}

fn assign(c: &BaseConsumer, topic: &str, from: &[i64]) -> anyhow::Result<()> {
    let mut tpl = TopicPartitionList::new();
    for (p, &o) in from.iter().enumerate() {
        tpl.add_partition_offset(topic, p as i32, Offset::Offset(o))
            .context("building the assignment")?;
    }
    c.assign(&tpl).context("assigning partitions")
}

pub struct ConsumeResult {
    pub records: u64,
    pub bytes: u64,
    pub seconds: f64,
}

/// Consumes every partition from its start to the end it had when
/// consuming began.
pub fn consume(
    target: &Target,
    topic: &str,
    partitions: i32,
    duration: Duration,
) -> anyhow::Result<ConsumeResult> {
    let c = consumer(&target.bootstrap)?;
    let marks = watermarks(&c, topic, partitions)?;
    let starts: Vec<i64> = marks.iter().map(|(low, _)| *low).collect();
    let want: u64 = marks.iter().map(|(low, high)| (high - low) as u64).sum();
    assign(&c, topic, &starts)?;
    let start = Instant::now();
    let deadline = start + duration;
    let (mut records, mut bytes) = (0u64, 0u64);
    while records < want && Instant::now() < deadline {
        match c.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(m)) => {
                records += 1;
                bytes += m.payload_len() as u64;
            }
            Some(Err(e)) => bail!("consuming {topic}: {e}"),
        }
    }
    Ok(ConsumeResult {
        records,
        bytes,
        seconds: start.elapsed().as_secs_f64(),
    })
}

pub struct EndToEndResult {
    pub produced: ProduceResult,
    pub consumed: u64,
    pub latency: Percentiles,
}

/// Produce→consume latency: a consumer assigned at the current ends reads
/// what the producers send; each value carries its send time.
pub fn end_to_end(target: &Target, a: &ProducerArgs) -> anyhow::Result<EndToEndResult> {
    if a.record_size < 8 {
        bail!("e2e needs --record-size of at least 8 (the send time rides in the value)");
    }
    let c = consumer(&target.bootstrap)?;
    let ends: Vec<i64> = watermarks(&c, &a.topic, a.partitions)?
        .into_iter()
        .map(|(_, high)| high)
        .collect();
    assign(&c, &a.topic, &ends)?;
    let start = Instant::now();
    crate::load::start_latency_clock();
    let deadline = start + a.duration + Duration::from_secs(10);
    // Until the producers finish, the reader wants everything asked for;
    // then exactly what was acknowledged.
    let want = Arc::new(AtomicU64::new(a.records));
    let reader_want = want.clone();
    let reader = std::thread::spawn(move || -> anyhow::Result<(u64, Percentiles)> {
        let mut latency = Percentiles::new();
        let mut n = 0u64;
        while n < reader_want.load(Ordering::Acquire) && Instant::now() < deadline {
            match c.poll(Duration::from_millis(100)) {
                None => {}
                Some(Ok(m)) => {
                    let now = start.elapsed().as_nanos() as u64;
                    let sent = m
                        .payload()
                        .and_then(|p| p.get(..8))
                        .and_then(|b| <[u8; 8]>::try_from(b).ok())
                        .map(u64::from_be_bytes)
                        .context("a record without its send time")?;
                    latency.record(Duration::from_nanos(now.saturating_sub(sent)));
                    n += 1;
                }
                Some(Err(e)) => bail!("consuming: {e}"),
            }
        }
        Ok((n, latency))
    });
    let produced = produce(target, a, start, true);
    want.store(
        produced.as_ref().map(|p| p.records).unwrap_or(0),
        Ordering::Release,
    );
    let produced = produced?;
    let (consumed, latency) = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the consumer thread panicked"))??;
    Ok(EndToEndResult {
        produced,
        consumed,
        latency,
    })
}

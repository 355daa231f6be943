//! Idempotent producers: producer `p` writes partition `p` of the topic
//! with acks=all, one batch in flight, and retries a batch it had no
//! answer for with the same producer id, epoch and sequence numbers (a
//! Kafka producer with `enable.idempotence`). It reads its partition back
//! (Fetch) on every new connection (from the start: what the restarted
//! broker recovered) and now and then (from where it stopped). Checked:
//! - nothing acknowledged is lost: the partition holds at least every
//!   record acknowledged before the read was sent;
//! - exactly once, in order: the records are sequence 0, 1, 2, ... of
//!   this producer with no gap and no repeat (a retried batch the broker
//!   already has is answered as a duplicate, not written twice);
//! - nothing made up: never more records than were sent.
//!
//! A retry answered OUT_OF_ORDER_SEQUENCE_NUMBER or UNKNOWN_PRODUCER_ID is
//! a violation too: the broker lost the producer's state, which it
//! rebuilds from a log that every fault here leaves whole.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, InitProducerIdRequest, InitProducerIdResponse,
    ProduceRequest, ProduceResponse, ProducerId, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use rand::Rng;

use super::{TOPIC, Target, sleep_ms, timed};
use crate::wire::{Conn, Failed};
use crate::world::{Shared, lock};

/// What producer `p` sent, had acknowledged and read.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Producer {
    /// Records sent (the next new sequence number).
    pub sent: i32,
    /// Records acknowledged: sequence numbers below it.
    pub acked: i32,
    pub reads: usize,
    pub done: bool,
}

pub(super) type Producers = Arc<Mutex<Vec<Producer>>>;

pub(super) fn producers(p: &Producers) -> std::sync::MutexGuard<'_, Vec<Producer>> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

/// Largest batch a producer sends, in records.
const MAX_BATCH: i32 = 5;
/// Fetches one read may take before it must have reached the high watermark.
const MAX_FETCHES_PER_READ: usize = 1000;

/// A read found the partition wrong (a violation is recorded): nothing
/// after it is checkable.
const BROKEN: i16 = i16::MIN;

/// Where a read of the partition has got to.
#[derive(Debug, Default, Clone, Copy)]
struct Cursor {
    offset: i64,
    next_seq: i32,
}

/// InitProducerId v4: an idempotent producer's id, or with
/// `transactional_id` that id's producer, its epoch bumped.
pub(super) async fn init_producer_id(
    conn: &mut Conn,
    transactional_id: Option<&str>,
) -> Result<Result<(i64, i16), i16>, Failed> {
    let req = InitProducerIdRequest::default()
        .with_transactional_id(
            transactional_id.map(|t| StrBytes::from_string(t.to_string()).into()),
        )
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let resp: InitProducerIdResponse = timed(conn.call(ApiKey::InitProducerId, 4, &req)).await?;
    Ok(if resp.error_code == 0 {
        Ok((resp.producer_id.0, resp.producer_epoch))
    } else {
        Err(resp.error_code)
    })
}

/// Records `base..base + count` of producer `(pid, epoch)`, as one batch
/// (values from `value(i)`, `i` counting from 0).
pub(super) fn batch(
    pid: i64,
    epoch: i16,
    base: i32,
    count: i32,
    transactional: bool,
    value: impl Fn(i32) -> String,
) -> Result<Bytes, Failed> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional,
            control: false,
            partition_leader_epoch: -1,
            producer_id: pid,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i64::from(i),
            sequence: base + i,
            timestamp: now,
            key: None,
            value: Some(Bytes::from(value(i))),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| format!("encoding a batch: {e}"))?;
    Ok(buf.freeze())
}

/// Produce v9 of one batch with acks=all (in `transactional_id`'s
/// transaction if given): the partition's error code.
pub(super) async fn produce(
    conn: &mut Conn,
    partition: i32,
    records: Bytes,
    transactional_id: Option<&str>,
) -> Result<i16, Failed> {
    let req = ProduceRequest::default()
        .with_transactional_id(
            transactional_id.map(|t| StrBytes::from_string(t.to_string()).into()),
        )
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(records)),
                ]),
        ]);
    let resp: ProduceResponse = timed(conn.call(ApiKey::Produce, 9, &req)).await?;
    resp.responses
        .first()
        .and_then(|t| t.partition_responses.first())
        .map(|p| p.error_code)
        .ok_or_else(|| "a Produce answer without the partition".into())
}

/// Fetch v11 of `partition` from `offset` (`isolation` 0: read
/// uncommitted, 1: read committed), answered at once: the partition's
/// answer, or its error code.
pub(super) async fn fetch(
    conn: &mut Conn,
    partition: i32,
    offset: i64,
    isolation: i8,
) -> Result<Result<PartitionData, i16>, Failed> {
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(4 << 20)
        .with_isolation_level(isolation)
        .with_session_epoch(-1)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str(TOPIC)))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(partition)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ]);
    let resp: FetchResponse = timed(conn.call(ApiKey::Fetch, 11, &req)).await?;
    if resp.error_code != 0 {
        return Ok(Err(resp.error_code));
    }
    let p = resp
        .responses
        .into_iter()
        .next()
        .and_then(|t| t.partitions.into_iter().next())
        .ok_or("a Fetch answer without the partition")?;
    Ok(if p.error_code != 0 {
        Err(p.error_code)
    } else {
        Ok(p)
    })
}

/// The whole batches at the front of a fetched record set (a fetch may
/// end in part of one).
pub(super) fn whole_batches(mut records: Bytes) -> Bytes {
    let mut len = 0;
    while records.len() >= len + 12 {
        let size = (&records[len + 8..len + 12]).get_i32();
        let Ok(size) = usize::try_from(size) else {
            break;
        };
        if records.len() < len + 12 + size {
            break;
        }
        len += 12 + size;
    }
    records.truncate(len);
    records
}

/// Reads producer `p`'s partition from `cursor` up to the high watermark,
/// checking each record continues the sequence. Ok(Err(code)): refused.
async fn read_partition(
    conn: &mut Conn,
    p: usize,
    pid: Option<i64>,
    cursor: &mut Cursor,
    world: &Shared,
) -> Result<Result<(), i16>, Failed> {
    for _ in 0..MAX_FETCHES_PER_READ {
        let (hw, records) = match fetch(conn, p as i32, cursor.offset, 0).await? {
            Ok(r) => (r.high_watermark, r.records.unwrap_or_default()),
            Err(code) => return Ok(Err(code)),
        };
        if cursor.offset >= hw {
            return Ok(Ok(()));
        }
        let mut whole = whole_batches(records);
        if whole.is_empty() {
            return Err(format!(
                "a fetch at {} below {hw} returned no batch",
                cursor.offset
            ));
        }
        let sets = RecordBatchDecoder::decode_all(&mut whole)
            .map_err(|e| format!("decoding fetched batches: {e}"))?;
        for record in sets.iter().flat_map(|s| &s.records) {
            if record.offset < cursor.offset {
                continue; // the front of a batch that began below the cursor
            }
            let seq = record
                .value
                .as_ref()
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.parse::<i32>().ok());
            let mut w = lock(world);
            let ok = seq == Some(cursor.next_seq)
                && record.sequence == cursor.next_seq
                && pid.is_none_or(|pid| record.producer_id == pid);
            w.check(ok, || {
                format!(
                    "producer {p} read value {seq:?} (batch sequence {}, producer id {}) at offset {} where sequence {} was next",
                    record.sequence, record.producer_id, record.offset, cursor.next_seq
                )
            });
            if !ok {
                return Ok(Err(BROKEN));
            }
            cursor.next_seq += 1;
            cursor.offset = record.offset + 1;
        }
    }
    Err(format!(
        "no high watermark after {MAX_FETCHES_PER_READ} fetches"
    ))
}

/// Which read of the partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    /// Now and then, and after reconnecting.
    Along,
    /// As `Along`, from a cluster's leader, whose high watermark may lag
    /// what was acknowledged just after it took over.
    AlongMayLag,
    /// Once faults are over, until served.
    Final,
}

/// A read of the partition, with the lost / made-up checks on its end.
async fn read(
    conn: &mut Conn,
    p: usize,
    pid: Option<i64>,
    cursor: &mut Cursor,
    world: &Shared,
    state: &Producers,
    kind: Read,
) -> Result<Result<(), i16>, Failed> {
    let last = kind == Read::Final;
    let acked = producers(state)[p].acked;
    match read_partition(conn, p, pid, cursor, world).await? {
        Ok(()) => {}
        Err(BROKEN) => return Ok(Err(BROKEN)),
        Err(code) => {
            lock(world).event(format!("producer {p} read refused ({code})"));
            return Ok(Err(code));
        }
    }
    let mut s = producers(state);
    let me = &mut s[p];
    me.reads += 1;
    me.done |= last;
    let sent = me.sent;
    drop(s);
    let n = cursor.next_seq;
    let mut w = lock(world);
    w.event(format!(
        "producer {p} reads {n} records{}",
        if last { " (final)" } else { "" }
    ));
    if n < acked && kind == Read::AlongMayLag {
        // A new leader's high watermark moves up to what the old one had
        // acknowledged only once its followers fetch again (as in Kafka):
        // a read between sees less, and the final read is the check.
        w.event(format!(
            "producer {p}: the leader's high watermark is still below the {acked} acknowledged"
        ));
        return Ok(Ok(()));
    }
    w.check(n >= acked, || {
        format!("producer {p} read {n} records after {acked} were acknowledged")
    });
    w.check(n <= sent, || {
        format!("producer {p} read {n} records but sent {sent}")
    });
    Ok(Ok(()))
}

/// A retry refused with one of these means the broker forgot the
/// producer: with its log intact, never right.
fn forgot_producer(code: i16) -> bool {
    code == ResponseError::OutOfOrderSequenceNumber.code()
        || code == ResponseError::UnknownProducerId.code()
        || code == ResponseError::InvalidProducerEpoch.code()
}

/// Producer `p` stops after a violation (nothing after it is checkable).
fn stopped(p: usize, state: &Producers) -> turmoil::Result {
    producers(state)[p].done = true;
    Ok(())
}

/// Producer `p`: produces and reads back until told to stop, then reads
/// once more until served.
pub(super) async fn producer_main(
    p: usize,
    seed: u64,
    world: Shared,
    state: Producers,
    stop: Arc<AtomicBool>,
    target: Target,
) -> turmoil::Result {
    let mut rng = super::client_rng(seed, 0x9e37_79b9_7f4a_7c15, p);
    let who = format!("producer {p}");
    let mut topic = false;
    let mut id: Option<(i64, i16)> = None;
    // A batch sent and not acknowledged: retried as it was.
    let mut pending: Option<(i32, i32)> = None;
    loop {
        let Some(mut conn) = target
            .connect_leader(p as i32, &who, &world, &mut rng, &mut topic)
            .await
        else {
            continue;
        };
        let mut cursor = Cursor::default();
        let mut fresh = true;
        loop {
            if stop.load(Ordering::Relaxed) && pending.is_none() {
                // The final read, from the start: what stays once every
                // fault is over.
                let mut all = Cursor::default();
                let pid = id.map(|(pid, _)| pid);
                match read(&mut conn, p, pid, &mut all, &world, &state, Read::Final).await {
                    Ok(Ok(())) => return Ok(()),
                    Ok(Err(BROKEN)) => return stopped(p, &state),
                    Ok(Err(code)) if target.moved(code) => break,
                    Ok(Err(_)) => {
                        sleep_ms(&mut rng, 10, 100).await;
                        continue;
                    }
                    Err(_) => break,
                }
            }
            if fresh || rng.gen_bool(0.2) {
                // After a crash: what the restarted broker recovered, read
                // from the start before a new batch hides a loss.
                if fresh {
                    cursor = Cursor::default();
                }
                let pid = id.map(|(pid, _)| pid);
                let kind = if target.is_cluster() {
                    Read::AlongMayLag
                } else {
                    Read::Along
                };
                match read(&mut conn, p, pid, &mut cursor, &world, &state, kind).await {
                    Ok(Err(BROKEN)) => return stopped(p, &state),
                    Ok(Err(code)) if target.moved(code) => break,
                    Ok(_) => fresh = false,
                    Err(_) => break,
                }
            }
            let (pid, epoch) = match id {
                Some(id) => id,
                None => match init_producer_id(&mut conn, None).await {
                    Ok(Ok(got)) => {
                        lock(&world)
                            .event(format!("{who} is producer id {} epoch {}", got.0, got.1));
                        id = Some(got);
                        got
                    }
                    Ok(Err(code)) => {
                        lock(&world).event(format!("{who} InitProducerId refused ({code})"));
                        sleep_ms(&mut rng, 10, 100).await;
                        continue;
                    }
                    Err(_) => break,
                },
            };
            let (base, count) = match pending {
                Some(b) => b,
                None => {
                    let sent = producers(&state)[p].sent;
                    (sent, rng.gen_range(1..=MAX_BATCH))
                }
            };
            pending = Some((base, count));
            {
                let mut s = producers(&state);
                s[p].sent = s[p].sent.max(base + count);
            }
            let records = batch(pid, epoch, base, count, false, |i| (base + i).to_string())?;
            match produce(&mut conn, p as i32, records, None).await {
                Ok(code) if code == 0 || code == ResponseError::DuplicateSequenceNumber.code() => {
                    pending = None;
                    producers(&state)[p].acked = base + count;
                    lock(&world).event(format!(
                        "{who} records {base}..{} acknowledged",
                        base + count
                    ));
                }
                Ok(code) if forgot_producer(code) && target.is_cluster() => {
                    // A stale leader (one that has not yet learnt another
                    // took over, and so lacks what it acknowledged since)
                    // answers so, as Kafka's does: asked again at the
                    // leader. One that really forgot would answer so
                    // forever, and the final read would never come.
                    lock(&world).event(format!(
                        "{who}'s batch {base}..{} refused with {code}: asking the leader again",
                        base + count
                    ));
                    sleep_ms(&mut rng, 10, 100).await;
                    break;
                }
                Ok(code) if forgot_producer(code) => {
                    let mut w = lock(&world);
                    w.check(false, || {
                        format!("{who}'s batch {base}..{} refused with {code}: the broker forgot the producer", base + count)
                    });
                    drop(w);
                    return stopped(p, &state);
                }
                Ok(code) => {
                    lock(&world).event(format!(
                        "{who} records {base}..{} refused ({code})",
                        base + count
                    ));
                    sleep_ms(&mut rng, 10, 100).await;
                    if target.moved(code) {
                        break;
                    }
                }
                Err(e) => {
                    lock(&world).event(format!("{who} records {base}..{}: {e}", base + count));
                    break;
                }
            }
            sleep_ms(&mut rng, 1, 30).await;
        }
        sleep_ms(&mut rng, 10, 100).await;
    }
}

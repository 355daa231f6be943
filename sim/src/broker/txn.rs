//! Transactions: transactional producer `t` writes one batch of 1-5
//! records per transaction to a partition of its own (InitProducerId with
//! its transactional id, AddPartitionsToTxn, Produce, EndTxn), commits
//! four in five and aborts the rest; on any error or lost answer it starts
//! over with InitProducerId, which fences its old epoch and ends whatever
//! transaction was open (as a Kafka producer does after an abortable
//! error). It reads its partition back with read_committed (Fetch up to
//! the last stable offset, skipping aborted transactions as a Kafka
//! consumer does, by the aborted list and the markers). Checked:
//! - atomic: a visible transaction shows all its records, once, in order;
//! - nothing aborted or never committed shows: only transactions whose
//!   EndTxn(commit) was sent are visible;
//! - nothing committed is lost: once faults end, the final read (when the
//!   last stable offset has reached the high watermark) shows every
//!   transaction whose commit was acknowledged.
//!
//! A commit whose answer was lost may show or not (all or nothing).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ApiKey, EndTxnRequest, EndTxnResponse,
    ProducerId, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;
use rand::Rng;

use super::produce::{batch, fetch, init_producer_id, produce, whole_batches};
use super::{TOPIC, Target, coordinator_moved, sleep_ms, timed};
use crate::wire::{Conn, Failed};
use crate::world::{Shared, lock};

/// Whether an EndTxn refused with `code` did not end the transaction as
/// asked (then the next InitProducerId aborts it, if a timeout has not).
fn untouched(code: i16) -> bool {
    [
        ResponseError::InvalidTxnState,
        ResponseError::ProducerFenced,
        ResponseError::InvalidProducerEpoch,
        ResponseError::InvalidProducerIdMapping,
    ]
    .iter()
    .any(|e| e.code() == code)
}

/// What became of a transaction, as its producer knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Begun; no EndTxn sent: must never show.
    Open,
    /// EndTxn(commit) sent, no answer: all or nothing.
    CommitSent,
    Committed,
    /// EndTxn(abort) sent (answered or not): must never show.
    Aborted,
}

#[derive(Debug, Default, Clone)]
pub(super) struct TxnProducer {
    /// Transaction `i`: its record count and outcome.
    txns: Vec<(i32, Outcome)>,
    pub reads: usize,
    pub done: bool,
}

impl TxnProducer {
    pub fn committed(&self) -> usize {
        self.txns
            .iter()
            .filter(|(_, o)| *o == Outcome::Committed)
            .count()
    }
}

pub(super) type TxnProducers = Arc<Mutex<Vec<TxnProducer>>>;

pub(super) fn txn_producers(p: &TxnProducers) -> std::sync::MutexGuard<'_, Vec<TxnProducer>> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

const MAX_RECORDS: i32 = 5;
/// Fetches one read may take before it must have reached the stable end.
const MAX_FETCHES_PER_READ: usize = 1000;
const CONCURRENT_TRANSACTIONS: i16 = ResponseError::ConcurrentTransactions.code();
const COORDINATOR_LOAD_IN_PROGRESS: i16 = ResponseError::CoordinatorLoadInProgress.code();

/// Worth asking again as it is (the coordinator is finishing the previous
/// transaction, or loading).
fn retriable(code: i16) -> bool {
    code == CONCURRENT_TRANSACTIONS || code == COORDINATOR_LOAD_IN_PROGRESS
}

async fn add_partition(
    conn: &mut Conn,
    tid: &str,
    (pid, epoch): (i64, i16),
    partition: i32,
) -> Result<i16, Failed> {
    let req = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(StrBytes::from_string(tid.to_string()).into())
        .with_v3_and_below_producer_id(ProducerId(pid))
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(vec![
            AddPartitionsToTxnTopic::default()
                .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                .with_partitions(vec![partition]),
        ]);
    let resp: AddPartitionsToTxnResponse =
        timed(conn.call(ApiKey::AddPartitionsToTxn, 3, &req)).await?;
    resp.results_by_topic_v3_and_below
        .first()
        .and_then(|t| t.results_by_partition.first())
        .map(|p| p.partition_error_code)
        .ok_or_else(|| "an AddPartitionsToTxn answer without the partition".into())
}

async fn end_txn(
    conn: &mut Conn,
    tid: &str,
    (pid, epoch): (i64, i16),
    commit: bool,
) -> Result<i16, Failed> {
    let req = EndTxnRequest::default()
        .with_transactional_id(StrBytes::from_string(tid.to_string()).into())
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_committed(commit);
    let resp: EndTxnResponse = timed(conn.call(ApiKey::EndTxn, 3, &req)).await?;
    Ok(resp.error_code)
}

/// Transaction number and record index of a value "txn:i".
fn parse(value: Option<&Bytes>) -> Option<(usize, i32)> {
    let v = std::str::from_utf8(value?).ok()?;
    let (t, i) = v.split_once(':')?;
    Some((t.parse().ok()?, i.parse().ok()?))
}

/// The records a read_committed consumer sees in partition `partition`,
/// from the start to the last stable offset, as (transaction, index);
/// and whether that offset had reached the high watermark.
async fn read_committed(
    conn: &mut Conn,
    partition: i32,
) -> Result<Result<(Vec<(usize, i32)>, bool), i16>, Failed> {
    let mut seen = Vec::new();
    let mut offset = 0i64;
    // Aborted transactions the answers named, by first offset, and the
    // producers whose batches are being skipped until their abort marker.
    let mut aborts: BTreeSet<(i64, i64)> = BTreeSet::new();
    let mut skipping: BTreeSet<i64> = BTreeSet::new();
    for _ in 0..MAX_FETCHES_PER_READ {
        let p = match fetch(conn, partition, offset, 1).await? {
            Ok(p) => p,
            Err(code) => return Ok(Err(code)),
        };
        if offset >= p.last_stable_offset {
            return Ok(Ok((seen, p.last_stable_offset >= p.high_watermark)));
        }
        for a in p.aborted_transactions.unwrap_or_default() {
            aborts.insert((a.first_offset, a.producer_id.0));
        }
        let mut whole = whole_batches(p.records.unwrap_or_default());
        if whole.is_empty() {
            return Err(format!(
                "a read_committed fetch at {offset} below {} returned no batch",
                p.last_stable_offset
            ));
        }
        let batches = RecordBatchDecoder::decode_all(&mut whole)
            .map_err(|e| format!("decoding fetched batches: {e}"))?;
        for set in &batches {
            let (Some(first), Some(last)) = (set.records.first(), set.records.last()) else {
                continue;
            };
            while let Some(&(at, pid)) = aborts.first() {
                if at > last.offset {
                    break;
                }
                aborts.pop_first();
                skipping.insert(pid);
            }
            if first.control {
                // An abort marker ends the skipping of its producer.
                let abort = first
                    .key
                    .as_ref()
                    .is_some_and(|k| k.len() >= 4 && k[2..4] == [0, 0]);
                if abort {
                    skipping.remove(&first.producer_id);
                }
            } else if !(first.transactional && skipping.contains(&first.producer_id)) {
                for r in set.records.iter().filter(|r| r.offset >= offset) {
                    let Some(v) = parse(r.value.as_ref()) else {
                        return Err(format!("a record at {} not written here", r.offset));
                    };
                    seen.push(v);
                }
            }
            offset = offset.max(last.offset + 1);
        }
    }
    Err(format!(
        "no last stable offset after {MAX_FETCHES_PER_READ} fetches"
    ))
}

/// A read of producer `t`'s partition with the checks above; Ok(false)
/// when the read was served but a transaction was still unsettled (the
/// final read waits for none).
async fn read(
    conn: &mut Conn,
    t: usize,
    partition: i32,
    world: &Shared,
    state: &TxnProducers,
    last: bool,
) -> Result<Result<bool, i16>, Failed> {
    let (seen, settled) = match read_committed(conn, partition).await? {
        Ok(r) => r,
        Err(code) => {
            lock(world).event(format!("txn producer {t} read refused ({code})"));
            return Ok(Err(code));
        }
    };
    let mut s = txn_producers(state);
    let me = &mut s[t];
    me.reads += 1;
    let txns = me.txns.clone();
    if last && settled {
        me.done = true;
    }
    drop(s);
    let mut w = lock(world);
    let violations = w.violations.len();
    // Group the records by transaction, in the order seen.
    let mut groups: Vec<(usize, Vec<i32>)> = Vec::new();
    for (txn, i) in seen {
        match groups.last_mut() {
            Some((g, idx)) if *g == txn => idx.push(i),
            _ => groups.push((txn, vec![i])),
        }
    }
    let mut shown: BTreeMap<usize, usize> = BTreeMap::new();
    for (txn, idx) in &groups {
        *shown.entry(*txn).or_default() += 1;
        let Some(&(count, outcome)) = txns.get(*txn) else {
            w.check(false, || {
                format!("txn producer {t} read transaction {txn}, never begun")
            });
            continue;
        };
        w.check(idx.iter().copied().eq(0..count), || {
            format!("txn producer {t} read transaction {txn} as records {idx:?} of {count}")
        });
        w.check(
            matches!(outcome, Outcome::Committed | Outcome::CommitSent),
            || format!("txn producer {t} read transaction {txn}, which is {outcome:?}"),
        );
    }
    for (txn, n) in &shown {
        w.check(*n == 1, || {
            format!("txn producer {t} read transaction {txn} {n} times")
        });
    }
    if last && settled {
        for (txn, (_, outcome)) in txns.iter().enumerate() {
            w.check(
                *outcome != Outcome::Committed || shown.contains_key(&txn),
                || {
                    format!(
                        "txn producer {t}'s committed transaction {txn} is not in the final read"
                    )
                },
            );
        }
    }
    w.event(format!(
        "txn producer {t} reads {} transactions{}",
        groups.len(),
        match (last, settled) {
            (true, true) => " (final)",
            (_, false) => " (some unsettled)",
            _ => "",
        }
    ));
    if w.violations.len() > violations {
        return Ok(Err(BROKEN));
    }
    Ok(Ok(settled))
}

/// The transactional producers' end: each one's final read was served,
/// and some commit was acknowledged (when there are any). Returns their
/// states and the commits acknowledged.
pub(super) fn check_txn_producers(
    w: &mut crate::world::World,
    txns: &TxnProducers,
) -> (Vec<TxnProducer>, usize) {
    let x = txn_producers(txns).clone();
    for (t, me) in x.iter().enumerate() {
        w.check(me.done, || {
            format!("txn producer {t}'s final read was never served")
        });
    }
    let transactions = x.iter().map(|t| t.committed()).sum::<usize>();
    w.check(x.is_empty() || transactions > 0, || {
        "no transaction commit was acknowledged".into()
    });
    (x, transactions)
}

/// A read found the partition wrong (a violation is recorded): nothing
/// after it is checkable.
const BROKEN: i16 = i16::MIN;

fn set(state: &TxnProducers, t: usize, txn: usize, outcome: Outcome) {
    txn_producers(state)[t].txns[txn].1 = outcome;
}

/// Transactional producer `t`, writing `partition`: transactions until
/// told to stop, then reads until everything has settled.
pub(super) async fn txn_producer_main(
    t: usize,
    partition: i32,
    seed: u64,
    world: Shared,
    state: TxnProducers,
    stop: Arc<AtomicBool>,
    target: Target,
) -> turmoil::Result {
    let mut rng = super::client_rng(seed, 0xbf58_476d_1ce4_e5b9, t);
    let who = format!("txn producer {t}");
    let tid = format!("sim-txn-{t}");
    let mut topic = false;
    // The producer's id and epoch, and its next sequence number; None:
    // InitProducerId first (at the start and after anything went wrong).
    let mut id: Option<(i64, i16)> = None;
    let mut seq = 0i32;
    loop {
        // The transaction coordinator's connection (InitProducerId,
        // AddPartitionsToTxn, EndTxn) and the partition leader's (Produce,
        // Fetch), as a Kafka producer keeps one per broker it talks to.
        let Some(mut coord) = target
            .connect_coordinator(&tid, 1, &who, &world, &mut rng, &mut topic)
            .await
        else {
            continue;
        };
        let Some(mut conn) = target
            .connect_leader(partition, &who, &world, &mut rng, &mut topic)
            .await
        else {
            continue;
        };
        let mut fresh = true;
        'conn: loop {
            if id.is_none() {
                match init_producer_id(&mut coord, Some(&tid)).await {
                    Ok(Ok(got)) => {
                        lock(&world)
                            .event(format!("{who} is producer id {} epoch {}", got.0, got.1));
                        id = Some(got);
                        seq = 0;
                    }
                    Ok(Err(code)) => {
                        lock(&world).event(format!("{who} InitProducerId refused ({code})"));
                        sleep_ms(&mut rng, 10, 100).await;
                        if coordinator_moved(code) {
                            break;
                        }
                        continue;
                    }
                    Err(_) => break,
                }
            }
            let Some(pid) = id else { continue };
            if stop.load(Ordering::Relaxed) || fresh || rng.gen_bool(0.2) {
                let last = stop.load(Ordering::Relaxed);
                match read(&mut conn, t, partition, &world, &state, last).await {
                    Ok(Err(BROKEN)) => {
                        txn_producers(&state)[t].done = true;
                        return Ok(());
                    }
                    Ok(Ok(true)) if last => return Ok(()),
                    Ok(Err(code)) if target.moved(code) => break,
                    Ok(_) if last => {
                        sleep_ms(&mut rng, 10, 100).await;
                        continue;
                    }
                    Ok(_) => fresh = false,
                    Err(_) => break,
                }
            }
            let count = rng.gen_range(1..=MAX_RECORDS);
            let txn = {
                let mut s = txn_producers(&state);
                s[t].txns.push((count, Outcome::Open));
                s[t].txns.len() - 1
            };
            // Anything short of success abandons the transaction: the
            // next InitProducerId ends it.
            let mut tries = 0;
            loop {
                match add_partition(&mut coord, &tid, pid, partition).await {
                    Ok(0) => break,
                    Ok(code) if retriable(code) && tries < 50 => {
                        tries += 1;
                        sleep_ms(&mut rng, 5, 50).await;
                    }
                    Ok(code) => {
                        lock(&world).event(format!(
                            "{who} transaction {txn}: AddPartitionsToTxn refused ({code})"
                        ));
                        id = None;
                        if coordinator_moved(code) {
                            break 'conn;
                        }
                        continue 'conn;
                    }
                    Err(_) => {
                        id = None;
                        break 'conn;
                    }
                }
            }
            let records = batch(pid.0, pid.1, seq, count, true, |i| format!("{txn}:{i}"))?;
            match produce(&mut conn, partition, records, Some(&tid)).await {
                Ok(0) => seq += count,
                Ok(code) => {
                    lock(&world)
                        .event(format!("{who} transaction {txn}: Produce refused ({code})"));
                    id = None;
                    if target.moved(code) {
                        break;
                    }
                    continue;
                }
                Err(_) => {
                    id = None;
                    break;
                }
            }
            let commit = rng.gen_bool(0.8);
            set(
                &state,
                t,
                txn,
                if commit {
                    Outcome::CommitSent
                } else {
                    Outcome::Aborted
                },
            );
            // As a real client does, EndTxn is retried with the same
            // decision while the answer leaves it open (the coordinator
            // busy finishing it, moved, or its log failing): a retry learns
            // the outcome, which the checker then holds the broker to.
            let mut tries = 0;
            let answer = loop {
                match end_txn(&mut coord, &tid, pid, commit).await {
                    Ok(code) if code != 0 && !untouched(code) && tries < 20 => {
                        tries += 1;
                        lock(&world).event(format!(
                            "{who} transaction {txn}: EndTxn answered {code}, retried"
                        ));
                        sleep_ms(&mut rng, 10, 100).await;
                        if coordinator_moved(code) {
                            // Retried where the transactional id's
                            // coordinator is now.
                            if let Some(c) = target
                                .connect_coordinator(&tid, 1, &who, &world, &mut rng, &mut topic)
                                .await
                            {
                                coord = c;
                            }
                        }
                    }
                    answer => break answer,
                }
            };
            match answer {
                Ok(0) => {
                    if commit {
                        set(&state, t, txn, Outcome::Committed);
                    }
                    lock(&world).event(format!(
                        "{who} transaction {txn} {} acknowledged",
                        if commit { "commit" } else { "abort" }
                    ));
                }
                Ok(code) => {
                    // Refused before anything was done: the next
                    // InitProducerId aborts it. Any other error, retried
                    // without an answer, leaves the outcome open (the
                    // prepare may be on disk): all or nothing.
                    if !commit || untouched(code) {
                        set(&state, t, txn, Outcome::Aborted);
                    }
                    lock(&world).event(format!("{who} transaction {txn}: EndTxn refused ({code})"));
                    id = None;
                    continue;
                }
                Err(_) => {
                    id = None;
                    break;
                }
            }
            sleep_ms(&mut rng, 1, 30).await;
        }
        sleep_ms(&mut rng, 10, 100).await;
    }
}

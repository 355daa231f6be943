//! The coordinator through power cuts: offset commits, transactions
//! (records, markers, TxnOffsetCommit) and the Obelisk id sequencers.

use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::*;
use karnak_powercut::Faults;

use crate::rig::*;
use crate::support::Client;

#[test]
fn a_commit_is_shown_only_once_durable_and_acknowledged_commits_survive_cuts() {
    let mut rig = Rig::start(&[]);
    let mut c = rig.broker.connect();
    create_topic(&mut c, "offs", 1);
    assert_eq!(commit(&mut c, "g", "offs", 7), Some(0));
    assert_eq!(committed(&mut c, "g", "offs"), 7);
    rig.power_cut(Some(5));
    let mut c = rig.broker.connect();
    assert_eq!(
        committed(&mut c, "g", "offs"),
        7,
        "acknowledged commit lost"
    );
    // A commit whose fsync fails is refused and never shown.
    rig.fs.set_faults(Faults {
        fsync_eio: Some("__karnak_coordinator-".into()),
        ..Default::default()
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = loop {
        match commit(&mut c, "g", "offs", 9) {
            Some(code) => break code,
            None if Instant::now() < deadline => c = rig.broker.connect(),
            None => panic!("no answer to the commit"),
        }
    };
    assert_eq!(code, ResponseError::NotCoordinator.code());
    assert_eq!(
        committed(&mut c, "g", "offs"),
        7,
        "a commit that never reached the disk was shown"
    );
}

/// Committers on their own connections (one group each, spread over the
/// shards) commit increasing offsets until the power goes: after each cut
/// every group's committed offset is at least its last acknowledged
/// commit, and no more than the last one it sent.
#[test]
fn acknowledged_commits_survive_power_cuts_under_load() {
    let mut rig = Rig::start(&[]);
    let mut c = rig.broker.connect();
    create_topic(&mut c, "consumed", 1);
    const GROUPS: usize = 6;
    // Per group: (last acknowledged, last sent).
    let mut state = [(-1i64, -1i64); GROUPS];
    for (round, seed) in seeds().into_iter().enumerate() {
        let port = rig.broker.kafka_port;
        let workers: Vec<_> = (0..GROUPS)
            .map(|g| {
                let (_, sent) = state[g];
                std::thread::spawn(move || {
                    let mut c = crate::support::connect(port);
                    let (mut acked, mut sent) = (None, sent);
                    loop {
                        sent += 1;
                        match commit(&mut c, &format!("cg-{g}"), "consumed", sent) {
                            Some(0) => acked = Some(sent),
                            _ => return (acked, sent),
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300 + seed % 5 * 70));
        rig.power_cut(Some(seed));
        let mut commits = 0;
        for (g, w) in workers.into_iter().enumerate() {
            let (acked, sent) = w.join().expect("committer thread");
            if let Some(a) = acked {
                commits += a - state[g].0;
                state[g].0 = a;
            }
            state[g].1 = sent;
        }
        let mut c = rig.broker.connect();
        for (g, (acked, sent)) in state.iter().enumerate() {
            let now = committed(&mut c, &format!("cg-{g}"), "consumed");
            assert!(
                (*acked..=*sent).contains(&now),
                "cg-{g}: committed {now} after the cut, acknowledged {acked}, sent up to {sent} \
                 (round {round})"
            );
        }
        eprintln!("seed {seed}: {commits} commits acknowledged, every group's last one kept");
        assert!(commits > 0, "no commit acknowledged before the cut");
    }
}

/// Producer ids come from the Obelisk sequencers, whose leases are fsynced
/// before an id is handed out: none repeats across power cuts, including
/// the first lease of a sequencer file created just before the cut.
#[test]
fn producer_ids_never_repeat_across_power_cuts() {
    let mut rig = Rig::start(&[]);
    let mut seen = std::collections::HashSet::new();
    for (round, seed) in seeds().into_iter().enumerate() {
        let mut c = rig.broker.connect();
        for _ in 0..50 {
            let (pid, _) = init_producer_id(&mut c);
            assert!(
                seen.insert(pid),
                "producer id {pid} handed out twice (round {round})"
            );
        }
        rig.power_cut(Some(seed));
    }
    eprintln!("{} producer ids, none repeated over the cuts", seen.len());
}

/// What a transactional producer did with one transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Cut before EndTxn went out: the transaction must be aborted.
    NotSent,
    /// EndTxn(commit) sent, no answer: committed whole or not at all.
    CommitUnanswered,
    CommitAcked,
    /// EndTxn(abort) sent, answered or not.
    Abort,
}

#[derive(Debug)]
struct Txn {
    /// Per worker, increasing over rounds; also the offset it commits.
    seq: i64,
    values: Vec<(i32, String)>,
    end: End,
}

const TXN_PARTITIONS: i32 = 3;

/// One transactional producer (`tx-<w>`) on its own connection until the
/// power goes: per transaction, records to every partition of "txn"
/// (acks=all), a TxnOffsetCommit of `src`-0 at `seq + 1` for group `txg-<w>`,
/// then commit, or abort every third.
fn txn_worker(port: u16, w: usize, first_seq: i64, round: usize) -> Vec<Txn> {
    let mut c = crate::support::connect(port);
    let tid = format!("tx-{w}");
    let group = format!("txg-{w}");
    let Some((pid, epoch)) = init_transactional(&mut c, &tid, Duration::from_secs(10)) else {
        return Vec::new();
    };
    let mut done = Vec::new();
    for seq in first_seq.. {
        let commit = seq % 3 != 2;
        let mut txn = Txn {
            seq,
            values: Vec::new(),
            end: End::NotSent,
        };
        let ok = (|| {
            add_partitions(&mut c, &tid, pid, epoch, "txn", TXN_PARTITIONS)?;
            for p in 0..TXN_PARTITIONS {
                let values: Vec<String> = (0..3)
                    .map(|i| format!("r{round}-w{w}-t{seq}-p{p}-{i}"))
                    .collect();
                let base_seq = txn_sequence(&done, &txn, p);
                let b = raw_batch(&values, (pid, epoch, base_seq), true, 1_700_000_000_000);
                txn.values.extend(values.iter().map(|v| (p, v.clone())));
                match produce_txn(&mut c, &tid, "txn", p, b) {
                    Some(0) => {}
                    _ => return None,
                }
            }
            add_offsets(&mut c, &tid, pid, epoch, &group)?;
            txn_offset_commit(&mut c, &tid, pid, epoch, &group, "src", seq + 1)?;
            txn.end = if commit {
                End::CommitUnanswered
            } else {
                End::Abort
            };
            (end_txn(&mut c, &tid, pid, epoch, commit)? == 0).then_some(())
        })();
        if ok.is_some() && commit {
            txn.end = End::CommitAcked;
        }
        done.push(txn);
        if ok.is_none() {
            return done;
        }
    }
    unreachable!()
}

/// The base sequence of the next batch to partition `p`: records this
/// producer epoch wrote there before (every worker run inits anew, so
/// sequences start at 0 each run).
fn txn_sequence(done: &[Txn], current: &Txn, p: i32) -> i32 {
    done.iter()
        .chain(std::iter::once(current))
        .flat_map(|t| &t.values)
        .filter(|(q, _)| *q == p)
        .count() as i32
}

#[test]
fn transactions_stay_whole_through_power_cuts() {
    let mut rig = Rig::start(&["--log-segment-bytes", "32768"]);
    let mut c = rig.broker.connect();
    create_topic(&mut c, "txn", TXN_PARTITIONS);
    create_topic(&mut c, "src", 1);
    let mut txns: Vec<Vec<Txn>> = vec![Vec::new(), Vec::new()];
    for (round, seed) in seeds().into_iter().enumerate() {
        let port = rig.broker.kafka_port;
        let workers: Vec<_> = (0..2)
            .map(|w| {
                let first = txns[w].last().map_or(0, |t| t.seq + 1);
                std::thread::spawn(move || txn_worker(port, w, first, round))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(400 + seed % 5 * 110));
        let report = rig.power_cut(Some(seed));
        for (w, h) in workers.into_iter().enumerate() {
            txns[w].extend(h.join().expect("transactional producer thread"));
        }
        // As a restarted producer does: InitProducerId fences the old
        // epoch and finishes whatever the coordinator had in flight.
        let mut c = rig.broker.connect();
        for w in 0..2 {
            init_transactional(&mut c, &format!("tx-{w}"), Duration::from_secs(30))
                .expect("InitProducerId after the cut");
        }
        let visible = read_committed(&mut c, "txn", TXN_PARTITIONS);
        let mut counts = [0usize; 4];
        for (w, list) in txns.iter().enumerate() {
            let mut last_committed = None;
            for t in list {
                let shown = t
                    .values
                    .iter()
                    .filter(|(p, v)| visible[*p as usize].contains(v))
                    .count();
                let whole = shown == t.values.len() && shown > 0;
                match t.end {
                    End::CommitAcked => assert!(
                        whole,
                        "tx-{w} transaction {} committed and acknowledged, {shown} of {} \
                         records shown ({} in the log)",
                        t.seq,
                        t.values.len(),
                        in_log(&mut c, t),
                    ),
                    End::CommitUnanswered => assert!(
                        whole || shown == 0,
                        "tx-{w} transaction {} torn: {shown} of {} records shown",
                        t.seq,
                        t.values.len()
                    ),
                    End::NotSent | End::Abort => assert_eq!(
                        shown, 0,
                        "tx-{w} transaction {} ({:?}) shown to read_committed",
                        t.seq, t.end
                    ),
                }
                counts[t.end as usize] += 1;
                if whole {
                    last_committed = Some(t.seq);
                }
            }
            // The offsets committed in a transaction go with its records.
            assert_eq!(
                committed(&mut c, &format!("txg-{w}"), "src"),
                last_committed.map_or(-1, |s| s + 1),
                "tx-{w}: committed offset does not match the last committed transaction"
            );
        }
        let shown: usize = visible.iter().map(Vec::len).sum();
        eprintln!(
            "seed {seed}: transactions cut before EndTxn {}, commit unanswered {}, committed {}, \
             aborted {}; {shown} records shown to read_committed, none twice; cut lost {} pages",
            counts[0], counts[1], counts[2], counts[3], report.pages_lost
        );
        assert!(counts[2] > 0, "no transaction committed before the cut");
    }
}

/// How many of a transaction's records the log holds, committed or not
/// (for a failure's message).
fn in_log(c: &mut Client, t: &Txn) -> usize {
    let logs: Vec<_> = (0..TXN_PARTITIONS).map(|p| read_all(c, "txn", p)).collect();
    t.values
        .iter()
        .filter(|(p, v)| logs[*p as usize].values().any(|x| x == v))
        .count()
}

fn init_transactional(c: &mut Client, tid: &str, wait: Duration) -> Option<(i64, i16)> {
    let deadline = Instant::now() + wait;
    loop {
        let r: InitProducerIdResponse = c.try_call(
            ApiKey::InitProducerId,
            4,
            &InitProducerIdRequest::default()
                .with_transactional_id(Some(TransactionalId(StrBytes::from_string(tid.into()))))
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        )?;
        if r.error_code == 0 {
            return Some((r.producer_id.0, r.producer_epoch));
        }
        // The coordinator is finishing the fenced epoch's transaction.
        let retriable = [
            ResponseError::ConcurrentTransactions.code(),
            ResponseError::CoordinatorLoadInProgress.code(),
        ];
        assert!(
            retriable.contains(&r.error_code) && Instant::now() < deadline,
            "InitProducerId({tid}): error {}",
            r.error_code
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn add_partitions(
    c: &mut Client,
    tid: &str,
    pid: i64,
    epoch: i16,
    topic: &str,
    partitions: i32,
) -> Option<()> {
    let r: AddPartitionsToTxnResponse = c.try_call(
        ApiKey::AddPartitionsToTxn,
        3,
        &AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(TransactionalId(StrBytes::from_string(tid.into())))
            .with_v3_and_below_producer_id(ProducerId(pid))
            .with_v3_and_below_producer_epoch(epoch)
            .with_v3_and_below_topics(vec![
                add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                    .with_name(name(topic))
                    .with_partitions((0..partitions).collect()),
            ]),
    )?;
    let ok = r.results_by_topic_v3_and_below.iter().all(|t| {
        t.results_by_partition
            .iter()
            .all(|p| p.partition_error_code == 0)
    });
    ok.then_some(())
}

fn add_offsets(c: &mut Client, tid: &str, pid: i64, epoch: i16, group: &str) -> Option<()> {
    let r: AddOffsetsToTxnResponse = c.try_call(
        ApiKey::AddOffsetsToTxn,
        3,
        &AddOffsetsToTxnRequest::default()
            .with_transactional_id(TransactionalId(StrBytes::from_string(tid.into())))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
            .with_group_id(GroupId(StrBytes::from_string(group.into()))),
    )?;
    (r.error_code == 0).then_some(())
}

fn txn_offset_commit(
    c: &mut Client,
    tid: &str,
    pid: i64,
    epoch: i16,
    group: &str,
    topic: &str,
    offset: i64,
) -> Option<()> {
    let r: TxnOffsetCommitResponse = c.try_call(
        ApiKey::TxnOffsetCommit,
        3,
        &TxnOffsetCommitRequest::default()
            .with_transactional_id(TransactionalId(StrBytes::from_string(tid.into())))
            .with_group_id(GroupId(StrBytes::from_string(group.into())))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
            .with_generation_id(-1)
            .with_topics(vec![
                txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                    .with_name(name(topic))
                    .with_partitions(vec![
                        txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(offset)
                            .with_committed_leader_epoch(-1),
                    ]),
            ]),
    )?;
    (r.topics[0].partitions[0].error_code == 0).then_some(())
}

fn end_txn(c: &mut Client, tid: &str, pid: i64, epoch: i16, commit: bool) -> Option<i16> {
    let r: EndTxnResponse = c.try_call(
        ApiKey::EndTxn,
        3,
        &EndTxnRequest::default()
            .with_transactional_id(TransactionalId(StrBytes::from_string(tid.into())))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
            .with_committed(commit),
    )?;
    Some(r.error_code)
}

/// Produce v9 with the request's transactional id: the error code.
fn produce_txn(c: &mut Client, tid: &str, topic: &str, p: i32, records: Bytes) -> Option<i16> {
    let req = ProduceRequest::default()
        .with_transactional_id(Some(TransactionalId(StrBytes::from_string(tid.into()))))
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![
            produce_request::TopicProduceData::default()
                .with_name(name(topic))
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(p)
                        .with_records(Some(records)),
                ]),
        ]);
    let r: ProduceResponse = c.try_call(ApiKey::Produce, 9, &req)?;
    Some(r.responses[0].partition_responses[0].error_code)
}

/// What a read_committed consumer sees of each partition, read as the Java
/// consumer does: up to the last stable offset (waited for until it meets
/// the high watermark: no transaction left open), skipping the batches of
/// the aborted transactions the broker lists until their abort marker.
/// Every batch's CRC is checked by the decoder.
fn read_committed(c: &mut Client, topic: &str, partitions: i32) -> Vec<Vec<String>> {
    (0..partitions)
        .map(|p| {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut out = Vec::new();
            let mut offset = 0;
            loop {
                let req = fetch(topic, p, offset, 1);
                let resp: FetchResponse = c.call(ApiKey::Fetch, 12, &req);
                let r = &resp.responses[0].partitions[0];
                assert_eq!(r.error_code, 0, "fetch {topic}-{p} at {offset}");
                if r.last_stable_offset < r.high_watermark {
                    // A transaction is still being finished: start again.
                    assert!(
                        Instant::now() < deadline,
                        "{topic}-{p}: LSO {} stuck below HW {}",
                        r.last_stable_offset,
                        r.high_watermark
                    );
                    out.clear();
                    offset = 0;
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                let mut aborted: Vec<(i64, i64)> = r
                    .aborted_transactions
                    .iter()
                    .flatten()
                    .map(|a| (a.first_offset, a.producer_id.0))
                    .collect();
                aborted.sort_unstable();
                let mut aborted = aborted.into_iter().peekable();
                let mut open_aborts = std::collections::HashSet::new();
                let before = offset;
                if let Some(mut records) = r.records.clone().filter(|b| !b.is_empty()) {
                    let batches =
                        RecordBatchDecoder::decode_all(&mut records).unwrap_or_else(|e| {
                            panic!("{topic}-{p} at {offset}: undecodable or CRC-bad batch: {e}")
                        });
                    for b in batches {
                        for rec in b.records {
                            offset = offset.max(rec.offset + 1);
                            // Aborted transactions that started by here, before
                            // a control record is read (its abort may end one).
                            while let Some(&(first, pid)) = aborted.peek() {
                                if first > rec.offset {
                                    break;
                                }
                                open_aborts.insert(pid);
                                aborted.next();
                            }
                            if rec.control {
                                // Key: version, then type (0 abort, 1 commit).
                                let abort =
                                    rec.key.as_deref().is_some_and(|k| k.get(3) == Some(&0));
                                if abort {
                                    open_aborts.remove(&rec.producer_id);
                                }
                                continue;
                            }
                            if rec.transactional && open_aborts.contains(&rec.producer_id) {
                                continue;
                            }
                            let v = rec.value.map(|v| String::from_utf8_lossy(&v).into_owned());
                            out.push(v.unwrap_or_default());
                        }
                    }
                }
                if offset >= r.last_stable_offset || offset == before {
                    let mut seen = std::collections::HashSet::new();
                    for v in &out {
                        assert!(seen.insert(v), "{topic}-{p}: {v} shown twice");
                    }
                    return out;
                }
            }
        })
        .collect()
}

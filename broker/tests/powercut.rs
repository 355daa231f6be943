//! Durability against power loss: the real `karnak` on the power-cut file
//! system (`karnak-powercut`, FUSE), which throws away at a cut whatever was
//! not fsynced (file data and sizes, and directory entries whose directory
//! was not fsynced), optionally tearing the last writes at page boundaries.
//! Unlike `kill -9`, this tells acks=all from acks=1.
//!
//! Seeds are fixed (reproducible tears); `KARNAK_POWERCUT_SEEDS=1,2,3`
//! replaces them. Needs `/dev/fuse` and root, as CI has: a test that cannot
//! mount fails, it does not skip.

mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::*;
use karnak_powercut::{CutReport, Faults, PowerCut};
use support::{Broker, Client};

const STORAGE_ERROR: i16 = ResponseError::KafkaStorageError.code();

struct Rig {
    // Field order: the broker goes before the file system it runs on.
    broker: Broker,
    fs: PowerCut,
    _mnt: tempfile::TempDir,
}

impl Rig {
    fn start(extra: &[&str]) -> Rig {
        let mnt = tempfile::tempdir().unwrap();
        let fs = PowerCut::mount(mnt.path())
            .expect("mounting the power-cut file system (needs /dev/fuse and root)");
        let mut args = vec!["--sql-enabled", "false", "--group-coordinator-shards", "4"];
        args.extend_from_slice(extra);
        let broker = Broker::start_in(Some(mnt.path().join("data")), &args);
        Rig {
            broker,
            fs,
            _mnt: mnt,
        }
    }

    /// The power goes: the disk keeps what was durable (torn with a seed),
    /// the broker dies with it, then both come back.
    fn power_cut(&mut self, tear: Option<u64>) -> CutReport {
        let report = self.fs.cut(tear);
        self.broker.kill9();
        self.fs.restart().expect("remounting after the cut");
        self.broker.spawn();
        report
    }

    fn data(&self) -> PathBuf {
        self.broker.data_dir()
    }
}

fn seeds() -> Vec<u64> {
    match std::env::var("KARNAK_POWERCUT_SEEDS") {
        Ok(s) => s.split(',').map(|x| x.trim().parse().unwrap()).collect(),
        Err(_) => vec![11, 12, 13],
    }
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn create_topic(c: &mut Client, topic: &str, partitions: i32) {
    support::create_topic(c, topic, partitions);
}

/// One v2 batch of keyless `values`; with `pid`, an idempotent one at `seq`.
fn batch(values: &[String], pid: Option<(i64, i16, i32)>) -> Bytes {
    let records: Vec<(Option<&[u8]>, &[u8])> =
        values.iter().map(|v| (None, v.as_bytes())).collect();
    support::producer_batch(&records, Compression::None, pid)
}

fn produce(c: &mut Client, topic: &str, p: i32, acks: i16, records: Bytes) -> Option<(i16, i64)> {
    support::try_produce(c, topic, p, acks, records)
}

fn init_producer_id(c: &mut Client) -> (i64, i16) {
    let r: InitProducerIdResponse = c.call(
        ApiKey::InitProducerId,
        4,
        &InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(-1)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    );
    assert_eq!(r.error_code, 0);
    (r.producer_id.0, r.producer_epoch)
}

/// Every record of a partition, offset to value, each batch's CRC checked
/// by the decoder (a batch that fails it fails the test).
fn read_all(c: &mut Client, topic: &str, partition: i32) -> HashMap<i64, String> {
    let mut out = HashMap::new();
    let mut offset = 0;
    loop {
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(0)
            .with_min_bytes(0)
            .with_max_bytes(8 << 20)
            .with_session_epoch(-1)
            .with_topics(vec![
                fetch_request::FetchTopic::default()
                    .with_topic(name(topic))
                    .with_partitions(vec![
                        fetch_request::FetchPartition::default()
                            .with_partition(partition)
                            .with_fetch_offset(offset)
                            .with_partition_max_bytes(4 << 20),
                    ]),
            ]);
        let resp: FetchResponse = c.call(ApiKey::Fetch, 12, &req);
        let p = &resp.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "fetch {topic}-{partition} at {offset}");
        let Some(mut records) = p.records.clone() else {
            return out;
        };
        if records.is_empty() {
            return out;
        }
        let batches = RecordBatchDecoder::decode_all(&mut records).unwrap_or_else(|e| {
            panic!("{topic}-{partition} at {offset}: undecodable or CRC-bad batch: {e}")
        });
        let before = offset;
        for b in batches {
            for r in b.records {
                let v = r.value.map(|v| String::from_utf8_lossy(&v).into_owned());
                out.insert(r.offset, v.unwrap_or_default());
                offset = offset.max(r.offset + 1);
            }
        }
        if offset >= p.high_watermark || offset == before {
            return out;
        }
    }
}

/// What a producer was told: partition, base offset, values.
type Acked = Vec<(i32, i64, Vec<String>)>;

/// Producers on their own connections until `stop`: worker 0 plain
/// acks=all, worker 1 idempotent acks=all. Returns what each was acked.
fn load(
    rig: &Rig,
    topic: &str,
    stop: Arc<AtomicBool>,
    round: u32,
) -> Vec<std::thread::JoinHandle<Acked>> {
    (0..2)
        .map(|w| {
            let port = rig.broker.kafka_port;
            let topic = topic.to_string();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut c = support::connect(port);
                let pid = (w == 1).then(|| init_producer_id(&mut c));
                let mut acked = Acked::new();
                let mut seqs = [0i32; 3];
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let p = n % 3;
                    let values: Vec<String> =
                        (0..5).map(|i| format!("g{round}-w{w}-{n}-{i}")).collect();
                    let b = batch(&values, pid.map(|(id, e)| (id, e, seqs[p as usize])));
                    match produce(&mut c, &topic, p, -1, b) {
                        Some((0, base)) => {
                            acked.push((p, base, values));
                            seqs[p as usize] += 5;
                        }
                        // Refused (the power went): this producer is done.
                        Some(_) | None => break,
                    }
                    n += 1;
                }
                acked
            })
        })
        .collect()
}

/// An acks=1 producer (nothing waits for a disk) rolling segments of
/// "loose" until `stop`; returns how many records it was acknowledged.
fn acks1_load(
    rig: &Rig,
    topic: &str,
    stop: Arc<AtomicBool>,
    round: u32,
) -> std::thread::JoinHandle<usize> {
    let port = rig.broker.kafka_port;
    let topic = topic.to_string();
    std::thread::spawn(move || {
        let mut c = support::connect(port);
        let mut acked = 0;
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            let values: Vec<String> = (0..20).map(|i| format!("g{round}-w9-{n}-{i}")).collect();
            match produce(&mut c, &topic, n % 3, 1, batch(&values, None)) {
                Some((0, _)) => acked += values.len(),
                Some(_) | None => break,
            }
            n += 1;
        }
        acked
    })
}

fn check_acked(c: &mut Client, topic: &str, acked: &Acked) -> (usize, usize) {
    let logs: Vec<HashMap<i64, String>> = (0..3).map(|p| read_all(c, topic, p)).collect();
    let mut records = 0;
    for (p, base, values) in acked {
        for (i, v) in values.iter().enumerate() {
            let at = base + i as i64;
            assert_eq!(
                logs[*p as usize].get(&at),
                Some(v),
                "acknowledged acks=all record {v} at {topic}-{p}@{at} lost"
            );
            records += 1;
        }
    }
    // The idempotent producer's records appear once each.
    let mut seen = std::collections::HashSet::new();
    for log in &logs {
        for v in log.values().filter(|v| v.contains("-w1-")) {
            assert!(seen.insert(v.clone()), "{v} written twice");
        }
    }
    (records, logs.iter().map(HashMap::len).sum())
}

#[test]
fn acks_all_records_survive_power_cuts_under_load() {
    let mut rig = Rig::start(&["--log-segment-bytes", "65536"]);
    let mut c = rig.broker.connect();
    create_topic(&mut c, "durable", 3);
    create_topic(&mut c, "loose", 3);
    let mut acked = Acked::new();
    for (round, seed) in seeds().into_iter().enumerate() {
        let stop = Arc::new(AtomicBool::new(false));
        let workers = load(&rig, "durable", stop.clone(), round as u32);
        let loose = acks1_load(&rig, "loose", stop.clone(), round as u32);
        // Cut at a seeded moment, with the producers mid-request.
        std::thread::sleep(Duration::from_millis(300 + seed % 7 * 90));
        let report = rig.power_cut(Some(seed));
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            acked.extend(w.join().expect("producer thread"));
        }
        let loose_acked = loose.join().expect("acks=1 producer thread");
        let mut c = rig.broker.connect();
        let (checked, present) = check_acked(&mut c, "durable", &acked);
        // acks=1 promises nothing across a power cut, but what is served
        // must be whole: every batch passes its CRC (read_all), offsets run
        // without holes, and each record is one a producer sent.
        let mut loose_present = 0;
        for p in 0..3 {
            let log = read_all(&mut c, "loose", p);
            let mut offsets: Vec<i64> = log.keys().copied().collect();
            offsets.sort_unstable();
            assert!(
                offsets.windows(2).all(|w| w[1] == w[0] + 1),
                "loose-{p}: holes in the offsets served after the cut"
            );
            assert!(
                log.values()
                    .all(|v| v.starts_with('g') && v.contains("-w9-"))
            );
            loose_present += log.len();
        }
        eprintln!(
            "seed {seed}: acks=1: {loose_acked} acknowledged, {loose_present} whole after the cut"
        );
        eprintln!(
            "seed {seed}: {checked} acknowledged records all present ({present} in the log); \
             cut lost {} dirty pages and {} directory changes, tore in {} pages and {} changes",
            report.pages_lost, report.dir_ops_lost, report.pages_torn_in, report.dir_ops_torn_in
        );
        assert!(checked > 0, "the load produced nothing before the cut");
    }
}

#[test]
fn without_fsync_a_power_cut_loses_acknowledged_records() {
    // The test above has teeth: the same load with acks=all answered
    // before any fsync loses what it was told was written.
    let mut rig = Rig::start(&["--flush-on-acks-all", "false"]);
    let mut c = rig.broker.connect();
    create_topic(&mut c, "volatile", 3);
    let stop = Arc::new(AtomicBool::new(false));
    let workers = load(&rig, "volatile", stop.clone(), 0);
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let acked: Acked = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert!(!acked.is_empty());
    rig.power_cut(None);
    let mut c = rig.broker.connect();
    let md: MetadataResponse = c.call(
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(Some(vec![
            metadata_request::MetadataRequestTopic::default().with_name(Some(name("volatile"))),
        ])),
    );
    let present: usize = if md.topics[0].error_code == 0 {
        (0..3).map(|p| read_all(&mut c, "volatile", p).len()).sum()
    } else {
        0
    };
    let acked_records: usize = acked.iter().map(|a| a.2.len()).sum();
    eprintln!("without fsync: {acked_records} acknowledged, {present} survived the cut");
    assert!(
        present < acked_records,
        "every acknowledged record survived without an fsync: the simulator lost nothing"
    );
}

#[test]
fn an_idempotent_retry_after_a_crash_waits_for_its_fsync() {
    let mut rig = Rig::start(&[]);
    let mut c = rig.broker.connect();
    create_topic(&mut c, "retry", 1);
    let (pid, epoch) = init_producer_id(&mut c);
    let b = batch(&["first".to_string()], Some((pid, epoch, 0)));
    // acks=1: written, not fsynced. Then the process dies (page cache kept).
    assert_eq!(produce(&mut c, "retry", 0, 1, b.clone()), Some((0, 0)));
    rig.broker.kill9();
    rig.broker.spawn();
    // The producer retries with acks=all: a duplicate, answered with its
    // first offset, and acknowledged only once that offset is durable.
    let mut c = rig.broker.connect();
    assert_eq!(produce(&mut c, "retry", 0, -1, b), Some((0, 0)));
    rig.power_cut(None);
    let mut c = rig.broker.connect();
    let log = read_all(&mut c, "retry", 0);
    assert_eq!(
        log.get(&0).map(String::as_str),
        Some("first"),
        "the acknowledged duplicate was never made durable"
    );
}

#[test]
fn the_clean_shutdown_marker_does_not_come_back_after_a_cut() {
    let mut rig = Rig::start(&[]);
    let mut c = rig.broker.connect();
    create_topic(&mut c, "marker", 1);
    assert_eq!(
        produce(&mut c, "marker", 0, -1, batch(&["a".into()], None)),
        Some((0, 0))
    );
    assert!(rig.broker.stop(), "clean shutdown");
    let marker = rig.data().join("marker-0").join(".karnak_clean_shutdown");
    assert!(marker.exists(), "clean shutdown writes the marker");
    rig.broker.spawn();
    assert!(!marker.exists(), "start-up removes the marker");
    // If its removal were not durable, the cut would bring the marker
    // back and the next start would skip checking the active segment.
    rig.power_cut(None);
    assert!(!marker.exists(), "the marker came back after a power cut");
}

#[test]
fn a_failed_fsync_takes_the_partition_offline_and_the_rest_keeps_serving() {
    let mut rig = Rig::start(&[]);
    let mut c = rig.broker.connect();
    create_topic(&mut c, "eio", 2);
    for p in 0..2 {
        assert_eq!(
            produce(&mut c, "eio", p, -1, batch(&["before".into()], None)),
            Some((0, 0))
        );
    }
    rig.fs.set_faults(Faults {
        fsync_eio: Some("eio-0/".into()),
        ..Default::default()
    });
    let refused = produce(&mut c, "eio", 0, -1, batch(&["lost?".into()], None));
    assert_eq!(refused.map(|r| r.0), Some(STORAGE_ERROR));
    // The disk recovers; the partition does not pretend it did: Linux may
    // have dropped the pages whose write-back failed.
    rig.fs.set_faults(Faults::default());
    let again = produce(&mut c, "eio", 0, -1, batch(&["after".into()], None));
    assert_eq!(again.map(|r| r.0), Some(STORAGE_ERROR));
    assert_eq!(
        produce(&mut c, "eio", 1, -1, batch(&["other".into()], None)),
        Some((0, 1)),
        "the other partition keeps serving"
    );
    let md: MetadataResponse = c.call(
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(Some(vec![
            metadata_request::MetadataRequestTopic::default().with_name(Some(name("eio"))),
        ])),
    );
    let mut parts = md.topics[0].partitions.clone();
    parts.sort_by_key(|p| p.partition_index);
    assert_eq!(
        parts[0].error_code,
        ResponseError::LeaderNotAvailable.code()
    );
    assert_eq!(parts[0].leader_id.0, -1);
    assert_eq!(parts[0].offline_replicas.len(), 1);
    assert_eq!(parts[1].error_code, 0);
    assert_eq!(
        rig.broker.metric("karnak_offline_partitions", &[]),
        1.0,
        "offline partitions are counted"
    );
    assert!(rig.broker.log().contains("partition taken offline"));
    // What was acknowledged before the failure survives a cut.
    rig.power_cut(None);
    let mut c = rig.broker.connect();
    assert_eq!(
        read_all(&mut c, "eio", 0).get(&0).map(String::as_str),
        Some("before")
    );
    let p1 = read_all(&mut c, "eio", 1);
    assert_eq!(p1.get(&1).map(String::as_str), Some("other"));
}

fn commit(c: &mut Client, group: &str, topic: &str, offset: i64) -> Option<i16> {
    let r: OffsetCommitResponse = c.try_call(
        ApiKey::OffsetCommit,
        8,
        &OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.into())))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![
                offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(name(topic))
                    .with_partitions(vec![
                        offset_commit_request::OffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(offset),
                    ]),
            ]),
    )?;
    Some(r.topics[0].partitions[0].error_code)
}

fn committed(c: &mut Client, group: &str, topic: &str) -> i64 {
    let r: OffsetFetchResponse = c.call(
        ApiKey::OffsetFetch,
        7,
        &OffsetFetchRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.into())))
            .with_topics(Some(vec![
                offset_fetch_request::OffsetFetchRequestTopic::default()
                    .with_name(name(topic))
                    .with_partition_indexes(vec![0]),
            ])),
    );
    r.topics[0].partitions[0].committed_offset
}

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

#[test]
fn a_full_disk_refuses_produce_without_tearing_and_recovers_when_space_is_freed() {
    let mut rig = Rig::start(&[]);
    let mut c = rig.broker.connect();
    create_topic(&mut c, "full", 1);
    let values = |n: usize, tag: &str| -> Vec<String> {
        (0..n)
            .map(|i| format!("{tag}-{i}-{}", "x".repeat(1000)))
            .collect()
    };
    assert_eq!(
        produce(&mut c, "full", 0, -1, batch(&values(10, "a"), None)),
        Some((0, 0))
    );
    // Room for about half of the next batch: it is written short, then ENOSPC.
    rig.fs.set_faults(Faults {
        capacity: Some(rig.fs.used_bytes() + 5_000),
        ..Default::default()
    });
    let refused = produce(&mut c, "full", 0, -1, batch(&values(10, "b"), None));
    assert_eq!(
        refused.map(|r| r.0),
        Some(STORAGE_ERROR),
        "ENOSPC answers KAFKA_STORAGE_ERROR"
    );
    // Space comes back (retention, a deleted topic): produce resumes, no restart,
    // and the refused batch left nothing behind.
    rig.fs.set_faults(Faults::default());
    assert_eq!(
        produce(&mut c, "full", 0, -1, batch(&values(10, "c"), None)),
        Some((0, 10)),
        "the partition stayed online and the torn write was rolled back"
    );
    rig.power_cut(Some(21));
    let mut c = rig.broker.connect();
    let log = read_all(&mut c, "full", 0);
    assert_eq!(log.len(), 20);
    assert!(log[&0].starts_with("a-0-") && log[&10].starts_with("c-0-"));
}

#[test]
fn a_failed_write_takes_the_partition_offline() {
    let rig = Rig::start(&[]);
    let mut c = rig.broker.connect();
    create_topic(&mut c, "weio", 1);
    assert_eq!(
        produce(&mut c, "weio", 0, 1, batch(&["ok".into()], None)),
        Some((0, 0))
    );
    rig.fs.set_faults(Faults {
        write_eio: Some("weio-0/".into()),
        ..Default::default()
    });
    let refused = produce(&mut c, "weio", 0, 1, batch(&["eio".into()], None));
    assert_eq!(refused.map(|r| r.0), Some(STORAGE_ERROR));
    rig.fs.set_faults(Faults::default());
    let again = produce(&mut c, "weio", 0, 1, batch(&["later".into()], None));
    assert_eq!(
        again.map(|r| r.0),
        Some(STORAGE_ERROR),
        "what the disk holds after a failed write is unknown: the partition stays offline"
    );
    assert!(rig.broker.log().contains("partition taken offline"));
}

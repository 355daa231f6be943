//! Produced records through power cuts: acks=all (plain and idempotent)
//! under load with torn cuts, acks=1, idempotent retries, the clean-shutdown
//! marker, and disks that fail or fill.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use karnak_powercut::Faults;

use crate::rig::*;
use crate::support::{self, Client};

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

#[test]
fn a_full_disk_refuses_produce_without_tearing_and_recovers_when_space_is_freed() {
    // No free-space floor: the write itself must meet ENOSPC.
    let mut rig = Rig::start(&["--log-dir-min-free-bytes", "0"]);
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

/// `n` one-record batches, `value(i)`, to each of partitions 0 and 1 in
/// turn, every one acknowledged.
fn produce_to_both(c: &mut Client, topic: &str, n: usize, value: impl Fn(usize) -> String) {
    for i in 0..n {
        for p in 0..2 {
            let (code, _) = produce(c, topic, p, -1, batch(&[value(i)], None)).unwrap();
            assert_eq!(code, 0);
        }
    }
}

/// A read the disk fails (a bad sector in a sealed segment): the fetch
/// gets KAFKA_STORAGE_ERROR, the partition goes offline as after a failed
/// write (so a replica elsewhere could lead it), the other partition keeps
/// serving, and once the disk is good again a restart serves everything.
#[test]
fn a_failed_read_takes_the_partition_offline_and_the_rest_keeps_serving() {
    let mut rig = Rig::start(&["--log-segment-bytes", "4096"]);
    let mut c = rig.broker.connect();
    create_topic(&mut c, "rd", 2);
    let value = |i: usize| format!("{i}-{}", "r".repeat(1000));
    produce_to_both(&mut c, "rd", 12, value);
    rig.fs.set_faults(Faults {
        read_eio: Some("rd-0/00000000000000000000.log".into()),
        ..Default::default()
    });
    let r: FetchResponse = c.call(ApiKey::Fetch, 12, &fetch("rd", 0, 0, 0));
    assert_eq!(
        r.responses[0].partitions[0].error_code, STORAGE_ERROR,
        "a read the disk fails answers KAFKA_STORAGE_ERROR"
    );
    assert!(
        rig.fs.stats().faults_injected > 0,
        "the read reached the disk"
    );
    assert_eq!(
        read_all(&mut c, "rd", 1).len(),
        12,
        "the other partition serves"
    );
    assert_eq!(
        produce(&mut c, "rd", 0, -1, batch(&["after".into()], None)).map(|r| r.0),
        Some(STORAGE_ERROR),
        "the partition is offline, for produce too"
    );
    assert_eq!(rig.broker.metric("karnak_offline_partitions", &[]), 1.0);
    assert!(rig.broker.log().contains("partition taken offline"));
    // The disk is fixed; a restart brings the partition back whole.
    rig.fs.set_faults(Faults::default());
    assert!(rig.broker.stop());
    rig.broker.spawn();
    let mut c = rig.broker.connect();
    let all = read_all(&mut c, "rd", 0);
    assert_eq!(all.len(), 12);
    assert_eq!(all[&11], value(11));
}

/// A bad sector only `sendfile` meets: the fetch's read found its batch
/// header fine and the disk failed the bytes being sent. The response is
/// cut (the client's connection drops, as for any torn response) and the
/// partition goes offline as after a failed read, rather than every retry
/// meeting the same sector; the other partition keeps serving.
#[test]
fn a_bad_sector_met_while_sending_takes_the_partition_offline() {
    let mut rig = Rig::start(&[]);
    let mut c = rig.broker.connect();
    create_topic(&mut c, "sf", 2);
    produce_to_both(&mut c, "sf", 40, |i| format!("{i}-{}", "s".repeat(2000)));
    rig.fs.set_faults(Faults {
        read_eio: Some("sf-0/00000000000000000000.log".into()),
        read_eio_from: 32 << 10,
        ..Default::default()
    });
    let torn: Option<FetchResponse> = c.try_call(ApiKey::Fetch, 12, &fetch("sf", 0, 0, 0));
    assert!(
        torn.is_none(),
        "the response was cut where the disk failed: {torn:?}"
    );
    assert!(
        rig.fs.stats().faults_injected > 0,
        "the send reached the disk"
    );
    let mut c = rig.broker.connect();
    let r: FetchResponse = c.call(ApiKey::Fetch, 12, &fetch("sf", 0, 0, 0));
    assert_eq!(
        r.responses[0].partitions[0].error_code, STORAGE_ERROR,
        "the partition is offline"
    );
    assert_eq!(rig.broker.metric("karnak_offline_partitions", &[]), 1.0);
    assert!(rig.broker.log().contains("sending a segment region"));
    assert_eq!(
        read_all(&mut c, "sf", 1).len(),
        40,
        "the other partition serves"
    );
    rig.fs.set_faults(Faults::default());
    assert!(rig.broker.stop());
    rig.broker.spawn();
    let mut c = rig.broker.connect();
    assert_eq!(read_all(&mut c, "sf", 0).len(), 40);
}

/// Producer state (rebuilt from the producer snapshots written at rolls
/// and the log after them) through cuts: the last acknowledged batch,
/// retried, is a duplicate answered with its first offset; the next
/// sequence is taken; a gap is refused.
#[test]
fn an_idempotent_producer_keeps_its_sequence_state_through_cuts() {
    let mut rig = Rig::start(&["--log-segment-bytes", "4096"]);
    let mut c = rig.broker.connect();
    create_topic(&mut c, "seqs", 1);
    let (pid, epoch) = init_producer_id(&mut c);
    let mut seq = 0;
    let mut next_offset = 0;
    for (round, seed) in seeds().into_iter().enumerate() {
        // Enough batches to roll several segments (and write snapshots).
        let mut last = None;
        for n in 0..60 {
            let values: Vec<String> = (0..4)
                .map(|i| format!("r{round}-{n}-{i}-{}", "v".repeat(100)))
                .collect();
            let b = batch(&values, Some((pid, epoch, seq)));
            assert_eq!(
                produce(&mut c, "seqs", 0, -1, b.clone()),
                Some((0, next_offset))
            );
            last = Some((b, next_offset));
            seq += 4;
            next_offset += 4;
        }
        rig.power_cut(Some(seed));
        c = rig.broker.connect();
        let (b, at) = last.expect("a batch was produced");
        assert_eq!(
            produce(&mut c, "seqs", 0, -1, b),
            Some((0, at)),
            "the retried last batch is a duplicate at its first offset (seed {seed})"
        );
        let gap = batch(&["gap".into()], Some((pid, epoch, seq + 1)));
        assert_eq!(
            produce(&mut c, "seqs", 0, -1, gap).map(|r| r.0),
            Some(ResponseError::OutOfOrderSequenceNumber.code()),
            "a sequence gap after the cut is refused (seed {seed})"
        );
        assert_eq!(read_all(&mut c, "seqs", 0).len() as i64, next_offset);
    }
}

fn offset_for_time(c: &mut Client, topic: &str, timestamp: i64) -> i64 {
    let r: ListOffsetsResponse = c.call(
        ApiKey::ListOffsets,
        8,
        &ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![
                list_offsets_request::ListOffsetsTopic::default()
                    .with_name(name(topic))
                    .with_partitions(vec![
                        list_offsets_request::ListOffsetsPartition::default()
                            .with_partition_index(0)
                            .with_timestamp(timestamp),
                    ]),
            ]),
    );
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code, 0, "ListOffsets {topic} at {timestamp}");
    p.offset
}

/// The time indexes (rebuilt or checked by recovery) answer ListOffsets
/// by timestamp for every acknowledged batch after torn cuts.
#[test]
fn timestamps_find_the_same_offsets_after_cuts() {
    let mut rig = Rig::start(&["--log-segment-bytes", "8192"]);
    let mut c = rig.broker.connect();
    create_topic(&mut c, "times", 1);
    let mut acked: Vec<(i64, i64)> = Vec::new(); // (timestamp, base offset)
    for (round, seed) in seeds().into_iter().enumerate() {
        for n in 0..80 {
            let ts = 1_000_000 + acked.len() as i64 * 1000;
            let values: Vec<String> = (0..3)
                .map(|i| format!("r{round}-{n}-{i}-{}", "t".repeat(200)))
                .collect();
            match produce(
                &mut c,
                "times",
                0,
                -1,
                raw_batch(&values, (-1, -1, -1), false, ts),
            ) {
                Some((0, base)) => acked.push((ts, base)),
                other => panic!("produce: {other:?}"),
            }
        }
        let max_before = offset_for_time(&mut c, "times", -3);
        rig.power_cut(Some(seed));
        c = rig.broker.connect();
        for &(ts, base) in &acked {
            assert_eq!(
                offset_for_time(&mut c, "times", ts),
                base,
                "ListOffsets at {ts} after the cut (seed {seed})"
            );
            // Between two batches' timestamps: the later batch.
            assert_eq!(offset_for_time(&mut c, "times", ts - 500), base);
        }
        // Kafka's max-timestamp (-3) as before the cut.
        assert_eq!(offset_for_time(&mut c, "times", -3), max_before);
        eprintln!(
            "seed {seed}: {} batches found by timestamp after the cut",
            acked.len()
        );
    }
}

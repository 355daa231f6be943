//! The rig: the real broker on the power-cut file system, and the raw-wire
//! calls the tests share.

use std::collections::HashMap;
use std::path::PathBuf;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::*;
use karnak_powercut::{CutReport, PowerCut};

use crate::support::{self, Broker, Client};

pub const STORAGE_ERROR: i16 = ResponseError::KafkaStorageError.code();

pub struct Rig {
    // Field order: the broker goes before the file system it runs on.
    pub broker: Broker,
    pub fs: PowerCut,
    _mnt: tempfile::TempDir,
}

impl Rig {
    pub fn start(extra: &[&str]) -> Rig {
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
    pub fn power_cut(&mut self, tear: Option<u64>) -> CutReport {
        let report = self.fs.cut(tear);
        self.broker.kill9();
        self.fs.restart().expect("remounting after the cut");
        self.broker.spawn();
        report
    }

    pub fn data(&self) -> PathBuf {
        self.broker.data_dir()
    }
}

pub fn seeds() -> Vec<u64> {
    match std::env::var("KARNAK_POWERCUT_SEEDS") {
        Ok(s) => s.split(',').map(|x| x.trim().parse().unwrap()).collect(),
        Err(_) => vec![11, 12, 13],
    }
}

pub fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

pub fn create_topic(c: &mut Client, topic: &str, partitions: i32) {
    support::create_topic(c, topic, partitions);
}

/// One v2 batch of keyless `values`; with `pid`, an idempotent one at `seq`.
pub fn batch(values: &[String], pid: Option<(i64, i16, i32)>) -> Bytes {
    let records: Vec<(Option<&[u8]>, &[u8])> =
        values.iter().map(|v| (None, v.as_bytes())).collect();
    support::producer_batch(&records, Compression::None, pid)
}

pub fn produce(
    c: &mut Client,
    topic: &str,
    p: i32,
    acks: i16,
    records: Bytes,
) -> Option<(i16, i64)> {
    support::try_produce(c, topic, p, acks, records)
}

pub fn init_producer_id(c: &mut Client) -> (i64, i16) {
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

/// Fetch v12 of one partition from `offset`; isolation 1 is read_committed.
pub fn fetch(topic: &str, partition: i32, offset: i64, isolation: i8) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(isolation)
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
        ])
}

/// One v2 batch of keyless `values` as a producer writes it: `producer` is
/// (id, epoch, base sequence), every record at `timestamp`.
pub fn raw_batch(
    values: &[String],
    producer: (i64, i16, i32),
    transactional: bool,
    timestamp: i64,
) -> Bytes {
    let (producer_id, producer_epoch, base_sequence) = producer;
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional,
            control: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: if producer_id < 0 {
                -1
            } else {
                base_sequence + i as i32
            },
            timestamp,
            key: None,
            value: Some(Bytes::copy_from_slice(v.as_bytes())),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut buf = bytes::BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encoding a batch");
    buf.freeze()
}

/// Every record of a partition, offset to value, each batch's CRC checked
/// by the decoder (a batch that fails it fails the test).
pub fn read_all(c: &mut Client, topic: &str, partition: i32) -> HashMap<i64, String> {
    read_from(c, topic, partition, 0)
}

/// As [`read_all`], from `offset` on.
pub fn read_from(c: &mut Client, topic: &str, partition: i32, from: i64) -> HashMap<i64, String> {
    let mut out = HashMap::new();
    let mut offset = from;
    loop {
        let req = fetch(topic, partition, offset, 0);
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

pub fn commit(c: &mut Client, group: &str, topic: &str, offset: i64) -> Option<i16> {
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

pub fn committed(c: &mut Client, group: &str, topic: &str) -> i64 {
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

/// DeleteTopics v6 of one topic by name: its error code.
pub fn delete_topic(c: &mut Client, topic: &str) -> i16 {
    let r: DeleteTopicsResponse = c.call(
        ApiKey::DeleteTopics,
        6,
        &DeleteTopicsRequest::default()
            .with_topics(vec![
                delete_topics_request::DeleteTopicState::default().with_name(Some(name(topic))),
            ])
            .with_timeout_ms(10_000),
    );
    r.responses[0].error_code
}

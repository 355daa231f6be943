//! Compacted topics over the wire: the cleaner keeps the newest record per
//! key at its offset, consumers read the gaps, keyless records are refused.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, RecordBatchDecoder};
use support::{Broker, Client, keyed_batch};

fn produce(c: &mut Client, topic: &str, records: Bytes) -> (i16, Option<String>) {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![
            produce_request::TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(records)),
                ]),
        ]);
    let resp: ProduceResponse = c.call(ApiKey::Produce, 9, &req);
    let p = &resp.responses[0].partition_responses[0];
    (
        p.error_code,
        p.error_message.as_ref().map(|m| m.to_string()),
    )
}

/// Every record from offset 0 to the end, as (offset, key, value).
fn read_all(c: &mut Client, topic: &str) -> Vec<(i64, String, String)> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_bytes(1 << 20)
            .with_session_epoch(-1)
            .with_topics(vec![
                fetch_request::FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partitions(vec![
                        fetch_request::FetchPartition::default()
                            .with_fetch_offset(offset)
                            .with_partition_max_bytes(1 << 20),
                    ]),
            ]);
        let resp: FetchResponse = c.call(ApiKey::Fetch, 12, &req);
        let p = &resp.responses[0].partitions[0];
        assert_eq!(p.error_code, 0);
        let Some(mut records) = p.records.clone().filter(|r| !r.is_empty()) else {
            return out;
        };
        for set in RecordBatchDecoder::decode_all(&mut records).unwrap() {
            for r in set.records {
                if r.offset >= offset {
                    let text = |b: &Option<Bytes>| {
                        String::from_utf8(b.clone().unwrap_or_default().to_vec()).unwrap()
                    };
                    out.push((r.offset, text(&r.key), text(&r.value)));
                    offset = r.offset + 1;
                }
            }
        }
    }
}

#[test]
fn the_cleaner_keeps_the_newest_record_per_key_at_its_offset() {
    let broker = Broker::start(&["--log-cleaner-backoff-ms", "50"]);
    let mut c = broker.connect();
    let req = CreateTopicsRequest::default()
        .with_topics(vec![
            create_topics_request::CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("table")))
                .with_num_partitions(1)
                .with_replication_factor(1)
                .with_configs(
                    [
                        ("cleanup.policy", "compact"),
                        ("segment.bytes", "1024"),
                        ("min.cleanable.dirty.ratio", "0.01"),
                    ]
                    .into_iter()
                    .map(|(k, v)| {
                        create_topics_request::CreatableTopicConfig::default()
                            .with_name(StrBytes::from_static_str(k))
                            .with_value(Some(StrBytes::from_static_str(v)))
                    })
                    .collect(),
                ),
        ])
        .with_timeout_ms(5000);
    let resp: CreateTopicsResponse = c.call(ApiKey::CreateTopics, 7, &req);
    assert_eq!(resp.topics[0].error_code, 0);

    // Keyless records are refused whole, with Kafka's error.
    let keyless = keyed_batch(&[(Some(b"a"), b"1"), (None, b"x")], Compression::None);
    let (code, msg) = produce(&mut c, "table", keyless);
    assert_eq!(code, ResponseError::InvalidRecord.code(), "{msg:?}");

    // Ten rounds over five keys, one batch (and about one segment) a round.
    let pad = "p".repeat(200);
    for round in 0..10 {
        let values: Vec<(&str, String)> = ["k0", "k1", "k2", "k3", "k4"]
            .iter()
            .map(|k| (*k, format!("{k}-{round}-{pad}")))
            .collect();
        let records: Vec<(Option<&[u8]>, &[u8])> = values
            .iter()
            .map(|(k, v)| (Some(k.as_bytes()), v.as_bytes()))
            .collect();
        assert_eq!(
            produce(&mut c, "table", keyed_batch(&records, Compression::None)).0,
            0
        );
    }
    // (The cleaner may already be at work: it wakes every 50 ms here.)
    let deadline = Instant::now() + Duration::from_secs(30);
    let records = loop {
        let records = read_all(&mut c, "table");
        if records.len() <= 10 {
            break records;
        }
        assert!(
            Instant::now() < deadline,
            "not compacted: {} records",
            records.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // Offsets kept (gaps are normal) and rising; the newest value of every
    // key is there at its original offset.
    assert!(records.windows(2).all(|w| w[0].0 < w[1].0));
    for (i, k) in ["k0", "k1", "k2", "k3", "k4"].iter().enumerate() {
        let newest = records.iter().rev().find(|r| r.1 == *k).unwrap();
        assert_eq!(newest.0, 45 + i as i64);
        assert!(newest.2.starts_with(&format!("{k}-9-")));
    }
    assert_eq!(records.last().unwrap().0, 49);
}

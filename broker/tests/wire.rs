//! The real binary, real sockets, every served API at every served version.

mod support;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, RecordBatchDecoder};
use karnak_protocol::api_versions::SERVED_APIS;
use support::{Broker, batch};

fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn produce(
    c: &mut support::Client,
    version: i16,
    topic: &str,
    partition: i32,
    records: Bytes,
    acks: i16,
) -> produce_response::PartitionProduceResponse {
    let req = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5000)
        .with_topic_data(vec![
            produce_request::TopicProduceData::default()
                .with_name(topic_name(topic))
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(records)),
                ]),
        ]);
    let resp: ProduceResponse = c.call(ApiKey::Produce, version, &req);
    resp.responses[0].partition_responses[0].clone()
}

fn fetch(
    c: &mut support::Client,
    version: i16,
    topic: &str,
    id: uuid::Uuid,
    partition: i32,
    offset: i64,
    max_wait: i32,
) -> fetch_response::PartitionData {
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait)
        .with_min_bytes(1)
        .with_max_bytes(50 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![
            fetch_request::FetchTopic::default()
                .with_topic(if version < 13 {
                    topic_name(topic)
                } else {
                    Default::default()
                })
                .with_topic_id(id)
                .with_partitions(vec![
                    fetch_request::FetchPartition::default()
                        .with_partition(partition)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ]);
    let resp: FetchResponse = c.call(ApiKey::Fetch, version, &req);
    assert_eq!(resp.error_code, 0);
    resp.responses[0].partitions[0].clone()
}

fn metadata(c: &mut support::Client, version: i16, topics: Option<Vec<&str>>) -> MetadataResponse {
    let req = MetadataRequest::default()
        .with_allow_auto_topic_creation(true)
        .with_topics(topics.map(|t| {
            t.into_iter()
                .map(|n| {
                    metadata_request::MetadataRequestTopic::default().with_name(Some(topic_name(n)))
                })
                .collect()
        }));
    c.call(ApiKey::Metadata, version, &req)
}

#[test]
fn api_versions_lists_the_table_at_every_version() {
    let broker = Broker::start(&[]);
    let mut c = broker.connect();
    for version in 0..=4 {
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("wire-test"))
            .with_client_software_version(StrBytes::from_static_str("1.0"));
        let resp: ApiVersionsResponse = c.call(ApiKey::ApiVersions, version, &req);
        assert_eq!(resp.error_code, 0, "v{version}");
        assert_eq!(resp.api_keys.len(), SERVED_APIS.len());
        let produce = resp.api_keys.iter().find(|k| k.api_key == 0).unwrap();
        assert_eq!(
            (produce.min_version, produce.max_version),
            (0, 12),
            "KAFKA-18659: advertise Produce from v0"
        );
    }
}

#[test]
fn unknown_api_versions_version_gets_a_v0_answer() {
    let broker = Broker::start(&[]);
    let mut c = broker.connect();
    let frame = c.frame(ApiKey::ApiVersions, 77, &[0]);
    c.send_raw(&frame);
    let mut resp = c
        .read_frame()
        .expect("a KIP-511 answer, not a closed socket");
    use bytes::Buf;
    resp.advance(4); // correlation id; header v0
    let decoded = ApiVersionsResponse::decode(&mut resp, 0).unwrap();
    assert_eq!(decoded.error_code, ResponseError::UnsupportedVersion.code());
    assert!(decoded.api_keys.iter().any(|k| k.api_key == 1));
}

use kafka_protocol::protocol::Decodable;

#[test]
fn produce_then_fetch_round_trips_at_every_version() {
    let broker = Broker::start(&[]);
    let mut c = broker.connect();
    let md = metadata(&mut c, 12, Some(vec!["rt"]));
    assert_eq!(md.topics[0].error_code, 0, "auto-created through Metadata");
    let id = md.topics[0].topic_id;
    assert!(!id.is_nil());
    let mut expected = Vec::new();
    for (i, version) in (3..=12).enumerate() {
        let codec = [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ][i % 5];
        let values: Vec<Vec<u8>> = (0..3)
            .map(|j| format!("v{version}-{j}").into_bytes())
            .collect();
        let refs: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
        let p = produce(&mut c, version, "rt", 0, batch(&refs, codec), 1);
        assert_eq!(p.error_code, 0, "produce v{version}");
        assert_eq!(p.base_offset, (i * 3) as i64);
        expected.extend(values);
    }
    for version in 4..=17 {
        let p = fetch(&mut c, version, "rt", id, 0, 0, 0);
        assert_eq!(p.error_code, 0, "fetch v{version}");
        assert_eq!(p.high_watermark, expected.len() as i64);
        let mut records = p.records.unwrap();
        let sets = RecordBatchDecoder::decode_all(&mut records).unwrap();
        let got: Vec<Vec<u8>> = sets
            .iter()
            .flat_map(|s| s.records.iter())
            .map(|r| r.value.clone().unwrap().to_vec())
            .collect();
        let offsets: Vec<i64> = sets
            .iter()
            .flat_map(|s| s.records.iter())
            .map(|r| r.offset)
            .collect();
        assert_eq!(got, expected, "fetch v{version}");
        assert_eq!(offsets, (0..expected.len() as i64).collect::<Vec<_>>());
    }
    // Record bytes left the broker by sendfile, none through a user-space buffer.
    assert!(broker.metric("karnak_fetch_sendfile_bytes_total", &[]) > 0.0);
    assert_eq!(broker.metric("karnak_fetch_copied_bytes_total", &[]), 0.0);
}

#[test]
fn fetch_long_poll_is_woken_by_a_produce() {
    let broker = Broker::start(&[]);
    let mut c = broker.connect();
    let id = metadata(&mut c, 12, Some(vec!["lp"])).topics[0].topic_id;
    let started = std::time::Instant::now();
    let poller = std::thread::spawn(move || fetch(&mut c, 12, "lp", id, 0, 0, 20_000));
    wait_parked(&broker);
    let mut p = broker.connect();
    assert_eq!(
        produce(&mut p, 9, "lp", 0, batch(&[b"wake"], Compression::None), 1).error_code,
        0
    );
    let got = poller.join().unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "woken by the append, not the timeout"
    );
    assert_eq!(got.high_watermark, 1);
    assert!(!got.records.unwrap().is_empty());
}

/// A long poll behind another on its connection is first polled when that
/// one answers; an append made in between must still wake it (the wait
/// once marked it seen and slept to its deadline: followers' fetches did,
/// holding acks=all and transactions ~500 ms).
#[test]
fn a_long_poll_queued_behind_another_sees_an_append_made_meanwhile() {
    let broker = Broker::start(&[]);
    let mut c = broker.connect();
    support::create_topic(&mut c, "queued", 2);
    let poll = |partition: i32, max_wait: i32| {
        let mut req = support::fetch_request("queued", 0, max_wait);
        req.topics[0].partitions[0].partition = partition;
        let mut body = BytesMut::new();
        kafka_protocol::protocol::Encodable::encode(&req, &mut body, 12).unwrap();
        body
    };
    let started = std::time::Instant::now();
    // Both in one write: the second is read (empty) while the first waits.
    let (first, second) = (poll(0, 3_000), poll(1, 30_000));
    let mut both = c.frame(ApiKey::Fetch, 12, &first);
    both.extend_from_slice(&c.frame(ApiKey::Fetch, 12, &second));
    c.send_raw(&both);
    wait_parked(&broker);
    let mut p = broker.connect();
    assert_eq!(
        produce(
            &mut p,
            9,
            "queued",
            1,
            batch(&[b"meanwhile"], Compression::None),
            1
        )
        .error_code,
        0
    );
    let decode = |mut frame: Bytes| {
        use bytes::Buf;
        frame.get_i32(); // correlation id
        frame.get_u8(); // header tags
        <FetchResponse as kafka_protocol::protocol::Decodable>::decode(&mut frame, 12).unwrap()
    };
    let a = decode(c.read_frame().expect("the first poll's answer"));
    assert_eq!(a.responses[0].partitions[0].high_watermark, 0);
    let b = decode(c.read_frame().expect("the second poll's answer"));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "the second poll slept to its deadline through the append"
    );
    let got = &b.responses[0].partitions[0];
    assert_eq!(got.high_watermark, 1);
    assert!(!got.records.as_ref().is_none_or(|r| r.is_empty()));
}

/// Polls the purgatory gauge until a fetch is parked.
fn wait_parked(broker: &Broker) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while broker.metric("karnak_fetch_purgatory_size", &[]) < 1.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the fetch never parked"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn errors_are_kafkas() {
    let broker = Broker::start(&["--auto-create-topics", "false"]);
    let mut c = broker.connect();
    // Unknown topic without auto-creation.
    assert_eq!(
        produce(
            &mut c,
            9,
            "missing",
            0,
            batch(&[b"x"], Compression::None),
            1
        )
        .error_code,
        3
    );
    // Invalid topic name.
    assert_eq!(
        produce(
            &mut c,
            9,
            "bad name!",
            0,
            batch(&[b"x"], Compression::None),
            1
        )
        .error_code,
        17
    );
    let created: CreateTopicsResponse = c.call(
        ApiKey::CreateTopics,
        7,
        &CreateTopicsRequest::default().with_topics(vec![
            create_topics_request::CreatableTopic::default()
                .with_name(topic_name("e"))
                .with_num_partitions(1)
                .with_replication_factor(1),
        ]),
    );
    assert_eq!(created.topics[0].error_code, 0);
    let id = created.topics[0].topic_id;
    // Partition that does not exist.
    assert_eq!(
        produce(&mut c, 9, "e", 5, batch(&[b"x"], Compression::None), 1).error_code,
        3
    );
    // Bad CRC: CORRUPT_MESSAGE and nothing appended.
    let mut bad = BytesMut::from(&batch(&[b"hello"], Compression::None)[..]);
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    assert_eq!(
        produce(&mut c, 9, "e", 0, bad.freeze(), 1).error_code,
        ResponseError::CorruptMessage.code()
    );
    assert_eq!(
        produce(&mut c, 9, "e", 0, batch(&[b"ok"], Compression::None), -1).base_offset,
        0,
        "bad batch took no offset"
    );
    // Invalid acks.
    assert_eq!(
        produce(&mut c, 9, "e", 0, batch(&[b"x"], Compression::None), 2).error_code,
        21
    );
    // Fetch out of range.
    let req = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![
            fetch_request::FetchTopic::default()
                .with_topic(topic_name("e"))
                .with_topic_id(id)
                .with_partitions(vec![
                    fetch_request::FetchPartition::default()
                        .with_fetch_offset(99)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ]);
    let resp: FetchResponse = c.call(ApiKey::Fetch, 12, &req);
    assert_eq!(
        resp.responses[0].partitions[0].error_code,
        ResponseError::OffsetOutOfRange.code()
    );
    assert_eq!(resp.responses[0].partitions[0].high_watermark, 1);
    // Existing topic, bad replication factor.
    let again: CreateTopicsResponse = c.call(
        ApiKey::CreateTopics,
        7,
        &CreateTopicsRequest::default().with_topics(vec![
            create_topics_request::CreatableTopic::default()
                .with_name(topic_name("e"))
                .with_num_partitions(1)
                .with_replication_factor(1),
            create_topics_request::CreatableTopic::default()
                .with_name(topic_name("r3"))
                .with_num_partitions(1)
                .with_replication_factor(3),
        ]),
    );
    assert_eq!(
        again.topics[0].error_code,
        ResponseError::TopicAlreadyExists.code()
    );
    assert_eq!(
        again.topics[1].error_code,
        ResponseError::InvalidReplicationFactor.code()
    );
}

#[test]
fn bad_frames_close_only_their_connection() {
    let broker = Broker::start(&["--socket-request-max-bytes", "1048576"]);
    let mut good = broker.connect();
    assert_eq!(
        metadata(&mut good, 12, Some(vec!["keep"])).topics[0].error_code,
        0
    );
    assert_eq!(
        produce(
            &mut good,
            9,
            "keep",
            0,
            batch(&[b"acked"], Compression::None),
            -1
        )
        .error_code,
        0
    );

    for raw in [
        (-1i32).to_be_bytes().to_vec(),          // negative size
        (2 * 1048576i32).to_be_bytes().to_vec(), // over socket.request.max.bytes
        [&6i32.to_be_bytes()[..], &[0, 3, 0, 1, 0, 0]].concat(), // truncated header
        {
            let mut f = BytesMut::new(); // unknown API key
            f.put_i32(10);
            f.put_i16(999);
            f.put_i16(0);
            f.put_i32(1);
            f.put_i16(-1);
            f.to_vec()
        },
        {
            let mut f = BytesMut::new(); // Metadata at a version we do not serve
            f.put_i32(10);
            f.put_i16(3);
            f.put_i16(99);
            f.put_i32(1);
            f.put_i16(-1);
            f.to_vec()
        },
        {
            let mut f = BytesMut::new(); // Produce body cut short
            f.put_i32(14);
            f.put_i16(0);
            f.put_i16(9);
            f.put_i32(1);
            f.put_i16(-1);
            f.put_u8(0);
            f.put_u8(0);
            f.put_u8(0);
            f.put_u8(5);
            f.to_vec()
        },
    ] {
        let mut bad = broker.connect();
        bad.send_raw(&raw);
        assert!(
            bad.closed_by_broker(),
            "broker closes a connection that sent {raw:?}"
        );
    }
    // A client that asks for data and leaves before reading it.
    let id = metadata(&mut good, 12, Some(vec!["keep"])).topics[0].topic_id;
    {
        let mut rude = broker.connect();
        let req = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_max_bytes(1 << 20)
            .with_session_epoch(-1)
            .with_topics(vec![
                fetch_request::FetchTopic::default()
                    .with_topic(topic_name("keep"))
                    .with_topic_id(id)
                    .with_partitions(vec![
                        fetch_request::FetchPartition::default()
                            .with_fetch_offset(0)
                            .with_partition_max_bytes(1 << 20),
                    ]),
            ]);
        let mut body = BytesMut::new();
        kafka_protocol::protocol::Encodable::encode(&req, &mut body, 12).unwrap();
        let frame = rude.frame(ApiKey::Fetch, 12, &body);
        rude.send_raw(&frame);
    }
    let p = fetch(&mut good, 12, "keep", id, 0, 0, 0);
    assert_eq!(
        p.high_watermark, 1,
        "acked data intact, old connection still served"
    );
}

#[test]
fn restart_keeps_acked_data_and_offsets_continue() {
    let mut broker = Broker::start(&[]);
    {
        let mut c = broker.connect();
        for i in 0..10 {
            let p = produce(
                &mut c,
                9,
                "durable",
                0,
                batch(&[format!("r{i}").as_bytes()], Compression::Lz4),
                -1,
            );
            assert_eq!(p.base_offset, i);
        }
    }
    assert!(broker.stop(), "clean exit on SIGTERM: {}", broker.log());
    broker.spawn();
    let mut c = broker.connect();
    assert_eq!(
        produce(
            &mut c,
            9,
            "durable",
            0,
            batch(&[b"after"], Compression::None),
            -1
        )
        .base_offset,
        10
    );
    broker.kill9();
    broker.spawn();
    let mut c = broker.connect();
    let id = metadata(&mut c, 12, Some(vec!["durable"])).topics[0].topic_id;
    let p = fetch(&mut c, 12, "durable", id, 0, 0, 0);
    assert_eq!(p.high_watermark, 11);
    let mut records = p.records.unwrap();
    let n: usize = RecordBatchDecoder::decode_all(&mut records)
        .unwrap()
        .iter()
        .map(|s| s.records.len())
        .sum();
    assert_eq!(n, 11);
}

#[test]
fn list_offsets_and_admin_apis() {
    let broker = Broker::start(&["--num-partitions", "3"]);
    let mut c = broker.connect();
    let md = metadata(&mut c, 1, Some(vec!["lo"]));
    assert_eq!(
        md.topics[0].partitions.len(),
        3,
        "num.partitions applies to auto-created topics"
    );
    let t0 = produce(
        &mut c,
        9,
        "lo",
        1,
        batch(&[b"a", b"b"], Compression::None),
        1,
    );
    assert_eq!(t0.base_offset, 0);
    let list = |c: &mut support::Client, version: i16, ts: i64| -> (i64, i16) {
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![
                list_offsets_request::ListOffsetsTopic::default()
                    .with_name(topic_name("lo"))
                    .with_partitions(vec![
                        list_offsets_request::ListOffsetsPartition::default()
                            .with_partition_index(1)
                            .with_timestamp(ts),
                    ]),
            ]);
        let resp: ListOffsetsResponse = c.call(ApiKey::ListOffsets, version, &req);
        let p = &resp.topics[0].partitions[0];
        (p.offset, p.error_code)
    };
    for version in 1..=10 {
        assert_eq!(list(&mut c, version, -1), (2, 0), "latest v{version}");
        assert_eq!(list(&mut c, version, -2), (0, 0), "earliest v{version}");
        assert_eq!(list(&mut c, version, 0), (0, 0), "by timestamp v{version}");
        assert_eq!(
            list(&mut c, version, i64::MAX).0,
            -1,
            "no record that new v{version}"
        );
    }
    for version in 0..=1 {
        let resp: DescribeClusterResponse = c.call(
            ApiKey::DescribeCluster,
            version,
            &DescribeClusterRequest::default().with_endpoint_type(1),
        );
        assert_eq!(resp.brokers.len(), 1);
        assert_eq!(resp.brokers[0].port, broker.kafka_port as i32);
        assert_eq!(resp.cluster_id.len(), 22);
    }
    for version in 1..=6 {
        let name = format!("del{version}");
        assert_eq!(
            metadata(&mut c, 12, Some(vec![&name])).topics[0].error_code,
            0
        );
        let req = if version >= 6 {
            DeleteTopicsRequest::default().with_topics(vec![
                delete_topics_request::DeleteTopicState::default()
                    .with_name(Some(topic_name(&name))),
            ])
        } else {
            DeleteTopicsRequest::default().with_topic_names(vec![topic_name(&name)])
        };
        let resp: DeleteTopicsResponse = c.call(ApiKey::DeleteTopics, version, &req);
        assert_eq!(resp.responses[0].error_code, 0, "delete v{version}");
        let resp: DeleteTopicsResponse = c.call(ApiKey::DeleteTopics, version, &req);
        assert_eq!(resp.responses[0].error_code, 3, "second delete v{version}");
    }
    let all = metadata(&mut c, 12, None);
    // The coordinator's own topic is listed as internal, as Kafka lists
    // __consumer_offsets.
    assert!(
        all.topics
            .iter()
            .any(|t| t.is_internal && t.name.as_ref().unwrap().as_str() == "__karnak_coordinator")
    );
    assert_eq!(
        all.topics
            .iter()
            .filter(|t| !t.is_internal)
            .map(|t| t.name.as_ref().unwrap().as_str())
            .collect::<Vec<_>>(),
        vec!["lo"]
    );
}

#[test]
fn shutdown_answers_parked_long_polls_at_once() {
    let mut broker = Broker::start(&[]);
    let mut c = broker.connect();
    let id = metadata(&mut c, 12, Some(vec!["park"])).topics[0].topic_id;
    let poller =
        std::thread::spawn(move || fetch(&mut c, 12, "park", id, 0, 0, 60_000).high_watermark);
    wait_parked(&broker);
    let started = std::time::Instant::now();
    assert!(broker.stop(), "clean exit: {}", broker.log());
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "shutdown waited for the long poll"
    );
    assert_eq!(poller.join().unwrap(), 0, "the parked fetch got its answer");
}

#[test]
fn describe_configs_shows_overrides_and_defaults() {
    let broker = Broker::start(&["--node-id", "3"]);
    let mut c = broker.connect();
    let created: CreateTopicsResponse = c.call(
        ApiKey::CreateTopics,
        7,
        &CreateTopicsRequest::default().with_topics(vec![
            create_topics_request::CreatableTopic::default()
                .with_name(topic_name("cfg"))
                .with_num_partitions(2)
                .with_replication_factor(-1)
                .with_configs(vec![
                    create_topics_request::CreatableTopicConfig::default()
                        .with_name(StrBytes::from_static_str("retention.ms"))
                        .with_value(Some(StrBytes::from_static_str("3600000"))),
                ]),
        ]),
    );
    assert_eq!(created.topics[0].error_code, 0);
    for version in 1..=4 {
        let req = DescribeConfigsRequest::default().with_resources(vec![
            describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("cfg")),
            describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("nope")),
            describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(4)
                .with_resource_name(StrBytes::from_static_str("3"))
                .with_configuration_keys(Some(vec![StrBytes::from_static_str("node.id")])),
        ]);
        let resp: DescribeConfigsResponse = c.call(ApiKey::DescribeConfigs, version, &req);
        let get = |i: usize, name: &str| {
            resp.results[i]
                .configs
                .iter()
                .find(|c| c.name.as_str() == name)
                .map(|c| (c.value.as_ref().unwrap().to_string(), c.config_source))
        };
        assert_eq!(resp.results[0].error_code, 0);
        assert_eq!(
            get(0, "retention.ms"),
            Some(("3600000".into(), 1)),
            "override, v{version}"
        );
        assert_eq!(
            get(0, "segment.bytes"),
            Some(("1073741824".into(), 5)),
            "default, v{version}"
        );
        assert_eq!(
            resp.results[1].error_code,
            ResponseError::UnknownTopicOrPartition.code()
        );
        assert_eq!(resp.results[2].configs.len(), 1);
        assert_eq!(get(2, "node.id"), Some(("3".into(), 4)));
    }
}

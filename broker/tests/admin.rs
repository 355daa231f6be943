//! The admin APIs Kafka's tools and AdminClient call, against the real
//! binary: CreatePartitions, DeleteRecords, (Incremental)AlterConfigs,
//! DescribeTopicPartitions, DescribeLogDirs, OffsetForLeaderEpoch.

mod support;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;
use support::{Broker, Client, alter_configs as alter, batch, create_topic, delete_records};

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn produce(c: &mut Client, topic: &str, partition: i32, records: Bytes) -> i64 {
    let (code, base) = support::try_produce(c, topic, partition, -1, records).expect("response");
    assert_eq!(code, 0, "produce to {topic}-{partition}");
    base
}

fn earliest(c: &mut Client, topic: &str, partition: i32) -> i64 {
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![
            list_offsets_request::ListOffsetsTopic::default()
                .with_name(name(topic))
                .with_partitions(vec![
                    list_offsets_request::ListOffsetsPartition::default()
                        .with_partition_index(partition)
                        .with_timestamp(-2),
                ]),
        ]);
    let resp: ListOffsetsResponse = c.call(ApiKey::ListOffsets, 7, &req);
    let p = &resp.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.offset
}

fn partition_count(c: &mut Client, topic: &str) -> usize {
    let req = MetadataRequest::default().with_topics(Some(vec![
        metadata_request::MetadataRequestTopic::default().with_name(Some(name(topic))),
    ]));
    let resp: MetadataResponse = c.call(ApiKey::Metadata, 12, &req);
    resp.topics[0].partitions.len()
}

fn create_partitions(
    c: &mut Client,
    topic: &str,
    count: i32,
    validate_only: bool,
) -> (i16, String) {
    let req = CreatePartitionsRequest::default()
        .with_topics(vec![
            create_partitions_request::CreatePartitionsTopic::default()
                .with_name(name(topic))
                .with_count(count),
        ])
        .with_timeout_ms(5000)
        .with_validate_only(validate_only);
    let resp: CreatePartitionsResponse = c.call(ApiKey::CreatePartitions, 3, &req);
    let r = &resp.results[0];
    (
        r.error_code,
        r.error_message
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default(),
    )
}

#[test]
fn create_partitions_grows_topics_and_never_shrinks_them() {
    let mut broker = Broker::start(&[]);
    let mut c = broker.connect();
    create_topic(&mut c, "grow", 1);
    assert_eq!(create_partitions(&mut c, "grow", 3, true).0, 0);
    assert_eq!(
        partition_count(&mut c, "grow"),
        1,
        "validate_only changes nothing"
    );
    assert_eq!(create_partitions(&mut c, "grow", 3, false).0, 0);
    assert_eq!(partition_count(&mut c, "grow"), 3);
    assert_eq!(
        produce(&mut c, "grow", 2, batch(&[b"new"], Compression::None)),
        0
    );
    for (count, what) in [(2, "fewer"), (3, "as many")] {
        let (code, msg) = create_partitions(&mut c, "grow", count, false);
        assert_eq!(code, ResponseError::InvalidPartitions.code(), "{what}");
        assert!(msg.contains('3'), "{msg}");
    }
    let (code, _) = create_partitions(&mut c, "nope", 4, false);
    assert_eq!(code, ResponseError::UnknownTopicOrPartition.code());
    broker.stop();
    broker.spawn();
    let mut c = broker.connect();
    assert_eq!(partition_count(&mut c, "grow"), 3, "kept over a restart");
}

/// As Kafka's controller: no request may create more than 10,000
/// metadata records (a topic, its partitions, its configs) at once; the
/// whole request is refused with POLICY_VIOLATION and nothing is made.
#[test]
fn requests_creating_over_ten_thousand_partitions_are_refused_whole() {
    let mut broker = Broker::start(&[]);
    let mut c = broker.connect();
    let topic = |n: &str, partitions: i32| {
        create_topics_request::CreatableTopic::default()
            .with_name(name(n))
            .with_num_partitions(partitions)
            .with_replication_factor(-1)
    };
    let create = |c: &mut Client, topics| {
        let req = CreateTopicsRequest::default()
            .with_topics(topics)
            .with_timeout_ms(5000);
        let resp: CreateTopicsResponse = c.call(ApiKey::CreateTopics, 7, &req);
        resp.topics
            .iter()
            .map(|t| {
                (
                    t.error_code,
                    t.error_message.as_ref().map(|m| m.to_string()),
                )
            })
            .collect::<Vec<_>>()
    };
    // 1 + 5,000 and 1 + 4,999 records: 10,001 in all.
    let refused = create(&mut c, vec![topic("big-a", 5_000), topic("big-b", 4_999)]);
    assert_eq!(refused.len(), 2);
    for (code, msg) in &refused {
        assert_eq!(*code, ResponseError::PolicyViolation.code());
        assert_eq!(
            msg.as_deref(),
            Some("Unable to perform excessively large batch operation.")
        );
    }
    let meta: MetadataResponse = c.call(ApiKey::Metadata, 12, &MetadataRequest::default());
    assert!(meta.topics.is_empty(), "nothing created: {:?}", meta.topics);
    let dirs: Vec<_> = std::fs::read_dir(broker.data_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("big-"))
        .collect();
    assert!(dirs.is_empty(), "no partition directory: {dirs:?}");
    let made = create(&mut c, vec![topic("big-a", 2)]);
    assert_eq!(made.len(), 1);
    assert_eq!(made[0].0, 0, "a request within the bound is made: {made:?}");
    let (code, msg) = create_partitions(&mut c, "big-a", 2 + 10_001, false);
    assert_eq!(code, ResponseError::PolicyViolation.code(), "{msg}");
    assert_eq!(partition_count(&mut c, "big-a"), 2);
    broker.stop();
}

#[test]
fn delete_records_moves_the_log_start_offset_durably() {
    let mut broker = Broker::start(&["--log-segment-bytes", "1024"]);
    let mut c = broker.connect();
    create_topic(&mut c, "dr", 1);
    let value = [b'v'; 300];
    for _ in 0..10 {
        produce(&mut c, "dr", 0, batch(&[&value], Compression::None));
    }
    let segments = |b: &Broker| {
        std::fs::read_dir(b.data_dir().join("dr-0"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "log")
            })
            .count()
    };
    let before = segments(&broker);
    assert!(before > 3, "small segments: {before}");
    assert_eq!(delete_records(&mut c, "dr", 0, 6), (0, 6));
    assert_eq!(earliest(&mut c, "dr", 0), 6);
    assert!(
        segments(&broker) < before,
        "segments below the new start are deleted"
    );
    // Below the start is out of range for fetch; at it, records come back.
    let fetch = |c: &mut Client, offset: i64| {
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_bytes(1 << 20)
            .with_session_epoch(-1)
            .with_topics(vec![
                fetch_request::FetchTopic::default()
                    .with_topic(name("dr"))
                    .with_partitions(vec![
                        fetch_request::FetchPartition::default()
                            .with_fetch_offset(offset)
                            .with_partition_max_bytes(1 << 20),
                    ]),
            ]);
        let resp: FetchResponse = c.call(ApiKey::Fetch, 12, &req);
        resp.responses[0].partitions[0].clone()
    };
    let low = fetch(&mut c, 2);
    assert_eq!(low.error_code, ResponseError::OffsetOutOfRange.code());
    assert_eq!(low.log_start_offset, 6);
    assert!(fetch(&mut c, 6).records.is_some_and(|r| !r.is_empty()));
    // Past the high watermark; the high watermark itself (-1); going back.
    assert_eq!(
        delete_records(&mut c, "dr", 0, 11).0,
        ResponseError::OffsetOutOfRange.code()
    );
    assert_eq!(delete_records(&mut c, "dr", 0, 3), (0, 6));
    assert_eq!(delete_records(&mut c, "dr", 0, 8), (0, 8));
    assert_eq!(
        delete_records(&mut c, "dr", 1, 0).0,
        ResponseError::UnknownTopicOrPartition.code()
    );
    broker.kill9();
    broker.spawn();
    let mut c = broker.connect();
    assert_eq!(earliest(&mut c, "dr", 0), 8, "the start survives a crash");
    assert_eq!(delete_records(&mut c, "dr", 0, -1), (0, 10));
    assert_eq!(earliest(&mut c, "dr", 0), 10);
}

/// (value, source) of one config of a resource.
fn describe(c: &mut Client, resource_type: i8, resource: &str, config: &str) -> (String, i8) {
    let req = DescribeConfigsRequest::default().with_resources(vec![
        describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(StrBytes::from_string(resource.to_string()))
            .with_configuration_keys(Some(vec![StrBytes::from_string(config.to_string())])),
    ]);
    let resp: DescribeConfigsResponse = c.call(ApiKey::DescribeConfigs, 4, &req);
    let r = &resp.results[0];
    assert_eq!(r.error_code, 0);
    let e = r
        .configs
        .iter()
        .find(|e| e.name.as_str() == config)
        .expect(config);
    (
        e.value.as_ref().map(|v| v.to_string()).unwrap_or_default(),
        e.config_source,
    )
}

/// The names of every config of a resource.
fn describe_all(c: &mut Client, resource_type: i8, resource: &str) -> Vec<String> {
    let req = DescribeConfigsRequest::default().with_resources(vec![
        describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(StrBytes::from_string(resource.to_string()))
            .with_configuration_keys(None),
    ]);
    let resp: DescribeConfigsResponse = c.call(ApiKey::DescribeConfigs, 4, &req);
    assert_eq!(resp.results[0].error_code, 0);
    resp.results[0]
        .configs
        .iter()
        .map(|e| e.name.to_string())
        .collect()
}

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;

#[test]
fn topic_configs_change_on_a_live_topic() {
    let mut broker = Broker::start(&[]);
    let mut c = broker.connect();
    create_topic(&mut c, "cfg", 1);
    assert_eq!(
        alter(
            &mut c,
            TOPIC,
            "cfg",
            &[("retention.ms", SET, Some("60000"))]
        )
        .0,
        0
    );
    assert_eq!(
        describe(&mut c, TOPIC, "cfg", "retention.ms"),
        ("60000".into(), 1)
    );
    assert_eq!(
        alter(
            &mut c,
            TOPIC,
            "cfg",
            &[("cleanup.policy", APPEND, Some("compact"))]
        )
        .0,
        0
    );
    assert_eq!(
        describe(&mut c, TOPIC, "cfg", "cleanup.policy").0,
        "delete,compact"
    );
    assert_eq!(
        alter(&mut c, TOPIC, "cfg", &[("retention.ms", DELETE, None)]).0,
        0
    );
    assert_eq!(
        describe(&mut c, TOPIC, "cfg", "retention.ms"),
        ("604800000".into(), 5)
    );
    // The live log takes a new segment size at once.
    assert_eq!(
        alter(
            &mut c,
            TOPIC,
            "cfg",
            &[("segment.bytes", SET, Some("1024"))]
        )
        .0,
        0
    );
    for _ in 0..5 {
        produce(&mut c, "cfg", 0, batch(&[&[b'x'; 600]], Compression::None));
    }
    let logs = std::fs::read_dir(broker.data_dir().join("cfg-0"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "log")
        })
        .count();
    assert!(
        logs >= 3,
        "segment.bytes applied to the live log: {logs} segments"
    );
    // Bad input: unknown name, bad value (named), APPEND on a non-list,
    // a duplicate key, an unknown topic.
    let (code, msg) = alter(&mut c, TOPIC, "cfg", &[("retention.mss", SET, Some("1"))]);
    assert_eq!(code, ResponseError::InvalidConfig.code());
    assert!(msg.contains("retention.mss"), "{msg}");
    let (code, msg) = alter(&mut c, TOPIC, "cfg", &[("retention.ms", SET, Some("soon"))]);
    assert_eq!(code, ResponseError::InvalidConfig.code());
    assert_eq!(
        msg,
        "Invalid value soon for configuration retention.ms: Not a number of type LONG"
    );
    let (code, _) = alter(&mut c, TOPIC, "cfg", &[("retention.ms", APPEND, Some("1"))]);
    assert_eq!(code, ResponseError::InvalidConfig.code());
    let (code, _) = alter(
        &mut c,
        TOPIC,
        "cfg",
        &[
            ("retention.ms", SET, Some("1")),
            ("retention.ms", DELETE, None),
        ],
    );
    assert_eq!(code, ResponseError::InvalidRequest.code());
    let (code, _) = alter(&mut c, TOPIC, "nope", &[("retention.ms", SET, Some("1"))]);
    assert_eq!(code, ResponseError::UnknownTopicOrPartition.code());
    // A refused change changes nothing.
    assert_eq!(describe(&mut c, TOPIC, "cfg", "retention.ms").1, 5);

    // Legacy AlterConfigs replaces the whole set.
    let req = AlterConfigsRequest::default().with_resources(vec![
        alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(TOPIC)
            .with_resource_name(StrBytes::from_static_str("cfg"))
            .with_configs(vec![
                alter_configs_request::AlterableConfig::default()
                    .with_name(StrBytes::from_static_str("retention.bytes"))
                    .with_value(Some(StrBytes::from_static_str("123456"))),
            ]),
    ]);
    let resp: AlterConfigsResponse = c.call(ApiKey::AlterConfigs, 2, &req);
    assert_eq!(resp.responses[0].error_code, 0);
    assert_eq!(
        describe(&mut c, TOPIC, "cfg", "retention.bytes"),
        ("123456".into(), 1)
    );
    assert_eq!(
        describe(&mut c, TOPIC, "cfg", "segment.bytes").1,
        5,
        "replaced, not merged"
    );
    broker.stop();
    broker.spawn();
    let mut c = broker.connect();
    assert_eq!(
        describe(&mut c, TOPIC, "cfg", "retention.bytes"),
        ("123456".into(), 1)
    );
}

#[test]
fn broker_log_defaults_change_live_and_persist() {
    let mut broker = Broker::start(&[]);
    let mut c = broker.connect();
    create_topic(&mut c, "inherits", 1);
    assert_eq!(
        alter(
            &mut c,
            BROKER,
            "0",
            &[("log.retention.ms", SET, Some("3600000"))]
        )
        .0,
        0
    );
    assert_eq!(
        describe(&mut c, BROKER, "0", "log.retention.ms"),
        ("3600000".into(), 2)
    );
    assert_eq!(
        describe(&mut c, TOPIC, "inherits", "retention.ms"),
        ("3600000".into(), 2)
    );
    assert_eq!(
        alter(
            &mut c,
            BROKER,
            "",
            &[("log.segment.bytes", SET, Some("2048"))]
        )
        .0,
        0
    );
    assert_eq!(
        describe(&mut c, TOPIC, "inherits", "segment.bytes"),
        ("2048".into(), 3)
    );
    let (code, _) = alter(&mut c, BROKER, "0", &[("node.id", SET, Some("5"))]);
    assert_eq!(code, ResponseError::InvalidRequest.code());
    // Replication throttles: kafka-reassign-partitions --throttle sets the
    // rates, --verify removes them (with the log-dirs throttle, a no-op
    // here: one log dir); a rate is a LONG of at least 0; they persist.
    let rate = |v| [("leader.replication.throttled.rate", SET, v)];
    assert_eq!(
        alter(&mut c, BROKER, "0", &rate(Some("1000"))),
        (0, String::new())
    );
    assert_eq!(
        describe(&mut c, BROKER, "0", "leader.replication.throttled.rate"),
        ("1000".into(), 2)
    );
    let (code, msg) = alter(&mut c, BROKER, "0", &rate(Some("-5")));
    assert_eq!(code, ResponseError::InvalidRequest.code());
    assert!(msg.contains("leader.replication.throttled.rate"), "{msg}");
    let (code, msg) = alter(
        &mut c,
        BROKER,
        "0",
        &[(
            "replica.alter.log.dirs.io.max.bytes.per.second",
            SET,
            Some("1000"),
        )],
    );
    assert_eq!(code, ResponseError::InvalidConfig.code());
    assert!(msg.contains("replica.alter.log.dirs"), "{msg}");
    drop(c);
    broker.stop();
    broker.spawn();
    let mut c = broker.connect();
    assert_eq!(
        describe(&mut c, BROKER, "0", "leader.replication.throttled.rate"),
        ("1000".into(), 2)
    );
    let throttles = [
        ("leader.replication.throttled.rate", DELETE, None),
        ("follower.replication.throttled.rate", DELETE, None),
        (
            "replica.alter.log.dirs.io.max.bytes.per.second",
            DELETE,
            None,
        ),
    ];
    assert_eq!(alter(&mut c, BROKER, "0", &throttles), (0, String::new()));
    let gone = describe_all(&mut c, BROKER, "0");
    assert!(
        !gone.iter().any(|n| n.contains("throttled.rate")),
        "{gone:?}"
    );
    let (code, _) = alter(
        &mut c,
        BROKER,
        "0",
        &[("log.retention.msx", SET, Some("5"))],
    );
    assert_eq!(code, ResponseError::InvalidConfig.code());
    // Kafka: INVALID_REQUEST for a bad broker value, in its words.
    let (code, msg) = alter(&mut c, BROKER, "0", &[("log.retention.ms", SET, Some("x"))]);
    assert_eq!(code, ResponseError::InvalidRequest.code());
    assert_eq!(
        msg,
        "Invalid value x for configuration log.retention.ms: Not a number of type LONG"
    );
    broker.stop();
    broker.spawn();
    let mut c = broker.connect();
    assert_eq!(
        describe(&mut c, TOPIC, "inherits", "retention.ms"),
        ("3600000".into(), 2)
    );
    assert_eq!(
        alter(&mut c, BROKER, "0", &[("log.retention.ms", DELETE, None)]).0,
        0
    );
    assert_eq!(
        describe(&mut c, TOPIC, "inherits", "retention.ms"),
        ("604800000".into(), 5)
    );
}

#[test]
fn describe_topic_partitions_pages_with_a_cursor() {
    let broker = Broker::start(&[]);
    let mut c = broker.connect();
    let id = create_topic(&mut c, "pages-a", 3);
    create_topic(&mut c, "pages-b", 2);
    let call = |c: &mut Client, topics: &[&str], limit: i32, cursor: Option<(&str, i32)>| {
        let req = DescribeTopicPartitionsRequest::default()
            .with_topics(
                topics
                    .iter()
                    .map(|t| {
                        describe_topic_partitions_request::TopicRequest::default()
                            .with_name(name(t))
                    })
                    .collect(),
            )
            .with_response_partition_limit(limit)
            .with_cursor(cursor.map(|(t, p)| {
                describe_topic_partitions_request::Cursor::default()
                    .with_topic_name(name(t))
                    .with_partition_index(p)
            }));
        let r: DescribeTopicPartitionsResponse = c.call(ApiKey::DescribeTopicPartitions, 0, &req);
        r
    };
    let r = call(&mut c, &["pages-b", "pages-a", "missing"], 2, None);
    assert_eq!(r.topics[0].name.as_ref().unwrap().as_str(), "missing");
    assert_eq!(
        r.topics[0].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
    assert_eq!(r.topics[1].topic_id, id);
    assert_eq!(r.topics[1].partitions.len(), 2);
    let next = r.next_cursor.expect("more to come");
    assert_eq!(
        (next.topic_name.as_str(), next.partition_index),
        ("pages-a", 2)
    );
    let r = call(&mut c, &["pages-a", "pages-b"], 2, Some(("pages-a", 2)));
    let got: Vec<(String, i32)> = r
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.name.as_ref().unwrap().to_string(), p.partition_index))
        })
        .collect();
    assert_eq!(got, vec![("pages-a".into(), 2), ("pages-b".into(), 0)]);
    assert_eq!(r.next_cursor.unwrap().partition_index, 1);
    // No topics: all of them.
    let r = call(&mut c, &[], 100, None);
    assert!(
        r.topics
            .iter()
            .any(|t| t.name.as_ref().unwrap().as_str() == "pages-b")
    );
    assert!(r.next_cursor.is_none());
}

#[test]
fn describe_log_dirs_reports_sizes_and_space() {
    let broker = Broker::start(&[]);
    let mut c = broker.connect();
    create_topic(&mut c, "sized", 2);
    produce(
        &mut c,
        "sized",
        1,
        batch(&[&[b'z'; 1000]], Compression::None),
    );
    let req = DescribeLogDirsRequest::default().with_topics(Some(vec![
        describe_log_dirs_request::DescribableLogDirTopic::default()
            .with_topic(name("sized"))
            .with_partitions(vec![0, 1, 7]),
    ]));
    let r: DescribeLogDirsResponse = c.call(ApiKey::DescribeLogDirs, 4, &req);
    assert_eq!(r.results.len(), 1);
    let dir = &r.results[0];
    assert_eq!(dir.error_code, 0);
    assert!(dir.total_bytes > 0 && dir.usable_bytes > 0 && dir.usable_bytes <= dir.total_bytes);
    let parts = &dir.topics[0].partitions;
    assert_eq!(parts.len(), 2, "partition 7 does not exist");
    assert_eq!(parts[0].partition_size, 0);
    assert!(parts[1].partition_size > 1000);
}

#[test]
fn offset_for_leader_epoch_answers_from_the_epoch_cache() {
    let broker = Broker::start(&[]);
    let mut c = broker.connect();
    create_topic(&mut c, "epochs", 1);
    let ask = |c: &mut Client, current: i32, epoch: i32| {
        let req = OffsetForLeaderEpochRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![
                offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                    .with_topic(name("epochs"))
                    .with_partitions(vec![
                        offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                            .with_partition(0)
                            .with_current_leader_epoch(current)
                            .with_leader_epoch(epoch),
                    ]),
            ]);
        let r: OffsetForLeaderEpochResponse = c.call(ApiKey::OffsetForLeaderEpoch, 4, &req);
        let p = &r.topics[0].partitions[0];
        (p.error_code, p.leader_epoch, p.end_offset)
    };
    assert_eq!(ask(&mut c, 0, 0), (0, 0, 0));
    produce(
        &mut c,
        "epochs",
        0,
        batch(&[b"a", b"b", b"c"], Compression::None),
    );
    assert_eq!(ask(&mut c, -1, 0), (0, 0, 3));
    assert_eq!(ask(&mut c, 0, 1), (0, -1, -1));
    assert_eq!(
        ask(&mut c, 1, 0).0,
        ResponseError::UnknownLeaderEpoch.code()
    );
    let cp = std::fs::read_to_string(broker.data_dir().join("epochs-0/leader-epoch-checkpoint"))
        .unwrap();
    assert_eq!(cp, "0\n1\n0 0\n");
}

#[test]
fn acl_apis_answer_security_disabled_as_kafka_without_an_authorizer() {
    let broker = Broker::start(&[]);
    let mut c = broker.connect();
    let r: DescribeAclsResponse = c.call(
        ApiKey::DescribeAcls,
        3,
        &DescribeAclsRequest::default()
            .with_resource_type_filter(1)
            .with_pattern_type_filter(1)
            .with_operation(1)
            .with_permission_type(1),
    );
    assert_eq!(r.error_code, ResponseError::SecurityDisabled.code());
    let r: CreateAclsResponse = c.call(
        ApiKey::CreateAcls,
        3,
        &CreateAclsRequest::default()
            .with_creations(vec![create_acls_request::AclCreation::default()]),
    );
    assert_eq!(r.results.len(), 1);
    assert_eq!(
        r.results[0].error_code,
        ResponseError::SecurityDisabled.code()
    );
    let r: DeleteAclsResponse = c.call(
        ApiKey::DeleteAcls,
        3,
        &DeleteAclsRequest::default()
            .with_filters(vec![delete_acls_request::DeleteAclsFilter::default()]),
    );
    assert_eq!(
        r.filter_results[0].error_code,
        ResponseError::SecurityDisabled.code()
    );
}

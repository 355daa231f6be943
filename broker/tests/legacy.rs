//! The request versions Kafka 4.0 dropped (KIP-896), served as Kafka 3.9
//! served them: raw frames in the old formats against the real binary.

mod support;

use bytes::{Buf, Bytes};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::records::RecordBatchDecoder;
use karnak_protocol::legacy::message_set::{self, Message};
use karnak_protocol::legacy::wire::{Reader, Writer};
use karnak_protocol::record_batch::Compression;
use support::{Broker, Client};

/// Sends `body` as `key` v`version` and returns the answer's body.
fn call_raw(c: &mut Client, key: ApiKey, version: i16, body: Bytes) -> Bytes {
    let frame = c.frame(key, version, &body);
    c.send_raw(&frame);
    let mut resp = c.read_frame().expect("an answer, not a closed connection");
    resp.advance(4); // correlation id; every legacy version has header v0
    resp
}

fn messages(n: usize, magic: i8, tag: &str) -> Vec<Message> {
    (0..n)
        .map(|i| Message {
            magic,
            timestamp: if magic == 1 {
                1_700_000_000_000 + i as i64
            } else {
                -1
            },
            log_append_time: false,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(format!("{tag}-{i}"))),
        })
        .collect()
}

fn produce_body(acks: i16, topic: &str, set: &[u8]) -> Bytes {
    let mut w = Writer::new();
    w.i16(acks);
    w.i32(5000);
    w.array_len(1);
    w.string(topic.as_bytes());
    w.array_len(1);
    w.i32(0);
    w.nullable_bytes(Some(set));
    w.freeze()
}

/// (error, base offset) of a one-partition v0-2 produce answer.
fn produce_answer(version: i16, resp: &Bytes) -> (i16, i64) {
    let mut r = Reader::new(resp);
    assert_eq!(r.array_len("topics", 1).unwrap(), 1);
    r.string("topic").unwrap();
    assert_eq!(r.array_len("partitions", 1).unwrap(), 1);
    assert_eq!(r.i32("partition").unwrap(), 0);
    let error = r.i16("error").unwrap();
    let base = r.i64("base offset").unwrap();
    if version >= 2 {
        r.i64("log append time").unwrap();
    }
    if version >= 1 {
        r.i32("throttle").unwrap();
    }
    r.finish("produce answer").unwrap();
    (error, base)
}

fn fetch_body(version: i16, topic: &str, offset: i64) -> Bytes {
    let mut w = Writer::new();
    w.i32(-1);
    w.i32(0);
    w.i32(0);
    if version >= 3 {
        w.i32(1 << 20);
    }
    w.array_len(1);
    w.string(topic.as_bytes());
    w.array_len(1);
    w.i32(0);
    w.i64(offset);
    w.i32(1 << 20);
    w.freeze()
}

/// (error, high watermark, records) of a one-partition v0-3 fetch answer.
fn fetch_answer(version: i16, resp: &Bytes) -> (i16, i64, Bytes) {
    let mut r = Reader::new(resp);
    if version >= 1 {
        r.i32("throttle").unwrap();
    }
    assert_eq!(r.array_len("topics", 1).unwrap(), 1);
    r.string("topic").unwrap();
    assert_eq!(r.array_len("partitions", 1).unwrap(), 1);
    assert_eq!(r.i32("partition").unwrap(), 0);
    let error = r.i16("error").unwrap();
    let hw = r.i64("high watermark").unwrap();
    let records = Bytes::copy_from_slice(r.nullable_bytes("records").unwrap().unwrap());
    r.finish("fetch answer").unwrap();
    (error, hw, records)
}

#[test]
fn api_versions_advertises_kafka_3_9s_floor() {
    let broker = Broker::start(&[]);
    let mut c = broker.connect();
    let resp: ApiVersionsResponse = c.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    for key in [
        ApiKey::Produce,
        ApiKey::Fetch,
        ApiKey::ListOffsets,
        ApiKey::OffsetCommit,
        ApiKey::OffsetFetch,
        ApiKey::CreateTopics,
        ApiKey::DeleteTopics,
        ApiKey::OffsetForLeaderEpoch,
        ApiKey::DescribeConfigs,
        ApiKey::DescribeLogDirs,
        ApiKey::DescribeAcls,
    ] {
        let k = resp.api_keys.iter().find(|k| k.api_key == key as i16);
        assert_eq!(k.map(|k| k.min_version), Some(0), "{key:?}");
    }
}

#[test]
fn old_message_sets_round_trip_through_every_old_and_new_version() {
    let broker = Broker::start(&[]);
    let mut c = broker.connect();
    let mut expected: Vec<(String, String)> = Vec::new();
    let mut next = 0i64;
    // Produce v0 and v1 carry magic 0; v2 magic 1 (what clients send).
    for (version, magic) in [(0i16, 0i8), (1, 0), (2, 1)] {
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
        ] {
            let tag = format!("p{version}-{codec:?}");
            let msgs = messages(3, magic, &tag);
            let set = message_set::encode(magic, codec, &msgs).unwrap();
            let resp = call_raw(
                &mut c,
                ApiKey::Produce,
                version,
                produce_body(-1, "old", &set),
            );
            assert_eq!(produce_answer(version, &resp), (0, next), "{tag}");
            next += 3;
            expected.extend((0..3).map(|i| (format!("k{i}"), format!("{tag}-{i}"))));
        }
    }

    // Old fetches: magic 0 for v0-1, magic 1 for v2-3, offsets absolute,
    // from any offset (the front of a batch left out).
    for version in 0..=3i16 {
        for from in [0i64, 4] {
            let resp = call_raw(
                &mut c,
                ApiKey::Fetch,
                version,
                fetch_body(version, "old", from),
            );
            let (error, hw, records) = fetch_answer(version, &resp);
            assert_eq!((error, hw), (0, next), "fetch v{version}");
            let set = message_set::decode(&records).unwrap();
            assert_eq!(set.magic, if version >= 2 { 1 } else { 0 });
            let got: Vec<(String, String)> = set
                .messages
                .iter()
                .map(|m| {
                    (
                        String::from_utf8(m.key.clone().unwrap().to_vec()).unwrap(),
                        String::from_utf8(m.value.clone().unwrap().to_vec()).unwrap(),
                    )
                })
                .collect();
            assert_eq!(
                got,
                expected[from as usize..],
                "fetch v{version} from {from}"
            );
            let mut first = Reader::new(&records);
            assert_eq!(first.i64("offset").unwrap(), from);
        }
    }

    // A v4+ client reads the same records as v2 batches: magic-0 ones
    // without a timestamp (-1), magic-1 ones with theirs.
    let mut r = support::connect(broker.kafka_port);
    let fetched = support_fetch_v4(&mut r, "old");
    assert_eq!(fetched.len() as i64, next);
    assert_eq!(fetched[0].0, -1);
    assert_eq!(fetched[24].0, 1_700_000_000_000);
    assert_eq!(fetched[24].1, expected[24].1);
}

/// (timestamp, value) of every record, by Fetch v4.
fn support_fetch_v4(c: &mut Client, topic: &str) -> Vec<(i64, String)> {
    let mut w = Writer::new();
    w.i32(-1);
    w.i32(0);
    w.i32(0);
    w.i32(1 << 20);
    w.i8(0);
    w.array_len(1);
    w.string(topic.as_bytes());
    w.array_len(1);
    w.i32(0);
    w.i64(0);
    w.i32(1 << 20);
    let resp = call_raw(c, ApiKey::Fetch, 4, w.freeze());
    let mut r = Reader::new(&resp);
    r.i32("throttle").unwrap();
    r.array_len("topics", 1).unwrap();
    r.string("topic").unwrap();
    r.array_len("partitions", 1).unwrap();
    r.i32("partition").unwrap();
    assert_eq!(r.i16("error").unwrap(), 0);
    r.i64("hw").unwrap();
    r.i64("lso").unwrap();
    let n = r.nullable_array_len("aborted", 16).unwrap().unwrap_or(0);
    assert_eq!(n, 0);
    let mut records = Bytes::copy_from_slice(r.nullable_bytes("records").unwrap().unwrap());
    RecordBatchDecoder::decode_all(&mut records)
        .unwrap()
        .iter()
        .flat_map(|s| s.records.iter())
        .map(|rec| {
            (
                rec.timestamp,
                String::from_utf8(rec.value.clone().unwrap().to_vec()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn bad_old_message_sets_get_kafkas_errors_and_append_nothing() {
    let broker = Broker::start(&[]);
    let mut c = broker.connect();
    let good = message_set::encode(1, Compression::None, &messages(2, 1, "x")).unwrap();
    let mut flipped = good.to_vec();
    flipped[20] ^= 0xff; // inside the first message's CRC'd bytes
    let mut zstd_codec = good.to_vec();
    // Attributes of the first message say zstd (4), which magic 1 lacks;
    // the CRC is fixed up so the codec is what gets refused.
    zstd_codec[17] = 4;
    let end = 12 + i32::from_be_bytes([good[8], good[9], good[10], good[11]]) as usize;
    let crc = crc32_ieee(&zstd_codec[16..end]);
    zstd_codec[12..16].copy_from_slice(&crc.to_be_bytes());
    let cases: [(&str, Vec<u8>, ResponseError); 3] = [
        ("crc", flipped, ResponseError::CorruptMessage),
        (
            "truncated",
            good[..good.len() - 3].to_vec(),
            ResponseError::CorruptMessage,
        ),
        (
            "zstd in magic 1",
            zstd_codec,
            ResponseError::UnsupportedCompressionType,
        ),
    ];
    for (what, set, error) in cases {
        let resp = call_raw(&mut c, ApiKey::Produce, 2, produce_body(1, "bad", &set));
        assert_eq!(produce_answer(2, &resp), (error.code(), -1), "{what}");
    }
    // Nothing was appended; the connection still works.
    let resp = call_raw(&mut c, ApiKey::Fetch, 2, fetch_body(2, "bad", 0));
    let (error, hw, records) = fetch_answer(2, &resp);
    assert_eq!((error, hw, records.len()), (0, 0, 0));
    // A frame whose body does not parse closes the connection, as in Kafka.
    let frame = c.frame(ApiKey::Produce, 0, &[0, 1, 0, 0]);
    c.send_raw(&frame);
    assert!(c.closed_by_broker());
    // acks=0 in v0: no answer at all, and the records are appended.
    let mut c = broker.connect();
    // The topic first, as an old client's Metadata makes it: an acks=0
    // Produce that must wait for an auto-creation appends after it,
    // unordered with what the connection sends next.
    support::create_topic(&mut c, "quiet", 1);
    let set = message_set::encode(0, Compression::Gzip, &messages(2, 0, "q")).unwrap();
    let frame = c.frame(ApiKey::Produce, 0, &produce_body(0, "quiet", &set));
    c.send_raw(&frame);
    let resp = call_raw(&mut c, ApiKey::Fetch, 0, fetch_body(0, "quiet", 0));
    let (error, hw, _) = fetch_answer(0, &resp);
    assert_eq!((error, hw), (0, 2));
}

fn crc32_ieee(b: &[u8]) -> u32 {
    // CRC-32 (IEEE), the old message format's, bit by bit: small and only
    // for this test.
    let mut crc = !0u32;
    for &byte in b {
        crc ^= byte as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn old_admin_and_offset_versions() {
    let broker = Broker::start(&[]);
    let mut c = broker.connect();

    // CreateTopics v0 (no validate-only) and v1 (with), then a duplicate.
    let create = |c: &mut Client, version: i16, name: &str, validate: bool| {
        let mut w = Writer::new();
        w.array_len(1);
        w.string(name.as_bytes());
        w.i32(2);
        w.i16(1);
        w.array_len(0);
        w.array_len(1);
        w.string(b"retention.ms");
        w.string(b"3600000");
        w.i32(5000);
        if version == 1 {
            w.bool(validate);
        }
        let resp = call_raw(c, ApiKey::CreateTopics, version, w.freeze());
        let mut r = Reader::new(&resp);
        assert_eq!(r.array_len("topics", 1).unwrap(), 1);
        assert_eq!(r.str("name").unwrap(), name);
        let error = r.i16("error").unwrap();
        if version == 1 {
            r.nullable_string("message").unwrap();
        }
        r.finish("create answer").unwrap();
        error
    };
    assert_eq!(create(&mut c, 0, "adm", false), 0);
    assert_eq!(create(&mut c, 1, "dry", true), 0);
    assert_eq!(
        create(&mut c, 1, "adm", false),
        ResponseError::TopicAlreadyExists.code()
    );

    // DescribeConfigs v0: the override is not a default, the rest are.
    let mut w = Writer::new();
    w.array_len(1);
    w.i8(2);
    w.string(b"adm");
    w.array_len(2);
    w.string(b"retention.ms");
    w.string(b"segment.bytes");
    let resp = call_raw(&mut c, ApiKey::DescribeConfigs, 0, w.freeze());
    let mut r = Reader::new(&resp);
    r.i32("throttle").unwrap();
    assert_eq!(r.array_len("results", 1).unwrap(), 1);
    assert_eq!(r.i16("error").unwrap(), 0);
    r.nullable_string("message").unwrap();
    assert_eq!(r.i8("type").unwrap(), 2);
    r.str("name").unwrap();
    let mut seen = Vec::new();
    for _ in 0..r.array_len("configs", 1).unwrap() {
        let name = r.str("name").unwrap().to_string();
        let value = r.nullable_str("value").unwrap().map(str::to_string);
        r.bool("read only").unwrap();
        let default = r.bool("default").unwrap();
        r.bool("sensitive").unwrap();
        seen.push((name, value, default));
    }
    r.finish("describe configs answer").unwrap();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("retention.ms".into(), Some("3600000".into()), false),
            ("segment.bytes".into(), Some("1073741824".into()), true),
        ]
    );

    // Produce three records, then ListOffsets v0: latest and earliest.
    let set = message_set::encode(1, Compression::None, &messages(3, 1, "o")).unwrap();
    let resp = call_raw(&mut c, ApiKey::Produce, 2, produce_body(1, "adm", &set));
    assert_eq!(produce_answer(2, &resp), (0, 0));
    for (timestamp, want) in [(-1i64, vec![3i64]), (-2, vec![0])] {
        let mut w = Writer::new();
        w.i32(-1);
        w.array_len(1);
        w.string(b"adm");
        w.array_len(1);
        w.i32(0);
        w.i64(timestamp);
        w.i32(1);
        let resp = call_raw(&mut c, ApiKey::ListOffsets, 0, w.freeze());
        let mut r = Reader::new(&resp);
        r.array_len("topics", 1).unwrap();
        r.str("topic").unwrap();
        r.array_len("partitions", 1).unwrap();
        assert_eq!(r.i32("partition").unwrap(), 0);
        assert_eq!(r.i16("error").unwrap(), 0);
        let offsets: Vec<i64> = (0..r.array_len("offsets", 8).unwrap())
            .map(|_| r.i64("offset").unwrap())
            .collect();
        r.finish("list offsets answer").unwrap();
        assert_eq!(offsets, want, "timestamp {timestamp}");
    }

    // OffsetCommit v0 and v1 (simple commits), read back by OffsetFetch v0.
    for (version, offset) in [(0i16, 2i64), (1, 3)] {
        let mut w = Writer::new();
        w.string(b"old-group");
        if version == 1 {
            w.i32(-1);
            w.string(b"");
        }
        w.array_len(1);
        w.string(b"adm");
        w.array_len(1);
        w.i32(0);
        w.i64(offset);
        if version == 1 {
            w.i64(-1);
        }
        w.string(b"meta");
        let resp = call_raw(&mut c, ApiKey::OffsetCommit, version, w.freeze());
        let mut r = Reader::new(&resp);
        r.array_len("topics", 1).unwrap();
        r.str("topic").unwrap();
        r.array_len("partitions", 1).unwrap();
        r.i32("partition").unwrap();
        assert_eq!(r.i16("error").unwrap(), 0, "commit v{version}");
        r.finish("commit answer").unwrap();

        let mut w = Writer::new();
        w.string(b"old-group");
        w.array_len(1);
        w.string(b"adm");
        w.array_len(1);
        w.i32(0);
        let resp = call_raw(&mut c, ApiKey::OffsetFetch, 0, w.freeze());
        let mut r = Reader::new(&resp);
        r.array_len("topics", 1).unwrap();
        r.str("topic").unwrap();
        r.array_len("partitions", 1).unwrap();
        r.i32("partition").unwrap();
        assert_eq!(r.i64("offset").unwrap(), offset);
        assert_eq!(r.nullable_str("metadata").unwrap(), Some("meta"));
        assert_eq!(r.i16("error").unwrap(), 0);
        r.finish("offset fetch answer").unwrap();
    }

    // OffsetForLeaderEpoch v0/v1: the end of epoch 0 is the log end.
    for version in [0i16, 1] {
        let mut w = Writer::new();
        w.array_len(1);
        w.string(b"adm");
        w.array_len(1);
        w.i32(0);
        w.i32(0);
        let resp = call_raw(&mut c, ApiKey::OffsetForLeaderEpoch, version, w.freeze());
        let mut r = Reader::new(&resp);
        r.array_len("topics", 1).unwrap();
        r.str("topic").unwrap();
        r.array_len("partitions", 1).unwrap();
        assert_eq!(r.i16("error").unwrap(), 0);
        assert_eq!(r.i32("partition").unwrap(), 0);
        if version == 1 {
            assert_eq!(r.i32("leader epoch").unwrap(), 0);
        }
        assert_eq!(r.i64("end offset").unwrap(), 3);
        r.finish("leader epoch answer").unwrap();
    }

    // DescribeAcls v0: security is off, as for every version.
    let mut w = Writer::new();
    w.i8(1);
    w.nullable_string(None);
    w.nullable_string(None);
    w.nullable_string(None);
    w.i8(1);
    w.i8(1);
    let resp = call_raw(&mut c, ApiKey::DescribeAcls, 0, w.freeze());
    let mut r = Reader::new(&resp);
    r.i32("throttle").unwrap();
    assert_eq!(
        r.i16("error").unwrap(),
        ResponseError::SecurityDisabled.code()
    );

    // DescribeLogDirs v0 (all dirs) names the topic.
    let mut w = Writer::new();
    w.i32(-1);
    let resp = call_raw(&mut c, ApiKey::DescribeLogDirs, 0, w.freeze());
    assert!(resp.windows(3).any(|w| w == b"adm"));

    // DeleteTopics v0, then the topic is gone.
    let mut w = Writer::new();
    w.array_len(1);
    w.string(b"adm");
    w.i32(5000);
    let resp = call_raw(&mut c, ApiKey::DeleteTopics, 0, w.freeze());
    let mut r = Reader::new(&resp);
    assert_eq!(r.array_len("responses", 1).unwrap(), 1);
    assert_eq!(r.str("name").unwrap(), "adm");
    assert_eq!(r.i16("error").unwrap(), 0);
    r.finish("delete answer").unwrap();
    let resp = call_raw(&mut c, ApiKey::Fetch, 0, fetch_body(0, "adm", 0));
    let (error, _, _) = fetch_answer(0, &resp);
    assert_eq!(error, ResponseError::UnknownTopicOrPartition.code());
}

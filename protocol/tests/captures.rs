//! Request frames that real old clients sent (kafka-python 2.0.2, kcat
//! 1.7.1 / librdkafka 2.0.2, Sarama 1.22.1, kafka-go 0.2.1; see
//! `tests/captures/README.md`), decoded the way the broker decodes them.

use std::path::Path;

use bytes::{Buf, Bytes};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Decodable;
use karnak_protocol::legacy::{self, message_set};
use karnak_protocol::record_batch;

struct Frame {
    file: String,
    key: ApiKey,
    version: i16,
    body: Bytes,
}

fn frames() -> Vec<Frame> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/captures");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("tests/captures") {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "bin") {
            continue;
        }
        let mut b = Bytes::from(std::fs::read(&path).unwrap());
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        let size = b.get_i32() as usize;
        assert_eq!(size, b.len(), "{file}: size prefix");
        // Request header v1: api key, version, correlation id, client id.
        let key = ApiKey::try_from(b.get_i16()).unwrap();
        let version = b.get_i16();
        b.get_i32();
        let client_len = b.get_i16();
        if client_len > 0 {
            b.advance(client_len as usize);
        }
        out.push(Frame {
            file,
            key,
            version,
            body: b,
        });
    }
    out.sort_by(|a, b| a.file.cmp(&b.file));
    out
}

/// Every produced set holds k0..k3 = v0..v3, whatever the client, magic and
/// codec (magic-0 LZ4 with Kafka's broken header checksum included), and
/// converts to a v2 batch the broker's validation accepts.
#[test]
fn produce_captures_decode_to_the_four_records() {
    let mut seen = 0;
    for f in frames().iter().filter(|f| f.key == ApiKey::Produce) {
        let req = if f.version < 3 {
            legacy::produce::decode_request(&f.body, f.version).unwrap()
        } else {
            ProduceRequest::decode(&mut f.body.clone(), f.version).unwrap()
        };
        let t = &req.topic_data[0];
        assert_eq!(t.name.0.as_str(), "legacy", "{}", f.file);
        let records = t.partition_data[0].records.clone().unwrap();
        let set = message_set::decode(&records).unwrap_or_else(|e| panic!("{}: {e}", f.file));
        let kv: Vec<(Bytes, Bytes)> = set
            .messages
            .iter()
            .map(|m| (m.key.clone().unwrap(), m.value.clone().unwrap()))
            .collect();
        let want: Vec<(Bytes, Bytes)> = (0..4)
            .map(|i| (Bytes::from(format!("k{i}")), Bytes::from(format!("v{i}"))))
            .collect();
        assert_eq!(kv, want, "{}", f.file);
        assert_eq!(set.magic, if f.version == 2 { 1 } else { 0 }, "{}", f.file);
        let batch = message_set::to_batch(&set).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let summary = record_batch::validate_batches(&batch, &Default::default(), now)
            .unwrap_or_else(|e| panic!("{}: {e}", f.file));
        assert_eq!(summary.records, 4, "{}", f.file);
        seen += 1;
    }
    assert!(seen >= 30, "only {seen} produce captures");
}

#[test]
fn fetch_captures_decode_as_v4() {
    let mut seen = 0;
    for f in frames()
        .iter()
        .filter(|f| f.key == ApiKey::Fetch && f.version < 4)
    {
        let req = legacy::fetch::decode_request(&f.body, f.version)
            .unwrap_or_else(|e| panic!("{}: {e}", f.file));
        let t = &req.topics[0];
        assert_eq!(t.topic.0.as_str(), "legacy", "{}", f.file);
        assert_eq!(t.partitions[0].partition, 0, "{}", f.file);
        assert!(t.partitions[0].partition_max_bytes > 0, "{}", f.file);
        assert_eq!(req.isolation_level, 0);
        seen += 1;
    }
    assert!(seen >= 8, "only {seen} fetch captures");
}

/// The rewritten versions decode with the crate at their target version,
/// holding what the client sent.
#[test]
fn other_captures_upgrade_to_what_the_crate_decodes() {
    let mut seen = 0;
    for f in frames()
        .iter()
        .filter(|f| !matches!(f.key, ApiKey::Produce | ApiKey::Fetch))
    {
        let (mut body, version) = match legacy::upgrade_target(f.key, f.version) {
            Some(target) => (
                legacy::upgrade_request(f.key, f.version, &f.body)
                    .unwrap_or_else(|e| panic!("{}: {e}", f.file)),
                target,
            ),
            None => (f.body.clone(), f.version),
        };
        let what = format!("{} ({:?} v{} as v{version})", f.file, f.key, f.version);
        match f.key {
            ApiKey::ListOffsets => {
                let r = ListOffsetsRequest::decode(&mut body, version).unwrap();
                assert_eq!(r.topics[0].name.0.as_str(), "legacy", "{what}");
                let ts = r.topics[0].partitions[0].timestamp;
                assert!(ts == -1 || ts == -2, "{what}: {ts}");
            }
            ApiKey::OffsetCommit => {
                let r = OffsetCommitRequest::decode(&mut body, version).unwrap();
                assert_eq!(r.group_id.0.as_str(), "legacy-group", "{what}");
                let p = &r.topics[0].partitions[0];
                assert_eq!(p.committed_offset, 4, "{what}");
                assert_eq!(p.committed_metadata.as_deref(), Some("meta-4"), "{what}");
            }
            ApiKey::OffsetFetch => {
                let r = OffsetFetchRequest::decode(&mut body, version).unwrap();
                assert_eq!(r.group_id.0.as_str(), "legacy-group", "{what}");
            }
            ApiKey::Metadata => {
                MetadataRequest::decode(&mut body, version).unwrap();
            }
            ApiKey::CreateTopics => {
                let r = CreateTopicsRequest::decode(&mut body, version).unwrap();
                assert!(!r.topics.is_empty(), "{what}");
            }
            ApiKey::DeleteTopics => {
                let r = DeleteTopicsRequest::decode(&mut body, version).unwrap();
                assert!(!r.topic_names.is_empty(), "{what}");
            }
            ApiKey::DescribeConfigs => {
                let r = DescribeConfigsRequest::decode(&mut body, version).unwrap();
                assert!(!r.resources.is_empty(), "{what}");
                assert!(!r.include_synonyms, "{what}");
            }
            ApiKey::DescribeAcls => {
                DescribeAclsRequest::decode(&mut body, version).unwrap();
            }
            ApiKey::CreateAcls => {
                let r = CreateAclsRequest::decode(&mut body, version).unwrap();
                assert!(!r.creations.is_empty(), "{what}");
            }
            ApiKey::DeleteAcls => {
                let r = DeleteAclsRequest::decode(&mut body, version).unwrap();
                assert!(!r.filters.is_empty(), "{what}");
            }
            // Requests the old clients send that are not legacy (FindCoordinator
            // v0, ApiVersions v0, ...): captured on the way, nothing to check.
            _ => continue,
        }
        assert!(body.is_empty(), "{what}: {} bytes left", body.len());
        seen += 1;
    }
    assert!(seen >= 10, "only {seen} other captures");
}

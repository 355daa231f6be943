//! Fetch v0-3: no isolation level (uncommitted reads), no sessions, a
//! response without last stable offset or aborted transactions, and
//! records as message sets (magic 0 for v0-1, magic 1 for v2-3).

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::LegacyError;
use super::wire::{Reader, Writer};

/// The message format a fetch version reads.
pub fn magic_for(version: i16) -> i8 {
    if version >= 2 { 1 } else { 0 }
}

/// Decodes a v0-3 body as the v4 request with the same meaning: no
/// response size limit before v3 (Kafka used `Int.MaxValue`),
/// read_uncommitted, no fetch session.
pub fn decode_request(body: &[u8], version: i16) -> Result<FetchRequest, LegacyError> {
    if !(0..=3).contains(&version) {
        return Err(LegacyError::NotLegacy {
            api: kafka_protocol::messages::ApiKey::Fetch,
            version,
        });
    }
    let mut r = Reader::new(body);
    let replica_id = r.i32("replica id")?;
    let max_wait_ms = r.i32("max wait")?;
    let min_bytes = r.i32("min bytes")?;
    let max_bytes = if version >= 3 {
        r.i32("max bytes")?
    } else {
        i32::MAX
    };
    let n = r.array_len("topics", 6)?;
    let mut topics = Vec::with_capacity(n);
    for _ in 0..n {
        let name = r.str("topic")?.to_string();
        let np = r.array_len("partitions", 16)?;
        let mut partitions = Vec::with_capacity(np);
        for _ in 0..np {
            partitions.push(
                FetchPartition::default()
                    .with_partition(r.i32("partition")?)
                    .with_fetch_offset(r.i64("fetch offset")?)
                    .with_partition_max_bytes(r.i32("partition max bytes")?),
            );
        }
        topics.push(
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(name)))
                .with_partitions(partitions),
        );
    }
    r.finish("fetch request")?;
    Ok(FetchRequest::default()
        .with_replica_id(BrokerId(replica_id))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(min_bytes)
        .with_max_bytes(max_bytes)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(topics))
}

/// One partition of a v0-3 answer, records already down-converted.
pub struct LegacyPartition {
    pub partition: i32,
    pub error_code: i16,
    pub high_watermark: i64,
    pub records: Bytes,
}

pub struct LegacyTopic {
    pub name: Bytes,
    pub partitions: Vec<LegacyPartition>,
}

/// Encodes a v0-3 answer (v1 added the throttle time in front).
pub fn encode_response(topics: &[LegacyTopic], version: i16) -> Bytes {
    let mut w = Writer::new();
    if version >= 1 {
        w.i32(0);
    }
    w.array_len(topics.len());
    for t in topics {
        w.string(&t.name);
        w.array_len(t.partitions.len());
        for p in &t.partitions {
            w.i32(p.partition);
            w.i16(p.error_code);
            w.i64(p.high_watermark);
            w.nullable_bytes(Some(&p.records));
        }
    }
    w.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v0_and_v3_requests() {
        for version in [0i16, 3] {
            let mut w = Writer::new();
            w.i32(-1);
            w.i32(100);
            w.i32(1);
            if version == 3 {
                w.i32(1 << 20);
            }
            w.array_len(1);
            w.string(b"legacy");
            w.array_len(1);
            w.i32(0);
            w.i64(7);
            w.i32(65536);
            let body = w.freeze();
            let r = decode_request(&body, version).unwrap();
            assert_eq!(r.max_bytes, if version == 3 { 1 << 20 } else { i32::MAX });
            assert_eq!(r.isolation_level, 0);
            assert_eq!(r.session_epoch, -1);
            let p = &r.topics[0].partitions[0];
            assert_eq!(
                (p.partition, p.fetch_offset, p.partition_max_bytes),
                (0, 7, 65536)
            );
            for cut in 0..body.len() {
                assert!(decode_request(&body[..cut], version).is_err());
            }
        }
    }

    #[test]
    fn response_layout() {
        let topics = [LegacyTopic {
            name: Bytes::from_static(b"t"),
            partitions: vec![LegacyPartition {
                partition: 0,
                error_code: 0,
                high_watermark: 3,
                records: Bytes::from_static(b"xyz"),
            }],
        }];
        let v0 = encode_response(&topics, 0);
        assert_eq!(v0.len(), 4 + 3 + 4 + 4 + 2 + 8 + 4 + 3);
        assert_eq!(encode_response(&topics, 1).len(), v0.len() + 4);
    }
}

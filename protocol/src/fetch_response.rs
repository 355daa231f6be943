//! A Fetch response encoder that leaves each partition's records as a region
//! the caller supplies (a file slice), so the connection can write the framing
//! from memory and `sendfile(2)` the records straight from the segment.
//!
//! Field order and versions follow Kafka's FetchResponse schema (v4-v17);
//! the tests check the output against the `kafka-protocol` decoder.

use bytes::{BufMut, Bytes, BytesMut};

/// A piece of an encoded response: bytes from memory, or a records region.
#[derive(Debug)]
pub enum Part<R> {
    Bytes(Bytes),
    Region(R),
}

#[derive(Debug)]
pub struct AbortedTransaction {
    pub producer_id: i64,
    pub first_offset: i64,
}

#[derive(Debug)]
pub struct FetchPartition<R> {
    pub partition_index: i32,
    pub error_code: i16,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    pub aborted_transactions: Option<Vec<AbortedTransaction>>,
    /// The records region and its length in bytes; `None` sends empty records.
    pub records: Option<(R, usize)>,
    /// KIP-951 (v12+, a tagged field): the leader and leader epoch this
    /// broker knows, sent with NOT_LEADER_OR_FOLLOWER or FENCED_LEADER_EPOCH.
    pub current_leader: Option<(i32, i32)>,
}

/// A broker's address (KIP-951's NodeEndpoints, v16+): where a
/// `current_leader` can be reached without a Metadata request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEndpoint {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

#[derive(Debug)]
pub struct FetchTopic<R> {
    pub name: Bytes,
    pub topic_id: [u8; 16],
    pub partitions: Vec<FetchPartition<R>>,
}

#[derive(Debug)]
pub struct FetchResponseBody<R> {
    pub throttle_time_ms: i32,
    pub error_code: i16,
    pub session_id: i32,
    pub topics: Vec<FetchTopic<R>>,
    pub node_endpoints: Vec<NodeEndpoint>,
}

fn put_uvarint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

fn put_compact_str(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => {
            put_uvarint(buf, s.len() as u64 + 1);
            buf.put_slice(s.as_bytes());
        }
        None => put_uvarint(buf, 0),
    }
}

/// One tagged field: its tag, its size, then what `write` puts.
fn put_tagged(buf: &mut BytesMut, tag: u64, write: impl FnOnce(&mut BytesMut)) {
    let mut field = BytesMut::new();
    write(&mut field);
    put_uvarint(buf, tag);
    put_uvarint(buf, field.len() as u64);
    buf.put_slice(&field);
}

fn put_array_len(buf: &mut BytesMut, flexible: bool, len: Option<usize>) {
    match (flexible, len) {
        (true, Some(n)) => put_uvarint(buf, n as u64 + 1),
        (true, None) => put_uvarint(buf, 0),
        (false, Some(n)) => buf.put_i32(n as i32),
        (false, None) => buf.put_i32(-1),
    }
}

impl<R> FetchResponseBody<R> {
    /// Encodes the body for `version` (4..=17). Returns the parts in wire
    /// order and their total length.
    pub fn encode(self, version: i16) -> (Vec<Part<R>>, usize) {
        debug_assert!((4..=17).contains(&version));
        let flexible = version >= 12;
        let mut parts = Vec::new();
        let mut total = 0usize;
        let mut buf = BytesMut::with_capacity(256);

        buf.put_i32(self.throttle_time_ms);
        if version >= 7 {
            buf.put_i16(self.error_code);
            buf.put_i32(self.session_id);
        }
        put_array_len(&mut buf, flexible, Some(self.topics.len()));
        for topic in self.topics {
            if version < 13 {
                if flexible {
                    put_uvarint(&mut buf, topic.name.len() as u64 + 1);
                } else {
                    buf.put_i16(topic.name.len() as i16);
                }
                buf.put_slice(&topic.name);
            } else {
                buf.put_slice(&topic.topic_id);
            }
            put_array_len(&mut buf, flexible, Some(topic.partitions.len()));
            for p in topic.partitions {
                buf.put_i32(p.partition_index);
                buf.put_i16(p.error_code);
                buf.put_i64(p.high_watermark);
                buf.put_i64(p.last_stable_offset);
                if version >= 5 {
                    buf.put_i64(p.log_start_offset);
                }
                let aborted = p.aborted_transactions;
                put_array_len(&mut buf, flexible, aborted.as_ref().map(Vec::len));
                for a in aborted.iter().flatten() {
                    buf.put_i64(a.producer_id);
                    buf.put_i64(a.first_offset);
                    if flexible {
                        put_uvarint(&mut buf, 0);
                    }
                }
                if version >= 11 {
                    buf.put_i32(-1); // preferred read replica
                }
                let len = p.records.as_ref().map_or(0, |r| r.1);
                if flexible {
                    put_uvarint(&mut buf, len as u64 + 1);
                } else {
                    buf.put_i32(len as i32);
                }
                if let Some((region, len)) = p.records.filter(|r| r.1 > 0) {
                    total += buf.len() + len;
                    parts.push(Part::Bytes(buf.split().freeze()));
                    parts.push(Part::Region(region));
                }
                if flexible {
                    // Partition tagged fields: CurrentLeader is tag 1.
                    match p.current_leader {
                        Some((leader, epoch)) => {
                            put_uvarint(&mut buf, 1);
                            put_tagged(&mut buf, 1, |f| {
                                f.put_i32(leader);
                                f.put_i32(epoch);
                                put_uvarint(f, 0);
                            });
                        }
                        None => put_uvarint(&mut buf, 0),
                    }
                }
            }
            if flexible {
                put_uvarint(&mut buf, 0); // topic tagged fields
            }
        }
        if flexible {
            // Response tagged fields: NodeEndpoints (v16+) is tag 0.
            if version >= 16 && !self.node_endpoints.is_empty() {
                put_uvarint(&mut buf, 1);
                put_tagged(&mut buf, 0, |f| {
                    put_uvarint(f, self.node_endpoints.len() as u64 + 1);
                    for n in &self.node_endpoints {
                        f.put_i32(n.node_id);
                        put_compact_str(f, Some(&n.host));
                        f.put_i32(n.port);
                        put_compact_str(f, n.rack.as_deref());
                        put_uvarint(f, 0);
                    }
                });
            } else {
                put_uvarint(&mut buf, 0);
            }
        }
        total += buf.len();
        parts.push(Part::Bytes(buf.freeze()));
        (parts, total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::FetchResponse;
    use kafka_protocol::protocol::Decodable;

    fn sample(records: &[u8]) -> FetchResponseBody<Bytes> {
        let r = Bytes::copy_from_slice(records);
        FetchResponseBody {
            throttle_time_ms: 0,
            error_code: 0,
            session_id: 0,
            node_endpoints: vec![NodeEndpoint {
                node_id: 2,
                host: "broker-2".into(),
                port: 9092,
                rack: Some("r1".into()),
            }],
            topics: vec![FetchTopic {
                name: Bytes::from_static(b"orders"),
                topic_id: [7; 16],
                partitions: vec![
                    FetchPartition {
                        partition_index: 0,
                        error_code: 0,
                        high_watermark: 42,
                        last_stable_offset: 42,
                        log_start_offset: 0,
                        aborted_transactions: None,
                        records: Some((r.clone(), r.len())),
                        current_leader: None,
                    },
                    FetchPartition {
                        partition_index: 1,
                        error_code: 1,
                        high_watermark: 5,
                        last_stable_offset: 5,
                        log_start_offset: 2,
                        aborted_transactions: Some(vec![AbortedTransaction {
                            producer_id: 9,
                            first_offset: 3,
                        }]),
                        records: None,
                        current_leader: Some((2, 7)),
                    },
                ],
            }],
        }
    }

    #[test]
    fn matches_the_reference_decoder_for_every_version() {
        let payload = b"not-really-batches-but-opaque-here";
        for version in 4..=17i16 {
            let (parts, total) = sample(payload).encode(version);
            let mut wire = BytesMut::new();
            for p in parts {
                match p {
                    Part::Bytes(b) | Part::Region(b) => wire.put_slice(&b),
                }
            }
            assert_eq!(wire.len(), total, "v{version}");
            let decoded = FetchResponse::decode(&mut wire.freeze(), version).unwrap();
            let t = &decoded.responses[0];
            if version < 13 {
                assert_eq!(t.topic.as_str(), "orders");
            } else {
                assert_eq!(t.topic_id.as_bytes(), &[7; 16]);
            }
            assert_eq!(t.partitions[0].records.as_deref(), Some(&payload[..]));
            assert_eq!(t.partitions[0].high_watermark, 42);
            assert_eq!(t.partitions[1].error_code, 1);
            assert_eq!(t.partitions[1].records.as_deref(), Some(&b""[..]));
            assert_eq!(
                t.partitions[1].aborted_transactions.as_ref().unwrap()[0].producer_id,
                9
            );
            if version >= 5 {
                assert_eq!(t.partitions[1].log_start_offset, 2);
            }
            let hint = &t.partitions[1].current_leader;
            if version >= 12 {
                assert_eq!((hint.leader_id.0, hint.leader_epoch), (2, 7), "v{version}");
            }
            assert_eq!(t.partitions[0].current_leader.leader_id.0, -1);
            if version >= 16 {
                let n = &decoded.node_endpoints[0];
                assert_eq!(
                    (n.node_id.0, n.host.as_str(), n.port, n.rack.as_deref()),
                    (2, "broker-2", 9092, Some("r1"))
                );
            } else {
                assert!(decoded.node_endpoints.is_empty());
            }
        }
    }

    #[test]
    fn records_are_left_as_a_separate_region() {
        let (parts, _) = sample(b"abc").encode(12);
        let regions = parts
            .iter()
            .filter(|p| matches!(p, Part::Region(_)))
            .count();
        assert_eq!(regions, 1);
    }
}

//! Old request bodies rewritten to the nearest version the crate decodes,
//! and answers rewritten back. Field lists follow Kafka's message schemas
//! (clients/src/main/resources/common/message/*.json, as of Kafka 3.9).

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;

use super::LegacyError;
use super::wire::{Reader, Writer};

/// Reads from the old body and writes the new one, field by field.
struct Copy<'a> {
    r: Reader<'a>,
    w: Writer,
}

impl<'a> Copy<'a> {
    fn new(body: &'a [u8]) -> Self {
        Copy {
            r: Reader::new(body),
            w: Writer::new(),
        }
    }
    fn i8(&mut self, what: &'static str) -> Result<i8, LegacyError> {
        let v = self.r.i8(what)?;
        self.w.i8(v);
        Ok(v)
    }
    fn i16(&mut self, what: &'static str) -> Result<i16, LegacyError> {
        let v = self.r.i16(what)?;
        self.w.i16(v);
        Ok(v)
    }
    fn i32(&mut self, what: &'static str) -> Result<i32, LegacyError> {
        let v = self.r.i32(what)?;
        self.w.i32(v);
        Ok(v)
    }
    fn i64(&mut self, what: &'static str) -> Result<i64, LegacyError> {
        let v = self.r.i64(what)?;
        self.w.i64(v);
        Ok(v)
    }
    fn string(&mut self, what: &'static str) -> Result<(), LegacyError> {
        let v = self.r.nullable_string(what)?;
        self.w.nullable_string(v);
        Ok(())
    }
    /// An array count, copied; elements are at least `min` bytes.
    fn array(&mut self, what: &'static str, min: usize) -> Result<usize, LegacyError> {
        let n = self.r.array_len(what, min)?;
        self.w.array_len(n);
        Ok(n)
    }
    fn nullable_array(
        &mut self,
        what: &'static str,
        min: usize,
    ) -> Result<Option<usize>, LegacyError> {
        let n = self.r.nullable_array_len(what, min)?;
        match n {
            Some(n) => self.w.array_len(n),
            None => self.w.i32(-1),
        }
        Ok(n)
    }
    fn done(self, what: &'static str) -> Result<Bytes, LegacyError> {
        self.r.finish(what)?;
        Ok(self.w.freeze())
    }
}

/// ACL filters and creations: v1 added a pattern type after the resource
/// name; v0 meant a literal name (PatternType LITERAL = 3).
fn acl_entry(c: &mut Copy) -> Result<(), LegacyError> {
    const LITERAL: i8 = 3;
    c.i8("resource type")?;
    c.string("resource name")?;
    c.w.i8(LITERAL);
    c.string("principal")?;
    c.string("host")?;
    c.i8("operation")?;
    c.i8("permission type")?;
    Ok(())
}

/// Rewrites an old request body to [`super::upgrade_target`]'s version.
pub fn upgrade_request(api: ApiKey, version: i16, body: &[u8]) -> Result<Bytes, LegacyError> {
    use ApiKey as K;
    let mut c = Copy::new(body);
    match (api, version) {
        // v0 asked for up to MaxNumOffsets offsets; v1 answers one, which is
        // what every v0 client asks for in practice (see downgrade).
        (K::ListOffsets, 0) => {
            c.i32("replica id")?;
            for _ in 0..c.array("topics", 6)? {
                c.string("topic")?;
                for _ in 0..c.array("partitions", 16)? {
                    c.i32("partition")?;
                    c.i64("timestamp")?;
                    c.r.i32("max num offsets")?;
                }
            }
        }
        // v0 and v1 commits are simple commits (no generation). v1's
        // per-partition commit timestamp is dropped: retention is the
        // broker's `offsets.retention.minutes`, as it is for v2+.
        (K::OffsetCommit, 0..=1) => {
            c.string("group id")?;
            if version == 1 {
                c.i32("generation id")?;
                c.string("member id")?;
            } else {
                c.w.i32(-1);
                c.w.string(b"");
            }
            c.w.i64(-1); // retention time: the broker's
            for _ in 0..c.array("topics", 6)? {
                c.string("topic")?;
                for _ in 0..c.array("partitions", 14)? {
                    c.i32("partition")?;
                    c.i64("offset")?;
                    if version == 1 {
                        c.r.i64("commit timestamp")?;
                    }
                    c.string("metadata")?;
                }
            }
        }
        // The same bytes; v0 read offsets from ZooKeeper in Kafka, here
        // both read the group coordinator's.
        (K::OffsetFetch, 0) | (K::DescribeLogDirs, 0) => {
            return Ok(Bytes::copy_from_slice(body));
        }
        (K::CreateTopics, 0..=1) => {
            for _ in 0..c.array("topics", 16)? {
                c.string("name")?;
                c.i32("partitions")?;
                c.i16("replication factor")?;
                for _ in 0..c.array("assignments", 8)? {
                    c.i32("partition")?;
                    for _ in 0..c.array("broker ids", 4)? {
                        c.i32("broker id")?;
                    }
                }
                for _ in 0..c.array("configs", 4)? {
                    c.string("config name")?;
                    c.string("config value")?;
                }
            }
            c.i32("timeout")?;
            if version == 1 {
                c.i8("validate only")?;
            } else {
                c.w.bool(false);
            }
        }
        (K::DeleteTopics, 0) => return Ok(Bytes::copy_from_slice(body)),
        (K::DescribeConfigs, 0) => {
            for _ in 0..c.array("resources", 7)? {
                c.i8("resource type")?;
                c.string("resource name")?;
                if let Some(n) = c.nullable_array("config keys", 2)? {
                    for _ in 0..n {
                        c.string("config key")?;
                    }
                }
            }
            c.w.bool(false); // include synonyms
        }
        (K::OffsetForLeaderEpoch, 0..=1) => {
            for _ in 0..c.array("topics", 6)? {
                c.string("topic")?;
                for _ in 0..c.array("partitions", 8)? {
                    c.i32("partition")?;
                    c.w.i32(-1); // current leader epoch: not known to v0/v1
                    c.i32("leader epoch")?;
                }
            }
        }
        (K::DescribeAcls, 0) => {
            c.i8("resource type")?;
            c.string("resource name")?;
            c.w.i8(3); // LITERAL
            c.string("principal")?;
            c.string("host")?;
            c.i8("operation")?;
            c.i8("permission type")?;
        }
        (K::CreateAcls, 0) => {
            for _ in 0..c.array("creations", 10)? {
                acl_entry(&mut c)?;
            }
        }
        (K::DeleteAcls, 0) => {
            for _ in 0..c.array("filters", 10)? {
                acl_entry(&mut c)?;
            }
        }
        _ => return Err(LegacyError::NotLegacy { api, version }),
    }
    c.done("request")
}

/// Rewrites an answer in [`super::upgrade_target`]'s version into
/// `version`'s format.
pub fn downgrade_response(api: ApiKey, version: i16, body: &[u8]) -> Result<Bytes, LegacyError> {
    use ApiKey as K;
    let mut c = Copy::new(body);
    match (api, version) {
        // v1 partitions carry (timestamp, offset); v0 a list of offsets,
        // empty where v1 found none (-1).
        (K::ListOffsets, 0) => {
            for _ in 0..c.array("topics", 6)? {
                c.string("topic")?;
                for _ in 0..c.array("partitions", 22)? {
                    c.i32("partition")?;
                    c.i16("error code")?;
                    c.r.i64("timestamp")?;
                    let offset = c.r.i64("offset")?;
                    if offset >= 0 {
                        c.w.array_len(1);
                        c.w.i64(offset);
                    } else {
                        c.w.array_len(0);
                    }
                }
            }
        }
        // v0-v2 answers have one format.
        (K::OffsetCommit, 0..=1) | (K::OffsetFetch, 0) | (K::DescribeLogDirs, 0) => {
            return Ok(Bytes::copy_from_slice(body));
        }
        // v2: throttle time, then (name, error, message); v1 has no
        // throttle time, v0 no message either.
        (K::CreateTopics, 0..=1) => {
            c.r.i32("throttle time")?;
            for _ in 0..c.array("topics", 6)? {
                c.string("name")?;
                c.i16("error code")?;
                let message = c.r.nullable_string("error message")?;
                if version == 1 {
                    c.w.nullable_string(message);
                }
            }
        }
        (K::DeleteTopics, 0) => {
            c.r.i32("throttle time")?;
            for _ in 0..c.array("responses", 4)? {
                c.string("name")?;
                c.i16("error code")?;
            }
        }
        // v1 has a source and synonyms where v0 has `is_default`.
        (K::DescribeConfigs, 0) => {
            const DEFAULT_CONFIG: i8 = 5;
            c.i32("throttle time")?;
            for _ in 0..c.array("results", 9)? {
                c.i16("error code")?;
                c.string("error message")?;
                c.i8("resource type")?;
                c.string("resource name")?;
                for _ in 0..c.array("configs", 10)? {
                    c.string("name")?;
                    c.string("value")?;
                    c.i8("read only")?;
                    let source = c.r.i8("config source")?;
                    c.w.bool(source == DEFAULT_CONFIG);
                    c.i8("is sensitive")?;
                    for _ in 0..c.r.array_len("synonyms", 5)? {
                        c.r.nullable_string("synonym name")?;
                        c.r.nullable_string("synonym value")?;
                        c.r.i8("synonym source")?;
                    }
                }
            }
        }
        // v2: throttle time first; v0 has no leader epoch per partition.
        (K::OffsetForLeaderEpoch, 0..=1) => {
            c.r.i32("throttle time")?;
            for _ in 0..c.array("topics", 6)? {
                c.string("topic")?;
                for _ in 0..c.array("partitions", 18)? {
                    c.i16("error code")?;
                    c.i32("partition")?;
                    let epoch = c.r.i32("leader epoch")?;
                    if version == 1 {
                        c.w.i32(epoch);
                    }
                    c.i64("end offset")?;
                }
            }
        }
        // v1 added a pattern type to each ACL binding in the answers.
        (K::DescribeAcls, 0) => {
            c.i32("throttle time")?;
            c.i16("error code")?;
            c.string("error message")?;
            for _ in 0..c.array("resources", 8)? {
                c.i8("resource type")?;
                c.string("resource name")?;
                c.r.i8("pattern type")?;
                for _ in 0..c.array("acls", 8)? {
                    c.string("principal")?;
                    c.string("host")?;
                    c.i8("operation")?;
                    c.i8("permission type")?;
                }
            }
        }
        (K::CreateAcls, 0) => return Ok(Bytes::copy_from_slice(body)),
        (K::DeleteAcls, 0) => {
            c.i32("throttle time")?;
            for _ in 0..c.array("filter results", 8)? {
                c.i16("error code")?;
                c.string("error message")?;
                for _ in 0..c.array("matching acls", 14)? {
                    c.i16("error code")?;
                    c.string("error message")?;
                    c.i8("resource type")?;
                    c.string("resource name")?;
                    c.r.i8("pattern type")?;
                    c.string("principal")?;
                    c.string("host")?;
                    c.i8("operation")?;
                    c.i8("permission type")?;
                }
            }
        }
        _ => return Err(LegacyError::NotLegacy { api, version }),
    }
    c.done("response")
}

#[cfg(test)]
mod tests {
    use super::super::upgrade_target;
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

    fn encode<M: Encodable>(m: &M, v: i16) -> Bytes {
        let mut b = BytesMut::new();
        m.encode(&mut b, v).unwrap();
        b.freeze()
    }

    /// Hand-written v0 bodies (Kafka's schemas), upgraded, decode with the
    /// crate at the target version with the meaning the old version had.
    #[test]
    fn old_requests_decode_as_their_upgrade() {
        // ListOffsets v0: replica -1, [legacy [0: latest, max 1]].
        let mut w = Writer::new();
        w.i32(-1);
        w.array_len(1);
        w.string(b"legacy");
        w.array_len(1);
        w.i32(0);
        w.i64(-1);
        w.i32(1);
        let up = upgrade_request(ApiKey::ListOffsets, 0, &w.freeze()).unwrap();
        let r = ListOffsetsRequest::decode(&mut up.clone(), 1).unwrap();
        assert_eq!(r.topics[0].name.0.as_str(), "legacy");
        assert_eq!(r.topics[0].partitions[0].timestamp, -1);

        // OffsetCommit v0: group g, [t [2 @ 42 "m"]].
        let mut w = Writer::new();
        w.string(b"g");
        w.array_len(1);
        w.string(b"t");
        w.array_len(1);
        w.i32(2);
        w.i64(42);
        w.string(b"m");
        let up = upgrade_request(ApiKey::OffsetCommit, 0, &w.freeze()).unwrap();
        let r = OffsetCommitRequest::decode(&mut up.clone(), 2).unwrap();
        assert_eq!(r.group_id.0.as_str(), "g");
        assert_eq!(r.generation_id_or_member_epoch, -1);
        let p = &r.topics[0].partitions[0];
        assert_eq!((p.partition_index, p.committed_offset), (2, 42));
        assert_eq!(p.committed_metadata.as_deref(), Some("m"));

        // CreateTopics v0: [t, 3 partitions, rf 1, no assignments, one config], 5000 ms.
        let mut w = Writer::new();
        w.array_len(1);
        w.string(b"t");
        w.i32(3);
        w.i16(1);
        w.array_len(0);
        w.array_len(1);
        w.string(b"cleanup.policy");
        w.string(b"compact");
        w.i32(5000);
        let up = upgrade_request(ApiKey::CreateTopics, 0, &w.freeze()).unwrap();
        let r = CreateTopicsRequest::decode(&mut up.clone(), 2).unwrap();
        assert_eq!(r.topics[0].num_partitions, 3);
        assert!(!r.validate_only);
        assert_eq!(r.topics[0].configs[0].value.as_deref(), Some("compact"));

        // OffsetForLeaderEpoch v1: [t [0 epoch 5]].
        let mut w = Writer::new();
        w.array_len(1);
        w.string(b"t");
        w.array_len(1);
        w.i32(0);
        w.i32(5);
        let up = upgrade_request(ApiKey::OffsetForLeaderEpoch, 1, &w.freeze()).unwrap();
        let r = OffsetForLeaderEpochRequest::decode(&mut up.clone(), 2).unwrap();
        let p = &r.topics[0].partitions[0];
        assert_eq!((p.leader_epoch, p.current_leader_epoch), (5, -1));
    }

    #[test]
    fn answers_downgrade_to_the_old_formats() {
        // ListOffsets v1 -> v0.
        let resp = ListOffsetsResponse::default().with_topics(vec![
            list_offsets_response::ListOffsetsTopicResponse::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(vec![
                    list_offsets_response::ListOffsetsPartitionResponse::default()
                        .with_partition_index(0)
                        .with_timestamp(-1)
                        .with_offset(17),
                ]),
        ]);
        let down = downgrade_response(ApiKey::ListOffsets, 0, &encode(&resp, 1)).unwrap();
        let mut r = Reader::new(&down);
        assert_eq!(r.array_len("topics", 1).unwrap(), 1);
        assert_eq!(r.str("t").unwrap(), "t");
        assert_eq!(r.array_len("p", 1).unwrap(), 1);
        assert_eq!(r.i32("p").unwrap(), 0);
        assert_eq!(r.i16("e").unwrap(), 0);
        assert_eq!(r.array_len("o", 1).unwrap(), 1);
        assert_eq!(r.i64("o").unwrap(), 17);
        r.finish("all").unwrap();

        // DescribeConfigs v1 -> v0: is_default from the source.
        use describe_configs_response::*;
        let resp = DescribeConfigsResponse::default().with_results(vec![
            DescribeConfigsResult::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("t"))
                .with_configs(vec![
                    DescribeConfigsResourceResult::default()
                        .with_name(StrBytes::from_static_str("retention.ms"))
                        .with_value(Some(StrBytes::from_static_str("1000")))
                        .with_config_source(1),
                    DescribeConfigsResourceResult::default()
                        .with_name(StrBytes::from_static_str("segment.ms"))
                        .with_value(Some(StrBytes::from_static_str("604800000")))
                        .with_config_source(5)
                        .with_synonyms(vec![DescribeConfigsSynonym::default()]),
                ]),
        ]);
        let down = downgrade_response(ApiKey::DescribeConfigs, 0, &encode(&resp, 1)).unwrap();
        let mut r = Reader::new(&down);
        r.i32("throttle").unwrap();
        r.array_len("results", 1).unwrap();
        r.i16("error").unwrap();
        r.nullable_string("message").unwrap();
        r.i8("type").unwrap();
        r.str("name").unwrap();
        assert_eq!(r.array_len("configs", 1).unwrap(), 2);
        let mut defaults = vec![];
        for _ in 0..2 {
            r.str("name").unwrap();
            r.nullable_string("value").unwrap();
            r.bool("read only").unwrap();
            defaults.push(r.bool("default").unwrap());
            r.bool("sensitive").unwrap();
        }
        assert_eq!(defaults, vec![false, true]);
        r.finish("all").unwrap();
    }

    #[test]
    fn truncated_and_forged_bodies_are_errors() {
        let apis = [
            (ApiKey::ListOffsets, 0),
            (ApiKey::OffsetCommit, 0),
            (ApiKey::OffsetCommit, 1),
            (ApiKey::CreateTopics, 0),
            (ApiKey::CreateTopics, 1),
            (ApiKey::DescribeConfigs, 0),
            (ApiKey::OffsetForLeaderEpoch, 0),
            (ApiKey::DescribeAcls, 0),
            (ApiKey::CreateAcls, 0),
            (ApiKey::DeleteAcls, 0),
        ];
        for (api, v) in apis {
            assert!(upgrade_target(api, v).is_some());
            // Counts of 2^31-1 with nothing behind them.
            let forged = [0x7f, 0xff, 0xff, 0xff].repeat(3);
            assert!(upgrade_request(api, v, &forged).is_err(), "{api:?} v{v}");
            assert!(upgrade_request(api, v, &[]).is_err(), "{api:?} v{v}");
        }
        assert!(upgrade_request(ApiKey::Produce, 0, &[]).is_err());
    }
}

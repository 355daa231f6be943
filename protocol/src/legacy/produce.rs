//! Produce v0-2: the v3 request without a transactional id, records as
//! message sets (converted by the handler with [`super::message_set`]).
//! Answers: v0 has no throttle time, v1 puts it last, v2 adds each
//! partition's log-append time.

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::LegacyError;
use super::wire::{Reader, Writer};

/// Decodes a v0-2 body; each partition's records stay the bytes sent.
pub fn decode_request(body: &Bytes, version: i16) -> Result<ProduceRequest, LegacyError> {
    if !(0..=2).contains(&version) {
        return Err(LegacyError::NotLegacy {
            api: kafka_protocol::messages::ApiKey::Produce,
            version,
        });
    }
    let mut r = Reader::new(body);
    let acks = r.i16("acks")?;
    let timeout_ms = r.i32("timeout")?;
    let n = r.array_len("topics", 6)?;
    let mut topic_data = Vec::with_capacity(n);
    for _ in 0..n {
        let name = r.str("topic")?;
        let name = TopicName(StrBytes::from_string(name.to_string()));
        let np = r.array_len("partitions", 8)?;
        let mut partition_data = Vec::with_capacity(np);
        for _ in 0..np {
            let index = r.i32("partition")?;
            let records = r.nullable_bytes("records")?.map(|s| body.slice_ref(s));
            partition_data.push(
                PartitionProduceData::default()
                    .with_index(index)
                    .with_records(records),
            );
        }
        topic_data.push(
            TopicProduceData::default()
                .with_name(name)
                .with_partition_data(partition_data),
        );
    }
    r.finish("produce request")?;
    Ok(ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(timeout_ms)
        .with_topic_data(topic_data))
}

/// Encodes the answer in v0-2's format.
pub fn encode_response(resp: &ProduceResponse, version: i16) -> Bytes {
    let mut w = Writer::new();
    w.array_len(resp.responses.len());
    for t in &resp.responses {
        w.string(t.name.0.as_bytes());
        w.array_len(t.partition_responses.len());
        for p in &t.partition_responses {
            w.i32(p.index);
            w.i16(p.error_code);
            w.i64(p.base_offset);
            if version >= 2 {
                w.i64(p.log_append_time_ms);
            }
        }
    }
    if version >= 1 {
        w.i32(resp.throttle_time_ms);
    }
    w.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::produce_response::{
        PartitionProduceResponse, TopicProduceResponse,
    };

    fn v0_body(records: &[u8]) -> Bytes {
        let mut w = Writer::new();
        w.i16(1);
        w.i32(1500);
        w.array_len(1);
        w.string(b"legacy");
        w.array_len(1);
        w.i32(0);
        w.nullable_bytes(Some(records));
        w.freeze()
    }

    #[test]
    fn request_keeps_the_records_bytes() {
        let body = v0_body(b"not-a-set");
        let r = decode_request(&body, 0).unwrap();
        assert_eq!((r.acks, r.timeout_ms), (1, 1500));
        assert_eq!(r.transactional_id, None);
        let p = &r.topic_data[0].partition_data[0];
        assert_eq!(p.records.as_deref(), Some(&b"not-a-set"[..]));
        // Every truncation is an error, never a panic.
        for cut in 0..body.len() {
            assert!(decode_request(&body.slice(..cut), 1).is_err(), "cut {cut}");
        }
    }

    #[test]
    fn answers_per_version() {
        let resp = ProduceResponse::default()
            .with_throttle_time_ms(0)
            .with_responses(vec![
                TopicProduceResponse::default()
                    .with_name(TopicName(StrBytes::from_static_str("t")))
                    .with_partition_responses(vec![
                        PartitionProduceResponse::default()
                            .with_index(0)
                            .with_base_offset(5)
                            .with_log_append_time_ms(-1),
                    ]),
            ]);
        // topics(4) name(2+1) partitions(4) index(4) error(2) offset(8)
        let v0 = 4 + 3 + 4 + 4 + 2 + 8;
        assert_eq!(encode_response(&resp, 0).len(), v0);
        assert_eq!(encode_response(&resp, 1).len(), v0 + 4);
        assert_eq!(encode_response(&resp, 2).len(), v0 + 4 + 8);
    }
}

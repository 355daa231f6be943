//! Client quotas against the real binary: AlterClientQuotas and
//! DescribeClientQuotas as Kafka's controller answers them, a produce that
//! takes its client over producer_byte_rate answered with throttle_time_ms
//! and its connection then left unread for that long (KIP-219), while
//! another client is not held back; connection limits per address.

mod support;

use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;
use support::{Broker, Client, batch, create_topic};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// One AlterClientQuotas entry: entity parts (None: the default) and
/// (key, value or None to remove).
fn alter(
    c: &mut Client,
    entity: &[(&str, Option<&str>)],
    ops: &[(&str, Option<f64>)],
    validate_only: bool,
) -> (i16, Option<String>) {
    let entry = alter_client_quotas_request::EntryData::default()
        .with_entity(
            entity
                .iter()
                .map(|(t, n)| {
                    alter_client_quotas_request::EntityData::default()
                        .with_entity_type(s(t))
                        .with_entity_name(n.map(s))
                })
                .collect(),
        )
        .with_ops(
            ops.iter()
                .map(|(k, v)| {
                    alter_client_quotas_request::OpData::default()
                        .with_key(s(k))
                        .with_value(v.unwrap_or(0.0))
                        .with_remove(v.is_none())
                })
                .collect(),
        );
    let req = AlterClientQuotasRequest::default()
        .with_entries(vec![entry])
        .with_validate_only(validate_only);
    let resp: AlterClientQuotasResponse = c.call(ApiKey::AlterClientQuotas, 1, &req);
    let e = &resp.entries[0];
    (
        e.error_code,
        e.error_message.as_ref().map(|m| m.to_string()),
    )
}

/// DescribeClientQuotas with (entity type, match type, match) components:
/// the entries as (entity parts, values), sorted.
type Described = Vec<(Vec<(String, Option<String>)>, Vec<(String, f64)>)>;

fn describe(
    c: &mut Client,
    components: &[(&str, i8, Option<&str>)],
    strict: bool,
) -> (i16, Described) {
    let req = DescribeClientQuotasRequest::default()
        .with_components(
            components
                .iter()
                .map(|(t, m, name)| {
                    describe_client_quotas_request::ComponentData::default()
                        .with_entity_type(s(t))
                        .with_match_type(*m)
                        .with_match(name.map(s))
                })
                .collect(),
        )
        .with_strict(strict);
    let resp: DescribeClientQuotasResponse = c.call(ApiKey::DescribeClientQuotas, 1, &req);
    let mut out: Described = resp
        .entries
        .unwrap_or_default()
        .into_iter()
        .map(|e| {
            (
                e.entity
                    .iter()
                    .map(|p| {
                        (
                            p.entity_type.to_string(),
                            p.entity_name.as_ref().map(|n| n.to_string()),
                        )
                    })
                    .collect(),
                e.values
                    .iter()
                    .map(|v| (v.key.to_string(), v.value))
                    .collect(),
            )
        })
        .collect();
    out.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    (resp.error_code, out)
}

const EXACT: i8 = 0;
const DEFAULT: i8 = 1;
const SPECIFIED: i8 = 2;

#[test]
fn quotas_are_altered_and_described_as_kafka_does() {
    let b = Broker::start(&[]);
    let mut c = b.connect();
    let invalid = ResponseError::InvalidRequest.code();
    // Refused: unknown key, a value not above zero, ip with user, an
    // empty name, no entity, and a key an ip cannot have.
    type Entity<'a> = &'a [(&'a str, Option<&'a str>)];
    type Ops<'a> = &'a [(&'a str, Option<f64>)];
    let refused: &[(Entity, Ops)] = &[
        (&[("user", Some("alice"))], &[("retention.ms", Some(1.0))]),
        (
            &[("user", Some("alice"))],
            &[("producer_byte_rate", Some(0.0))],
        ),
        (
            &[("user", Some("alice"))],
            &[("producer_byte_rate", Some(-5.0))],
        ),
        (
            &[("ip", None), ("user", None)],
            &[("producer_byte_rate", Some(1.0))],
        ),
        (&[("user", Some(""))], &[("producer_byte_rate", Some(1.0))]),
        (&[], &[("producer_byte_rate", Some(1.0))]),
        (&[("ip", None)], &[("producer_byte_rate", Some(1.0))]),
        (
            &[("group", Some("g"))],
            &[("producer_byte_rate", Some(1.0))],
        ),
    ];
    for (entity, ops) in refused {
        let (code, message) = alter(&mut c, entity, ops, false);
        assert_eq!(code, invalid, "{entity:?} {ops:?}: {message:?}");
    }
    // validate_only changes nothing.
    let ok = alter(
        &mut c,
        &[("user", Some("alice"))],
        &[("producer_byte_rate", Some(1024.0))],
        true,
    );
    assert_eq!(ok.0, 0);
    assert_eq!(describe(&mut c, &[], false), (0, vec![]));
    for (entity, ops) in [
        (
            vec![("user", Some("alice"))],
            vec![
                ("producer_byte_rate", Some(1024.0)),
                ("consumer_byte_rate", Some(2048.0)),
            ],
        ),
        (
            vec![("user", None)],
            vec![("producer_byte_rate", Some(512.0))],
        ),
        (
            vec![("user", Some("alice")), ("client-id", Some("app"))],
            vec![("request_percentage", Some(50.0))],
        ),
        (
            vec![("ip", Some("10.0.0.1"))],
            vec![("connection_creation_rate", Some(5.0))],
        ),
    ] {
        assert_eq!(alter(&mut c, &entity, &ops, false), (0, None), "{entity:?}");
    }
    let users = describe(&mut c, &[("user", SPECIFIED, None)], false).1;
    assert_eq!(users.len(), 3, "{users:?}");
    let strict = describe(&mut c, &[("user", SPECIFIED, None)], true).1;
    assert_eq!(strict.len(), 2, "{strict:?}");
    let default = describe(&mut c, &[("user", DEFAULT, None)], false).1;
    assert_eq!(
        default,
        vec![(
            vec![("user".to_string(), None)],
            vec![("producer_byte_rate".to_string(), 512.0)]
        )]
    );
    let alice = describe(&mut c, &[("user", EXACT, Some("alice"))], true).1;
    assert_eq!(
        alice[0].1,
        vec![
            ("consumer_byte_rate".to_string(), 2048.0),
            ("producer_byte_rate".to_string(), 1024.0)
        ]
    );
    // Removing a key; removing the last key removes the entity.
    alter(
        &mut c,
        &[("user", Some("alice"))],
        &[("consumer_byte_rate", None)],
        false,
    );
    alter(
        &mut c,
        &[("user", None)],
        &[("producer_byte_rate", None)],
        false,
    );
    let all = describe(&mut c, &[], false).1;
    assert_eq!(all.len(), 3, "{all:?}");
    // Bad filters: twice the same type, ip with user, exact without a name.
    for bad in [
        vec![("user", SPECIFIED, None), ("user", DEFAULT, None)],
        vec![("ip", SPECIFIED, None), ("user", SPECIFIED, None)],
        vec![("user", EXACT, None)],
        vec![("user", 7, None)],
    ] {
        assert_eq!(describe(&mut c, &bad, false).0, invalid, "{bad:?}");
    }
}

fn produce(c: &mut Client, topic: &str, bytes: usize) -> ProduceResponse {
    let value = vec![b'x'; bytes];
    let req = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![
            produce_request::TopicProduceData::default()
                .with_name(TopicName(s(topic)))
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(batch(&[&value], Compression::None))),
                ]),
        ]);
    c.call(ApiKey::Produce, 9, &req)
}

#[test]
fn a_client_over_its_quota_is_told_and_then_not_read_while_others_are_served() {
    // Two windows of one second: the first burst allowance is one second's.
    let b = Broker::start(&["--quota-window-num", "2"]);
    let mut admin = b.connect();
    create_topic(&mut admin, "quota", 1);
    let (code, _) = alter(
        &mut admin,
        &[("client-id", Some("slow"))],
        &[("producer_byte_rate", Some(10_000.0))],
        false,
    );
    assert_eq!(code, 0);
    let mut slow = b.connect();
    slow.client_id = "slow".into();
    let mut fast = b.connect();
    fast.client_id = "fast".into();

    // 50 kB against 10 kB/s over one second: throttled (to the 2 s cap).
    let r = produce(&mut slow, "quota", 50_000);
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    let throttle = Duration::from_millis(r.throttle_time_ms as u64);
    assert!(throttle >= Duration::from_millis(1500), "{throttle:?}");
    let muted_from = Instant::now();

    // Another client id has no quota: served at once, not throttled.
    let r = produce(&mut fast, "quota", 50_000);
    assert_eq!(r.throttle_time_ms, 0);
    assert!(muted_from.elapsed() < throttle, "the other client waited");

    // The throttled connection's next request is read only after the pause.
    let _: ApiVersionsResponse = slow.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    let waited = muted_from.elapsed();
    assert!(
        waited >= throttle.mul_f64(0.9),
        "answered after {waited:?}, throttle {throttle:?}"
    );
    assert!(
        b.metric(
            "karnak_quota_throttled_total",
            &["quota=\"producer_byte_rate\""]
        ) >= 1.0
    );
}

#[test]
fn connections_past_the_per_address_limit_are_closed() {
    let b = Broker::start(&["--max-connections-per-ip", "2"]);
    let mut first = b.connect();
    let mut second = b.connect();
    for c in [&mut first, &mut second] {
        let _: ApiVersionsResponse = c.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    }
    let mut third = b.connect();
    assert!(
        third.closed_by_broker(),
        "a third connection from 127.0.0.1 was served"
    );
    drop(first);
    // Once one closes, a new one is served (the close is seen shortly after).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut again = b.connect();
        let resp: Option<ApiVersionsResponse> =
            again.try_call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
        if resp.is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "no place freed after a close");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _: ApiVersionsResponse =
        second.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
}

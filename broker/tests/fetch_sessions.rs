//! Incremental fetch sessions (KIP-227) over the wire: a session is opened
//! by a full fetch, later fetches name only what changed and are answered
//! with only what changed.

mod support;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;
use support::{Broker, Client, batch, create_topic};

fn produce(c: &mut Client, topic: &str, partition: i32, value: &[u8]) {
    let req = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![
            produce_request::TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(batch(&[value], Compression::None))),
                ]),
        ]);
    let resp: ProduceResponse = c.call(ApiKey::Produce, 9, &req);
    assert_eq!(resp.responses[0].partition_responses[0].error_code, 0);
}

struct Fetch<'a> {
    session_id: i32,
    epoch: i32,
    id: uuid::Uuid,
    partitions: &'a [(i32, i64)],
    forgotten: &'a [i32],
}

fn fetch(c: &mut Client, f: Fetch) -> FetchResponse {
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_session_id(f.session_id)
        .with_session_epoch(f.epoch)
        .with_topics(if f.partitions.is_empty() {
            vec![]
        } else {
            vec![
                fetch_request::FetchTopic::default()
                    .with_topic_id(f.id)
                    .with_partitions(
                        f.partitions
                            .iter()
                            .map(|(p, o)| {
                                fetch_request::FetchPartition::default()
                                    .with_partition(*p)
                                    .with_fetch_offset(*o)
                                    .with_partition_max_bytes(1 << 20)
                            })
                            .collect(),
                    ),
            ]
        })
        .with_forgotten_topics_data(if f.forgotten.is_empty() {
            vec![]
        } else {
            vec![
                fetch_request::ForgottenTopic::default()
                    .with_topic_id(f.id)
                    .with_partitions(f.forgotten.to_vec()),
            ]
        });
    c.call(ApiKey::Fetch, 16, &req)
}

fn partitions(r: &FetchResponse) -> Vec<(i32, bool)> {
    r.responses
        .iter()
        .flat_map(|t| t.partitions.iter())
        .map(|p| {
            (
                p.partition_index,
                p.records.as_ref().is_some_and(|b| !b.is_empty()),
            )
        })
        .collect()
}

#[test]
fn incremental_fetches_carry_only_what_changed() {
    let broker = Broker::start(&[]);
    let mut c = broker.connect();
    let id = create_topic(&mut c, "sess", 3);
    produce(&mut c, "sess", 0, b"zero");
    let all = [(0, 0), (1, 0), (2, 0)];
    let full = fetch(
        &mut c,
        Fetch {
            session_id: 0,
            epoch: 0,
            id,
            partitions: &all,
            forgotten: &[],
        },
    );
    assert_eq!(full.error_code, 0);
    let session = full.session_id;
    assert_ne!(session, 0, "epoch 0 opens a session");
    assert_eq!(partitions(&full), vec![(0, true), (1, false), (2, false)]);

    // Nothing changed but partition 0's position: an empty answer.
    let r = fetch(
        &mut c,
        Fetch {
            session_id: session,
            epoch: 1,
            id,
            partitions: &[(0, 1)],
            forgotten: &[],
        },
    );
    assert_eq!((r.error_code, r.session_id), (0, session));
    assert_eq!(partitions(&r), vec![]);

    // New data on partition 2, which the request does not name.
    produce(&mut c, "sess", 2, b"two");
    let r = fetch(
        &mut c,
        Fetch {
            session_id: session,
            epoch: 2,
            id,
            partitions: &[],
            forgotten: &[],
        },
    );
    assert_eq!(partitions(&r), vec![(2, true)]);

    // A stale or future epoch, and an unknown session.
    let r = fetch(
        &mut c,
        Fetch {
            session_id: session,
            epoch: 2,
            id,
            partitions: &[],
            forgotten: &[],
        },
    );
    assert_eq!(r.error_code, ResponseError::InvalidFetchSessionEpoch.code());
    let r = fetch(
        &mut c,
        Fetch {
            session_id: session + 1,
            epoch: 1,
            id,
            partitions: &[],
            forgotten: &[],
        },
    );
    assert_eq!(r.error_code, ResponseError::FetchSessionIdNotFound.code());
    let r = fetch(
        &mut c,
        Fetch {
            session_id: 0,
            epoch: 5,
            id,
            partitions: &[],
            forgotten: &[],
        },
    );
    assert_eq!(r.error_code, ResponseError::InvalidFetchSessionEpoch.code());

    // Forgetting partition 1 and 2 (2 advanced first): new data there is
    // not reported; partition 0's is.
    let r = fetch(
        &mut c,
        Fetch {
            session_id: session,
            epoch: 3,
            id,
            partitions: &[],
            forgotten: &[1, 2],
        },
    );
    assert_eq!(partitions(&r), vec![]);
    produce(&mut c, "sess", 1, b"one");
    produce(&mut c, "sess", 0, b"zero again");
    let r = fetch(
        &mut c,
        Fetch {
            session_id: session,
            epoch: 4,
            id,
            partitions: &[],
            forgotten: &[],
        },
    );
    assert_eq!(partitions(&r), vec![(0, true)]);

    // Closing the session: a full answer without one, and the id is gone.
    let r = fetch(
        &mut c,
        Fetch {
            session_id: session,
            epoch: -1,
            id,
            partitions: &all,
            forgotten: &[],
        },
    );
    assert_eq!((r.error_code, r.session_id), (0, 0));
    assert_eq!(partitions(&r).len(), 3);
    let r = fetch(
        &mut c,
        Fetch {
            session_id: session,
            epoch: 5,
            id,
            partitions: &[],
            forgotten: &[],
        },
    );
    assert_eq!(r.error_code, ResponseError::FetchSessionIdNotFound.code());
}

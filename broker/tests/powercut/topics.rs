//! Topic creation and deletion through power cuts: an acknowledged
//! CreateTopics leaves every partition, an acknowledged DeleteTopics leaves
//! nothing that comes back, and a name deleted and made again keeps only
//! the new topic's id and records.

use kafka_protocol::messages::*;

use crate::rig::*;
use crate::support::Client;

fn describe(c: &mut Client, topic: &str) -> (i16, uuid::Uuid, usize) {
    let md: MetadataResponse = c.call(
        ApiKey::Metadata,
        12,
        &MetadataRequest::default()
            .with_allow_auto_topic_creation(false)
            .with_topics(Some(vec![
                metadata_request::MetadataRequestTopic::default().with_name(Some(name(topic))),
            ])),
    );
    let t = &md.topics[0];
    (t.error_code, t.topic_id, t.partitions.len())
}

#[test]
fn created_and_deleted_topics_stay_so_after_power_cuts() {
    let mut rig = Rig::start(&[]);
    let unknown = kafka_protocol::error::ResponseError::UnknownTopicOrPartition.code();
    for (round, seed) in seeds().into_iter().enumerate() {
        let mut c = rig.broker.connect();
        let made = format!("made-{round}");
        let gone = format!("gone-{round}");
        let again = format!("again-{round}");
        let made_id = crate::support::create_topic(&mut c, &made, 4);
        crate::support::create_topic(&mut c, &gone, 2);
        let old_id = crate::support::create_topic(&mut c, &again, 2);
        for (t, p) in [(&gone, 0), (&gone, 1), (&again, 0)] {
            assert_eq!(
                produce(&mut c, t, p, -1, batch(&["old".into()], None)),
                Some((0, 0))
            );
        }
        assert_eq!(delete_topic(&mut c, &gone), 0, "deleting {gone}");
        assert_eq!(delete_topic(&mut c, &again), 0, "deleting {again}");
        let new_id = crate::support::create_topic(&mut c, &again, 3);
        assert_ne!(old_id, new_id);
        let report = rig.power_cut(Some(seed));
        let mut c = rig.broker.connect();
        assert_eq!(
            describe(&mut c, &made),
            (0, made_id, 4),
            "an acknowledged topic after the cut (seed {seed})"
        );
        assert_eq!(
            describe(&mut c, &gone).0,
            unknown,
            "a deleted topic came back (seed {seed})"
        );
        assert_eq!(describe(&mut c, &again), (0, new_id, 3));
        for p in 0..3 {
            assert!(
                read_all(&mut c, &again, p).is_empty(),
                "{again}-{p} holds the deleted topic's records"
            );
        }
        // The topics made before the cut take writes.
        for p in 0..4 {
            assert_eq!(
                produce(&mut c, &made, p, -1, batch(&["new".into()], None)),
                Some((0, 0))
            );
        }
        eprintln!(
            "seed {seed}: 3 topics created, 2 deleted, all as acknowledged after a cut that lost {} directory changes",
            report.dir_ops_lost
        );
    }
}

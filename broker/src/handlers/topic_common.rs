//! Topics and partitions as Metadata and DescribeTopicPartitions show them:
//! from the metadata log (replicas, in-sync set, leader), with this
//! broker's own log where it holds one (an offline log is shown as KRaft
//! shows a replica whose log dir failed). The coordinator shards' topic is
//! there too, flagged internal, as Kafka shows `__consumer_offsets`.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::BrokerId;
use karnak_coordinator::metadata::{ClusterMetadata, NO_LEADER};

use crate::broker::Broker;
use crate::topics::is_internal;

/// Kafka's controller refuses an operation that would write more than
/// 10,000 metadata records at once (a topic, each partition and each
/// config one record; its `MAX_RECORDS_PER_USER_OP`): CreateTopics and
/// CreatePartitions asking for more get POLICY_VIOLATION with its message.
pub const MAX_RECORDS_PER_REQUEST: u64 = 10_000;
pub const EXCESSIVE_BATCH: &str = "Unable to perform excessively large batch operation.";

pub struct TopicView {
    pub name: String,
    pub id: [u8; 16],
    pub partitions: i32,
    pub internal: bool,
}

pub struct PartitionView {
    pub index: i32,
    pub error: i16,
    pub leader: BrokerId,
    pub leader_epoch: i32,
    pub replicas: Vec<BrokerId>,
    pub isr: Vec<BrokerId>,
    pub offline: Vec<BrokerId>,
    /// KIP-966's eligible leader replicas and last known ones.
    pub elr: Vec<BrokerId>,
    pub last_known_elr: Vec<BrokerId>,
}

fn ids(v: &[i32]) -> Vec<BrokerId> {
    v.iter().copied().map(BrokerId).collect()
}

/// Every topic a client may see, sorted by name.
pub fn topic_names(broker: &Broker, meta: &ClusterMetadata) -> Vec<String> {
    let _ = broker;
    // A BTreeMap's keys: sorted already.
    meta.topics.keys().cloned().collect()
}

pub fn topic(broker: &Broker, meta: &ClusterMetadata, name: &str) -> Option<TopicView> {
    let _ = broker;
    let t = meta.topics.get(name)?;
    Some(TopicView {
        name: name.to_string(),
        id: t.id,
        partitions: t.partitions.len() as i32,
        internal: is_internal(name),
    })
}

pub fn topic_by_id(broker: &Broker, meta: &ClusterMetadata, id: &[u8; 16]) -> Option<TopicView> {
    let (name, _) = meta.topics.iter().find(|(_, t)| &t.id == id)?;
    topic(broker, meta, name)
}

pub fn partition(
    broker: &Broker,
    meta: &ClusterMetadata,
    topic: &str,
    index: i32,
) -> PartitionView {
    let me = broker.node_id();
    let local = broker.logs.log(topic, index);
    let offline_here = local.as_ref().is_some_and(|l| l.is_offline());
    let Some(p) = meta.partition(topic, index) else {
        // Callers list partitions from the same metadata; answered anyway.
        return PartitionView {
            index,
            error: ResponseError::UnknownTopicOrPartition.code(),
            leader: BrokerId(NO_LEADER),
            leader_epoch: -1,
            replicas: Vec::new(),
            isr: Vec::new(),
            offline: Vec::new(),
            elr: Vec::new(),
            last_known_elr: Vec::new(),
        };
    };
    let mut offline: Vec<BrokerId> = p
        .replicas
        .iter()
        .filter(|r| !broker.cluster.is_live(meta, **r) || (**r == me && offline_here))
        .copied()
        .map(BrokerId)
        .collect();
    offline.dedup();
    // A leader this broker found gone is not named, as Kafka does not name a
    // fenced one: clients then look again soon rather than wait on it.
    let leader = if (p.leader == me && offline_here)
        || (p.leader != me && !broker.cluster.is_live(meta, p.leader))
    {
        NO_LEADER
    } else {
        p.leader
    };
    PartitionView {
        index,
        error: if leader == NO_LEADER {
            ResponseError::LeaderNotAvailable.code()
        } else {
            0
        },
        leader: BrokerId(leader),
        leader_epoch: p.leader_epoch,
        replicas: ids(&p.replicas),
        isr: ids(&p.isr),
        offline,
        elr: ids(&p.elr),
        last_known_elr: ids(&p.last_known_elr),
    }
}

//! Topics and partitions as Metadata and DescribeTopicPartitions show them:
//! from the metadata log (replicas, in-sync set, leader), with this
//! broker's own log where it holds one (an offline log is shown as KRaft
//! shows a replica whose log dir failed). The broker's internal topic is
//! not in the metadata log yet and is shown from its local log, led here.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::BrokerId;
use karnak_coordinator::metadata::{ClusterMetadata, NO_LEADER};

use crate::broker::Broker;
use crate::topics::is_internal;

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
}

fn ids(v: &[i32]) -> Vec<BrokerId> {
    v.iter().copied().map(BrokerId).collect()
}

/// Every topic a client may see, sorted by name.
pub fn topic_names(broker: &Broker, meta: &ClusterMetadata) -> Vec<String> {
    let mut names: Vec<String> = meta.topics.keys().cloned().collect();
    names.extend(
        broker
            .logs
            .topics()
            .into_iter()
            .filter(|t| is_internal(&t.meta.name))
            .map(|t| t.meta.name.clone()),
    );
    names.sort_unstable();
    names
}

pub fn topic(broker: &Broker, meta: &ClusterMetadata, name: &str) -> Option<TopicView> {
    if let Some(t) = meta.topics.get(name) {
        return Some(TopicView {
            name: name.to_string(),
            id: t.id,
            partitions: t.partitions.len() as i32,
            internal: false,
        });
    }
    let local = broker.logs.topic(name).filter(|_| is_internal(name))?;
    Some(TopicView {
        name: name.to_string(),
        id: local.meta.id,
        partitions: local.meta.partitions,
        internal: true,
    })
}

pub fn topic_by_id(broker: &Broker, meta: &ClusterMetadata, id: &[u8; 16]) -> Option<TopicView> {
    let name = match meta.topics.iter().find(|(_, t)| &t.id == id) {
        Some((name, _)) => name.clone(),
        None => broker.logs.topic_by_id(id)?.meta.name.clone(),
    };
    topic(broker, meta, &name)
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
        // The internal topic: one local replica, led here.
        let (error, leader, offline) = if offline_here {
            (
                ResponseError::LeaderNotAvailable.code(),
                BrokerId(NO_LEADER),
                vec![BrokerId(me)],
            )
        } else {
            (0, BrokerId(me), Vec::new())
        };
        return PartitionView {
            index,
            error,
            leader,
            leader_epoch: local.map(|l| l.latest_epoch()).unwrap_or(0),
            replicas: vec![BrokerId(me)],
            isr: vec![BrokerId(me)],
            offline,
        };
    };
    let mut offline: Vec<BrokerId> = p
        .replicas
        .iter()
        .filter(|r| !meta.is_live(**r) || (**r == me && offline_here))
        .copied()
        .map(BrokerId)
        .collect();
    offline.dedup();
    let leader = if p.leader == me && offline_here {
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
    }
}

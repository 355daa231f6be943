//! Transaction markers go to partition leaders: this broker's own logs
//! directly, other brokers' with WriteTxnMarkers, as Kafka's transaction
//! coordinator sends them. A partition of `__karnak_coordinator` stands for
//! a shard: its leader settles the producer's pending transactional
//! offsets there (Kafka marks `__consumer_offsets` the same way).

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{
    ApiKey, ProducerId, TopicName, WriteTxnMarkersRequest, WriteTxnMarkersResponse,
};
use kafka_protocol::protocol::StrBytes;
use karnak_coordinator::errors::{COORDINATOR_NOT_AVAILABLE, NONE};
use karnak_coordinator::metadata::NO_LEADER;
use karnak_coordinator::{
    COORDINATOR_TOPIC, MarkerWriter, MarkersFuture, TxnMarker, append_marker,
};
use karnak_protocol::control::ControlType;

use crate::broker::Broker;
use crate::replication::client::{PeerPool, PoolError};

/// Kafka's request.timeout.ms for the markers' requests and their acks=all.
const MARKER_TIMEOUT: Duration = Duration::from_secs(30);
const NOT_LEADER: i16 = ResponseError::NotLeaderOrFollower.code();

/// The broker's [`MarkerWriter`]; knows the broker once it exists.
pub struct BrokerMarkers {
    broker: OnceLock<Weak<Broker>>,
    /// Connections to the other brokers, kept between transactions.
    pool: PeerPool,
}

impl BrokerMarkers {
    pub fn new(tls: Option<Arc<crate::tls::PeerTls>>) -> Self {
        BrokerMarkers {
            broker: OnceLock::new(),
            // A few per broker: markers for concurrent transactions.
            pool: PeerPool::new("karnak-txn-markers".into(), 4, tls),
        }
    }

    pub fn attach(&self, broker: &Arc<Broker>) {
        let _ = self.broker.set(Arc::downgrade(broker));
    }
}

impl MarkerWriter for BrokerMarkers {
    fn write_markers(
        &self,
        marker: TxnMarker,
        partitions: Vec<(String, i32)>,
    ) -> MarkersFuture<'_> {
        Box::pin(self.write(marker, partitions))
    }
}

impl BrokerMarkers {
    /// This broker's partitions written here, the others' sent to their
    /// leaders, all at once; each partition's code in `partitions`' order.
    async fn write(&self, marker: TxnMarker, partitions: Vec<(String, i32)>) -> Vec<i16> {
        let Some(broker) = self.broker.get().and_then(Weak::upgrade) else {
            return vec![COORDINATOR_NOT_AVAILABLE; partitions.len()];
        };
        let meta = broker.cluster.metadata();
        let mut out = vec![NONE; partitions.len()];
        let mut local = Vec::new();
        let mut remote: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
        for (i, (topic, p)) in partitions.iter().enumerate() {
            match meta.partition(topic, *p).map(|s| s.leader) {
                None => out[i] = ResponseError::UnknownTopicOrPartition.code(),
                Some(l) if l == broker.node_id() => local.push(i),
                Some(NO_LEADER) => out[i] = NOT_LEADER,
                Some(l) => remote.entry(l).or_default().push(i),
            }
        }
        let locals = futures::future::join_all(local.iter().map(|&i| {
            let (topic, p) = &partitions[i];
            write_local(&broker, &marker, topic, *p)
        }));
        let remotes = futures::future::join_all(remote.into_iter().map(|(leader, idx)| {
            let addr = meta
                .brokers
                .get(&leader)
                .and_then(|b| crate::listeners::address_of(b, broker.inter_broker_listener()))
                .map(|l| format!("{}:{}", l.host, l.port));
            let parts: Vec<(String, i32)> = idx.iter().map(|i| partitions[*i].clone()).collect();
            async move {
                let codes = match addr {
                    Some(addr) => send(&self.pool, &addr, &marker, &parts)
                        .await
                        .unwrap_or_else(|e| {
                            tracing::warn!(leader, error = %e, "WriteTxnMarkers to a partition leader failed; the transaction stays prepared and is retried");
                            vec![NOT_LEADER; parts.len()]
                        }),
                    None => vec![NOT_LEADER; parts.len()],
                };
                (idx, codes)
            }
        }));
        let (locals, remotes) = futures::future::join(locals, remotes).await;
        for (i, code) in local.into_iter().zip(locals) {
            out[i] = code;
        }
        for (idx, codes) in remotes {
            for (i, code) in idx.into_iter().zip(codes) {
                out[i] = code;
            }
        }
        out
    }
}

/// Writes a marker this broker is asked to (its own transaction or a
/// WriteTxnMarkers): into a partition it leads, with its leader epoch, and
/// once the in-sync replicas hold it (markers are written with acks=all).
pub async fn write_local(broker: &Broker, marker: &TxnMarker, topic: &str, partition: i32) -> i16 {
    if topic == COORDINATOR_TOPIC {
        let commit = marker.kind == ControlType::Commit;
        return broker
            .txns
            .settle_shard_offsets(partition as u32, marker.producer_id, commit)
            .await;
    }
    let (log, epoch) = match broker.replicas.leader_for_append(topic, partition, true) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let durable = broker.config.transactions.durable;
    let (code, end) = {
        let (log, marker) = (log.clone(), *marker);
        // The append and its fsync: off the reactor.
        karnak_storage::blocking::spawn(move || append_marker(&log, &marker, epoch, durable))
            .await
            .unwrap_or((ResponseError::KafkaStorageError.code(), None))
    };
    broker.replicas.after_append(topic, partition, &log);
    match end {
        Some(end) if log.is_replicated() => {
            let deadline = tokio::time::Instant::now() + MARKER_TIMEOUT;
            match broker.replicas.wait_replicated(&log, end, deadline).await {
                0 => code,
                refused => refused,
            }
        }
        _ => code,
    }
}

async fn send(
    pool: &PeerPool,
    addr: &str,
    marker: &TxnMarker,
    partitions: &[(String, i32)],
) -> Result<Vec<i16>, PoolError> {
    let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in partitions {
        topics.entry(t.as_str()).or_default().push(*p);
    }
    let req = WriteTxnMarkersRequest::default().with_markers(vec![
        WritableTxnMarker::default()
            .with_producer_id(ProducerId(marker.producer_id))
            .with_producer_epoch(marker.producer_epoch)
            .with_transaction_result(marker.kind == ControlType::Commit)
            .with_coordinator_epoch(marker.coordinator_epoch)
            .with_topics(
                topics
                    .iter()
                    .map(|(t, ps)| {
                        WritableTxnMarkerTopic::default()
                            .with_name(TopicName(StrBytes::from_string(t.to_string())))
                            .with_partition_indexes(ps.clone())
                    })
                    .collect(),
            ),
    ]);
    let resp: WriteTxnMarkersResponse = pool
        .call(addr, ApiKey::WriteTxnMarkers, 1, &req, MARKER_TIMEOUT)
        .await?;
    let mut codes: BTreeMap<(String, i32), i16> = BTreeMap::new();
    for m in resp.markers {
        for t in m.topics {
            for p in t.partitions {
                codes.insert((t.name.to_string(), p.partition_index), p.error_code);
            }
        }
    }
    Ok(partitions
        .iter()
        .map(|k| codes.get(k).copied().unwrap_or(NOT_LEADER))
        .collect())
}

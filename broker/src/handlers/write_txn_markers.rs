//! WriteTxnMarkers (key 27): a transaction coordinator asks a partition
//! leader to write COMMIT/ABORT markers (answered once the in-sync replicas
//! hold them). A partition of the coordinator topic settles the producer's
//! pending transactional offsets in that shard instead.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};
use karnak_coordinator::TxnMarker;
use karnak_coordinator::errors::NONE;
use karnak_protocol::control::ControlType;

use super::txn_common::later;
use crate::authz::{AclOperation, Authz};
use crate::broker::Broker;
use crate::cluster::markers::write_local;
use crate::response::{HandlerError, Reply, Response, decode};

pub fn handle(
    broker: &Arc<Broker>,
    body: &mut Bytes,
    version: i16,
    authz: &Authz,
) -> Result<Reply, HandlerError> {
    let req: WriteTxnMarkersRequest = decode(body, "WriteTxnMarkers", version)?;
    // Sent by transaction coordinators, never by clients.
    let denied = !authz.cluster(AclOperation::ClusterAction);
    let broker = broker.clone();
    Ok(later(async move {
        let mut markers = Vec::with_capacity(req.markers.len());
        for m in &req.markers {
            let kind = if m.transaction_result {
                ControlType::Commit
            } else {
                ControlType::Abort
            };
            let marker = TxnMarker {
                producer_id: m.producer_id.0,
                producer_epoch: m.producer_epoch,
                kind,
                coordinator_epoch: m.coordinator_epoch,
            };
            let mut topics = Vec::with_capacity(m.topics.len());
            for t in &m.topics {
                // Every partition's marker appended, then their replication
                // awaited together.
                let results = futures::future::join_all(t.partition_indexes.iter().map(|p| {
                    let marker = &marker;
                    let broker = &broker;
                    async move {
                        let code = if denied {
                            ResponseError::ClusterAuthorizationFailed.code()
                        } else {
                            write_local(broker, marker, t.name.as_str(), *p).await
                        };
                        WritableTxnMarkerPartitionResult::default()
                            .with_partition_index(*p)
                            .with_error_code(code)
                    }
                }))
                .await;
                topics.push(
                    WritableTxnMarkerTopicResult::default()
                        .with_name(t.name.clone())
                        .with_partitions(results),
                );
            }
            markers.push(
                WritableTxnMarkerResult::default()
                    .with_producer_id(m.producer_id)
                    .with_topics(topics),
            );
        }
        let resp = WriteTxnMarkersResponse::default().with_markers(markers);
        Response::encode(&resp, version, NONE)
    }))
}

//! What the transaction handlers share: coordinator calls write logs (their
//! own shard's and markers into data partitions) and await the disk and
//! the in-sync replicas, so they answer later.

use std::future::Future;

use crate::response::{HandlerError, Reply, Response};

/// Awaits `f`; its response goes out in request order.
pub fn later<F>(f: F) -> Reply
where
    F: Future<Output = Result<Response, HandlerError>> + Send + 'static,
{
    Reply::Later(Box::pin(f))
}

/// Whether a topic-partition exists for a client (internal topics do not),
/// anywhere in the cluster.
pub fn partition_exists(broker: &crate::broker::Broker, topic: &str, partition: i32) -> bool {
    !crate::topics::is_internal(topic)
        && broker
            .cluster
            .metadata()
            .partition(topic, partition)
            .is_some()
}

/// PRODUCER_FENCED exists only from the request versions of KIP-588
/// (InitProducerId v4, AddPartitionsToTxn/AddOffsetsToTxn/EndTxn v2); older
/// clients are told INVALID_PRODUCER_EPOCH, which they handle the same way.
pub fn fenced_for_version(code: i16, version: i16, since: i16) -> i16 {
    use karnak_coordinator::errors::{INVALID_PRODUCER_EPOCH, PRODUCER_FENCED};
    if code == PRODUCER_FENCED && version < since {
        INVALID_PRODUCER_EPOCH
    } else {
        code
    }
}

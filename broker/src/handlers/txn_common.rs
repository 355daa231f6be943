//! What the transaction handlers share: coordinator calls write logs (their
//! own shard's and markers into data partitions), so they run on the
//! blocking pool and answer later.

use crate::response::{HandlerError, Reply, Response};

/// Runs `f` off the reactor; its response goes out in request order.
pub fn blocking<F>(f: F) -> Reply
where
    F: FnOnce() -> Result<Response, HandlerError> + Send + 'static,
{
    Reply::Later(Box::pin(async move {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| HandlerError::Internal(format!("transaction task: {e}")))?
    }))
}

/// Whether a topic-partition exists for a client (internal topics do not).
pub fn partition_exists(broker: &crate::broker::Broker, topic: &str, partition: i32) -> bool {
    !crate::topics::is_internal(topic) && broker.logs.log(topic, partition).is_some()
}

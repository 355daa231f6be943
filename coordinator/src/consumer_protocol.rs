//! Reading the embedded consumer protocol (the `consumer` protocol type's
//! member metadata), which the coordinator otherwise stores as opaque bytes.

use bytes::{Buf, Bytes};
use kafka_protocol::messages::ConsumerProtocolSubscription;
use kafka_protocol::protocol::Decodable;

/// Topics in a ConsumerProtocolSubscription; empty if it cannot be read
/// (a client's metadata is its own business, never a reason to fail).
pub fn subscription_topics(metadata: &Bytes) -> Vec<String> {
    let mut buf = metadata.clone();
    if buf.remaining() < 2 {
        return Vec::new();
    }
    // Newer clients may send versions this crate does not know; the
    // topics field has kept its place, so read them as the newest we know.
    let version = buf.get_i16().clamp(0, 3);
    ConsumerProtocolSubscription::decode(&mut buf, version)
        .map(|s| s.topics.into_iter().map(|t| t.to_string()).collect())
        .unwrap_or_default()
}

//! Shared checks for the group APIs.

use kafka_protocol::protocol::StrBytes;
use karnak_coordinator::errors::INVALID_GROUP_ID;

/// Longest group id accepted. Kafka sets no limit; an unbounded id would be
/// persisted in every record of the group, so we bound it generously.
pub const MAX_GROUP_ID_BYTES: usize = 1024;

/// INVALID_GROUP_ID for an empty or oversized group id, as Kafka answers.
pub fn check_group_id(id: &str) -> Result<(), i16> {
    if id.is_empty() || id.len() > MAX_GROUP_ID_BYTES {
        Err(INVALID_GROUP_ID)
    } else {
        Ok(())
    }
}

/// GROUP_AUTHORIZATION_FAILED unless the caller may do `op` on the group
/// (checked first, as Kafka does), then [`check_group_id`].
pub fn check_group(
    authz: &crate::authz::Authz,
    op: crate::authz::AclOperation,
    id: &str,
) -> Result<(), i16> {
    if !authz.group(op, id) {
        return Err(kafka_protocol::error::ResponseError::GroupAuthorizationFailed.code());
    }
    check_group_id(id)
}

pub fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

/// Who sent the request, for DescribeGroups' client_id/client_host.
#[derive(Debug, Clone)]
pub struct Caller {
    pub client_id: String,
    pub host: String,
}

/// The broker's topics as KIP-848 groups see them. Internal topics are not
/// subscribable (as `exclude.internal.topics` does for regexes in Kafka).
pub struct BrokerTopics<'a>(pub &'a crate::broker::Broker);

impl karnak_coordinator::TopicView for BrokerTopics<'_> {
    fn lookup(&self, name: &str) -> Option<(karnak_coordinator::TopicId, i32)> {
        if crate::topics::is_internal(name) {
            return None;
        }
        self.0
            .logs
            .topic(name)
            .map(|t| (t.meta.id, t.meta.partitions))
    }

    fn name_of(&self, id: &karnak_coordinator::TopicId) -> Option<String> {
        self.0.logs.topic_by_id(id).map(|t| t.meta.name.clone())
    }

    fn names(&self) -> Vec<String> {
        self.0
            .logs
            .topics()
            .into_iter()
            .map(|t| t.meta.name.clone())
            .filter(|n| !crate::topics::is_internal(n))
            .collect()
    }
}

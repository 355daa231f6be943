//! The authorizer: Kafka's StandardAuthorizer rules over the ACLs in the
//! metadata (`--authorizer acl`), or none (every request allowed, the
//! default, as a Kafka without `authorizer.class.name`).
//!
//! Each request gets an [`Authz`]: the caller's principal and host and the
//! metadata snapshot of the moment, so a check is a few map lookups with no
//! lock and no allocation.

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::bail;
use karnak_coordinator::metadata::ClusterMetadata;
use karnak_coordinator::metadata::acls::Requester;
pub use karnak_coordinator::metadata::acls::{AclOperation, CLUSTER_NAME, ResourceType};

/// The principal of a client that did not authenticate.
pub const ANONYMOUS: &str = "User:ANONYMOUS";

/// `--authorizer acl` and its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizerConfig {
    /// Kafka `super.users`: allowed everything, whatever the ACLs say.
    pub super_users: HashSet<String>,
    /// Kafka `allow.everyone.if.no.acl.found`.
    pub allow_if_no_acl: bool,
}

/// The authorizer from the flags: `None` when there is none.
pub fn settings(
    authorizer: Option<&str>,
    super_users: Option<&str>,
    allow_everyone_if_no_acl_found: Option<bool>,
) -> anyhow::Result<Option<Arc<AuthorizerConfig>>> {
    let enabled = match authorizer {
        None | Some("none") => false,
        Some("acl") => true,
        Some(other) => bail!("--authorizer {other:?}: expected acl or none"),
    };
    if !enabled {
        if super_users.is_some() || allow_everyone_if_no_acl_found.is_some() {
            bail!("--super-users and --allow-everyone-if-no-acl-found need --authorizer acl");
        }
        return Ok(None);
    }
    let mut users = HashSet::new();
    for p in super_users.unwrap_or("").split(';').map(str::trim) {
        if p.is_empty() {
            continue;
        }
        match p.split_once(':') {
            Some((kind, name)) if !kind.is_empty() && !name.is_empty() => {}
            _ => bail!(
                "--super-users: {p:?} is not a principal (expected Type:name, e.g. User:admin)"
            ),
        }
        users.insert(p.to_string());
    }
    Ok(Some(Arc::new(AuthorizerConfig {
        super_users: users,
        allow_if_no_acl: allow_everyone_if_no_acl_found.unwrap_or(false),
    })))
}

/// What one request's caller may do.
#[derive(Clone)]
pub struct Authz(Option<Arc<Caller>>);

struct Caller {
    principal: Arc<str>,
    host: Arc<str>,
    super_user: bool,
    allow_if_no_acl: bool,
    metadata: Arc<ClusterMetadata>,
}

impl Authz {
    /// No authorizer: everything is allowed.
    pub fn allow_all() -> Self {
        Authz(None)
    }

    pub fn new(
        config: &AuthorizerConfig,
        principal: Arc<str>,
        host: Arc<str>,
        metadata: Arc<ClusterMetadata>,
    ) -> Self {
        Authz(Some(Arc::new(Caller {
            super_user: config.super_users.contains(&*principal),
            principal,
            host,
            allow_if_no_acl: config.allow_if_no_acl,
            metadata,
        })))
    }

    /// Why this caller may not use an ACL API that needs `op` on the
    /// cluster (`needed`: the message for a caller without it), as Kafka
    /// answers; None when it may.
    pub fn acl_api_refusal(
        &self,
        op: AclOperation,
        needed: &str,
    ) -> Option<(kafka_protocol::error::ResponseError, String)> {
        use kafka_protocol::error::ResponseError;
        if !self.enabled() {
            return Some((
                ResponseError::SecurityDisabled,
                "No Authorizer is configured.".into(),
            ));
        }
        (!self.cluster(op)).then(|| (ResponseError::ClusterAuthorizationFailed, needed.into()))
    }

    /// Whether an authorizer is on (handlers skip filtering work otherwise).
    pub fn enabled(&self) -> bool {
        self.0.is_some()
    }

    /// May the caller do `op` on the resource? Silent: for filtering lists
    /// (Metadata's topics, ListGroups), as Kafka's `logIfDenied = false`.
    pub fn allows(&self, op: AclOperation, resource_type: ResourceType, name: &str) -> bool {
        let Some(c) = &self.0 else { return true };
        c.super_user
            || c.metadata
                .acls
                .authorize(c.requester(), op, resource_type, name, c.allow_if_no_acl)
    }

    /// [`Self::allows`], with a denial logged (Kafka's authorizer log).
    pub fn check(&self, op: AclOperation, resource_type: ResourceType, name: &str) -> bool {
        let allowed = self.allows(op, resource_type, name);
        if !allowed && let Some(c) = &self.0 {
            tracing::info!(
                target: "karnak::authorizer",
                principal = %c.principal,
                host = %c.host,
                "denied {op:?} on {resource_type:?} {name:?}"
            );
        }
        allowed
    }

    pub fn topic(&self, op: AclOperation, topic: &str) -> bool {
        self.check(op, ResourceType::Topic, topic)
    }

    pub fn group(&self, op: AclOperation, group: &str) -> bool {
        self.check(op, ResourceType::Group, group)
    }

    pub fn transactional_id(&self, op: AclOperation, id: &str) -> bool {
        self.check(op, ResourceType::TransactionalId, id)
    }

    pub fn cluster(&self, op: AclOperation) -> bool {
        self.check(op, ResourceType::Cluster, CLUSTER_NAME)
    }

    /// CREATE on the cluster or on the topic, as CreateTopics and automatic
    /// creation need.
    pub fn may_create_topic(&self, topic: &str) -> bool {
        self.allows(AclOperation::Create, ResourceType::Cluster, CLUSTER_NAME)
            || self.topic(AclOperation::Create, topic)
    }

    /// A config resource's check (Kafka's ConfigResource types): a topic's
    /// on the topic, a broker's (or its loggers') on the cluster. Other
    /// types are left to the handler to refuse.
    pub fn config_resource(
        &self,
        op: AclOperation,
        resource_type: i8,
        name: &str,
    ) -> Result<(), kafka_protocol::error::ResponseError> {
        use kafka_protocol::error::ResponseError;
        const TOPIC: i8 = 2;
        const BROKER: i8 = 4;
        const BROKER_LOGGER: i8 = 8;
        match resource_type {
            TOPIC if !self.topic(op, name) => Err(ResponseError::TopicAuthorizationFailed),
            BROKER | BROKER_LOGGER if !self.cluster(op) => {
                Err(ResponseError::ClusterAuthorizationFailed)
            }
            _ => Ok(()),
        }
    }

    /// Per partition of a request, in order, whether the caller may do
    /// `op` on its topic (checked once per topic): `topics` gives each
    /// topic's name and partition count.
    pub fn per_partition<'a>(
        &self,
        op: AclOperation,
        topics: impl IntoIterator<Item = (&'a str, usize)>,
    ) -> Vec<bool> {
        topics
            .into_iter()
            .flat_map(|(name, partitions)| std::iter::repeat_n(self.topic(op, name), partitions))
            .collect()
    }

    /// May the caller do `op` on some resource of the type (KIP-679)?
    pub fn any_of_type(&self, op: AclOperation, resource_type: ResourceType) -> bool {
        let Some(c) = &self.0 else { return true };
        c.super_user
            || c.metadata
                .acls
                .authorize_any(c.requester(), op, resource_type, c.allow_if_no_acl)
    }

    /// Kafka's `*_authorized_operations` bit field: bit `code` set for each
    /// of `ops` allowed on the resource.
    pub fn authorized_operations(
        &self,
        resource_type: ResourceType,
        name: &str,
        ops: &[AclOperation],
    ) -> i32 {
        ops.iter()
            .filter(|op| self.allows(**op, resource_type, name))
            .fold(0, |bits, op| bits | (1 << op.code()))
    }
}

impl Caller {
    fn requester(&self) -> Requester<'_> {
        Requester {
            principal: &self.principal,
            host: &self.host,
        }
    }
}

/// The operations Kafka reports in `topic_authorized_operations`.
pub const TOPIC_OPERATIONS: &[AclOperation] = &[
    AclOperation::Read,
    AclOperation::Write,
    AclOperation::Create,
    AclOperation::Delete,
    AclOperation::Alter,
    AclOperation::Describe,
    AclOperation::DescribeConfigs,
    AclOperation::AlterConfigs,
];

/// The operations Kafka reports in `cluster_authorized_operations`.
pub const CLUSTER_OPERATIONS: &[AclOperation] = &[
    AclOperation::Create,
    AclOperation::Alter,
    AclOperation::Describe,
    AclOperation::ClusterAction,
    AclOperation::DescribeConfigs,
    AclOperation::AlterConfigs,
    AclOperation::IdempotentWrite,
];

/// The operations Kafka reports in `authorized_operations` of a group.
pub const GROUP_OPERATIONS: &[AclOperation] = &[
    AclOperation::Read,
    AclOperation::Describe,
    AclOperation::Delete,
    AclOperation::DescribeConfigs,
    AclOperation::AlterConfigs,
];

#[cfg(test)]
mod tests {
    use super::*;
    use karnak_coordinator::metadata::acls::{AclBinding, AclEntry, AclPermission, PatternType};

    fn meta(bindings: Vec<AclBinding>) -> Arc<ClusterMetadata> {
        Arc::new(ClusterMetadata {
            acls: bindings.into(),
            ..Default::default()
        })
    }

    fn allow(principal: &str, op: AclOperation, rt: ResourceType, name: &str) -> AclBinding {
        AclBinding {
            resource_type: rt,
            pattern_type: PatternType::Literal,
            resource_name: name.into(),
            entry: AclEntry {
                principal: principal.into(),
                host: "*".into(),
                operation: op,
                permission: AclPermission::Allow,
            },
        }
    }

    #[test]
    fn flags() {
        assert!(settings(None, None, None).unwrap().is_none());
        assert!(settings(Some("none"), Some("User:a"), None).is_err());
        assert!(settings(Some("ranger"), None, None).is_err());
        assert!(settings(Some("acl"), Some("admin"), None).is_err());
        let c = settings(Some("acl"), Some("User:admin; User:ops;"), Some(true))
            .unwrap()
            .unwrap();
        assert!(c.super_users.contains("User:ops") && c.super_users.len() == 2);
        assert!(c.allow_if_no_acl);
    }

    #[test]
    fn super_users_and_authorized_operations() {
        let config = settings(Some("acl"), Some("User:admin"), None)
            .unwrap()
            .unwrap();
        let m = meta(vec![allow(
            "User:alice",
            AclOperation::Read,
            ResourceType::Topic,
            "t",
        )]);
        let admin = Authz::new(&config, "User:admin".into(), "h".into(), m.clone());
        assert!(admin.topic(AclOperation::Delete, "t"));
        assert!(admin.cluster(AclOperation::Alter));
        let alice = Authz::new(&config, "User:alice".into(), "h".into(), m.clone());
        assert!(alice.topic(AclOperation::Read, "t"));
        assert!(!alice.topic(AclOperation::Write, "t"));
        assert!(!alice.cluster(AclOperation::Describe));
        let bits = alice.authorized_operations(ResourceType::Topic, "t", TOPIC_OPERATIONS);
        assert_eq!(bits, (1 << 3) | (1 << 8));
        let anonymous = Authz::new(&config, ANONYMOUS.into(), "h".into(), m);
        assert!(!anonymous.topic(AclOperation::Describe, "t"));
        assert!(Authz::allow_all().cluster(AclOperation::Alter));
    }
}

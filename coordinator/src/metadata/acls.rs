//! ACLs in the metadata, with Kafka's model: a binding is a resource
//! pattern (type, LITERAL or PREFIXED name) and an entry (principal, host,
//! operation, ALLOW or DENY). Kafka keeps them in KRaft's metadata log
//! too, so every broker authorizes against the same set.
//!
//! The codes are Kafka's (`ResourceType`, `PatternType`, `AclOperation`,
//! `AclPermissionType` in its `common.acl` and `common.resource`
//! packages); the JSON snapshot names them instead.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// The one name a CLUSTER resource has.
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// A LITERAL resource name matching every resource of its type.
pub const WILDCARD: &str = "*";

macro_rules! coded {
    ($(#[$m:meta])* $name:ident { $($v:ident = $c:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum $name { $($v),+ }
        impl $name {
            pub fn code(self) -> i8 {
                match self { $(Self::$v => $c),+ }
            }
            pub fn from_code(code: i8) -> Option<Self> {
                match code { $($c => Some(Self::$v),)+ _ => None }
            }
        }
    };
}

coded!(
    /// Kafka's ResourceType (UNKNOWN 0 and ANY 1 are filter-only).
    ResourceType {
        Topic = 2,
        Group = 3,
        Cluster = 4,
        TransactionalId = 5,
        DelegationToken = 6,
        User = 7,
    }
);

coded!(
    /// Kafka's PatternType for a stored binding (ANY 1 and MATCH 2 are
    /// filter-only).
    PatternType {
        Literal = 3,
        Prefixed = 4,
    }
);

coded!(
    /// Kafka's AclOperation (UNKNOWN 0 and ANY 1 are filter-only).
    AclOperation {
        All = 2,
        Read = 3,
        Write = 4,
        Create = 5,
        Delete = 6,
        Alter = 7,
        Describe = 8,
        ClusterAction = 9,
        DescribeConfigs = 10,
        AlterConfigs = 11,
        IdempotentWrite = 12,
        CreateTokens = 13,
        DescribeTokens = 14,
    }
);

coded!(
    /// Kafka's AclPermissionType (ANY 1 is filter-only).
    AclPermission {
        Deny = 2,
        Allow = 3,
    }
);

/// Filter code for "any value" in every ACL enum.
const ANY: i8 = 1;
/// PatternType MATCH: the patterns that would apply to the named resource.
const MATCH: i8 = 2;

impl AclOperation {
    /// Whether an ALLOW of `self` allows `op`: ALL allows everything, and
    /// READ, WRITE, DELETE or ALTER imply DESCRIBE, ALTER_CONFIGS implies
    /// DESCRIBE_CONFIGS (as Kafka's authorizer).
    fn allows(self, op: AclOperation) -> bool {
        use AclOperation::*;
        self == All
            || self == op
            || (op == Describe && matches!(self, Read | Write | Delete | Alter))
            || (op == DescribeConfigs && self == AlterConfigs)
    }

    /// Whether a DENY of `self` denies `op`: only the operation itself or
    /// ALL (denying READ leaves DESCRIBE as other ACLs say).
    fn denies(self, op: AclOperation) -> bool {
        self == AclOperation::All || self == op
    }
}

/// Who, from where, may or may not do what (the resource is the key it is
/// stored under).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclEntry {
    pub principal: String,
    pub host: String,
    pub operation: AclOperation,
    pub permission: AclPermission,
}

/// A resource pattern and an entry: one ACL, as CreateAcls makes it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    pub pattern_type: PatternType,
    pub resource_name: String,
    pub entry: AclEntry,
}

/// Why a binding cannot be stored (answered as INVALID_REQUEST).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AclError {
    #[error("unknown or 'any' {0} code {1} in an ACL to create")]
    BadCode(&'static str, i8),
    #[error("Resource name should not be empty")]
    EmptyName,
    #[error("The only valid name for the CLUSTER resource is {CLUSTER_NAME}")]
    ClusterName,
    #[error("Could not parse principal {0:?}: expected Type:name")]
    Principal(String),
    #[error("unknown {0} code {1} in an ACL filter")]
    BadFilterCode(&'static str, i8),
}

impl AclBinding {
    /// A binding from CreateAcls' codes, refused as Kafka's controller
    /// refuses it.
    #[allow(clippy::too_many_arguments)]
    pub fn from_wire(
        resource_type: i8,
        resource_name: &str,
        pattern_type: i8,
        principal: &str,
        host: &str,
        operation: i8,
        permission: i8,
    ) -> Result<Self, AclError> {
        let resource_type = ResourceType::from_code(resource_type)
            .ok_or(AclError::BadCode("resource type", resource_type))?;
        let pattern_type = PatternType::from_code(pattern_type)
            .ok_or(AclError::BadCode("pattern type", pattern_type))?;
        let operation =
            AclOperation::from_code(operation).ok_or(AclError::BadCode("operation", operation))?;
        let permission = AclPermission::from_code(permission)
            .ok_or(AclError::BadCode("permission type", permission))?;
        if resource_name.is_empty() {
            return Err(AclError::EmptyName);
        }
        if resource_type == ResourceType::Cluster && resource_name != CLUSTER_NAME {
            return Err(AclError::ClusterName);
        }
        match principal.split_once(':') {
            Some((kind, name)) if !kind.is_empty() && !name.is_empty() => {}
            _ => return Err(AclError::Principal(principal.to_string())),
        }
        Ok(AclBinding {
            resource_type,
            pattern_type,
            resource_name: resource_name.to_string(),
            entry: AclEntry {
                principal: principal.to_string(),
                host: host.to_string(),
                operation,
                permission,
            },
        })
    }
}

/// A filter's pattern type: ANY, MATCH or one stored type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PatternFilter {
    Any,
    Match,
    Exactly(PatternType),
}

/// DescribeAcls' and DeleteAcls' filter (Kafka's AclBindingFilter); `None`
/// is ANY, or "any name / principal / host".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclFilter {
    pub resource_type: Option<ResourceType>,
    pub resource_name: Option<String>,
    pub pattern: PatternFilter,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Option<AclOperation>,
    pub permission: Option<AclPermission>,
}

fn filter_code<T>(
    what: &'static str,
    code: i8,
    from: impl Fn(i8) -> Option<T>,
) -> Result<Option<T>, AclError> {
    if code == ANY {
        return Ok(None);
    }
    from(code)
        .map(Some)
        .ok_or(AclError::BadFilterCode(what, code))
}

impl AclFilter {
    /// A filter from the wire; UNKNOWN or out-of-range codes are refused.
    #[allow(clippy::too_many_arguments)]
    pub fn from_wire(
        resource_type: i8,
        resource_name: Option<&str>,
        pattern_type: i8,
        principal: Option<&str>,
        host: Option<&str>,
        operation: i8,
        permission: i8,
    ) -> Result<Self, AclError> {
        let pattern = match pattern_type {
            ANY => PatternFilter::Any,
            MATCH => PatternFilter::Match,
            code => PatternFilter::Exactly(
                PatternType::from_code(code)
                    .ok_or(AclError::BadFilterCode("pattern type", code))?,
            ),
        };
        Ok(AclFilter {
            resource_type: filter_code("resource type", resource_type, ResourceType::from_code)?,
            resource_name: resource_name.map(str::to_string),
            pattern,
            principal: principal.map(str::to_string),
            host: host.map(str::to_string),
            operation: filter_code("operation", operation, AclOperation::from_code)?,
            permission: filter_code("permission type", permission, AclPermission::from_code)?,
        })
    }

    /// The filter that matches every binding.
    pub fn any() -> Self {
        AclFilter {
            resource_type: None,
            resource_name: None,
            pattern: PatternFilter::Any,
            principal: None,
            host: None,
            operation: None,
            permission: None,
        }
    }

    pub fn matches(&self, b: &AclBinding) -> bool {
        fn eq<T: PartialEq>(filter: &Option<T>, value: &T) -> bool {
            filter.as_ref().is_none_or(|f| f == value)
        }
        let name_ok = match (&self.pattern, &self.resource_name) {
            (PatternFilter::Any, name) => name.as_ref().is_none_or(|n| *n == b.resource_name),
            (PatternFilter::Exactly(p), name) => {
                *p == b.pattern_type && name.as_ref().is_none_or(|n| *n == b.resource_name)
            }
            (PatternFilter::Match, None) => true,
            // The patterns that would apply to a resource of this name.
            (PatternFilter::Match, Some(n)) => match b.pattern_type {
                PatternType::Literal => b.resource_name == *n || b.resource_name == WILDCARD,
                PatternType::Prefixed => n.starts_with(b.resource_name.as_str()),
            },
        };
        name_ok
            && eq(&self.resource_type, &b.resource_type)
            && eq(&self.principal, &b.entry.principal)
            && eq(&self.host, &b.entry.host)
            && eq(&self.operation, &b.entry.operation)
            && eq(&self.permission, &b.entry.permission)
    }
}

/// Who is asking, for [`AclStore::authorize`].
#[derive(Debug, Clone, Copy)]
pub struct Requester<'a> {
    /// `User:alice`, `User:ANONYMOUS`, ...
    pub principal: &'a str,
    /// The client's address as Kafka writes it (`127.0.0.1`).
    pub host: &'a str,
}

type Names = BTreeMap<String, BTreeSet<AclEntry>>;

/// Every ACL, indexed by resource type and pattern type, then name: a
/// check looks up the literal name, the wildcard and the prefixes of the
/// name, never the whole set. Stored in snapshots as a list of bindings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Vec<AclBinding>", into = "Vec<AclBinding>")]
pub struct AclStore {
    index: BTreeMap<(ResourceType, PatternType), Names>,
}

impl From<Vec<AclBinding>> for AclStore {
    fn from(bindings: Vec<AclBinding>) -> Self {
        let mut store = AclStore::default();
        for b in bindings {
            store.insert(b);
        }
        store
    }
}

impl From<AclStore> for Vec<AclBinding> {
    fn from(store: AclStore) -> Self {
        store.bindings().collect()
    }
}

impl AclStore {
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn len(&self) -> usize {
        self.index
            .values()
            .flat_map(|names| names.values())
            .map(BTreeSet::len)
            .sum()
    }

    /// Adds a binding; true when it was not there already.
    pub fn insert(&mut self, b: AclBinding) -> bool {
        self.index
            .entry((b.resource_type, b.pattern_type))
            .or_default()
            .entry(b.resource_name)
            .or_default()
            .insert(b.entry)
    }

    /// Every binding, in a stable order.
    pub fn bindings(&self) -> impl Iterator<Item = AclBinding> + '_ {
        self.index.iter().flat_map(|(&(rt, pt), names)| {
            names.iter().flat_map(move |(name, entries)| {
                entries.iter().map(move |e| AclBinding {
                    resource_type: rt,
                    pattern_type: pt,
                    resource_name: name.clone(),
                    entry: e.clone(),
                })
            })
        })
    }

    /// The bindings a filter matches.
    pub fn matching(&self, filter: &AclFilter) -> Vec<AclBinding> {
        self.bindings().filter(|b| filter.matches(b)).collect()
    }

    /// Removes what a filter matches and returns it.
    pub fn remove_matching(&mut self, filter: &AclFilter) -> Vec<AclBinding> {
        let gone = self.matching(filter);
        for b in &gone {
            let key = (b.resource_type, b.pattern_type);
            if let Some(names) = self.index.get_mut(&key) {
                if let Some(entries) = names.get_mut(&b.resource_name) {
                    entries.remove(&b.entry);
                    if entries.is_empty() {
                        names.remove(&b.resource_name);
                    }
                }
                if names.is_empty() {
                    self.index.remove(&key);
                }
            }
        }
        gone
    }

    /// The entry sets that apply to a resource: its literal name, the
    /// wildcard, and every PREFIXED pattern that begins its name.
    fn applying<'a>(
        &'a self,
        resource_type: ResourceType,
        name: &str,
    ) -> impl Iterator<Item = &'a BTreeSet<AclEntry>> + 'a {
        let literal = self.index.get(&(resource_type, PatternType::Literal));
        let exact = literal.and_then(|names| names.get(name));
        let wildcard = literal.and_then(|names| names.get(WILDCARD));
        let prefixed = self
            .index
            .get(&(resource_type, PatternType::Prefixed))
            .map(|names| prefixes_of(names, name))
            .unwrap_or_default();
        exact.into_iter().chain(wildcard).chain(prefixed)
    }

    /// Kafka's authorizer decision for one operation on one resource, super
    /// users aside: a matching DENY wins; otherwise a matching ALLOW (or an
    /// operation it implies) allows; a resource with no ACL at all is
    /// allowed only if `allow_if_no_acl` (`allow.everyone.if.no.acl.found`).
    pub fn authorize(
        &self,
        who: Requester<'_>,
        operation: AclOperation,
        resource_type: ResourceType,
        name: &str,
        allow_if_no_acl: bool,
    ) -> bool {
        let mut any_acl = false;
        let mut allowed = false;
        for entries in self.applying(resource_type, name) {
            for e in entries {
                any_acl = true;
                if !e.applies_to(who) {
                    continue;
                }
                match e.permission {
                    AclPermission::Deny if e.operation.denies(operation) => return false,
                    AclPermission::Allow if e.operation.allows(operation) => allowed = true,
                    _ => {}
                }
            }
        }
        if any_acl { allowed } else { allow_if_no_acl }
    }

    /// Whether the requester may do `operation` on some resource of a type
    /// (Kafka's authorizeByResourceType, KIP-679: an idempotent producer
    /// needs WRITE on any topic): some ALLOW pattern applies to it that no
    /// DENY for it covers.
    pub fn authorize_any(
        &self,
        who: Requester<'_>,
        operation: AclOperation,
        resource_type: ResourceType,
        allow_if_no_acl: bool,
    ) -> bool {
        let mut allows = Vec::new();
        let mut denies = Vec::new();
        let mut any_acl = false;
        for pattern in [PatternType::Literal, PatternType::Prefixed] {
            let Some(names) = self.index.get(&(resource_type, pattern)) else {
                continue;
            };
            for (name, entries) in names {
                for e in entries {
                    any_acl = true;
                    if !e.applies_to(who) {
                        continue;
                    }
                    match e.permission {
                        AclPermission::Deny if e.operation.denies(operation) => {
                            denies.push((pattern, name.as_str()))
                        }
                        AclPermission::Allow if e.operation.allows(operation) => {
                            allows.push((pattern, name.as_str()))
                        }
                        _ => {}
                    }
                }
            }
        }
        if !any_acl {
            return allow_if_no_acl;
        }
        let covered = |(pattern, name): (PatternType, &str)| {
            denies.iter().any(|&(dp, dn)| match dp {
                PatternType::Literal => dn == WILDCARD || (pattern == dp && dn == name),
                PatternType::Prefixed => {
                    name.starts_with(dn) && !(pattern == PatternType::Literal && name == WILDCARD)
                }
            })
        };
        allows.into_iter().any(|a| !covered(a))
    }
}

impl AclEntry {
    fn applies_to(&self, who: Requester<'_>) -> bool {
        let principal = self.principal == who.principal
            || (self.principal == "User:*" && who.principal.starts_with("User:"));
        principal && (self.host == WILDCARD || self.host == who.host)
    }
}

/// The entries of every stored prefix of `name`, walking down from the
/// greatest key not above it: a key that is not a prefix sends the walk to
/// its common prefix with `name`, so a check costs a few lookups however
/// many prefixes are stored (as Kafka's StandardAuthorizerData).
fn prefixes_of<'a>(names: &'a Names, name: &str) -> Vec<&'a BTreeSet<AclEntry>> {
    use std::ops::Bound::{Included, Unbounded};
    let mut found = Vec::new();
    let mut upper = name.to_string();
    while let Some((key, entries)) = names
        .range::<str, _>((Unbounded, Included(upper.as_str())))
        .next_back()
    {
        let next = if name.starts_with(key.as_str()) {
            found.push(entries);
            // Shorter prefixes sort below this one.
            let mut shorter = key.clone();
            shorter.pop();
            shorter
        } else {
            common_prefix(key, name).to_string()
        };
        if next.is_empty() {
            break;
        }
        upper = next;
    }
    found
}

fn common_prefix<'a>(a: &str, b: &'a str) -> &'a str {
    let end = a
        .char_indices()
        .zip(b.chars())
        .find(|((_, x), y)| x != y)
        .map(|((i, _), _)| i)
        .unwrap_or_else(|| a.len().min(b.len()));
    &b[..end]
}

#[cfg(test)]
#[path = "acls_tests.rs"]
mod tests;

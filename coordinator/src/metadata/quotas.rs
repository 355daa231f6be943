//! Client quotas in the metadata, with Kafka's entities and precedence:
//! quotas are set on a user, a client id, a (user, client id) pair, or an
//! IP address, each possibly the default entity (`<default>`), and
//! AlterClientQuotas / DescribeClientQuotas manage them
//! (`kafka-configs --entity-type users|clients|ips`). Kafka keeps them in
//! KRaft's metadata log too, so every broker enforces the same ones.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const USER: &str = "user";
pub const CLIENT_ID: &str = "client-id";
pub const IP: &str = "ip";

pub const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";
pub const REQUEST_PERCENTAGE: &str = "request_percentage";
pub const CONTROLLER_MUTATION_RATE: &str = "controller_mutation_rate";
pub const CONNECTION_CREATION_RATE: &str = "connection_creation_rate";

/// A quota entity: entity type (`user`, `client-id`, `ip`) to name, `None`
/// naming the type's default entity.
pub type QuotaEntity = BTreeMap<String, Option<String>>;

/// A quota's value; compared by its bits so the metadata stays `Eq`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(transparent)]
pub struct QuotaValue(pub f64);

impl PartialEq for QuotaValue {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}
impl Eq for QuotaValue {}

/// Why an entity or a change is refused (INVALID_REQUEST).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QuotaError {
    #[error("Invalid empty client quota entity")]
    EmptyEntity,
    #[error("Unhandled client quota entity type: {0}")]
    EntityType(String),
    #[error("Empty {0} not supported")]
    EmptyName(String),
    #[error("Invalid quota entity combination, IP should not be combined with user or client-id")]
    IpCombined,
    #[error("Invalid configuration key {key} for entity {entity}")]
    Key { key: String, entity: String },
    #[error("Quota {key} must be greater than 0")]
    Value { key: String, value: f64 },
    #[error("{0} cannot be a fractional value.")]
    Fractional(String),
    #[error("Proposed value for {0} is too large for {1}.")]
    TooLarge(String, &'static str),
    #[error("configuration key {0} appears twice")]
    DuplicateKey(String),
}

/// Checks an entity as Kafka's controller does.
pub fn validate_entity(entity: &QuotaEntity) -> Result<(), QuotaError> {
    if entity.is_empty() {
        return Err(QuotaError::EmptyEntity);
    }
    for (kind, name) in entity {
        if ![USER, CLIENT_ID, IP].contains(&kind.as_str()) {
            return Err(QuotaError::EntityType(kind.clone()));
        }
        if name.as_deref() == Some("") {
            return Err(QuotaError::EmptyName(kind.clone()));
        }
    }
    if entity.contains_key(IP) && entity.len() > 1 {
        return Err(QuotaError::IpCombined);
    }
    Ok(())
}

/// Checks one change of an entity's quotas: a key that entity can have,
/// and (when set) a positive value.
pub fn validate_op(entity: &QuotaEntity, key: &str, value: Option<f64>) -> Result<(), QuotaError> {
    let allowed: &[&str] = if entity.contains_key(IP) {
        &[CONNECTION_CREATION_RATE]
    } else {
        &[
            PRODUCER_BYTE_RATE,
            CONSUMER_BYTE_RATE,
            REQUEST_PERCENTAGE,
            CONTROLLER_MUTATION_RATE,
        ]
    };
    if !allowed.contains(&key) {
        return Err(QuotaError::Key {
            key: key.to_string(),
            entity: describe(entity),
        });
    }
    let Some(v) = value else { return Ok(()) };
    if !(v.is_finite() && v > 0.0) {
        return Err(QuotaError::Value {
            key: key.to_string(),
            value: v,
        });
    }
    // Kafka's types: the byte rates are LONGs, connection_creation_rate an
    // INT, request_percentage and controller_mutation_rate DOUBLEs.
    let integral = match key {
        PRODUCER_BYTE_RATE | CONSUMER_BYTE_RATE => Some((i64::MAX as f64, "a LONG")),
        CONNECTION_CREATION_RATE => Some((f64::from(i32::MAX), "an INT")),
        _ => None,
    };
    if let Some((max, name)) = integral {
        if v > max {
            return Err(QuotaError::TooLarge(key.to_string(), name));
        }
        if (v % 1.0).abs() > 1e-6 {
            return Err(QuotaError::Fractional(key.to_string()));
        }
    }
    Ok(())
}

fn describe(entity: &QuotaEntity) -> String {
    let parts: Vec<String> = entity
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_deref().unwrap_or("<default>")))
        .collect();
    parts.join(",")
}

/// One entity's changes: key to `Some(value)` (set) or `None` (remove).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaAlteration {
    pub entity: QuotaEntity,
    pub ops: Vec<(String, Option<QuotaValue>)>,
}

/// How a DescribeClientQuotas component matches an entity type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// This name (`Some`) or the default entity (`None`).
    Exactly(Option<String>),
    /// Any name of the type, the default included.
    Specified,
}

/// The sensor a client's usage is counted in and the quota it is held to:
/// the entity the quota was found on, with default parts replaced by the
/// client's own names (so each user under `/users/<default>` has its own
/// sensor) and parts the entity lacks left empty (so all clients of
/// `/users/alice` share one).
#[derive(Debug, Clone, PartialEq)]
pub struct AppliedQuota {
    pub bound: f64,
    pub user: String,
    pub client_id: String,
}

/// Every entity's quotas.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Vec<(QuotaEntity, BTreeMap<String, QuotaValue>)>")]
#[serde(into = "Vec<(QuotaEntity, BTreeMap<String, QuotaValue>)>")]
pub struct QuotaStore {
    entries: BTreeMap<QuotaEntity, BTreeMap<String, QuotaValue>>,
}

impl From<Vec<(QuotaEntity, BTreeMap<String, QuotaValue>)>> for QuotaStore {
    fn from(v: Vec<(QuotaEntity, BTreeMap<String, QuotaValue>)>) -> Self {
        QuotaStore {
            entries: v.into_iter().collect(),
        }
    }
}

impl From<QuotaStore> for Vec<(QuotaEntity, BTreeMap<String, QuotaValue>)> {
    fn from(s: QuotaStore) -> Self {
        s.entries.into_iter().collect()
    }
}

fn entity(parts: &[(&str, Option<&str>)]) -> QuotaEntity {
    parts
        .iter()
        .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
        .collect()
}

impl QuotaStore {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Applies validated changes; an entity left with no quota goes.
    pub fn alter(&mut self, alterations: &[QuotaAlteration]) {
        for a in alterations {
            let values = self.entries.entry(a.entity.clone()).or_default();
            for (key, value) in &a.ops {
                match value {
                    Some(v) => {
                        values.insert(key.clone(), *v);
                    }
                    None => {
                        values.remove(key);
                    }
                }
            }
            if values.is_empty() {
                self.entries.remove(&a.entity);
            }
        }
    }

    pub fn get(&self, entity: &QuotaEntity) -> Option<&BTreeMap<String, QuotaValue>> {
        self.entries.get(entity)
    }

    /// DescribeClientQuotas: entities matching every component; with
    /// `strict`, only entities with no other types.
    pub fn describe<'a>(
        &'a self,
        components: &'a [(String, Match)],
        strict: bool,
    ) -> impl Iterator<Item = (&'a QuotaEntity, &'a BTreeMap<String, QuotaValue>)> + 'a {
        self.entries.iter().filter(move |(entity, _)| {
            let all = components.iter().all(|(kind, m)| match entity.get(kind) {
                None => false,
                Some(name) => match m {
                    Match::Exactly(want) => name == want,
                    Match::Specified => true,
                },
            });
            all && (!strict || entity.len() == components.len())
        })
    }

    /// The quota `key` a (user, client id) is held to, by Kafka's
    /// precedence, most specific first: /users/u/clients/c,
    /// /users/u/clients/<default>, /users/u, /users/<default>/clients/c,
    /// /users/<default>/clients/<default>, /users/<default>, /clients/c,
    /// /clients/<default>.
    pub fn client_quota(&self, user: &str, client_id: &str, key: &str) -> Option<AppliedQuota> {
        if self.entries.is_empty() {
            return None;
        }
        let (u, c) = (Some(user), Some(client_id));
        let levels: [&[(&str, Option<&str>)]; 8] = [
            &[(USER, u), (CLIENT_ID, c)],
            &[(USER, u), (CLIENT_ID, None)],
            &[(USER, u)],
            &[(USER, None), (CLIENT_ID, c)],
            &[(USER, None), (CLIENT_ID, None)],
            &[(USER, None)],
            &[(CLIENT_ID, c)],
            &[(CLIENT_ID, None)],
        ];
        for parts in levels {
            let e = entity(parts);
            if let Some(v) = self.entries.get(&e).and_then(|q| q.get(key)) {
                let has = |kind: &str| e.contains_key(kind);
                return Some(AppliedQuota {
                    bound: v.0,
                    user: if has(USER) {
                        user.into()
                    } else {
                        String::new()
                    },
                    client_id: if has(CLIENT_ID) {
                        client_id.into()
                    } else {
                        String::new()
                    },
                });
            }
        }
        None
    }

    /// `connection_creation_rate` for an address: its own, else the
    /// default IP entity's.
    pub fn ip_quota(&self, ip: &str) -> Option<f64> {
        [Some(ip), None].into_iter().find_map(|name| {
            self.entries
                .get(&entity(&[(IP, name)]))
                .and_then(|q| q.get(CONNECTION_CREATION_RATE))
                .map(|v| v.0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(store: &mut QuotaStore, parts: &[(&str, Option<&str>)], key: &str, v: f64) {
        store.alter(&[QuotaAlteration {
            entity: entity(parts),
            ops: vec![(key.into(), Some(QuotaValue(v)))],
        }]);
    }

    #[test]
    fn precedence_and_sensor_keys() {
        let mut s = QuotaStore::default();
        assert_eq!(s.client_quota("alice", "app", PRODUCER_BYTE_RATE), None);
        set(&mut s, &[(CLIENT_ID, None)], PRODUCER_BYTE_RATE, 8.0);
        let q = s.client_quota("alice", "app", PRODUCER_BYTE_RATE).unwrap();
        assert_eq!(
            (q.bound, q.user.as_str(), q.client_id.as_str()),
            (8.0, "", "app")
        );
        set(&mut s, &[(USER, None)], PRODUCER_BYTE_RATE, 4.0);
        let q = s.client_quota("alice", "app", PRODUCER_BYTE_RATE).unwrap();
        assert_eq!(
            (q.bound, q.user.as_str(), q.client_id.as_str()),
            (4.0, "alice", "")
        );
        set(&mut s, &[(USER, Some("alice"))], PRODUCER_BYTE_RATE, 2.0);
        set(
            &mut s,
            &[(USER, Some("alice")), (CLIENT_ID, Some("app"))],
            PRODUCER_BYTE_RATE,
            1.0,
        );
        assert_eq!(
            s.client_quota("alice", "app", PRODUCER_BYTE_RATE)
                .unwrap()
                .bound,
            1.0
        );
        assert_eq!(
            s.client_quota("alice", "other", PRODUCER_BYTE_RATE)
                .unwrap()
                .bound,
            2.0
        );
        assert_eq!(
            s.client_quota("bob", "app", PRODUCER_BYTE_RATE)
                .unwrap()
                .bound,
            4.0
        );
        // Another key is not found on entities that only have this one.
        assert_eq!(s.client_quota("bob", "app", CONSUMER_BYTE_RATE), None);
        // Removing the last key removes the entity.
        s.alter(&[QuotaAlteration {
            entity: entity(&[(USER, Some("alice"))]),
            ops: vec![(PRODUCER_BYTE_RATE.into(), None)],
        }]);
        assert!(s.get(&entity(&[(USER, Some("alice"))])).is_none());
    }

    #[test]
    fn describe_filters() {
        let mut s = QuotaStore::default();
        set(&mut s, &[(USER, Some("alice"))], PRODUCER_BYTE_RATE, 1.0);
        set(&mut s, &[(USER, None)], PRODUCER_BYTE_RATE, 2.0);
        set(
            &mut s,
            &[(USER, Some("alice")), (CLIENT_ID, Some("c"))],
            PRODUCER_BYTE_RATE,
            3.0,
        );
        set(
            &mut s,
            &[(IP, Some("10.0.0.1"))],
            CONNECTION_CREATION_RATE,
            5.0,
        );
        let count = |c: Vec<(String, Match)>, strict| s.describe(&c, strict).count();
        assert_eq!(count(vec![(USER.into(), Match::Specified)], false), 3);
        assert_eq!(count(vec![(USER.into(), Match::Specified)], true), 2);
        assert_eq!(count(vec![(USER.into(), Match::Exactly(None))], false), 1);
        assert_eq!(
            count(
                vec![(USER.into(), Match::Exactly(Some("alice".into())))],
                false
            ),
            2
        );
        assert_eq!(count(vec![], false), 4);
        assert_eq!(s.ip_quota("10.0.0.1"), Some(5.0));
        assert_eq!(s.ip_quota("10.0.0.2"), None);
    }

    #[test]
    fn validation() {
        assert!(validate_entity(&entity(&[])).is_err());
        assert!(validate_entity(&entity(&[("group", Some("g"))])).is_err());
        assert!(validate_entity(&entity(&[(USER, Some(""))])).is_err());
        assert!(validate_entity(&entity(&[(IP, None), (USER, None)])).is_err());
        assert!(validate_entity(&entity(&[(USER, None), (CLIENT_ID, Some("c"))])).is_ok());
        let user = entity(&[(USER, Some("u"))]);
        assert!(validate_op(&user, PRODUCER_BYTE_RATE, Some(1024.0)).is_ok());
        assert!(validate_op(&user, PRODUCER_BYTE_RATE, Some(0.0)).is_err());
        assert!(validate_op(&user, CONNECTION_CREATION_RATE, Some(1.0)).is_err());
        assert!(validate_op(&user, "retention.ms", None).is_err());
        assert_eq!(
            validate_op(&user, PRODUCER_BYTE_RATE, Some(1.5)),
            Err(QuotaError::Fractional(PRODUCER_BYTE_RATE.into()))
        );
        assert!(validate_op(&user, REQUEST_PERCENTAGE, Some(12.5)).is_ok());
        assert!(validate_op(&entity(&[(IP, None)]), CONNECTION_CREATION_RATE, Some(3e10)).is_err());
        let ip = entity(&[(IP, None)]);
        assert!(validate_op(&ip, CONNECTION_CREATION_RATE, Some(10.0)).is_ok());
        assert!(validate_op(&ip, PRODUCER_BYTE_RATE, Some(10.0)).is_err());
    }
}

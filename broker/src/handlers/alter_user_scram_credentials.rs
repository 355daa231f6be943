//! AlterUserScramCredentials (key 51): SCRAM credentials set and deleted
//! through the metadata log, checked as Kafka checks them (a known
//! mechanism, 4096 to 16384 iterations, a user named, nothing altered twice,
//! a deletion of something that exists). The client sends the salted
//! password; only StoredKey and ServerKey are kept.
//! `kafka-configs --alter --add-config 'SCRAM-SHA-256=[password=...]' --entity-type users`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
};
use kafka_protocol::protocol::StrBytes;
use karnak_coordinator::metadata::{MetadataCommand, ScramRecord, ScramUpsert};

use crate::authz::{AclOperation, Authz};
use crate::broker::Broker;
use crate::response::{HandlerError, Reply, Response, decode};
use crate::sasl::scram::{MAX_ITERATIONS, MIN_ITERATIONS, ScramCredential, ScramMechanism};

const TIMEOUT: Duration = Duration::from_secs(30);

type Refusal = (ResponseError, &'static str);

pub fn handle(
    broker: &Arc<Broker>,
    body: &mut Bytes,
    version: i16,
    authz: &Authz,
) -> Result<Reply, HandlerError> {
    let req: AlterUserScramCredentialsRequest = decode(body, "AlterUserScramCredentials", version)?;
    let denied = !authz.cluster(AclOperation::Alter);
    let meta = broker.cluster.metadata();
    // Users in order of first mention, each with its first refusal.
    let mut order: Vec<String> = Vec::new();
    let mut refused: HashMap<String, Refusal> = HashMap::new();
    let mut touched: HashMap<(String, i8), usize> = HashMap::new();
    let mut refuse = |user: &str, r: Refusal| {
        refused.entry(user.to_string()).or_insert(r);
    };
    let mention = |order: &mut Vec<String>, user: &str| {
        if !order.iter().any(|u| u == user) {
            order.push(user.to_string());
        }
    };
    for d in &req.deletions {
        mention(&mut order, d.name.as_str());
        *touched
            .entry((d.name.to_string(), d.mechanism))
            .or_default() += 1;
    }
    for u in &req.upsertions {
        mention(&mut order, u.name.as_str());
        *touched
            .entry((u.name.to_string(), u.mechanism))
            .or_default() += 1;
    }
    if denied {
        for user in &order {
            refuse(
                user,
                (
                    ResponseError::ClusterAuthorizationFailed,
                    "ALTER on the cluster is needed to alter credentials",
                ),
            );
        }
    }
    for ((user, _), n) in &touched {
        if *n > 1 {
            refuse(
                user,
                (
                    ResponseError::DuplicateResource,
                    "A user credential cannot be altered twice in the same request",
                ),
            );
        }
    }
    let mut deletions = Vec::new();
    for d in &req.deletions {
        let user = d.name.as_str();
        if user.is_empty() {
            refuse(
                user,
                (
                    ResponseError::UnacceptableCredential,
                    "Username must not be empty",
                ),
            );
            continue;
        }
        let Some(m) = ScramMechanism::from_kafka_type(d.mechanism) else {
            refuse(
                user,
                (
                    ResponseError::UnsupportedSaslMechanism,
                    "Unknown SCRAM mechanism",
                ),
            );
            continue;
        };
        if meta.scram_credential(user, m.name()).is_none() {
            refuse(
                user,
                (
                    ResponseError::ResourceNotFound,
                    "Attempt to delete a user credential that does not exist",
                ),
            );
            continue;
        }
        deletions.push((user.to_string(), m.name().to_string()));
    }
    let mut upserts = Vec::new();
    for u in &req.upsertions {
        let user = u.name.as_str();
        let check = || -> Result<ScramMechanism, Refusal> {
            if user.is_empty() {
                return Err((
                    ResponseError::UnacceptableCredential,
                    "Username must not be empty",
                ));
            }
            let m = ScramMechanism::from_kafka_type(u.mechanism).ok_or((
                ResponseError::UnsupportedSaslMechanism,
                "Unknown SCRAM mechanism",
            ))?;
            if u.iterations < MIN_ITERATIONS as i32 {
                return Err((ResponseError::UnacceptableCredential, "Too few iterations"));
            }
            if u.iterations > MAX_ITERATIONS as i32 {
                return Err((ResponseError::UnacceptableCredential, "Too many iterations"));
            }
            if u.salt.is_empty() || u.salted_password.is_empty() {
                return Err((
                    ResponseError::UnacceptableCredential,
                    "A salt and a salted password are needed",
                ));
            }
            Ok(m)
        };
        match check() {
            Err(r) => refuse(user, r),
            Ok(m) => {
                let c = ScramCredential::from_salted(
                    m,
                    u.salt.to_vec(),
                    u.iterations as u32,
                    &u.salted_password,
                );
                upserts.push(ScramUpsert {
                    user: user.to_string(),
                    mechanism: m.name().to_string(),
                    credential: ScramRecord {
                        salt: c.salt,
                        iterations: c.iterations,
                        stored_key: c.stored_key,
                        server_key: c.server_key,
                    },
                });
            }
        }
    }
    // A user with any refusal has none of its changes made.
    deletions.retain(|(u, _)| !refused.contains_key(u));
    upserts.retain(|u| !refused.contains_key(&u.user));
    let broker = broker.clone();
    Ok(Reply::Later(Box::pin(async move {
        let applied: BTreeMap<String, Option<(i16, String)>> =
            if deletions.is_empty() && upserts.is_empty() {
                BTreeMap::new()
            } else {
                let users: Vec<String> = deletions
                    .iter()
                    .map(|(u, _)| u.clone())
                    .chain(upserts.iter().map(|u| u.user.clone()))
                    .collect();
                let cmd = MetadataCommand::AlterScramCredentials { upserts, deletions };
                let outcome = broker
                    .cluster
                    .propose(cmd, TIMEOUT)
                    .await
                    .err()
                    .map(|e| (e.code().code(), e.to_string()));
                users.into_iter().map(|u| (u, outcome.clone())).collect()
            };
        let results = order
            .iter()
            .map(|user| {
                let (code, message) = match (refused.get(user), applied.get(user)) {
                    (Some((e, m)), _) => (e.code(), Some(m.to_string())),
                    (None, Some(Some((code, m)))) => (*code, Some(m.clone())),
                    _ => (0, None),
                };
                AlterUserScramCredentialsResult::default()
                    .with_user(StrBytes::from_string(user.clone()))
                    .with_error_code(code)
                    .with_error_message(message.map(StrBytes::from_string))
            })
            .collect();
        let resp = AlterUserScramCredentialsResponse::default().with_results(results);
        Response::encode(&resp, version, 0)
    })))
}

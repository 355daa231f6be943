//! DescribeUserScramCredentials (key 50): which SCRAM mechanisms each user
//! has a credential for, and its iterations (never the credential), from
//! the metadata; `kafka-configs --describe --entity-type users`.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use kafka_protocol::protocol::StrBytes;

use crate::authz::{AclOperation, Authz};
use crate::broker::Broker;
use crate::response::{HandlerError, Reply, Response, decode};
use crate::sasl::scram::ScramMechanism;

pub fn handle(
    broker: &Arc<Broker>,
    body: &mut Bytes,
    version: i16,
    authz: &Authz,
) -> Result<Reply, HandlerError> {
    let req: DescribeUserScramCredentialsRequest =
        decode(body, "DescribeUserScramCredentials", version)?;
    if !authz.cluster(AclOperation::Describe) {
        // As Kafka: the error at the top and on each user asked for.
        let code = ResponseError::ClusterAuthorizationFailed;
        let message = "DESCRIBE on the cluster is needed to describe credentials";
        let results = req
            .users
            .iter()
            .flatten()
            .map(|u| {
                DescribeUserScramCredentialsResult::default()
                    .with_user(u.name.clone())
                    .with_error_code(code.code())
                    .with_error_message(Some(StrBytes::from_static_str(message)))
            })
            .collect();
        let resp = DescribeUserScramCredentialsResponse::default()
            .with_error_code(code.code())
            .with_error_message(Some(StrBytes::from_static_str(message)))
            .with_results(results);
        return Ok(Reply::Ready(Response::encode(&resp, version, code.code())?));
    }
    let meta = broker.cluster.metadata();
    let infos = |user: &str| -> Vec<CredentialInfo> {
        meta.scram
            .get(user)
            .into_iter()
            .flatten()
            .filter_map(|(name, c)| {
                Some(
                    CredentialInfo::default()
                        .with_mechanism(ScramMechanism::from_name(name)?.kafka_type())
                        .with_iterations(c.iterations as i32),
                )
            })
            .collect()
    };
    let result = |user: &str, code: Option<ResponseError>, message: &str| {
        DescribeUserScramCredentialsResult::default()
            .with_user(StrBytes::from_string(user.to_string()))
            .with_error_code(code.map_or(0, |c| c.code()))
            .with_error_message(code.map(|_| StrBytes::from_string(message.to_string())))
    };
    let results = match req.users.filter(|u| !u.is_empty()) {
        // All users (asked as null or as an empty list).
        None => meta
            .scram
            .keys()
            .map(|u| result(u, None, "").with_credential_infos(infos(u)))
            .collect(),
        Some(users) => {
            let mut seen = HashSet::new();
            let mut twice = HashSet::new();
            for u in &users {
                if !seen.insert(u.name.as_str()) {
                    twice.insert(u.name.as_str());
                }
            }
            let mut out: Vec<DescribeUserScramCredentialsResult> = Vec::new();
            let mut done = HashSet::new();
            for u in &users {
                let name = u.name.as_str();
                if !done.insert(name) {
                    continue;
                }
                out.push(if twice.contains(name) {
                    result(
                        name,
                        Some(ResponseError::DuplicateResource),
                        "Cannot describe SCRAM credentials for the same user twice in a single request",
                    )
                } else {
                    let i = infos(name);
                    if i.is_empty() {
                        result(
                            name,
                            Some(ResponseError::ResourceNotFound),
                            "Attempt to describe a user credential that does not exist",
                        )
                    } else {
                        result(name, None, "").with_credential_infos(i)
                    }
                });
            }
            out
        }
    };
    let resp = DescribeUserScramCredentialsResponse::default().with_results(results);
    Ok(Reply::Ready(Response::encode(&resp, version, 0)?))
}

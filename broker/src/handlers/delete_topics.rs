//! DeleteTopics (key 20): by name (v1-5) or by name or topic id (v6).

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use tracing::info;
use uuid::Uuid;

use crate::authz::{AclOperation, Authz};
use crate::broker::Broker;
use crate::response::{HandlerError, Reply, Response, decode};

pub fn handle(
    broker: &Arc<Broker>,
    body: &mut Bytes,
    version: i16,
    authz: &Authz,
) -> Result<Reply, HandlerError> {
    let request: DeleteTopicsRequest = decode(body, "DeleteTopics", version)?;
    let wanted: Vec<(Option<TopicName>, Uuid)> = if version >= 6 {
        request
            .topics
            .into_iter()
            .map(|t| (t.name, t.topic_id))
            .collect()
    } else {
        request
            .topic_names
            .into_iter()
            .map(|n| (Some(n), Uuid::nil()))
            .collect()
    };
    // Each topic is either answered now or deleted through the metadata
    // group below (awaited in request order).
    let steps: Vec<Step> = wanted
        .into_iter()
        .map(|(name, id)| {
            let resolved = match &name {
                Some(n) => Ok(n.as_str().to_string()),
                None => broker
                    .cluster
                    .metadata()
                    .topics
                    .iter()
                    .find(|(_, t)| t.id == *id.as_bytes())
                    .map(|(name, _)| name.clone())
                    .ok_or(ResponseError::UnknownTopicId.code()),
            };
            let result = DeletableTopicResult::default()
                .with_name(name.clone())
                .with_topic_id(id);
            let name = match resolved {
                Ok(n) => n,
                Err(code) => return Step::Answered(result.with_error_code(code)),
            };
            // DESCRIBE, then DELETE, as Kafka checks (either refusal is
            // TOPIC_AUTHORIZATION_FAILED, telling nothing of existence).
            if !authz.topic(AclOperation::Describe, &name)
                || !authz.topic(AclOperation::Delete, &name)
            {
                return Step::Answered(
                    result.with_error_code(ResponseError::TopicAuthorizationFailed.code()),
                );
            }
            if crate::topics::is_internal(&name) {
                return Step::Answered(
                    result
                        .with_error_code(ResponseError::InvalidTopicException.code())
                        .with_error_message(Some(StrBytes::from_string(format!(
                            "{name} is an internal topic and cannot be deleted"
                        )))),
                );
            }
            Step::Delete(result, name)
        })
        .collect();
    let broker = broker.clone();
    Ok(Reply::Later(Box::pin(async move {
        let mut responses = Vec::with_capacity(steps.len());
        for step in steps {
            responses.push(match step {
                Step::Answered(done) => done,
                Step::Delete(result, name) => match crate::topics::delete(&broker, &name).await {
                    Ok(id) => {
                        info!(topic = name, "deleted topic");
                        result
                            .with_name(Some(TopicName(StrBytes::from_string(name))))
                            .with_topic_id(Uuid::from_bytes(id))
                    }
                    Err(e) => result
                        .with_error_code(e.code())
                        .with_error_message(Some(StrBytes::from_string(e.to_string()))),
                },
            });
        }
        let response = DeleteTopicsResponse::default().with_responses(responses);
        Response::encode(&response, version, 0)
    })))
}

/// A topic of the request: answered at once, or to delete (by name).
enum Step {
    Answered(DeletableTopicResult),
    Delete(DeletableTopicResult, String),
}

//! The SQL gateway's INSERTs, produced through the Kafka produce path: the
//! same batch validation, timestamp policy, metrics and acks=all
//! durability a Kafka producer gets.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use karnak_sql::{ProduceError, Producer};

use crate::broker::Broker;
use crate::handlers::{now_ms, produce};

pub struct BrokerProducer {
    pub broker: Arc<Broker>,
    /// Where a write to a partition led elsewhere is forwarded.
    pub remote: Arc<crate::sql_remote::BrokerRemote>,
}

const UNKNOWN_TOPIC_OR_PARTITION: i16 = ResponseError::UnknownTopicOrPartition.code();
const INVALID_TOPIC_EXCEPTION: i16 = ResponseError::InvalidTopicException.code();
const KAFKA_STORAGE_ERROR: i16 = ResponseError::KafkaStorageError.code();
const NOT_LEADER_OR_FOLLOWER: i16 = ResponseError::NotLeaderOrFollower.code();

#[async_trait::async_trait]
impl Producer for BrokerProducer {
    async fn produce(
        &self,
        topic: &str,
        partition: i32,
        records: Bytes,
    ) -> Result<i64, ProduceError> {
        if crate::topics::is_internal(topic) {
            return Err(ProduceError {
                code: INVALID_TOPIC_EXCEPTION,
                message: format!("{topic} is written by the broker only"),
            });
        }
        let led = self
            .broker
            .replicas
            .leader_for_append(topic, partition, true);
        if led.as_ref().err() == Some(&NOT_LEADER_OR_FOLLOWER) {
            // A follower or no replica here: the leader takes it.
            return self.remote.produce(topic, partition, records).await;
        }
        let (log, epoch) = led.map_err(|code| ProduceError {
            code,
            message: if code == UNKNOWN_TOPIC_OR_PARTITION {
                format!("{topic}-{partition} does not exist")
            } else {
                format!("this broker cannot take writes to {topic}-{partition} now")
            },
        })?;
        let broker = self.broker.clone();
        let (topic_name, index) = (topic.to_string(), partition);
        let fsync = self.broker.config.flush_on_acks_all;
        // Appends and fsync are file I/O: off the reactor.
        let appended = karnak_storage::blocking::spawn(move || {
            let (log, info) = produce::append(&log, records, now_ms(), epoch, &|_| Ok(()))
                .map_err(|(code, message)| ProduceError {
                    code,
                    message: message.unwrap_or_else(|| "append failed".into()),
                })?;
            broker.replicas.after_append(&topic_name, index, &log);
            if fsync {
                log.flush_up_to(info.last_offset + 1)
                    .map_err(|e| ProduceError {
                        code: KAFKA_STORAGE_ERROR,
                        message: format!("fsync failed: {e}"),
                    })?;
            }
            Ok((log, info))
        })
        .await
        .map_err(|e| ProduceError {
            code: ResponseError::UnknownServerError.code(),
            message: format!("produce task: {e}"),
        })??;
        let (log, info) = appended;
        if log.is_replicated() {
            // Every in-sync replica has it before the INSERT answers.
            let target = info.last_offset + 1;
            let mut hw = log.subscribe();
            let reached = tokio::time::timeout(
                std::time::Duration::from_secs(30),
                hw.wait_for(|h| *h >= target),
            )
            .await;
            if !matches!(reached, Ok(Ok(_))) {
                return Err(ProduceError {
                    code: ResponseError::RequestTimedOut.code(),
                    message: "the in-sync replicas did not confirm the write in 30 s".into(),
                });
            }
        }
        Ok(info.base_offset)
    }
}

/// The SQL gateway's CREATE TABLE and ALTER TABLE, through the metadata
/// log as CreateTopics and IncrementalAlterConfigs go.
pub struct BrokerTopicAdmin(pub Arc<Broker>);

fn admin_error(e: crate::topics::TopicError) -> karnak_sql::ddl::AdminError {
    match e {
        crate::topics::TopicError::Storage(e) => e.into(),
        crate::topics::TopicError::Cluster(crate::cluster::ClusterError::Refused(
            karnak_coordinator::metadata::MetadataError::TopicExists(name),
        )) => karnak_storage::StorageError::TopicAlreadyExists(name).into(),
        crate::topics::TopicError::Cluster(crate::cluster::ClusterError::Refused(
            karnak_coordinator::metadata::MetadataError::UnknownTopic(name),
        )) => karnak_storage::StorageError::UnknownTopic(name).into(),
        other => karnak_sql::ddl::AdminError::Unavailable(other.to_string()),
    }
}

#[async_trait::async_trait]
impl karnak_sql::ddl::TopicAdmin for BrokerTopicAdmin {
    async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: std::collections::BTreeMap<String, String>,
    ) -> Result<(), karnak_sql::ddl::AdminError> {
        let new = crate::topics::NewTopic {
            name: name.to_string(),
            partitions,
            replication_factor: -1,
            assignments: None,
            configs,
        };
        crate::topics::create(&self.0, new)
            .await
            .map(|_| ())
            .map_err(admin_error)
    }

    async fn alter_topic_configs(
        &self,
        name: &str,
        set: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), karnak_sql::ddl::AdminError> {
        let mut configs = self
            .0
            .cluster
            .metadata()
            .topics
            .get(name)
            .map(|t| t.configs.clone())
            .ok_or_else(|| karnak_storage::StorageError::UnknownTopic(name.to_string()))?;
        configs.extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
        crate::topics::set_configs(&self.0, name, configs)
            .await
            .map(|_| ())
            .map_err(admin_error)
    }
}

/// The broker's ACLs for SQL statements: the SQL user is `User:<name>`
/// (with `--sql-auth trust` no one has proved a name, so every SQL user is
/// `User:ANONYMOUS`), checked as the Kafka API doing the same is.
pub struct SqlAcls {
    pub config: Arc<crate::authz::AuthorizerConfig>,
    pub cluster: Arc<crate::cluster::ClusterNode>,
    pub trust: bool,
}

impl SqlAcls {
    fn authz(&self, user: &str, host: &str) -> crate::authz::Authz {
        let principal: Arc<str> = if self.trust || user.is_empty() {
            Arc::from(crate::authz::ANONYMOUS)
        } else {
            Arc::from(format!("User:{user}"))
        };
        crate::authz::Authz::new(
            &self.config,
            principal,
            Arc::from(host),
            self.cluster.metadata(),
        )
    }
}

impl karnak_sql::access::TopicAccess for SqlAcls {
    fn allows(&self, user: &str, host: &str, op: karnak_sql::access::TopicOp, topic: &str) -> bool {
        use crate::authz::AclOperation;
        use karnak_sql::access::TopicOp;
        let authz = self.authz(user, host);
        match op {
            TopicOp::Read => authz.topic(AclOperation::Read, topic),
            TopicOp::Write => authz.topic(AclOperation::Write, topic),
            TopicOp::Create => authz.may_create_topic(topic),
            TopicOp::AlterConfigs => authz.topic(AclOperation::AlterConfigs, topic),
            TopicOp::Describe => authz.topic(AclOperation::Describe, topic),
        }
    }

    fn describable(&self, user: &str, host: &str, mut topics: Vec<String>) -> Vec<String> {
        // One authorizer view for the whole list (`\dt` over many topics).
        let authz = self.authz(user, host);
        topics.retain(|t| authz.topic(crate::authz::AclOperation::Describe, t));
        topics
    }
}

/// SQL logins (SCRAM-SHA-256 over pgwire) against the same credentials
/// Kafka clients log in with: the metadata's SCRAM-SHA-256 ones.
pub struct SqlLogins {
    pub cluster: Arc<crate::cluster::ClusterNode>,
    /// Keys the salt shown for an unknown user.
    pub secret: Vec<u8>,
}

struct SqlScram {
    server: crate::sasl::scram::ScramServer,
    cluster: Arc<crate::cluster::ClusterNode>,
    secret: Vec<u8>,
}

impl karnak_sql::auth::ScramLogins for SqlLogins {
    fn begin(&self, user: &str) -> Box<dyn karnak_sql::auth::ScramExchange> {
        Box::new(SqlScram {
            server: crate::sasl::scram::ScramServer::for_user(
                crate::sasl::scram::ScramMechanism::Sha256,
                user,
            ),
            cluster: self.cluster.clone(),
            secret: self.secret.clone(),
        })
    }
}

impl karnak_sql::auth::ScramExchange for SqlScram {
    fn step(&mut self, message: &[u8]) -> karnak_sql::auth::ScramStep {
        use crate::sasl::scram::{ScramMechanism, Step};
        use karnak_sql::auth::ScramStep;
        let meta = self.cluster.metadata();
        let lookup = |u: &str| crate::sasl::credential(&meta, u, ScramMechanism::Sha256);
        let fake = |u: &str| crate::sasl::fake_salt(&self.secret, u);
        match self.server.step(message, lookup, fake) {
            Step::Continue(first) => ScramStep::Continue(first),
            Step::Done { last, .. } => ScramStep::Done(last),
            Step::Failed(reason) => ScramStep::Failed(reason),
        }
    }
}

//! One module per Kafka API. `dispatch` routes a frame to its handler after
//! checking the API and version against the table in `karnak-protocol`.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::Decodable;
use karnak_protocol::{api_versions as table, frame};

use crate::authz::Authz;
use crate::broker::Broker;
use crate::response::{HandlerError, Reply};
use karnak_coordinator::metadata::ClusterMetadata;

pub mod add_offsets_to_txn;
pub mod add_partitions_to_txn;
mod alter_client_quotas;
pub mod alter_configs;
mod alter_partition_reassignments;
mod alter_user_scram_credentials;
pub mod api_versions;
pub mod consumer_group_describe;
pub mod consumer_group_heartbeat;
pub mod create_acls;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_acls;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_acls;
mod describe_client_quotas;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_log_dirs;
pub mod describe_producers;
pub mod describe_topic_partitions;
pub mod describe_transactions;
mod describe_user_scram_credentials;
mod elect_leaders;
pub mod end_txn;
pub mod fetch;
mod fetch_legacy;
pub mod find_coordinator;
pub mod group_common;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
mod leader_hint;
pub mod leave_group;
mod legacy;
pub mod list_groups;
pub mod list_offsets;
mod list_partition_reassignments;
pub mod list_transactions;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
mod sasl_authenticate;
mod sasl_handshake;
pub mod sync_group;
pub mod topic_common;
pub mod txn_common;
pub mod txn_offset_commit;
mod unsupported;
mod write_txn_markers;

/// A dispatched request: what the writer needs to answer it in order.
pub struct Dispatched {
    pub correlation_id: i32,
    pub header_version: i16,
    pub api: &'static str,
    pub reply: Reply,
}

/// Kafka API name as it appears in metrics and logs.
pub fn api_name(key: ApiKey) -> &'static str {
    match key {
        ApiKey::Produce => "Produce",
        ApiKey::Fetch => "Fetch",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::Metadata => "Metadata",
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::CreateTopics => "CreateTopics",
        ApiKey::DeleteTopics => "DeleteTopics",
        ApiKey::DescribeCluster => "DescribeCluster",
        ApiKey::ElectLeaders => "ElectLeaders",
        ApiKey::AlterPartitionReassignments => "AlterPartitionReassignments",
        ApiKey::ListPartitionReassignments => "ListPartitionReassignments",
        ApiKey::DescribeConfigs => "DescribeConfigs",
        ApiKey::FindCoordinator => "FindCoordinator",
        ApiKey::JoinGroup => "JoinGroup",
        ApiKey::SyncGroup => "SyncGroup",
        ApiKey::Heartbeat => "Heartbeat",
        ApiKey::LeaveGroup => "LeaveGroup",
        ApiKey::OffsetCommit => "OffsetCommit",
        ApiKey::OffsetFetch => "OffsetFetch",
        ApiKey::ListGroups => "ListGroups",
        ApiKey::DescribeGroups => "DescribeGroups",
        ApiKey::DeleteGroups => "DeleteGroups",
        ApiKey::OffsetDelete => "OffsetDelete",
        ApiKey::ConsumerGroupHeartbeat => "ConsumerGroupHeartbeat",
        ApiKey::ConsumerGroupDescribe => "ConsumerGroupDescribe",
        ApiKey::InitProducerId => "InitProducerId",
        ApiKey::AddPartitionsToTxn => "AddPartitionsToTxn",
        ApiKey::AddOffsetsToTxn => "AddOffsetsToTxn",
        ApiKey::EndTxn => "EndTxn",
        ApiKey::WriteTxnMarkers => "WriteTxnMarkers",
        ApiKey::TxnOffsetCommit => "TxnOffsetCommit",
        ApiKey::DescribeProducers => "DescribeProducers",
        ApiKey::DescribeTransactions => "DescribeTransactions",
        ApiKey::ListTransactions => "ListTransactions",
        ApiKey::CreatePartitions => "CreatePartitions",
        ApiKey::DeleteRecords => "DeleteRecords",
        ApiKey::AlterConfigs => "AlterConfigs",
        ApiKey::IncrementalAlterConfigs => "IncrementalAlterConfigs",
        ApiKey::DescribeLogDirs => "DescribeLogDirs",
        ApiKey::DescribeTopicPartitions => "DescribeTopicPartitions",
        ApiKey::OffsetForLeaderEpoch => "OffsetForLeaderEpoch",
        ApiKey::DescribeAcls => "DescribeAcls",
        ApiKey::CreateAcls => "CreateAcls",
        ApiKey::DeleteAcls => "DeleteAcls",
        ApiKey::DescribeClientQuotas => "DescribeClientQuotas",
        ApiKey::AlterClientQuotas => "AlterClientQuotas",
        _ => "Other",
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error(transparent)]
    Protocol(#[from] karnak_protocol::ProtocolError),
    #[error("{api:?} v{version} is not a version we serve (closing, as Kafka does)")]
    UnsupportedVersion { api: ApiKey, version: i16 },
    #[error("bad request header for {api:?} v{version}: {reason}")]
    Header {
        api: ApiKey,
        version: i16,
        reason: String,
    },
    #[error(transparent)]
    Handler(#[from] HandlerError),
    #[error(
        "{api:?} before SASL authentication (only ApiVersions, SaslHandshake and SaslAuthenticate are served until then)"
    )]
    NotAuthenticated { api: ApiKey },
    #[error("{api:?} after the SASL login expired without a new one (KIP-368)")]
    LoginExpired { api: ApiKey },
    #[error("{api:?} v{version}: {source}")]
    Legacy {
        api: ApiKey,
        version: i16,
        source: karnak_protocol::legacy::LegacyError,
    },
}

/// Who is asking: the connection's peer, the listener it came in on and
/// where its SASL login stands.
pub struct Session {
    pub peer: std::net::SocketAddr,
    pub listener: Arc<str>,
    pub auth: Arc<crate::sasl::ConnAuth>,
    /// From the client's certificate, when it sent one.
    pub tls_principal: Option<Arc<str>>,
    /// The peer's address as ACLs name hosts, made once per connection.
    pub host: Arc<str>,
    /// Closed while the client is throttled (KIP-219).
    pub gate: Arc<crate::quotas::MuteGate>,
    /// True once the connection stops reading (the client closed it, or it
    /// is being closed): a fetch parked on a long poll answers at once
    /// instead of holding the connection open for its client's wait.
    pub hangup: tokio::sync::watch::Receiver<bool>,
}

impl Session {
    /// The principal ACLs are checked against: the SASL login's user, else
    /// the client certificate's, else `User:ANONYMOUS` (as Kafka).
    pub fn principal(&self) -> Arc<str> {
        self.auth
            .principal()
            .or_else(|| self.tls_principal.clone())
            .unwrap_or_else(|| Arc::from(crate::authz::ANONYMOUS))
    }

    /// Who quotas count this request for: the principal's name (Kafka's
    /// quota user) and the client id.
    fn quota_client(&self, header: &RequestHeader) -> crate::quotas::QuotaClient {
        let principal = self.principal();
        let user = principal
            .split_once(':')
            .map_or(&*principal, |(_, name)| name)
            .to_string();
        crate::quotas::QuotaClient {
            user,
            client_id: header.client_id.as_deref().unwrap_or("").to_string(),
            gate: self.gate.clone(),
        }
    }

    /// What this request's caller may do, as of `meta`.
    fn authz(&self, broker: &Broker, meta: &Arc<ClusterMetadata>) -> Authz {
        match &broker.config.authorizer {
            None => Authz::allow_all(),
            Some(config) => Authz::new(config, self.principal(), self.host.clone(), meta.clone()),
        }
    }
}

pub fn dispatch(
    broker: &Arc<Broker>,
    frame: Bytes,
    session: &Session,
) -> Result<Dispatched, DispatchError> {
    let prefix = frame::peek_request_prefix(&frame)?;
    let key = ApiKey::try_from(prefix.api_key)
        .map_err(|_| karnak_protocol::ProtocolError::UnknownApiKey(prefix.api_key))?;
    let version = prefix.api_version;
    match session.auth.gate(key) {
        crate::sasl::Gate::Serve => {}
        crate::sasl::Gate::NotAuthenticated => {
            return Err(DispatchError::NotAuthenticated { api: key });
        }
        crate::sasl::Gate::Expired => return Err(DispatchError::LoginExpired { api: key }),
    }

    // KIP-511: a client newer than us gets a v0-format answer listing our
    // versions, so it can retry with one we know.
    if key == ApiKey::ApiVersions && !table::is_supported(prefix.api_key, version) {
        return Ok(Dispatched {
            correlation_id: prefix.correlation_id,
            header_version: 0,
            api: "ApiVersions",
            reply: Reply::Ready(api_versions::unsupported_version_response()?),
        });
    }
    if !table::is_supported(prefix.api_key, version) {
        if table::served(prefix.api_key).is_none() {
            // An API we do not serve yet: answer UNSUPPORTED_VERSION in its own
            // response format where the crate can encode that version.
            if let Some(reply) = unsupported::response(key, version) {
                return Ok(Dispatched {
                    correlation_id: prefix.correlation_id,
                    header_version: key.response_header_version(version),
                    api: "Unsupported",
                    reply: Reply::Ready(reply?),
                });
            }
        }
        return Err(DispatchError::UnsupportedVersion { api: key, version });
    }

    let (request_header_version, header_version) = table::header_versions(key, version);
    let mut body = frame;
    let header = RequestHeader::decode(&mut body, request_header_version).map_err(|e| {
        DispatchError::Header {
            api: key,
            version,
            reason: format!("{e:#}"),
        }
    })?;
    let span = tracing::debug_span!(
        "request",
        api = api_name(key),
        version,
        correlation_id = header.correlation_id,
        client_id = header.client_id.as_deref().unwrap_or("")
    );
    let _enter = span.enter();
    let started = std::time::Instant::now();
    // One metadata snapshot for the request's ACL and quota checks; the
    // quota client's strings are built only when some quota is set.
    let meta = broker.cluster.metadata();
    let ctx = RequestContext {
        authz: session.authz(broker, &meta),
        quota_client: (!meta.quotas.is_empty()).then(|| session.quota_client(&header)),
    };
    let reply = if table::is_legacy(prefix.api_key, version)
        && !matches!(key, ApiKey::Produce | ApiKey::Fetch)
    {
        legacy::serve(key, version, &body, |body, target| {
            route(broker, key, body, target, &header, session, &ctx)
        })?
    } else {
        route(broker, key, &mut body, version, &header, session, &ctx)?
    };
    // request_percentage: the time handling took here, in percent of a
    // thread (Kafka counts its request threads' time the same way).
    if let Some(client) = &ctx.quota_client {
        let percent_seconds = started.elapsed().as_secs_f64() * 100.0;
        broker.quotas.record(
            &meta,
            crate::quotas::Kind::Request,
            client,
            percent_seconds,
            false,
        );
    }
    Ok(Dispatched {
        correlation_id: header.correlation_id,
        header_version,
        api: api_name(key),
        reply,
    })
}

/// What the request's checks need, made once per request.
struct RequestContext {
    authz: Authz,
    /// Set only when some quota exists.
    quota_client: Option<crate::quotas::QuotaClient>,
}

/// Hands a decoded header's body to the API's handler.
fn route(
    broker: &Arc<Broker>,
    key: ApiKey,
    body: &mut Bytes,
    version: i16,
    header: &RequestHeader,
    session: &Session,
    ctx: &RequestContext,
) -> Result<Reply, DispatchError> {
    let peer = session.peer;
    let listener = &session.listener;
    let authz = &ctx.authz;
    let quota_client = &ctx.quota_client;
    let reply = match key {
        ApiKey::ApiVersions => api_versions::handle(body, version)?,
        ApiKey::SaslHandshake => sasl_handshake::handle(broker, body, version, session)?,
        ApiKey::SaslAuthenticate => sasl_authenticate::delay_failure(
            sasl_authenticate::handle(broker, body, version, session)?,
            broker
                .sasl
                .as_ref()
                .map_or(std::time::Duration::ZERO, |s| s.failed_delay),
        ),
        ApiKey::Metadata => metadata::handle(broker, body, version, listener, authz)?,
        ApiKey::Produce => produce::handle(
            broker,
            body,
            version,
            listener,
            authz,
            quota_client.as_ref(),
        )?,
        ApiKey::Fetch => fetch::handle(
            broker,
            body,
            version,
            listener,
            authz,
            quota_client.as_ref(),
            &session.hangup,
        )?,
        ApiKey::ListOffsets => list_offsets::handle(broker, body, version, authz)?,
        ApiKey::CreateTopics => create_topics::handle(broker, body, version, authz)?,
        ApiKey::DeleteTopics => delete_topics::handle(broker, body, version, authz)?,
        ApiKey::DescribeCluster => {
            describe_cluster::handle(broker, body, version, listener, authz)?
        }
        ApiKey::ElectLeaders => elect_leaders::handle(broker, body, version, authz)?,
        ApiKey::AlterPartitionReassignments => {
            alter_partition_reassignments::handle(broker, body, version, authz)?
        }
        ApiKey::ListPartitionReassignments => {
            list_partition_reassignments::handle(broker, body, version, authz)?
        }
        ApiKey::DescribeConfigs => describe_configs::handle(broker, body, version, authz)?,
        ApiKey::FindCoordinator => {
            find_coordinator::handle(broker, body, version, listener, authz)?
        }
        ApiKey::JoinGroup => {
            join_group::handle(broker, body, version, &caller(header, peer), authz)?
        }
        ApiKey::ConsumerGroupHeartbeat => {
            consumer_group_heartbeat::handle(broker, body, version, &caller(header, peer), authz)?
        }
        ApiKey::ConsumerGroupDescribe => {
            consumer_group_describe::handle(broker, body, version, authz)?
        }
        ApiKey::SyncGroup => sync_group::handle(broker, body, version, authz)?,
        ApiKey::Heartbeat => heartbeat::handle(broker, body, version, authz)?,
        ApiKey::LeaveGroup => leave_group::handle(broker, body, version, authz)?,
        ApiKey::OffsetCommit => offset_commit::handle(broker, body, version, authz)?,
        ApiKey::OffsetFetch => offset_fetch::handle(broker, body, version, authz)?,
        ApiKey::ListGroups => list_groups::handle(broker, body, version, authz)?,
        ApiKey::DescribeGroups => describe_groups::handle(broker, body, version, authz)?,
        ApiKey::DeleteGroups => delete_groups::handle(broker, body, version, authz)?,
        ApiKey::OffsetDelete => offset_delete::handle(broker, body, version, authz)?,
        ApiKey::InitProducerId => init_producer_id::handle(broker, body, version, authz)?,
        ApiKey::AddPartitionsToTxn => add_partitions_to_txn::handle(broker, body, version, authz)?,
        ApiKey::AddOffsetsToTxn => add_offsets_to_txn::handle(broker, body, version, authz)?,
        ApiKey::EndTxn => end_txn::handle(broker, body, version, authz)?,
        ApiKey::WriteTxnMarkers => write_txn_markers::handle(broker, body, version, authz)?,
        ApiKey::TxnOffsetCommit => txn_offset_commit::handle(broker, body, version, authz)?,
        ApiKey::DescribeProducers => describe_producers::handle(broker, body, version, authz)?,
        ApiKey::DescribeTransactions => {
            describe_transactions::handle(broker, body, version, authz)?
        }
        ApiKey::ListTransactions => list_transactions::handle(broker, body, version, authz)?,
        ApiKey::CreatePartitions => create_partitions::handle(broker, body, version, authz)?,
        ApiKey::DeleteRecords => delete_records::handle(broker, body, version, authz)?,
        ApiKey::AlterConfigs => alter_configs::handle(broker, body, version, authz)?,
        ApiKey::IncrementalAlterConfigs => {
            incremental_alter_configs::handle(broker, body, version, authz)?
        }
        ApiKey::DescribeLogDirs => describe_log_dirs::handle(broker, body, version, authz)?,
        ApiKey::DescribeTopicPartitions => {
            describe_topic_partitions::handle(broker, body, version, authz)?
        }
        ApiKey::OffsetForLeaderEpoch => {
            offset_for_leader_epoch::handle(broker, body, version, authz)?
        }
        ApiKey::DescribeUserScramCredentials => {
            describe_user_scram_credentials::handle(broker, body, version, authz)?
        }
        ApiKey::AlterUserScramCredentials => {
            alter_user_scram_credentials::handle(broker, body, version, authz)?
        }
        ApiKey::DescribeClientQuotas => {
            describe_client_quotas::handle(broker, body, version, authz)?
        }
        ApiKey::AlterClientQuotas => alter_client_quotas::handle(broker, body, version, authz)?,
        ApiKey::DescribeAcls => describe_acls::handle(broker, body, version, authz)?,
        ApiKey::CreateAcls => create_acls::handle(broker, body, version, authz)?,
        ApiKey::DeleteAcls => delete_acls::handle(broker, body, version, authz)?,
        other => {
            return Err(DispatchError::UnsupportedVersion {
                api: other,
                version,
            });
        }
    };
    Ok(reply)
}

fn caller(header: &RequestHeader, peer: std::net::SocketAddr) -> group_common::Caller {
    group_common::Caller {
        client_id: header.client_id.as_deref().unwrap_or("").to_string(),
        // Kafka shows the host as "/<ip>".
        host: format!("/{}", peer.ip()),
    }
}

/// Current wall-clock time in Kafka's unit (ms since the epoch).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Maps storage errors to Kafka error codes.
/// The Kafka error a producer gets for a refused idempotent/transactional write.
pub fn producer_error_code(e: &karnak_storage::log::producer_state::ProducerError) -> i16 {
    use karnak_storage::log::producer_state::ProducerError as P;
    let code = match e {
        P::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
        P::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
        P::InvalidTxnState { .. } => ResponseError::InvalidTxnState,
        P::CoordinatorFenced { .. } => ResponseError::TransactionCoordinatorFenced,
    };
    code.code()
}

pub fn storage_error_code(e: &karnak_storage::StorageError) -> i16 {
    use karnak_storage::StorageError as E;
    let code = match e {
        E::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        E::UnknownTopic(_) => ResponseError::UnknownTopicOrPartition,
        E::RecordTooLarge { .. } => ResponseError::MessageTooLarge,
        E::InvalidTopic { .. } => ResponseError::InvalidTopicException,
        E::TopicAlreadyExists(_) => ResponseError::TopicAlreadyExists,
        E::InvalidPartitions(_) | E::PartitionsNotIncreased { .. } => {
            ResponseError::InvalidPartitions
        }
        E::InvalidConfig { .. } => ResponseError::InvalidConfig,
        E::Corrupt { .. } => ResponseError::CorruptMessage,
        E::KeylessRecordOnCompactedTopic { .. } => ResponseError::InvalidRecord,
        E::Producer(p) => return producer_error_code(p),
        E::Offline { .. } => ResponseError::KafkaStorageError,
        // A full disk: the append was rolled back and the partition stays
        // online, so a producer's retry succeeds once space is freed.
        E::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull => {
            ResponseError::KafkaStorageError
        }
        // Logged where it happens.
        _ => ResponseError::UnknownServerError,
    };
    code.code()
}

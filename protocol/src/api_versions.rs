//! The one table of Kafka APIs and versions Karnak serves. ApiVersions is
//! answered from it and every request is checked against it.

use kafka_protocol::messages::ApiKey;

/// One served API: the versions advertised in ApiVersions and answered,
/// and the lowest one the `kafka-protocol` crate decodes. Versions below
/// `crate_min` are the ones Kafka 4.0 dropped (KIP-896); they are served
/// through [`crate::legacy`], as Kafka 3.9 served them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServedApi {
    pub key: ApiKey,
    pub min: i16,
    pub max: i16,
    pub crate_min: i16,
}

const fn api(key: ApiKey, min: i16, max: i16) -> ServedApi {
    ServedApi {
        key,
        min,
        max,
        crate_min: min,
    }
}

/// An API whose versions from `min` up to `crate_min - 1` go through
/// [`crate::legacy`].
const fn with_legacy(key: ApiKey, crate_min: i16, max: i16) -> ServedApi {
    ServedApi {
        key,
        min: 0,
        max,
        crate_min,
    }
}

/// Served APIs, in api-key order. Upper bounds are what the `kafka-protocol`
/// crate decodes and our handlers implement.
pub const SERVED_APIS: &[ServedApi] = &[
    with_legacy(ApiKey::Produce, 3, 12),
    with_legacy(ApiKey::Fetch, 4, 17),
    with_legacy(ApiKey::ListOffsets, 1, 10),
    api(ApiKey::Metadata, 0, 12),
    with_legacy(ApiKey::OffsetCommit, 2, 9),
    with_legacy(ApiKey::OffsetFetch, 1, 9),
    api(ApiKey::FindCoordinator, 0, 6),
    api(ApiKey::JoinGroup, 0, 9),
    api(ApiKey::Heartbeat, 0, 4),
    api(ApiKey::LeaveGroup, 0, 5),
    api(ApiKey::SyncGroup, 0, 5),
    api(ApiKey::DescribeGroups, 0, 6),
    api(ApiKey::ListGroups, 0, 5),
    // Advertised from v0 as Kafka does (librdkafka looks for v0 before it
    // tries SCRAM); a v0 handshake, after which raw tokens would follow
    // outside Kafka's framing, is refused (UNSUPPORTED_VERSION).
    api(ApiKey::SaslHandshake, 0, 1),
    api(ApiKey::ApiVersions, 0, 4),
    with_legacy(ApiKey::CreateTopics, 2, 7),
    with_legacy(ApiKey::DeleteTopics, 1, 6),
    api(ApiKey::DeleteRecords, 0, 2),
    api(ApiKey::InitProducerId, 0, 4),
    with_legacy(ApiKey::OffsetForLeaderEpoch, 2, 4),
    api(ApiKey::AddPartitionsToTxn, 0, 4),
    api(ApiKey::AddOffsetsToTxn, 0, 3),
    api(ApiKey::EndTxn, 0, 3),
    api(ApiKey::WriteTxnMarkers, 1, 1),
    api(ApiKey::TxnOffsetCommit, 0, 3),
    with_legacy(ApiKey::DescribeAcls, 1, 3),
    with_legacy(ApiKey::CreateAcls, 1, 3),
    with_legacy(ApiKey::DeleteAcls, 1, 3),
    with_legacy(ApiKey::DescribeConfigs, 1, 4),
    api(ApiKey::AlterConfigs, 0, 2),
    with_legacy(ApiKey::DescribeLogDirs, 1, 4),
    api(ApiKey::SaslAuthenticate, 0, 2),
    api(ApiKey::CreatePartitions, 0, 3),
    api(ApiKey::DeleteGroups, 0, 2),
    api(ApiKey::ElectLeaders, 0, 2),
    api(ApiKey::IncrementalAlterConfigs, 0, 1),
    api(ApiKey::AlterPartitionReassignments, 0, 1),
    api(ApiKey::ListPartitionReassignments, 0, 0),
    api(ApiKey::OffsetDelete, 0, 0),
    api(ApiKey::DescribeClientQuotas, 0, 1),
    api(ApiKey::AlterClientQuotas, 0, 1),
    api(ApiKey::DescribeUserScramCredentials, 0, 0),
    api(ApiKey::AlterUserScramCredentials, 0, 0),
    api(ApiKey::DescribeCluster, 0, 1),
    api(ApiKey::DescribeProducers, 0, 0),
    api(ApiKey::DescribeTransactions, 0, 0),
    api(ApiKey::ListTransactions, 0, 1),
    api(ApiKey::ConsumerGroupHeartbeat, 0, 1),
    api(ApiKey::ConsumerGroupDescribe, 0, 1),
    api(ApiKey::DescribeTopicPartitions, 0, 0),
];

/// A feature flag (KIP-584) as ApiVersions v3+ and `kafka-features` show
/// it: the levels this broker supports and the one it runs at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Feature {
    pub name: &'static str,
    pub min: i16,
    pub max: i16,
    pub finalized: i16,
}

/// Features at a level above 0, so listed as finalized. Left out on
/// purpose, where Apache Kafka 4.4 finalizes them: `transaction.version` (at
/// 2 a Java producer switches to KIP-890's implicit AddPartitionsToTxn,
/// which is not served), `share.version` (no share groups),
/// `streams.version` (no KIP-1071 streams groups), `kraft.version`.
pub const FEATURES: &[Feature] = &[
    // Kafka 4.4's level; clients only display it.
    Feature {
        name: "metadata.version",
        min: 7,
        max: 33,
        finalized: 33,
    },
    // 1: the KIP-848 consumer group protocol is on.
    Feature {
        name: "group.version",
        min: 0,
        max: 1,
        finalized: 1,
    },
    // 1: eligible leader replicas are kept and elected (KIP-966).
    Feature {
        name: "eligible.leader.replicas.version",
        min: 0,
        max: 1,
        finalized: 1,
    },
];

/// The epoch of [`FEATURES`]: they never change on a running broker.
pub const FINALIZED_FEATURES_EPOCH: i64 = 1;

/// The served entry for an API key, if we serve it at all.
pub fn served(api_key: i16) -> Option<&'static ServedApi> {
    SERVED_APIS.iter().find(|a| a.key as i16 == api_key)
}

/// Whether `version` of `api_key` is one we decode and answer.
pub fn is_supported(api_key: i16, version: i16) -> bool {
    served(api_key).is_some_and(|a| (a.min..=a.max).contains(&version))
}

/// Whether `version` of `api_key` is served through [`crate::legacy`].
pub fn is_legacy(api_key: i16, version: i16) -> bool {
    served(api_key).is_some_and(|a| (a.min..a.crate_min).contains(&version))
}

/// The header versions to use for a request/response, for APIs the crate knows.
pub fn header_versions(key: ApiKey, version: i16) -> (i16, i16) {
    (
        key.request_header_version(version),
        key.response_header_version(version),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::Message;

    #[test]
    fn table_fits_what_the_crate_decodes() {
        use kafka_protocol::messages::*;
        let crate_ranges = [
            (ApiKey::Produce, ProduceRequest::VERSIONS),
            (ApiKey::Fetch, FetchRequest::VERSIONS),
            (ApiKey::ListOffsets, ListOffsetsRequest::VERSIONS),
            (ApiKey::Metadata, MetadataRequest::VERSIONS),
            (ApiKey::ApiVersions, ApiVersionsRequest::VERSIONS),
            (ApiKey::CreateTopics, CreateTopicsRequest::VERSIONS),
            (ApiKey::DeleteTopics, DeleteTopicsRequest::VERSIONS),
            (ApiKey::DescribeConfigs, DescribeConfigsRequest::VERSIONS),
            (ApiKey::DescribeCluster, DescribeClusterRequest::VERSIONS),
            (ApiKey::ElectLeaders, ElectLeadersRequest::VERSIONS),
            (
                ApiKey::AlterPartitionReassignments,
                AlterPartitionReassignmentsRequest::VERSIONS,
            ),
            (
                ApiKey::ListPartitionReassignments,
                ListPartitionReassignmentsRequest::VERSIONS,
            ),
            (ApiKey::OffsetCommit, OffsetCommitRequest::VERSIONS),
            (ApiKey::OffsetFetch, OffsetFetchRequest::VERSIONS),
            (ApiKey::FindCoordinator, FindCoordinatorRequest::VERSIONS),
            (ApiKey::JoinGroup, JoinGroupRequest::VERSIONS),
            (ApiKey::Heartbeat, HeartbeatRequest::VERSIONS),
            (ApiKey::LeaveGroup, LeaveGroupRequest::VERSIONS),
            (ApiKey::SyncGroup, SyncGroupRequest::VERSIONS),
            (ApiKey::DescribeGroups, DescribeGroupsRequest::VERSIONS),
            (ApiKey::ListGroups, ListGroupsRequest::VERSIONS),
            (ApiKey::DeleteGroups, DeleteGroupsRequest::VERSIONS),
            (ApiKey::OffsetDelete, OffsetDeleteRequest::VERSIONS),
            (ApiKey::InitProducerId, InitProducerIdRequest::VERSIONS),
            (
                ApiKey::AddPartitionsToTxn,
                AddPartitionsToTxnRequest::VERSIONS,
            ),
            (ApiKey::AddOffsetsToTxn, AddOffsetsToTxnRequest::VERSIONS),
            (ApiKey::EndTxn, EndTxnRequest::VERSIONS),
            (ApiKey::WriteTxnMarkers, WriteTxnMarkersRequest::VERSIONS),
            (ApiKey::TxnOffsetCommit, TxnOffsetCommitRequest::VERSIONS),
            (
                ApiKey::DescribeProducers,
                DescribeProducersRequest::VERSIONS,
            ),
            (
                ApiKey::DescribeTransactions,
                DescribeTransactionsRequest::VERSIONS,
            ),
            (ApiKey::ListTransactions, ListTransactionsRequest::VERSIONS),
            (
                ApiKey::ConsumerGroupHeartbeat,
                ConsumerGroupHeartbeatRequest::VERSIONS,
            ),
            (
                ApiKey::ConsumerGroupDescribe,
                ConsumerGroupDescribeRequest::VERSIONS,
            ),
            (ApiKey::AlterConfigs, AlterConfigsRequest::VERSIONS),
            (ApiKey::DescribeLogDirs, DescribeLogDirsRequest::VERSIONS),
            (ApiKey::CreatePartitions, CreatePartitionsRequest::VERSIONS),
            (
                ApiKey::IncrementalAlterConfigs,
                IncrementalAlterConfigsRequest::VERSIONS,
            ),
            (ApiKey::DeleteRecords, DeleteRecordsRequest::VERSIONS),
            (
                ApiKey::OffsetForLeaderEpoch,
                OffsetForLeaderEpochRequest::VERSIONS,
            ),
            (
                ApiKey::DescribeTopicPartitions,
                DescribeTopicPartitionsRequest::VERSIONS,
            ),
            (ApiKey::DescribeAcls, DescribeAclsRequest::VERSIONS),
            (ApiKey::SaslHandshake, SaslHandshakeRequest::VERSIONS),
            (
                ApiKey::DescribeUserScramCredentials,
                DescribeUserScramCredentialsRequest::VERSIONS,
            ),
            (
                ApiKey::AlterUserScramCredentials,
                AlterUserScramCredentialsRequest::VERSIONS,
            ),
            (ApiKey::SaslAuthenticate, SaslAuthenticateRequest::VERSIONS),
            (
                ApiKey::DescribeClientQuotas,
                DescribeClientQuotasRequest::VERSIONS,
            ),
            (
                ApiKey::AlterClientQuotas,
                AlterClientQuotasRequest::VERSIONS,
            ),
            (ApiKey::CreateAcls, CreateAclsRequest::VERSIONS),
            (ApiKey::DeleteAcls, DeleteAclsRequest::VERSIONS),
        ];
        assert_eq!(crate_ranges.len(), SERVED_APIS.len());
        for (key, range) in crate_ranges {
            let s = served(key as i16).unwrap();
            assert!(
                s.crate_min >= range.min && s.max <= range.max,
                "{key:?} {s:?} vs {range}"
            );
        }
        assert!(
            SERVED_APIS
                .windows(2)
                .all(|w| (w[0].key as i16) < (w[1].key as i16))
        );
    }

    #[test]
    fn kafka_3_9s_floor_is_served_with_legacy_below_the_crates() {
        // Kafka 3.9 served every one of these from v0.
        for key in [0i16, 1, 2, 8, 9, 19, 20, 23, 29, 30, 31, 32, 35] {
            let a = served(key).unwrap();
            assert_eq!(a.min, 0, "{:?}", a.key);
            assert!(is_legacy(key, 0), "{:?}", a.key);
            assert!(!is_legacy(key, a.crate_min), "{:?}", a.key);
        }
        assert!(is_supported(0, 2) && is_legacy(0, 2));
        assert!(is_supported(0, 3) && !is_legacy(0, 3));
        // Every legacy version has a rewrite or a converting handler.
        for a in SERVED_APIS {
            for v in a.min..a.crate_min {
                assert!(
                    matches!(a.key, ApiKey::Produce | ApiKey::Fetch)
                        || crate::legacy::upgrade_target(a.key, v) == Some(a.crate_min),
                    "{:?} v{v}",
                    a.key
                );
            }
        }
        assert!(!is_supported(999, 0));
        assert!(!is_supported(18, 5));
    }
}

//! ApiVersions (key 18): the versions we serve, from `karnak_protocol::api_versions`.

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::{
    ApiVersion, FinalizedFeatureKey, SupportedFeatureKey,
};
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::StrBytes;
use karnak_protocol::api_versions::{FEATURES, FINALIZED_FEATURES_EPOCH, SERVED_APIS};

use crate::response::{HandlerError, Reply, Response, decode};

fn api_keys() -> Vec<ApiVersion> {
    SERVED_APIS
        .iter()
        .map(|a| {
            ApiVersion::default()
                .with_api_key(a.key as i16)
                .with_min_version(a.min)
                .with_max_version(a.max)
        })
        .collect()
}

pub fn handle(body: &mut Bytes, version: i16) -> Result<Reply, HandlerError> {
    let request: ApiVersionsRequest = decode(body, "ApiVersions", version)?;
    // v3+ clients name themselves; Kafka rejects names outside [a-zA-Z0-9._-].
    let valid = |s: &str| {
        s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    };
    let error_code = if version >= 3
        && !(valid(&request.client_software_name) && valid(&request.client_software_version))
    {
        ResponseError::InvalidRequest.code()
    } else {
        0
    };
    let mut response = ApiVersionsResponse::default()
        .with_error_code(error_code)
        .with_api_keys(api_keys())
        .with_finalized_features_epoch(-1);
    if version >= 3 {
        response = response
            .with_supported_features(
                FEATURES
                    .iter()
                    .map(|f| {
                        SupportedFeatureKey::default()
                            .with_name(StrBytes::from_static_str(f.name))
                            .with_min_version(f.min)
                            .with_max_version(f.max)
                    })
                    .collect(),
            )
            .with_finalized_features_epoch(FINALIZED_FEATURES_EPOCH)
            .with_finalized_features(
                FEATURES
                    .iter()
                    .map(|f| {
                        FinalizedFeatureKey::default()
                            .with_name(StrBytes::from_static_str(f.name))
                            .with_min_version_level(f.finalized)
                            .with_max_version_level(f.finalized)
                    })
                    .collect(),
            );
    }
    Ok(Reply::Ready(Response::encode(
        &response, version, error_code,
    )?))
}

/// The KIP-511 fallback: a v0-format answer with UNSUPPORTED_VERSION and our table.
pub fn unsupported_version_response() -> Result<Response, HandlerError> {
    let response = ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(api_keys());
    Response::encode(&response, 0, ResponseError::UnsupportedVersion.code())
}

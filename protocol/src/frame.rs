//! Kafka framing: every request and response is a 4-byte big-endian size
//! followed by that many bytes.

use crate::ProtocolError;

/// Kafka's `socket.request.max.bytes` default (100 MiB).
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 100 * 1024 * 1024;

/// Smallest possible request: api key, api version, correlation id, client id length.
pub const MIN_REQUEST_BYTES: usize = 10;

/// Checks a frame's size prefix against the configured bound. Negative sizes
/// and sizes over `limit` are refused before any buffer is allocated.
pub fn check_frame_size(raw: i32, limit: usize) -> Result<usize, ProtocolError> {
    if raw < 0 || raw as usize > limit {
        return Err(ProtocolError::FrameSize {
            size: raw as i64,
            limit,
        });
    }
    Ok(raw as usize)
}

/// The fixed prefix of every request header (v0 onwards): enough to route a
/// request and to answer it, even when the rest cannot be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestPrefix {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
}

/// Reads api key, version and correlation id from the start of a request.
pub fn peek_request_prefix(frame: &[u8]) -> Result<RequestPrefix, ProtocolError> {
    if frame.len() < 8 {
        return Err(ProtocolError::TruncatedHeader { len: frame.len() });
    }
    Ok(RequestPrefix {
        api_key: i16::from_be_bytes([frame[0], frame[1]]),
        api_version: i16::from_be_bytes([frame[2], frame[3]]),
        correlation_id: i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_size_bounds() {
        assert_eq!(check_frame_size(10, 100), Ok(10));
        assert!(check_frame_size(-1, 100).is_err());
        assert!(check_frame_size(i32::MIN, 100).is_err());
        assert!(check_frame_size(101, 100).is_err());
        assert_eq!(check_frame_size(100, 100), Ok(100));
    }

    #[test]
    fn prefix_needs_eight_bytes() {
        assert!(peek_request_prefix(&[0, 18, 0, 3, 0, 0, 0]).is_err());
        let p = peek_request_prefix(&[0, 18, 0, 3, 0, 0, 0, 7]).unwrap();
        assert_eq!(
            p,
            RequestPrefix {
                api_key: 18,
                api_version: 3,
                correlation_id: 7
            }
        );
    }
}

//! The records a coordinator shard writes to its internal partition, and
//! their binary form. Keys identify what a record is about, so the partition
//! can be compacted by key; a null value is a tombstone.
//!
//! Key   := version:u8 (0) kind:u8 fields...
//!   kind 1 (group metadata): group:str16
//!   kind 2 (committed offset): group:str16 topic:str16 partition:i32
//!   kind 3 (transaction): transactional_id:str16
//!   kind 4 (offset committed inside an open transaction):
//!          group:str16 producer_id:i64 topic:str16 partition:i32
//! Values start with their own version byte (0) and are described on the
//! encode functions. str16 = i16 length (-1 for null) + UTF-8;
//! bytes32 = i32 length + bytes.

use bytes::{Buf, BufMut, Bytes, BytesMut};

#[derive(Debug, thiserror::Error)]
#[error("coordinator record is malformed: {0}")]
pub struct RecordError(pub &'static str);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKey {
    Group(String),
    Offset {
        group: String,
        topic: String,
        partition: i32,
    },
    Txn(String),
    TxnOffset {
        group: String,
        producer_id: i64,
        topic: String,
        partition: i32,
    },
}

/// A member as persisted: enough to serve SyncGroup and DescribeGroups after
/// a restart, and to let a returning member heartbeat on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredGroup {
    pub protocol_type: Option<String>,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub state_timestamp_ms: i64,
    pub members: Vec<StoredMember>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub commit_timestamp_ms: i64,
}

pub(crate) fn put_str(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        None => buf.put_i16(-1),
        Some(s) => {
            // Lengths are bounded before anything reaches here (group ids,
            // topic names and metadata are all checked on the request).
            let len = s.len().min(i16::MAX as usize);
            buf.put_i16(len as i16);
            buf.put_slice(&s.as_bytes()[..len]);
        }
    }
}

pub(crate) fn put_bytes(buf: &mut BytesMut, b: &[u8]) {
    buf.put_i32(b.len() as i32);
    buf.put_slice(b);
}

pub(crate) fn need(buf: &Bytes, n: usize) -> Result<(), RecordError> {
    if buf.remaining() < n {
        return Err(RecordError("truncated"));
    }
    Ok(())
}

pub(crate) fn get_i16(buf: &mut Bytes) -> Result<i16, RecordError> {
    need(buf, 2)?;
    Ok(buf.get_i16())
}

pub(crate) fn get_i32(buf: &mut Bytes) -> Result<i32, RecordError> {
    need(buf, 4)?;
    Ok(buf.get_i32())
}

pub(crate) fn get_i64(buf: &mut Bytes) -> Result<i64, RecordError> {
    need(buf, 8)?;
    Ok(buf.get_i64())
}

pub(crate) fn get_u8(buf: &mut Bytes) -> Result<u8, RecordError> {
    need(buf, 1)?;
    Ok(buf.get_u8())
}

pub(crate) fn get_str(buf: &mut Bytes) -> Result<Option<String>, RecordError> {
    need(buf, 2)?;
    let len = buf.get_i16();
    if len < 0 {
        return Ok(None);
    }
    need(buf, len as usize)?;
    let b = buf.split_to(len as usize);
    String::from_utf8(b.to_vec())
        .map(Some)
        .map_err(|_| RecordError("string is not UTF-8"))
}

pub(crate) fn get_string(buf: &mut Bytes) -> Result<String, RecordError> {
    get_str(buf)?.ok_or(RecordError("null where a string is required"))
}

pub(crate) fn get_bytes(buf: &mut Bytes) -> Result<Bytes, RecordError> {
    let len = get_i32(buf)?;
    if len < 0 {
        return Err(RecordError("negative length"));
    }
    need(buf, len as usize)?;
    Ok(buf.split_to(len as usize))
}

pub(crate) fn get_count(buf: &mut Bytes, min_each: usize) -> Result<usize, RecordError> {
    let n = get_i32(buf)?;
    // A count can never exceed what the remaining bytes could hold.
    if n < 0 || n as usize * min_each > buf.remaining() {
        return Err(RecordError("bad count"));
    }
    Ok(n as usize)
}

impl RecordKey {
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(64);
        b.put_u8(0);
        match self {
            RecordKey::Group(g) => {
                b.put_u8(1);
                put_str(&mut b, Some(g));
            }
            RecordKey::Offset {
                group,
                topic,
                partition,
            } => {
                b.put_u8(2);
                put_str(&mut b, Some(group));
                put_str(&mut b, Some(topic));
                b.put_i32(*partition);
            }
            RecordKey::Txn(id) => {
                b.put_u8(3);
                put_str(&mut b, Some(id));
            }
            RecordKey::TxnOffset {
                group,
                producer_id,
                topic,
                partition,
            } => {
                b.put_u8(4);
                put_str(&mut b, Some(group));
                b.put_i64(*producer_id);
                put_str(&mut b, Some(topic));
                b.put_i32(*partition);
            }
        }
        b.freeze()
    }

    pub fn decode(mut buf: Bytes) -> Result<Self, RecordError> {
        if get_u8(&mut buf)? != 0 {
            return Err(RecordError("unknown key version"));
        }
        match get_u8(&mut buf)? {
            1 => Ok(RecordKey::Group(get_string(&mut buf)?)),
            2 => Ok(RecordKey::Offset {
                group: get_string(&mut buf)?,
                topic: get_string(&mut buf)?,
                partition: get_i32(&mut buf)?,
            }),
            3 => Ok(RecordKey::Txn(get_string(&mut buf)?)),
            4 => Ok(RecordKey::TxnOffset {
                group: get_string(&mut buf)?,
                producer_id: get_i64(&mut buf)?,
                topic: get_string(&mut buf)?,
                partition: get_i32(&mut buf)?,
            }),
            _ => Err(RecordError("unknown key kind")),
        }
    }
}

impl StoredOffset {
    /// version:u8 offset:i64 leader_epoch:i32 commit_ts:i64 metadata:str16
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(32);
        b.put_u8(0);
        b.put_i64(self.offset);
        b.put_i32(self.leader_epoch);
        b.put_i64(self.commit_timestamp_ms);
        put_str(&mut b, self.metadata.as_deref());
        b.freeze()
    }

    pub fn decode(mut buf: Bytes) -> Result<Self, RecordError> {
        if get_u8(&mut buf)? != 0 {
            return Err(RecordError("unknown offset value version"));
        }
        Ok(StoredOffset {
            offset: get_i64(&mut buf)?,
            leader_epoch: get_i32(&mut buf)?,
            commit_timestamp_ms: get_i64(&mut buf)?,
            metadata: get_str(&mut buf)?,
        })
    }
}

impl StoredGroup {
    /// version:u8 protocol_type:str16 generation:i32 protocol:str16
    /// leader:str16 state_ts:i64 members:i32 [member_id instance_id
    /// client_id client_host session_timeout:i32 rebalance_timeout:i32
    /// protocols:i32 [name:str16 metadata:bytes32] assignment:bytes32]
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(256);
        b.put_u8(0);
        put_str(&mut b, self.protocol_type.as_deref());
        b.put_i32(self.generation);
        put_str(&mut b, self.protocol.as_deref());
        put_str(&mut b, self.leader.as_deref());
        b.put_i64(self.state_timestamp_ms);
        b.put_i32(self.members.len() as i32);
        for m in &self.members {
            put_str(&mut b, Some(&m.member_id));
            put_str(&mut b, m.instance_id.as_deref());
            put_str(&mut b, Some(&m.client_id));
            put_str(&mut b, Some(&m.client_host));
            b.put_i32(m.session_timeout_ms);
            b.put_i32(m.rebalance_timeout_ms);
            b.put_i32(m.protocols.len() as i32);
            for (name, meta) in &m.protocols {
                put_str(&mut b, Some(name));
                put_bytes(&mut b, meta);
            }
            put_bytes(&mut b, &m.assignment);
        }
        b.freeze()
    }

    pub fn decode(mut buf: Bytes) -> Result<Self, RecordError> {
        if get_u8(&mut buf)? != 0 {
            return Err(RecordError("unknown group value version"));
        }
        let protocol_type = get_str(&mut buf)?;
        let generation = get_i32(&mut buf)?;
        let protocol = get_str(&mut buf)?;
        let leader = get_str(&mut buf)?;
        let state_timestamp_ms = get_i64(&mut buf)?;
        let n = get_count(&mut buf, 24)?;
        let mut members = Vec::with_capacity(n);
        for _ in 0..n {
            let member_id = get_string(&mut buf)?;
            let instance_id = get_str(&mut buf)?;
            let client_id = get_string(&mut buf)?;
            let client_host = get_string(&mut buf)?;
            let session_timeout_ms = get_i32(&mut buf)?;
            let rebalance_timeout_ms = get_i32(&mut buf)?;
            let np = get_count(&mut buf, 6)?;
            let mut protocols = Vec::with_capacity(np);
            for _ in 0..np {
                protocols.push((get_string(&mut buf)?, get_bytes(&mut buf)?));
            }
            let assignment = get_bytes(&mut buf)?;
            members.push(StoredMember {
                member_id,
                instance_id,
                client_id,
                client_host,
                session_timeout_ms,
                rebalance_timeout_ms,
                protocols,
                assignment,
            });
        }
        Ok(StoredGroup {
            protocol_type,
            generation,
            protocol,
            leader,
            state_timestamp_ms,
            members,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group() -> StoredGroup {
        StoredGroup {
            protocol_type: Some("consumer".into()),
            generation: 7,
            protocol: Some("range".into()),
            leader: Some("m-1".into()),
            state_timestamp_ms: 123,
            members: vec![StoredMember {
                member_id: "m-1".into(),
                instance_id: Some("i-1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                session_timeout_ms: 10_000,
                rebalance_timeout_ms: 300_000,
                protocols: vec![("range".into(), Bytes::from_static(b"\x00\x01"))],
                assignment: Bytes::from_static(b"\x00\x03abc"),
            }],
        }
    }

    #[test]
    fn round_trips() {
        let g = group();
        assert_eq!(StoredGroup::decode(g.encode()).unwrap(), g);
        let k = RecordKey::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 3,
        };
        assert_eq!(RecordKey::decode(k.encode()).unwrap(), k);
        let o = StoredOffset {
            offset: 42,
            leader_epoch: -1,
            metadata: None,
            commit_timestamp_ms: 9,
        };
        assert_eq!(StoredOffset::decode(o.encode()).unwrap(), o);
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let full = group().encode();
        for n in 0..full.len() {
            assert!(StoredGroup::decode(full.slice(..n)).is_err(), "len {n}");
        }
        let mut huge = BytesMut::from(&full[..]);
        // Claim 2^31-1 members.
        let at = 1 + 2 + 8 + 4 + 2 + 5 + 2 + 3 + 8;
        huge[at..at + 4].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(StoredGroup::decode(huge.freeze()).is_err());
    }
}

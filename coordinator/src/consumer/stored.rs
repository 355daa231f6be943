//! The persisted form of a KIP-848 group. It shares the group-metadata key
//! with classic groups (a group is one or the other); the value's version
//! byte tells them apart: 0 classic (`StoredGroup`), 1 consumer.
//!
//! value := 1:u8 epoch:i32 assignment_epoch:i32
//!          metadata:i32 [name:str16 topic_id:16 partitions:i32]
//!          members:i32 [id instance rack client_id client_host :str16
//!                       rebalance_timeout:i32 names:i32 [str16] regex:str16
//!                       assignor:str16 epoch:i32 previous_epoch:i32 state:u8
//!                       assigned:asg revoking:asg target:asg]
//! asg   := topics:i32 [topic_id:16 partitions:i32 [i32]]

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::time::{Duration, Instant};

use super::{Assignment, ConsumerGroup, ConsumerMember, MemberState, TopicId};
use crate::records::{RecordError, get_count, get_i32, get_str, get_string, get_u8, need, put_str};

pub const VERSION: u8 = 1;

/// Whether a group-metadata value is a consumer (KIP-848) group's.
pub fn is_consumer_value(v: &[u8]) -> bool {
    v.first() == Some(&VERSION)
}

fn put_asg(b: &mut BytesMut, a: &Assignment) {
    b.put_i32(a.len() as i32);
    for (t, ps) in a {
        b.put_slice(t);
        b.put_i32(ps.len() as i32);
        for p in ps {
            b.put_i32(*p);
        }
    }
}

fn get_id(buf: &mut Bytes) -> Result<TopicId, RecordError> {
    need(buf, 16)?;
    let mut id = [0u8; 16];
    buf.copy_to_slice(&mut id);
    Ok(id)
}

fn get_asg(buf: &mut Bytes) -> Result<Assignment, RecordError> {
    let n = get_count(buf, 20)?;
    let mut a = Assignment::new();
    for _ in 0..n {
        let t = get_id(buf)?;
        let np = get_count(buf, 4)?;
        let mut ps = std::collections::BTreeSet::new();
        for _ in 0..np {
            ps.insert(get_i32(buf)?);
        }
        a.insert(t, ps);
    }
    Ok(a)
}

impl ConsumerGroup {
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(256);
        b.put_u8(VERSION);
        b.put_i32(self.epoch);
        b.put_i32(self.assignment_epoch);
        b.put_i32(self.metadata.len() as i32);
        for (name, (id, parts)) in &self.metadata {
            put_str(&mut b, Some(name));
            b.put_slice(id);
            b.put_i32(*parts);
        }
        b.put_i32(self.members.len() as i32);
        for m in self.members.values() {
            put_str(&mut b, Some(&m.id));
            put_str(&mut b, m.instance_id.as_deref());
            put_str(&mut b, m.rack_id.as_deref());
            put_str(&mut b, Some(&m.client_id));
            put_str(&mut b, Some(&m.client_host));
            b.put_i32(m.rebalance_timeout_ms);
            b.put_i32(m.subscribed_topic_names.len() as i32);
            for n in &m.subscribed_topic_names {
                put_str(&mut b, Some(n));
            }
            put_str(&mut b, m.subscribed_topic_regex.as_deref());
            put_str(&mut b, m.server_assignor.as_deref());
            b.put_i32(m.epoch);
            b.put_i32(m.previous_epoch);
            b.put_u8(m.state.code());
            put_asg(&mut b, &m.assigned);
            put_asg(&mut b, &m.revoking);
            put_asg(&mut b, self.target.get(&m.id).unwrap_or(&Assignment::new()));
        }
        b.freeze()
    }

    /// Rebuilds a group. Members get fresh session timers (as after any
    /// coordinator failover); one that was revoking gets a fresh rebalance
    /// timeout. Subscriptions are resolved again on the next heartbeat.
    pub fn decode(mut buf: Bytes, now: Instant, session: Duration) -> Result<Self, RecordError> {
        if get_u8(&mut buf)? != VERSION {
            return Err(RecordError("not a consumer group value"));
        }
        let mut g = ConsumerGroup::new();
        g.epoch = get_i32(&mut buf)?;
        g.assignment_epoch = get_i32(&mut buf)?;
        let n = get_count(&mut buf, 22)?;
        for _ in 0..n {
            let name = get_string(&mut buf)?;
            let id = get_id(&mut buf)?;
            let parts = get_i32(&mut buf)?;
            g.metadata.insert(name, (id, parts));
        }
        let n = get_count(&mut buf, 40)?;
        for _ in 0..n {
            let id = get_string(&mut buf)?;
            let mut m = ConsumerMember::new(&id, now + session);
            m.instance_id = get_str(&mut buf)?;
            m.rack_id = get_str(&mut buf)?;
            m.client_id = get_string(&mut buf)?;
            m.client_host = get_string(&mut buf)?;
            m.rebalance_timeout_ms = get_i32(&mut buf)?;
            let nn = get_count(&mut buf, 2)?;
            for _ in 0..nn {
                m.subscribed_topic_names.push(get_string(&mut buf)?);
            }
            m.subscribed_topic_regex = get_str(&mut buf)?;
            m.server_assignor = get_str(&mut buf)?;
            m.epoch = get_i32(&mut buf)?;
            m.previous_epoch = get_i32(&mut buf)?;
            m.state = MemberState::from_code(get_u8(&mut buf)?)
                .ok_or(RecordError("unknown member state"))?;
            m.assigned = get_asg(&mut buf)?;
            m.revoking = get_asg(&mut buf)?;
            let target = get_asg(&mut buf)?;
            if m.state == MemberState::UnrevokedPartitions {
                m.revoke_deadline =
                    Some(now + Duration::from_millis(m.rebalance_timeout_ms.max(0) as u64));
            }
            if let Some(i) = &m.instance_id {
                g.statics.insert(i.clone(), id.clone());
            }
            g.target.insert(id.clone(), target);
            g.members.insert(id, m);
        }
        g.resolve_names_only();
        Ok(g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_truncation_is_an_error() {
        let now = Instant::now();
        let mut g = ConsumerGroup::new();
        g.epoch = 5;
        g.assignment_epoch = 5;
        g.metadata.insert("t".into(), ([7; 16], 3));
        let mut m = ConsumerMember::new("m1", now);
        m.instance_id = Some("i".into());
        m.client_id = "c".into();
        m.client_host = "/127.0.0.1".into();
        m.subscribed_topic_names = vec!["t".into()];
        m.epoch = 5;
        m.previous_epoch = 4;
        m.assigned.insert([7; 16], [0, 2].into_iter().collect());
        g.target.insert("m1".into(), m.assigned.clone());
        g.members.insert("m1".into(), m);
        let bytes = g.encode();
        let back = ConsumerGroup::decode(bytes.clone(), now, Duration::from_secs(45)).unwrap();
        assert_eq!(back.encode(), bytes);
        assert_eq!(back.statics.get("i").map(String::as_str), Some("m1"));
        for n in 0..bytes.len() {
            assert!(
                ConsumerGroup::decode(bytes.slice(..n), now, Duration::from_secs(1)).is_err(),
                "len {n}"
            );
        }
    }
}

//! Group membership through a shard: classic JoinGroup/SyncGroup/
//! Heartbeat/LeaveGroup and KIP-848's ConsumerGroupHeartbeat/Describe.
//! Each takes the shard lock, drives the group's state machine, persists
//! what changed and re-arms its timer.

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::*;

impl Shard {
    // ---------------------------------------------------------------- membership

    pub fn join(&self, req: JoinRequest) -> oneshot::Receiver<JoinOutcome> {
        let now = Instant::now();
        let mut st = self.lock();
        if !req.member_id.is_empty() && !st.groups.contains_key(&req.group_id) {
            let (tx, rx) = oneshot::channel();
            let _ = tx.send(JoinOutcome::error(UNKNOWN_MEMBER_ID, &req.member_id));
            return rx;
        }
        let g = st
            .groups
            .entry(req.group_id.clone())
            .or_insert_with(|| Group::new(&req.group_id));
        let rx = g.join(req, &self.cfg, now, &mut |c| self.mint_member_id(c));
        self.after_change(g);
        self.maybe_checkpoint(&mut st);
        rx
    }

    pub fn sync(&self, req: SyncRequest) -> oneshot::Receiver<SyncOutcome> {
        let mut st = self.lock();
        let Some(g) = st.groups.get_mut(&req.group_id) else {
            let (tx, rx) = oneshot::channel();
            let _ = tx.send(SyncOutcome::error(UNKNOWN_MEMBER_ID));
            return rx;
        };
        let rx = g.sync(req);
        self.after_change(g);
        self.maybe_checkpoint(&mut st);
        rx
    }

    pub fn heartbeat(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> i16 {
        let mut st = self.lock();
        match st.groups.get_mut(group_id) {
            None => UNKNOWN_MEMBER_ID,
            Some(g) => g.heartbeat(generation, member_id, instance_id, Instant::now()),
        }
    }

    pub fn leave(
        &self,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<i16>, i16> {
        let now = Instant::now();
        let mut st = self.lock();
        let Some(g) = st.groups.get_mut(group_id) else {
            return Err(UNKNOWN_MEMBER_ID);
        };
        let codes = members
            .iter()
            .map(|(m, i)| g.leave(m, i.as_deref(), &self.cfg, now))
            .collect();
        self.after_change(g);
        self.maybe_checkpoint(&mut st);
        Ok(codes)
    }

    /// ConsumerGroupHeartbeat (KIP-848). Answers at once: there is no join
    /// phase to wait for, members learn their share over heartbeats.
    pub fn consumer_heartbeat(
        &self,
        req: &ConsumerHeartbeat,
        topics: &dyn TopicView,
    ) -> HeartbeatOutcome {
        if let Err(o) = consumer::heartbeat::validate(req) {
            return o;
        }
        let now = Instant::now();
        let mut st = self.lock();
        let joining = req.member_epoch == 0;
        let Some(g) = (match st.groups.get_mut(&req.group_id) {
            Some(g) => Some(g),
            None if joining => Some(
                st.groups
                    .entry(req.group_id.clone())
                    .or_insert_with(|| Group::new(&req.group_id)),
            ),
            None => None,
        }) else {
            return HeartbeatOutcome::error(
                GROUP_ID_NOT_FOUND,
                format!("Consumer group {} not found.", req.group_id),
            );
        };
        let client = req.client_id.clone();
        // Only a join converts an empty classic group.
        let c = if joining || g.consumer.is_some() {
            g.consumer_mut()
        } else {
            None
        };
        let Some(c) = c else {
            return HeartbeatOutcome::error(
                GROUP_ID_NOT_FOUND,
                format!("Group {} is not a consumer group.", req.group_id),
            );
        };
        let outcome = c.heartbeat(req, &self.cfg, now, topics, &mut || {
            self.mint_member_id(&client)
        });
        self.after_change(g);
        self.maybe_checkpoint(&mut st);
        outcome
    }

    /// ConsumerGroupDescribe: GROUP_ID_NOT_FOUND for unknown and classic
    /// groups, as Kafka answers (clients fall back to DescribeGroups).
    pub fn describe_consumer(&self, group_id: &str) -> Result<consumer::Described, i16> {
        let st = self.lock();
        match st.groups.get(group_id).and_then(|g| g.consumer.as_ref()) {
            Some(c) => Ok(c.describe()),
            None => Err(GROUP_ID_NOT_FOUND),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::GroupState;
    use crate::records::{StoredGroup, StoredMember};
    use karnak_storage::LogConfig;

    fn open(dir: &std::path::Path) -> Shard {
        let log = Arc::new(Log::open(&dir.join("p-0"), "p", 0, LogConfig::default()).unwrap());
        let seq = Sequencer::open(&dir.join("seq"), 1, 16, 1 << 48).unwrap();
        let cfg = GroupConfig {
            initial_rebalance_delay: Duration::ZERO,
            ..GroupConfig::default()
        };
        Shard::open(0, log, seq, cfg).unwrap()
    }

    fn join(shard: &Shard, member_id: &str) -> JoinOutcome {
        let mut rx = shard.join(join_request(member_id));
        rx.try_recv().expect("answered at once")
    }

    fn join_request(member_id: &str) -> JoinRequest {
        JoinRequest {
            group_id: "g".into(),
            member_id: member_id.into(),
            instance_id: None,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"meta"))],
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 10_000,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            require_known_member_id: false,
        }
    }

    fn sync(shard: &Shard, o: &JoinOutcome) -> SyncOutcome {
        let mut rx = shard.sync(SyncRequest {
            group_id: "g".into(),
            generation: o.generation,
            member_id: o.member_id.clone(),
            instance_id: None,
            protocol_type: None,
            protocol: None,
            assignments: vec![(o.member_id.clone(), Bytes::from_static(b"assignment"))],
        });
        rx.try_recv().expect("answered at once")
    }

    /// A member parked in JoinGroup longer than its session (others are
    /// slow to rejoin: Kafka keeps it alive) arms no timer in the past.
    /// Its expired session deadline once did, and the shard's timer task
    /// fired, found nothing to do and re-armed at once until the join
    /// completed: a core spinning through every slow rebalance.
    #[test]
    fn a_join_parked_past_its_session_arms_no_timer_in_the_past() {
        let dir = tempfile::tempdir().unwrap();
        let shard = open(dir.path());
        let first = join(&shard, "");
        assert_eq!(sync(&shard, &first).error, 0);
        let mut late = join_request("");
        late.session_timeout_ms = shard.cfg.min_session_timeout_ms;
        late.rebalance_timeout_ms = 60_000;
        let _parked = shard.join(late);
        let after =
            Instant::now() + Duration::from_millis(shard.cfg.min_session_timeout_ms as u64 + 1_000);
        let mut st = shard.lock();
        let g = st.groups.get_mut("g").unwrap();
        assert_eq!(g.state, GroupState::PreparingRebalance);
        g.on_timer(&shard.cfg, after);
        assert_eq!(g.members.len(), 2, "the parked member is kept");
        let next = g.next_deadline().expect("the first member's session");
        assert!(next > after, "a timer armed {:?} in the past", after - next);
    }

    /// A coordinator that takes a shard over in the middle of a rebalance
    /// restores the group as it last settled (Kafka writes only then). It
    /// once restored a join in progress as Stable at generation 0 with no
    /// protocol, and answered every rejoin of its member with that: the
    /// client found no assignor for "" and rejoined forever.
    #[test]
    fn a_rebalance_in_flight_is_not_what_a_new_coordinator_restores() {
        let dir = tempfile::tempdir().unwrap();
        let shard = open(dir.path());
        let a = join(&shard, "");
        assert_eq!((a.error, a.generation), (NONE, 1));
        // Joined, not synced: nothing settled yet, nothing to restore.
        let reopened = open(dir.path());
        assert_eq!(join(&reopened, &a.member_id).error, UNKNOWN_MEMBER_ID);
        drop(reopened);

        assert_eq!(sync(&shard, &a).error, NONE);
        // A second member starts a rebalance that the move interrupts.
        drop(shard.join(join_request("")));
        assert_eq!(
            shard.lock().groups["g"].state,
            GroupState::PreparingRebalance
        );
        drop(shard);

        let shard = open(dir.path());
        {
            let st = shard.lock();
            let g = &st.groups["g"];
            assert_eq!(g.state, GroupState::Stable);
            assert_eq!(g.generation, 1);
            assert_eq!(g.members.keys().collect::<Vec<_>>(), vec![&a.member_id]);
            assert_eq!(
                g.members[&a.member_id].assignment,
                Bytes::from_static(b"assignment")
            );
        }
        // The member (the leader) rejoins into a real generation.
        let again = join(&shard, &a.member_id);
        assert_eq!(again.error, NONE);
        assert_eq!(again.protocol.as_deref(), Some("range"));
        assert_eq!(again.leader, a.member_id);
        assert_eq!(again.members.len(), 1);
    }

    /// Records an older version wrote in the middle of a join (members, no
    /// protocol or leader) restore as an empty group.
    #[test]
    fn an_unsettled_record_restores_empty() {
        let member = StoredMember {
            member_id: "m-1".into(),
            instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 10_000,
            protocols: vec![("range".into(), Bytes::new())],
            assignment: Bytes::new(),
        };
        let stored = StoredGroup {
            protocol_type: Some("consumer".into()),
            generation: 0,
            protocol: None,
            leader: None,
            state_timestamp_ms: 0,
            members: vec![member],
        };
        let g = Group::restore("g", stored, Instant::now());
        assert_eq!(g.state, GroupState::Empty);
        assert!(g.members.is_empty());
    }
}

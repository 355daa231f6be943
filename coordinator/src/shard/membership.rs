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

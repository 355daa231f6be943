//! After the join phase: SyncGroup hands out the leader's assignment,
//! Heartbeat keeps sessions alive, LeaveGroup and the timers end them.

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::*;

impl Group {
    // ---------------------------------------------------------------- sync

    pub fn sync(&mut self, req: SyncRequest) -> oneshot::Receiver<SyncOutcome> {
        let SyncRequest {
            generation,
            member_id,
            instance_id,
            protocol_type,
            protocol,
            assignments,
            ..
        } = req;
        let (member_id, instance_id) = (member_id.as_str(), instance_id.as_deref());
        let (protocol_type, protocol) = (protocol_type.as_deref(), protocol.as_deref());
        let (tx, rx) = oneshot::channel();
        let code = self.check_member(member_id, instance_id, generation);
        let code = if code == NONE
            && (protocol_type.is_some_and(|p| Some(p) != self.protocol_type.as_deref())
                || protocol.is_some_and(|p| Some(p) != self.protocol.as_deref()))
        {
            INCONSISTENT_GROUP_PROTOCOL
        } else {
            code
        };
        if code != NONE {
            let _ = tx.send(SyncOutcome::error(code));
            return rx;
        }
        match self.state {
            GroupState::Empty => {
                let _ = tx.send(SyncOutcome::error(UNKNOWN_MEMBER_ID));
            }
            GroupState::PreparingRebalance => {
                let _ = tx.send(SyncOutcome::error(REBALANCE_IN_PROGRESS));
            }
            GroupState::Stable => {
                let o = self.sync_outcome(member_id);
                let _ = tx.send(o);
            }
            GroupState::CompletingRebalance => {
                if let Some(m) = self.members.get_mut(member_id) {
                    m.synced = true;
                    if let Some(old) = m.sync_waiter.replace(tx) {
                        let _ = old.send(SyncOutcome::error(REBALANCE_IN_PROGRESS));
                    }
                }
                if self.leader.as_deref() == Some(member_id) {
                    let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
                    for m in self.members.values_mut() {
                        m.assignment = given.remove(&m.id).unwrap_or_default();
                    }
                    self.sync_deadline = None;
                    self.set_state(GroupState::Stable);
                    let ids: Vec<String> = self.members.keys().cloned().collect();
                    for id in ids {
                        let o = self.sync_outcome(&id);
                        if let Some(w) =
                            self.members.get_mut(&id).and_then(|m| m.sync_waiter.take())
                        {
                            let _ = w.send(o);
                        }
                    }
                }
            }
        }
        rx
    }

    pub(super) fn sync_outcome(&self, member_id: &str) -> SyncOutcome {
        SyncOutcome {
            error: NONE,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            assignment: self
                .members
                .get(member_id)
                .map(|m| m.assignment.clone())
                .unwrap_or_default(),
        }
    }

    /// Membership checks shared by SyncGroup, Heartbeat and OffsetCommit.
    pub(super) fn check_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> i16 {
        if self.fenced(member_id, instance_id) {
            FENCED_INSTANCE_ID
        } else if !self.members.contains_key(member_id) {
            UNKNOWN_MEMBER_ID
        } else if generation != self.generation {
            ILLEGAL_GENERATION
        } else {
            NONE
        }
    }

    // ---------------------------------------------------------------- heartbeat, leave

    pub fn heartbeat(
        &mut self,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        now: Instant,
    ) -> i16 {
        if self.state == GroupState::Empty {
            return UNKNOWN_MEMBER_ID;
        }
        let code = self.check_member(member_id, instance_id, generation);
        if code != NONE {
            return code;
        }
        if let Some(m) = self.members.get_mut(member_id) {
            m.session_deadline = now + Duration::from_millis(m.session_timeout_ms as u64);
        }
        match self.state {
            GroupState::PreparingRebalance => REBALANCE_IN_PROGRESS,
            _ => NONE,
        }
    }

    /// LeaveGroup for one member (by member id, or by instance id alone as
    /// the admin API's "remove members" sends it).
    pub fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        cfg: &GroupConfig,
        now: Instant,
    ) -> i16 {
        let id = match (member_id.is_empty(), instance_id) {
            (true, Some(i)) => match self.statics.get(i) {
                Some(id) => id.clone(),
                None => return UNKNOWN_MEMBER_ID,
            },
            _ => {
                if self.fenced(member_id, instance_id) {
                    return FENCED_INSTANCE_ID;
                }
                member_id.to_string()
            }
        };
        if self.pending.remove(&id).is_some() {
            self.maybe_complete_join(now);
            return NONE;
        }
        if !self.members.contains_key(&id) {
            return UNKNOWN_MEMBER_ID;
        }
        self.member_gone(&id, cfg, now);
        NONE
    }

    /// Timers: expired sessions, pending members, the end of the join phase
    /// and the SyncGroup deadline.
    pub fn on_timer(&mut self, cfg: &GroupConfig, now: Instant) {
        if let Some(c) = &mut self.consumer {
            c.on_timer(now);
            return;
        }
        self.pending.retain(|_, d| *d > now);
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.session_deadline <= now && m.join_waiter.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in expired {
            tracing::info!(group = %self.id, member = %id, "member session expired; rebalancing");
            self.member_gone(&id, cfg, now);
        }
        if self.state == GroupState::PreparingRebalance
            && self.join_deadline.is_some_and(|d| d <= now)
        {
            self.delaying = false;
            self.complete_join(now);
        } else {
            self.maybe_complete_join(now);
        }
        if self.state == GroupState::CompletingRebalance
            && self.sync_deadline.is_some_and(|d| d <= now)
        {
            let lazy: Vec<String> = self
                .members
                .values()
                .filter(|m| !m.synced)
                .map(|m| m.id.clone())
                .collect();
            tracing::info!(group = %self.id, members = ?lazy, "members did not SyncGroup in time; rebalancing");
            for id in &lazy {
                self.remove_member(id);
            }
            self.prepare_rebalance(cfg, now);
        }
    }
}

//! ConsumerGroupHeartbeat: join (epoch 0), heartbeat (epoch > 0), leave
//! (-1) and static leave (-2), as Kafka's group coordinator answers them.

use tokio::time::Instant;

use super::*;
use crate::errors::*;
use crate::group::GroupConfig;

#[derive(Debug, Clone, Default)]
pub struct ConsumerHeartbeat {
    pub version: i16,
    pub group_id: String,
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub subscribed_topic_names: Option<Vec<String>>,
    pub subscribed_topic_regex: Option<String>,
    pub server_assignor: Option<String>,
    pub owned: Option<Assignment>,
    pub client_id: String,
    pub client_host: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeartbeatOutcome {
    pub error: i16,
    pub message: Option<String>,
    pub member_id: Option<String>,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    pub assignment: Option<Assignment>,
}

impl HeartbeatOutcome {
    pub fn error(code: i16, message: impl Into<String>) -> Self {
        HeartbeatOutcome {
            error: code,
            message: Some(message.into()),
            ..Default::default()
        }
    }
}

/// Request checks that need no group state (Kafka's
/// `throwIfConsumerGroupHeartbeatRequestIsInvalid`).
pub fn validate(req: &ConsumerHeartbeat) -> Result<(), HeartbeatOutcome> {
    let bad = |m: &str| Err(HeartbeatOutcome::error(INVALID_REQUEST, m));
    if req.group_id.is_empty() {
        return bad("GroupId can't be empty.");
    }
    if req.instance_id.as_deref() == Some("") {
        return bad("InstanceId can't be empty.");
    }
    if req.rack_id.as_deref() == Some("") {
        return bad("RackId can't be empty.");
    }
    // v1 (KIP-1082): the client always names itself.
    if req.version >= 1 && req.member_id.is_empty() {
        return bad("MemberId can't be empty.");
    }
    match req.member_epoch {
        0 => {
            if req.rebalance_timeout_ms == -1 {
                return bad("RebalanceTimeoutMs must be provided in first request.");
            }
            if req.owned.as_ref().is_none_or(|o| !o.is_empty()) {
                return bad("TopicPartitions must be empty when (re-)joining.");
            }
            if req.subscribed_topic_names.is_none() && req.subscribed_topic_regex.is_none() {
                return bad(
                    "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.",
                );
            }
        }
        e if e > 0 || e == LEAVE_EPOCH => {
            if req.member_id.is_empty() {
                return bad("MemberId can't be empty.");
            }
        }
        STATIC_LEAVE_EPOCH => {
            if req.member_id.is_empty() {
                return bad("MemberId can't be empty.");
            }
            if req.instance_id.is_none() {
                return bad("InstanceId can't be null.");
            }
        }
        e => return bad(&format!("MemberEpoch {e} is invalid.")),
    }
    if let Some(a) = req.server_assignor.as_deref()
        && !assignor::ASSIGNORS.contains(&a)
    {
        return Err(HeartbeatOutcome::error(
            UNSUPPORTED_ASSIGNOR,
            format!("ServerAssignor {a} is not supported. Supported assignors: uniform, range."),
        ));
    }
    if let Some(re) = req.subscribed_topic_regex.as_deref()
        && !re.is_empty()
        && let Err(e) = compile(re)
    {
        return Err(HeartbeatOutcome::error(
            INVALID_REGULAR_EXPRESSION,
            format!("SubscribedTopicRegex `{re}` is not a valid regular expression: {e}."),
        ));
    }
    Ok(())
}

impl ConsumerGroup {
    /// One heartbeat. `new_member_id` mints an id for v0 joins without one.
    pub fn heartbeat(
        &mut self,
        req: &ConsumerHeartbeat,
        cfg: &GroupConfig,
        now: Instant,
        topics: &dyn TopicView,
        new_member_id: &mut dyn FnMut() -> Result<String, i16>,
    ) -> HeartbeatOutcome {
        let interval = cfg.consumer_heartbeat_interval_ms;
        if req.member_epoch == LEAVE_EPOCH || req.member_epoch == STATIC_LEAVE_EPOCH {
            return self.leave(req, cfg, now, interval);
        }
        let member_id = if req.member_id.is_empty() {
            match new_member_id() {
                Ok(id) => id,
                Err(code) => return HeartbeatOutcome::error(code, "could not mint a member id"),
            }
        } else {
            req.member_id.clone()
        };
        let session = Duration::from_millis(cfg.consumer_session_timeout_ms.max(0) as u64);
        let full = req.member_epoch == 0;

        if full {
            if let Err(o) = self.join(req, &member_id, cfg, now) {
                return o;
            }
        } else {
            if let Some(iid) = &req.instance_id {
                match self.statics.get(iid) {
                    None => {
                        return HeartbeatOutcome::error(
                            UNKNOWN_MEMBER_ID,
                            format!("Instance id {iid} is unknown."),
                        );
                    }
                    Some(bound) if *bound != member_id => {
                        return HeartbeatOutcome::error(
                            FENCED_INSTANCE_ID,
                            format!(
                                "Instance id {iid} belongs to member {bound}, not {member_id}."
                            ),
                        );
                    }
                    Some(_) => {}
                }
            }
            let Some(m) = self.members.get(&member_id) else {
                return HeartbeatOutcome::error(
                    UNKNOWN_MEMBER_ID,
                    format!(
                        "Member {member_id} is not a member of group {}.",
                        req.group_id
                    ),
                );
            };
            if let Err(o) = check_epoch(m, req) {
                return o;
            }
        }

        // Fields a heartbeat may update (null/-1: unchanged).
        let Some(m) = self.members.get_mut(&member_id) else {
            return HeartbeatOutcome::error(UNKNOWN_SERVER_ERROR, "member vanished");
        };
        let mut bump = false;
        m.session_deadline = now + session;
        if req.rebalance_timeout_ms >= 0 && m.rebalance_timeout_ms != req.rebalance_timeout_ms {
            m.rebalance_timeout_ms = req.rebalance_timeout_ms;
            self.dirty = true;
        }
        if let Some(names) = &req.subscribed_topic_names {
            let mut names = names.clone();
            names.sort();
            names.dedup();
            if names != m.subscribed_topic_names {
                m.subscribed_topic_names = names;
                bump = true;
            }
        }
        if let Some(re) = &req.subscribed_topic_regex {
            let re = Some(re.clone()).filter(|r| !r.is_empty());
            if re != m.subscribed_topic_regex {
                m.subscribed_topic_regex = re;
                bump = true;
            }
        }
        if req.server_assignor.is_some() && req.server_assignor != m.server_assignor {
            m.server_assignor = req.server_assignor.clone();
            bump = true;
        }
        if req.rack_id.is_some() && req.rack_id != m.rack_id {
            m.rack_id = req.rack_id.clone();
            self.dirty = true;
        }
        if !req.client_id.is_empty() && m.client_id != req.client_id {
            m.client_id = req.client_id.clone();
            m.client_host = req.client_host.clone();
            self.dirty = true;
        }
        let before = m.assigned.clone();
        if bump {
            self.epoch += 1;
            self.dirty = true;
        }

        self.refresh_metadata(topics);
        self.maybe_assign();
        self.reconcile_member(&member_id, req.owned.as_ref(), now);

        let Some(m) = self.members.get(&member_id) else {
            return HeartbeatOutcome::error(UNKNOWN_SERVER_ERROR, "member vanished");
        };
        // The assignment travels on a join, a full request (as a client
        // sends after reconnecting) or when it changed; null means
        // "unchanged". Not on every ack, or clients would re-apply it.
        let full_request = req.rebalance_timeout_ms != -1
            && (req.subscribed_topic_names.is_some() || req.subscribed_topic_regex.is_some())
            && req.owned.is_some();
        let send = full || full_request || before != m.assigned;
        HeartbeatOutcome {
            error: NONE,
            message: None,
            member_id: Some(member_id.clone()),
            member_epoch: m.epoch,
            heartbeat_interval_ms: interval,
            assignment: send.then(|| m.assigned.clone()),
        }
    }

    /// Epoch 0: a new member, a member rejoining after it was fenced, or a
    /// static member coming back under a new member id.
    fn join(
        &mut self,
        req: &ConsumerHeartbeat,
        member_id: &str,
        cfg: &GroupConfig,
        now: Instant,
    ) -> Result<(), HeartbeatOutcome> {
        if let Some(iid) = &req.instance_id
            && let Some(bound) = self.statics.get(iid).cloned()
            && bound != member_id
        {
            let Some(old) = self.members.get(&bound) else {
                self.statics.remove(iid);
                return self.join(req, member_id, cfg, now);
            };
            if old.epoch != STATIC_LEAVE_EPOCH {
                return Err(HeartbeatOutcome::error(
                    UNRELEASED_INSTANCE_ID,
                    format!(
                        "Static member {bound} with instance id {iid} is not released yet; it must leave first."
                    ),
                ));
            }
            // The returning instance takes over the old member's partitions
            // and epoch: no rebalance for a quick restart.
            let Some(mut m) = self.members.shift_remove(&bound) else {
                return Err(HeartbeatOutcome::error(
                    UNKNOWN_SERVER_ERROR,
                    "member vanished",
                ));
            };
            m.id = member_id.to_string();
            m.epoch = m.previous_epoch.max(0);
            if let Some(t) = self.target.remove(&bound) {
                self.target.insert(member_id.to_string(), t);
            }
            if let Some(r) = self.resolved.remove(&bound) {
                self.resolved.insert(member_id.to_string(), r);
            }
            self.statics.insert(iid.clone(), member_id.to_string());
            self.members.insert(member_id.to_string(), m);
            self.dirty = true;
            return Ok(());
        }
        if let Some(m) = self.members.get_mut(member_id) {
            // Rejoining with epoch 0: the member let go of everything.
            m.epoch = 0;
            m.assigned.clear();
            m.revoking.clear();
            m.state = MemberState::Stable;
            m.revoke_deadline = None;
            self.dirty = true;
            return Ok(());
        }
        if self.members.len() >= cfg.max_size {
            return Err(HeartbeatOutcome::error(
                GROUP_MAX_SIZE_REACHED,
                format!(
                    "The consumer group has reached its maximum capacity of {} members.",
                    cfg.max_size
                ),
            ));
        }
        let mut m = ConsumerMember::new(member_id, now);
        m.instance_id = req.instance_id.clone();
        m.client_id = req.client_id.clone();
        m.client_host = req.client_host.clone();
        if let Some(iid) = &req.instance_id {
            self.statics.insert(iid.clone(), member_id.to_string());
        }
        // No epoch bump here: as in Kafka, a new member moves the group
        // epoch through what it brings (its subscription, then the topic
        // metadata it adds), so a first join lands on epoch 2, not 3.
        self.members.insert(member_id.to_string(), m);
        self.dirty = true;
        Ok(())
    }

    fn leave(
        &mut self,
        req: &ConsumerHeartbeat,
        cfg: &GroupConfig,
        now: Instant,
        interval: i32,
    ) -> HeartbeatOutcome {
        let id = match (&req.instance_id, self.members.contains_key(&req.member_id)) {
            (_, true) => req.member_id.clone(),
            (Some(iid), false) => match self.statics.get(iid) {
                Some(b) => b.clone(),
                None => {
                    return HeartbeatOutcome::error(
                        UNKNOWN_MEMBER_ID,
                        format!("Instance id {iid} is unknown."),
                    );
                }
            },
            (None, false) => {
                return HeartbeatOutcome::error(
                    UNKNOWN_MEMBER_ID,
                    format!(
                        "Member {} is not a member of group {}.",
                        req.member_id, req.group_id
                    ),
                );
            }
        };
        if let (Some(iid), Some(m)) = (&req.instance_id, self.members.get(&id))
            && m.instance_id.as_deref() != Some(iid.as_str())
        {
            return HeartbeatOutcome::error(
                FENCED_INSTANCE_ID,
                format!("Instance id {iid} belongs to another member."),
            );
        }
        if req.member_epoch == STATIC_LEAVE_EPOCH {
            if let Some(m) = self.members.get_mut(&id) {
                // Keep its partitions for the session timeout; a returning
                // instance picks them up without a rebalance.
                m.previous_epoch = m.epoch;
                m.epoch = STATIC_LEAVE_EPOCH;
                m.session_deadline =
                    now + Duration::from_millis(cfg.consumer_session_timeout_ms.max(0) as u64);
                m.revoke_deadline = None;
                self.dirty = true;
            }
        } else {
            self.remove_member(&id);
        }
        HeartbeatOutcome {
            error: NONE,
            message: None,
            member_id: Some(req.member_id.clone()),
            member_epoch: req.member_epoch,
            heartbeat_interval_ms: interval,
            assignment: None,
        }
    }
}

/// Kafka's epoch rule: a newer epoch than ours is fenced; an older one is
/// accepted only if it is the member's previous epoch and what it owns is
/// part of its current assignment (our answer with the new epoch was lost).
fn check_epoch(m: &ConsumerMember, req: &ConsumerHeartbeat) -> Result<(), HeartbeatOutcome> {
    let fenced = || {
        Err(HeartbeatOutcome::error(
            FENCED_MEMBER_EPOCH,
            format!(
                "The consumer group member has a greater epoch ({}) than the one known by the group coordinator ({}). The member must abandon all its partitions and rejoin.",
                req.member_epoch, m.epoch
            ),
        ))
    };
    if m.epoch == STATIC_LEAVE_EPOCH {
        return fenced();
    }
    if req.member_epoch > m.epoch {
        return fenced();
    }
    if req.member_epoch < m.epoch {
        let ok = req.member_epoch == m.previous_epoch
            && req
                .owned
                .as_ref()
                .is_some_and(|o| reconcile::is_subset(o, &m.assigned));
        if !ok {
            return Err(HeartbeatOutcome::error(
                FENCED_MEMBER_EPOCH,
                format!(
                    "The consumer group member has a smaller epoch ({}) than the one known by the group coordinator ({}). The member must abandon all its partitions and rejoin.",
                    req.member_epoch, m.epoch
                ),
            ));
        }
    }
    Ok(())
}

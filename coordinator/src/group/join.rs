//! The join phase of a classic group: JoinGroup (new members, returning
//! members, static members replacing themselves), the rebalance that
//! follows, protocol selection and the leader's view of the members.

use tokio::sync::oneshot;
use tokio::time::{Duration, Instant};

use super::*;

impl Group {
    // ---------------------------------------------------------------- join

    /// JoinGroup. The outcome arrives on the returned receiver: at once, or
    /// when the rebalance completes. `new_member_id` mints an id when needed.
    pub fn join(
        &mut self,
        req: JoinRequest,
        cfg: &GroupConfig,
        now: Instant,
        new_member_id: &mut dyn FnMut(&str) -> Result<String, i16>,
    ) -> oneshot::Receiver<JoinOutcome> {
        let (tx, rx) = oneshot::channel();
        let reply = |tx: oneshot::Sender<JoinOutcome>, o: JoinOutcome| {
            let _ = tx.send(o);
        };
        if let Some(c) = &self.consumer {
            // A KIP-848 group takes classic members only once it is empty.
            if !c.members.is_empty() {
                reply(
                    tx,
                    JoinOutcome::error(INCONSISTENT_GROUP_PROTOCOL, &req.member_id),
                );
                return rx;
            }
            self.consumer = None;
            self.protocol_type = None;
            self.dirty = true;
        }
        if req.session_timeout_ms < cfg.min_session_timeout_ms
            || req.session_timeout_ms > cfg.max_session_timeout_ms
        {
            reply(
                tx,
                JoinOutcome::error(INVALID_SESSION_TIMEOUT, &req.member_id),
            );
            return rx;
        }
        if req.protocol_type.is_empty() || req.protocols.is_empty() || !self.supports(&req) {
            reply(
                tx,
                JoinOutcome::error(INCONSISTENT_GROUP_PROTOCOL, &req.member_id),
            );
            return rx;
        }
        if req.member_id.is_empty() {
            self.join_new(req, tx, cfg, now, new_member_id);
            return rx;
        }
        if self.fenced(&req.member_id, req.instance_id.as_deref()) {
            reply(tx, JoinOutcome::error(FENCED_INSTANCE_ID, &req.member_id));
            return rx;
        }
        if self.pending.remove(&req.member_id).is_some() {
            self.add_member(req, tx, cfg, now);
            return rx;
        }
        if !self.members.contains_key(&req.member_id) {
            reply(tx, JoinOutcome::error(UNKNOWN_MEMBER_ID, &req.member_id));
            return rx;
        }
        self.rejoin(req, tx, cfg, now);
        rx
    }

    pub(super) fn join_new(
        &mut self,
        req: JoinRequest,
        tx: oneshot::Sender<JoinOutcome>,
        cfg: &GroupConfig,
        now: Instant,
        new_member_id: &mut dyn FnMut(&str) -> Result<String, i16>,
    ) {
        if self.members.len() + self.pending.len() >= cfg.max_size {
            let _ = tx.send(JoinOutcome::error(GROUP_MAX_SIZE_REACHED, ""));
            return;
        }
        let id = match new_member_id(&req.client_id) {
            Ok(id) => id,
            Err(code) => {
                let _ = tx.send(JoinOutcome::error(code, ""));
                return;
            }
        };
        if let Some(instance) = req.instance_id.clone()
            && let Some(old) = self.statics.get(&instance).cloned()
        {
            self.replace_static(req, tx, cfg, now, old, id);
            return;
        }
        if req.instance_id.is_none() && req.require_known_member_id {
            let session = Duration::from_millis(req.session_timeout_ms as u64);
            self.pending.insert(id.clone(), now + session);
            let _ = tx.send(JoinOutcome::error(MEMBER_ID_REQUIRED, &id));
            return;
        }
        let req = JoinRequest {
            member_id: id,
            ..req
        };
        self.add_member(req, tx, cfg, now);
    }

    /// A static member came back with a new member id: it takes over the
    /// old member's place and assignment; the old id is fenced.
    pub(super) fn replace_static(
        &mut self,
        req: JoinRequest,
        tx: oneshot::Sender<JoinOutcome>,
        cfg: &GroupConfig,
        now: Instant,
        old: String,
        id: String,
    ) {
        let Some(mut m) = self.members.shift_remove(&old) else {
            return;
        };
        if let Some(w) = m.join_waiter.take() {
            let _ = w.send(JoinOutcome::error(FENCED_INSTANCE_ID, &old));
        }
        if let Some(w) = m.sync_waiter.take() {
            let _ = w.send(SyncOutcome::error(FENCED_INSTANCE_ID));
        }
        m.id = id.clone();
        m.protocols = req.protocols;
        m.client_id = req.client_id;
        m.client_host = req.client_host;
        m.session_timeout_ms = req.session_timeout_ms;
        m.rebalance_timeout_ms = req.rebalance_timeout_ms;
        m.session_deadline = now + Duration::from_millis(m.session_timeout_ms as u64);
        if let Some(i) = &m.instance_id {
            self.statics.insert(i.clone(), id.clone());
        }
        if self.leader.as_deref() == Some(old.as_str()) {
            self.leader = Some(id.clone());
        }
        self.members.insert(id.clone(), m);
        self.dirty = true;
        // As Kafka: no rebalance unless the rejoin would change the group's
        // protocol (the member's metadata may differ, e.g. owned partitions).
        let unchanged = self.select_protocol() == self.protocol;
        match self.state {
            GroupState::Stable if unchanged => {
                // No rebalance: the member gets its old assignment back on
                // SyncGroup. A returning leader must not recompute it.
                let is_leader = self.leader.as_deref() == Some(id.as_str());
                let mut o = self.outcome_for(&id);
                o.skip_assignment = is_leader;
                if !is_leader {
                    o.members.clear();
                }
                let _ = tx.send(o);
            }
            GroupState::PreparingRebalance => {
                if let Some(m) = self.members.get_mut(&id) {
                    m.join_waiter = Some(tx);
                }
                self.maybe_complete_join(now);
            }
            _ => {
                if let Some(m) = self.members.get_mut(&id) {
                    m.join_waiter = Some(tx);
                }
                self.prepare_rebalance(cfg, now);
            }
        }
    }

    pub(super) fn add_member(
        &mut self,
        req: JoinRequest,
        tx: oneshot::Sender<JoinOutcome>,
        cfg: &GroupConfig,
        now: Instant,
    ) {
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        if let Some(i) = &req.instance_id {
            self.statics.insert(i.clone(), req.member_id.clone());
        }
        let m = Member {
            id: req.member_id.clone(),
            instance_id: req.instance_id,
            client_id: req.client_id,
            client_host: req.client_host,
            session_timeout_ms: req.session_timeout_ms,
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            protocols: req.protocols,
            assignment: Bytes::new(),
            session_deadline: now + Duration::from_millis(req.session_timeout_ms as u64),
            join_waiter: Some(tx),
            sync_waiter: None,
            synced: false,
        };
        self.members.insert(req.member_id, m);
        if self.state == GroupState::PreparingRebalance {
            if self.delaying {
                // Each newcomer during the initial delay buys more time for
                // the rest of a starting fleet, up to the rebalance timeout.
                let next = now + cfg.initial_rebalance_delay;
                self.join_deadline = Some(self.delay_limit.map_or(next, |l| next.min(l)));
            }
            self.maybe_complete_join(now);
        } else {
            self.prepare_rebalance(cfg, now);
        }
    }

    pub(super) fn rejoin(
        &mut self,
        req: JoinRequest,
        tx: oneshot::Sender<JoinOutcome>,
        cfg: &GroupConfig,
        now: Instant,
    ) {
        let is_leader = self.leader.as_deref() == Some(req.member_id.as_str());
        let Some(m) = self.members.get_mut(&req.member_id) else {
            return;
        };
        let changed = m.protocols != req.protocols;
        m.session_deadline = now + Duration::from_millis(req.session_timeout_ms as u64);
        m.session_timeout_ms = req.session_timeout_ms;
        m.rebalance_timeout_ms = req.rebalance_timeout_ms;
        m.protocols = req.protocols;
        if let Some(old) = m.join_waiter.replace(tx) {
            let _ = old.send(JoinOutcome::error(REBALANCE_IN_PROGRESS, &req.member_id));
        }
        match self.state {
            GroupState::PreparingRebalance => self.maybe_complete_join(now),
            GroupState::CompletingRebalance if !changed => {
                // A lost JoinGroup response: answer it again.
                self.answer_join(&req.member_id);
            }
            GroupState::Stable if !changed && !is_leader => self.answer_join(&req.member_id),
            _ => self.prepare_rebalance(cfg, now),
        }
    }

    pub(super) fn outcome_for(&self, member_id: &str) -> JoinOutcome {
        let leader = self.leader.clone().unwrap_or_default();
        let members = if leader == member_id {
            self.members
                .values()
                .map(|m| JoinedMember {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    metadata: m.metadata_for(self.protocol.as_deref()),
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinOutcome {
            error: NONE,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            leader,
            member_id: member_id.to_string(),
            members,
            skip_assignment: false,
        }
    }

    pub(super) fn answer_join(&mut self, member_id: &str) {
        let o = self.outcome_for(member_id);
        if let Some(w) = self
            .members
            .get_mut(member_id)
            .and_then(|m| m.join_waiter.take())
        {
            let _ = w.send(o);
        }
    }

    pub(super) fn prepare_rebalance(&mut self, cfg: &GroupConfig, now: Instant) {
        if self.state == GroupState::CompletingRebalance {
            for m in self.members.values_mut() {
                m.assignment = Bytes::new();
                if let Some(w) = m.sync_waiter.take() {
                    let _ = w.send(SyncOutcome::error(REBALANCE_IN_PROGRESS));
                }
            }
        }
        let timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout_ms.max(0) as u64)
            .max()
            .unwrap_or(0);
        let limit = now + Duration::from_millis(timeout);
        let was_empty = self.state == GroupState::Empty;
        self.sync_deadline = None;
        self.set_state(GroupState::PreparingRebalance);
        if was_empty && !cfg.initial_rebalance_delay.is_zero() {
            self.delaying = true;
            self.delay_limit = Some(limit);
            self.join_deadline = Some((now + cfg.initial_rebalance_delay).min(limit));
        } else {
            self.delaying = false;
            self.join_deadline = Some(limit);
            self.maybe_complete_join(now);
        }
    }

    pub(super) fn maybe_complete_join(&mut self, now: Instant) {
        if self.state != GroupState::PreparingRebalance || self.delaying {
            return;
        }
        let all_in = self.members.values().all(|m| m.join_waiter.is_some());
        if all_in && self.pending.is_empty() {
            self.complete_join(now);
        }
    }

    pub(super) fn complete_join(&mut self, now: Instant) {
        // Members that did not rejoin in time are out.
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            self.remove_member(&id);
        }
        self.pending.clear();
        self.join_deadline = None;
        self.delaying = false;
        self.delay_limit = None;
        self.generation = self.generation.wrapping_add(1).max(1);
        if self.members.is_empty() {
            self.protocol = None;
            self.leader = None;
            self.set_state(GroupState::Empty);
            return;
        }
        self.protocol = self.select_protocol();
        if !self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.set_state(GroupState::CompletingRebalance);
        let mut max_rebalance = 0u64;
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            self.answer_join(&id);
            if let Some(m) = self.members.get_mut(&id) {
                m.synced = false;
                m.session_deadline = now + Duration::from_millis(m.session_timeout_ms as u64);
                max_rebalance = max_rebalance.max(m.rebalance_timeout_ms.max(0) as u64);
            }
        }
        self.sync_deadline = Some(now + Duration::from_millis(max_rebalance));
    }

    /// Kafka's vote: each member votes for its most preferred protocol that
    /// all members support; most votes wins (ties: the leader's order).
    pub(super) fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(x, _)| x == *n))
            })
            .collect();
        let mut votes: IndexMap<&String, usize> = candidates.iter().map(|c| (*c, 0)).collect();
        for m in self.members.values() {
            if let Some((n, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(&n))
                && let Some(v) = votes.get_mut(n)
            {
                *v += 1;
            }
        }
        let best = votes.values().copied().max()?;
        votes
            .into_iter()
            .find(|(_, v)| *v == best)
            .map(|(n, _)| n.clone())
    }

    pub(super) fn remove_member(&mut self, id: &str) {
        if let Some(mut m) = self.members.shift_remove(id) {
            if let Some(i) = &m.instance_id
                && self.statics.get(i).is_some_and(|b| b == id)
            {
                self.statics.remove(i);
            }
            if let Some(w) = m.join_waiter.take() {
                let _ = w.send(JoinOutcome::error(UNKNOWN_MEMBER_ID, id));
            }
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send(SyncOutcome::error(UNKNOWN_MEMBER_ID));
            }
            self.dirty = true;
        }
    }

    /// A member left or was expired: the rest rebalance.
    pub(super) fn member_gone(&mut self, id: &str, cfg: &GroupConfig, now: Instant) {
        self.remove_member(id);
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(cfg, now)
            }
            GroupState::PreparingRebalance => {
                if self.members.is_empty() {
                    self.delaying = false;
                }
                self.maybe_complete_join(now)
            }
            GroupState::Empty => {}
        }
    }
}

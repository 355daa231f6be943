//! The controller role, on every voter, active on the Raft leader: it takes
//! metadata changes (its own broker's and those forwarded by others), keeps
//! the brokers' sessions, and fences a broker whose heartbeats stop (as
//! KRaft's controller does with `broker.session.timeout.ms`). Sessions live
//! in the leader's memory only: a new leader gives every broker a whole
//! session before fencing it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use karnak_coordinator::metadata::{
    ClusterMetadata, MetadataCommand, MetadataRaft, MetadataResult, MetadataStateMachine,
};
use openraft::Raft;
use openraft::error::{ClientWriteError, RaftError};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::raft_net::Identity;

/// A committed change: what applying it answered, and its log index (the
/// proposer waits for its own state machine to reach it).
#[derive(Debug, Serialize, Deserialize)]
pub struct Proposed {
    pub result: MetadataResult,
    pub index: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
pub enum ProposeError {
    #[error("this node is not the metadata leader (the leader is {leader:?})")]
    NotLeader { leader: Option<u64> },
    #[error("the metadata group failed: {0}")]
    Raft(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BrokerHeartbeat {
    pub broker: i32,
    pub incarnation: [u8; 16],
    /// false: the broker is ready to lead and be in sync (Kafka's `WantFence`).
    pub want_fence: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum HeartbeatAnswer {
    Ok {
        fenced: bool,
    },
    NotLeader {
        leader: Option<u64>,
    },
    /// No registration with this incarnation: register again.
    NotRegistered,
    Failed(String),
}

struct Sessions {
    /// The Raft term this node leads in, and since when: a new term
    /// starts every broker's session afresh.
    term: u64,
    leading_since: Instant,
    last_seen: HashMap<i32, Instant>,
}

pub struct Controller {
    pub raft: Raft<MetadataRaft>,
    pub me: Identity,
    metadata: watch::Receiver<std::sync::Arc<ClusterMetadata>>,
    sessions: Mutex<Sessions>,
    session_timeout: Duration,
}

impl Controller {
    pub fn new(
        raft: Raft<MetadataRaft>,
        me: Identity,
        sm: &MetadataStateMachine,
        session_timeout: Duration,
    ) -> Controller {
        Controller {
            raft,
            me,
            metadata: sm.subscribe(),
            sessions: Mutex::new(Sessions {
                term: 0,
                leading_since: Instant::now(),
                last_seen: HashMap::new(),
            }),
            session_timeout,
        }
    }

    /// The Raft leader as this node knows it.
    pub fn leader(&self) -> Option<u64> {
        self.raft.metrics().borrow().current_leader
    }

    /// Commits `cmd` if this node leads; returns once it is applied here.
    pub async fn propose(&self, cmd: MetadataCommand) -> Result<Proposed, ProposeError> {
        match self.raft.client_write(cmd).await {
            Ok(r) => Ok(Proposed {
                result: r.data,
                index: r.log_id.index,
            }),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(ProposeError::NotLeader {
                    leader: f.leader_id,
                })
            }
            Err(e) => Err(ProposeError::Raft(e.to_string())),
        }
    }

    /// A broker's heartbeat: renews its session, and unfences it when it
    /// asks to be unfenced.
    pub async fn heartbeat(&self, hb: BrokerHeartbeat) -> HeartbeatAnswer {
        let Some(term) = self.leading_term() else {
            return HeartbeatAnswer::NotLeader {
                leader: self.leader(),
            };
        };
        let fenced = {
            let state = self.metadata.borrow();
            match state.brokers.get(&hb.broker) {
                Some(b) if b.incarnation == hb.incarnation => b.fenced,
                _ => return HeartbeatAnswer::NotRegistered,
            }
        };
        self.with_sessions(term, |s| {
            s.last_seen.insert(hb.broker, Instant::now());
        });
        let want = if hb.want_fence == fenced {
            None
        } else if hb.want_fence {
            Some(MetadataCommand::FenceBroker { id: hb.broker })
        } else {
            Some(MetadataCommand::UnfenceBroker { id: hb.broker })
        };
        let Some(cmd) = want else {
            return HeartbeatAnswer::Ok { fenced };
        };
        match self.propose(cmd).await {
            Ok(Proposed { result: Ok(_), .. }) => HeartbeatAnswer::Ok {
                fenced: hb.want_fence,
            },
            Ok(Proposed { result: Err(e), .. }) => HeartbeatAnswer::Failed(e.to_string()),
            Err(ProposeError::NotLeader { leader }) => HeartbeatAnswer::NotLeader { leader },
            Err(e) => HeartbeatAnswer::Failed(e.to_string()),
        }
    }

    /// The current term, if this node leads in it.
    fn leading_term(&self) -> Option<u64> {
        let m = self.raft.metrics();
        let m = m.borrow();
        (m.current_leader == Some(self.me.node_id)).then_some(m.current_term)
    }

    fn with_sessions<T>(&self, term: u64, f: impl FnOnce(&mut Sessions) -> T) -> T {
        let mut s = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if s.term != term {
            s.term = term;
            s.leading_since = Instant::now();
            s.last_seen.clear();
        }
        f(&mut s)
    }

    /// Live brokers whose session has run out while this node leads. Its
    /// own broker is never among them: this code running is its heartbeat.
    fn expired(&self, term: u64) -> Vec<i32> {
        let live: Vec<i32> = self
            .metadata
            .borrow()
            .brokers
            .values()
            .filter(|b| !b.fenced && b.id as u64 != self.me.node_id)
            .map(|b| b.id)
            .collect();
        let now = Instant::now();
        self.with_sessions(term, |s| {
            live.into_iter()
                .filter(|id| {
                    let seen = s.last_seen.get(id).copied().unwrap_or(s.leading_since);
                    now.duration_since(seen) > self.session_timeout
                })
                .collect()
        })
    }

    /// Fences brokers whose sessions expire, every `tick`, until `stopping`.
    pub async fn run_session_expiry(
        self: std::sync::Arc<Self>,
        tick: Duration,
        mut stopping: watch::Receiver<bool>,
    ) {
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = stopping.changed() => return,
            }
            let Some(term) = self.leading_term() else {
                continue;
            };
            for id in self.expired(term) {
                tracing::warn!(
                    broker = id,
                    timeout_ms = self.session_timeout.as_millis() as u64,
                    "fencing a broker whose heartbeats stopped"
                );
                if let Err(e) = self.propose(MetadataCommand::FenceBroker { id }).await {
                    tracing::warn!(broker = id, error = %e, "could not fence a broker");
                }
            }
        }
    }
}

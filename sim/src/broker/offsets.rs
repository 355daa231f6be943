//! Offset commits: client `c` commits ever larger offsets for the topic in
//! a group of its own (OffsetCommit as a standalone consumer: a
//! coordinator shard's log and its group commit) and reads them back
//! (OffsetFetch). Checked as it happens and at the end:
//! - no acknowledged commit is lost: a read (after restarts too) never
//!   shows less than the last offset acknowledged before it was sent;
//! - nothing is made up: it never shows more than the client has sent;
//! - once faults end, every client's final read is served.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    ApiKey, GroupId, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest,
    OffsetFetchResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rand::Rng;

use super::{TOPIC, Target, coordinator_moved, sleep_ms, timed};
use crate::wire::{Conn, Failed};
use crate::world::{Shared, lock};

/// What each client sent, had acknowledged, and read last.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Client {
    pub sent: i64,
    pub acked: i64,
    /// Commits acknowledged.
    pub acked_count: usize,
    pub reads: usize,
    pub last_read: Option<i64>,
    pub done: bool,
}

pub(super) type Clients = Arc<Mutex<Vec<Client>>>;

pub(super) fn clients(c: &Clients) -> std::sync::MutexGuard<'_, Vec<Client>> {
    c.lock().unwrap_or_else(|e| e.into_inner())
}

async fn commit(conn: &mut Conn, group: &str, offset: i64) -> Result<i16, Failed> {
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                .with_partitions(vec![
                    OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(offset),
                ]),
        ]);
    let resp: OffsetCommitResponse = timed(conn.call(ApiKey::OffsetCommit, 8, &req)).await?;
    resp.topics
        .first()
        .and_then(|t| t.partitions.first())
        .map(|p| p.error_code)
        .ok_or_else(|| "an OffsetCommit answer without the partition".into())
}

/// The group's committed offset (-1: none), or the error code.
async fn fetch(conn: &mut Conn, group: &str) -> Result<Result<i64, i16>, Failed> {
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_topics(Some(vec![
            OffsetFetchRequestTopic::default()
                .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                .with_partition_indexes(vec![0]),
        ]));
    let resp: OffsetFetchResponse = timed(conn.call(ApiKey::OffsetFetch, 7, &req)).await?;
    if resp.error_code != 0 {
        return Ok(Err(resp.error_code));
    }
    let p = resp
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .ok_or("an OffsetFetch answer without the partition")?;
    Ok(if p.error_code != 0 {
        Err(p.error_code)
    } else {
        Ok(p.committed_offset)
    })
}

/// `n` clients' states before they start.
pub(super) fn new_clients(n: usize) -> Clients {
    Arc::new(Mutex::new(vec![
        Client {
            sent: -1,
            acked: -1,
            ..Client::default()
        };
        n
    ]))
}

/// One client: commits and reads back until told to stop, then reads once
/// more until served.
pub(super) async fn client_main(
    c: usize,
    seed: u64,
    world: Shared,
    state: Clients,
    stop: Arc<AtomicBool>,
    target: Target,
) -> turmoil::Result {
    let mut rng = super::client_rng(seed, 0x2545_f491_4f6c_dd1d, c);
    let group = format!("group-{c}");
    let who = format!("client {c}");
    let mut next = 0i64;
    let mut topic = false;
    loop {
        let Some(mut conn) = target
            .connect_coordinator(&group, 0, &who, &world, &mut rng, &mut topic)
            .await
        else {
            continue;
        };
        let mut fresh = true;
        loop {
            if stop.load(Ordering::Relaxed) {
                // The final read: what stays once every fault is over.
                match fetch(&mut conn, &group).await {
                    Ok(Ok(v)) => {
                        read(&world, &state, c, v, true);
                        return Ok(());
                    }
                    Ok(Err(code)) if coordinator_moved(code) => break,
                    Ok(Err(_)) => {
                        sleep_ms(&mut rng, 10, 100).await;
                        continue;
                    }
                    Err(_) => break,
                }
            }
            // A read first on every connection: after a crash, what the
            // restarted broker recovered, before a new commit hides it.
            if fresh || rng.gen_bool(0.3) {
                match fetch(&mut conn, &group).await {
                    Ok(Ok(v)) => read(&world, &state, c, v, false),
                    Ok(Err(code)) => {
                        lock(&world).event(format!("client {c} read refused ({code})"));
                        if coordinator_moved(code) {
                            break;
                        }
                    }
                    Err(_) => break,
                }
                fresh = false;
            }
            next += rng.gen_range(1..4);
            clients(&state)[c].sent = next;
            match commit(&mut conn, &group, next).await {
                Ok(0) => {
                    let mut s = clients(&state);
                    s[c].acked = next;
                    s[c].acked_count += 1;
                    drop(s);
                    lock(&world).event(format!("client {c} commit {next} acknowledged"));
                }
                Ok(code) => {
                    lock(&world).event(format!("client {c} commit {next} refused ({code})"));
                    if coordinator_moved(code) {
                        break;
                    }
                    sleep_ms(&mut rng, 10, 100).await;
                }
                Err(e) => {
                    lock(&world).event(format!("client {c} commit {next}: {e}"));
                    break;
                }
            }
            sleep_ms(&mut rng, 1, 30).await;
        }
        sleep_ms(&mut rng, 10, 100).await;
    }
}

/// A read of client `c`'s committed offset: never below what was
/// acknowledged before it, never above what was sent.
fn read(world: &Shared, state: &Clients, c: usize, v: i64, last: bool) {
    let mut s = clients(state);
    let me = &mut s[c];
    me.reads += 1;
    me.last_read = Some(v);
    me.done |= last;
    let (acked, sent) = (me.acked, me.sent);
    drop(s);
    let mut w = lock(world);
    w.event(format!(
        "client {c} reads {v}{}",
        if last { " (final)" } else { "" }
    ));
    w.check(v >= acked, || {
        format!("client {c} read committed offset {v} after {acked} was acknowledged")
    });
    w.check(v <= sent, || {
        format!("client {c} read committed offset {v} but sent at most {sent}")
    });
}

/// The clients' end: each one's final read was served, and some commit was
/// acknowledged (when there are clients). Returns their states and the
/// commits acknowledged.
pub(super) fn check_clients(world: &Shared, state: &Clients) -> (Vec<Client>, usize) {
    let s = clients(state).clone();
    let mut w = lock(world);
    for (c, me) in s.iter().enumerate() {
        w.check(me.done, || {
            format!("client {c}'s final read was never served")
        });
    }
    let acks = s.iter().map(|c| c.acked_count).sum::<usize>();
    w.check(s.is_empty() || acks > 0, || {
        "no offset commit was acknowledged".into()
    });
    (s, acks)
}

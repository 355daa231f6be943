//! Committed offsets expire as in Kafka (KIP-211, `offsets.retention.minutes`):
//! an offset of a group that no longer consumes it is dropped once it has
//! been unused for the retention time, and an empty group whose last
//! offsets expire is deleted. "Unused" is measured from:
//! - a classic group that became Empty: when it did (or the commit, if later);
//! - a KIP-848 group, or a classic `consumer` group's unsubscribed topic, or a
//!   group that only ever had simple commits: the commit.
//!
//! A group still consuming a topic (a live member subscribed to it) keeps its
//! offsets whatever their age, and so does one with transactional offsets
//! not yet settled.

use super::*;
use crate::GroupState;

/// A group's expired offsets, and whether the group goes with them.
type Expired = (String, Vec<(String, i32)>, bool);

impl Shard {
    /// Drops the offsets expired at `now_ms`, and the groups they leave
    /// empty, with tombstones in the shard's log. Returns how many offsets.
    pub fn expire_offsets(&self, now_ms: i64, retention_ms: i64) -> usize {
        let mut st = self.lock();
        let mut records: Vec<(RecordKey, Option<Bytes>)> = Vec::new();
        let mut expired: Vec<Expired> = Vec::new();
        for (id, g) in &st.groups {
            if st.txn_offsets.keys().any(|(gid, _)| gid == id) {
                continue;
            }
            let gone = g.expired_offsets(now_ms, retention_ms);
            if gone.is_empty() {
                continue;
            }
            // Its last offsets gone, an empty group goes too (as DeleteGroups).
            let delete_group =
                g.is_empty() && g.state == GroupState::Empty && gone.len() == g.offsets.len();
            for (topic, partition) in &gone {
                records.push((
                    RecordKey::Offset {
                        group: id.clone(),
                        topic: topic.clone(),
                        partition: *partition,
                    },
                    None,
                ));
            }
            if delete_group {
                records.push((RecordKey::Group(id.clone()), None));
            }
            expired.push((id.clone(), gone, delete_group));
        }
        if records.is_empty() {
            return 0;
        }
        if let Err(e) = self.append(records) {
            tracing::error!(shard = self.id, error = %e, "could not persist expired offsets; will retry");
            return 0;
        }
        let mut count = 0;
        for (id, gone, delete_group) in expired {
            count += gone.len();
            tracing::info!(shard = self.id, group = %id, offsets = gone.len(), group_deleted = delete_group, "expired committed offsets");
            if delete_group {
                st.groups.remove(&id);
            } else if let Some(g) = st.groups.get_mut(&id) {
                for tp in gone {
                    g.offsets.remove(&tp);
                }
            }
        }
        count
    }
}

impl Group {
    /// The offsets of this group expired at `now_ms` (see the module docs).
    pub(crate) fn expired_offsets(&self, now_ms: i64, retention_ms: i64) -> Vec<(String, i32)> {
        let subscribed = self.subscribed_topics();
        let empty = self.is_empty();
        self.offsets
            .iter()
            .filter(|((topic, _), o)| {
                let unused_since = if self.consumer.is_some() {
                    if !empty && subscribed.as_ref().is_none_or(|s| s.contains(topic)) {
                        return false;
                    }
                    o.commit_timestamp_ms
                } else if empty {
                    match self.protocol_type {
                        Some(_) => self.state_timestamp_ms.max(o.commit_timestamp_ms),
                        None => o.commit_timestamp_ms,
                    }
                } else {
                    // A live classic group: only a consumer group's offsets
                    // of topics no member subscribes to.
                    match &subscribed {
                        Some(s) if !s.contains(topic) => o.commit_timestamp_ms,
                        _ => return false,
                    }
                };
                now_ms.saturating_sub(unused_since) >= retention_ms
            })
            .map(|(tp, _)| tp.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use karnak_storage::LogConfig;

    const DAY: i64 = 86_400_000;
    const WEEK: i64 = 7 * DAY;

    fn open(dir: &std::path::Path) -> Shard {
        let log = Arc::new(Log::open(&dir.join("p-0"), "p", 0, LogConfig::default()).unwrap());
        let seq = Sequencer::open(&dir.join("seq"), 1, 16, 1 << 48).unwrap();
        Shard::open(0, log, seq, GroupConfig::default()).unwrap()
    }

    fn commit(shard: &Shard, group: &str, topic: &str) {
        let exists = |_: &str, _: i32| true;
        let offsets = vec![OffsetCommit {
            topic: topic.into(),
            partition: 0,
            offset: 42,
            leader_epoch: -1,
            metadata: None,
        }];
        let (codes, _) = shard.commit(group, &Committer::SIMPLE, offsets, &exists);
        assert_eq!(codes, vec![NONE]);
    }

    #[test]
    fn simple_commits_expire_after_the_retention_and_take_the_group() {
        let dir = tempfile::tempdir().unwrap();
        let shard = open(dir.path());
        commit(&shard, "standalone", "t");
        let now = now_ms();
        assert_eq!(shard.expire_offsets(now + DAY, WEEK), 0);
        assert_eq!(shard.fetch_offsets("standalone", None).len(), 1);
        assert_eq!(shard.expire_offsets(now + WEEK + DAY, WEEK), 1);
        assert!(shard.fetch_offsets("standalone", None).is_empty());
        assert_eq!(shard.delete_group("standalone"), GROUP_ID_NOT_FOUND);
        // Tombstones: a reopened shard does not bring them back.
        drop(shard);
        let shard = open(dir.path());
        assert!(shard.fetch_offsets("standalone", None).is_empty());
        assert_eq!(shard.delete_group("standalone"), GROUP_ID_NOT_FOUND);
    }

    #[test]
    fn an_empty_classic_group_counts_from_when_it_became_empty() {
        let dir = tempfile::tempdir().unwrap();
        let shard = open(dir.path());
        commit(&shard, "g", "t");
        {
            let mut st = shard.lock();
            let g = st.groups.get_mut("g").unwrap();
            // It had consumers, and went Empty a day after the commit.
            g.protocol_type = Some("consumer".into());
            g.state_timestamp_ms = g.offsets.values().next().unwrap().commit_timestamp_ms + DAY;
        }
        let committed = shard.fetch_offsets("g", None)[0]
            .1
            .clone()
            .unwrap()
            .commit_timestamp_ms;
        assert_eq!(shard.expire_offsets(committed + WEEK, WEEK), 0);
        assert_eq!(shard.expire_offsets(committed + WEEK + DAY, WEEK), 1);
    }
}

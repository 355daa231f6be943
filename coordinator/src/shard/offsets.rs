//! Committed offsets through a shard: OffsetCommit (validated against the
//! group's generation or member epoch), OffsetFetch, DeleteGroups and
//! OffsetDelete, each a record (or tombstone) in the shard's partition.

use super::*;

/// An offset a commit may write: its partition and the value to store.
pub(crate) type AcceptedOffset = ((String, i32), StoredOffset);

impl Shard {
    /// Checks each offset of a commit (the partition exists, the metadata
    /// fits); returns a code per offset and the accepted ones as stored.
    pub(crate) fn accept_offsets(
        &self,
        offsets: Vec<OffsetCommit>,
        partition_exists: &dyn Fn(&str, i32) -> bool,
    ) -> (Vec<i16>, Vec<AcceptedOffset>) {
        let ts = now_ms();
        let mut codes = Vec::with_capacity(offsets.len());
        let mut accepted = Vec::new();
        for o in offsets {
            let code = if !partition_exists(&o.topic, o.partition) {
                UNKNOWN_TOPIC_OR_PARTITION
            } else if o
                .metadata
                .as_ref()
                .is_some_and(|m| m.len() > self.cfg.offset_metadata_max_bytes)
            {
                OFFSET_METADATA_TOO_LARGE
            } else {
                NONE
            };
            codes.push(code);
            if code == NONE {
                let stored = StoredOffset {
                    offset: o.offset,
                    leader_epoch: o.leader_epoch,
                    metadata: o.metadata,
                    commit_timestamp_ms: ts,
                };
                accepted.push(((o.topic, o.partition), stored));
            }
        }
        (codes, accepted)
    }

    // ---------------------------------------------------------------- offsets

    /// Validates and writes committed offsets. Returns per-partition codes
    /// and the log offset to flush up to before answering (if any write).
    pub fn commit(
        &self,
        group_id: &str,
        who: &Committer<'_>,
        offsets: Vec<OffsetCommit>,
        partition_exists: &dyn Fn(&str, i32) -> bool,
    ) -> (Vec<i16>, Option<i64>) {
        let mut st = self.lock();
        let exists = st.groups.contains_key(group_id);
        let code = match st.groups.get(group_id) {
            Some(g) => g.check_commit(who.generation, who.member_id, who.instance_id, who.version),
            // A group that does not exist takes simple commits only.
            None if who.generation < 0 && who.member_id.is_empty() => NONE,
            None => UNKNOWN_MEMBER_ID,
        };
        if code != NONE {
            return (vec![code; offsets.len()], None);
        }
        let (codes, accepted) = self.accept_offsets(offsets, partition_exists);
        let records: Vec<_> = accepted
            .iter()
            .map(|((topic, partition), stored)| {
                (
                    RecordKey::Offset {
                        group: group_id.to_string(),
                        topic: topic.clone(),
                        partition: *partition,
                    },
                    Some(stored.encode()),
                )
            })
            .collect();
        if records.is_empty() {
            return (codes, None);
        }
        match self.append(records) {
            Ok(last) => {
                if !exists {
                    tracing::debug!(
                        shard = self.id,
                        group = group_id,
                        "group created by a simple offset commit"
                    );
                }
                st.unflushed_offsets.entry(last).or_default().extend(
                    accepted
                        .into_iter()
                        .map(|(tp, o)| (group_id.to_string(), tp, o)),
                );
                self.show_durable_offsets(&mut st);
                self.maybe_checkpoint(&mut st);
                (codes, Some(last))
            }
            Err(e) => {
                let failed = match e {
                    ShardError::NotCoordinator { .. } => NOT_COORDINATOR,
                    _ => {
                        tracing::error!(shard = self.id, group = group_id, error = %e, "could not persist offsets");
                        UNKNOWN_SERVER_ERROR
                    }
                };
                let codes = codes
                    .into_iter()
                    .map(|c| if c == NONE { failed } else { c })
                    .collect();
                (codes, None)
            }
        }
    }

    /// Shows the commits whose records are durable now (all of them when
    /// commits need no fsync), in log order. The broker calls it once the
    /// fsync a commit waited for is done; a commit never fsynced (the log
    /// went offline) is never shown, and its client got an error.
    pub fn offsets_flushed(&self) {
        let mut st = self.lock();
        self.show_durable_offsets(&mut st);
    }

    pub(crate) fn show_durable_offsets(&self, st: &mut ShardState) {
        let durable = if self.cfg.durable_commits {
            self.log.durable_offset()
        } else {
            i64::MAX
        };
        // Replicated, a commit counts once the in-sync replicas hold it.
        let durable = if self.log.is_replicated() {
            durable.min(self.log.high_watermark())
        } else {
            durable
        };
        while let Some(entry) = st.unflushed_offsets.first_entry() {
            if *entry.key() >= durable {
                break;
            }
            for (group, tp, o) in entry.remove() {
                st.groups
                    .entry(group.clone())
                    .or_insert_with(|| Group::new(&group))
                    .offsets
                    .insert(tp, o);
            }
        }
    }

    /// Forgets the unshown commits of a group being deleted (or of some of
    /// its partitions): the tombstones written after them win on replay.
    fn drop_unflushed(&self, st: &mut ShardState, group_id: &str, only: Option<&[(String, i32)]>) {
        for commits in st.unflushed_offsets.values_mut() {
            commits.retain(|(g, tp, _)| g != group_id || only.is_some_and(|o| !o.contains(tp)));
        }
    }

    /// OffsetFetch v9 names the member: in a KIP-848 group it must exist and
    /// carry its current epoch (classic groups ignore it, as Kafka does).
    pub fn check_offset_fetch(
        &self,
        group_id: &str,
        member_id: &str,
        epoch: i32,
    ) -> Result<(), i16> {
        let st = self.lock();
        let Some(c) = st.groups.get(group_id).and_then(|g| g.consumer.as_ref()) else {
            return Ok(());
        };
        if epoch < 0 && member_id.is_empty() {
            return Ok(());
        }
        match c.members.get(member_id) {
            None => Err(UNKNOWN_MEMBER_ID),
            Some(m) if m.epoch != epoch => Err(STALE_MEMBER_EPOCH),
            Some(_) => Ok(()),
        }
    }

    /// Committed offsets: the ones asked for (-1 where none), or all.
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        wanted: Option<Vec<(String, i32)>>,
    ) -> Vec<((String, i32), Option<StoredOffset>)> {
        let st = self.lock();
        let g = st.groups.get(group_id);
        match wanted {
            Some(list) => list
                .into_iter()
                .map(|tp| {
                    let o = g.and_then(|g| g.offsets.get(&tp).cloned());
                    (tp, o)
                })
                .collect(),
            None => g
                .map(|g| {
                    g.offsets
                        .iter()
                        .map(|(tp, o)| (tp.clone(), Some(o.clone())))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    pub fn delete_group(&self, group_id: &str) -> i16 {
        let mut st = self.lock();
        let Some(g) = st.groups.get(group_id) else {
            return GROUP_ID_NOT_FOUND;
        };
        if !g.is_empty() {
            return NON_EMPTY_GROUP;
        }
        // Commits not yet shown need their tombstones too.
        let mut keys: Vec<&(String, i32)> = g.offsets.keys().collect();
        for (_, tp, _) in st
            .unflushed_offsets
            .values()
            .flatten()
            .filter(|c| c.0 == group_id)
        {
            if !keys.contains(&tp) {
                keys.push(tp);
            }
        }
        let mut records: Vec<(RecordKey, Option<Bytes>)> = keys
            .into_iter()
            .map(|(t, p)| {
                (
                    RecordKey::Offset {
                        group: group_id.to_string(),
                        topic: t.clone(),
                        partition: *p,
                    },
                    None,
                )
            })
            .collect();
        records.push((RecordKey::Group(group_id.to_string()), None));
        match self.append(records) {
            Ok(_) => {
                st.groups.remove(group_id);
                self.drop_unflushed(&mut st, group_id, None);
                NONE
            }
            Err(e) => {
                tracing::error!(shard = self.id, group = group_id, error = %e, "could not persist group deletion");
                UNKNOWN_SERVER_ERROR
            }
        }
    }

    /// OffsetDelete: Err is the top-level code, Ok the per-partition ones.
    pub fn delete_offsets(
        &self,
        group_id: &str,
        partitions: &[(String, i32)],
    ) -> Result<Vec<i16>, i16> {
        let mut guard = self.lock();
        let st = &mut *guard;
        let Some(g) = st.groups.get_mut(group_id) else {
            return Err(GROUP_ID_NOT_FOUND);
        };
        let subscribed = g.subscribed_topics();
        let unflushed = |tp: &(String, i32)| {
            st.unflushed_offsets
                .values()
                .flatten()
                .any(|(gid, t, _)| gid == group_id && t == tp)
        };
        let mut codes = Vec::with_capacity(partitions.len());
        let mut records = Vec::new();
        for (t, p) in partitions {
            if subscribed.as_ref().is_some_and(|s| s.contains(t)) {
                codes.push(GROUP_SUBSCRIBED_TO_TOPIC);
                continue;
            }
            codes.push(NONE);
            let tp = (t.clone(), *p);
            if g.offsets.remove(&tp).is_some() || unflushed(&tp) {
                records.push((
                    RecordKey::Offset {
                        group: group_id.to_string(),
                        topic: t.clone(),
                        partition: *p,
                    },
                    None,
                ));
            }
        }
        if !records.is_empty()
            && let Err(e) = self.append(records)
        {
            tracing::error!(shard = self.id, group = group_id, error = %e, "could not persist offset deletion");
            return Err(UNKNOWN_SERVER_ERROR);
        }
        self.drop_unflushed(st, group_id, Some(partitions));
        Ok(codes)
    }
}

//! Incremental fetch sessions (KIP-227). A consumer or follower that fetches
//! many partitions sends them once; afterwards each fetch names only the
//! partitions whose position changed, and the answer carries only the
//! partitions with something new (records, a moved high watermark, last
//! stable or log start offset, an error). The broker keeps, per session,
//! every partition's fetch position and what it last told the client.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use indexmap::IndexMap;

/// Kafka's `max.incremental.fetch.session.cache.slots` default.
pub const MAX_SESSIONS: usize = 1000;
/// A session idle this long may be evicted for a new one (Kafka's
/// `min.incremental.fetch.session.eviction.ms` default is 2 minutes).
const EVICTABLE_AFTER: Duration = Duration::from_secs(120);
/// Bound on one session's partitions (a client naming more fetches
/// sessionless).
pub const MAX_PARTITIONS_PER_SESSION: usize = 100_000;

/// Kafka's FetchMetadata epochs: 0 asks for a new session, -1 closes one
/// (or means "no session" with id 0).
pub const INITIAL_EPOCH: i32 = 0;
pub const FINAL_EPOCH: i32 = -1;

/// A topic as the fetch version names it: by id from v13, by name before.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TopicKey {
    Id([u8; 16]),
    Name(Bytes),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PartitionKey {
    pub topic: TopicKey,
    pub partition: i32,
}

/// One partition of a session: where the client reads and what it was told.
#[derive(Clone, Debug)]
pub struct CachedPartition {
    pub fetch_offset: i64,
    pub max_bytes: usize,
    /// Last high watermark, last stable and log start offset sent (-1 before
    /// the first answer, so the first one always includes the partition).
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
}

impl CachedPartition {
    pub fn new(fetch_offset: i64, max_bytes: usize) -> Self {
        CachedPartition {
            fetch_offset,
            max_bytes,
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
        }
    }
}

pub struct Session {
    pub id: i32,
    /// The epoch the next incremental request must carry.
    pub epoch: i32,
    /// In fetch order; partitions that returned data move to the back, so
    /// a response budget does not always go to the same partitions.
    pub partitions: IndexMap<PartitionKey, CachedPartition>,
    last_used: Instant,
}

#[derive(Debug, PartialEq, Eq)]
pub enum SessionError {
    /// FETCH_SESSION_ID_NOT_FOUND
    NotFound,
    /// INVALID_FETCH_SESSION_EPOCH
    InvalidEpoch,
}

#[derive(Default)]
pub struct FetchSessionCache {
    sessions: Mutex<HashMap<i32, Session>>,
}

impl FetchSessionCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i32, Session>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Stores a new session holding `partitions`; returns its id, or None
    /// when the cache is full of sessions in use (the client then gets a
    /// full, sessionless answer and tries again later, as with Kafka).
    pub fn create(&self, partitions: IndexMap<PartitionKey, CachedPartition>) -> Option<i32> {
        if partitions.len() > MAX_PARTITIONS_PER_SESSION {
            return None;
        }
        let mut sessions = self.lock();
        let now = Instant::now();
        if sessions.len() >= MAX_SESSIONS {
            let oldest = sessions
                .values()
                .filter(|s| now.duration_since(s.last_used) >= EVICTABLE_AFTER)
                .min_by_key(|s| s.last_used)
                .map(|s| s.id)?;
            sessions.remove(&oldest);
        }
        let id = loop {
            // Random ids: a client cannot guess another one's session.
            let raw = uuid::Uuid::new_v4();
            let b = raw.as_bytes();
            let id = i32::from_be_bytes([b[0] & 0x7f, b[1], b[2], b[3]]);
            if id != 0 && !sessions.contains_key(&id) {
                break id;
            }
        };
        sessions.insert(
            id,
            Session {
                id,
                epoch: 1,
                partitions,
                last_used: now,
            },
        );
        Some(id)
    }

    pub fn remove(&self, id: i32) -> bool {
        self.lock().remove(&id).is_some()
    }

    /// Runs `f` on session `id` if `epoch` is the one it expects next.
    pub fn with_session<R>(
        &self,
        id: i32,
        epoch: i32,
        f: impl FnOnce(&mut Session) -> R,
    ) -> Result<R, SessionError> {
        let mut sessions = self.lock();
        let s = sessions.get_mut(&id).ok_or(SessionError::NotFound)?;
        if s.epoch != epoch {
            return Err(SessionError::InvalidEpoch);
        }
        s.last_used = Instant::now();
        Ok(f(s))
    }
}

impl Session {
    /// The epoch after `e` (wrapping past i32::MAX to 1, as Kafka does).
    pub fn bump_epoch(&mut self) {
        self.epoch = if self.epoch == i32::MAX {
            1
        } else {
            self.epoch + 1
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: i32) -> PartitionKey {
        PartitionKey {
            topic: TopicKey::Name(Bytes::from_static(b"t")),
            partition: p,
        }
    }

    #[test]
    fn sessions_check_epochs_and_are_bounded() {
        let cache = FetchSessionCache::default();
        let mut parts = IndexMap::new();
        parts.insert(key(0), CachedPartition::new(0, 1024));
        let id = cache.create(parts.clone()).unwrap();
        assert!(id > 0);
        assert_eq!(
            cache.with_session(id, 2, |_| ()),
            Err(SessionError::InvalidEpoch)
        );
        assert_eq!(
            cache.with_session(id + 1, 1, |_| ()),
            Err(SessionError::NotFound)
        );
        cache.with_session(id, 1, |s| s.bump_epoch()).unwrap();
        assert!(cache.with_session(id, 2, |s| s.partitions.len()).is_ok());
        assert!(cache.remove(id));
        assert_eq!(
            cache.with_session(id, 2, |_| ()),
            Err(SessionError::NotFound)
        );
        // Full of sessions in use: no new one (nothing idle long enough).
        for _ in 0..MAX_SESSIONS {
            assert!(cache.create(parts.clone()).is_some());
        }
        assert!(cache.create(parts).is_none());
        assert_eq!(cache.len(), MAX_SESSIONS);
    }
}

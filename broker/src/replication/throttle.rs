//! Replication throttles, Kafka's KIP-73 model: a broker's
//! `leader.replication.throttled.rate` bounds the bytes it serves to
//! followers, its `follower.replication.throttled.rate` the bytes its
//! fetchers pull, each counted over the partitions a topic's
//! `leader.replication.throttled.replicas` / `follower.replication.throttled.replicas`
//! name for this broker (`partition:broker,...` or `*`), and only for
//! replicas outside the in-sync set: a reassignment's copy is slowed, the
//! in-sync replicas that acks=all waits on never are. `kafka-reassign-partitions
//! --throttle` sets all four; its `--verify` removes them.
//!
//! The rates are dynamic broker configs, kept in this broker's data dir
//! (per broker, or the cluster default set on the default resource, as
//! the other dynamic broker configs are here).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use karnak_storage::StorageError;
use serde::{Deserialize, Serialize};

pub const LEADER_RATE: &str = "leader.replication.throttled.rate";
pub const FOLLOWER_RATE: &str = "follower.replication.throttled.rate";
pub const RATES: [&str; 2] = [LEADER_RATE, FOLLOWER_RATE];
pub const LEADER_REPLICAS: &str = "leader.replication.throttled.replicas";
pub const FOLLOWER_REPLICAS: &str = "follower.replication.throttled.replicas";

const FILE: &str = "replication-throttles.json";

/// Bytes throttled replication moved, by side (for `/metrics`).
pub const THROTTLED_BYTES: &str = "karnak_replication_throttled_bytes_total";
/// Partitions left out of a replica fetch (follower) or answered without
/// records (leader) because the rate was spent.
pub const THROTTLED_PARTITIONS: &str = "karnak_replication_throttled_partitions_total";

/// A byte rate with a burst of one second's worth (a token bucket). Kafka
/// averages over eleven one-second windows; the long-run bound is the same.
pub struct Quota {
    side: &'static str,
    bucket: Mutex<Bucket>,
}

struct Bucket {
    /// None: unthrottled.
    rate: Option<u64>,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn refill(&mut self, now: Instant) {
        if let Some(rate) = self.rate {
            let dt = now.saturating_duration_since(self.last).as_secs_f64();
            self.tokens = (self.tokens + dt * rate as f64).min(rate as f64);
        }
        self.last = now;
    }
}

impl Quota {
    fn new(side: &'static str) -> Quota {
        Quota {
            side,
            bucket: Mutex::new(Bucket {
                rate: None,
                tokens: 0.0,
                last: Instant::now(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bucket> {
        self.bucket.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_rate(&self, rate: Option<u64>) {
        let mut b = self.lock();
        if b.rate != rate {
            b.rate = rate;
            // A new rate starts with a full second's allowance.
            b.tokens = rate.unwrap_or(0) as f64;
            b.last = Instant::now();
        }
    }

    pub fn rate(&self) -> Option<u64> {
        self.lock().rate
    }

    /// The allowance is spent: throttled partitions wait.
    pub fn exceeded(&self) -> bool {
        self.exceeded_at(Instant::now())
    }

    fn exceeded_at(&self, now: Instant) -> bool {
        let mut b = self.lock();
        if b.rate.is_none() {
            return false;
        }
        b.refill(now);
        b.tokens <= 0.0
    }

    /// Counts bytes a throttled partition moved (may overdraw: a batch is
    /// never split, the debt is paid before the next one).
    pub fn record(&self, bytes: usize) {
        self.record_at(bytes, Instant::now());
    }

    fn record_at(&self, bytes: usize, now: Instant) {
        if bytes == 0 {
            return;
        }
        let mut b = self.lock();
        if b.rate.is_none() {
            return;
        }
        b.refill(now);
        b.tokens -= bytes as f64;
        metrics::counter!(THROTTLED_BYTES, "side" => self.side).increment(bytes as u64);
    }

    /// A partition was held back by this quota.
    pub fn held_back(&self) {
        metrics::counter!(THROTTLED_PARTITIONS, "side" => self.side).increment(1);
    }
}

/// The rate configs as set: on this broker, and the cluster default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateConfigs {
    pub broker: BTreeMap<String, String>,
    pub cluster_default: BTreeMap<String, String>,
}

impl RateConfigs {
    /// Kafka's rule: a LONG of at least 0 (0 stops throttled replication).
    pub fn validate(&self) -> Result<(), String> {
        for (name, value) in self.broker.iter().chain(&self.cluster_default) {
            match value.trim().parse::<i64>() {
                Ok(v) if v >= 0 => {}
                _ => {
                    return Err(format!(
                        "Invalid value {value} for configuration {name}: Value must be at least 0"
                    ));
                }
            }
        }
        Ok(())
    }

    /// The value in force for `name`, and whether it comes from this
    /// broker's own setting (true) or the cluster default.
    pub fn effective(&self, name: &str) -> Option<(&str, bool)> {
        match self.broker.get(name) {
            Some(v) => Some((v.as_str(), true)),
            None => self.cluster_default.get(name).map(|v| (v.as_str(), false)),
        }
    }

    fn rate(&self, name: &str) -> Option<u64> {
        self.effective(name)
            .and_then(|(v, _)| v.trim().parse::<u64>().ok())
            // Kafka's unset value is Long.MAX_VALUE: no throttle.
            .filter(|r| *r < i64::MAX as u64)
    }
}

pub struct Throttles {
    path: PathBuf,
    configs: Mutex<RateConfigs>,
    pub leader: Quota,
    pub follower: Quota,
}

impl Throttles {
    /// Reads the rates kept in `meta_dir` (none: unthrottled).
    pub fn open(meta_dir: &Path) -> Result<Throttles, StorageError> {
        let path = meta_dir.join(FILE);
        let io = |source: std::io::Error| StorageError::Io {
            context: format!("reading {}", path.display()),
            source,
        };
        let configs = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| io(e.into()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => RateConfigs::default(),
            Err(e) => return Err(io(e)),
        };
        let t = Throttles {
            path,
            configs: Mutex::new(RateConfigs::default()),
            leader: Quota::new("leader"),
            follower: Quota::new("follower"),
        };
        t.apply(configs);
        Ok(t)
    }

    pub fn configs(&self) -> RateConfigs {
        self.configs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Validates, persists and applies new rate configs.
    pub fn set(&self, configs: RateConfigs) -> Result<(), String> {
        configs.validate()?;
        let json = serde_json::to_vec_pretty(&configs).map_err(|e| e.to_string())?;
        karnak_storage::write_atomic(&self.path, &json).map_err(|e| e.to_string())?;
        self.apply(configs);
        Ok(())
    }

    fn apply(&self, configs: RateConfigs) {
        self.leader.set_rate(configs.rate(LEADER_RATE));
        self.follower.set_rate(configs.rate(FOLLOWER_RATE));
        *self.configs.lock().unwrap_or_else(|e| e.into_inner()) = configs;
    }
}

/// Whether a `*.replication.throttled.replicas` value names `partition` on
/// broker `node`: `*`, or `partition:broker` entries (Kafka's format).
pub fn lists(value: &str, partition: i32, node: i32) -> bool {
    let value = value.trim();
    if value == "*" {
        return true;
    }
    value.split(',').any(|entry| {
        let mut it = entry.trim().splitn(2, ':');
        let p = it.next().and_then(|p| p.trim().parse::<i32>().ok());
        let b = it.next().and_then(|b| b.trim().parse::<i32>().ok());
        p == Some(partition) && b == Some(node)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_quota_allows_its_rate_with_a_second_of_burst() {
        let q = Quota::new("leader");
        let t0 = Instant::now();
        assert!(!q.exceeded_at(t0), "unthrottled");
        q.set_rate(Some(1000));
        let t0 = q.lock().last;
        assert!(!q.exceeded_at(t0));
        q.record_at(1500, t0); // a batch overdraws
        assert!(q.exceeded_at(t0));
        assert!(
            q.exceeded_at(t0 + Duration::from_millis(400)),
            "still paying 500 back"
        );
        assert!(!q.exceeded_at(t0 + Duration::from_millis(600)));
        // Idle time earns at most a second's worth.
        q.record_at(100, t0 + Duration::from_secs(60));
        q.record_at(900, t0 + Duration::from_secs(60));
        assert!(q.exceeded_at(t0 + Duration::from_secs(60)));
        // Over ten seconds, about rate x time passes.
        let mut moved = 0;
        let mut now = t0 + Duration::from_secs(61);
        let end = now + Duration::from_secs(10);
        while now < end {
            if !q.exceeded_at(now) {
                q.record_at(100, now);
                moved += 100;
            }
            now += Duration::from_millis(10);
        }
        assert!((9_000..=11_100).contains(&moved), "moved {moved}");
        q.set_rate(None);
        assert!(!q.exceeded_at(now));
    }

    #[test]
    fn replica_lists_follow_kafkas_format() {
        assert!(lists("*", 3, 7));
        assert!(lists("0:1, 3:7 ,2:2", 3, 7));
        assert!(!lists("0:1,3:2", 3, 7));
        assert!(!lists("", 0, 0));
        assert!(!lists("junk,3", 3, 7));
    }

    #[test]
    fn rates_persist_and_the_broker_setting_wins() {
        let dir = tempfile::tempdir().unwrap();
        let t = Throttles::open(dir.path()).unwrap();
        assert_eq!(t.leader.rate(), None);
        let mut c = RateConfigs::default();
        c.cluster_default.insert(LEADER_RATE.into(), "5000".into());
        c.cluster_default
            .insert(FOLLOWER_RATE.into(), "6000".into());
        c.broker.insert(LEADER_RATE.into(), "1000".into());
        t.set(c.clone()).unwrap();
        assert_eq!(
            (t.leader.rate(), t.follower.rate()),
            (Some(1000), Some(6000))
        );
        let again = Throttles::open(dir.path()).unwrap();
        assert_eq!(again.configs(), c);
        assert_eq!(again.leader.rate(), Some(1000));
        c.broker.insert(FOLLOWER_RATE.into(), "-1".into());
        assert!(t.set(c).unwrap_err().contains("at least 0"));
        assert_eq!(
            t.follower.rate(),
            Some(6000),
            "a refused change changes nothing"
        );
    }
}

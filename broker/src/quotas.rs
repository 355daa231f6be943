//! Client quotas (Kafka's ClientQuotaManager with KIP-219 throttling) and
//! connection limits (KIP-402's `max.connections`, `max.connections.per.ip`,
//! KIP-612's connection creation rates).
//!
//! Usage is counted per sensor, the entity a quota was found on (see
//! `QuotaStore::client_quota`), as a rate over `quota.window.num` windows
//! of `quota.window.size.seconds`, as Kafka's sampled `Rate`. A request
//! that takes a client over its quota is served, answered with
//! `throttle_time_ms`, and then its connection is not read from for that
//! long (KIP-219), so a client that ignores the field is held to the quota
//! too.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use karnak_coordinator::metadata::ClusterMetadata;
use karnak_coordinator::metadata::quotas::{
    CONSUMER_BYTE_RATE, PRODUCER_BYTE_RATE, REQUEST_PERCENTAGE,
};

/// Sensors idle this long are dropped (Kafka expires them after an hour).
const SENSOR_EXPIRY: Duration = Duration::from_secs(3600);
/// Past this many sensors, idle ones are looked for at each new one.
const SENSOR_SWEEP_AT: usize = 10_000;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `quota.window.num`, `quota.window.size.seconds` and the connection
/// limits.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaConfig {
    pub window: Duration,
    pub samples: u32,
    pub max_connections: Option<usize>,
    pub max_connections_per_ip: Option<usize>,
    pub max_connection_creation_rate: Option<f64>,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        QuotaConfig {
            window: Duration::from_secs(1),
            samples: 11,
            max_connections: None,
            max_connections_per_ip: None,
            max_connection_creation_rate: None,
        }
    }
}

/// What a sensor counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Bytes of produce requests.
    Produce,
    /// Bytes of fetch responses to consumers.
    Fetch,
    /// Time on the request path, in percent of one thread.
    Request,
}

impl Kind {
    fn key(self) -> &'static str {
        match self {
            Kind::Produce => PRODUCER_BYTE_RATE,
            Kind::Fetch => CONSUMER_BYTE_RATE,
            Kind::Request => REQUEST_PERCENTAGE,
        }
    }
}

/// Kafka's sampled rate: per-window sums over the last `samples` windows,
/// divided by the time they cover (never less than `samples - 1` whole
/// windows, so a new sensor does not see a burst as a huge rate).
#[derive(Debug, Clone, Default)]
pub struct Rate {
    /// (window start, sum), oldest first.
    windows: VecDeque<(Instant, f64)>,
    last_used: Option<Instant>,
}

impl Rate {
    fn purge(&mut self, now: Instant, c: &QuotaConfig) {
        let span = c.window * c.samples;
        while self
            .windows
            .front()
            .is_some_and(|(start, _)| now.saturating_duration_since(*start) >= span)
        {
            self.windows.pop_front();
        }
    }

    pub fn record(&mut self, value: f64, now: Instant, c: &QuotaConfig) {
        self.purge(now, c);
        self.last_used = Some(now);
        match self.windows.back_mut() {
            Some((start, sum)) if now.saturating_duration_since(*start) < c.window => *sum += value,
            _ => self.windows.push_back((now, value)),
        }
    }

    /// The time the rate is measured over (Kafka's `Rate.windowSize`).
    fn elapsed(&self, now: Instant, c: &QuotaConfig) -> Duration {
        let oldest = self.windows.front().map_or(now, |(start, _)| *start);
        let elapsed = now.saturating_duration_since(oldest);
        let window_ms = c.window.as_millis().max(1);
        let full = (elapsed.as_millis() / window_ms) as u32;
        let min_full = c.samples.saturating_sub(1);
        if full < min_full {
            elapsed + c.window * (min_full - full)
        } else {
            elapsed
        }
    }

    /// Per second.
    pub fn rate(&mut self, now: Instant, c: &QuotaConfig) -> f64 {
        self.purge(now, c);
        let total: f64 = self.windows.iter().map(|(_, s)| s).sum();
        let secs = self.elapsed(now, c).as_secs_f64();
        if secs <= 0.0 { 0.0 } else { total / secs }
    }

    /// How long the client must pause for the rate to come back to
    /// `bound` (Kafka's QuotaUtils.throttleTime; not capped, as Kafka's
    /// client quotas are not).
    pub fn throttle(&mut self, bound: f64, now: Instant, c: &QuotaConfig) -> Duration {
        let rate = self.rate(now, c);
        if rate <= bound || bound <= 0.0 {
            return Duration::ZERO;
        }
        let elapsed = self.elapsed(now, c);
        Duration::try_from_secs_f64(elapsed.as_secs_f64() * (rate - bound) / bound)
            .unwrap_or(Duration::MAX)
            .min(Duration::from_secs(i32::MAX as u64 / 1000))
    }
}

/// When a throttled connection may be read from again: set by whichever
/// request took it over its quota (possibly a long poll answered later),
/// looked at by its reader before each request.
#[derive(Debug)]
pub struct MuteGate {
    base: Instant,
    /// Nanoseconds after `base`; 0: not muted.
    until: AtomicU64,
}

impl Default for MuteGate {
    fn default() -> Self {
        MuteGate {
            base: Instant::now(),
            until: AtomicU64::new(0),
        }
    }
}

impl MuteGate {
    pub fn mute_for(&self, d: Duration) {
        if d.is_zero() {
            return;
        }
        let until = (Instant::now() + d).saturating_duration_since(self.base);
        self.until
            .fetch_max(until.as_nanos() as u64, Ordering::Relaxed);
    }

    /// The instant reading may resume, if still ahead.
    pub fn muted_until(&self) -> Option<Instant> {
        let n = self.until.load(Ordering::Relaxed);
        let t = self.base + Duration::from_nanos(n);
        (n > 0 && t > Instant::now()).then_some(t)
    }
}

/// The client a request is counted for: Kafka's quota user (the
/// principal's name) and client id, and its connection's gate.
#[derive(Clone)]
pub struct QuotaClient {
    pub user: String,
    pub client_id: String,
    pub gate: Arc<MuteGate>,
}

/// Why a new connection is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Closed at once.
    PerIpLimit,
    /// Left unread for this long, then closed (Kafka's delayed close).
    IpCreationRate(Duration),
}

/// A connection counted against its address's limit until dropped.
pub struct IpSlot {
    manager: Arc<QuotaManager>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut per_ip = lock(&self.manager.per_ip);
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

pub struct QuotaManager {
    pub config: QuotaConfig,
    sensors: Mutex<HashMap<(Kind, String, String), Rate>>,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    ip_rates: Mutex<HashMap<IpAddr, Rate>>,
    accept_rate: Mutex<Rate>,
    /// `max.connections` (None: no limit), taken before each accept.
    pub connection_permits: Option<Arc<tokio::sync::Semaphore>>,
}

impl QuotaManager {
    pub fn new(config: QuotaConfig) -> Arc<Self> {
        Arc::new(QuotaManager {
            connection_permits: config
                .max_connections
                .map(|n| Arc::new(tokio::sync::Semaphore::new(n))),
            config,
            sensors: Mutex::new(HashMap::new()),
            per_ip: Mutex::new(HashMap::new()),
            ip_rates: Mutex::new(HashMap::new()),
            accept_rate: Mutex::new(Rate::default()),
        })
    }

    /// The most a quota'd client may take in one response (Kafka's
    /// `getMaxValueInQuotaWindow`: the bound over all windows but one).
    pub fn window_bound(
        &self,
        meta: &ClusterMetadata,
        kind: Kind,
        client: &QuotaClient,
    ) -> Option<f64> {
        let q = meta
            .quotas
            .client_quota(&client.user, &client.client_id, kind.key())?;
        Some(
            q.bound
                * f64::from(self.config.samples.saturating_sub(1))
                * self.config.window.as_secs_f64(),
        )
    }

    /// Counts `value` for the client and returns how long it is throttled
    /// for (zero when it has no quota of this kind or is within it); the
    /// client's connection is muted that long. With `unrecord_throttled`
    /// a throttled value is taken back out (Kafka's throttled fetch: its
    /// records are not sent, so they do not count).
    pub fn record(
        &self,
        meta: &ClusterMetadata,
        kind: Kind,
        client: &QuotaClient,
        value: f64,
        unrecord_throttled: bool,
    ) -> Duration {
        if meta.quotas.is_empty() {
            return Duration::ZERO;
        }
        let Some(q) = meta
            .quotas
            .client_quota(&client.user, &client.client_id, kind.key())
        else {
            return Duration::ZERO;
        };
        let now = Instant::now();
        let throttle = {
            let mut sensors = lock(&self.sensors);
            let key = (kind, q.user, q.client_id);
            if !sensors.contains_key(&key) && sensors.len() >= SENSOR_SWEEP_AT {
                sensors.retain(|_, r| {
                    r.last_used
                        .is_some_and(|t| now.saturating_duration_since(t) < SENSOR_EXPIRY)
                });
            }
            let rate = sensors.entry(key).or_default();
            rate.record(value, now, &self.config);
            let t = rate.throttle(q.bound, now, &self.config);
            if !t.is_zero() && unrecord_throttled {
                rate.record(-value, now, &self.config);
            }
            t
        };
        if !throttle.is_zero() {
            client.gate.mute_for(throttle);
            metrics::counter!(crate::metrics::QUOTA_THROTTLED, "quota" => kind.key()).increment(1);
        }
        throttle
    }

    /// `max.connection.creation.rate`: how long the accept loop waits
    /// before its next accept.
    pub fn accept_delay(&self) -> Duration {
        let Some(bound) = self.config.max_connection_creation_rate else {
            return Duration::ZERO;
        };
        let now = Instant::now();
        let mut r = lock(&self.accept_rate);
        r.record(1.0, now, &self.config);
        r.throttle(bound, now, &self.config)
    }

    /// Admits a new connection from `ip`: under `max.connections.per.ip`
    /// and the address's `connection_creation_rate` quota, or refused.
    pub fn admit(self: &Arc<Self>, meta: &ClusterMetadata, ip: IpAddr) -> Result<IpSlot, Refused> {
        if let Some(bound) = meta.quotas.ip_quota(&ip.to_string()) {
            let now = Instant::now();
            let mut rates = lock(&self.ip_rates);
            if rates.len() >= SENSOR_SWEEP_AT {
                rates.retain(|_, r| {
                    r.last_used
                        .is_some_and(|t| now.saturating_duration_since(t) < SENSOR_EXPIRY)
                });
            }
            let r = rates.entry(ip).or_default();
            r.record(1.0, now, &self.config);
            let t = r.throttle(bound, now, &self.config);
            if !t.is_zero() {
                // Not counted (as Kafka): a client retrying is admitted
                // once its rate is back under the quota.
                r.record(-1.0, now, &self.config);
                return Err(Refused::IpCreationRate(t.min(self.config.window)));
            }
        }
        let mut per_ip = lock(&self.per_ip);
        let n = per_ip.entry(ip).or_default();
        if self
            .config
            .max_connections_per_ip
            .is_some_and(|max| *n >= max)
        {
            if *n == 0 {
                per_ip.remove(&ip);
            }
            return Err(Refused::PerIpLimit);
        }
        *n += 1;
        Ok(IpSlot {
            manager: self.clone(),
            ip,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(samples: u32) -> QuotaConfig {
        QuotaConfig {
            samples,
            ..QuotaConfig::default()
        }
    }

    #[test]
    fn a_new_sensor_measures_over_the_whole_window() {
        let c = config(11);
        let t0 = Instant::now();
        let mut r = Rate::default();
        r.record(1000.0, t0, &c);
        // 1000 bytes over at least 10 windows: 100/s.
        assert!((r.rate(t0, &c) - 100.0).abs() < 1e-6);
        assert_eq!(r.throttle(200.0, t0, &c), Duration::ZERO);
        // Twice the bound over 10 s: pause 10 s to halve it.
        r.record(1000.0, t0, &c);
        let t = r.throttle(100.0, t0, &c);
        assert_eq!(t, Duration::from_secs(10));
    }

    #[test]
    fn old_windows_drop_out() {
        let c = config(2);
        let t0 = Instant::now();
        let mut r = Rate::default();
        r.record(500.0, t0, &c);
        r.record(500.0, t0 + Duration::from_millis(1500), &c);
        assert!(r.rate(t0 + Duration::from_millis(1500), &c) > 0.0);
        // Both windows older than 2 s: nothing left.
        assert_eq!(r.rate(t0 + Duration::from_secs(4), &c), 0.0);
        // A huge burst: a long pause (Kafka does not cap it either).
        r.record(1e6, t0 + Duration::from_secs(4), &c);
        let t = r.throttle(1.0, t0 + Duration::from_secs(4), &c);
        assert!(t > Duration::from_secs(1000), "{t:?}");
    }

    #[test]
    fn gate_and_per_ip_limits() {
        let g = MuteGate::default();
        assert!(g.muted_until().is_none());
        g.mute_for(Duration::from_secs(5));
        g.mute_for(Duration::from_millis(1));
        let until = g.muted_until().unwrap();
        assert!(until > Instant::now() + Duration::from_secs(4));
        let m = QuotaManager::new(QuotaConfig {
            max_connections_per_ip: Some(2),
            ..QuotaConfig::default()
        });
        let meta = ClusterMetadata::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let a = m.admit(&meta, ip).unwrap();
        let _b = m.admit(&meta, ip).unwrap();
        assert_eq!(m.admit(&meta, ip).err(), Some(Refused::PerIpLimit));
        assert!(m.admit(&meta, "10.0.0.2".parse().unwrap()).is_ok());
        drop(a);
        assert!(m.admit(&meta, ip).is_ok());
    }
}

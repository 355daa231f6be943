//! Failed logins per client address. Kafka's
//! `connection.failed.authentication.delay.ms` slows the guesses of one
//! connection, not of a client that opens many: 200 connections in flight
//! make 1,000 failed logins a second, each PLAIN one a PBKDF2 run (a
//! millisecond or more of a core). Here each address has a budget of
//! `--failed-authentication-rate-per-ip` failed logins a second (and as many
//! at once): past it, its next attempts wait for their turn (at most
//! [`MAX_WAIT`]), and past that they are refused without being checked. So a
//! flood from one address costs at most that many checks a second, and the
//! clients already logged in keep the cores. A login that succeeds gives its
//! turn back: a client whose logins succeed never waits.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The longest an attempt waits for its address's turn; past it the
/// attempt is refused unchecked.
pub const MAX_WAIT: Duration = Duration::from_secs(5);
/// Addresses tracked at most (a spray over an IPv6 prefix must not grow
/// the map without end). When full of addresses still owing turns, a new
/// address is not limited here (the global bound on concurrent PLAIN
/// checks still holds).
const MAX_ADDRESSES: usize = 65_536;

/// What an attempt from an address may do now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Admit {
    Now,
    /// Check it after waiting this long.
    After(Duration),
    /// Refuse it unchecked: the address is far over its budget.
    Refuse,
}

struct Bucket {
    /// Turns left; below zero, turns already promised to waiting attempts.
    turns: f64,
    at: Instant,
}

pub struct LoginGuard {
    /// Turns a second per address (0: no limit).
    rate: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl LoginGuard {
    pub fn new(rate: f64) -> LoginGuard {
        LoginGuard {
            rate: rate.max(0.0),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// A full bucket holds one second's turns (at least one).
    fn burst(&self) -> f64 {
        self.rate.max(1.0)
    }

    fn refill(&self, b: &mut Bucket, now: Instant) {
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.turns = (b.turns + elapsed * self.rate).min(self.burst());
        b.at = now;
    }

    /// Takes a turn for a login attempt from `ip`.
    pub fn admit(&self, ip: IpAddr, now: Instant) -> Admit {
        if self.rate == 0.0 {
            return Admit::Now;
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_ADDRESSES && !buckets.contains_key(&ip) {
            let burst = self.burst();
            buckets.retain(|_, b| {
                self.refill(b, now);
                b.turns < burst
            });
            if buckets.len() >= MAX_ADDRESSES {
                return Admit::Now;
            }
        }
        let b = buckets.entry(ip).or_insert(Bucket {
            turns: self.burst(),
            at: now,
        });
        self.refill(b, now);
        b.turns -= 1.0;
        if b.turns >= 0.0 {
            return Admit::Now;
        }
        let wait = Duration::from_secs_f64(-b.turns / self.rate);
        if wait > MAX_WAIT {
            // Not checked, so it costs no turn.
            b.turns += 1.0;
            return Admit::Refuse;
        }
        Admit::After(wait)
    }

    /// The login from `ip` succeeded: its turn is given back.
    pub fn succeeded(&self, ip: IpAddr) {
        if self.rate == 0.0 {
            return;
        }
        let burst = self.burst();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = buckets.get_mut(&ip) {
            b.turns = (b.turns + 1.0).min(burst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn an_address_over_its_budget_waits_then_is_refused() {
        let g = LoginGuard::new(10.0);
        let t = Instant::now();
        for _ in 0..10 {
            assert_eq!(g.admit(ip(1), t), Admit::Now);
        }
        // The 11th waits a tenth of a second, the 60th five seconds.
        assert_eq!(g.admit(ip(1), t), Admit::After(Duration::from_millis(100)));
        for _ in 12..60 {
            assert!(matches!(g.admit(ip(1), t), Admit::After(_)));
        }
        assert_eq!(g.admit(ip(1), t), Admit::After(MAX_WAIT));
        assert_eq!(g.admit(ip(1), t), Admit::Refuse);
        assert_eq!(g.admit(ip(1), t), Admit::Refuse);
        // Another address is not held back.
        assert_eq!(g.admit(ip(2), t), Admit::Now);
        // Six seconds on, the debt is paid and one turn is free again.
        let later = t + Duration::from_secs(6);
        assert_eq!(g.admit(ip(1), later), Admit::Now);
    }

    #[test]
    fn logins_that_succeed_never_wait() {
        let g = LoginGuard::new(2.0);
        let t = Instant::now();
        for _ in 0..1000 {
            assert_eq!(g.admit(ip(1), t), Admit::Now);
            g.succeeded(ip(1));
        }
    }

    #[test]
    fn zero_is_no_limit() {
        let g = LoginGuard::new(0.0);
        let t = Instant::now();
        for _ in 0..1000 {
            assert_eq!(g.admit(ip(1), t), Admit::Now);
        }
    }

    #[test]
    fn the_map_stays_bounded() {
        let g = LoginGuard::new(1.0);
        let t = Instant::now();
        for n in 0..(MAX_ADDRESSES as u32 + 10) {
            let a = IpAddr::from(n.to_be_bytes());
            assert_eq!(g.admit(a, t), Admit::Now);
        }
        assert!(g.buckets.lock().unwrap().len() <= MAX_ADDRESSES);
        // Once their turns are back, the old addresses make room.
        let later = t + Duration::from_secs(2);
        g.admit(ip(200), later);
        assert!(g.buckets.lock().unwrap().len() < 10);
    }
}

//! A broker's lease on its roles. A partition leader or coordinator cut off
//! from the metadata quorum does not learn that the controller fenced it
//! and moved its partitions: without a bound it would go on answering
//! fetches, acks=1 produce and offset fetches from state the cluster left
//! behind (stale reads, and acks=1 writes that are later truncated). So
//! the broker serves as leader or coordinator only while it holds a lease:
//! each heartbeat the controller confirms, with a quorum, after it arrived
//! renews it from the moment the heartbeat was *sent*, for 3/4 of the
//! broker session. The controller fences a broker no sooner than a whole
//! session after the last heartbeat it received (a new controller, a whole
//! session after it took over), so the lease ends first. The lease counts
//! only once this broker's roles follow the metadata up to the index the
//! controller answered with: a broker back from a partition first drops
//! the roles it lost meanwhile.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

pub struct RoleLease {
    /// A single node holds its roles for good: there is no one to fence it.
    always: bool,
    length: Duration,
    base: Instant,
    /// Nanoseconds after `base` the lease runs to; 0: not held.
    until: AtomicU64,
    /// The metadata index this broker's replicas and shards follow, and a
    /// confirmed heartbeat (sent then) waiting for them to reach an index.
    roles: Mutex<Roles>,
}

#[derive(Default)]
struct Roles {
    followed: u64,
    pending: Option<(Instant, u64)>,
}

impl RoleLease {
    /// The lease for a broker session of `session_timeout`; `always` for a
    /// single node.
    pub fn new(session_timeout: Duration, always: bool) -> RoleLease {
        RoleLease {
            always,
            length: session_timeout * 3 / 4,
            base: Instant::now(),
            until: AtomicU64::new(0),
            roles: Mutex::new(Roles::default()),
        }
    }

    /// This broker may answer as a leader or coordinator now.
    /// On the produce and fetch paths: a single node reads no clock.
    pub fn holds(&self) -> bool {
        self.always || self.holds_at(Instant::now())
    }

    fn holds_at(&self, now: Instant) -> bool {
        self.always
            || now.saturating_duration_since(self.base).as_nanos()
                < u128::from(self.until.load(Ordering::Acquire))
    }

    /// The heartbeat sent at `sent` was confirmed with metadata `index`:
    /// the lease runs from then, once the roles follow that index (at once
    /// if they do).
    pub fn confirmed(&self, sent: Instant, index: u64) {
        let mut roles = self.roles();
        if roles.followed >= index {
            self.renew_from(sent);
        } else {
            roles.pending = Some((sent, index));
        }
    }

    /// Extends the lease to `length` after `sent`. Never shortens it.
    fn renew_from(&self, sent: Instant) {
        let end = (sent + self.length).saturating_duration_since(self.base);
        let end = u64::try_from(end.as_nanos()).unwrap_or(u64::MAX).max(1);
        self.until.fetch_max(end, Ordering::AcqRel);
    }

    /// The controller answered that this broker is fenced.
    pub fn revoke(&self) {
        let mut roles = self.roles();
        roles.pending = None;
        self.until.store(0, Ordering::Release);
    }

    /// The replicas and shards took their roles from the metadata at `index`.
    pub fn followed(&self, index: u64) {
        let mut roles = self.roles();
        roles.followed = roles.followed.max(index);
        if let Some((sent, want)) = roles.pending
            && roles.followed >= want
        {
            roles.pending = None;
            self.renew_from(sent);
        }
    }

    fn roles(&self) -> std::sync::MutexGuard<'_, Roles> {
        self.roles.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_lease_runs_from_the_heartbeat_sent_and_ends_on_its_own() {
        let lease = RoleLease::new(1_000 * MS, false);
        let sent = Instant::now();
        assert!(
            !lease.holds_at(sent),
            "no lease before a confirmed heartbeat"
        );
        lease.confirmed(sent, 0);
        assert!(lease.holds_at(sent + 100 * MS));
        assert!(lease.holds_at(sent + 749 * MS), "within 3/4 of the session");
        assert!(!lease.holds_at(sent + 751 * MS), "past 3/4 of the session");
        // An older confirmation never shortens a newer one.
        lease.confirmed(sent + 500 * MS, 0);
        lease.confirmed(sent, 0);
        assert!(lease.holds_at(sent + 1_200 * MS));
        assert!(!lease.holds_at(sent + 1_260 * MS));
        lease.revoke();
        assert!(!lease.holds_at(sent + 600 * MS));
        assert!(RoleLease::new(MS, true).holds_at(sent + 3_600_000 * MS));
    }

    #[test]
    fn the_lease_waits_for_the_roles_to_follow_the_metadata() {
        let lease = RoleLease::new(1_000 * MS, false);
        lease.followed(5);
        let sent = Instant::now();
        lease.confirmed(sent, 8);
        assert!(
            !lease.holds_at(sent),
            "roles at index 5, the controller answered 8"
        );
        lease.followed(7);
        assert!(!lease.holds_at(sent));
        lease.followed(9);
        assert!(lease.holds_at(sent + 700 * MS), "roles past 8: held");
        assert!(
            !lease.holds_at(sent + 760 * MS),
            "it runs from the heartbeat sent, not from when the roles followed"
        );
        lease.followed(3); // never goes back
        lease.confirmed(sent + 100 * MS, 9);
        assert!(lease.holds_at(sent + 800 * MS));
        // A fenced answer drops a confirmation still waiting.
        lease.revoke();
        lease.confirmed(sent + 200 * MS, 20);
        lease.revoke();
        lease.followed(20);
        assert!(!lease.holds_at(sent + 300 * MS));
    }
}

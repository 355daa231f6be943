//! SASL on the SASL_PLAINTEXT and SASL_SSL listeners, as Kafka does it
//! (KIP-43 SaslHandshake, KIP-152 SaslAuthenticate, KIP-84 SCRAM, KIP-368
//! re-authentication): a connection serves only ApiVersions, SaslHandshake
//! and SaslAuthenticate until it has authenticated; a failed login gets
//! SASL_AUTHENTICATION_FAILED, the same words whether or not the user
//! exists, and the connection is closed.
//!
//! Credentials live in the cluster metadata (every broker authenticates
//! against the same set), changed with AlterUserScramCredentials, and
//! bootstrapped from `--sasl-users-file` (`user:password` lines; also
//! `--sql-password-file`: the SQL gateway logs in the same users): at start, a user of the file that the
//! metadata has no credential for gets one for SHA-256 and SHA-512. A
//! password is kept only as SCRAM credentials (salt, iterations, StoredKey,
//! ServerKey), and SASL/PLAIN is checked against those.

pub mod guard;
pub mod oauthbearer;
pub mod scram;
pub mod users;

pub use users::{Users, bootstrap};

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use karnak_coordinator::metadata::ClusterMetadata;
use scram::{MIN_ITERATIONS, ScramCredential, ScramMechanism, ScramServer};

/// A SASL mechanism served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Scram(ScramMechanism),
    OAuthBearer,
}

impl Mechanism {
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Scram(m) => m.name(),
            Mechanism::OAuthBearer => "OAUTHBEARER",
        }
    }

    pub fn parse(s: &str) -> Option<Mechanism> {
        match s {
            "PLAIN" => Some(Mechanism::Plain),
            "SCRAM-SHA-256" => Some(Mechanism::Scram(ScramMechanism::Sha256)),
            "SCRAM-SHA-512" => Some(Mechanism::Scram(ScramMechanism::Sha512)),
            "OAUTHBEARER" => Some(Mechanism::OAuthBearer),
            _ => None,
        }
    }
}

/// The most bytes one SASL token may carry (Kafka's `sasl.server.max.receive.size`).
pub const MAX_TOKEN: usize = 512 * 1024;

/// The salt shown for an unknown user: the same every time (keyed by a
/// secret of this process), so asking twice does not tell a made-up user
/// from a real one.
pub fn fake_salt(secret: &[u8], user: &str) -> Vec<u8> {
    ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret),
        user.as_bytes(),
    )
    .as_ref()
    .to_vec()
}

/// A user's credential for a mechanism, from the metadata.
pub fn credential(
    meta: &ClusterMetadata,
    user: &str,
    m: ScramMechanism,
) -> Option<ScramCredential> {
    meta.scram_credential(user, m.name())
        .map(|r| ScramCredential {
            salt: r.salt.clone(),
            iterations: r.iterations,
            stored_key: r.stored_key.clone(),
            server_key: r.server_key.clone(),
        })
}

/// The SASL settings of the broker.
pub struct SaslConfig {
    pub mechanisms: Vec<Mechanism>,
    /// KIP-368's `connections.max.reauth.ms`: 0 never expires a login.
    pub reauth: Duration,
    /// Kafka's `connection.failed.authentication.delay.ms`: a failed login
    /// is answered (and its connection closed) this much later.
    pub failed_delay: Duration,
    /// Failed logins per client address (`--failed-authentication-rate-per-ip`).
    pub guard: guard::LoginGuard,
    /// OAUTHBEARER's token validation, when that mechanism is enabled.
    pub oauth: Option<oauthbearer::OAuthBearer>,
    /// Makes the salt shown for an unknown user (the same every time, so a
    /// client cannot tell a made-up user from a real one by asking twice).
    secret: Vec<u8>,
    /// PLAIN checks (PBKDF2, a millisecond or more each) run at once: half
    /// the cores at most, so a flood of logins cannot take every core from
    /// the clients already logged in.
    pub plain_checks: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for SaslConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslConfig")
            .field("mechanisms", &self.names())
            .field("reauth", &self.reauth)
            .finish()
    }
}

/// Kafka's `sasl.oauthbearer.*` settings as given.
#[derive(Default)]
pub struct OAuthFlags {
    /// `file://` URL or path of the JWKS.
    pub jwks: Option<String>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub sub_claim: Option<String>,
    pub clock_skew_secs: Option<u64>,
}

/// The SASL settings the listeners need: None without a SASL listener.
pub fn settings(
    listeners: &crate::listeners::Listeners,
    mechanisms: Option<&str>,
    reauth_ms: u64,
    failed_delay_ms: u64,
    failed_rate_per_ip: f64,
    oauth: OAuthFlags,
) -> anyhow::Result<Option<Arc<SaslConfig>>> {
    use anyhow::{Context, bail};
    if !listeners.specs.iter().any(|l| l.protocol.sasl()) {
        if mechanisms.is_some() {
            tracing::warn!("--sasl-enabled-mechanisms is unused: no SASL listener");
        }
        return Ok(None);
    }
    let mut list = Vec::new();
    for name in mechanisms
        .unwrap_or("SCRAM-SHA-256,SCRAM-SHA-512")
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
    {
        let m = Mechanism::parse(&name.to_ascii_uppercase()).with_context(|| {
            format!("--sasl-enabled-mechanisms: {name} is not served (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER)")
        })?;
        if !list.contains(&m) {
            list.push(m);
        }
    }
    if list.is_empty() {
        bail!("--sasl-enabled-mechanisms names no mechanism");
    }
    let oauth = if list.contains(&Mechanism::OAuthBearer) {
        let url = oauth.jwks.context(
            "OAUTHBEARER needs --sasl-oauthbearer-jwks-endpoint-url (a file:// URL or a path to a JWKS file)",
        )?;
        if url.starts_with("http://") || url.starts_with("https://") {
            bail!(
                "--sasl-oauthbearer-jwks-endpoint-url {url}: only JWKS files are served (file://)"
            );
        }
        let path = url.strip_prefix("file://").unwrap_or(&url);
        Some(
            oauthbearer::OAuthBearer::load(
                Path::new(path),
                oauth.issuer,
                oauth.audience,
                oauth.sub_claim,
                oauth.clock_skew_secs.unwrap_or(30),
            )
            .map_err(anyhow::Error::msg)?,
        )
    } else {
        None
    };
    Ok(Some(Arc::new(SaslConfig {
        mechanisms: list,
        reauth: Duration::from_millis(reauth_ms),
        failed_delay: Duration::from_millis(failed_delay_ms),
        guard: guard::LoginGuard::new(failed_rate_per_ip),
        oauth,
        secret: scram::random_bytes(32),
        plain_checks: Arc::new(tokio::sync::Semaphore::new(
            std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1)),
        )),
    })))
}

impl SaslConfig {
    pub fn fake_salt(&self, user: &str) -> Vec<u8> {
        fake_salt(&self.secret, user)
    }

    /// SASL/PLAIN: the password against the user's SCRAM credential (one
    /// PBKDF2 run; an unknown user costs the same).
    pub fn check_plain(&self, meta: &ClusterMetadata, user: &str, password: &str) -> bool {
        let known = [ScramMechanism::Sha256, ScramMechanism::Sha512]
            .into_iter()
            .find_map(|m| credential(meta, user, m).map(|c| (m, c)));
        match known {
            Some((m, c)) => c.check_password(m, password),
            None => {
                let decoy = ScramCredential::from_salted(
                    ScramMechanism::Sha256,
                    self.fake_salt(user),
                    MIN_ITERATIONS,
                    &[0; 32],
                );
                let _ = decoy.check_password(ScramMechanism::Sha256, password);
                false
            }
        }
    }

    pub fn enabled(&self, m: &str) -> Option<Mechanism> {
        Mechanism::parse(m).filter(|m| self.mechanisms.contains(m))
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.mechanisms.iter().map(|m| m.name()).collect()
    }
}

/// Where a connection stands.
enum State {
    /// A listener without SASL: nothing to do.
    Open,
    /// Waiting for SaslHandshake.
    Handshake,
    /// A mechanism chosen; waiting for SaslAuthenticate.
    Plain,
    Scram(Box<ScramServer>),
    OAuth,
    /// A SaslAuthenticate token being checked (off the reactor).
    Checking,
    /// A failed login: nothing more is served; the connection closes.
    Failed,
    Authenticated {
        expires: Option<Instant>,
    },
}

/// A connection's authentication: its state, who it is, and whether it
/// must be closed once the answers owed are written.
pub struct ConnAuth {
    state: Mutex<State>,
    /// `User:<name>` once authenticated; kept across re-authentication,
    /// which must be as the same user.
    /// `User:<name>` once logged in; shared, as every request's ACL check reads it.
    principal: Mutex<Option<Arc<str>>>,
    /// The mechanism chosen in the last handshake.
    mechanism: Mutex<Option<Mechanism>>,
    close: tokio::sync::Notify,
    /// The state is `Checking`: read without the lock by the connection
    /// before every request.
    checking: std::sync::atomic::AtomicBool,
    /// Told when a token's check ends (the state leaves `Checking`).
    checked: tokio::sync::Notify,
}

/// What the gate says about a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Gate {
    Serve,
    /// Before authentication: only the SASL exchange is served.
    NotAuthenticated,
    /// KIP-368: the login expired and the client did not log in again.
    Expired,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ConnAuth {
    pub fn new(sasl: bool) -> Arc<ConnAuth> {
        Arc::new(ConnAuth {
            state: Mutex::new(if sasl { State::Handshake } else { State::Open }),
            principal: Mutex::new(None),
            mechanism: Mutex::new(None),
            close: tokio::sync::Notify::new(),
            checking: std::sync::atomic::AtomicBool::new(false),
            checked: tokio::sync::Notify::new(),
        })
    }

    /// Returns once no SaslAuthenticate token is being checked. A request
    /// pipelined behind one is handled after the login, as Kafka reads it:
    /// gated before, it was refused as unauthenticated.
    pub async fn checked(&self) {
        loop {
            let notified = self.checked.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if !self.is_checking() {
                return;
            }
            notified.await;
        }
    }

    /// A SaslAuthenticate token is being checked now.
    pub fn is_checking(&self) -> bool {
        self.checking.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The state leaves `Checking`: wake the connection's reader.
    fn set_checked(&self, state: State) {
        *lock(&self.state) = state;
        self.checking
            .store(false, std::sync::atomic::Ordering::Release);
        self.checked.notify_waiters();
    }

    /// Whether a request with this API key may be served now.
    pub fn gate(&self, key: kafka_protocol::messages::ApiKey) -> Gate {
        self.gate_at(key, Instant::now())
    }

    fn gate_at(&self, key: kafka_protocol::messages::ApiKey, now: Instant) -> Gate {
        use kafka_protocol::messages::ApiKey;
        let exchange = matches!(
            key,
            ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
        );
        match &*lock(&self.state) {
            State::Open => Gate::Serve,
            State::Authenticated { expires } => match expires {
                Some(t) if now >= *t && !exchange => Gate::Expired,
                _ => Gate::Serve,
            },
            _ if exchange => Gate::Serve,
            _ => Gate::NotAuthenticated,
        }
    }

    pub fn is_sasl(&self) -> bool {
        !matches!(*lock(&self.state), State::Open)
    }

    pub fn principal(&self) -> Option<Arc<str>> {
        lock(&self.principal).clone()
    }

    pub fn mechanism(&self) -> Option<Mechanism> {
        *lock(&self.mechanism)
    }

    /// Ask the connection to close once its answers are written.
    pub fn close_after_answers(&self) {
        self.close.notify_one();
    }

    /// Resolves when the connection must close.
    pub async fn closing(&self) {
        self.close.notified().await
    }

    /// SaslHandshake with an enabled mechanism: Err(()) when the state
    /// does not allow one (mid-exchange).
    pub fn begin(&self, m: Mechanism) -> Result<(), ()> {
        let mut st = lock(&self.state);
        match &*st {
            State::Handshake | State::Authenticated { .. } => {
                *st = match m {
                    Mechanism::Plain => State::Plain,
                    Mechanism::Scram(s) => State::Scram(Box::new(ScramServer::new(s))),
                    Mechanism::OAuthBearer => State::OAuth,
                };
                *lock(&self.mechanism) = Some(m);
                Ok(())
            }
            _ => Err(()),
        }
    }

    /// Takes the exchange in progress for a SaslAuthenticate token.
    pub fn take_exchange(&self) -> Option<Exchange> {
        let mut st = lock(&self.state);
        let exchange = match std::mem::replace(&mut *st, State::Checking) {
            State::Plain => Exchange::Plain,
            State::Scram(s) => Exchange::Scram(s),
            State::OAuth => Exchange::OAuth,
            other => {
                *st = other;
                return None;
            }
        };
        self.checking
            .store(true, std::sync::atomic::Ordering::Release);
        Some(exchange)
    }

    /// Puts a SCRAM exchange back, waiting for the client's next message.
    pub fn resume(&self, s: Box<ScramServer>) {
        self.set_checked(State::Scram(s));
    }

    /// Logged in as `user` for `lifetime` (None: for good). Err(()) when it
    /// re-authenticates as another user.
    pub fn authenticated(&self, user: &str, lifetime: Option<Duration>) -> Result<(), ()> {
        let principal = format!("User:{user}");
        let mut p = lock(&self.principal);
        if p.as_deref().is_some_and(|old| *old != *principal) {
            return Err(());
        }
        *p = Some(Arc::from(principal));
        self.set_checked(State::Authenticated {
            expires: lifetime.map(|l| Instant::now() + l),
        });
        Ok(())
    }

    /// A failed login: nothing more is served; the connection closes.
    pub fn failed(&self) {
        self.set_checked(State::Failed);
        self.close_after_answers();
    }
}

/// A SASL exchange taken out of the connection for one token.
pub enum Exchange {
    Plain,
    Scram(Box<ScramServer>),
    OAuth,
}

/// SASL/PLAIN's message (RFC 4616): `[authzid] NUL authcid NUL passwd`.
/// Some((user, password)) when well formed and the authzid is empty or the user.
pub fn parse_plain(token: &[u8]) -> Option<(String, String)> {
    let s = std::str::from_utf8(token).ok()?;
    let mut it = s.split('\0');
    let (authzid, user, password) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() || user.is_empty() || (!authzid.is_empty() && authzid != user) {
        return None;
    }
    Some((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_file_and_plain_messages() {
        let u = Users::parse("# users\nalice:s3cret:with:colons\n\nbob:pw\n").unwrap();
        assert_eq!(u.len(), 2);
        let mut meta = ClusterMetadata::default();
        let missing = u.missing(&meta);
        assert_eq!(missing.len(), 4);
        meta.apply(
            &karnak_coordinator::metadata::MetadataCommand::AlterScramCredentials {
                upserts: missing,
                deletions: vec![],
            },
        )
        .unwrap();
        assert!(u.missing(&meta).is_empty(), "bootstrapped once");
        let sasl = SaslConfig {
            mechanisms: vec![Mechanism::Plain],
            reauth: Duration::ZERO,
            failed_delay: Duration::ZERO,
            guard: guard::LoginGuard::new(0.0),
            oauth: None,
            secret: vec![9; 32],
            plain_checks: Arc::new(tokio::sync::Semaphore::new(1)),
        };
        assert!(sasl.check_plain(&meta, "alice", "s3cret:with:colons"));
        assert!(!sasl.check_plain(&meta, "alice", "s3cret"));
        assert!(!sasl.check_plain(&meta, "carol", "pw"));
        assert_eq!(sasl.fake_salt("carol"), sasl.fake_salt("carol"));
        assert_eq!(
            Users::parse("alice\n").err(),
            Some((1, "expected user:password"))
        );
        assert_eq!(
            Users::parse("x:y\n:pw\n").err(),
            Some((2, "the user name and the password must not be empty"))
        );
        assert_eq!(
            parse_plain(b"\0alice\0pw"),
            Some(("alice".into(), "pw".into()))
        );
        assert_eq!(
            parse_plain(b"alice\0alice\0pw"),
            Some(("alice".into(), "pw".into()))
        );
        assert_eq!(parse_plain(b"bob\0alice\0pw"), None);
        assert_eq!(parse_plain(b"alice\0pw"), None);
        assert_eq!(parse_plain(b"\0alice\0pw\0more"), None);
    }

    #[test]
    fn the_gate_serves_only_the_exchange_before_login() {
        use kafka_protocol::messages::ApiKey;
        let a = ConnAuth::new(true);
        assert_eq!(a.gate(ApiKey::Metadata), Gate::NotAuthenticated);
        assert_eq!(a.gate(ApiKey::ApiVersions), Gate::Serve);
        a.begin(Mechanism::Plain).unwrap();
        assert!(matches!(a.take_exchange(), Some(Exchange::Plain)));
        assert_eq!(a.gate(ApiKey::Produce), Gate::NotAuthenticated);
        a.authenticated("alice", Some(Duration::from_secs(60)))
            .unwrap();
        assert_eq!(a.principal().as_deref(), Some("User:alice"));
        assert_eq!(a.gate(ApiKey::Produce), Gate::Serve);
        let later = Instant::now() + Duration::from_secs(61);
        assert_eq!(a.gate_at(ApiKey::Produce, later), Gate::Expired);
        assert_eq!(a.gate_at(ApiKey::SaslHandshake, later), Gate::Serve);
        a.begin(Mechanism::Plain).unwrap();
        a.take_exchange();
        assert!(
            a.authenticated("bob", None).is_err(),
            "re-login as another user"
        );
        assert_eq!(ConnAuth::new(false).gate(ApiKey::Produce), Gate::Serve);
    }
}

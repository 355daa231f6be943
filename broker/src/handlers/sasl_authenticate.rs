//! SaslAuthenticate (key 36, v0-2): one token of the exchange the
//! handshake chose. A failed login is answered SASL_AUTHENTICATION_FAILED
//! in Kafka's words, which never say whether the user exists, and the
//! connection is closed once the answer is written. v1+ tells the client
//! how long its login lasts (KIP-368, `connections.max.reauth.ms`).

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslAuthenticateResponse};
use kafka_protocol::protocol::StrBytes;

use super::Session;
use crate::broker::Broker;
use crate::response::{HandlerError, Reply, Response, decode};
use crate::sasl::guard::Admit;
use crate::sasl::scram::Step;
use crate::sasl::{ConnAuth, Exchange, MAX_TOKEN, SaslConfig, parse_plain};

/// Bytes back to the client, or a refusal.
type Outcome = Result<(Vec<u8>, Option<String>), String>;

pub fn handle(
    broker: &Arc<Broker>,
    body: &mut Bytes,
    version: i16,
    session: &Session,
) -> Result<Reply, HandlerError> {
    let req: SaslAuthenticateRequest = decode(body, "SaslAuthenticate", version)?;
    let (Some(sasl), Some(exchange)) = (broker.sasl.clone(), session.auth.take_exchange()) else {
        session.auth.failed();
        return encode(
            version,
            Some(ResponseError::IllegalSaslState),
            Some("SaslAuthenticate before a SaslHandshake".into()),
            Vec::new(),
            0,
        )
        .map(Reply::Ready);
    };
    let step = Token {
        broker: broker.clone(),
        auth: session.auth.clone(),
        mechanism: session.auth.mechanism().map_or("?", |m| m.name()),
        peer: session.peer,
        version,
        sasl,
        bytes: req.auth_bytes,
    };
    if step.bytes.len() > MAX_TOKEN {
        let why = format!("a {}-byte token", step.bytes.len());
        return Ok(Reply::Ready(step.refuse(why)?));
    }
    // A login's first token takes a turn of its address's failed-login
    // budget (given back if the login succeeds).
    let first = match &exchange {
        Exchange::Scram(server) => server.is_first(),
        Exchange::Plain | Exchange::OAuth => true,
    };
    if !first {
        return step.check(exchange);
    }
    match step
        .sasl
        .guard
        .admit(step.peer.ip(), std::time::Instant::now())
    {
        Admit::Now => step.check(exchange),
        Admit::After(wait) => Ok(Reply::Later(Box::pin(async move {
            tokio::time::sleep(wait).await;
            match step.check(exchange)? {
                Reply::Ready(r) => Ok(r),
                Reply::Later(f) => f.await,
                Reply::Nothing => Err(HandlerError::Internal(
                    "a SaslAuthenticate with no answer".into(),
                )),
            }
        }))),
        Admit::Refuse => Ok(Reply::Ready(refuse(
            &step.auth,
            version,
            step.mechanism,
            step.peer,
            "too many failed logins from this address; not checked".into(),
            "unchecked",
        )?)),
    }
}

/// One SaslAuthenticate token and what checking it needs.
struct Token {
    broker: Arc<Broker>,
    auth: Arc<ConnAuth>,
    sasl: Arc<SaslConfig>,
    mechanism: &'static str,
    peer: std::net::SocketAddr,
    version: i16,
    bytes: Bytes,
}

impl Token {
    fn refuse(&self, why: String) -> Result<Response, HandlerError> {
        refuse(
            &self.auth,
            self.version,
            self.mechanism,
            self.peer,
            why,
            "failed",
        )
    }

    fn finish(
        &self,
        outcome: Outcome,
        valid_for: Option<std::time::Duration>,
    ) -> Result<Response, HandlerError> {
        finish(
            &self.auth,
            &self.sasl,
            self.version,
            self.mechanism,
            self.peer,
            outcome,
            valid_for,
        )
    }

    fn check(self, exchange: Exchange) -> Result<Reply, HandlerError> {
        match exchange {
            Exchange::Plain => {
                // PBKDF2 takes a millisecond or more: off the reactor.
                let meta = self.broker.cluster.metadata();
                Ok(Reply::Later(Box::pin(async move {
                    let config = self.sasl.clone();
                    let token = self.bytes.clone();
                    let permit = self
                        .sasl
                        .plain_checks
                        .clone()
                        .acquire_owned()
                        .await
                        .map_err(|e| {
                            HandlerError::Internal(format!("waiting to check a password: {e}"))
                        })?;
                    let checked = karnak_storage::blocking::spawn(move || -> Outcome {
                        let _permit = permit;
                        let (user, password) = parse_plain(&token)
                            .ok_or_else(|| "a malformed PLAIN message".to_string())?;
                        if config.check_plain(&meta, &user, &password) {
                            Ok((Vec::new(), Some(user)))
                        } else {
                            Err(format!("wrong password or unknown user {user:?}"))
                        }
                    })
                    .await
                    .map_err(|e| HandlerError::Internal(format!("checking a password: {e}")))?;
                    self.finish(checked, None)
                })))
            }
            Exchange::Scram(mut server) => {
                let meta = self.broker.cluster.metadata();
                let Some(crate::sasl::Mechanism::Scram(m)) = self.auth.mechanism() else {
                    return Err(HandlerError::Internal(
                        "a SCRAM exchange without its mechanism".into(),
                    ));
                };
                let outcome = match server.step(
                    &self.bytes,
                    |u| crate::sasl::credential(&meta, u, m),
                    |u| self.sasl.fake_salt(u),
                ) {
                    Step::Continue(challenge) => {
                        self.auth.resume(server);
                        Ok((challenge, None))
                    }
                    Step::Done { user, last } => Ok((last, Some(user))),
                    Step::Failed(why) => Err(why),
                };
                self.finish(outcome, None).map(Reply::Ready)
            }
            Exchange::OAuth => {
                let Some(v) = &self.sasl.oauth else {
                    return Err(HandlerError::Internal(
                        "OAUTHBEARER without its settings".into(),
                    ));
                };
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let mut valid_for = None;
                let outcome = match crate::sasl::oauthbearer::parse_client_message(&self.bytes) {
                    None => Err("a malformed OAUTHBEARER message".to_string()),
                    Some(token) => v.validate(&token, now).map(|(sub, exp)| {
                        valid_for = Some(std::time::Duration::from_secs(
                            exp.saturating_sub(now).max(1),
                        ));
                        (Vec::new(), Some(sub))
                    }),
                };
                self.finish(outcome, valid_for).map(Reply::Ready)
            }
        }
    }
}

/// The answer to a token: a challenge, a login, or a refusal.
fn finish(
    auth: &ConnAuth,
    sasl: &SaslConfig,
    version: i16,
    mechanism: &'static str,
    peer: std::net::SocketAddr,
    outcome: Outcome,
    valid_for: Option<std::time::Duration>,
) -> Result<Response, HandlerError> {
    match outcome {
        Ok((bytes, None)) => encode(version, None, None, bytes, 0),
        Ok((bytes, Some(user))) => {
            // KIP-368: the login lasts connections.max.reauth.ms, and never
            // past the credential (an OAUTHBEARER token's expiry).
            let lifetime = [(!sasl.reauth.is_zero()).then_some(sasl.reauth), valid_for]
                .into_iter()
                .flatten()
                .min();
            if auth.authenticated(&user, lifetime).is_err() {
                return refuse(
                    auth,
                    version,
                    mechanism,
                    peer,
                    format!("re-authentication as another user, {user:?}"),
                    "failed",
                );
            }
            metrics::counter!(crate::metrics::SASL_AUTHENTICATIONS, "mechanism" => mechanism, "result" => "ok").increment(1);
            sasl.guard.succeeded(peer.ip());
            tracing::debug!(%peer, user, mechanism, "authenticated");
            let lifetime = lifetime.map_or(0, |l| l.as_millis().min(i64::MAX as u128) as i64);
            encode(version, None, None, bytes, lifetime)
        }
        Err(why) => refuse(auth, version, mechanism, peer, why, "failed"),
    }
}

/// Failed logins are logged at most once a second (a client retrying a
/// wrong password every 100 ms, or a flood of them, must not fill the log);
/// the next line says how many went unlogged. None: do not log this one.
fn log_now() -> Option<String> {
    static LAST: std::sync::Mutex<(Option<std::time::Instant>, u64)> =
        std::sync::Mutex::new((None, 0));
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    let now = std::time::Instant::now();
    if last
        .0
        .is_some_and(|t| now.duration_since(t) < std::time::Duration::from_secs(1))
    {
        last.1 += 1;
        return None;
    }
    let skipped = std::mem::take(&mut last.1);
    last.0 = Some(now);
    Some(if skipped > 0 {
        format!(" ({skipped} more failed logins in the last second not logged)")
    } else {
        String::new()
    })
}

fn refuse(
    auth: &ConnAuth,
    version: i16,
    mechanism: &'static str,
    peer: std::net::SocketAddr,
    why: String,
    result: &'static str,
) -> Result<Response, HandlerError> {
    if let Some(more) = log_now() {
        tracing::warn!(%peer, mechanism, "SASL authentication failed ({why}); closing{more}");
    }
    // `unchecked`: refused without a check, its address over its budget.
    metrics::counter!(crate::metrics::SASL_AUTHENTICATIONS, "mechanism" => mechanism, "result" => result).increment(1);
    auth.failed();
    // Kafka's words, the same for a wrong password and an unknown user.
    let msg = format!(
        "Authentication failed during authentication due to invalid credentials with SASL mechanism {mechanism}"
    );
    encode(
        version,
        Some(ResponseError::SaslAuthenticationFailed),
        Some(msg),
        Vec::new(),
        0,
    )
}

/// `code`: None for success.
fn encode(
    version: i16,
    code: Option<ResponseError>,
    message: Option<String>,
    bytes: Vec<u8>,
    lifetime_ms: i64,
) -> Result<Response, HandlerError> {
    let code = code.map_or(0, |c| c.code());
    let resp = SaslAuthenticateResponse::default()
        .with_error_code(code)
        .with_error_message(message.map(StrBytes::from_string))
        .with_auth_bytes(Bytes::from(bytes))
        .with_session_lifetime_ms(lifetime_ms);
    Response::encode(&resp, version, code)
}

/// A failed login's answer held back `delay` (Kafka's
/// `connection.failed.authentication.delay.ms`): the connection is already
/// closing, so a client guessing passwords on one connection waits that
/// long per guess.
pub fn delay_failure(reply: Reply, delay: std::time::Duration) -> Reply {
    const FAILED: i16 = ResponseError::SaslAuthenticationFailed.code();
    if delay.is_zero() {
        return reply;
    }
    match reply {
        Reply::Ready(r) if r.error_code == FAILED => Reply::Later(Box::pin(async move {
            tokio::time::sleep(delay).await;
            Ok(r)
        })),
        Reply::Later(fut) => Reply::Later(Box::pin(async move {
            let r = fut.await?;
            if r.error_code == FAILED {
                tokio::time::sleep(delay).await;
            }
            Ok(r)
        })),
        other => other,
    }
}

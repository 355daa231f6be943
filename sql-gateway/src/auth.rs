//! Who may connect to the SQL gateway, and over what.
//!
//! `trust` (the default, as a fresh Postgres on loopback: any user, no
//! password) or SCRAM-SHA-256, the exchange Postgres uses since 14 (RFC
//! 5802/7677), so libpq, psycopg, asyncpg and JDBC log in as they do against
//! Postgres. The users are the broker's: the ones Kafka clients log in as,
//! kept in the cluster metadata as salt, iterations, StoredKey and ServerKey
//! (never a password). The gateway frames the exchange in Postgres messages;
//! the broker runs it against its credentials ([`ScramLogins`]).
//!
//! TLS (`--sql-ssl`) is pgwire's: an SSLRequest (or a direct TLS hello,
//! Postgres 17's `sslnegotiation=direct`) is answered with the broker's
//! certificate; `require` refuses a connection that did not ask for it, as
//! a `hostssl`-only pg_hba.conf does.

use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{Sink, SinkExt};
use pgwire::api::auth::{
    DefaultServerParameterProvider, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::{
    ClientInfo, ConnectionHandle, ConnectionManager, METADATA_USER, PgWireConnectionState,
    PidSecretKeyGenerator, RandomPidSecretKeyGenerator,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::{Authentication, PasswordMessageFamily};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

/// `--sql-auth`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SqlAuthMethod {
    #[default]
    Trust,
    ScramSha256,
}

/// `--sql-ssl`: Postgres's `ssl` setting, plus `require` (pg_hba's
/// `hostssl` for every connection).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SqlSsl {
    #[default]
    Off,
    /// TLS for clients that ask (`sslmode=prefer`, libpq's default, does).
    On,
    /// A connection that does not ask for TLS is refused.
    Require,
}

/// What one step of a SCRAM exchange gives.
pub enum ScramStep {
    /// Send this (server-first) and wait for the client's next message.
    Continue(Vec<u8>),
    /// Logged in; send this server-final message.
    Done(Vec<u8>),
    /// Refused. The reason is logged, never sent: the client hears only
    /// that the password did not match, whether or not the user exists.
    Failed(String),
}

/// A SCRAM-SHA-256 exchange for one connection.
pub trait ScramExchange: Send {
    fn step(&mut self, message: &[u8]) -> ScramStep;
}

/// The broker's credentials, as the gateway sees them.
pub trait ScramLogins: Send + Sync {
    /// Starts an exchange for the startup message's user.
    fn begin(&self, user: &str) -> Box<dyn ScramExchange>;
}

/// How connections log in: built by the broker from [`SqlAuthMethod`].
#[derive(Clone, Default)]
pub enum SqlAuth {
    #[default]
    Trust,
    ScramSha256(Arc<dyn ScramLogins>),
}

impl Debug for SqlAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SqlAuth::Trust => "trust",
            SqlAuth::ScramSha256(_) => "scram-sha-256",
        })
    }
}

/// Whether a SASLInitialResponse body is well formed: a NUL-terminated
/// mechanism name, then an int32 length that is -1 (no data) or the exact
/// count of bytes that follow. pgwire 0.41 panics on some malformed ones
/// (it reads past the end), so they are refused here first.
pub(crate) fn sasl_initial_is_well_formed(body: &[u8]) -> bool {
    let Some(nul) = body.iter().position(|b| *b == 0) else {
        return false;
    };
    let rest = &body[nul + 1..];
    let Some(len) = rest.get(..4) else {
        return false;
    };
    let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
    len == -1 && rest.len() == 4 || usize::try_from(len).is_ok_and(|n| n == rest.len() - 4)
}

const SCRAM_SHA_256: &str = "SCRAM-SHA-256";

enum Phase {
    /// AuthenticationSASL sent; waiting for SASLInitialResponse.
    Initial,
    /// server-first sent; waiting for the client-final SASLResponse.
    Final(Box<dyn ScramExchange>),
    Over,
}

/// One connection's SCRAM login (the handler holds the exchange's state,
/// so every connection gets its own).
pub struct ScramStartup {
    logins: Arc<dyn ScramLogins>,
    connections: Arc<ConnectionManager>,
    phase: Mutex<Phase>,
}

impl ScramStartup {
    pub fn new(logins: Arc<dyn ScramLogins>, connections: Arc<ConnectionManager>) -> Self {
        ScramStartup {
            logins,
            connections,
            phase: Mutex::new(Phase::Initial),
        }
    }

    fn refused(client: &dyn ClientInfo, user: &str, reason: &str) -> PgWireError {
        metrics::counter!("karnak_sql_logins_total", "result" => "failed").increment(1);
        tracing::debug!(peer = %client.socket_addr(), user, reason, "SQL login refused");
        // Postgres's words, the same for a wrong password and an unknown user.
        PgWireError::UserError(Box::new(ErrorInfo::new(
            "FATAL".into(),
            "28P01".into(),
            format!("password authentication failed for user \"{user}\""),
        )))
    }

    /// The exchange's next step for `message`, and what to send back.
    fn advance<C: ClientInfo>(
        &self,
        client: &C,
        message: PasswordMessageFamily,
    ) -> PgWireResult<Authentication> {
        let user = client
            .metadata()
            .get(METADATA_USER)
            .cloned()
            .ok_or(PgWireError::UserNameRequired)?;
        let mut phase = self.phase.lock().unwrap_or_else(|e| e.into_inner());
        match std::mem::replace(&mut *phase, Phase::Over) {
            Phase::Initial => {
                if let PasswordMessageFamily::Raw(body) = &message
                    && !sasl_initial_is_well_formed(body)
                {
                    return Err(PgWireError::InvalidScramMessage(
                        "malformed SASLInitialResponse".into(),
                    ));
                }
                let initial = message.into_sasl_initial_response()?;
                if initial.auth_method != SCRAM_SHA_256 {
                    return Err(PgWireError::UnsupportedSASLAuthMethod(initial.auth_method));
                }
                let data = initial.data.ok_or_else(|| {
                    PgWireError::InvalidScramMessage("SASLInitialResponse without data".into())
                })?;
                let mut exchange = self.logins.begin(&user);
                match exchange.step(&data) {
                    ScramStep::Continue(first) => {
                        *phase = Phase::Final(exchange);
                        Ok(Authentication::SASLContinue(Bytes::from(first)))
                    }
                    ScramStep::Failed(reason) => Err(Self::refused(client, &user, &reason)),
                    ScramStep::Done(_) => Err(Self::refused(client, &user, "ended early")),
                }
            }
            Phase::Final(mut exchange) => {
                let response = message.into_sasl_response()?;
                match exchange.step(&response.data) {
                    ScramStep::Done(last) => {
                        metrics::counter!("karnak_sql_logins_total", "result" => "ok").increment(1);
                        Ok(Authentication::SASLFinal(Bytes::from(last)))
                    }
                    ScramStep::Failed(reason) => Err(Self::refused(client, &user, &reason)),
                    ScramStep::Continue(_) => Err(Self::refused(client, &user, "a third step")),
                }
            }
            Phase::Over => Err(PgWireError::InvalidSASLState),
        }
    }
}

/// Refuses a connection without TLS when `--sql-ssl require`.
pub(crate) fn check_ssl<C: ClientInfo>(client: &C, ssl: SqlSsl) -> PgWireResult<()> {
    if ssl == SqlSsl::Require && !client.is_secure() {
        return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
            "FATAL".into(),
            "28000".into(),
            format!(
                "connection from {} without SSL refused: this server requires SSL (sslmode=require)",
                client.socket_addr().ip()
            ),
        ))));
    }
    Ok(())
}

#[async_trait]
impl StartupHandler for ScramStartup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                client
                    .send(PgWireBackendMessage::Authentication(Authentication::SASL(
                        vec![SCRAM_SHA_256.to_string()],
                    )))
                    .await?;
            }
            PgWireFrontendMessage::PasswordMessageFamily(msg) => {
                let answer = self.advance(client, msg)?;
                let done = matches!(answer, Authentication::SASLFinal(_));
                client
                    .feed(PgWireBackendMessage::Authentication(answer))
                    .await?;
                if done {
                    let (pid, secret) = RandomPidSecretKeyGenerator::default().generate(client);
                    client.set_pid_and_secret_key(pid, secret.clone());
                    // Registered for cancel requests, as pgwire's own handlers do.
                    let (handle, guard) = self.connections.register(pid, secret);
                    client
                        .session_extensions()
                        .insert::<Arc<ConnectionHandle>>(handle);
                    client.session_extensions().insert(guard);
                    finish_authentication(client, &DefaultServerParameterProvider::default())
                        .await?;
                } else {
                    client.flush().await?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_initial_responses_are_caught() {
        let mut ok = b"SCRAM-SHA-256\0".to_vec();
        ok.extend_from_slice(&3i32.to_be_bytes());
        ok.extend_from_slice(b"n,,");
        assert!(sasl_initial_is_well_formed(&ok));
        let mut none = b"SCRAM-SHA-256\0".to_vec();
        none.extend_from_slice(&(-1i32).to_be_bytes());
        assert!(sasl_initial_is_well_formed(&none));
        for bad in [
            &b"SCRAM-SHA-256"[..],
            b"SCRAM-SHA-256\0\0\0",
            &ok[..ok.len() - 1],
            b"SCRAM-SHA-256\0\x7f\xff\xff\xffn,,",
            b"SCRAM-SHA-256\0\xff\xff\xff\xfe",
        ] {
            assert!(!sasl_initial_is_well_formed(bad), "{bad:?}");
        }
    }
}

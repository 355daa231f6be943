//! The Postgres wire listener. Query handling (simple and extended
//! protocol, `pg_catalog`, SET/SHOW, Arrow → Postgres encoding) is
//! datafusion-postgres's `DfSessionService`, used as a library; the
//! listener, authentication, statement limits (`session`), cancellation and
//! shutdown are ours.

use std::net::SocketAddr;
use std::sync::Arc;

use datafusion::prelude::SessionContext;
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::pgwire::api::ClientInfo;
use datafusion_postgres::pgwire::api::ErrorHandler;
use datafusion_postgres::pgwire::api::auth::StartupHandler;
use datafusion_postgres::pgwire::api::auth::noop::NoopStartupHandler;
use datafusion_postgres::pgwire::api::cancel::{CancelHandler, DefaultCancelHandler};
use datafusion_postgres::pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use datafusion_postgres::pgwire::api::{
    ConnectionManager, PgWireConnectionState, PgWireServerHandlers,
};
use datafusion_postgres::pgwire::error::ErrorInfo;
use datafusion_postgres::pgwire::error::{PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use datafusion_postgres::pgwire::tokio::TlsAcceptor;
use datafusion_postgres::pgwire::tokio::server::{negotiate_tls, process_error, process_message};
use datafusion_postgres::{DfSessionService, QueryHook};
use futures::{Sink, SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_util::codec::{Framed, FramedParts};

use crate::auth::{ScramStartup, SqlAuth, SqlSsl, check_ssl};
use crate::ddl::DdlHook;
use crate::message_guard::{Framing, MessageGuard, MessageTooLarge};
use crate::session::KarnakSession;

/// Trust authentication (as a fresh Postgres on loopback): any user and
/// database name connect without a password.
pub struct TrustStartup {
    connections: Arc<ConnectionManager>,
}

#[async_trait::async_trait]
impl NoopStartupHandler for TrustStartup {
    fn connection_manager(&self) -> Option<Arc<ConnectionManager>> {
        Some(self.connections.clone())
    }
}

/// One connection's startup: TLS as `--sql-ssl` wants, then its login.
pub struct Startup {
    ssl: SqlSsl,
    login: Login,
}

enum Login {
    Trust(TrustStartup),
    Scram(ScramStartup),
}

#[async_trait::async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if matches!(message, PgWireFrontendMessage::Startup(_)) {
            check_ssl(client, self.ssl)?;
        }
        match &self.login {
            Login::Trust(h) => h.on_startup(client, message).await,
            Login::Scram(h) => h.on_startup(client, message).await,
        }
    }
}

pub struct Handlers {
    session: Arc<KarnakSession>,
    auth: SqlAuth,
    ssl: SqlSsl,
    connections: Arc<ConnectionManager>,
    cancel: Arc<DefaultCancelHandler>,
}

impl Handlers {
    pub fn new(
        ctx: Arc<SessionContext>,
        auth: SqlAuth,
        ssl: SqlSsl,
        ddl: DdlHook,
        access: Option<crate::access::AccessHook>,
    ) -> Self {
        let connections = Arc::new(ConnectionManager::new());
        // ACLs first (when the broker has an authorizer), then
        // datafusion-postgres's own hooks (cursors, SET/SHOW, transaction
        // statements), then CREATE/ALTER TABLE on topics.
        let mut hooks: Vec<Arc<dyn QueryHook>> = Vec::new();
        if let Some(access) = access {
            hooks.push(Arc::new(access));
        }
        hooks.extend([
            Arc::new(CursorStatementHook) as Arc<dyn QueryHook>,
            Arc::new(SetShowHook),
            Arc::new(TransactionStatementHook),
            Arc::new(ddl),
        ]);
        Handlers {
            session: Arc::new(KarnakSession::new(Arc::new(
                DfSessionService::new_with_hooks(ctx, hooks),
            ))),
            auth,
            ssl,
            connections: connections.clone(),
            cancel: Arc::new(DefaultCancelHandler::new(connections)),
        }
    }
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.session.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.session.clone()
    }

    /// Called once per connection.
    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        let login = match &self.auth {
            SqlAuth::Trust => Login::Trust(TrustStartup {
                connections: self.connections.clone(),
            }),
            SqlAuth::ScramSha256(logins) => {
                Login::Scram(ScramStartup::new(logins.clone(), self.connections.clone()))
            }
        };
        Arc::new(Startup {
            ssl: self.ssl,
            login,
        })
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.cancel.clone()
    }

    fn error_handler(&self) -> Arc<impl datafusion_postgres::pgwire::api::ErrorHandler> {
        Arc::new(crate::errors::SqlStateErrors)
    }
}

/// Resolves once the broker is stopping. (The guard `wait_for` returns is
/// not `Send`; it is dropped here, before any other await.)
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Accepts connections until `stop` turns true. At most `max_connections`
/// are served at once; one more is closed at once (logged), as Postgres
/// answers "too many clients".
pub async fn serve(
    listener: TcpListener,
    handlers: Arc<Handlers>,
    tls: Option<TlsAcceptor>,
    max_connections: usize,
    max_message_bytes: u64,
    message_read_timeout: std::time::Duration,
    mut stop: watch::Receiver<bool>,
) {
    let limit = Arc::new(Semaphore::new(max_connections.max(1)));
    loop {
        let (socket, peer): (_, SocketAddr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "SQL listener accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => return,
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::warn!(%peer, max_connections, "SQL connection refused: too many clients");
            tokio::spawn(refuse_too_many(socket));
            continue;
        };
        let handlers = handlers.clone();
        let tls = tls.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = socket.set_nodelay(true);
            tokio::select! {
                r = process_socket(socket, tls, handlers, max_message_bytes, message_read_timeout) => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "SQL connection ended with an error");
                    }
                }
                _ = stopped(&mut stop) => {}
            }
        });
    }
}

/// What a client has to finish TLS negotiation and log in (pgwire's own).
const STARTUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// pgwire's connection loop (its `process_socket`), with the bounds on one
/// message's size and read time ([`crate::message_guard`]) between the
/// socket and pgwire's decoder. A message over the size is answered FATAL
/// 54000 (program_limit_exceeded) and the connection closed; one not
/// whole in time closes the connection.
async fn process_socket<H: PgWireServerHandlers>(
    socket: TcpStream,
    tls: Option<TlsAcceptor>,
    handlers: H,
    max_message_bytes: u64,
    message_read_timeout: std::time::Duration,
) -> std::io::Result<()> {
    let startup_timeout = tokio::time::sleep(STARTUP_TIMEOUT);
    tokio::pin!(startup_timeout);
    let negotiated = tokio::select! {
        _ = &mut startup_timeout => return Ok(()),
        s = negotiate_tls(socket, tls) => s?,
    };
    // A direct TLS connection without a certificate configured.
    let Some(negotiated) = negotiated else {
        return Ok(());
    };
    let old = negotiated.into_parts();
    // What negotiation read past its own messages goes through the
    // framing too.
    let mut framing = Framing::new(max_message_bytes);
    let early = framing.feed(&old.read_buf);
    let guard = MessageGuard::new(old.io, framing, message_read_timeout);
    let mut parts = FramedParts::new(guard, old.codec);
    parts.read_buf = old.read_buf;
    parts.write_buf = old.write_buf;
    let mut socket = Framed::from_parts(parts);
    if let Err(e) = early {
        return refuse_message(&mut socket, e).await;
    }
    let startup = handlers.startup_handler();
    let simple = handlers.simple_query_handler();
    let extended = handlers.extended_query_handler();
    let copy = handlers.copy_handler();
    let cancel = handlers.cancel_handler();
    let errors = handlers.error_handler();
    loop {
        let msg = if matches!(
            socket.state(),
            PgWireConnectionState::AwaitingStartup
                | PgWireConnectionState::AuthenticationInProgress
        ) {
            tokio::select! {
                _ = &mut startup_timeout => None,
                msg = socket.next() => msg,
            }
        } else {
            socket.next().await
        };
        let msg = match msg {
            Some(Ok(msg)) => msg,
            Some(Err(PgWireError::IoError(e))) => {
                match e
                    .get_ref()
                    .and_then(|e| e.downcast_ref::<MessageTooLarge>())
                {
                    Some(too_large) => {
                        return refuse_message(&mut socket, *too_large).await;
                    }
                    None => {
                        tracing::debug!(error = %e, "SQL connection closed");
                        return Ok(());
                    }
                }
            }
            _ => return Ok(()),
        };
        // Terminate: close (asyncpg waits for the server to drop the socket).
        if matches!(msg, PgWireFrontendMessage::Terminate(_)) {
            return Ok(());
        }
        let extended_query = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended) => extended,
            _ => msg.is_extended_query(),
        };
        if let Err(mut e) = process_message(
            msg,
            &mut socket,
            startup.clone(),
            simple.clone(),
            extended.clone(),
            copy.clone(),
            cancel.clone(),
        )
        .await
        {
            errors.on_error(&socket, &mut e);
            process_error(&mut socket, e, extended_query).await?;
        }
    }
}

/// FATAL 54000 for a message over the bound; the connection then closes.
async fn refuse_message<S>(socket: &mut S, e: MessageTooLarge) -> std::io::Result<()>
where
    S: Sink<PgWireBackendMessage> + Unpin,
{
    tracing::warn!(error = %e, "SQL connection closed: message too large");
    let info = ErrorInfo::new("FATAL".to_string(), "54000".to_string(), e.to_string());
    let _ = socket
        .send(PgWireBackendMessage::ErrorResponse(info.into()))
        .await;
    Ok(())
}

/// Bytes of a startup packet read before answering a refused connection.
const MAX_STARTUP_PACKET: usize = 10_000;
/// `SSLRequest`'s protocol code.
const SSL_REQUEST_CODE: u32 = 80_877_103;

/// Answers a connection over the limit as Postgres does: read its startup
/// packet (declining SSL first if asked), then send FATAL 53300 and close.
/// Bounded in time and bytes: a peer that sends nothing is dropped.
async fn refuse_too_many(mut socket: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        for _ in 0..2 {
            let len = socket.read_u32().await? as usize;
            let code = socket.read_u32().await?;
            if !(8..=MAX_STARTUP_PACKET).contains(&len) {
                break;
            }
            let mut rest = vec![0u8; len - 8];
            socket.read_exact(&mut rest).await?;
            if code != SSL_REQUEST_CODE {
                break;
            }
            socket.write_all(b"N").await?;
        }
        socket.write_all(&too_many_clients_error()).await?;
        socket.flush().await
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), exchange).await;
}

/// An `ErrorResponse` message: FATAL, SQLSTATE 53300.
fn too_many_clients_error() -> Vec<u8> {
    let mut fields = Vec::new();
    for (tag, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', "53300"),
        (b'M', "sorry, too many clients already"),
    ] {
        fields.push(tag);
        fields.extend_from_slice(value.as_bytes());
        fields.push(0);
    }
    fields.push(0);
    let mut msg = vec![b'E'];
    msg.extend_from_slice(&(fields.len() as u32 + 4).to_be_bytes());
    msg.extend_from_slice(&fields);
    msg
}

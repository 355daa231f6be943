//! The Postgres wire listener. Query handling (simple and extended
//! protocol, `pg_catalog`, SET/SHOW, Arrow → Postgres encoding) is
//! datafusion-postgres's `DfSessionService`, used as a library; the
//! listener, authentication, cancellation and shutdown are ours.

use std::net::SocketAddr;
use std::sync::Arc;

use datafusion::prelude::SessionContext;
use datafusion_postgres::DfSessionService;
use datafusion_postgres::pgwire::api::auth::noop::NoopStartupHandler;
use datafusion_postgres::pgwire::api::cancel::{CancelHandler, DefaultCancelHandler};
use datafusion_postgres::pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use datafusion_postgres::pgwire::api::{ConnectionManager, PgWireServerHandlers};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

/// Trust authentication (as a fresh Postgres on loopback): any user and
/// database name connect without a password.
struct TrustStartup {
    connections: Arc<ConnectionManager>,
}

#[async_trait::async_trait]
impl NoopStartupHandler for TrustStartup {
    fn connection_manager(&self) -> Option<Arc<ConnectionManager>> {
        Some(self.connections.clone())
    }
}

pub struct Handlers {
    session: Arc<DfSessionService>,
    startup: Arc<TrustStartup>,
    cancel: Arc<DefaultCancelHandler>,
}

impl Handlers {
    pub fn new(ctx: Arc<SessionContext>) -> Self {
        let connections = Arc::new(ConnectionManager::new());
        Handlers {
            session: Arc::new(DfSessionService::new(ctx)),
            startup: Arc::new(TrustStartup {
                connections: connections.clone(),
            }),
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

    fn startup_handler(&self) -> Arc<impl datafusion_postgres::pgwire::api::auth::StartupHandler> {
        self.startup.clone()
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
    max_connections: usize,
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
            continue;
        };
        let handlers = handlers.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = socket.set_nodelay(true);
            tokio::select! {
                r = datafusion_postgres::pgwire::tokio::process_socket(socket, None, handlers) => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "SQL connection ended with an error");
                    }
                }
                _ = stopped(&mut stop) => {}
            }
        });
    }
}

//! `statement_timeout` and cancel requests over the whole statement.
//!
//! datafusion-postgres bounds planning by `statement_timeout`, and pgwire
//! races a cancel request against the handler's `do_query` only; but a
//! SELECT's rows are produced while they are sent, after `do_query` has
//! returned. This wrapper keeps both limits armed until the last row: a scan
//! that would run forever ends with `57014` at the deadline or on a cancel
//! request, and dropping the row stream stops the partition readers.
//!
//! It also streams a SELECT's rows on the extended protocol, where pgwire
//! would gather them all in memory first (`on_execute`).

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::DfSessionService;
use datafusion_postgres::pgwire::api::portal::{Portal, PortalExecutionState};
use datafusion_postgres::pgwire::api::query::{
    ExtendedQueryHandler, SimpleQueryHandler, send_execution_response, send_query_response,
};
use datafusion_postgres::pgwire::api::results::{Response, SendableRowStream, Tag};
use datafusion_postgres::pgwire::api::store::{Entry, PortalStore};
use datafusion_postgres::pgwire::api::{
    ClientInfo, ClientPortalStore, ConnectionHandle, DEFAULT_NAME, PgWireConnectionState,
};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::PgWireBackendMessage;
use datafusion_postgres::pgwire::messages::extendedquery::Execute;
use datafusion_postgres::pgwire::messages::response::EmptyQueryResponse;
use futures::channel::oneshot;
use futures::{Sink, SinkExt, StreamExt};
use tokio::time::Instant;

use crate::compat::{self, Part};

/// Where datafusion-postgres's `SET statement_timeout` keeps the value (ms).
const STATEMENT_TIMEOUT_KEY: &str = "statement_timeout_ms";

pub struct KarnakSession {
    inner: Arc<DfSessionService>,
}

impl KarnakSession {
    pub fn new(inner: Arc<DfSessionService>) -> Self {
        KarnakSession { inner }
    }
}

/// The limits one statement runs under.
struct Limits {
    timeout: Option<Duration>,
    /// Set when the statement's rows start to be produced.
    deadline: Option<Instant>,
    cancel: Option<oneshot::Receiver<()>>,
}

/// The session's `statement_timeout`, if set and not 0.
fn statement_timeout<C: ClientInfo>(client: &C) -> Option<Duration> {
    client
        .metadata()
        .get(STATEMENT_TIMEOUT_KEY)
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis)
}

impl Limits {
    /// Arms cancellation for the rows still to come. pgwire's own cancel
    /// receiver was spent on `do_query`; this takes over the connection's
    /// cancel slot until the next statement starts.
    async fn arm_cancel<C: ClientInfo>(&mut self, client: &C) {
        if let Some(handle) = client.session_extensions().get::<Arc<ConnectionHandle>>() {
            self.cancel = Some(handle.start_query().await);
        }
    }

    /// Resolves with the error that ends the statement: a cancel request or
    /// the deadline. Never resolves if neither applies.
    async fn tripped(&mut self) -> PgWireError {
        if self.deadline.is_none() {
            self.deadline = self.timeout.map(|t| Instant::now() + t);
        }
        let deadline = self.deadline;
        let expired = async move {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let cancel = &mut self.cancel;
        let cancelled = async move {
            if let Some(rx) = cancel.as_mut()
                && rx.await.is_ok()
            {
                return;
            }
            // No cancel slot, or a later statement took it over.
            *cancel = None;
            std::future::pending::<()>().await
        };
        tokio::select! {
            _ = cancelled => PgWireError::QueryCanceled,
            _ = expired => timeout_error(),
        }
    }
}

fn timeout_error() -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_string(),
        "57014".to_string(), // query_canceled
        "canceling statement due to statement timeout".to_string(),
    )))
}

/// Runs `work` (planning, and an INSERT's writes) under the timeout.
async fn bounded<T>(
    timeout: Option<Duration>,
    work: impl Future<Output = PgWireResult<T>>,
) -> PgWireResult<T> {
    match timeout {
        Some(t) => tokio::time::timeout(t, work)
            .await
            .unwrap_or_else(|_| Err(timeout_error())),
        None => work.await,
    }
}

/// Ends the row stream with the limit's error as soon as it trips.
fn guard_rows(rows: SendableRowStream, limits: Limits) -> SendableRowStream {
    Box::pin(futures::stream::unfold(
        Some((rows, limits)),
        |state| async move {
            let (mut rows, mut limits) = state?;
            let item = tokio::select! {
                biased;
                e = limits.tripped() => Err(e),
                r = rows.next() => r?,
            };
            // Stop after an error; dropping `rows` stops the scan.
            let next = item.is_ok().then_some((rows, limits));
            Some((item, next))
        },
    ))
}

/// Puts a query response's rows under the session's limits, read now (so
/// a `SET statement_timeout` earlier in the same message applies, and each
/// statement's clock starts with its first row, as in Postgres 13+).
async fn guard<C: ClientInfo>(client: &C, response: Response) -> Response {
    match response {
        Response::Query(mut q) => {
            let mut limits = Limits {
                timeout: statement_timeout(client),
                deadline: None,
                cancel: None,
            };
            limits.arm_cancel(client).await;
            let rows = std::mem::replace(&mut q.data_rows, Box::pin(futures::stream::empty()));
            q.data_rows = guard_rows(rows, limits);
            Response::Query(q)
        }
        other => other,
    }
}

#[async_trait]
impl SimpleQueryHandler for KarnakSession {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let Some(parts) = compat::split_resets(query) else {
            return self.run(client, query).await;
        };
        // A pool's session reset: ours answered here, the rest by the engine.
        let mut out = Vec::new();
        for part in parts {
            match part {
                Part::Reset(tag) => out.push(Response::Execution(Tag::new(tag))),
                Part::Sql(sql) => out.extend(self.run(client, &sql).await?),
            }
        }
        Ok(out)
    }
}

impl KarnakSession {
    /// A simple-query message through the engine, under the limits.
    async fn run<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let timeout = statement_timeout(client);
        let responses = bounded(
            timeout,
            SimpleQueryHandler::do_query(&*self.inner, client, query),
        )
        .await?;
        let mut out = Vec::with_capacity(responses.len());
        for r in responses {
            out.push(guard(client, r).await);
        }
        Ok(out)
    }
}

#[async_trait]
impl ExtendedQueryHandler for KarnakSession {
    type Statement = <DfSessionService as ExtendedQueryHandler>::Statement;
    type QueryParser = <DfSessionService as ExtendedQueryHandler>::QueryParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.inner.query_parser()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let response = bounded(
            statement_timeout(client),
            ExtendedQueryHandler::do_query(&*self.inner, client, portal, max_rows),
        )
        .await?;
        Ok(guard(client, response).await)
    }

    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // pgwire collects every row of an Execute into memory before sending
        // (its portal fetch); a SELECT executed to completion (max_rows 0, as
        // psycopg, asyncpg and JDBC do by default) is streamed here instead.
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        let portal = match client.portal_store().get_portal(name) {
            Some(Entry::Value(p)) if message.max_rows == 0 && is_select(&p) => p,
            _ => return self._on_execute(client, message).await,
        };
        if !matches!(*portal.state.lock().await, PortalExecutionState::Initial)
            || !matches!(client.state(), PgWireConnectionState::ReadyForQuery)
        {
            return self._on_execute(client, message).await;
        }
        client.set_state(PgWireConnectionState::QueryInProgress);
        let mut limits = Limits {
            timeout: None,
            deadline: None,
            cancel: None,
        };
        limits.arm_cancel(client).await;
        let response = tokio::select! {
            r = ExtendedQueryHandler::do_query(self, client, &portal, 0) => r?,
            e = limits.tripped() => return Err(e),
        };
        match response {
            Response::Query(rows) => send_query_response(client, rows, false).await?,
            Response::Execution(tag) => send_execution_response(client, tag).await?,
            Response::EmptyQuery => {
                client
                    .feed(PgWireBackendMessage::EmptyQueryResponse(
                        EmptyQueryResponse::new(),
                    ))
                    .await?
            }
            Response::Error(e) => return Err(PgWireError::UserError(e)),
            _ => {
                return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                    "ERROR".into(),
                    "0A000".into(),
                    "unexpected response to a SELECT".into(),
                ))));
            }
        }
        // Executed to the end: a second Execute of this portal returns no rows.
        *portal.state.lock().await = PortalExecutionState::Finished;
        client.set_state(PgWireConnectionState::ReadyForQuery);
        Ok(())
    }
}

/// Whether a portal holds a plain query (SELECT, VALUES, WITH ... SELECT).
fn is_select(portal: &Portal<<DfSessionService as ExtendedQueryHandler>::Statement>) -> bool {
    matches!(
        &portal.statement.statement.1,
        Some((Statement::Query(_), _))
    )
}

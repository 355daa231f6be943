//! ACLs on SQL statements: with the broker's authorizer on, a statement
//! needs on each topic it names what the Kafka API doing the same needs:
//! reading a topic READ, INSERT into it WRITE, CREATE TABLE CREATE, ALTER
//! TABLE ALTER_CONFIGS. A refusal is Postgres's insufficient_privilege
//! (42501), before anything is planned or run. The broker decides (its
//! ACLs, the principal `User:<SQL user>`); this module only finds what a
//! statement touches.

use std::collections::HashSet;
use std::ops::ControlFlow;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{
    Ident, ObjectName, Query, Statement, TableObject, Visit, Visitor,
};
use datafusion_postgres::QueryHook;
use datafusion_postgres::arrow_pg::datatypes::df::encode_dataframe;
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::pgwire::api::ClientInfo;
use datafusion_postgres::pgwire::api::portal::Format;
use datafusion_postgres::pgwire::api::results::Response;
use datafusion_postgres::pgwire::types::format::FormatOptions;

use crate::visible::{CatalogViews, reads_catalog};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};

/// What a statement does to a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicOp {
    Read,
    Write,
    Create,
    AlterConfigs,
    /// See that it exists (the catalog lists it).
    Describe,
}

/// The broker's authorizer, as the gateway sees it.
pub trait TopicAccess: Send + Sync {
    /// May the SQL user `user`, connected from `host`, do `op` on `topic`?
    fn allows(&self, user: &str, host: &str, op: TopicOp, topic: &str) -> bool;

    /// The topics of `topics` the user may DESCRIBE.
    fn describable(&self, user: &str, host: &str, mut topics: Vec<String>) -> Vec<String> {
        topics.retain(|t| self.allows(user, host, TopicOp::Describe, t));
        topics
    }
}

/// An identifier as Postgres folds it: lower case unless quoted.
pub(crate) fn ident(i: &Ident) -> String {
    match i.quote_style {
        Some(_) => i.value.clone(),
        None => i.value.to_lowercase(),
    }
}

/// The topic a table name names: `t`, `public.t` or `datafusion.public.t`;
/// None for other schemas (`pg_catalog`, `information_schema`), which hold
/// no topic.
pub(crate) fn topic_of(name: &ObjectName) -> Option<String> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| p.as_ident().map(ident).unwrap_or_else(|| p.to_string()))
        .collect();
    match parts.as_slice() {
        [table] => Some(table.clone()),
        [schema, table] | [_, schema, table] if schema == "public" => Some(table.clone()),
        _ => None,
    }
}

/// Every table a statement names, less the names its CTEs define.
#[derive(Default)]
struct Relations {
    ctes: HashSet<String>,
    tables: Vec<String>,
}

impl Visitor for Relations {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                self.ctes.insert(ident(&cte.alias.name));
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
        if let Some(t) = topic_of(relation) {
            self.tables.push(t);
        }
        ControlFlow::Continue(())
    }
}

/// (operation, topic) pairs a statement needs.
pub fn needs(statement: &Statement) -> Vec<(TopicOp, String)> {
    let mut r = Relations::default();
    let _ = statement.visit(&mut r);
    let mut tables: Vec<String> = r
        .tables
        .into_iter()
        .filter(|t| !r.ctes.contains(t))
        .collect();
    // The statement's own target: taken out once, the rest are read.
    let target = match statement {
        Statement::Insert(insert) => match &insert.table {
            TableObject::TableName(name) => topic_of(name).map(|t| (TopicOp::Write, t)),
            _ => None,
        },
        Statement::CreateTable(ct) => topic_of(&ct.name).map(|t| (TopicOp::Create, t)),
        Statement::AlterTable(at) => topic_of(&at.name).map(|t| (TopicOp::AlterConfigs, t)),
        _ => None,
    };
    let mut out = Vec::new();
    if let Some((op, t)) = target {
        if let Some(i) = tables.iter().position(|x| *x == t) {
            tables.remove(i);
        }
        out.push((op, t));
    }
    tables.sort();
    tables.dedup();
    out.extend(tables.into_iter().map(|t| (TopicOp::Read, t)));
    out
}

/// The first hook: refuses a statement that needs what the user may not,
/// and plans one that reads the catalog on the user's view of it.
pub struct AccessHook {
    access: Arc<dyn TopicAccess>,
    views: CatalogViews,
}

fn user_and_host(client: &dyn ClientInfo) -> (String, String) {
    (
        client.metadata().get("user").cloned().unwrap_or_default(),
        client.socket_addr().ip().to_string(),
    )
}

fn api_error(e: datafusion::error::DataFusionError) -> PgWireError {
    PgWireError::ApiError(Box::new(e))
}

impl AccessHook {
    pub fn new(access: Arc<dyn TopicAccess>) -> Self {
        AccessHook {
            views: CatalogViews::new(access.clone()),
            access,
        }
    }

    /// A catalog statement's plan, on the user's view of the catalog.
    async fn catalog_plan(
        &self,
        statement: &Statement,
        shared: &SessionContext,
        (user, host): (String, String),
    ) -> PgWireResult<(Arc<SessionContext>, LogicalPlan)> {
        let ctx = self
            .views
            .context(shared, &user, &host)
            .map_err(api_error)?;
        let plan = ctx
            .state()
            .statement_to_plan(DfStatement::Statement(Box::new(statement.clone())))
            .await
            .map_err(api_error)?;
        Ok((ctx, plan))
    }

    fn check(&self, statement: &Statement, client: &dyn ClientInfo) -> PgWireResult<()> {
        let (user, host) = user_and_host(client);
        for (op, topic) in needs(statement) {
            if !self.access.allows(&user, &host, op, &topic) {
                let what = match op {
                    TopicOp::Read => "read",
                    TopicOp::Write => "write to",
                    TopicOp::Create => "create",
                    TopicOp::AlterConfigs => "alter",
                    TopicOp::Describe => "see",
                };
                return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                    "ERROR".into(),
                    "42501".into(),
                    format!("permission denied: user \"{user}\" may not {what} topic \"{topic}\""),
                ))));
            }
        }
        Ok(())
    }
}

#[async_trait]
impl QueryHook for AccessHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        if let Err(e) = self.check(statement, &*client) {
            return Some(Err(e));
        }
        if !reads_catalog(statement) {
            return None;
        }
        let run = async {
            let (ctx, plan) = self
                .catalog_plan(statement, ctx, user_and_host(&*client))
                .await?;
            let df = ctx.execute_logical_plan(plan).await.map_err(api_error)?;
            let format = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
            let rows = encode_dataframe(df, &Format::UnifiedText, Some(format)).await?;
            Ok(Response::Query(rows))
        };
        Some(run.await)
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        ctx: &SessionContext,
        client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        if let Err(e) = self.check(statement, client) {
            return Some(Err(e));
        }
        if !reads_catalog(statement) {
            return None;
        }
        // The plan holds the user's view's tables: executed on the shared
        // context, it still lists only what the user may see.
        Some(
            self.catalog_plan(statement, ctx, user_and_host(client))
                .await
                .map(|(_, plan)| plan),
        )
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _plan: &LogicalPlan,
        _params: &ParamValues,
        _ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        self.check(statement, &*client).err().map(Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn needs_of(sql: &str) -> Vec<(TopicOp, String)> {
        let s = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0);
        needs(&s)
    }

    fn read(t: &str) -> (TopicOp, String) {
        (TopicOp::Read, t.into())
    }

    #[test]
    fn what_statements_touch() {
        assert_eq!(needs_of("SELECT * FROM Orders"), vec![read("orders")]);
        assert_eq!(
            needs_of("SELECT * FROM public.\"Mixed\" JOIN b ON true"),
            vec![read("Mixed"), read("b")]
        );
        assert_eq!(
            needs_of("SELECT * FROM a WHERE x IN (SELECT y FROM b)"),
            vec![read("a"), read("b")]
        );
        assert_eq!(
            needs_of("WITH recent AS (SELECT * FROM a) SELECT * FROM recent"),
            vec![read("a")]
        );
        assert_eq!(
            needs_of("INSERT INTO t (value) SELECT value FROM s"),
            vec![(TopicOp::Write, "t".into()), read("s")]
        );
        assert_eq!(
            needs_of("INSERT INTO t SELECT * FROM t"),
            vec![(TopicOp::Write, "t".into()), read("t")]
        );
        assert_eq!(
            needs_of("CREATE TABLE n (a int)"),
            vec![(TopicOp::Create, "n".into())]
        );
        assert!(needs_of("SELECT * FROM pg_catalog.pg_class").is_empty());
        assert!(needs_of("SELECT 1").is_empty());
    }
}

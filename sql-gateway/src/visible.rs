//! What a SQL user sees in the catalog. With the broker's authorizer on,
//! `\dt`, `\d`, `SHOW TABLES`, `information_schema` and `pg_catalog` list
//! only the topics the user may DESCRIBE, as Kafka's Metadata lists only
//! those. A statement that reads the catalog is planned on a context whose
//! `public` schema hides the rest (its `pg_catalog` and
//! `information_schema` are built over that schema); one such context per
//! user and address, kept while the gateway runs (bounded).

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, MemoryCatalogProvider, MemoryCatalogProviderList,
    SchemaProvider, TableProvider,
};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{ObjectName, Statement, Visit, Visitor};
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::{
    PgCatalogSchemaProvider, PgCatalogStaticTables,
};

use crate::access::{TopicAccess, ident};

/// Users' contexts kept at most; past it they are all dropped and rebuilt
/// as used (a few milliseconds each).
const MAX_CONTEXTS: usize = 256;

/// Whether a statement reads the catalog: a relation in `pg_catalog` or
/// `information_schema` (or an unqualified `pg_*` name), or SHOW TABLES /
/// COLUMNS.
pub fn reads_catalog(statement: &Statement) -> bool {
    struct Finder(bool);
    impl Visitor for Finder {
        type Break = ();
        fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
            let parts: Vec<String> = relation
                .0
                .iter()
                .map(|p| p.as_ident().map(ident).unwrap_or_else(|| p.to_string()))
                .collect();
            let catalog = match parts.as_slice() {
                [table] => table.starts_with("pg_"),
                [schema, _] | [_, schema, _] => {
                    schema == "pg_catalog" || schema == "information_schema"
                }
                _ => false,
            };
            if catalog {
                self.0 = true;
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        }
    }
    match statement {
        Statement::ShowTables { .. } | Statement::ShowColumns { .. } => true,
        Statement::Query(_) => {
            let mut f = Finder(false);
            let _ = statement.visit(&mut f);
            f.0
        }
        _ => false,
    }
}

/// The topics schema with the ones a user may not DESCRIBE left out.
struct VisibleTopics {
    inner: Arc<dyn SchemaProvider>,
    access: Arc<dyn TopicAccess>,
    user: String,
    host: String,
}

impl std::fmt::Debug for VisibleTopics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VisibleTopics")
            .field("user", &self.user)
            .finish()
    }
}

#[async_trait]
impl SchemaProvider for VisibleTopics {
    fn table_names(&self) -> Vec<String> {
        self.access
            .describable(&self.user, &self.host, self.inner.table_names())
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if !self.table_exist(name) {
            return Ok(None);
        }
        self.inner.table(name).await
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
            && !self
                .access
                .describable(&self.user, &self.host, vec![name.to_string()])
                .is_empty()
    }
}

/// Catalog contexts per (user, host), built from the shared context.
pub struct CatalogViews {
    access: Arc<dyn TopicAccess>,
    static_tables: Mutex<Option<Arc<PgCatalogStaticTables>>>,
    contexts: Mutex<HashMap<(String, String), Arc<SessionContext>>>,
}

impl CatalogViews {
    pub fn new(access: Arc<dyn TopicAccess>) -> Self {
        CatalogViews {
            access,
            static_tables: Mutex::new(None),
            contexts: Mutex::new(HashMap::new()),
        }
    }

    /// The context `user` at `host` plans catalog statements on.
    pub fn context(
        &self,
        shared: &SessionContext,
        user: &str,
        host: &str,
    ) -> Result<Arc<SessionContext>> {
        let key = (user.to_string(), host.to_string());
        if let Some(c) = self
            .contexts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(c.clone());
        }
        let ctx = Arc::new(self.build(shared, user, host)?);
        let mut contexts = self.contexts.lock().unwrap_or_else(|e| e.into_inner());
        if contexts.len() >= MAX_CONTEXTS {
            contexts.clear();
        }
        contexts.insert(key, ctx.clone());
        Ok(ctx)
    }

    fn static_tables(&self) -> Result<Arc<PgCatalogStaticTables>> {
        let mut s = self.static_tables.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = &*s {
            return Ok(t.clone());
        }
        let t = Arc::new(PgCatalogStaticTables::try_new()?);
        *s = Some(t.clone());
        Ok(t)
    }

    fn build(&self, shared: &SessionContext, user: &str, host: &str) -> Result<SessionContext> {
        let state = shared.state();
        let topics = state
            .catalog_list()
            .catalog("datafusion")
            .and_then(|c| c.schema("public"))
            .ok_or_else(|| DataFusionError::Internal("no datafusion.public schema".into()))?;
        let catalog = Arc::new(MemoryCatalogProvider::new());
        catalog.register_schema(
            "public",
            Arc::new(VisibleTopics {
                inner: topics,
                access: self.access.clone(),
                user: user.to_string(),
                host: host.to_string(),
            }),
        )?;
        let catalogs = Arc::new(MemoryCatalogProviderList::new());
        catalogs.register_catalog("datafusion".into(), catalog.clone());
        let pg_catalog = PgCatalogSchemaProvider::try_new(
            catalogs.clone() as Arc<dyn CatalogProviderList>,
            self.static_tables()?,
            EmptyContextProvider,
        )?;
        catalog.register_schema("pg_catalog", Arc::new(pg_catalog))?;
        // The shared state's functions, settings and runtime; only the
        // catalog differs (information_schema is built over it).
        let scoped = SessionStateBuilder::new_from_existing(state)
            .with_catalog_list(catalogs)
            .build();
        Ok(SessionContext::new_with_state(scoped))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn reads(sql: &str) -> bool {
        reads_catalog(&Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap()[0])
    }

    #[test]
    fn catalog_statements_are_told_apart() {
        // psql's \dt
        assert!(reads(
            "SELECT n.nspname, c.relname FROM pg_catalog.pg_class c \
             LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        ));
        assert!(reads("SELECT * FROM information_schema.tables"));
        assert!(reads("SELECT * FROM pg_class"));
        assert!(reads("SHOW TABLES"));
        assert!(reads(
            "SELECT * FROM orders WHERE k IN (SELECT relname FROM pg_catalog.pg_class)"
        ));
        assert!(!reads("SELECT * FROM orders"));
        assert!(!reads("SELECT 1"));
        assert!(!reads("INSERT INTO t SELECT * FROM pg_catalog.pg_class"));
    }
}

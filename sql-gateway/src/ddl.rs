//! Topics from SQL. `CREATE TABLE` creates a topic; the columns it lists
//! beyond the fixed ones (`partition`, `offset`, `key`, `value`, ...) are the
//! fields of its JSON values (`karnak.value.format=json` with them as the
//! declared `karnak.value.schema`). `ALTER TABLE ... SET (...)` changes how
//! a topic's values read. Both work on the simple and the extended protocol
//! (a datafusion-postgres query hook), and answer Postgres's SQLSTATEs.
//!
//! ```sql
//! CREATE TABLE orders (total double precision, status text)
//!     WITH (partitions = 3, "retention.ms" = 86400000);
//! ALTER TABLE clicks SET (value_format = 'json');
//! ALTER TABLE clicks SET (value_schema = 'user_id bigint, url text');
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::{DFSchema, ParamValues};
use datafusion::logical_expr::{EmptyRelation, LogicalPlan};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{
    AlterTable, AlterTableOperation, CreateTable, CreateTableOptions, Expr, ObjectName, SqlOption,
    Statement, Value,
};
use datafusion_postgres::QueryHook;
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::pgwire::api::ClientInfo;
use datafusion_postgres::pgwire::api::results::{Response, Tag};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use karnak_storage::{LogManager, StorageError};

use crate::json;
use crate::table::topic_schema;

/// Columns every topic table has (and `CREATE TABLE` may list).
const DERIVED: [&str; 2] = ["key_text", "value_text"];

/// Why a topic could not be created or altered.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The cluster could not make the change (no metadata leader in time).
    #[error("{0}")]
    Unavailable(String),
}

/// Where DDL creates and alters topics: the broker sends these through its
/// metadata log (awaited, so no runtime thread waits on it); a bare
/// [`LogManager`] does them on its own disk.
#[async_trait::async_trait]
pub trait TopicAdmin: Send + Sync {
    async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> Result<(), AdminError>;
    /// Sets `set` over the topic's current overrides.
    async fn alter_topic_configs(
        &self,
        name: &str,
        set: &BTreeMap<String, String>,
    ) -> Result<(), AdminError>;
}

#[async_trait::async_trait]
impl TopicAdmin for LogManager {
    async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> Result<(), AdminError> {
        LogManager::create_topic(self, name, partitions, configs)?;
        Ok(())
    }

    async fn alter_topic_configs(
        &self,
        name: &str,
        set: &BTreeMap<String, String>,
    ) -> Result<(), AdminError> {
        LogManager::alter_topic_configs(self, name, set, &[])?;
        Ok(())
    }
}

pub struct DdlHook {
    admin: Arc<dyn TopicAdmin>,
    default_partitions: i32,
}

impl DdlHook {
    pub fn new(admin: Arc<dyn TopicAdmin>, default_partitions: i32) -> Self {
        DdlHook {
            admin,
            default_partitions,
        }
    }

    async fn run(&self, statement: &Statement) -> Option<PgWireResult<Response>> {
        match statement {
            Statement::CreateTable(ct) => Some(self.create(ct).await),
            Statement::AlterTable(at) => Some(self.alter(at).await),
            _ => None,
        }
    }

    async fn create(&self, ct: &CreateTable) -> PgWireResult<Response> {
        let name = table_name(&ct.name)?;
        if ct.query.is_some() || ct.like.is_some() || ct.clone.is_some() {
            return Err(error(
                "0A000",
                "CREATE TABLE AS / LIKE / CLONE is not supported: CREATE TABLE, then INSERT INTO ... SELECT".into(),
            ));
        }
        if ct.or_replace {
            return Err(error(
                "0A000",
                "CREATE OR REPLACE TABLE would drop a topic's records; not supported".into(),
            ));
        }
        let fixed = topic_schema();
        let mut fields = Vec::new();
        for c in &ct.columns {
            let col = ident(&c.name);
            if fixed.field_with_name(&col).is_ok() || DERIVED.contains(&col.as_str()) {
                continue;
            }
            fields.push(format!("\"{col}\" {}", c.data_type));
        }
        let mut configs = BTreeMap::new();
        let mut partitions = self.default_partitions;
        let options = match &ct.table_options {
            CreateTableOptions::None => &[][..],
            CreateTableOptions::With(o) => o.as_slice(),
            _ => {
                return Err(error(
                    "42601",
                    "table options go in WITH (name = value, ...)".into(),
                ));
            }
        };
        for (key, value) in key_values(options)? {
            if key == "partitions" {
                partitions = value.parse().map_err(|_| {
                    error(
                        "22023",
                        format!("partitions must be a whole number, not {value:?}"),
                    )
                })?;
            } else {
                configs.insert(config_name(&key), value);
            }
        }
        if !fields.is_empty() {
            let schema = fields.join(", ");
            json::parse_declared(&schema).map_err(|e| error("42704", e))?;
            configs.insert(json::FORMAT_KEY.into(), "json".into());
            configs.insert(json::SCHEMA_KEY.into(), schema);
        }
        match self.admin.create_topic(&name, partitions, configs).await {
            Ok(_) => Ok(Response::Execution(Tag::new("CREATE TABLE"))),
            Err(AdminError::Storage(StorageError::TopicAlreadyExists(_))) if ct.if_not_exists => {
                Ok(Response::Execution(Tag::new("CREATE TABLE")))
            }
            Err(e) => Err(storage_error(&name, e)),
        }
    }

    async fn alter(&self, at: &AlterTable) -> PgWireResult<Response> {
        let name = table_name(&at.name)?;
        let mut set = BTreeMap::new();
        for op in &at.operations {
            match op {
                AlterTableOperation::SetOptionsParens { options } => {
                    for (key, value) in key_values(options)? {
                        set.insert(config_name(&key), value);
                    }
                }
                other => {
                    return Err(error(
                        "0A000",
                        format!(
                            "ALTER TABLE {other} is not supported: a topic's columns are fixed; \
                             use ALTER TABLE {name} SET (value_format = 'json', value_schema = '...')"
                        ),
                    ));
                }
            }
        }
        if let Some(declared) = set.get(json::SCHEMA_KEY) {
            json::parse_declared(declared).map_err(|e| error("42704", e))?;
        }
        match self.admin.alter_topic_configs(&name, &set).await {
            Ok(_) => Ok(Response::Execution(Tag::new("ALTER TABLE"))),
            Err(AdminError::Storage(StorageError::UnknownTopic(_))) if at.if_exists => {
                Ok(Response::Execution(Tag::new("ALTER TABLE")))
            }
            Err(e) => Err(storage_error(&name, e)),
        }
    }
}

fn error(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        code.into(),
        message,
    )))
}

fn storage_error(table: &str, e: AdminError) -> PgWireError {
    let e = match e {
        AdminError::Storage(e) => e,
        // Postgres's "cannot connect now": try again.
        AdminError::Unavailable(why) => return error("57P03", why),
    };
    match e {
        StorageError::TopicAlreadyExists(_) => {
            error("42P07", format!("relation \"{table}\" already exists"))
        }
        StorageError::UnknownTopic(_) => {
            error("42P01", format!("relation \"{table}\" does not exist"))
        }
        StorageError::InvalidTopic { .. } => error("42602", e.to_string()),
        StorageError::InvalidPartitions(_) | StorageError::InvalidConfig { .. } => {
            error("22023", e.to_string())
        }
        _ => error("58000", e.to_string()),
    }
}

/// An identifier as Postgres reads it: unquoted names fold to lower case.
use crate::access::ident;

/// `name` or `public.name` (topics live in `public`).
fn table_name(name: &ObjectName) -> PgWireResult<String> {
    crate::access::topic_of(name).ok_or_else(|| {
        error(
            "3F000",
            format!("topics are tables in schema \"public\", not {name}"),
        )
    })
}

/// Short names for Karnak's own settings; Kafka topic configs by their name.
fn config_name(key: &str) -> String {
    match key {
        "value_format" | "format" => json::FORMAT_KEY.into(),
        "value_schema" | "schema" => json::SCHEMA_KEY.into(),
        other => other.into(),
    }
}

fn key_values(options: &[SqlOption]) -> PgWireResult<Vec<(String, String)>> {
    options
        .iter()
        .map(|o| match o {
            SqlOption::KeyValue { key, value } => Ok((ident(key), literal(value)?)),
            other => Err(error(
                "42601",
                format!("expected name = value, not {other}"),
            )),
        })
        .collect()
}

fn literal(e: &Expr) -> PgWireResult<String> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => Ok(s.clone()),
            Value::Number(n, _) => Ok(n.to_string()),
            Value::Boolean(b) => Ok(b.to_string()),
            other => Err(error("22023", format!("unsupported option value {other}"))),
        },
        Expr::Identifier(i) => Ok(i.value.clone()),
        Expr::UnaryOp { op, expr } => Ok(format!("{op}{}", literal(expr)?)),
        other => Err(error(
            "22023",
            format!("option values are literals, not {other}"),
        )),
    }
}

fn placeholder_plan() -> LogicalPlan {
    LogicalPlan::EmptyRelation(EmptyRelation {
        produce_one_row: false,
        schema: Arc::new(DFSchema::empty()),
    })
}

#[async_trait]
impl QueryHook for DdlHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _ctx: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        self.run(statement).await
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _ctx: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        // Nothing to plan: the statement runs at Execute.
        matches!(
            statement,
            Statement::CreateTable(_) | Statement::AlterTable(_)
        )
        .then(|| Ok(placeholder_plan()))
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _plan: &LogicalPlan,
        _params: &ParamValues,
        _ctx: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        self.run(statement).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn parse(sql: &str) -> Statement {
        Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0)
    }

    fn code(r: PgWireResult<Response>) -> String {
        match r {
            Err(PgWireError::UserError(e)) => e.code.clone(),
            Err(e) => format!("other: {e}"),
            Ok(_) => "ok".into(),
        }
    }

    #[test]
    fn create_alter_and_their_errors() {
        let dir = tempfile::tempdir().unwrap();
        let logs = Arc::new(LogManager::open(dir.path(), Default::default()).unwrap());
        let h = DdlHook::new(logs.clone(), 2);
        let create = |sql: &str| futures::executor::block_on(h.run(&parse(sql))).unwrap();
        assert_eq!(
            code(create(
                "CREATE TABLE Orders (key bytea, total DOUBLE PRECISION, \"Status\" text) \
                 WITH (partitions = 3, \"retention.ms\" = 86400000)"
            )),
            "ok"
        );
        let t = logs.topic("orders").unwrap();
        assert_eq!(t.meta.partitions, 3);
        assert_eq!(t.config.retention_ms, 86_400_000);
        assert_eq!(t.meta.configs[json::FORMAT_KEY], "json");
        assert_eq!(
            t.meta.configs[json::SCHEMA_KEY],
            "\"total\" DOUBLE PRECISION, \"Status\" TEXT"
        );
        assert_eq!(code(create("CREATE TABLE orders (a int)")), "42P07");
        assert_eq!(
            code(create("CREATE TABLE IF NOT EXISTS orders (a int)")),
            "ok"
        );
        assert_eq!(
            code(create("CREATE TABLE plain (key bytea, value bytea)")),
            "ok"
        );
        assert_eq!(logs.topic("plain").unwrap().meta.partitions, 2);
        assert!(logs.topic("plain").unwrap().meta.configs.is_empty());
        assert_eq!(code(create("CREATE TABLE g (a geometry)")), "42704");
        assert_eq!(code(create("CREATE TABLE c AS SELECT 1")), "0A000");
        assert_eq!(code(create("CREATE TABLE s.t (a int)")), "3F000");
        assert_eq!(
            code(create("CREATE TABLE p (a int) WITH (partitions = 0)")),
            "22023"
        );
        assert_eq!(
            code(create("CREATE TABLE p (a int) WITH (\"no.such\" = 1)")),
            "22023"
        );

        assert_eq!(
            code(create(
                "ALTER TABLE plain SET (value_format = 'json', value_schema = 'n bigint')"
            )),
            "ok"
        );
        let t = logs.topic("plain").unwrap();
        assert_eq!(t.meta.configs[json::SCHEMA_KEY], "n bigint");
        assert_eq!(
            code(create("ALTER TABLE plain SET (value_format = 'xml')")),
            "22023"
        );
        assert_eq!(
            code(create(
                "ALTER TABLE plain SET (value_schema = 'n nonsense')"
            )),
            "42704"
        );
        // Any topic config may change on a live topic (as with Kafka's
        // IncrementalAlterConfigs); an unknown one is refused.
        assert_eq!(
            code(create("ALTER TABLE plain SET (\"retention.ms\" = 5)")),
            "ok"
        );
        assert_eq!(logs.log("plain", 0).unwrap().config().retention_ms, 5);
        assert_eq!(
            code(create("ALTER TABLE plain SET (\"retention.mss\" = 5)")),
            "22023"
        );
        assert_eq!(code(create("ALTER TABLE plain ADD COLUMN z int")), "0A000");
        assert_eq!(
            code(create("ALTER TABLE nope SET (value_format = 'json')")),
            "42P01"
        );
        assert_eq!(
            code(create(
                "ALTER TABLE IF EXISTS nope SET (value_format = 'json')"
            )),
            "ok"
        );
        assert!(futures::executor::block_on(h.run(&parse("SELECT 1"))).is_none());
    }
}

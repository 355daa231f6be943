//! What drivers and pools send that DataFusion does not know: a Postgres
//! style `version()`, and the session-reset statements a pool runs when a
//! connection is given back (asyncpg: `SELECT pg_advisory_unlock_all();
//! CLOSE ALL; UNLISTEN *; RESET ALL;`, pgbouncer and others: `DISCARD ALL`).
//! Karnak has no advisory locks, listeners or per-session state to reset
//! beyond what `SET` changed, so these succeed without doing anything.

use std::sync::Arc;

use arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
use datafusion::prelude::SessionContext;

/// The `version()` string: Postgres-shaped (drivers and ORMs parse
/// "PostgreSQL <major>.<minor>"), matching the `server_version` pgwire
/// announces at startup, then what actually answers.
pub fn version_string() -> String {
    format!(
        "PostgreSQL 16.6 on {}-linux, Karnak {} (Apache DataFusion {})",
        std::env::consts::ARCH,
        env!("CARGO_PKG_VERSION"),
        datafusion::DATAFUSION_VERSION,
    )
}

/// Registers `version()` and `pg_advisory_unlock_all()`.
pub fn register_functions(ctx: &SessionContext) {
    let version = version_string();
    ctx.register_udf(create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |_| {
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(
                version.clone(),
            ))))
        }),
    ));
    // Postgres returns void; there are no advisory locks to release.
    ctx.register_udf(create_udf(
        "pg_advisory_unlock_all",
        vec![],
        DataType::Boolean,
        Volatility::Volatile,
        Arc::new(|_| Ok(ColumnarValue::Scalar(ScalarValue::Boolean(Some(true))))),
    ));
}

/// One statement of a simple-query message split by [`split_resets`].
#[derive(Debug, PartialEq)]
pub enum Part {
    /// A session-reset statement answered with this command tag.
    Reset(&'static str),
    /// Anything else, for the SQL engine.
    Sql(String),
}

/// The tag for a session-reset statement Karnak answers itself.
fn reset_tag(statement: &str) -> Option<&'static str> {
    let words: Vec<String> = statement
        .split_whitespace()
        .map(str::to_ascii_uppercase)
        .collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["UNLISTEN", _] => Some("UNLISTEN"),
        ["RESET", "ALL"] => Some("RESET"),
        [
            "DISCARD",
            "ALL" | "PLANS" | "SEQUENCES" | "TEMP" | "TEMPORARY",
        ] => Some("DISCARD ALL"),
        _ => None,
    }
}

/// Splits a message holding session-reset statements into parts, or
/// `None` when it holds none (the common case: the message goes to the
/// engine whole). Messages with quotes or comments are never split: `;`
/// could be inside them.
pub fn split_resets(query: &str) -> Option<Vec<Part>> {
    if query.contains(['\'', '"', '$']) || query.contains("--") || query.contains("/*") {
        return None;
    }
    let statements: Vec<&str> = query
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if !statements.iter().any(|s| reset_tag(s).is_some()) {
        return None;
    }
    Some(
        statements
            .into_iter()
            .map(|s| match reset_tag(s) {
                Some(tag) => Part::Reset(tag),
                None => Part::Sql(s.to_string()),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asyncpg_reset_query_is_split() {
        let q = "SELECT pg_advisory_unlock_all();\nCLOSE ALL;\nUNLISTEN *;\nRESET ALL;";
        assert_eq!(
            split_resets(q),
            Some(vec![
                Part::Sql("SELECT pg_advisory_unlock_all()".into()),
                Part::Sql("CLOSE ALL".into()),
                Part::Reset("UNLISTEN"),
                Part::Reset("RESET"),
            ])
        );
        assert_eq!(
            split_resets("discard all"),
            Some(vec![Part::Reset("DISCARD ALL")])
        );
    }

    #[test]
    fn ordinary_and_quoted_messages_are_left_whole() {
        assert_eq!(split_resets("select 1; select 2"), None);
        assert_eq!(split_resets("select ';UNLISTEN *'; RESET ALL"), None);
        assert_eq!(split_resets("select 1 -- RESET ALL"), None);
    }

    #[test]
    fn version_looks_like_postgres() {
        assert!(version_string().starts_with("PostgreSQL 16.6 on "));
        assert!(version_string().contains("Karnak"));
    }
}

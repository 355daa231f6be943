//! SQLSTATEs for the errors DataFusion reports as text, so a client sees
//! the class of error Postgres would send (a driver maps `42601` to a
//! syntax error, `42P01` to an undefined table) instead of `XX000` for all.

use datafusion::common::DataFusionError;
use datafusion_postgres::pgwire::api::{ClientInfo, ErrorHandler};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError};

use crate::insert::InsertError;

/// The SQLSTATE for a DataFusion error message (by its wording; DataFusion
/// errors carry no codes).
pub fn sqlstate_for(message: &str) -> &'static str {
    let m = message.to_ascii_lowercase();
    if m.contains("sql parser error") || m.contains("syntax error") {
        "42601" // syntax_error
    } else if m.contains("table '") && m.contains("not found")
        || m.contains("table not found")
        || m.contains("no table named")
    {
        "42P01" // undefined_table
    } else if m.contains("no field named") || m.contains("column") && m.contains("not found") {
        "42703" // undefined_column
    } else if m.contains("function") && (m.contains("not found") || m.contains("invalid function"))
    {
        "42883" // undefined_function
    } else if m.contains("cannot coerce")
        || m.contains("cannot infer common")
        || m.contains("type coercion")
        || m.contains("does not support") && m.contains("type")
    {
        "42804" // datatype_mismatch
    } else if m.contains("cast error") || m.contains("cannot cast") {
        "22P02" // invalid_text_representation
    } else if m.contains("divide by zero") || m.contains("division by zero") {
        "22012" // division_by_zero
    } else if m.contains("resources exhausted") {
        "53200" // out_of_memory: past --sql-memory-limit-bytes
    } else if m.contains("not implemented") || m.contains("unsupported") {
        "0A000" // feature_not_supported
    } else {
        "XX000" // internal_error
    }
}

/// The SQLSTATE our own code chose for an error (an INSERT the topic
/// cannot take), found under DataFusion's wrapping.
fn declared<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a InsertError> {
    let mut cur: Option<&'a (dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(i) = err.downcast_ref::<InsertError>() {
            return Some(i);
        }
        if let Some(DataFusionError::External(inner)) = err.downcast_ref::<DataFusionError>() {
            cur = Some(inner.as_ref());
            continue;
        }
        cur = err.source();
    }
    None
}

/// Rewrites opaque errors into Postgres errors with a SQLSTATE.
pub struct SqlStateErrors;

impl ErrorHandler for SqlStateErrors {
    fn on_error<C>(&self, _client: &C, error: &mut PgWireError)
    where
        C: ClientInfo,
    {
        if let PgWireError::ApiError(e) = error {
            let (code, message) = match declared(e.as_ref()) {
                Some(i) => (i.sqlstate, i.message.clone()),
                None => {
                    let message = e.to_string();
                    (sqlstate_for(&message), message)
                }
            };
            tracing::debug!(code, %message, "SQL error");
            *error = PgWireError::UserError(Box::new(ErrorInfo::new(
                "ERROR".to_string(),
                code.to_string(),
                message,
            )));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_errors_get_their_sqlstate() {
        assert_eq!(
            sqlstate_for("sql parser error: Expected: an SQL statement, found: selec"),
            "42601"
        );
        assert_eq!(
            sqlstate_for("Error during planning: table 'datafusion.public.x' not found"),
            "42P01"
        );
        assert_eq!(
            sqlstate_for("Schema error: No field named nope. Valid fields are t.a."),
            "42703"
        );
        assert_eq!(sqlstate_for("something else"), "XX000");
    }
}

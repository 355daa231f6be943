//! JSON values as typed columns. A topic with the topic config
//! `karnak.value.format=json` gets one column per top-level field of its
//! values, after the fixed columns: declared in `karnak.value.schema`
//! (`"total double, status text, at timestamptz"`) or inferred from a sample
//! of the newest records. A value that is not JSON, a missing field or a field
//! of another type is NULL in that row, never an error for the query.
//! Nested objects and arrays are columns of their JSON text.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BinaryArray, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder,
    StringBuilder, TimestampMillisecondBuilder,
};
use arrow::compute::kernels::cast_utils::string_to_timestamp_nanos;
use arrow::datatypes::{DataType, TimeUnit};
use serde_json::{Map, Value};

pub const FORMAT_KEY: &str = "karnak.value.format";
pub const SCHEMA_KEY: &str = "karnak.value.schema";

/// Columns that come from the JSON value, in table order.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonColumn {
    /// The column's name in the table (the field name, or `value_<field>`
    /// when the field name is taken by a fixed column).
    pub name: String,
    /// The top-level JSON field it reads.
    pub field: String,
    pub data_type: DataType,
}

pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// Names the fields as columns, avoiding the fixed columns' names.
pub fn columns(fields: Vec<(String, DataType)>, fixed: &[&str]) -> Vec<JsonColumn> {
    let mut taken: HashSet<String> = fixed.iter().map(|s| s.to_string()).collect();
    let mut out = Vec::with_capacity(fields.len());
    for (field, data_type) in fields {
        let mut name = field.clone();
        while taken.contains(&name) {
            name = format!("value_{name}");
        }
        taken.insert(name.clone());
        out.push(JsonColumn {
            name,
            field,
            data_type,
        });
    }
    out
}

/// Parses a declared schema: `name type, name type, ...` with Postgres type
/// names (text, varchar, bigint, int, double precision, real, boolean,
/// timestamptz, json, jsonb).
pub fn parse_declared(s: &str) -> Result<Vec<(String, DataType)>, String> {
    let mut out: Vec<(String, DataType)> = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (name, ty) = match item.strip_prefix('"') {
            Some(rest) => {
                let end = rest
                    .find('"')
                    .ok_or_else(|| format!("unterminated quoted name in {item:?}"))?;
                (rest[..end].to_string(), rest[end + 1..].trim())
            }
            None => {
                let mut parts = item.splitn(2, char::is_whitespace);
                let name = parts.next().unwrap_or_default().to_string();
                (name, parts.next().unwrap_or_default().trim())
            }
        };
        let data_type = sql_type(ty).ok_or_else(|| {
            format!("column {name:?}: unknown or missing type {ty:?} (text, bigint, int, double precision, boolean, timestamptz, jsonb)")
        })?;
        if name.is_empty() || out.iter().any(|(n, _)| *n == name) {
            return Err(format!("column name {name:?} is empty or repeated"));
        }
        out.push((name, data_type));
    }
    Ok(out)
}

fn sql_type(ty: &str) -> Option<DataType> {
    let t = ty.to_ascii_lowercase();
    let t = t.split_whitespace().collect::<Vec<_>>().join(" ");
    Some(match t.as_str() {
        "text" | "varchar" | "string" | "json" | "jsonb" | "character varying" => DataType::Utf8,
        "bigint" | "int8" => DataType::Int64,
        "int" | "integer" | "int4" => DataType::Int32,
        "double" | "double precision" | "float8" | "float" | "real" | "float4" | "numeric" => {
            DataType::Float64
        }
        "boolean" | "bool" => DataType::Boolean,
        "timestamptz" | "timestamp" | "timestamp with time zone" => timestamp_type(),
        _ => return None,
    })
}

/// How often a field held each kind of value in the sample.
#[derive(Default)]
struct Seen {
    bools: usize,
    ints: usize,
    floats: usize,
    /// Strings, objects and arrays.
    texts: usize,
}

impl Seen {
    fn add(&mut self, v: &Value) {
        match v {
            Value::Null => {}
            Value::Bool(_) => self.bools += 1,
            Value::Number(n) if n.is_i64() || n.is_u64() => self.ints += 1,
            Value::Number(_) => self.floats += 1,
            _ => self.texts += 1,
        }
    }

    /// The kind most values had (numbers of both kinds count together):
    /// the odd value of another kind reads as NULL rather than turning the
    /// whole column into text. Ties and all-NULL fields are text.
    fn data_type(&self) -> DataType {
        let numbers = self.ints + self.floats;
        if numbers > self.texts && numbers > self.bools {
            if self.floats > 0 {
                DataType::Float64
            } else {
                DataType::Int64
            }
        } else if self.bools > self.texts && self.bools > numbers {
            DataType::Boolean
        } else {
            DataType::Utf8
        }
    }
}

/// Infers top-level fields and their types from sample values, in order of
/// first appearance. Values that are not JSON objects are skipped.
pub fn infer<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Vec<(String, DataType)> {
    let mut fields: Vec<(String, Seen)> = Vec::new();
    for v in values {
        let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(v) else {
            continue;
        };
        for (k, v) in &map {
            match fields.iter_mut().find(|(n, _)| n == k) {
                Some((_, s)) => s.add(v),
                None => {
                    let mut s = Seen::default();
                    s.add(v);
                    fields.push((k.clone(), s));
                }
            }
        }
    }
    fields
        .into_iter()
        .map(|(n, s)| (n, s.data_type()))
        .collect()
}

/// Decodes the wanted JSON columns of a batch's `value` column (unwanted
/// ones are all-NULL: the projection drops them).
pub fn decode(values: &BinaryArray, cols: &[JsonColumn], wanted: &[bool]) -> Vec<ArrayRef> {
    let n = values.len();
    let any = wanted.iter().any(|w| *w);
    let objects: Vec<Option<Map<String, Value>>> = (0..n)
        .map(|i| {
            if !any || values.is_null(i) {
                return None;
            }
            match serde_json::from_slice::<Value>(values.value(i)) {
                Ok(Value::Object(m)) => Some(m),
                _ => None,
            }
        })
        .collect();
    cols.iter()
        .zip(wanted)
        .map(|(c, want)| {
            let field = |i: usize| -> Option<&Value> {
                objects[i]
                    .as_ref()
                    .filter(|_| *want)
                    .and_then(|m| m.get(&c.field))
                    .filter(|v| !v.is_null())
            };
            column(&c.data_type, n, field)
        })
        .collect()
}

fn column<'a>(ty: &DataType, n: usize, field: impl Fn(usize) -> Option<&'a Value>) -> ArrayRef {
    match ty {
        DataType::Boolean => {
            let mut b = BooleanBuilder::with_capacity(n);
            (0..n).for_each(|i| b.append_option(field(i).and_then(as_bool)));
            Arc::new(b.finish())
        }
        DataType::Int32 => {
            let mut b = Int32Builder::with_capacity(n);
            (0..n).for_each(|i| {
                b.append_option(
                    field(i)
                        .and_then(as_i64)
                        .and_then(|v| i32::try_from(v).ok()),
                )
            });
            Arc::new(b.finish())
        }
        DataType::Int64 => {
            let mut b = Int64Builder::with_capacity(n);
            (0..n).for_each(|i| b.append_option(field(i).and_then(as_i64)));
            Arc::new(b.finish())
        }
        DataType::Float64 => {
            let mut b = Float64Builder::with_capacity(n);
            (0..n).for_each(|i| b.append_option(field(i).and_then(as_f64)));
            Arc::new(b.finish())
        }
        DataType::Timestamp(_, _) => {
            let mut b = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
            (0..n).for_each(|i| b.append_option(field(i).and_then(as_millis)));
            Arc::new(b.finish())
        }
        _ => {
            let mut b = StringBuilder::with_capacity(n, n * 8);
            (0..n).for_each(|i| b.append_option(field(i).map(as_text)));
            Arc::new(b.finish())
        }
    }
}

fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e18)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Epoch milliseconds, or an RFC 3339 / ISO 8601 string.
fn as_millis(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => string_to_timestamp_nanos(s).ok().map(|ns| ns / 1_000_000),
        _ => None,
    }
}

fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, BooleanArray, Float64Array, Int64Array, StringArray};
    use arrow::datatypes::{Float64Type, Int64Type, TimestampMillisecondType};

    #[test]
    fn infers_types_in_order_by_majority() {
        let vals: Vec<&[u8]> = vec![
            br#"{"id": 1, "price": 2, "name": "a", "ok": true}"#,
            br#"{"id": 2, "price": 2.5, "name": null, "tags": [1]}"#,
            b"not json",
            br#"{"id": "x3", "name": 5, "odd": 1}"#,
            br#"{"odd": "a"}"#,
        ];
        assert_eq!(
            infer(vals),
            vec![
                ("id".to_string(), DataType::Int64),
                ("price".to_string(), DataType::Float64),
                ("name".to_string(), DataType::Utf8),
                ("ok".to_string(), DataType::Boolean),
                ("tags".to_string(), DataType::Utf8),
                ("odd".to_string(), DataType::Utf8),
            ]
        );
    }

    #[test]
    fn decode_makes_missing_and_malformed_null() {
        let values = BinaryArray::from(vec![
            Some(
                br#"{"n": 5, "f": 1.5, "s": "x", "b": true, "t": "2024-05-01T12:00:00Z"}"#.as_ref(),
            ),
            Some(b"{broken".as_ref()),
            None,
            Some(br#"{"n": "7", "f": "nope", "s": {"a": 1}, "t": 1714564800000}"#.as_ref()),
        ]);
        let cols = columns(
            vec![
                ("n".into(), DataType::Int64),
                ("f".into(), DataType::Float64),
                ("s".into(), DataType::Utf8),
                ("b".into(), DataType::Boolean),
                ("t".into(), timestamp_type()),
            ],
            &["partition"],
        );
        let out = decode(&values, &cols, &[true; 5]);
        let n = out[0].as_primitive::<Int64Type>();
        assert_eq!(n, &Int64Array::from(vec![Some(5), None, None, Some(7)]));
        let f = out[1].as_primitive::<Float64Type>();
        assert_eq!(f, &Float64Array::from(vec![Some(1.5), None, None, None]));
        let s = out[2].as_string::<i32>();
        assert_eq!(
            s,
            &StringArray::from(vec![Some("x"), None, None, Some(r#"{"a":1}"#)])
        );
        let b = out[3].as_boolean();
        assert_eq!(b, &BooleanArray::from(vec![Some(true), None, None, None]));
        let t = out[4].as_primitive::<TimestampMillisecondType>();
        assert_eq!(t.value(0), 1_714_564_800_000);
        assert!(t.is_null(1));
        assert_eq!(t.value(3), 1_714_564_800_000);
    }

    #[test]
    fn declared_schema_parses_and_rejects_nonsense() {
        assert_eq!(
            parse_declared(r#"total double precision, "user id" text, n bigint"#).unwrap(),
            vec![
                ("total".to_string(), DataType::Float64),
                ("user id".to_string(), DataType::Utf8),
                ("n".to_string(), DataType::Int64),
            ]
        );
        assert!(parse_declared("x").is_err());
        assert!(parse_declared("x blob").is_err());
        assert!(parse_declared("x int, x text").is_err());
    }

    #[test]
    fn field_names_do_not_shadow_fixed_columns() {
        let cols = columns(
            vec![
                ("timestamp".into(), DataType::Utf8),
                ("x".into(), DataType::Utf8),
            ],
            &["timestamp", "value"],
        );
        assert_eq!(cols[0].name, "value_timestamp");
        assert_eq!(cols[1].name, "x");
    }
}

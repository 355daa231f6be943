//! JSON values as typed columns. A topic with the topic config
//! `karnak.value.format=json` gets one column per top-level field of its
//! values, after the fixed columns: declared in `karnak.value.schema`
//! (`"total double, status text, at timestamptz"`) or inferred from a sample
//! of the newest records. A value that is not JSON, a missing field or a field
//! of another type is NULL in that row, never an error for the query.
//! Nested objects and arrays are columns of their JSON text.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BinaryArray, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder,
    StringBuilder, TimestampMillisecondBuilder, new_null_array,
};
use arrow::compute::kernels::cast_utils::string_to_timestamp_nanos;
use arrow::datatypes::{DataType, TimeUnit};
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

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

/// A top-level field's value as written: text is borrowed from the record
/// where it has no escapes.
#[derive(Debug)]
enum Cell<'a> {
    Null,
    Bool(bool),
    /// A number's literal.
    Number(&'a str),
    Str(Cow<'a, str>),
    /// An object's or array's text.
    Nested(&'a RawValue),
}

impl<'a> Cell<'a> {
    fn from_raw(raw: &'a RawValue) -> Option<Cell<'a>> {
        let text = raw.get();
        Some(match text.as_bytes().first()? {
            b'n' => Cell::Null,
            b't' => Cell::Bool(true),
            b'f' => Cell::Bool(false),
            b'"' => Cell::Str(serde_json::from_str::<Text<'a>>(text).ok()?.0),
            b'{' | b'[' => Cell::Nested(raw),
            _ => Cell::Number(text),
        })
    }
}

/// A JSON string, borrowed when it has no escapes (serde's own `Cow<str>`
/// always copies).
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// Walks the fields of a top-level object, handing each to `f` without
/// building a map: the value of a field no column reads is only scanned.
struct ObjectFields<'f, F>(&'f mut F);

impl<'de, F: FnMut(Cow<'de, str>, Cell<'de>)> Visitor<'de> for ObjectFields<'_, F> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            let raw: &'de RawValue = map.next_value()?;
            let cell = Cell::from_raw(raw).ok_or_else(|| de::Error::custom("empty value"))?;
            (self.0)(key, cell);
        }
        Ok(())
    }
}

/// Calls `f` with each top-level field of the JSON object `bytes`, in
/// order (a repeated name is called again: the last one wins). False when
/// `bytes` is not one whole JSON object, after perhaps some calls.
fn for_each_field<'a>(bytes: &'a [u8], mut f: impl FnMut(Cow<'a, str>, Cell<'a>)) -> bool {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    de.deserialize_map(ObjectFields(&mut f)).is_ok() && de.end().is_ok()
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
    fn add(&mut self, v: &Cell) {
        match v {
            Cell::Null => {}
            Cell::Bool(_) => self.bools += 1,
            Cell::Number(n) if n.parse::<i64>().is_ok() || n.parse::<u64>().is_ok() => {
                self.ints += 1
            }
            Cell::Number(_) => self.floats += 1,
            Cell::Str(_) | Cell::Nested(_) => self.texts += 1,
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

/// Most columns inference makes of a topic's values: a topic whose values
/// use their field names as data (ids as keys) would otherwise make a table
/// of thousands of columns.
pub const MAX_INFERRED_COLUMNS: usize = 256;

/// Fields inferred from sample values.
#[derive(Debug, Clone, PartialEq)]
pub struct Inferred {
    /// Top-level fields and their types, in order of first appearance, at
    /// most [`MAX_INFERRED_COLUMNS`].
    pub fields: Vec<(String, DataType)>,
    /// How many more field names the sample had, and the first few of them.
    pub dropped: usize,
    pub dropped_names: Vec<String>,
}

/// Infers top-level fields and their types from sample values, in order of
/// first appearance. Values that are not JSON objects are skipped.
pub fn infer<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Inferred {
    let mut inferrer = Inferrer::default();
    values.into_iter().for_each(|v| inferrer.add(v));
    inferrer.finish()
}

/// [`infer`] one value at a time, for values that do not all stay in
/// memory (a whole segment's, when its face is built).
#[derive(Default)]
pub struct Inferrer {
    fields: Vec<(String, Seen)>,
    index: HashMap<String, usize>,
    dropped: HashSet<String>,
    dropped_names: Vec<String>,
}

impl Inferrer {
    pub fn add(&mut self, v: &[u8]) {
        let Inferrer {
            fields,
            index,
            dropped,
            dropped_names,
        } = self;
        for_each_field(v, |k, cell| match index.get(k.as_ref()) {
            Some(&i) => fields[i].1.add(&cell),
            None if fields.len() < MAX_INFERRED_COLUMNS => {
                let mut s = Seen::default();
                s.add(&cell);
                index.insert(k.to_string(), fields.len());
                fields.push((k.into_owned(), s));
            }
            None => {
                if dropped.len() < 100_000
                    && dropped.insert(k.to_string())
                    && dropped_names.len() < 5
                {
                    dropped_names.push(k.into_owned());
                }
            }
        });
    }

    pub fn finish(self) -> Inferred {
        Inferred {
            fields: self
                .fields
                .into_iter()
                .map(|(n, s)| (n, s.data_type()))
                .collect(),
            dropped: self.dropped.len(),
            dropped_names: self.dropped_names,
        }
    }
}

/// Decodes the wanted JSON columns of a batch's `value` column (unwanted
/// ones are all-NULL: the projection drops them). One pass over each value;
/// a value that is not a JSON object is NULL in every column.
pub fn decode(values: &BinaryArray, cols: &[JsonColumn], wanted: &[bool]) -> Vec<ArrayRef> {
    let n = values.len();
    let mut builders: Vec<Option<ColumnBuilder>> = cols
        .iter()
        .zip(wanted)
        .map(|(c, w)| w.then(|| ColumnBuilder::new(&c.data_type, n)))
        .collect();
    let index: HashMap<&str, usize> = cols
        .iter()
        .enumerate()
        .filter(|(i, _)| builders[*i].is_some())
        .map(|(i, c)| (c.field.as_str(), i))
        .collect();
    if !index.is_empty() {
        let mut cells: Vec<Option<Cell>> = (0..cols.len()).map(|_| None).collect();
        for i in 0..n {
            cells.iter_mut().for_each(|c| *c = None);
            let whole = values.is_valid(i)
                && for_each_field(values.value(i), |k, cell| {
                    if let Some(&c) = index.get(k.as_ref()) {
                        cells[c] = Some(cell);
                    }
                });
            for (b, cell) in builders.iter_mut().zip(&cells) {
                if let Some(b) = b {
                    b.append(cell.as_ref().filter(|_| whole));
                }
            }
        }
    }
    builders
        .into_iter()
        .zip(cols)
        .map(|(b, c)| match b {
            Some(b) => b.finish(),
            None => new_null_array(&c.data_type, n),
        })
        .collect()
}

enum ColumnBuilder {
    Bool(BooleanBuilder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float64(Float64Builder),
    Timestamp(TimestampMillisecondBuilder),
    Text(StringBuilder),
}

impl ColumnBuilder {
    fn new(ty: &DataType, n: usize) -> Self {
        match ty {
            DataType::Boolean => Self::Bool(BooleanBuilder::with_capacity(n)),
            DataType::Int32 => Self::Int32(Int32Builder::with_capacity(n)),
            DataType::Int64 => Self::Int64(Int64Builder::with_capacity(n)),
            DataType::Float64 => Self::Float64(Float64Builder::with_capacity(n)),
            DataType::Timestamp(_, _) => {
                Self::Timestamp(TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC"))
            }
            _ => Self::Text(StringBuilder::with_capacity(n, n * 8)),
        }
    }

    fn append(&mut self, cell: Option<&Cell>) {
        let cell = cell.filter(|c| !matches!(c, Cell::Null));
        match self {
            Self::Bool(b) => b.append_option(cell.and_then(as_bool)),
            Self::Int32(b) => {
                b.append_option(cell.and_then(as_i64).and_then(|v| i32::try_from(v).ok()))
            }
            Self::Int64(b) => b.append_option(cell.and_then(as_i64)),
            Self::Float64(b) => b.append_option(cell.and_then(as_f64)),
            Self::Timestamp(b) => b.append_option(cell.and_then(as_millis)),
            Self::Text(b) => match cell {
                Some(Cell::Str(s)) => b.append_value(s),
                other => b.append_option(other.and_then(as_text)),
            },
        }
    }

    fn finish(self) -> ArrayRef {
        match self {
            Self::Bool(mut b) => Arc::new(b.finish()),
            Self::Int32(mut b) => Arc::new(b.finish()),
            Self::Int64(mut b) => Arc::new(b.finish()),
            Self::Float64(mut b) => Arc::new(b.finish()),
            Self::Timestamp(mut b) => Arc::new(b.finish()),
            Self::Text(mut b) => Arc::new(b.finish()),
        }
    }
}

fn as_bool(v: &Cell) -> Option<bool> {
    match v {
        Cell::Bool(b) => Some(*b),
        Cell::Str(s) => s.parse().ok(),
        _ => None,
    }
}

/// An integer, or a float with no fraction that fits.
fn as_i64(v: &Cell) -> Option<i64> {
    match v {
        Cell::Number(n) => n.parse().ok().or_else(|| {
            n.parse::<f64>()
                .ok()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e18)
                .map(|f| f as i64)
        }),
        Cell::Str(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn as_f64(v: &Cell) -> Option<f64> {
    match v {
        Cell::Number(n) => n.parse().ok(),
        Cell::Str(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Epoch milliseconds, or an RFC 3339 / ISO 8601 string.
fn as_millis(v: &Cell) -> Option<i64> {
    match v {
        Cell::Number(n) => n.parse().ok(),
        Cell::Str(s) => string_to_timestamp_nanos(s).ok().map(|ns| ns / 1_000_000),
        _ => None,
    }
}

/// A non-string value as text: numbers as serde_json writes them, objects
/// and arrays compact (`{"a":1}`), as Postgres's `json` casts read them.
fn as_text(v: &Cell) -> Option<String> {
    match v {
        Cell::Null => None,
        Cell::Bool(b) => Some(b.to_string()),
        Cell::Number(n) => serde_json::from_str::<serde_json::Number>(n)
            .ok()
            .map(|n| n.to_string()),
        Cell::Str(s) => Some(s.to_string()),
        Cell::Nested(raw) => serde_json::from_str::<serde_json::Value>(raw.get())
            .ok()
            .map(|v| v.to_string()),
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
            infer(vals).fields,
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

    #[test]
    fn inference_caps_the_columns_and_names_what_it_left_out() {
        let vals: Vec<Vec<u8>> = (0..300)
            .map(|i| format!(r#"{{"id": {i}, "f{i}": 1}}"#).into_bytes())
            .collect();
        let got = infer(vals.iter().map(Vec::as_slice));
        assert_eq!(got.fields.len(), MAX_INFERRED_COLUMNS);
        assert_eq!(got.fields[0], ("id".to_string(), DataType::Int64));
        assert_eq!(got.fields[1].0, "f0");
        assert_eq!(got.dropped, 300 + 1 - MAX_INFERRED_COLUMNS);
        assert_eq!(got.dropped_names, ["f255", "f256", "f257", "f258", "f259"]);
    }

    #[test]
    fn escaped_names_and_strings_decode_and_trailing_bytes_do_not() {
        let values = BinaryArray::from(vec![
            Some(br#"{"n\u0061me": "a\"b\u00e9", "n": 1, "n": 2}"#.as_ref()),
            Some(br#"{"name": "x"} {"name": "y"}"#.as_ref()),
            Some(br#"["name", "x"]"#.as_ref()),
            Some(br#"  {"name": "z"}  "#.as_ref()),
        ]);
        let cols = columns(
            vec![
                ("name".into(), DataType::Utf8),
                ("n".into(), DataType::Int64),
            ],
            &[],
        );
        let out = decode(&values, &cols, &[true, true]);
        assert_eq!(
            out[0].as_string::<i32>(),
            &StringArray::from(vec![Some("a\"b\u{e9}"), None, None, Some("z")])
        );
        // A repeated name: the last one, as a JSON object map keeps it.
        assert_eq!(
            out[1].as_primitive::<Int64Type>(),
            &Int64Array::from(vec![Some(2), None, None, None])
        );
    }

    /// The decoder against the one it replaced (a `serde_json::Value` per
    /// row), on generated objects: the same cells, floats to the last bit
    /// but one (the two parse floats with different algorithms).
    mod against_value {
        use super::*;
        use proptest::prelude::*;
        use serde_json::{Map, Value};

        fn old_cell(ty: &DataType, v: Option<&Value>) -> Option<String> {
            let v = v.filter(|v| !v.is_null())?;
            let int = |v: &Value| match v {
                Value::Number(n) => n.as_i64().or_else(|| {
                    n.as_f64()
                        .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e18)
                        .map(|f| f as i64)
                }),
                Value::String(s) => s.trim().parse().ok(),
                _ => None,
            };
            match ty {
                DataType::Boolean => match v {
                    Value::Bool(b) => Some(*b),
                    Value::String(s) => s.parse().ok(),
                    _ => None,
                }
                .map(|b| b.to_string()),
                DataType::Int32 => int(v)
                    .and_then(|i| i32::try_from(i).ok())
                    .map(|i| i.to_string()),
                DataType::Int64 => int(v).map(|i| i.to_string()),
                DataType::Float64 => match v {
                    Value::Number(n) => n.as_f64(),
                    Value::String(s) => s.trim().parse().ok(),
                    _ => None,
                }
                .map(|f| format!("{f:e}")),
                _ => Some(match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                }),
            }
        }

        fn new_cell(a: &ArrayRef, i: usize) -> Option<String> {
            if a.is_null(i) {
                return None;
            }
            Some(match a.data_type() {
                DataType::Boolean => a.as_boolean().value(i).to_string(),
                DataType::Int32 => a
                    .as_primitive::<arrow::datatypes::Int32Type>()
                    .value(i)
                    .to_string(),
                DataType::Int64 => a.as_primitive::<Int64Type>().value(i).to_string(),
                DataType::Float64 => format!("{:e}", a.as_primitive::<Float64Type>().value(i)),
                _ => a.as_string::<i32>().value(i).to_string(),
            })
        }

        fn close(a: &str, b: &str) -> bool {
            match (a.parse::<f64>(), b.parse::<f64>()) {
                (Ok(x), Ok(y)) => {
                    x == y || (x - y).abs() <= x.abs().max(y.abs()) * 4.0 * f64::EPSILON
                }
                _ => false,
            }
        }

        fn leaf() -> impl Strategy<Value = Value> {
            prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                any::<u64>().prop_map(Value::from),
                (-1e300f64..1e300).prop_map(Value::from),
                (-100i64..100).prop_map(|i| Value::from(i as f64)),
                "[a-z0-9 .:\\-\"\\\\é]{0,12}".prop_map(Value::String),
                prop_oneof![
                    Just("true"),
                    Just("12"),
                    Just(" 7 "),
                    Just("2.5"),
                    Just("2024-05-01T12:00:00Z"),
                    Just("1e3")
                ]
                .prop_map(|s| Value::String(s.to_string())),
            ]
        }

        fn value() -> impl Strategy<Value = Value> {
            leaf().prop_recursive(2, 8, 3, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                    prop::collection::btree_map("[a-c]", inner, 0..3)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        fn object() -> impl Strategy<Value = Map<String, Value>> {
            prop::collection::vec(("[a-f]", value()), 0..8).prop_map(|kv| kv.into_iter().collect())
        }

        proptest! {
            #[test]
            fn same_cells_as_a_value_per_row(
                objects in prop::collection::vec((object(), any::<bool>()), 1..20),
            ) {
                let types = [
                    DataType::Boolean, DataType::Int32, DataType::Int64,
                    DataType::Float64, DataType::Utf8, DataType::Int64,
                ];
                let fields: Vec<(String, DataType)> = ["a", "b", "c", "d", "e", "f"]
                    .iter()
                    .zip(types)
                    .map(|(n, t)| (n.to_string(), t))
                    .collect();
                let cols = columns(fields, &[]);
                let texts: Vec<String> = objects
                    .iter()
                    .map(|(o, pretty)| {
                        let v = Value::Object(o.clone());
                        if *pretty { serde_json::to_string_pretty(&v) } else { serde_json::to_string(&v) }
                            .unwrap()
                    })
                    .collect();
                let values = BinaryArray::from(texts.iter().map(|t| Some(t.as_bytes())).collect::<Vec<_>>());
                let out = decode(&values, &cols, &[true; 6]);
                for (row, text) in texts.iter().enumerate() {
                    // As the old decoder saw it: parsed from the bytes.
                    let Ok(Value::Object(o)) = serde_json::from_str::<Value>(text) else {
                        panic!("{text} did not parse");
                    };
                    for (c, col) in cols.iter().enumerate() {
                        let want = old_cell(&col.data_type, o.get(&col.field));
                        let got = new_cell(&out[c], row);
                        let same = match (&want, &got) {
                            (Some(w), Some(g)) if col.data_type == DataType::Float64 => close(w, g),
                            _ => want == got,
                        };
                        prop_assert!(same, "row {} column {}: {:?} vs {:?} in {}", row, col.field, want, got, texts[row]);
                    }
                }
            }
        }
    }
}

//! `<base>.face`: the record that commits a face, one small JSON object.

use serde::{Deserialize, Serialize};

use super::ValueFormat;

/// What a face was built from, and what its Parquet file must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub version: u32,
    pub base_offset: i64,
    pub next_offset: i64,
    /// The `.log`'s size when the face was built.
    pub log_bytes: u64,
    pub parquet_bytes: u64,
    pub crc32c: u32,
    pub rows: u64,
    pub value_format: ValueFormat,
    /// Fields inference found beyond the column cap: not in this face.
    pub dropped_fields: usize,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    version: u32,
    base_offset: i64,
    next_offset: i64,
    log_bytes: u64,
    parquet_bytes: u64,
    crc32c: u32,
    rows: u64,
    /// "raw" or "json".
    value_format: String,
    /// The declared `karnak.value.schema`, or absent (inferred).
    value_schema: Option<String>,
    dropped_fields: usize,
}

impl Manifest {
    /// A record vouching for `parquet` (its length and CRC32C) as the raw
    /// face of `[base, next)`: what a test or fuzz target writes beside a
    /// file it made up, so the file reaches the Parquet reader.
    pub fn vouching_for(parquet: &[u8], base: i64, next: i64) -> Manifest {
        Manifest {
            version: super::FORMAT_VERSION,
            base_offset: base,
            next_offset: next,
            log_bytes: 0,
            parquet_bytes: parquet.len() as u64,
            crc32c: crc32c::crc32c(parquet),
            rows: 0,
            value_format: ValueFormat::Raw,
            dropped_fields: 0,
        }
    }

    pub fn encode(&self) -> String {
        let (format, schema) = match &self.value_format {
            ValueFormat::Raw => ("raw", None),
            ValueFormat::Json { declared } => ("json", declared.clone()),
        };
        let stored = Stored {
            version: self.version,
            base_offset: self.base_offset,
            next_offset: self.next_offset,
            log_bytes: self.log_bytes,
            parquet_bytes: self.parquet_bytes,
            crc32c: self.crc32c,
            rows: self.rows,
            value_format: format.into(),
            value_schema: schema,
            dropped_fields: self.dropped_fields,
        };
        // A struct of numbers and strings always serialises.
        serde_json::to_string(&stored).unwrap_or_default()
    }

    pub fn decode(text: &str) -> Result<Manifest, String> {
        let s: Stored = serde_json::from_str(text).map_err(|e| format!("face record: {e}"))?;
        let value_format = match (s.value_format.as_str(), s.value_schema) {
            ("raw", None) => ValueFormat::Raw,
            ("json", declared) => ValueFormat::Json { declared },
            (other, _) => return Err(format!("face record: value format {other:?}")),
        };
        Ok(Manifest {
            version: s.version,
            base_offset: s.base_offset,
            next_offset: s.next_offset,
            log_bytes: s.log_bytes,
            parquet_bytes: s.parquet_bytes,
            crc32c: s.crc32c,
            rows: s.rows,
            value_format,
            dropped_fields: s.dropped_fields,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_garbage_is_an_error() {
        for value_format in [
            ValueFormat::Raw,
            ValueFormat::Json { declared: None },
            ValueFormat::Json {
                declared: Some("a bigint,\n\"b\" text".into()),
            },
        ] {
            let m = Manifest {
                version: 2,
                base_offset: 100,
                next_offset: 200,
                log_bytes: 1 << 20,
                parquet_bytes: 12_345,
                crc32c: 0xdead_beef,
                rows: 100,
                value_format,
                dropped_fields: 3,
            };
            assert_eq!(Manifest::decode(&m.encode()), Ok(m));
        }
        for bad in ["", "{", "{}", "[1]", "{\"version\":2}"] {
            assert!(Manifest::decode(bad).is_err(), "{bad}");
        }
    }
}

//! How a topic's record values become typed columns for SQL, set by the
//! topic config `karnak.value.format`: the segment faces are built with
//! them, and the SQL gateway decodes the unsealed tail the same way.

pub mod json;

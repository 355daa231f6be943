//! Kafka wire protocol pieces Karnak owns, with no I/O.
//!
//! Typed request and response messages come from the `kafka-protocol` crate;
//! this crate adds what a broker needs around them: frame bounds, the one
//! table of APIs and versions we serve, a zero-copy view of v2 record batches
//! (validation and in-place offset assignment), and a Fetch response encoder
//! that leaves the records as file regions so they can be `sendfile`d; the
//! record codecs and a checked, borrowing decoder of the records inside a
//! batch ([`records`]); and the old request versions Kafka 4.0 dropped ([`legacy`]).

pub mod alloc;
pub mod api_versions;
pub mod codec;
pub mod control;
pub mod error;
pub mod fetch_response;
pub mod frame;
#[doc(hidden)]
pub mod fuzz;
pub mod legacy;
pub mod record_batch;
pub mod records;

pub use error::ProtocolError;
pub use kafka_protocol;

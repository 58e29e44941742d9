//! funnelhub's event contract: Avro schemas (`avro/*.avsc`), the Rust types that map 1:1
//! to them, a codec in the Confluent wire format, deterministic ids and the topic catalog.
//!
//! This crate does no I/O. Registering schemas and producing/consuming records is
//! `funnelhub-kafka`'s job.

pub mod catalog;
pub mod codec;
pub mod common;
pub mod control;
pub mod derived;
pub mod events;
pub mod identity;
pub mod ids;
pub mod privacy;
pub mod schema_set;
pub mod setup;
pub mod state;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod topics;

pub use catalog::{Catalog, Cleanup, StageId, Topic, TopicSpec};
pub use codec::{AvroRecord, Decoder};
pub use schema_set::{RecordSchema, SchemaSet};
pub use topics::Typed;

/// Version of the funnelhub event contract written into every envelope.
pub const SCHEMA_VERSION: i32 = 1;

/// Errors of this crate. None is retryable: bad bytes stay bad.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bundled or supplied schema is invalid.
    #[error("invalid schema: {0}")]
    Schema(String),
    /// Bytes are not in the Confluent wire format.
    #[error("not in the Confluent wire format: {0}")]
    Frame(String),
    /// A value does not fit its schema.
    #[error("avro encoding failed: {0}")]
    Encode(String),
    /// A body does not decode with its writer schema.
    #[error("avro decoding failed: {0}")]
    Decode(String),
}

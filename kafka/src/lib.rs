//! Kafka and schema-registry plumbing every funnelhub service calls: one way to configure
//! clients ([`client`]), create topics ([`admin`]) and put Avro on the wire ([`avro`]).

pub mod admin;
pub mod avro;
pub mod broker;
pub mod client;
pub mod config;
pub mod dlq;
pub mod follow;
pub mod producer;
pub mod replay;
pub mod stage;
pub mod suppressions;
#[cfg(feature = "testing")]
pub mod testing;
pub mod trace_context;

pub use avro::{DecodeError, SchemaRegistry, TopicCodec};
pub use config::{KafkaConfig, SchemaRegistryConfig};
pub use producer::{AckedProducer, SendError, Written};
pub use suppressions::Suppressions;

/// Errors of Kafka and registry plumbing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kafka client call failed.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// Creating topics failed for a reason other than "already exists".
    #[error("kafka admin: {0}")]
    Admin(String),
    /// The schema registry could not be reached or failed.
    #[error("schema registry: {0}")]
    Registry(String),
    /// The schema registry refused a schema (incompatible or invalid).
    #[error("schema registry refused the schema: {0}")]
    SchemaRejected(String),
    /// Encoding or decoding failed.
    #[error(transparent)]
    Codec(#[from] funnelhub_schemas::Error),
}

impl Error {
    /// Whether trying again later can succeed (broker or registry unreachable).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Kafka(e) => !matches!(e, rdkafka::error::KafkaError::ClientConfig(..)),
            Error::Registry(_) => true,
            Error::Admin(_) | Error::SchemaRejected(_) | Error::Codec(_) => false,
        }
    }
}

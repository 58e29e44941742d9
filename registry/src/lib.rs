//! A Confluent-compatible schema registry whose store is a Kafka topic.
//!
//! No Confluent-compatible registry can be installed on the development machines, so
//! funnelhub serves one itself (`funnelhub registry`). It speaks the REST subset that
//! Confluent's clients use ([`api`]), with Confluent's error codes, and stores schemas in a
//! `_schemas` topic in Confluent's own record format ([`state`], [`log`]), so ids survive
//! restarts. Production can use Confluent's registry instead: only the URL changes.

pub mod api;
pub mod compatibility;
pub mod config;
pub mod error;
pub mod log;
pub mod state;

use std::sync::Arc;

use funnelhub_kafka::KafkaConfig;
use funnelhub_runtime::RunningServer;

pub use compatibility::CompatibilityLevel;
pub use config::RegistryConfig;
pub use error::RegistryError;

/// Read the schemas topic to its end, then serve the API on `config.listen`.
pub async fn start(
    config: &RegistryConfig,
    kafka: &KafkaConfig,
) -> Result<RunningServer, RegistryError> {
    let log = log::SchemaLog::open(kafka, &config.topic).await?;
    let registry = Arc::new(api::Registry {
        log,
        default_level: config.default_compatibility,
    });
    let server = funnelhub_runtime::serve(config.listen, api::app(registry))
        .await
        .map_err(|e| RegistryError::Store(format!("cannot listen on {}: {e}", config.listen)))?;
    tracing::info!(addr = %server.addr(), topic = %config.topic, "schema registry listening");
    Ok(server)
}

/// A registry of one's own, for a test or a benchmark: any free local port, schemas kept
/// in `schemas_topic` on `kafka`'s broker, and the catalog's topics (under `kafka`'s
/// prefix) created. Returns the server and a client of it.
pub async fn start_private(
    kafka: &KafkaConfig,
    schemas_topic: &str,
) -> Result<(RunningServer, funnelhub_kafka::SchemaRegistry), RegistryError> {
    use funnelhub_kafka::admin::{catalog_requests, ensure_topics};
    ensure_topics(kafka, &catalog_requests(kafka))
        .await
        .map_err(|e| RegistryError::Store(format!("creating topics: {e}")))?;
    let server = start(
        &RegistryConfig {
            listen: ([127, 0, 0, 1], 0).into(),
            topic: schemas_topic.to_owned(),
            ..RegistryConfig::default()
        },
        kafka,
    )
    .await?;
    let client = funnelhub_kafka::SchemaRegistry::new(&funnelhub_kafka::SchemaRegistryConfig {
        url: server.url(),
    })
    .map_err(|e| RegistryError::Store(e.to_string()))?;
    Ok((server, client))
}

/// A test's own corner of the local stack: a unique topic prefix on the test broker
/// (`funnelhub_kafka::testing::kafka_config`), its catalog topics and a private registry.
/// Installs the process's metrics recorder first (before anything counts) and test
/// logging (`RUST_LOG=info`).
#[cfg(feature = "testing")]
pub async fn test_stack(
    test: &str,
) -> (KafkaConfig, RunningServer, funnelhub_kafka::SchemaRegistry) {
    use funnelhub_kafka::testing::{kafka_config, unique};
    funnelhub_runtime::prometheus();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let kafka = kafka_config(test);
    let (server, registry) = start_private(&kafka, &unique("_schemas"))
        .await
        .expect("the test's topics and schema registry");
    (kafka, server, registry)
}

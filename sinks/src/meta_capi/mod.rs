//! The Meta Conversions API sink (`funnelhub sink capi`): `capi.requests` → Meta's Graph
//! API `/{version}/{pixel_id}/events`, with every outcome audited in `capi.attempts` and
//! every permanent failure in `dlq`. See `docs/meta-capi.md`.

pub mod config;
pub mod graph;
pub mod payload;
pub mod sink;

use std::sync::Arc;

use funnelhub_kafka::admin::{catalog_requests, ensure_topics};
use funnelhub_kafka::dlq::DeadLetters;
pub use funnelhub_kafka::stage::StartError;
use funnelhub_kafka::stage::{self, RunningStage, StageSettings};
use funnelhub_kafka::{KafkaConfig, SchemaRegistry, TopicCodec};
use funnelhub_schemas::topics;
use funnelhub_schemas::{Catalog, StageId};
use funnelhub_tenants::ControlPlane;

pub use config::{CapiConfig, MetaAccess};
pub use graph::GraphClient;

/// Create missing topics, register schemas and join the sink's consumer group.
/// `control`: each tenant's pixel and token, live (tenants without one have their
/// requests dead-lettered, not dropped); `suppressions`: the purged people, never sent.
pub async fn start(
    kafka: &KafkaConfig,
    registry: &SchemaRegistry,
    config: &CapiConfig,
    control: &ControlPlane,
) -> Result<RunningStage, StartError> {
    config.validate().map_err(StartError::Config)?;
    ensure_topics(kafka, &catalog_requests(kafka)).await?;
    let catalog = Catalog::new(&kafka.topic_prefix);
    let attempts = TopicCodec::of(registry, &catalog, topics::CAPI_ATTEMPTS).await?;
    let sink = sink::CapiSink {
        requests: TopicCodec::of(registry, &catalog, topics::CAPI_REQUESTS).await?,
        attempts_topic: Arc::from(attempts.topic()),
        attempts,
        dead_letters: DeadLetters::new(
            StageId::Capi.name(),
            TopicCodec::of(registry, &catalog, topics::DLQ).await?,
        ),
        graph: GraphClient::new(&config.graph_url, &config.api_version, config.timeout())
            .map_err(StartError::Config)?,
        tenants: control.tenants.clone(),
        limiter: sink::CapiSink::limiter(config),
        config: config.clone(),
        suppressions: control.suppressions.clone(),
    };
    let settings = StageSettings {
        group: config.group.clone(),
        max_batch: config.batch_size,
        ..StageSettings::default()
    };
    stage::spawn_declared(kafka, StageId::Capi, Arc::new(sink), settings)
}

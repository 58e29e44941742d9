//! The ClickHouse sink (`funnelhub sink clickhouse`): every analysed topic into idempotent
//! tables analysts query, created by versioned migrations at start-up. See
//! `docs/data-model.md`.

pub mod rows;
pub mod sink;

use std::sync::Arc;

use funnelhub_kafka::admin::{catalog_requests, ensure_topics};
use funnelhub_kafka::dlq::DeadLetters;
use funnelhub_kafka::stage::{self, RunningStage, StageSettings, StartError};
use funnelhub_kafka::{KafkaConfig, SchemaRegistry, TopicCodec};
use funnelhub_schemas::topics;
use funnelhub_schemas::{Catalog, StageId};
use funnelhub_tenants::ControlPlane;

use funnelhub_clickhouse::{retention, ClickHouseConfig, Server};

/// Apply the migrations, then join the sink's consumer group on every stored topic.
/// `control`: each tenant's retention, and the purged people, never written.
pub async fn start(
    kafka: &KafkaConfig,
    registry: &SchemaRegistry,
    config: &ClickHouseConfig,
    control: &ControlPlane,
) -> Result<(RunningStage, Server), StartError> {
    config.validate().map_err(StartError::Config)?;
    let (server, applied) = Server::migrate(config)
        .await
        .map_err(|e| StartError::Config(format!("ClickHouse at {}: {e}", config.url)))?;
    tracing::info!(version = %server.version_text, migrations = ?applied, "clickhouse ready");
    if config.retention_every_secs > 0 {
        // Lives as long as the process (deletes are idempotent; any member may issue them).
        retention::spawn(
            server.client.clone(),
            config.clone(),
            control.tenants.clone(),
        );
    }
    ensure_topics(kafka, &catalog_requests(kafka)).await?;
    let catalog = Catalog::new(&kafka.topic_prefix);
    let name = |topic| catalog.name(topic);
    let codecs = sink::Codecs {
        tracking: TopicCodec::of(registry, &catalog, topics::RAW_TRACKING).await?,
        orders: TopicCodec::of(registry, &catalog, topics::RAW_ORDERS).await?,
        onboarding: TopicCodec::of(registry, &catalog, topics::RAW_ONBOARDING).await?,
        deduped: TopicCodec::of(registry, &catalog, topics::DEDUPED).await?,
        transitions: TopicCodec::of(registry, &catalog, topics::FUNNEL_TRANSITIONS).await?,
        tickets: TopicCodec::of(registry, &catalog, topics::OPS_TICKETS).await?,
        matches: TopicCodec::of(registry, &catalog, topics::MATCH_RESULTS).await?,
        requests: TopicCodec::of(registry, &catalog, topics::CAPI_REQUESTS).await?,
        attempts: TopicCodec::of(registry, &catalog, topics::CAPI_ATTEMPTS).await?,
        dlq: TopicCodec::of(registry, &catalog, topics::DLQ).await?,
        setup_actions: TopicCodec::of(registry, &catalog, topics::SETUP_ACTIONS).await?,
        raw_webhooks: TopicCodec::of(registry, &catalog, topics::RAW_WEBHOOKS).await?,
        setup_messages: TopicCodec::of(registry, &catalog, topics::SETUP_MESSAGES).await?,
    };
    let sink = sink::ClickHouseSink {
        client: server.client.clone(),
        dead_letters: DeadLetters::new(
            StageId::ClickHouse.name(),
            TopicCodec::of(registry, &catalog, topics::DLQ).await?,
        ),
        codecs,
        topics: sink::STORED.iter().map(|t| (name(*t), *t)).collect(),
        linger: config.linger(),
        insert_timeout: config.insert_timeout(),
        suppressions: control.suppressions.clone(),
    };
    let settings = StageSettings {
        group: config.group.clone(),
        max_batch: config.batch_rows,
        ..StageSettings::default()
    };
    Ok((
        stage::spawn_declared(kafka, StageId::ClickHouse, Arc::new(sink), settings)?,
        server,
    ))
}

//! Stateful consumers (`funnelhub process`): replay-safe dedupe ([`dedupe`]),
//! out-of-order-safe funnel stages with ops tickets ([`funnel`]) and conversion matching
//! with CAPI dispatch requests ([`matching`]). Each runs as a Kafka
//! consumer group on [`funnelhub_kafka::stage`]: scale out by starting more processes,
//! state follows the partitions through their state topics. See `docs/processors.md`.

pub mod config;
pub mod dedupe;
pub mod funnel;
pub mod matching;
pub mod retention;
#[cfg(feature = "testing")]
pub mod testing;

use std::sync::Arc;

use funnelhub_kafka::admin::{catalog_requests, ensure_topics};
use funnelhub_kafka::dlq::DeadLetters;
pub use funnelhub_kafka::stage::StartError;
use funnelhub_kafka::stage::{self, RunningStage, StageSettings};
use funnelhub_kafka::{KafkaConfig, SchemaRegistry, TopicCodec};
use funnelhub_schemas::topics;
use funnelhub_schemas::{Catalog, StageId, Topic};
pub use funnelhub_tenants::ControlPlane;

pub use config::ProcessConfig;

/// Which stages a process runs (all by default; split them to scale them apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stages {
    All,
    Dedupe,
    Funnel,
    /// The match router and the matcher.
    Match,
}

/// The stages running in this process.
#[derive(Debug)]
pub struct Processors {
    stages: Vec<RunningStage>,
}

impl Processors {
    /// Names of the running stages.
    pub fn names(&self) -> Vec<&'static str> {
        self.stages.iter().map(RunningStage::name).collect()
    }

    /// Handles on the stages' stalls (for `/readyz`).
    pub fn health(&self) -> Vec<stage::StageHealth> {
        self.stages.iter().map(RunningStage::health).collect()
    }

    /// Whether a stage stopped on a fatal error.
    pub fn has_failed(&self) -> bool {
        self.stages.iter().any(RunningStage::has_stopped)
    }

    /// Finish the batches in hand, commit, leave the groups.
    pub async fn stop(self) -> Result<(), String> {
        let mut failures = Vec::new();
        for stage in self.stages {
            let name = stage.name();
            if let Err(e) = stage.stop().await {
                failures.push(format!("{name}: {e}"));
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures.join("; "))
        }
    }
}

/// The consumer group of processor stage `stage` (`dedupe`, `funnel`, `match-route`,
/// `match`).
pub fn group_of(config: &ProcessConfig, stage: &str) -> String {
    format!("{}-{stage}", config.group_prefix)
}

/// The processor stages of the stage table.
pub const STAGES: [StageId; 4] = [
    StageId::Dedupe,
    StageId::Funnel,
    StageId::MatchRoute,
    StageId::Match,
];

/// Each processor stage: its name, consumer group and input topics (what a replay
/// resets), from the stage table.
pub fn stage_groups(
    config: &ProcessConfig,
    catalog: &Catalog,
) -> Vec<(&'static str, String, Vec<String>)> {
    STAGES
        .iter()
        .map(|id| {
            (
                id.name(),
                group_of(config, id.name()),
                id.inputs().iter().map(|t| catalog.name(*t)).collect(),
            )
        })
        .collect()
}

/// The dedupe stage, its schemas registered (`control`: the suppressions and tenants it
/// follows).
pub async fn dedupe_stage(
    registry: &SchemaRegistry,
    catalog: &Catalog,
    config: &ProcessConfig,
    control: &ControlPlane,
) -> Result<Arc<dedupe::DedupeStage>, funnelhub_kafka::Error> {
    Ok(Arc::new(dedupe::DedupeStage {
        window_ms: config.dedupe_window_ms(),
        tracking: TopicCodec::of(registry, catalog, topics::RAW_TRACKING).await?,
        orders: TopicCodec::of(registry, catalog, topics::RAW_ORDERS).await?,
        onboarding: TopicCodec::of(registry, catalog, topics::RAW_ONBOARDING).await?,
        deduped: TopicCodec::of(registry, catalog, topics::DEDUPED).await?,
        dead_letters: dead_letters(registry, catalog, StageId::Dedupe).await?,
        state: TopicCodec::of(registry, catalog, topics::DEDUPE_STATE).await?,
        suppressions: control.suppressions.clone(),
        tenants: control.tenants.clone(),
    }))
}

/// The funnel stage, its schemas registered.
pub async fn funnel_stage(
    registry: &SchemaRegistry,
    catalog: &Catalog,
    config: &ProcessConfig,
    control: &ControlPlane,
) -> Result<Arc<funnel::FunnelStageProcessor>, funnelhub_kafka::Error> {
    Ok(Arc::new(funnel::FunnelStageProcessor {
        ttl_ms: config.session_ttl_ms(),
        deduped: TopicCodec::of(registry, catalog, topics::DEDUPED).await?,
        transitions: TopicCodec::of(registry, catalog, topics::FUNNEL_TRANSITIONS).await?,
        tickets: TopicCodec::of(registry, catalog, topics::OPS_TICKETS).await?,
        dead_letters: dead_letters(registry, catalog, StageId::Funnel).await?,
        state: TopicCodec::of(registry, catalog, topics::FUNNEL_STATE).await?,
        suppressions: control.suppressions.clone(),
        tenants: control.tenants.clone(),
    }))
}

/// The matcher stage, its schemas registered.
pub async fn match_stage(
    registry: &SchemaRegistry,
    catalog: &Catalog,
    config: &ProcessConfig,
    control: &ControlPlane,
) -> Result<Arc<matching::matcher::MatchStage>, funnelhub_kafka::Error> {
    Ok(Arc::new(matching::matcher::MatchStage {
        config: Arc::new(config.matching.clone()),
        inputs: TopicCodec::of(registry, catalog, topics::MATCHING_INPUTS).await?,
        results: TopicCodec::of(registry, catalog, topics::MATCH_RESULTS).await?,
        requests: TopicCodec::of(registry, catalog, topics::CAPI_REQUESTS).await?,
        dead_letters: dead_letters(registry, catalog, StageId::Match).await?,
        state: TopicCodec::of(registry, catalog, topics::MATCH_STATE).await?,
        suppressions: control.suppressions.clone(),
        tenants: control.tenants.clone(),
    }))
}

async fn dead_letters(
    registry: &SchemaRegistry,
    catalog: &Catalog,
    stage: StageId,
) -> Result<Arc<DeadLetters>, funnelhub_kafka::Error> {
    Ok(Arc::new(DeadLetters::new(
        stage.name(),
        TopicCodec::of(registry, catalog, topics::DLQ).await?,
    )))
}

/// Create missing topics, register schemas and join the consumer groups. `control`: the
/// suppression list every stage skips, and the tenants (the matcher's pixels), live.
pub async fn start(
    kafka: &KafkaConfig,
    registry: &SchemaRegistry,
    config: &ProcessConfig,
    which: Stages,
    control: &ControlPlane,
) -> Result<Processors, StartError> {
    config.validate().map_err(StartError::Config)?;
    ensure_topics(kafka, &catalog_requests(kafka)).await?;
    let catalog = &Catalog::new(&kafka.topic_prefix);
    // `control`'s suppressions are read before any partition is restored or processed
    // (the caller read the control topics): nothing purged comes back.
    let mut stages = Vec::new();
    let settings = |stage: StageId| StageSettings {
        group: group_of(config, stage.name()),
        max_batch: config.max_batch,
        ..StageSettings::default()
    };
    if matches!(which, Stages::All | Stages::Dedupe) {
        let stage = dedupe_stage(registry, catalog, config, control).await?;
        stages.push(stage::spawn_declared(
            kafka,
            StageId::Dedupe,
            stage,
            settings(StageId::Dedupe),
        )?);
    }
    if matches!(which, Stages::All | Stages::Funnel) {
        let stage = funnel_stage(registry, catalog, config, control).await?;
        stages.push(stage::spawn_declared(
            kafka,
            StageId::Funnel,
            stage,
            settings(StageId::Funnel),
        )?);
    }
    if matches!(which, Stages::All | Stages::Match) {
        let route = Arc::new(matching::route::RouteStage {
            deduped: catalog.name(Topic::Deduped),
            inputs: Arc::from(catalog.name(Topic::MatchingInputs)),
            dead_letters: dead_letters(registry, catalog, StageId::MatchRoute).await?,
        });
        // The router copies values: the inputs subject must know the schema too.
        TopicCodec::of(registry, catalog, topics::MATCHING_INPUTS).await?;
        stages.push(stage::spawn_declared(
            kafka,
            StageId::MatchRoute,
            route,
            settings(StageId::MatchRoute),
        )?);
        let matcher = match_stage(registry, catalog, config, control).await?;
        stages.push(stage::spawn_declared(
            kafka,
            StageId::Match,
            matcher,
            settings(StageId::Match),
        )?);
    }
    Ok(Processors { stages })
}

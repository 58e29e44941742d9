//! The suppression list (erasure by identifier, `docs/privacy.md`): topic
//! `privacy.suppressions`, read whole by every process that handles personal data and
//! followed while it runs ([`crate::follow`]): every member of every stage knows every
//! purge, and a stage that starts after a purge never processes a record of a purged
//! person, replays included.

use std::sync::{Arc, RwLock};

use funnelhub_schemas::privacy::{SuppressionList, Tied};
use funnelhub_schemas::Catalog;

use crate::follow::{self, Follower};
use crate::{Error, KafkaConfig, SchemaRegistry, TopicCodec};

/// The suppression list, shared by every stage of a process (cheap to clone).
#[derive(Debug, Clone, Default)]
pub struct Suppressions {
    shared: Arc<Shared>,
    /// Stops the reader when the last clone is dropped.
    _reader: Option<Follower>,
}

#[derive(Debug, Default)]
struct Shared {
    list: RwLock<SuppressionList>,
}

impl Suppressions {
    /// An empty list that never grows (tests, tools that handle no personal data).
    pub fn none() -> Suppressions {
        Suppressions::default()
    }

    /// Whether `record` is tied to a purged person.
    pub fn covers(&self, record: &impl Tied) -> bool {
        let list = self.shared.list.read().expect("suppression list lock");
        !list.is_empty() && list.covers(&record.ties())
    }

    /// Whether stage `stage` must skip `record` (tied to a purged person); skips are
    /// counted in `funnelhub_privacy_suppressed_total{stage}`.
    pub fn skip(&self, stage: &'static str, record: &impl Tied) -> bool {
        let covered = self.covers(record);
        if covered {
            metrics::counter!("funnelhub_privacy_suppressed_total", "stage" => stage).increment(1);
        }
        covered
    }

    /// Take the events of purged people out of `events` (a record shared by several
    /// people, like one HTTP request to Meta).
    pub fn redact_events(&self, tenant_id: &str, events: &mut Vec<String>) {
        let list = self.shared.list.read().expect("suppression list lock");
        if !list.is_empty() {
            list.redact_events(tenant_id, events);
        }
    }

    /// How many purges were read; grows with each new one (a stage holding state compares
    /// it to know when to sweep).
    pub fn generation(&self) -> u64 {
        self.shared
            .list
            .read()
            .expect("suppression list lock")
            .len() as u64
    }

    /// Read `privacy.suppressions` to its current end, then keep following it.
    pub async fn follow(
        kafka: &KafkaConfig,
        registry: &SchemaRegistry,
    ) -> Result<Suppressions, Error> {
        let catalog = Catalog::new(&kafka.topic_prefix);
        let codec =
            TopicCodec::of(registry, &catalog, funnelhub_schemas::topics::SUPPRESSIONS).await?;
        let shared = Arc::new(Shared::default());
        let list = shared.clone();
        let follower = follow::follow(kafka, codec, "suppressions", move |_key, value| {
            if let Some(suppression) = value {
                let mut list = list.list.write().expect("suppression list lock");
                list.add(suppression);
                metrics::gauge!("funnelhub_privacy_suppressions").set(list.len() as f64);
            }
        })
        .await?;
        Ok(Suppressions {
            shared,
            _reader: Some(follower),
        })
    }
}

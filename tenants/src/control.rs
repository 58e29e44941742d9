//! What every service of one process follows: the tenants and the suppression list. The
//! CLI builds one [`ControlPlane`] per process and hands it to each service it starts, so
//! `funnelhub up` reads each compacted topic once.

use funnelhub_kafka::admin::{catalog_requests, ensure_topics};
use funnelhub_kafka::{Error, KafkaConfig, SchemaRegistry, Suppressions};

use crate::config::TenantConfig;
use crate::directory::TenantDirectory;
use crate::sealing::Keyring;

/// The tenants (live) and the purged people (live).
#[derive(Debug, Clone, Default)]
pub struct ControlPlane {
    pub tenants: TenantDirectory,
    pub suppressions: Suppressions,
}

impl ControlPlane {
    /// Fixed tenants, no suppression (tests, benchmarks).
    pub fn fixed(tenants: impl IntoIterator<Item = TenantConfig>) -> ControlPlane {
        ControlPlane {
            tenants: TenantDirectory::fixed(tenants),
            suppressions: Suppressions::none(),
        }
    }

    /// Create missing topics, then read `control.tenants` (over `seeds`, the configuration
    /// file's tenants) and `privacy.suppressions` to their ends and keep following both.
    pub async fn follow(
        kafka: &KafkaConfig,
        registry: &SchemaRegistry,
        seeds: Vec<TenantConfig>,
        keys: Keyring,
    ) -> Result<ControlPlane, Error> {
        ensure_topics(kafka, &catalog_requests(kafka)).await?;
        Ok(ControlPlane {
            tenants: TenantDirectory::follow(kafka, registry, seeds, keys).await?,
            suppressions: Suppressions::follow(kafka, registry).await?,
        })
    }
}

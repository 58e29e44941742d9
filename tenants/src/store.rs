//! Writing tenants: `funnelhub tenants add|set|rotate-key` and setup's autoconfigure.
//! A write is one record on `control.tenants`, acknowledged by the broker, then read back
//! through the writer's own [`TenantDirectory`] so the caller sees what every service will.

use std::time::Duration;

use funnelhub_kafka::{AckedProducer, KafkaConfig, SchemaRegistry, TopicCodec};
use funnelhub_schemas::control::TenantRecord;
use funnelhub_schemas::Catalog;

use crate::config::TenantConfig;
use crate::directory::TenantDirectory;
use crate::record;
use crate::sealing::{Keyring, SealError};

const DEADLINE: Duration = Duration::from_secs(10);

/// Why a tenant could not be written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error(transparent)]
    Kafka(#[from] funnelhub_kafka::Error),
    #[error("writing tenant {0}: {1}")]
    Send(String, String),
    #[error("tenant {0} was written but not read back within {1:?}")]
    NotVisible(String, Duration),
}

/// Writes tenants to the control topic.
#[derive(Debug, Clone)]
pub struct TenantStore {
    producer: AckedProducer,
    codec: std::sync::Arc<TopicCodec<TenantRecord>>,
    keys: Keyring,
    directory: TenantDirectory,
}

impl TenantStore {
    /// A store writing what `directory` (following the same topic) reads.
    pub async fn connect(
        kafka: &KafkaConfig,
        registry: &SchemaRegistry,
        keys: Keyring,
        directory: TenantDirectory,
    ) -> Result<TenantStore, StoreError> {
        let catalog = Catalog::new(&kafka.topic_prefix);
        let tenants = funnelhub_schemas::topics::TENANTS;
        Ok(TenantStore {
            producer: AckedProducer::new(kafka, "funnelhub-tenants", DEADLINE)?,
            codec: std::sync::Arc::new(TopicCodec::of(registry, &catalog, tenants).await?),
            keys,
            directory,
        })
    }

    /// The directory this store reads back through.
    pub fn directory(&self) -> &TenantDirectory {
        &self.directory
    }

    /// Write `tenant` as its next revision; returns the revision once applied here.
    pub async fn put(&self, tenant: &TenantConfig, updated_by: &str) -> Result<i64, StoreError> {
        let revision = self
            .directory
            .record(&tenant.id)
            .map_or(1, |r| r.revision + 1);
        let record = record::to_record(tenant, revision, updated_by, &self.keys)?;
        self.write(&record).await?;
        Ok(revision)
    }

    /// Re-wrap every tenant's data key with the active key (`rotate-key`); returns the
    /// tenants rewritten with the key they had. Tenants already on the active key are left.
    pub async fn rotate(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut rotated = Vec::new();
        for mut record in self.directory.records() {
            let Some(sealed) = self.keys.rewrap(&record.secrets)? else {
                continue;
            };
            let from = std::mem::replace(&mut record.secrets, sealed).key_id;
            record.revision += 1;
            record.updated_at = chrono::Utc::now().timestamp_millis();
            record.updated_by = format!("rotate-key {from} -> {}", record.secrets.key_id);
            self.write(&record).await?;
            rotated.push((record.tenant_id, from));
        }
        Ok(rotated)
    }

    async fn write(&self, record: &TenantRecord) -> Result<(), StoreError> {
        let bytes = self.codec.encode(record)?;
        self.producer
            .send(
                self.codec.topic(),
                record.tenant_id.as_bytes(),
                Some(&bytes),
            )
            .await
            .map_err(|e| StoreError::Send(record.tenant_id.clone(), e.to_string()))?;
        if !self
            .directory
            .wait_for(&record.tenant_id, record.revision, DEADLINE)
            .await
        {
            return Err(StoreError::NotVisible(record.tenant_id.clone(), DEADLINE));
        }
        Ok(())
    }
}

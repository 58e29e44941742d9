//! What the sink tests share: a unique topic prefix on the real broker, the embedded
//! schema registry, the Graph API emulator, dispatch requests to write, and the sink's
//! output topics read back whole.

#![allow(dead_code)]

use std::time::Duration;

use funnelhub_emulators::{Faults, MetaGraphEmulator};
use funnelhub_kafka::testing::{read_records, record_count};
use funnelhub_kafka::{KafkaConfig, SchemaRegistry, TopicCodec};
use funnelhub_runtime::RunningServer;
use funnelhub_schemas::derived::CapiDispatchRequest;
use funnelhub_schemas::{AvroRecord, Catalog, Topic};
use funnelhub_sinks::meta_capi::CapiConfig;
use funnelhub_sinks::testing::{dispatch_requests, test_emulator, write_requests, TEST_TENANTS};

pub const WAIT: Duration = Duration::from_secs(90);

pub struct Harness {
    pub kafka: KafkaConfig,
    pub registry: SchemaRegistry,
    pub registry_url: String,
    pub catalog: Catalog,
    pub emulator: MetaGraphEmulator,
    pub config: CapiConfig,
    _server: RunningServer,
}

impl Harness {
    pub async fn new(name: &str) -> Harness {
        let (kafka, server, registry) = funnelhub_registry::test_stack(name).await;
        let emulator = test_emulator(Faults::default()).await;
        let config = CapiConfig {
            graph_url: emulator.url(),
            group: kafka.topic_prefix.clone(),
            linger_ms: 50,
            timeout_ms: 1_000,
            backoff_base_ms: 10,
            backoff_max_ms: 200,
            max_attempts: 30,
            requests_per_second: 1_000,
            ..CapiConfig::default()
        };
        Harness {
            catalog: Catalog::new(&kafka.topic_prefix),
            registry_url: server.url(),
            kafka,
            registry,
            emulator,
            config,
            _server: server,
        }
    }

    /// Write `requests` to `capi.requests` as the matcher does.
    pub async fn write(&self, requests: &[CapiDispatchRequest]) {
        write_requests(&self.kafka, &self.registry, requests)
            .await
            .expect("written");
    }

    /// Every record of `topic` written so far, decoded.
    pub async fn read_all<T: AvroRecord + Clone>(&self, topic: Topic) -> Vec<T> {
        let name = self.catalog.name(topic);
        let codec = TopicCodec::<T>::register(&self.registry, &name)
            .await
            .expect("codec");
        let count = record_count(&self.kafka, &name);
        let mut out = Vec::with_capacity(count);
        for (_, value) in read_records(&self.kafka, &name, count, WAIT).await {
            out.push(codec.decode(&value).await.expect("decodes"));
        }
        out
    }

    /// Wait until the emulator holds `count` distinct events.
    pub async fn until_received(&self, count: usize) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let seen = self.emulator.counts().distinct_events;
            if seen >= count {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the emulator has {seen} of {count} events"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// `n` valid requests for `tenant` (and its pixel).
pub fn requests(tenant: &str, n: usize) -> Vec<CapiDispatchRequest> {
    let pixel = TEST_TENANTS
        .iter()
        .find(|(t, _)| *t == tenant)
        .map_or("999", |(_, p)| p);
    dispatch_requests(tenant, pixel, n)
}

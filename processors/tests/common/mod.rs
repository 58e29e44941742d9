//! The harness the processor tests share: a unique topic prefix, the embedded schema
//! registry, the processors started as `funnelhub process` starts them, and metrics read
//! from the process-wide recorder (each test binary is its own process).

#![allow(dead_code)]

use std::time::Duration;

use funnelhub_kafka::testing::read_records;
use funnelhub_kafka::{KafkaConfig, SchemaRegistry, TopicCodec};
use funnelhub_processors::{ControlPlane, ProcessConfig, Processors, Stages};
use funnelhub_runtime::RunningServer;
use funnelhub_schemas::{AvroRecord, Catalog, Topic};

const WAIT: Duration = Duration::from_secs(60);

pub struct Harness {
    pub kafka: KafkaConfig,
    pub registry: SchemaRegistry,
    pub catalog: Catalog,
    pub config: ProcessConfig,
    /// Tenants (the matcher's pixels) and suppressions the processors follow.
    pub control: ControlPlane,
    _server: RunningServer,
}

impl Harness {
    pub async fn new(name: &str) -> Harness {
        let (kafka, server, registry) = funnelhub_registry::test_stack(name).await;
        Harness {
            catalog: Catalog::new(&kafka.topic_prefix),
            config: ProcessConfig {
                group_prefix: kafka.topic_prefix.clone(),
                ..ProcessConfig::default()
            },
            control: ControlPlane::default(),
            kafka,
            registry,
            _server: server,
        }
    }

    pub async fn start(&self) -> Processors {
        funnelhub_processors::start(
            &self.kafka,
            &self.registry,
            &self.config,
            Stages::All,
            &self.control,
        )
        .await
        .expect("processors start")
    }

    pub async fn read<T: AvroRecord + Clone>(&self, topic: Topic, count: usize) -> Vec<T> {
        let codec = TopicCodec::<T>::register(&self.registry, &self.catalog.name(topic))
            .await
            .expect("codec");
        let mut out = Vec::new();
        for (_, value) in read_records(&self.kafka, codec.topic(), count, WAIT).await {
            out.push(codec.decode(&value).await.expect("decodes"));
        }
        out
    }
}

/// Sum of a Prometheus counter's series whose labels contain `labels`.
pub fn counter(name: &str, labels: &str) -> u64 {
    funnelhub_runtime::counter_sum(name, labels)
}

pub async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for {what}; metrics:\n{}",
            funnelhub_runtime::prometheus()
                .render()
                .lines()
                .filter(|l| l.starts_with("funnelhub_") && !l.contains("_bucket"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

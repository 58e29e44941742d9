//! Helpers for tests that run against the real local stack (`scripts/stack up`).
//! Every test gets unique topic names, so tests run in parallel and never see each
//! other's records.

use crate::KafkaConfig;

/// Kafka config for tests: `FUNNELHUB_TEST_BROKERS` or the local stack's broker, with a
/// unique topic prefix.
pub fn kafka_config(test: &str) -> KafkaConfig {
    KafkaConfig {
        brokers: std::env::var("FUNNELHUB_TEST_BROKERS")
            .unwrap_or_else(|_| "127.0.0.1:9092".into()),
        topic_prefix: unique(test),
        partitions: Some(3),
        ..KafkaConfig::default()
    }
}

/// `name` plus a random suffix.
pub fn unique(name: &str) -> String {
    format!("test-{name}-{}", uuid::Uuid::new_v4().simple())
}

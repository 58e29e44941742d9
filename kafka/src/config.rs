//! Configuration shared by every Kafka client and schema-registry client.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How to reach the Kafka cluster and how to name and create topics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// `bootstrap.servers`: comma-separated `host:port` list.
    pub brokers: String,
    /// Prefix of every topic name: `{prefix}.raw.tracking`...
    pub topic_prefix: String,
    /// Replication factor of topics funnelhub creates (1 locally, 3 on a cluster).
    pub replication_factor: i32,
    /// Partitions of topics funnelhub creates; unset keeps the catalog's default.
    pub partitions: Option<i32>,
    /// Extra librdkafka properties for every client (e.g. `security.protocol`).
    pub client_properties: BTreeMap<String, String>,
    /// Extra librdkafka properties for consumers only, on top of `client_properties`
    /// (e.g. `fetch.wait.max.ms`, which producers would warn about).
    pub consumer_properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            topic_prefix: "funnelhub".into(),
            replication_factor: 1,
            partitions: None,
            client_properties: BTreeMap::new(),
            consumer_properties: BTreeMap::new(),
        }
    }
}

/// How to reach a Confluent-compatible schema registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchemaRegistryConfig {
    /// Base URL, e.g. `http://127.0.0.1:8081` (funnelhub's own) or Confluent's.
    pub url: String,
}

impl Default for SchemaRegistryConfig {
    fn default() -> Self {
        SchemaRegistryConfig {
            url: "http://127.0.0.1:8081".into(),
        }
    }
}

//! The `_schemas` topic as the registry's durable store.
//!
//! One partition, compacted, never expiring. A background task reads it from the start
//! and folds every record into [`State`]; nothing else writes the state. A write appends a
//! record (idempotent producer, `acks=all`) and returns once the reader has folded it in,
//! so a request that got an id is durable and visible to the next request.
//!
//! Writes are serialized within a process and start by catching up with the end of the
//! log, so instances that share a topic converge. As with Confluent's registry (which
//! elects one leader for writes), send writes to one instance; any instance can serve
//! reads.

use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use funnelhub_kafka::admin::{ensure_topics, TopicRequest};
use funnelhub_kafka::{client, AckedProducer, KafkaConfig};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::Producer;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::Serialize;
use tokio::sync::{watch, Mutex, MutexGuard};
use tokio::task::JoinHandle;

use crate::error::RegistryError;
use crate::state::{LogKey, State};

const TIMEOUT: Duration = Duration::from_secs(15);

/// The log, its reader task and the state it builds.
pub struct SchemaLog {
    topic: String,
    producer: AckedProducer,
    state: Arc<RwLock<State>>,
    /// Offset of the next record the reader will fold in.
    next_offset: watch::Receiver<i64>,
    writer: Mutex<()>,
    reader: JoinHandle<()>,
}

impl std::fmt::Debug for SchemaLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaLog")
            .field("topic", &self.topic)
            .field("next_offset", &*self.next_offset.borrow())
            .finish_non_exhaustive()
    }
}

impl Drop for SchemaLog {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl SchemaLog {
    /// Create the topic if needed, read it to the end, and keep reading it.
    pub async fn open(kafka: &KafkaConfig, topic: &str) -> Result<Self, RegistryError> {
        let store = |e: funnelhub_kafka::Error| RegistryError::Store(e.to_string());
        ensure_topics(
            kafka,
            &[TopicRequest {
                name: topic.to_owned(),
                partitions: 1,
                configs: vec![
                    ("cleanup.policy", "compact".into()),
                    ("retention.ms", "-1".into()),
                ],
            }],
        )
        .await
        .map_err(store)?;
        let producer = AckedProducer::new(kafka, "funnelhub-registry", TIMEOUT).map_err(store)?;
        // A group id is required by the client but never used: the partition is assigned
        // by hand and no offset is ever committed.
        // A write waits for the reader to see it: do not let fetches idle.
        let consumer: StreamConsumer = client::consumer(
            kafka,
            "funnelhub-registry-reader",
            "funnelhub-registry-reader",
            &[("fetch.wait.max.ms", "10")],
        )
        .map_err(store)?;
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(topic, 0, Offset::Beginning)
            .map_err(|e| RegistryError::Store(e.to_string()))?;
        consumer
            .assign(&assignment)
            .map_err(|e| RegistryError::Store(e.to_string()))?;

        let state = Arc::new(RwLock::new(State::default()));
        let (next_tx, next_offset) = watch::channel(0);
        let reader = tokio::spawn(read_forever(consumer, state.clone(), next_tx));
        let log = SchemaLog {
            topic: topic.to_owned(),
            producer,
            state,
            next_offset,
            writer: Mutex::new(()),
            reader,
        };
        log.catch_up().await?;
        Ok(log)
    }

    /// Read access to the state.
    pub fn state(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().expect("state lock not poisoned")
    }

    /// Take the write lock and catch up with the end of the log, so decisions are made on
    /// everything any instance wrote.
    pub async fn begin_write(&self) -> Result<MutexGuard<'_, ()>, RegistryError> {
        let guard = self.writer.lock().await;
        self.catch_up().await?;
        Ok(guard)
    }

    /// Append a record and wait until the reader has folded it in.
    pub async fn append(
        &self,
        _write: &MutexGuard<'_, ()>,
        key: &LogKey,
        value: Option<&impl Serialize>,
    ) -> Result<(), RegistryError> {
        let key = serde_json::to_vec(key).map_err(|e| RegistryError::Store(e.to_string()))?;
        let value = value
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| RegistryError::Store(e.to_string()))?;
        let written = self
            .producer
            .send(&self.topic, &key, value.as_deref())
            .await
            .map_err(|e| RegistryError::Store(e.to_string()))?;
        self.wait_for(written.offset + 1).await
    }

    async fn catch_up(&self) -> Result<(), RegistryError> {
        let producer = self.producer.inner().clone();
        let topic = self.topic.clone();
        let (_, high) = tokio::task::spawn_blocking(move || {
            producer.client().fetch_watermarks(&topic, 0, TIMEOUT)
        })
        .await
        .map_err(|e| RegistryError::Store(e.to_string()))?
        .map_err(|e| RegistryError::Store(format!("reading the end of the schemas log: {e}")))?;
        self.wait_for(high).await
    }

    async fn wait_for(&self, next_offset: i64) -> Result<(), RegistryError> {
        let mut rx = self.next_offset.clone();
        tokio::time::timeout(TIMEOUT, rx.wait_for(|next| *next >= next_offset))
            .await
            .map_err(|_| RegistryError::Timeout)?
            .map_err(|_| RegistryError::Store("the schemas log reader stopped".into()))?;
        Ok(())
    }
}

async fn read_forever(
    consumer: StreamConsumer,
    state: Arc<RwLock<State>>,
    next: watch::Sender<i64>,
) {
    loop {
        match consumer.recv().await {
            Ok(message) => {
                let applied = match message.key() {
                    Some(key) => state
                        .write()
                        .expect("state lock not poisoned")
                        .apply(key, message.payload()),
                    None => Err("record without key".into()),
                };
                if let Err(reason) = applied {
                    tracing::warn!(offset = message.offset(), %reason, "skipped a schemas log record");
                }
                next.send_replace(message.offset() + 1);
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the schemas log failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

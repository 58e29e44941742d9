//! The `_schemas` topic as the registry's durable store.
//!
//! One partition, compacted, never expiring. A background task reads it from the start
//! and folds every record into [`State`], in offset order. A write appends a record
//! (idempotent producer, `acks=all`) and returns once it is folded in, so a request that got
//! an id is durable and visible to the next request: the writer folds its own record when
//! it lands right after everything folded so far (the reader then skips it), else waits for
//! the reader. So the reader can long-poll (librdkafka's default `fetch.wait.max.ms`) instead
//! of polling the broker every few milliseconds to make writes fast.
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
    /// Offset of the next record to fold in (every earlier one is in `state`). Moved only
    /// with `state`'s write lock held.
    next_offset: Arc<watch::Sender<i64>>,
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
        let consumer: StreamConsumer = client::consumer(
            kafka,
            "funnelhub-registry-reader",
            "funnelhub-registry-reader",
            &[],
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
        let next_offset = Arc::new(watch::Sender::new(0));
        let reader = tokio::spawn(read_forever(consumer, state.clone(), next_offset.clone()));
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

    /// Append a record and return once it is folded in.
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
        let folded = fold(
            &self.state,
            &self.next_offset,
            written.offset,
            Some(&key),
            value.as_deref(),
            Fold::OnlyIfNext,
        );
        if let Some(Err(reason)) = folded {
            // The reader would skip it the same way; the write itself is durable.
            tracing::warn!(offset = written.offset, %reason, "wrote an unreadable schemas log record");
        }
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
        let mut rx = self.next_offset.subscribe();
        tokio::time::timeout(TIMEOUT, rx.wait_for(|next| *next >= next_offset))
            .await
            .map_err(|_| RegistryError::Timeout)?
            .map_err(|_| RegistryError::Store("the schemas log reader stopped".into()))?;
        Ok(())
    }
}

/// Which records [`fold`] takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fold {
    /// The reader: any record not folded yet (a compacted log has gaps).
    NotYetFolded,
    /// A writer: its own record, only if every earlier one is folded.
    OnlyIfNext,
}

/// Fold the record at `offset` (`key` `None`: nothing to apply) into `state` and move
/// `next` past it, unless `which` says it is not this caller's to fold: `None` then. Reader
/// and writers fold under the state's write lock, so each record is folded once and in
/// offset order.
fn fold(
    state: &RwLock<State>,
    next: &watch::Sender<i64>,
    offset: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    which: Fold,
) -> Option<Result<(), String>> {
    let mut state = state.write().expect("state lock not poisoned");
    let expected = *next.borrow();
    let take = match which {
        Fold::NotYetFolded => offset >= expected,
        Fold::OnlyIfNext => offset == expected,
    };
    if !take {
        return None;
    }
    let applied = match key {
        Some(key) => state.apply(key, value),
        None => Err("record without key".into()),
    };
    next.send_replace(offset + 1);
    Some(applied)
}

async fn read_forever(
    consumer: StreamConsumer,
    state: Arc<RwLock<State>>,
    next: Arc<watch::Sender<i64>>,
) {
    loop {
        match consumer.recv().await {
            Ok(message) => {
                let offset = message.offset();
                let folded = fold(
                    &state,
                    &next,
                    offset,
                    message.key(),
                    message.payload(),
                    Fold::NotYetFolded,
                );
                if let Some(Err(reason)) = folded {
                    tracing::warn!(offset, %reason, "skipped a schemas log record");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the schemas log failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compatibility::CompatibilityLevel;

    const KEY: &[u8] = br#"{"keytype":"CONFIG","subject":null,"magic":0}"#;

    fn level(name: &str) -> String {
        format!(r#"{{"compatibilityLevel":"{name}"}}"#)
    }

    #[test]
    fn each_record_is_folded_once_and_a_writer_only_folds_the_next_one() {
        let state = RwLock::new(State::default());
        let next = watch::Sender::new(0);
        let full = level("FULL");
        let none = level("NONE");

        // Another instance wrote offset 0, not read yet: a writer whose record landed at 1
        // must not fold it (it would be folded before 0), the reader does, in order.
        let config = |offset, value: &str, which| {
            fold(
                &state,
                &next,
                offset,
                Some(KEY),
                Some(value.as_bytes()),
                which,
            )
        };
        let reader = |offset, value: &str| config(offset, value, Fold::NotYetFolded);
        assert!(config(1, &none, Fold::OnlyIfNext).is_none());
        assert_eq!(*next.borrow(), 0);
        assert_eq!(reader(0, &full), Some(Ok(())));
        assert_eq!(reader(1, &none), Some(Ok(())));
        assert_eq!(
            state.read().expect("lock").global_level(),
            Some(CompatibilityLevel::None)
        );

        // A writer's record right after everything folded: folded at once; the reader,
        // reaching it later, skips it (a replayed older value would undo a newer one).
        assert_eq!(config(2, &full, Fold::OnlyIfNext), Some(Ok(())));
        assert_eq!(*next.borrow(), 3);
        assert_eq!(
            state.read().expect("lock").global_level(),
            Some(CompatibilityLevel::Full)
        );
        assert_eq!(reader(2, &none), None, "already folded");
        assert_eq!(
            state.read().expect("lock").global_level(),
            Some(CompatibilityLevel::Full)
        );

        // Gaps (compaction) are fine for the reader; a keyless record is reported, passed.
        assert_eq!(reader(7, &none), Some(Ok(())));
        assert!(matches!(
            fold(&state, &next, 8, None, None, Fold::NotYetFolded),
            Some(Err(_))
        ));
        assert_eq!(*next.borrow(), 9);
    }
}

//! The suppression list (erasure by identifier, `docs/privacy.md`): topic
//! `privacy.suppressions`, read whole by every process that handles personal data and
//! followed while it runs. Not a consumer group: each process assigns itself every
//! partition from the beginning and commits nothing, so every member of every stage knows
//! every purge. [`Suppressions::follow`] returns once the list is read up to the end the
//! topic had when it was called, so a stage that starts after a purge never processes a
//! record of a purged person, replays included.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use funnelhub_schemas::privacy::{Suppression, SuppressionList, Tied};
use funnelhub_schemas::{Catalog, Topic};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{client, Error, KafkaConfig, SchemaRegistry, TopicCodec};

const TIMEOUT: Duration = Duration::from_secs(15);

/// The suppression list, shared by every stage of a process (cheap to clone).
#[derive(Debug, Clone, Default)]
pub struct Suppressions {
    shared: Arc<Shared>,
    /// Stops the reader when the last clone is dropped.
    _reader: Option<Arc<Reader>>,
}

#[derive(Debug, Default)]
struct Shared {
    list: RwLock<SuppressionList>,
}

#[derive(Debug)]
struct Reader(JoinHandle<()>);

impl Drop for Reader {
    fn drop(&mut self) {
        self.0.abort();
    }
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
        let topic = Catalog::new(&kafka.topic_prefix).name(Topic::Suppressions);
        let codec = TopicCodec::<Suppression>::register(registry, &topic).await?;
        // A group id is required by the client but never used: partitions are assigned
        // by hand and no offset is ever committed.
        let group = format!("{}-suppressions-reader", kafka.topic_prefix);
        let consumer = client::consumer(
            kafka,
            "funnelhub-suppressions",
            &group,
            &[("fetch.wait.max.ms", "100")],
        )?;
        let lookup = topic.clone();
        let (consumer, ends) = tokio::task::spawn_blocking(move || {
            let metadata = consumer.fetch_metadata(Some(&lookup), TIMEOUT)?;
            let mut ends = HashMap::new();
            let mut assignment = TopicPartitionList::new();
            for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
                let (_, high) = consumer.fetch_watermarks(&lookup, partition.id(), TIMEOUT)?;
                ends.insert(partition.id(), high);
                assignment.add_partition_offset(&lookup, partition.id(), Offset::Beginning)?;
            }
            if ends.is_empty() {
                return Err(Error::Admin(format!("topic {lookup} has no partitions")));
            }
            consumer.assign(&assignment)?;
            Ok((consumer, ends))
        })
        .await
        .map_err(|e| Error::Admin(format!("reading {topic}: {e}")))??;
        let shared = Arc::new(Shared::default());
        let (read_tx, mut read) = watch::channel(HashMap::<i32, i64>::new());
        let reader = Reader(tokio::spawn(read_forever(
            consumer,
            codec,
            shared.clone(),
            read_tx,
        )));
        let caught_up = |read: &HashMap<i32, i64>| {
            ends.iter()
                .all(|(p, end)| *end <= 0 || read.get(p).is_some_and(|next| next >= end))
        };
        let read_to_end = matches!(
            tokio::time::timeout(TIMEOUT, read.wait_for(caught_up)).await,
            Ok(Ok(_))
        );
        if !read_to_end {
            return Err(Error::Admin(format!(
                "could not read {topic} to its end within {TIMEOUT:?}"
            )));
        }
        Ok(Suppressions {
            shared,
            _reader: Some(Arc::new(reader)),
        })
    }
}

/// Fold every record into the list; report each partition's next offset.
async fn read_forever(
    consumer: StreamConsumer,
    codec: TopicCodec<Suppression>,
    shared: Arc<Shared>,
    read: watch::Sender<HashMap<i32, i64>>,
) {
    loop {
        let message = match consumer.recv().await {
            Ok(message) => message,
            Err(e) => {
                tracing::warn!("reading the suppression list: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        if let Some(bytes) = message.payload() {
            loop {
                match codec.decode(bytes).await {
                    Ok(suppression) => {
                        let mut list = shared.list.write().expect("suppression list lock");
                        list.add(suppression);
                        metrics::gauge!("funnelhub_privacy_suppressions").set(list.len() as f64);
                        break;
                    }
                    Err(e) if e.is_retryable() => {
                        tracing::warn!("decoding a suppression, will retry: {e}");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    Err(e) => {
                        // Never written by anything but the purge; nothing to do but say it.
                        tracing::error!(
                            partition = message.partition(),
                            offset = message.offset(),
                            "undecodable suppression skipped: {e}"
                        );
                        break;
                    }
                }
            }
        }
        let (partition, next) = (message.partition(), message.offset() + 1);
        read.send_modify(|read| {
            read.insert(partition, next);
        });
    }
}

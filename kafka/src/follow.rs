//! A compacted topic read whole by every process and followed while it runs (a "global
//! table", as Kafka Streams calls it): the suppression list, the tenants, the setup
//! sessions. Not a consumer group: the process assigns itself every partition from the
//! beginning and commits nothing, so every member of every service sees every record.
//! [`follow`] returns once the topic is read up to the end it had when it was called, so
//! a service that starts after a change never runs without it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use funnelhub_schemas::AvroRecord;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{client, Error, KafkaConfig, TopicCodec};

const TIMEOUT: Duration = Duration::from_secs(15);

/// Keeps the reader running; the reader stops when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct Follower(#[allow(dead_code)] Arc<Reader>);

#[derive(Debug)]
struct Reader(JoinHandle<()>);

impl Drop for Reader {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Read `codec`'s topic to its current end, calling `apply(key, value)` for each record in
/// offset order (`None`: a tombstone), then keep following it in the background.
/// `name` names the reader in client ids and logs (`suppressions`, `tenants`...).
pub async fn follow<T, F>(
    kafka: &KafkaConfig,
    codec: TopicCodec<T>,
    name: &'static str,
    apply: F,
) -> Result<Follower, Error>
where
    T: AvroRecord + Send + Sync + 'static,
    F: FnMut(&str, Option<T>) + Send + 'static,
{
    let topic = codec.topic().to_owned();
    // A group id is required by the client but never used: partitions are assigned by
    // hand and no offset is ever committed.
    let group = format!("{}-{name}-reader", kafka.topic_prefix);
    let consumer = client::consumer(
        kafka,
        &format!("funnelhub-{name}"),
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
    let (read_tx, mut read) = watch::channel(HashMap::<i32, i64>::new());
    let reader = Reader(tokio::spawn(read_forever(
        consumer, codec, name, apply, read_tx,
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
    Ok(Follower(Arc::new(reader)))
}

/// Apply every record; report each partition's next offset.
async fn read_forever<T, F>(
    consumer: StreamConsumer,
    codec: TopicCodec<T>,
    name: &'static str,
    mut apply: F,
    read: watch::Sender<HashMap<i32, i64>>,
) where
    T: AvroRecord + Send + Sync + 'static,
    F: FnMut(&str, Option<T>) + Send + 'static,
{
    loop {
        let message = match consumer.recv().await {
            Ok(message) => message,
            Err(e) => {
                tracing::warn!(reader = name, "following a compacted topic: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
        match message.payload() {
            None => apply(&key, None),
            Some(bytes) => loop {
                match codec.decode(bytes).await {
                    Ok(value) => {
                        apply(&key, Some(value));
                        break;
                    }
                    Err(e) if e.is_retryable() => {
                        tracing::warn!(reader = name, "decoding, will retry: {e}");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    Err(e) => {
                        // Written only by funnelhub's own tools; nothing to do but say it.
                        tracing::error!(
                            reader = name,
                            partition = message.partition(),
                            offset = message.offset(),
                            "undecodable record skipped: {e}"
                        );
                        break;
                    }
                }
            },
        }
        let (partition, next) = (message.partition(), message.offset() + 1);
        read.send_modify(|read| {
            read.insert(partition, next);
        });
    }
}

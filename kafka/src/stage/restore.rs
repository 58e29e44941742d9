//! Where a partition's task starts: the processor it keeps from an earlier assignment if
//! the partition resumes exactly where that processor stopped, else a processor rebuilt
//! from the live entries of the partition's state (a stateless stage's processor is made
//! at once).
//! Blocking (a consumer of its own); run it off the async workers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use super::partition::{Kept, Shared};
use super::{PartitionId, PartitionProcessor, Stage};
use crate::{client, Error};

/// How long the broker may take to answer one request of a restore.
const ANSWER: Duration = Duration::from_secs(30);

/// The processor of `id` and the offset it resumes at (`None`: the group has not committed
/// one), or `None` if `cancel` fired first.
pub(super) fn resume<S: Stage>(
    shared: &Shared<S>,
    id: &PartitionId,
    kept: Option<Kept<S::Processor>>,
    cancel: &CancellationToken,
) -> Result<Option<Kept<S::Processor>>, Error> {
    let (topic, partition) = (&*id.0, id.1);
    if shared.stage.state().is_none() {
        // No state: any processor will do, no position to check.
        return Ok(Some(kept.unwrap_or_else(|| Kept {
            processor: shared.stage.processor(topic, partition),
            next: None,
        })));
    }
    let consumer: BaseConsumer =
        restore_consumer(&shared.kafka, &shared.settings.group).create()?;
    let mut position = TopicPartitionList::new();
    position.add_partition(topic, partition);
    let committed = consumer
        .committed_offsets(position, ANSWER)?
        .find_partition(topic, partition)
        .and_then(|p| match p.offset() {
            Offset::Offset(offset) => Some(offset),
            _ => None,
        });
    if let Some(kept) = kept {
        if kept.next == committed {
            tracing::info!(
                stage = shared.stage.name(),
                topic,
                partition,
                "state kept from the previous assignment"
            );
            return Ok(Some(kept));
        }
    }
    let Some(processor) = restore(shared, &consumer, topic, partition, cancel)? else {
        return Ok(None);
    };
    Ok(Some(Kept {
        processor,
        next: committed,
    }))
}

/// Rebuild one source partition's state from the live entries of its state topic; `None`
/// if cancelled.
fn restore<S: Stage>(
    shared: &Shared<S>,
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    cancel: &CancellationToken,
) -> Result<Option<S::Processor>, Error> {
    let Some(restored) = rebuild(
        &shared.stage,
        &shared.runtime,
        consumer,
        shared.state_partitions,
        (topic, partition),
        cancel,
    )?
    else {
        return Ok(None);
    };
    let stage = shared.stage.name();
    metrics::histogram!("funnelhub_stage_restore_seconds", "stage" => stage)
        .record(restored.elapsed.as_secs_f64());
    metrics::counter!("funnelhub_stage_restore_bytes_total", "stage" => stage)
        .increment(restored.bytes_read);
    tracing::info!(
        stage,
        topic,
        partition,
        live_entries = restored.live_entries,
        records_read = restored.records_read,
        bytes_read = restored.bytes_read,
        ms = restored.elapsed.as_millis() as u64,
        "state restored"
    );
    Ok(Some(restored.processor))
}

/// A source partition's state as its state topic holds it, and what reading it took.
#[derive(Debug)]
pub struct Restored<P> {
    pub processor: P,
    /// Entries applied (the live state).
    pub live_entries: usize,
    /// Records read, whatever their key or kind (see [`Table::records_read`]).
    pub records_read: u64,
    /// Bytes of keys and values read.
    pub bytes_read: u64,
    /// Reading and applying, together.
    pub elapsed: Duration,
}

/// Read the state partition of source partition `(topic, partition)` with `consumer` and
/// apply its live entries to a new processor, decoding on `runtime`; `None` if cancelled.
/// Blocking.
fn rebuild<S: Stage>(
    stage: &Arc<S>,
    runtime: &Handle,
    consumer: &BaseConsumer,
    state_partitions: i32,
    (topic, partition): (&str, i32),
    cancel: &CancellationToken,
) -> Result<Option<Restored<S::Processor>>, Error> {
    let started = Instant::now();
    let mut processor = stage.processor(topic, partition);
    let Some(codec) = stage.state() else {
        return Ok(Some(Restored {
            processor,
            live_entries: 0,
            records_read: 0,
            bytes_read: 0,
            elapsed: started.elapsed(),
        }));
    };
    let Some(table) = read_table(
        consumer,
        codec.topic(),
        partition % state_partitions,
        &super::partition::state_key_prefix(topic, partition),
        cancel,
    )?
    else {
        return Ok(None);
    };
    let live_entries = table.entries.len();
    for (key, bytes) in table.entries {
        let entry = runtime
            .block_on(codec.decode(&bytes))
            .map_err(|e| Error::Registry(format!("state {}: {e}", codec.topic())))?;
        processor.restore(&key, entry);
    }
    Ok(Some(Restored {
        processor,
        live_entries,
        records_read: table.records_read,
        bytes_read: table.bytes_read,
        elapsed: started.elapsed(),
    }))
}

/// Rebuild the state of source partition `topic`/`partition` of `stage` from its state
/// topic, as a new owner of the partition would, outside any group (for tools, tests and
/// benchmarks; a running stage restores its partitions itself).
pub async fn restore_partition<S: Stage>(
    kafka: &crate::KafkaConfig,
    stage: &Arc<S>,
    topic: &str,
    partition: i32,
) -> Result<Restored<S::Processor>, Error> {
    let (kafka, stage, topic, runtime) = (
        kafka.clone(),
        stage.clone(),
        topic.to_owned(),
        Handle::current(),
    );
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = restore_consumer(&kafka, "funnelhub-restore").create()?;
        let state_partitions = match stage.state() {
            Some(codec) => partitions_of(consumer.client(), codec.topic())?,
            None => 1,
        };
        let cancel = CancellationToken::new();
        let at = (topic.as_str(), partition);
        rebuild(&stage, &runtime, &consumer, state_partitions, at, &cancel)
    })
    .await
    .map_err(|e| Error::Admin(format!("restoring: {e}")))?
    .map(|restored| restored.expect("never cancelled"))
}

/// The settings of the consumer that reads a state partition (assigned, never
/// committing; `group` only for reading the stage's committed offsets): it reads to a
/// known end and stops, so a short fetch wait and large fetches whatever the user's.
pub fn restore_consumer(kafka: &crate::KafkaConfig, group: &str) -> rdkafka::ClientConfig {
    let mut config = client::consumer_config(
        kafka,
        "funnelhub-restore",
        &[("max.partition.fetch.bytes", "8388608")],
    );
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "50");
    config
}

/// How many partitions `topic` has.
pub(super) fn partitions_of<C: rdkafka::client::ClientContext>(
    client: &rdkafka::client::Client<C>,
    topic: &str,
) -> Result<i32, Error> {
    let metadata = client.fetch_metadata(Some(topic), ANSWER)?;
    metadata
        .topics()
        .first()
        .map(|t| t.partitions().len() as i32)
        .filter(|n| *n > 0)
        .ok_or_else(|| Error::Admin(format!("{topic} does not exist")))
}

/// The live entries of one source partition, read from its state topic partition.
#[derive(Debug, Default)]
pub(super) struct Table {
    /// (key without the partition's prefix, value), in the order they were last written.
    pub entries: Vec<(String, Vec<u8>)>,
    /// Records read (every source partition sharing the state partition, tombstones,
    /// entries superseded but not compacted yet).
    pub records_read: u64,
    pub bytes_read: u64,
}

/// Read `state_topic`'s partition `partition` to its end as of now, keeping the last value
/// of each key that starts with `prefix` and dropping keys whose last record is a
/// tombstone; `None` if `cancel` fired first.
pub(super) fn read_table(
    consumer: &BaseConsumer,
    state_topic: &str,
    partition: i32,
    prefix: &str,
    cancel: &CancellationToken,
) -> Result<Option<Table>, Error> {
    let (low, high) = consumer.fetch_watermarks(state_topic, partition, ANSWER)?;
    let mut table = Table::default();
    if high <= low {
        return Ok(Some(table));
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(state_topic, partition, Offset::Offset(low))?;
    consumer.assign(&tpl)?;
    // Key → (offset of its last record, value).
    let mut live: HashMap<String, (i64, Vec<u8>)> = HashMap::new();
    let mut next = low;
    while next < high {
        if cancel.is_cancelled() {
            return Ok(None);
        }
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message?;
        // Compaction leaves gaps in the offsets: the next is past this one.
        next = message.offset() + 1;
        table.records_read += 1;
        table.bytes_read += (message.key_len() + message.payload_len()) as u64;
        let Some(key) = message
            .key()
            .and_then(|k| k.strip_prefix(prefix.as_bytes()))
            .and_then(|k| std::str::from_utf8(k).ok())
        else {
            continue;
        };
        match message.payload() {
            Some(value) => {
                live.insert(key.to_owned(), (message.offset(), value.to_vec()));
            }
            None => {
                live.remove(key);
            }
        }
    }
    let mut entries: Vec<(String, (i64, Vec<u8>))> = live.into_iter().collect();
    entries.sort_unstable_by_key(|(_, (offset, _))| *offset);
    table.entries = entries
        .into_iter()
        .map(|(key, (_, value))| (key, value))
        .collect();
    Ok(Some(table))
}

impl<P: PartitionProcessor> std::fmt::Debug for Kept<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kept").field("next", &self.next).finish()
    }
}

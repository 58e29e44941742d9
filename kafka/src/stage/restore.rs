//! Where a partition's task starts: the processor it keeps from an earlier assignment if
//! the partition resumes exactly where that processor stopped, else a processor rebuilt
//! from the partition's changelog records (a stateless stage's processor is made at once).
//! Blocking (a consumer of its own); run it off the async workers.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
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
    if shared.stage.changelog().is_none() {
        // No state: any processor will do, no position to check.
        return Ok(Some(kept.unwrap_or_else(|| Kept {
            processor: shared.stage.processor(topic, partition),
            next: None,
        })));
    }
    let consumer: BaseConsumer = client::consumer_config(&shared.kafka, "funnelhub-restore", &[])
        .set("group.id", &shared.settings.group)
        .set("enable.auto.commit", "false")
        // It reads to a known end and stops: a short fetch wait whatever the user's.
        .set("fetch.wait.max.ms", "50")
        .create()?;
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

/// Rebuild one source partition's state from the changelog; `None` if cancelled.
fn restore<S: Stage>(
    shared: &Shared<S>,
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    cancel: &CancellationToken,
) -> Result<Option<S::Processor>, Error> {
    let started = Instant::now();
    let mut processor = shared.stage.processor(topic, partition);
    let Some(codec) = shared.stage.changelog() else {
        return Ok(Some(processor));
    };
    let changelog_partition = partition % shared.changelog_partitions;
    let (low, high) = consumer.fetch_watermarks(codec.topic(), changelog_partition, ANSWER)?;
    // Several source partitions may share a changelog partition; their records are told
    // apart by key, before decoding.
    let key = super::partition::changelog_key(topic, partition);
    let mut applied = 0u64;
    if high > low {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(codec.topic(), changelog_partition, Offset::Offset(low))?;
        consumer.assign(&tpl)?;
        let mut next = low;
        while next < high {
            if cancel.is_cancelled() {
                return Ok(None);
            }
            let Some(message) = consumer.poll(Duration::from_millis(200)) else {
                continue;
            };
            let message = message?;
            next = message.offset() + 1;
            let Some(bytes) = message.payload() else {
                continue;
            };
            if message.key() != Some(key.as_bytes()) {
                continue;
            }
            let change = shared
                .runtime
                .block_on(codec.decode(bytes))
                .map_err(|e| Error::Registry(format!("changelog {}: {e}", codec.topic())))?;
            processor.restore(change);
            applied += 1;
        }
    }
    let elapsed = started.elapsed();
    metrics::histogram!("funnelhub_stage_restore_seconds", "stage" => shared.stage.name())
        .record(elapsed.as_secs_f64());
    tracing::info!(
        stage = shared.stage.name(),
        topic,
        partition,
        changelog_records = applied,
        ms = elapsed.as_millis() as u64,
        "state restored"
    );
    Ok(Some(processor))
}

impl<P: PartitionProcessor> std::fmt::Debug for Kept<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kept").field("next", &self.next).finish()
    }
}

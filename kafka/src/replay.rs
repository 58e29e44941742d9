//! Replay: move a consumer group's committed offsets back so that its next run re-reads
//! history. Every funnelhub stage is idempotent, so a replay re-emits the same records
//! with the same ids (`docs/replay.md`).
//!
//! A plan is computed first (per partition: committed offset → target, records that will
//! be read again), shown by `funnelhub replay --dry-run`, and applied only while the group
//! has no member: a running member would overwrite the new offsets with its own commits.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::{client, Error, KafkaConfig};

const TIMEOUT: Duration = Duration::from_secs(10);

/// Where the group starts reading again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayFrom {
    /// The oldest record each partition still retains.
    Earliest,
    /// This offset on every partition (clamped to what is retained).
    Offset(i64),
    /// The first record at or after this time (ms since 1970) on each partition.
    Time(i64),
}

/// What a replay does to one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionPlan {
    pub topic: String,
    pub partition: i32,
    /// The group's committed offset now (`None`: never committed).
    pub committed: Option<i64>,
    /// The offset the group will read next.
    pub target: i64,
    /// Oldest retained and next-to-be-written offsets.
    pub low: i64,
    pub high: i64,
}

impl PartitionPlan {
    /// Records the group will read again (already read once, now before its position).
    pub fn reprocessed(&self) -> i64 {
        (self.committed.unwrap_or(self.low) - self.target).max(0)
    }

    /// Records the group will read from the target on.
    pub fn to_read(&self) -> i64 {
        (self.high - self.target).max(0)
    }
}

fn group_consumer(config: &KafkaConfig, group: &str) -> Result<BaseConsumer, Error> {
    Ok(client::consumer_config(config, "funnelhub-replay", &[])
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()?)
}

/// Members of `group` now (0 when it is empty or unknown).
pub async fn group_members(config: &KafkaConfig, group: &str) -> Result<usize, Error> {
    let consumer = group_consumer(config, &format!("{group}-inspect"))?;
    let group = group.to_owned();
    tokio::task::spawn_blocking(move || {
        let groups = consumer.fetch_group_list(Some(&group), TIMEOUT)?;
        Ok(groups
            .groups()
            .iter()
            .filter(|g| g.name() == group)
            .map(|g| g.members().len())
            .sum())
    })
    .await
    .map_err(|e| Error::Admin(e.to_string()))?
}

/// The plan of replaying `topics` for `group` from `from`.
pub async fn plan(
    config: &KafkaConfig,
    group: &str,
    topics: &[String],
    from: ReplayFrom,
) -> Result<Vec<PartitionPlan>, Error> {
    let consumer = group_consumer(config, group)?;
    let topics = topics.to_vec();
    tokio::task::spawn_blocking(move || {
        let mut partitions = Vec::new();
        for topic in &topics {
            let metadata = consumer.fetch_metadata(Some(topic), TIMEOUT)?;
            let found = metadata.topics().iter().find(|t| t.name() == topic);
            let ids: Vec<i32> = found
                .map(|t| t.partitions().iter().map(|p| p.id()).collect())
                .unwrap_or_default();
            if ids.is_empty() {
                return Err(Error::Admin(format!("topic {topic} does not exist")));
            }
            for id in ids {
                let (low, high) = consumer.fetch_watermarks(topic, id, TIMEOUT)?;
                partitions.push((topic.clone(), id, low, high));
            }
        }
        let mut asked = TopicPartitionList::new();
        for (topic, id, _, _) in &partitions {
            asked.add_partition(topic, *id);
        }
        let committed = consumer.committed_offsets(asked, TIMEOUT)?;
        let times = match from {
            ReplayFrom::Time(ms) => {
                let mut tpl = TopicPartitionList::new();
                for (topic, id, _, _) in &partitions {
                    tpl.add_partition_offset(topic, *id, Offset::Offset(ms))?;
                }
                Some(consumer.offsets_for_times(tpl, TIMEOUT)?)
            }
            _ => None,
        };
        let mut plans = Vec::with_capacity(partitions.len());
        for (topic, partition, low, high) in partitions {
            let committed =
                committed
                    .find_partition(&topic, partition)
                    .and_then(|p| match p.offset() {
                        Offset::Offset(o) => Some(o),
                        _ => None,
                    });
            let target = match from {
                ReplayFrom::Earliest => low,
                ReplayFrom::Offset(o) => o.clamp(low, high),
                // No record at or after the time: nothing to read again (the end).
                ReplayFrom::Time(_) => times
                    .as_ref()
                    .and_then(|t| t.find_partition(&topic, partition))
                    .map_or(high, |p| match p.offset() {
                        Offset::Offset(o) => o.clamp(low, high),
                        _ => high,
                    }),
            };
            plans.push(PartitionPlan {
                topic,
                partition,
                committed,
                target,
                low,
                high,
            });
        }
        Ok(plans)
    })
    .await
    .map_err(|e| Error::Admin(e.to_string()))?
}

/// Commit each plan's target as `group`'s offset. The group must have no member.
pub async fn apply(
    config: &KafkaConfig,
    group: &str,
    plans: &[PartitionPlan],
) -> Result<(), Error> {
    let consumer = group_consumer(config, group)?;
    let mut tpl = TopicPartitionList::new();
    for p in plans {
        tpl.add_partition_offset(&p.topic, p.partition, Offset::Offset(p.target))?;
    }
    tokio::task::spawn_blocking(move || Ok(consumer.commit(&tpl, CommitMode::Sync)?))
        .await
        .map_err(|e| Error::Admin(e.to_string()))?
}

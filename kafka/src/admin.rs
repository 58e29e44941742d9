//! Topic creation. The local broker does not auto-create topics, and funnelhub never relies
//! on auto-creation anywhere: every service creates what the catalog names at start-up.

use std::time::Duration;

use funnelhub_schemas::Catalog;
use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::types::RDKafkaErrorCode;

use crate::{client, Error, KafkaConfig};

/// One topic funnelhub wants to exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRequest {
    pub name: String,
    pub partitions: i32,
    /// Topic-level configs set at creation (`retention.ms`, `cleanup.policy`...).
    pub configs: Vec<(&'static str, String)>,
}

/// What [`ensure_topics`] did for one topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicOutcome {
    Created,
    AlreadyExisted,
}

/// The catalog's topics under `config`'s prefix, with their partitions and retention.
pub fn catalog_requests(config: &KafkaConfig) -> Vec<TopicRequest> {
    Catalog::new(&config.topic_prefix)
        .topics()
        .map(|(topic, name)| {
            let spec = topic.spec();
            TopicRequest {
                name,
                partitions: config.partitions.unwrap_or(spec.partitions),
                configs: [
                    ("retention.ms", spec.retention_ms.to_string()),
                    ("cleanup.policy", spec.cleanup.policy().to_owned()),
                ]
                .into_iter()
                .chain(spec.segment_ms.map(|ms| ("segment.ms", ms.to_string())))
                .collect(),
            }
        })
        .collect()
}

/// How long a created topic may take to show in the broker's metadata with a leader for
/// every partition.
const PROPAGATION: Duration = Duration::from_secs(30);

/// Create every requested topic that does not exist yet. Idempotent: an existing topic is
/// left as it is and reported as [`TopicOutcome::AlreadyExisted`].
///
/// Returns once every requested topic is in the metadata the broker serves, each partition
/// with a leader, and each partition of a topic it created answers for its offsets: Kafka
/// acknowledges a creation when the controller has recorded it, a moment before brokers
/// serve it, and a client reading at once would find no partition or no leader.
pub async fn ensure_topics(
    config: &KafkaConfig,
    requests: &[TopicRequest],
) -> Result<Vec<(String, TopicOutcome)>, Error> {
    let admin = client::admin(config, "funnelhub-admin")?;
    let new_topics: Vec<NewTopic<'_>> = requests
        .iter()
        .map(|r| {
            r.configs.iter().fold(
                NewTopic::new(
                    &r.name,
                    r.partitions,
                    TopicReplication::Fixed(config.replication_factor),
                ),
                |topic, (k, v)| topic.set(k, v),
            )
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin.create_topics(&new_topics, &options).await?;
    let outcomes = results
        .into_iter()
        .map(|result| match result {
            Ok(name) => Ok((name, TopicOutcome::Created)),
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                Ok((name, TopicOutcome::AlreadyExisted))
            }
            Err((name, code)) => Err(Error::Admin(format!("creating topic {name}: {code}"))),
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let names: Vec<String> = requests.iter().map(|r| r.name.clone()).collect();
    let created: Vec<String> = outcomes
        .iter()
        .filter(|(_, outcome)| *outcome == TopicOutcome::Created)
        .map(|(name, _)| name.clone())
        .collect();
    tokio::task::spawn_blocking(move || served(admin.inner(), &names, &created, PROPAGATION))
        .await
        .map_err(|e| Error::Admin(e.to_string()))??;
    Ok(outcomes)
}

/// Wait until the broker's metadata has every topic of `names` with a leader for each of
/// its partitions, and every partition of the topics this call `created` answers a
/// ListOffsets request: a broker lists itself as leader a moment before it serves the
/// partition ("not leader for partition" in between).
fn served<C: rdkafka::client::ClientContext>(
    client: &rdkafka::client::Client<C>,
    names: &[String],
    created: &[String],
    within: Duration,
) -> Result<(), Error> {
    let deadline = std::time::Instant::now() + within;
    let timeout = Duration::from_secs(10);
    loop {
        let metadata = client.fetch_metadata(None, timeout)?;
        let listed = |name: &str| {
            metadata.topics().iter().find(|t| {
                t.name() == name
                    && t.error().is_none()
                    && !t.partitions().is_empty()
                    && t.partitions().iter().all(|p| p.leader() >= 0)
            })
        };
        let mut missing: Vec<&String> = names.iter().filter(|n| listed(n).is_none()).collect();
        if missing.is_empty() {
            missing = created
                .iter()
                .filter(|name| {
                    listed(name).is_some_and(|t| {
                        t.partitions()
                            .iter()
                            .any(|p| client.fetch_watermarks(name, p.id(), timeout).is_err())
                    })
                })
                .collect();
        }
        if missing.is_empty() {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(Error::Admin(format!(
                "topics created but not served within {within:?}: {missing:?}"
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Ask the cluster for its metadata: proves the brokers answer Kafka requests, and
/// returns the broker addresses they advertise.
pub async fn check_brokers(config: &KafkaConfig) -> Result<Vec<String>, Error> {
    let admin = client::admin(config, "funnelhub-admin")?;
    tokio::task::spawn_blocking(move || {
        let metadata = admin
            .inner()
            .fetch_metadata(None, Duration::from_secs(10))?;
        Ok(metadata
            .brokers()
            .iter()
            .map(|b| format!("{}:{}", b.host(), b.port()))
            .collect())
    })
    .await
    .map_err(|e| Error::Admin(e.to_string()))?
}

/// How many partitions each topic the cluster knows has (one metadata request).
pub async fn partition_counts(
    config: &KafkaConfig,
) -> Result<std::collections::HashMap<String, usize>, Error> {
    let admin = client::admin(config, "funnelhub-admin")?;
    tokio::task::spawn_blocking(move || {
        let metadata = admin
            .inner()
            .fetch_metadata(None, Duration::from_secs(10))?;
        Ok(metadata
            .topics()
            .iter()
            .map(|t| (t.name().to_owned(), t.partitions().len()))
            .collect())
    })
    .await
    .map_err(|e| Error::Admin(e.to_string()))?
}

/// Move `group`'s committed offsets on every partition of `topics` back to the earliest
/// record still retained: the group's next run re-reads that history (a replay). The group
/// must have no running member (a member's own commits would overwrite these). Returns the
/// number of partitions reset. See [`crate::replay`] for other starting points.
pub async fn reset_group_offsets(
    config: &KafkaConfig,
    group: &str,
    topics: &[String],
) -> Result<usize, Error> {
    use crate::replay::{apply, plan, ReplayFrom};
    let plans = plan(config, group, topics, ReplayFrom::Earliest).await?;
    apply(config, group, &plans).await?;
    Ok(plans.len())
}

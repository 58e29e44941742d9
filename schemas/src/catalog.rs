//! The topic catalog: every topic funnelhub reads or writes, its partitions, key and
//! value schema. Services create missing topics from it at start-up (see
//! `funnelhub_kafka::admin`); nothing else names a topic.
//!
//! Keys are plain UTF-8 strings (Kafka's default partitioner hashes them). They are chosen
//! so that the records whose order matters share a partition: every event of one session
//! (tracking, onboarding) and every event of one order.

use crate::codec::AvroRecord;
use crate::control::TenantRecord;
use crate::derived::{
    CapiDispatchRequest, DedupedEvent, DispatchAttempt, DlqRecord, FunnelTransition, MatchResult,
    OpsTicket,
};
use crate::events::{OnboardingEvent, OrderEvent, RawWebhook, TrackingHit};
use crate::privacy::Suppression;
use crate::setup::{SetupActionLog, SetupMessage, SetupSession};
use crate::state::{DedupeEntry, FunnelSession, MatchEntry};

const DAY_MS: i64 = 24 * 60 * 60 * 1000;
/// Retention of the dedupe state topic: the longest dedupe window is one day less.
pub const DEDUPE_STATE_RETENTION_DAYS: i64 = 15;
/// Retention of the funnel state topic: the longest session TTL is one day less.
pub const FUNNEL_STATE_RETENTION_DAYS: i64 = 31;
/// Retention of the matcher state topic: decisions are kept one day less, as long as the
/// matcher's input is retained, so a replay of any conversion finds its decision.
pub const MATCH_STATE_RETENTION_DAYS: i64 = 31;
/// How long a state topic's active segment stays open: compaction never touches the
/// active segment, so this bounds how long a superseded entry or a tombstone waits before
/// the log cleaner may remove it (whatever the traffic).
pub const STATE_SEGMENT_MS: i64 = 60 * 60 * 1000;
/// Retention of `matching.inputs` (and of the raw topics a full replay starts from).
pub const INPUT_RETENTION_DAYS: i64 = 30;

/// Every topic of the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    RawTracking,
    RawOrders,
    RawOnboarding,
    Deduped,
    FunnelTransitions,
    OpsTickets,
    /// `deduped.events` re-keyed by tenant: the matcher's input.
    MatchingInputs,
    MatchResults,
    CapiRequests,
    CapiAttempts,
    Dlq,
    /// Dedupe state (a table by dedupe key), read by a new owner of a source partition.
    DedupeState,
    /// Funnel state (a table by session), read by a new owner of a source partition.
    FunnelState,
    /// Matcher state (a table of hits, conversions and stream time), read by a new owner
    /// of a source partition.
    MatchState,
    /// Purged identifiers and what was tied to them: every stage skips those records.
    Suppressions,
    /// Tenants (the control plane): every service follows it.
    Tenants,
    /// Guided setup sessions' state: every edge follows it.
    SetupSessions,
    /// One record per setup action (validation tools, autoconfigure, rollback).
    SetupActions,
    /// Signed gateway deliveries that became no event, kept as sent (personal values
    /// redacted).
    RawWebhooks,
    /// One record per setup chat message (secrets and personal data masked).
    SetupMessages,
}

/// Every stage of the pipeline: the one table its name (logs, metrics,
/// `funnelhub replay --stage`) and the topics it reads come from. The stages are started
/// against it (`funnelhub_kafka::stage::spawn_declared` refuses a stage that reads
/// anything else), and a replay of a stage resets exactly these inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StageId {
    Dedupe,
    Funnel,
    /// Re-keys deduped events by tenant for the matcher.
    MatchRoute,
    Match,
    Capi,
    ClickHouse,
}

impl StageId {
    /// Every stage, in pipeline order.
    pub const ALL: [StageId; 6] = [
        StageId::Dedupe,
        StageId::Funnel,
        StageId::MatchRoute,
        StageId::Match,
        StageId::Capi,
        StageId::ClickHouse,
    ];

    /// Its name.
    pub const fn name(self) -> &'static str {
        match self {
            StageId::Dedupe => "dedupe",
            StageId::Funnel => "funnel",
            StageId::MatchRoute => "match-route",
            StageId::Match => "match",
            StageId::Capi => "capi",
            StageId::ClickHouse => "clickhouse",
        }
    }

    /// The topics it reads.
    pub const fn inputs(self) -> &'static [Topic] {
        match self {
            StageId::Dedupe => &[Topic::RawTracking, Topic::RawOrders, Topic::RawOnboarding],
            StageId::Funnel | StageId::MatchRoute => &[Topic::Deduped],
            StageId::Match => &[Topic::MatchingInputs],
            StageId::Capi => &[Topic::CapiRequests],
            StageId::ClickHouse => &[
                Topic::RawTracking,
                Topic::RawOrders,
                Topic::RawOnboarding,
                Topic::Deduped,
                Topic::FunnelTransitions,
                Topic::OpsTickets,
                Topic::MatchResults,
                Topic::CapiRequests,
                Topic::CapiAttempts,
                Topic::Dlq,
                Topic::SetupActions,
                Topic::RawWebhooks,
                Topic::SetupMessages,
            ],
        }
    }

    /// The stage named `name`.
    pub fn named(name: &str) -> Option<StageId> {
        StageId::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// What the catalog says of one topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicSpec {
    /// Name after the catalog prefix, e.g. `raw.tracking`.
    pub suffix: &'static str,
    /// Partitions at creation (parallelism of every consumer group reading it).
    pub partitions: i32,
    /// How the record key is built.
    pub key: &'static str,
    /// Full Avro name of the value schema (subject `<topic>-value`).
    pub value_schema: &'static str,
    /// `retention.ms` set at creation: how far back a replay can go (`-1`: forever).
    pub retention_ms: i64,
    /// What the broker removes (`cleanup.policy`).
    pub cleanup: Cleanup,
    /// `segment.ms` set at creation, if not the broker's default.
    pub segment_ms: Option<i64>,
    /// Who writes it.
    pub producer: &'static str,
}

/// What the broker removes from a topic (`cleanup.policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cleanup {
    /// Records older than the retention (a stream).
    Delete,
    /// Every record but the last of its key, and tombstones (a table, never expiring).
    Compact,
    /// Both: a table whose entries also leave once older than the retention.
    CompactAndDelete,
}

impl Cleanup {
    /// Its `cleanup.policy` value.
    pub const fn policy(self) -> &'static str {
        match self {
            Cleanup::Delete => "delete",
            Cleanup::Compact => "compact",
            Cleanup::CompactAndDelete => "compact,delete",
        }
    }
}

/// A state topic: compacted and retained, with segments that roll.
const fn state(spec: TopicSpec) -> TopicSpec {
    TopicSpec {
        cleanup: Cleanup::CompactAndDelete,
        segment_ms: Some(STATE_SEGMENT_MS),
        ..spec
    }
}

impl Topic {
    /// Every topic, in pipeline order.
    pub const ALL: [Topic; 20] = [
        Topic::RawTracking,
        Topic::RawOrders,
        Topic::RawOnboarding,
        Topic::Deduped,
        Topic::FunnelTransitions,
        Topic::OpsTickets,
        Topic::MatchingInputs,
        Topic::MatchResults,
        Topic::CapiRequests,
        Topic::CapiAttempts,
        Topic::Dlq,
        Topic::DedupeState,
        Topic::FunnelState,
        Topic::MatchState,
        Topic::Suppressions,
        Topic::Tenants,
        Topic::SetupSessions,
        Topic::SetupActions,
        Topic::RawWebhooks,
        Topic::SetupMessages,
    ];

    /// The catalog entry of this topic.
    pub const fn spec(self) -> TopicSpec {
        const fn spec(
            suffix: &'static str,
            key: &'static str,
            value_schema: &'static str,
            retention_days: i64,
            producer: &'static str,
        ) -> TopicSpec {
            TopicSpec {
                suffix,
                partitions: 6,
                key,
                value_schema,
                retention_ms: retention_days * DAY_MS,
                cleanup: Cleanup::Delete,
                segment_ms: None,
                producer,
            }
        }
        match self {
            Topic::RawTracking => spec(
                "raw.tracking",
                "tenant_id:session_id",
                TrackingHit::FULL_NAME,
                30,
                "edge",
            ),
            Topic::RawOrders => spec(
                "raw.orders",
                "tenant_id:gateway:order_id",
                OrderEvent::FULL_NAME,
                30,
                "edge",
            ),
            Topic::RawOnboarding => spec(
                "raw.onboarding",
                "tenant_id:session_id",
                OnboardingEvent::FULL_NAME,
                30,
                "edge",
            ),
            Topic::Deduped => spec(
                "deduped.events",
                "tenant_id:session_id, else order key",
                DedupedEvent::FULL_NAME,
                30,
                "dedupe processor",
            ),
            Topic::FunnelTransitions => spec(
                "funnel.transitions",
                "tenant_id:subject_id",
                FunnelTransition::FULL_NAME,
                30,
                "funnel processor",
            ),
            Topic::OpsTickets => spec(
                "ops.tickets",
                "tenant_id:session_id",
                OpsTicket::FULL_NAME,
                30,
                "funnel processor",
            ),
            Topic::MatchingInputs => spec(
                "matching.inputs",
                "tenant_id",
                DedupedEvent::FULL_NAME,
                INPUT_RETENTION_DAYS,
                "match router",
            ),
            Topic::MatchResults => spec(
                "matching.results",
                "tenant_id:conversion_id",
                MatchResult::FULL_NAME,
                30,
                "matcher",
            ),
            Topic::CapiRequests => spec(
                "capi.requests",
                "tenant_id:event_id",
                CapiDispatchRequest::FULL_NAME,
                30,
                "matcher",
            ),
            Topic::CapiAttempts => spec(
                "capi.attempts",
                "tenant_id:pixel_id",
                DispatchAttempt::FULL_NAME,
                30,
                "Meta CAPI sink",
            ),
            Topic::Dlq => spec(
                "dlq",
                "the failed record's key",
                DlqRecord::FULL_NAME,
                90,
                "every stage",
            ),
            // Tables by state key: compaction keeps each key's last entry and drops
            // tombstones; retention bounds the dedupe window and the session TTL a
            // processor may be configured with (it checks at start-up), and removes what
            // no tombstone did.
            Topic::DedupeState => state(spec(
                "dedupe.state",
                "source_topic:source_partition/dedupe_key",
                DedupeEntry::FULL_NAME,
                DEDUPE_STATE_RETENTION_DAYS,
                "dedupe processor",
            )),
            Topic::FunnelState => state(spec(
                "funnel.state",
                "source_topic:source_partition/tenant_id:funnel:subject_id",
                FunnelSession::FULL_NAME,
                FUNNEL_STATE_RETENTION_DAYS,
                "funnel processor",
            )),
            Topic::MatchState => state(spec(
                "matching.state",
                "source_topic:source_partition/ then hit:..., conversion:... or stream-time",
                MatchEntry::FULL_NAME,
                MATCH_STATE_RETENTION_DAYS,
                "matcher",
            )),
            Topic::Suppressions => TopicSpec {
                partitions: 1,
                retention_ms: -1,
                cleanup: Cleanup::Compact,
                ..spec(
                    "privacy.suppressions",
                    "tenant_id:purge_id",
                    Suppression::FULL_NAME,
                    0,
                    "privacy purge",
                )
            },
            Topic::Tenants => TopicSpec {
                partitions: 1,
                retention_ms: -1,
                cleanup: Cleanup::Compact,
                ..spec(
                    "control.tenants",
                    "tenant_id",
                    TenantRecord::FULL_NAME,
                    0,
                    "funnelhub tenants, setup autoconfigure",
                )
            },
            Topic::SetupSessions => TopicSpec {
                partitions: 1,
                retention_ms: -1,
                cleanup: Cleanup::Compact,
                ..spec(
                    "setup.sessions",
                    "session_id",
                    SetupSession::FULL_NAME,
                    0,
                    "edge (setup API)",
                )
            },
            Topic::SetupActions => TopicSpec {
                partitions: 3,
                ..spec(
                    "setup.actions",
                    "session_id",
                    SetupActionLog::FULL_NAME,
                    INPUT_RETENTION_DAYS,
                    "edge (setup API)",
                )
            },
            Topic::SetupMessages => TopicSpec {
                partitions: 3,
                ..spec(
                    "setup.messages",
                    "session_id",
                    SetupMessage::FULL_NAME,
                    INPUT_RETENTION_DAYS,
                    "edge (setup API)",
                )
            },
            Topic::RawWebhooks => spec(
                "raw.webhooks",
                "tenant_id:gateway:webhook_id",
                RawWebhook::FULL_NAME,
                INPUT_RETENTION_DAYS,
                "edge",
            ),
        }
    }
}

/// Topic names under one prefix (`funnelhub` by default; tests use a unique one each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    prefix: String,
}

impl Default for Catalog {
    fn default() -> Self {
        Catalog::new("funnelhub")
    }
}

impl Catalog {
    /// A catalog whose topics are named `{prefix}.{suffix}`.
    pub fn new(prefix: impl Into<String>) -> Self {
        Catalog {
            prefix: prefix.into(),
        }
    }

    /// The prefix of every topic name.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Full name of `topic`.
    pub fn name(&self, topic: Topic) -> String {
        format!("{}.{}", self.prefix, topic.spec().suffix)
    }

    /// Schema-registry subject of `topic`'s values (Confluent's TopicNameStrategy).
    pub fn value_subject(&self, topic: Topic) -> String {
        format!("{}-value", self.name(topic))
    }

    /// Every topic with its full name.
    pub fn topics(&self) -> impl Iterator<Item = (Topic, String)> + '_ {
        Topic::ALL.into_iter().map(|t| (t, self.name(t)))
    }
}

/// A record key from its parts, joined with `:` (keys only feed the partitioner).
pub fn key(parts: &[&str]) -> String {
    parts.join(":")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema_set::SchemaSet;
    use std::collections::HashSet;

    #[test]
    fn every_stage_has_its_own_name_and_reads_catalog_topics_no_stage_writes_back() {
        let names: HashSet<_> = StageId::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(names.len(), StageId::ALL.len());
        for stage in StageId::ALL {
            assert_eq!(StageId::named(stage.name()), Some(stage));
            assert!(!stage.inputs().is_empty(), "{stage:?} reads something");
            let inputs: HashSet<_> = stage.inputs().iter().collect();
            assert_eq!(
                inputs.len(),
                stage.inputs().len(),
                "{stage:?}: no topic twice"
            );
            for topic in stage.inputs() {
                assert!(
                    !matches!(
                        topic,
                        Topic::DedupeState | Topic::FunnelState | Topic::MatchState
                    ),
                    "{stage:?}: state topics are restored, not consumed"
                );
            }
        }
        assert_eq!(StageId::named("nope"), None);
    }

    #[test]
    fn names_are_unique_and_schemas_exist() {
        let catalog = Catalog::default();
        let names: HashSet<_> = catalog.topics().map(|(_, n)| n).collect();
        assert_eq!(names.len(), Topic::ALL.len());
        assert!(names.contains("funnelhub.raw.tracking"));
        for topic in Topic::ALL {
            let spec = topic.spec();
            assert!(
                SchemaSet::bundled().get(spec.value_schema).is_some(),
                "{topic:?}"
            );
            assert!(spec.partitions > 0);
            assert!(
                spec.retention_ms > 0
                    || (spec.cleanup == Cleanup::Compact && spec.retention_ms == -1)
            );
        }
        assert_eq!(Catalog::new("t1").value_subject(Topic::Dlq), "t1.dlq-value");
    }

    #[test]
    fn session_events_share_a_key() {
        // Every hit of one session lands on one partition, whatever its type.
        assert_eq!(key(&["tenant", "s1"]), "tenant:s1");
    }
}

//! Dedupe: raw edge topics → `deduped.events`, each event once.
//!
//! The key (see [`dedupe_key`]) is remembered with the source position of its first
//! occurrence. Reading the key again at a *different* position is a duplicate (a retried
//! webhook, a double-clicked beacon) and is dropped; at the *same* position it is a replay
//! (offsets reset, or a restart re-reading an uncommitted batch) and is emitted again,
//! unchanged. Keys expire by record time (the edge's `received_at`), never by wall time,
//! so a replay of old history sees the window it saw the first time.

use std::collections::VecDeque;

use foldhash::HashMap;
use std::sync::Arc;

use funnelhub_kafka::dlq::DeadLetters;
use funnelhub_kafka::stage::{
    Output, PartitionProcessor, ProcessError, Record, Stage, StateChange,
};
use funnelhub_kafka::{DecodeError, Suppressions, TopicCodec};
use funnelhub_schemas::derived::DedupedEvent;
use funnelhub_schemas::events::{EdgeEvent, OnboardingEvent, OrderEvent, TrackingHit};
use funnelhub_schemas::ids::now_ms;
use funnelhub_schemas::privacy::DedupeKey;
use funnelhub_schemas::state::DedupeEntry;
use funnelhub_schemas::StageId;
use funnelhub_tenants::TenantDirectory;

use crate::retention::Sweeper;

/// The dedupe key of an event (defined with the event contract, in `schemas`).
pub fn dedupe_key(event: &EdgeEvent) -> String {
    event.dedupe_key()
}

/// What [`DedupeState::check`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// First occurrence: emit.
    New,
    /// The first occurrence read again (same position): emit again.
    Replay,
    /// Same key at another position: drop.
    Duplicate { first_seen_offset: i64 },
}

impl Verdict {
    fn label(self) -> &'static str {
        match self {
            Verdict::New => "new",
            Verdict::Replay => "replay",
            Verdict::Duplicate { .. } => "duplicate",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    offset: i64,
    time: i64,
}

/// The keys seen on one source partition within the window. Pure logic, no I/O.
#[derive(Debug)]
pub struct DedupeState {
    window_ms: i64,
    seen: HashMap<Arc<str>, Seen>,
    /// Keys in the order they were first seen, for expiry.
    arrivals: VecDeque<(i64, Arc<str>)>,
    /// Newest record time seen.
    watermark: i64,
    /// Changes not yet written to the state topic, in order.
    changes: Vec<StateChange<DedupeEntry>>,
}

impl DedupeState {
    /// An empty state whose keys live `window_ms` of record time.
    pub fn new(window_ms: i64) -> Self {
        DedupeState {
            window_ms,
            seen: HashMap::default(),
            arrivals: VecDeque::new(),
            watermark: i64::MIN,
            changes: Vec::new(),
        }
    }

    /// Keys currently remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Classify the record at `offset` with `key` and record time `time`, remembering the
    /// key if it is new.
    pub fn check(&mut self, key: &str, offset: i64, time: i64) -> Verdict {
        if let Some(seen) = self.seen.get(key) {
            return if seen.offset == offset {
                Verdict::Replay
            } else {
                Verdict::Duplicate {
                    first_seen_offset: seen.offset,
                }
            };
        }
        self.remember(Arc::from(key), offset, time);
        self.changes.push(StateChange::Put {
            key: key.to_owned(),
            entry: DedupeEntry {
                dedupe_key: key.to_owned(),
                first_seen_offset: offset,
                record_time: time,
            },
        });
        self.expire();
        Verdict::New
    }

    fn remember(&mut self, key: Arc<str>, offset: i64, time: i64) {
        self.watermark = self.watermark.max(time);
        self.arrivals.push_back((time, key.clone()));
        self.seen.insert(key, Seen { offset, time });
    }

    /// Forget keys older than the window behind the newest record time.
    fn expire(&mut self) {
        let cutoff = self.watermark.saturating_sub(self.window_ms);
        while let Some((time, _)) = self.arrivals.front() {
            if *time >= cutoff {
                break;
            }
            let (time, key) = self.arrivals.pop_front().expect("front exists");
            if self.seen.get(&key).is_some_and(|s| s.time == time) {
                self.seen.remove(&key);
                self.changes.push(StateChange::Delete {
                    key: key.to_string(),
                });
            }
        }
    }

    /// Newest record time seen.
    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    /// Forget the keys `drop` names (given each key and its record time); how many. Their
    /// queue entries are skipped by expiry.
    pub fn forget(&mut self, drop: impl Fn(&str, i64) -> bool) -> usize {
        let before = self.seen.len();
        let changes = &mut self.changes;
        self.seen.retain(|key, seen| {
            let keep = !drop(key, seen.time);
            if !keep {
                changes.push(StateChange::Delete {
                    key: key.to_string(),
                });
            }
            keep
        });
        before - self.seen.len()
    }

    /// Apply an entry read from the state topic (restore).
    pub fn restore(&mut self, entry: DedupeEntry) {
        if !self.seen.contains_key(entry.dedupe_key.as_str()) {
            self.remember(
                Arc::from(entry.dedupe_key),
                entry.first_seen_offset,
                entry.record_time,
            );
        }
        self.expire();
    }

    /// The key → entry of every key remembered, sorted by key (to compare states).
    pub fn entries(&self) -> Vec<DedupeEntry> {
        let mut entries: Vec<DedupeEntry> = self
            .seen
            .iter()
            .map(|(key, seen)| DedupeEntry {
                dedupe_key: key.to_string(),
                first_seen_offset: seen.offset,
                record_time: seen.time,
            })
            .collect();
        entries.sort_unstable_by(|a, b| a.dedupe_key.cmp(&b.dedupe_key));
        entries
    }

    /// Changes since the last call, in order: a key first seen, a key that left.
    pub fn take_changes(&mut self) -> Vec<StateChange<DedupeEntry>> {
        std::mem::take(&mut self.changes)
    }
}

/// The dedupe stage: codecs of its inputs and outputs.
#[derive(Debug)]
pub struct DedupeStage {
    pub(crate) window_ms: i64,
    pub(crate) tracking: TopicCodec<TrackingHit>,
    pub(crate) orders: TopicCodec<OrderEvent>,
    pub(crate) onboarding: TopicCodec<OnboardingEvent>,
    pub(crate) deduped: TopicCodec<DedupedEvent>,
    pub(crate) dead_letters: Arc<DeadLetters>,
    pub(crate) state: TopicCodec<DedupeEntry>,
    pub(crate) suppressions: Suppressions,
    /// Tenants' `retention_days` (live).
    pub(crate) tenants: TenantDirectory,
}

impl DedupeStage {
    async fn decode(&self, record: &Record, bytes: &[u8]) -> Result<EdgeEvent, DecodeError> {
        let topic = &*record.topic;
        if topic == self.tracking.topic() {
            self.tracking
                .decode(bytes)
                .await
                .map(EdgeEvent::TrackingHit)
        } else if topic == self.orders.topic() {
            self.orders.decode(bytes).await.map(EdgeEvent::OrderEvent)
        } else {
            self.onboarding
                .decode(bytes)
                .await
                .map(EdgeEvent::OnboardingEvent)
        }
    }
}

impl Stage for DedupeStage {
    type Processor = DedupeProcessor;

    fn name(&self) -> &'static str {
        StageId::Dedupe.name()
    }

    fn inputs(&self) -> Vec<String> {
        vec![
            self.tracking.topic().to_owned(),
            self.orders.topic().to_owned(),
            self.onboarding.topic().to_owned(),
        ]
    }

    fn state(&self) -> Option<&TopicCodec<DedupeEntry>> {
        Some(&self.state)
    }

    fn processor(self: &Arc<Self>, topic: &str, partition: i32) -> DedupeProcessor {
        DedupeProcessor {
            stage: self.clone(),
            topic: topic.to_owned(),
            partition,
            state: DedupeState::new(self.window_ms),
            sweeper: Sweeper::new(&self.suppressions),
        }
    }
}

/// Dedupe of one source partition.
#[derive(Debug)]
pub struct DedupeProcessor {
    stage: Arc<DedupeStage>,
    topic: String,
    partition: i32,
    state: DedupeState,
    sweeper: Sweeper,
}

impl DedupeProcessor {
    /// Its state.
    pub fn state(&self) -> &DedupeState {
        &self.state
    }
}

impl PartitionProcessor for DedupeProcessor {
    type State = DedupeEntry;

    fn restore(&mut self, key: &str, entry: DedupeEntry) {
        if self
            .stage
            .suppressions
            .covers(&DedupeKey(&entry.dedupe_key))
        {
            // A purged person's key leaves the state topic too.
            self.state.changes.push(StateChange::Delete {
                key: key.to_owned(),
            });
            return;
        }
        self.state.restore(entry);
    }

    async fn process(
        &mut self,
        batch: &[Record],
        out: &mut Vec<Output>,
    ) -> Result<(), ProcessError> {
        let stage = self.stage.clone();
        let decoded = self
            .stage
            .dead_letters
            .decode_batch(batch, move |record, bytes| {
                let stage = stage.clone();
                Box::pin(async move { stage.decode(record, bytes).await })
            })
            .await?;
        let deduped_at = now_ms();
        let (mut new, mut replayed, mut duplicates) = (0u64, 0u64, 0u64);
        for (record, event) in batch.iter().zip(decoded) {
            let event = match event {
                Ok(event) => event,
                Err(letter) => {
                    out.push(letter);
                    continue;
                }
            };
            if self.stage.suppressions.skip("dedupe", &event) {
                continue;
            }
            let dedupe_key = dedupe_key(&event);
            let verdict =
                self.state
                    .check(&dedupe_key, record.offset, event.envelope().received_at);
            match verdict {
                Verdict::New => new += 1,
                Verdict::Replay => replayed += 1,
                Verdict::Duplicate { first_seen_offset } => {
                    duplicates += 1;
                    tracing::debug!(
                        topic = self.topic,
                        partition = self.partition,
                        offset = record.offset,
                        first_seen_offset,
                        "duplicate dropped"
                    );
                    continue;
                }
            }
            let deduped = DedupedEvent {
                dedupe_key,
                first_seen: record.position(),
                deduped_at,
                event,
            };
            out.push(Output {
                topic: Arc::from(self.stage.deduped.topic()),
                key: deduped.key().into_bytes(),
                value: self.stage.deduped.encode(&deduped).map_err(fatal)?,
                trace: record.trace.clone(),
            });
        }
        for (verdict, count) in [
            (Verdict::New, new),
            (Verdict::Replay, replayed),
            (
                Verdict::Duplicate {
                    first_seen_offset: 0,
                },
                duplicates,
            ),
        ] {
            if count > 0 {
                metrics::counter!("funnelhub_dedupe_events_total", "verdict" => verdict.label())
                    .increment(count);
            }
        }
        let stage = &self.stage;
        if let Some(sweep) = self.sweeper.due(
            &stage.suppressions,
            &stage.tenants,
            self.state.watermark(),
            stage.window_ms,
        ) {
            let forgotten = self
                .state
                .forget(|key, time| sweep.drops(&DedupeKey(key), time));
            tracing::debug!(forgotten, "dedupe keys swept (retention, purges)");
        }
        metrics::gauge!(
            "funnelhub_dedupe_keys",
            "topic" => self.topic.clone(),
            "partition" => self.partition.to_string(),
        )
        .set(self.state.len() as f64);
        Ok(())
    }

    fn take_changes(&mut self) -> Vec<StateChange<DedupeEntry>> {
        self.state.take_changes()
    }
}

pub(crate) fn fatal(e: impl std::fmt::Display) -> ProcessError {
    ProcessError::Fatal(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 60 * 60 * 1000;

    #[test]
    fn same_position_is_a_replay_other_position_a_duplicate() {
        let mut state = DedupeState::new(24 * HOUR);
        assert_eq!(state.check("k", 10, 0), Verdict::New);
        assert_eq!(state.check("k", 10, 0), Verdict::Replay);
        assert_eq!(
            state.check("k", 12, HOUR),
            Verdict::Duplicate {
                first_seen_offset: 10
            }
        );
        assert_eq!(state.check("other", 13, HOUR), Verdict::New);
        assert_eq!(state.take_changes().len(), 2, "only first occurrences");
        assert!(state.take_changes().is_empty());
    }

    #[test]
    fn keys_expire_by_record_time_not_wall_time() {
        let mut state = DedupeState::new(24 * HOUR);
        state.check("old", 1, 0);
        state.check("fresh", 2, 23 * HOUR);
        assert_eq!(state.len(), 2, "nothing is a day old yet");
        // A record 25 h after the first pushes the first key out of the window.
        state.take_changes();
        state.check("later", 3, 25 * HOUR);
        assert_eq!(state.len(), 2);
        let changes = state.take_changes();
        assert!(
            matches!(&changes[..], [StateChange::Put { key: put, .. }, StateChange::Delete { key: gone }]
                if put == "later" && gone == "old"),
            "the key that left the window is deleted from the state topic: {changes:?}"
        );
        assert_eq!(state.check("old", 4, 25 * HOUR), Verdict::New, "forgotten");
        assert_eq!(
            state.check("fresh", 5, 25 * HOUR),
            Verdict::Duplicate {
                first_seen_offset: 2
            }
        );
    }

    #[test]
    fn restore_rebuilds_the_same_verdicts() {
        let mut original = DedupeState::new(24 * HOUR);
        for (i, key) in ["a", "b", "c"].iter().enumerate() {
            original.check(key, i as i64, i as i64 * HOUR);
        }
        let mut restored = DedupeState::new(24 * HOUR);
        for change in original.take_changes() {
            let StateChange::Put { entry, .. } = change else {
                panic!("nothing left the window: {change:?}");
            };
            restored.restore(entry);
        }
        assert_eq!(restored.len(), 3);
        assert_eq!(restored.entries(), original.entries());
        assert_eq!(restored.check("b", 1, 5 * HOUR), Verdict::Replay);
        assert_eq!(
            restored.check("c", 9, 5 * HOUR),
            Verdict::Duplicate {
                first_seen_offset: 2
            }
        );
        assert!(
            restored.take_changes().is_empty(),
            "restored keys are not written back"
        );
    }

    #[test]
    fn a_sweep_forgets_the_keys_of_a_tenant_keeping_less_than_the_window() {
        use crate::retention::Sweep;
        use funnelhub_kafka::Suppressions;
        use funnelhub_tenants::{TenantConfig, TenantDirectory};
        let mut short = TenantConfig::new("short");
        short.retention_days = Some(1);
        let tenants = TenantDirectory::fixed([short, TenantConfig::new("long")]);
        let mut state = DedupeState::new(7 * 24 * HOUR);
        state.check("short:track:click:e1", 1, 0);
        state.check("long:track:click:e2", 2, 0);
        state.check("short:track:click:e3", 3, 47 * HOUR);
        let none = Suppressions::none();
        let sweep = Sweep::new(&none, &tenants, state.watermark(), 7 * 24 * HOUR);
        state.take_changes();
        let forgotten = state.forget(|key, time| sweep.drops(&DedupeKey(key), time));
        assert_eq!(forgotten, 1);
        assert_eq!(
            state.take_changes(),
            vec![StateChange::Delete {
                key: "short:track:click:e1".into()
            }]
        );
        assert_eq!(
            state.check("short:track:click:e1", 9, 48 * HOUR),
            Verdict::New
        );
        assert!(matches!(
            state.check("long:track:click:e2", 9, 48 * HOUR),
            Verdict::Duplicate { .. }
        ));
        assert!(matches!(
            state.check("short:track:click:e3", 9, 48 * HOUR),
            Verdict::Duplicate { .. }
        ));
    }

    #[test]
    fn onboarding_key_is_type_session_and_domain() {
        use funnelhub_schemas::testing::sample_onboarding_event;
        let a = sample_onboarding_event();
        let mut b = a.clone();
        b.envelope.event_id = "another id".into();
        b.envelope.occurred_at += 1000;
        assert_eq!(
            dedupe_key(&EdgeEvent::OnboardingEvent(a.clone())),
            dedupe_key(&EdgeEvent::OnboardingEvent(b)),
            "a re-sent milestone is the same milestone"
        );
        let mut c = a.clone();
        c.domain = "other.com".into();
        assert_ne!(
            dedupe_key(&EdgeEvent::OnboardingEvent(a)),
            dedupe_key(&EdgeEvent::OnboardingEvent(c))
        );
    }
}

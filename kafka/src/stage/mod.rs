//! A consumer-group stage: every assigned source partition gets its own task and its own
//! state, rebuilt from the stage's state topic before the partition's first batch.
//!
//! Per batch of one partition the order is fixed, and it is what makes a stage safe to
//! kill at any point (see `docs/processors.md`):
//!
//! 1. the processor turns the records into outputs (state changes stay in memory);
//! 2. every output is written and acknowledged;
//! 3. the state changes are written to the state topic and acknowledged;
//! 4. only then is the batch's offset stored for the next commit.
//!
//! A crash between any two steps re-reads the batch; the processors' replay rules turn
//! that into the same outputs with the same ids, never a loss.
//!
//! The runner's contract, part by part:
//!
//! - [`poll`]: one thread polls the group consumer and hands records to the partition
//!   tasks. It never blocks on a partition: a partition whose task is behind is paused at
//!   the consumer and resumed once its task catches up, so one stuck partition holds
//!   nobody else and the consumer keeps polling (no `max.poll.interval.ms` eviction).
//!   Rebalance callbacks only signal the tasks: a revoked task stops at its next batch
//!   boundary (at once if it is waiting to retry), the callback waits for it at most
//!   [`StageSettings::revoke_timeout`], then abandons it (its batch is re-read by the next
//!   owner) and commits what is done.
//! - [`partition`]: a partition's task restores its state first, then processes batches.
//!   A batch failing with [`ProcessError::Unavailable`] is tried again after a backoff for
//!   as long as it takes (back-pressure, never a drop); meanwhile the partition counts as
//!   stalled ([`RunningStage::stalled`], `funnelhub_stage_stalled_partitions`). Outputs
//!   and state writes are acknowledged within the producer's delivery timeout, and
//!   written again if it passes.
//!   A record the downstream rejects ([`ProcessError::Rejected`]), or whose outputs the
//!   broker refuses for good (larger than a message), goes to the stage's dead letters
//!   and the partition moves on.
//! - [`restore`]: a partition's state is rebuilt from the live entries of its state topic
//!   (a table by state key, compacted by Kafka, tombstones for what left the state): what
//!   a restore reads grows with the state, not with the history. A processor kept from a
//!   revoked partition is reused instead only if the partition comes back at the offset
//!   where that processor stopped.
//!
//! What it assumes: processors are deterministic given their state and input, leave their
//! state as it was when `process` fails, and give their outputs deterministic ids.

mod output;
mod partition;
mod poll;
mod restore;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use funnelhub_schemas::common::SourcePosition;
use funnelhub_schemas::{AvroRecord, Catalog, StageId};

use crate::dlq::DeadLetters;
use crate::{Error, KafkaConfig, TopicCodec};

pub use output::send_all;
pub use restore::{restore_consumer, restore_partition, Restored};

/// One record read from a source partition.
#[derive(Debug, Clone)]
pub struct Record {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// The trace context it carries (`traceparent` header), if traced.
    pub trace: Option<Arc<str>>,
    /// When its producer created it (Kafka record timestamp, ms since the epoch), if set.
    pub timestamp_ms: Option<i64>,
}

impl Record {
    /// Seconds between its Kafka timestamp and `now_ms` (not negative), if it has one.
    pub fn age_seconds(&self, now_ms: i64) -> Option<f64> {
        self.timestamp_ms
            .map(|created| (now_ms - created).max(0) as f64 / 1000.0)
    }

    /// Where it was read from.
    pub fn position(&self) -> SourcePosition {
        SourcePosition {
            topic: self.topic.to_string(),
            partition: self.partition,
            offset: self.offset,
        }
    }
}

/// A record a processor wants written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub topic: Arc<str>,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// The trace context to write with it: the `trace` of the record it was derived from
    /// (the stage replaces it with its own span's), `None` for records of no trace.
    pub trace: Option<Arc<str>>,
}

/// What a stage depends on besides its own state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dependency {
    /// The Kafka cluster (writing outputs and state).
    Broker,
    /// The schema registry (decoding records of a schema not seen yet).
    Registry,
    /// The system a sink writes to (ClickHouse, Meta).
    Sink,
}

impl Dependency {
    /// Its metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Dependency::Broker => "broker",
            Dependency::Registry => "registry",
            Dependency::Sink => "sink",
        }
    }
}

impl std::fmt::Display for Dependency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a processor could not process a batch. Whatever the kind, its state must be as it
/// was before the call.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// A dependency did not answer or refused for now: the same batch is tried again after
    /// a backoff, for as long as it takes. `reason` is for people (logs), never parsed.
    #[error("{dependency} unavailable: {reason}")]
    Unavailable {
        dependency: Dependency,
        reason: String,
    },
    /// The downstream refused the batch's data for good (ClickHouse cannot parse a row):
    /// trying the same batch again cannot help. The runner processes the batch again one
    /// record at a time and dead-letters each record rejected on its own
    /// ([`Stage::dead_letters`]); the partition moves on.
    #[error("rejected: {0}")]
    Rejected(String),
    /// The stage cannot work at all (its configuration, a bug): it stops.
    #[error("fatal: {0}")]
    Fatal(String),
}

impl ProcessError {
    /// `dependency` is unavailable, for `reason`.
    pub fn unavailable(dependency: Dependency, reason: impl std::fmt::Display) -> Self {
        ProcessError::Unavailable {
            dependency,
            reason: reason.to_string(),
        }
    }
}

/// A change to one entry of a partition's state, written to the stage's state topic: a
/// table by key, which Kafka compacts to each key's last entry.
#[derive(Debug, Clone, PartialEq)]
pub enum StateChange<E> {
    /// `key` now holds `entry`.
    Put { key: String, entry: E },
    /// `key` left the state (expired, purged): a tombstone, so compaction removes it.
    Delete { key: String },
}

/// The state and logic of one source partition.
pub trait PartitionProcessor: Send + 'static {
    /// One entry of its state, as its state topic holds it.
    type State: AvroRecord + Send + Sync + 'static;

    /// Apply one live entry of this source partition's state, read at restore: the last
    /// entry of each key not deleted since, in the order they were written. Changes the
    /// restore itself causes (an entry already expired, a purged person's) are taken with
    /// the next batch's. A stateless processor (its stage's [`Stage::state`] is `None`)
    /// keeps this default, never called.
    fn restore(&mut self, _key: &str, _entry: Self::State) {}

    /// Process `batch` (one partition, offset order), appending outputs to `out`.
    fn process<'a>(
        &'a mut self,
        batch: &'a [Record],
        out: &'a mut Vec<Output>,
    ) -> impl Future<Output = Result<(), ProcessError>> + Send + 'a;

    /// State changes since the last call, in the order they happened, to be written once
    /// the outputs are acknowledged. Each entry must encode to at most
    /// [`MAX_STATE_ENTRY_BYTES`] (processors bound what one entry holds). A stateless
    /// processor keeps this default: no changes.
    fn take_changes(&mut self) -> Vec<StateChange<Self::State>> {
        Vec::new()
    }

    /// Called every [`Stage::tick_interval`] while no record arrives: emit what time alone
    /// makes due (a decision after its grace period). Outputs and changes are written like
    /// a batch's; no offset moves.
    fn tick(&mut self, _out: &mut Vec<Output>) -> Result<(), ProcessError> {
        Ok(())
    }
}

/// A kind of stage: its name, inputs and how to make a partition's processor.
pub trait Stage: Send + Sync + 'static {
    type Processor: PartitionProcessor;

    /// Name in logs and metrics (`dedupe`, `funnel`).
    fn name(&self) -> &'static str;

    /// Source topics.
    fn inputs(&self) -> Vec<String>;

    /// The state topic's codec; `None` for a stateless stage (nothing is restored or
    /// written, and its processors' `State` type is never used).
    fn state(&self) -> Option<&TopicCodec<<Self::Processor as PartitionProcessor>::State>>;

    /// How long a partition may go without records before its processor is ticked.
    fn tick_interval(&self) -> Option<Duration> {
        None
    }

    /// How long a partition task may wait for more records once it holds one, to fill a
    /// batch of `max_batch` (like a producer's `linger.ms`). `None`: process what is there.
    fn linger(&self) -> Option<Duration> {
        None
    }

    /// Where records its processors reject on their own go; `None`: a rejection stops the
    /// stage.
    fn dead_letters(&self) -> Option<&DeadLetters> {
        None
    }

    /// An empty processor for one source partition.
    fn processor(self: &Arc<Self>, topic: &str, partition: i32) -> Self::Processor;
}

/// Why a service made of stages did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Kafka(#[from] Error),
}

/// How a stage consumes.
#[derive(Debug, Clone)]
pub struct StageSettings {
    /// Consumer group (every member of the group shares the partitions).
    pub group: String,
    /// Most records handed to a processor at once.
    pub max_batch: usize,
    /// Records queued per partition for its task; past it the partition is paused at the
    /// consumer until its task catches up (back-pressure on that partition only).
    pub buffer: usize,
    /// How long a revoke or a stop waits for a partition's task to reach a batch boundary
    /// before abandoning its batch (the next owner re-reads it).
    pub revoke_timeout: Duration,
}

impl Default for StageSettings {
    fn default() -> Self {
        StageSettings {
            group: "funnelhub".into(),
            max_batch: 2000,
            buffer: 10_000,
            revoke_timeout: Duration::from_secs(15),
        }
    }
}

/// Largest encoded state entry: one Kafka message below librdkafka's default
/// `message.max.bytes` (1,000,000), with room for the key and the record's framing. A
/// larger entry stops the stage (a processor that does not bound its entries is a bug).
pub const MAX_STATE_ENTRY_BYTES: usize = 900_000;

/// (source topic, partition).
pub(crate) type PartitionId = (Arc<str>, i32);

/// A partition that has been failing to process its batch for a while.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stall {
    pub topic: Arc<str>,
    pub partition: i32,
    /// What it waits for.
    pub dependency: Dependency,
    /// The last failure, for people.
    pub reason: String,
    /// Since when it has been retrying.
    pub since: Instant,
}

/// The partitions of a stage that are retrying, shared by its tasks and its handle.
#[derive(Debug, Clone)]
pub(crate) struct Stalls {
    stage: &'static str,
    by_partition: Arc<Mutex<HashMap<PartitionId, Stall>>>,
}

impl Stalls {
    fn new(stage: &'static str) -> Self {
        Stalls {
            stage,
            by_partition: Arc::default(),
        }
    }

    /// `id` failed again on `dependency`.
    fn failing(&self, id: &PartitionId, dependency: Dependency, reason: &str) {
        let mut stalls = self.by_partition.lock().expect("not poisoned");
        let since = stalls.get(id).map_or_else(Instant::now, |s| s.since);
        stalls.insert(
            id.clone(),
            Stall {
                topic: id.0.clone(),
                partition: id.1,
                dependency,
                reason: reason.to_owned(),
                since,
            },
        );
        self.report(&stalls);
    }

    /// `id` made progress (or left this member).
    fn cleared(&self, id: &PartitionId) {
        let mut stalls = self.by_partition.lock().expect("not poisoned");
        if stalls.remove(id).is_some() {
            self.report(&stalls);
        }
    }

    fn report(&self, stalls: &HashMap<PartitionId, Stall>) {
        metrics::gauge!("funnelhub_stage_stalled_partitions", "stage" => self.stage)
            .set(stalls.len() as f64);
    }

    fn all(&self) -> Vec<Stall> {
        let mut all: Vec<Stall> = self
            .by_partition
            .lock()
            .expect("not poisoned")
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        all
    }
}

/// How long a partition may retry before its stage reports itself not ready.
pub const NOT_READY_AFTER: Duration = Duration::from_secs(30);

/// What a stage's stalls mean for readiness.
#[derive(Debug, Clone)]
pub struct StageHealth {
    name: &'static str,
    stalls: Stalls,
}

impl StageHealth {
    /// Partitions retrying for longer than `after`, as `/readyz` reports them.
    pub fn held_longer_than(&self, after: Duration) -> Vec<funnelhub_runtime::NotReady> {
        self.stalls
            .all()
            .into_iter()
            .filter(|s| s.since.elapsed() >= after)
            .map(|s| funnelhub_runtime::NotReady {
                what: format!("{} {}:{}", self.name, s.topic, s.partition),
                waiting_for: s.dependency.as_str().to_owned(),
                since_seconds: s.since.elapsed().as_secs(),
                reason: s.reason,
            })
            .collect()
    }
}

/// Readiness of a service made of `stages`: not ready while any partition of them has
/// been retrying for [`NOT_READY_AFTER`].
pub fn readiness(stages: Vec<StageHealth>) -> funnelhub_runtime::Readiness {
    Arc::new(move || {
        stages
            .iter()
            .flat_map(|s| s.held_longer_than(NOT_READY_AFTER))
            .collect()
    })
}

/// A stage running in the background.
#[derive(Debug)]
pub struct RunningStage {
    name: &'static str,
    stop: Arc<AtomicBool>,
    stalls: Stalls,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
}

impl RunningStage {
    /// Its name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Whether it stopped by itself (a fatal error).
    pub fn has_stopped(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// The partitions that are retrying a batch now, and on what.
    pub fn stalled(&self) -> Vec<Stall> {
        self.stalls.all()
    }

    /// A handle on its stalls that outlives it (for `/readyz`).
    pub fn health(&self) -> StageHealth {
        StageHealth {
            name: self.name,
            stalls: self.stalls.clone(),
        }
    }

    /// Finish the batches in hand (each partition waits at most
    /// [`StageSettings::revoke_timeout`]), commit, leave the group. Returns the fatal error
    /// that stopped the stage earlier, if any.
    pub async fn stop(mut self) -> Result<(), String> {
        self.stop.store(true, Ordering::SeqCst);
        let thread = self.thread.take().expect("stopped once");
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|_| "poll thread panicked".to_string())?
    }
}

impl Drop for RunningStage {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// [`spawn`] a stage of the pipeline, after checking it is what the stage table
/// ([`StageId`]) says: the same name, reading exactly the table's inputs under `kafka`'s
/// prefix.
pub fn spawn_declared<S: Stage>(
    kafka: &KafkaConfig,
    id: StageId,
    stage: Arc<S>,
    settings: StageSettings,
) -> Result<RunningStage, StartError> {
    let catalog = Catalog::new(&kafka.topic_prefix);
    let mut declared: Vec<String> = id.inputs().iter().map(|t| catalog.name(*t)).collect();
    let mut inputs = stage.inputs();
    declared.sort();
    inputs.sort();
    if stage.name() != id.name() || inputs != declared {
        return Err(StartError::Config(format!(
            "stage {} reads {inputs:?}; the stage table says {} reads {declared:?}",
            stage.name(),
            id.name()
        )));
    }
    Ok(spawn(kafka, stage, settings)?)
}

/// Join `settings.group` on `stage`'s inputs and process until stopped. Must be called
/// inside a multi-threaded tokio runtime.
pub fn spawn<S: Stage>(
    kafka: &KafkaConfig,
    stage: Arc<S>,
    settings: StageSettings,
) -> Result<RunningStage, Error> {
    let name = stage.name();
    let stop = Arc::new(AtomicBool::new(false));
    let stalls = Stalls::new(name);
    let thread = poll::start(kafka, stage, settings, stop.clone(), stalls.clone())?;
    Ok(RunningStage {
        name,
        stop,
        stalls,
        thread: Some(thread),
    })
}

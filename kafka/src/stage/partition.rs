//! A partition's task: its state restored (or kept), then batches in, outputs then
//! state changes out, offset reported done. It ends at a batch boundary when cancelled (a
//! revoke, the stage stopping), at once if it is only waiting to retry.

use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use funnelhub_schemas::derived::DlqReason;
use rdkafka::producer::FutureProducer;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::output::{is_permanent, send_all, send_state, StateRecord};
use super::restore;
use super::{
    Dependency, Output, PartitionId, PartitionProcessor, ProcessError, Record, Stage,
    StageSettings, Stalls, StateChange, MAX_STATE_ENTRY_BYTES,
};
use crate::trace_context::BatchSpans;
use crate::KafkaConfig;

/// Longest wait between two tries of a batch that failed with a retryable error (before
/// jitter, which adds up to as much again, drawn per partition so that partitions held by
/// the same outage do not all retry at once). Bounds how long a partition stays idle after
/// the outage ends.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(10);

/// What every partition task of a stage shares.
pub(super) struct Shared<S: Stage> {
    pub stage: Arc<S>,
    pub kafka: KafkaConfig,
    pub settings: StageSettings,
    pub runtime: Handle,
    pub producer: FutureProducer,
    pub state_partitions: i32,
    /// (topic, partition, last offset) of each batch written.
    pub done: std_mpsc::Sender<(Arc<str>, i32, i64)>,
    pub stalls: Stalls,
}

/// A processor and the offset of the first record it has not seen (`None`: the group had
/// no committed offset when it was restored, and it has processed nothing since).
pub(super) struct Kept<P> {
    pub processor: P,
    pub next: Option<i64>,
}

/// How a partition's task ended.
pub(super) enum Ended<P> {
    /// At a batch boundary, with the processor's state consistent with its position.
    Clean(Kept<P>),
    /// Elsewhere (cancelled while restoring, or between writing outputs and storing the
    /// offset): the next task of the partition restores its state.
    Abandoned,
}

/// Why a step of the task did not complete.
enum Halt {
    /// Cancelled while the processor's state still matched the partition's position.
    Stopped,
    /// Cancelled after the state moved past the position (outputs not all acknowledged).
    Abandoned,
    /// The downstream refused the data for good.
    Rejected(String),
    /// The broker refused an output for good (too large for one message, invalid).
    Refused(String),
    Fatal(String),
}

/// Run the partition `id` until `cancel` fires or a fatal error (`Err`).
pub(super) async fn run<S: Stage>(
    shared: Arc<Shared<S>>,
    id: PartitionId,
    kept: Option<Kept<S::Processor>>,
    mut records: mpsc::Receiver<Record>,
    cancel: CancellationToken,
) -> Result<Ended<S::Processor>, String> {
    let Some(Kept {
        mut processor,
        mut next,
    }) = start(&shared, &id, kept, &cancel).await?
    else {
        return Ok(Ended::Abandoned);
    };
    let stage = shared.stage.name();
    let tick = shared.stage.tick_interval();
    let max_batch = shared.settings.max_batch;
    let mut batch = Vec::with_capacity(max_batch);
    let mut outputs = Vec::new();
    loop {
        batch.clear();
        outputs.clear();
        let received = tokio::select! {
            biased;
            _ = cancel.cancelled() => None,
            received = receive(&mut records, tick) => received,
        };
        let first = match received {
            None => return Ok(Ended::Clean(Kept { processor, next })),
            Some(Received::Idle) => {
                match processor.tick(&mut outputs) {
                    Ok(()) => {}
                    Err(ProcessError::Fatal(reason)) => return Err(reason),
                    // Time will tick again.
                    Err(ProcessError::Unavailable { .. } | ProcessError::Rejected(_)) => continue,
                }
                let mut state = Vec::new();
                let flushed = flush(
                    &shared,
                    &id,
                    &mut processor,
                    &mut outputs,
                    &mut state,
                    &cancel,
                )
                .await;
                match flushed {
                    Ok(()) => continue,
                    // No record to blame: what time made due cannot be written.
                    Err(Halt::Fatal(reason) | Halt::Rejected(reason) | Halt::Refused(reason)) => {
                        return Err(reason)
                    }
                    Err(Halt::Stopped | Halt::Abandoned) => return Ok(Ended::Abandoned),
                }
            }
            Some(Received::Record(record)) => record,
        };
        batch.push(first);
        while batch.len() < max_batch {
            match records.try_recv() {
                Ok(record) => batch.push(record),
                Err(_) => break,
            }
        }
        if let Some(linger) = shared.stage.linger() {
            let until = tokio::time::Instant::now() + linger;
            while batch.len() < max_batch {
                match tokio::time::timeout_at(until, records.recv()).await {
                    Ok(Some(record)) => batch.push(record),
                    // Closed (the next receive ends the task) or lingered long enough.
                    Ok(None) | Err(_) => break,
                }
            }
        }
        let started = Instant::now();
        let written =
            write_batch(&shared, &id, &mut processor, &batch, &mut outputs, &cancel).await;
        match written {
            Ok(last) => next = Some(last + 1),
            // A failed process left the state as it was: still consistent with `next`.
            Err(Halt::Stopped) => return Ok(Ended::Clean(Kept { processor, next })),
            Err(Halt::Abandoned) => return Ok(Ended::Abandoned),
            Err(Halt::Fatal(reason) | Halt::Rejected(reason) | Halt::Refused(reason)) => {
                return Err(reason)
            }
        }
        metrics::histogram!("funnelhub_stage_batch_seconds", "stage" => stage)
            .record(started.elapsed().as_secs_f64());
    }
}

/// Process `batch` and write what it caused; the offset of the last record done.
///
/// A batch the processor reports [`ProcessError::Rejected`], or whose outputs the broker
/// refuses for good (one too large for a message), is processed again one record at a
/// time, and a record rejected or refused on its own is dead-lettered: the rest of the
/// partition moves on, and nothing is dropped silently. When outputs were refused, the
/// processor had taken the batch in: it is rebuilt from the state topic first (its state
/// as before the batch; the batch's state changes are dropped), so the records' outputs
/// are made again as the first time, and some written before the refusal may be written
/// twice (same ids).
async fn write_batch<S: Stage>(
    shared: &Arc<Shared<S>>,
    id: &PartitionId,
    processor: &mut S::Processor,
    batch: &[Record],
    outputs: &mut Vec<Output>,
    cancel: &CancellationToken,
) -> Result<i64, Halt> {
    let spans = BatchSpans::start(shared.stage.name(), batch);
    // State records encoded but not acknowledged (their outputs were refused): a record's
    // are written with its dead letter.
    let unwritten = &mut Vec::new();
    let written = async {
        let reason = match process(shared, id, processor, batch, outputs, cancel).await {
            Ok(()) => {
                spans.carry(outputs);
                match flush(shared, id, processor, outputs, unwritten, cancel).await {
                    Ok(()) => return Ok(done(shared, id, batch)),
                    Err(Halt::Refused(reason)) => {
                        // Back to the state before the batch.
                        unwritten.clear();
                        outputs.clear();
                        *processor = match start(shared, id, None, cancel).await {
                            Ok(Some(rebuilt)) => rebuilt.processor,
                            Ok(None) => return Err(Halt::Abandoned),
                            Err(e) => return Err(Halt::Fatal(e)),
                        };
                        reason
                    }
                    Err(other) => return Err(other),
                }
            }
            Err(Halt::Rejected(reason)) => reason,
            Err(other) => return Err(other),
        };
        tracing::warn!(
            stage = shared.stage.name(),
            topic = %id.0,
            partition = id.1,
            records = batch.len(),
            "batch refused, processing it one record at a time: {reason}"
        );
        let mut last = None;
        for record in batch {
            let single = std::slice::from_ref(record);
            let refused = match process(shared, id, processor, single, outputs, cancel).await {
                Ok(()) => {
                    spans.carry(outputs);
                    match flush(shared, id, processor, outputs, unwritten, cancel).await {
                        Ok(()) => None,
                        Err(Halt::Refused(reason)) => Some(reason),
                        Err(other) => return Err(other),
                    }
                }
                Err(Halt::Rejected(reason)) => Some(reason),
                // The state moved past the position the task started the batch at.
                Err(Halt::Stopped) if last.is_some() => return Err(Halt::Abandoned),
                Err(other) => return Err(other),
            };
            if let Some(reason) = refused {
                outputs.clear();
                outputs.push(dead_letter(shared, record, reason)?);
                match flush(shared, id, processor, outputs, unwritten, cancel).await {
                    Ok(()) => {}
                    Err(Halt::Refused(reason)) => {
                        return Err(Halt::Fatal(format!("the dead letter refused: {reason}")))
                    }
                    Err(other) => return Err(other),
                }
            }
            last = Some(done(shared, id, single));
        }
        Ok(last.expect("a batch has a record"))
    }
    .await;
    spans.end(match &written {
        Ok(_) => None,
        Err(Halt::Stopped | Halt::Abandoned) => Some("stopped"),
        Err(Halt::Fatal(reason) | Halt::Rejected(reason) | Halt::Refused(reason)) => Some(reason),
    });
    written
}

/// The dead letter of a record the downstream rejected, or whose outputs the broker
/// refused, on its own.
fn dead_letter<S: Stage>(
    shared: &Shared<S>,
    record: &Record,
    reason: String,
) -> Result<Output, Halt> {
    let Some(letters) = shared.stage.dead_letters() else {
        return Err(Halt::Fatal(format!(
            "{}:{}@{} rejected, and the stage has no dead letters: {reason}",
            record.topic, record.partition, record.offset
        )));
    };
    letters
        .letter(record, DlqReason::PermanentDeliveryFailure, reason)
        .map_err(|e| Halt::Fatal(format!("encoding a dead letter: {e}")))
}

/// Report `records` done (the poll thread stores the offset); their last offset.
fn done<S: Stage>(shared: &Shared<S>, id: &PartitionId, records: &[Record]) -> i64 {
    let stage = shared.stage.name();
    let now = funnelhub_schemas::ids::now_ms();
    let done_age = metrics::histogram!("funnelhub_stage_done_age_seconds", "stage" => stage);
    for age in records.iter().filter_map(|r| r.age_seconds(now)) {
        done_age.record(age);
    }
    metrics::counter!("funnelhub_stage_records_total", "stage" => stage)
        .increment(records.len() as u64);
    let last = records.last().expect("at least one record").offset;
    // The receiver lives as long as the stage.
    let _ = shared.done.send((id.0.clone(), id.1, last));
    last
}

enum Received {
    Record(Record),
    /// No record within the tick interval.
    Idle,
}

/// The next record, or `Idle` after `tick` without one; `None` once the channel closed.
async fn receive(records: &mut mpsc::Receiver<Record>, tick: Option<Duration>) -> Option<Received> {
    match tick {
        Some(every) => match tokio::time::timeout(every, records.recv()).await {
            Ok(record) => record.map(Received::Record),
            Err(_) => Some(Received::Idle),
        },
        None => records.recv().await.map(Received::Record),
    }
}

/// The processor the task starts with (kept or restored), retried while the broker does
/// not answer; `None` if cancelled first.
async fn start<S: Stage>(
    shared: &Arc<Shared<S>>,
    id: &PartitionId,
    mut kept: Option<Kept<S::Processor>>,
    cancel: &CancellationToken,
) -> Result<Option<Kept<S::Processor>>, String> {
    let mut retry = Retry::new(shared, id);
    loop {
        let attempt = {
            let (shared, owned, cancel, kept) =
                (shared.clone(), id.clone(), cancel.clone(), kept.take());
            tokio::task::spawn_blocking(move || restore::resume(&shared, &owned, kept, &cancel))
                .await
                .map_err(|e| format!("restoring {}:{}: {e}", id.0, id.1))?
        };
        match attempt {
            Ok(started) => {
                retry.recovered();
                return Ok(started);
            }
            Err(e) => {
                let reason = format!("restoring state: {e}");
                if !retry.wait(Dependency::Broker, &reason, cancel).await {
                    return Ok(None);
                }
            }
        }
    }
}

/// Process `batch`, trying again while a dependency is unavailable.
async fn process<S: Stage>(
    shared: &Shared<S>,
    id: &PartitionId,
    processor: &mut S::Processor,
    batch: &[Record],
    outputs: &mut Vec<Output>,
    cancel: &CancellationToken,
) -> Result<(), Halt> {
    let mut retry = Retry::new(shared, id);
    loop {
        outputs.clear();
        match processor.process(batch, outputs).await {
            Ok(()) => {
                retry.recovered();
                return Ok(());
            }
            Err(ProcessError::Unavailable { dependency, reason }) => {
                if !retry.wait(dependency, &reason, cancel).await {
                    return Err(Halt::Stopped);
                }
            }
            Err(ProcessError::Rejected(reason)) => return Err(Halt::Rejected(reason)),
            Err(ProcessError::Fatal(reason)) => return Err(Halt::Fatal(reason)),
        }
    }
}

/// Write `outputs`, then the processor's state changes (after any left `unwritten` by an
/// earlier refusal), each step acknowledged; written again (same records, same ids) while
/// the broker does not acknowledge them. Outputs the broker refuses for good end it with
/// [`Halt::Refused`], the state changes kept in `unwritten`.
async fn flush<S: Stage>(
    shared: &Shared<S>,
    id: &PartitionId,
    processor: &mut S::Processor,
    outputs: &mut Vec<Output>,
    unwritten: &mut Vec<StateRecord>,
    cancel: &CancellationToken,
) -> Result<(), Halt> {
    let stage = shared.stage.name();
    let changes = processor.take_changes();
    let mut state_topic = None;
    if let Some(codec) = shared.stage.state() {
        state_topic = Some((codec.topic(), id.1 % shared.state_partitions));
        let prefix = state_key_prefix(&id.0, id.1);
        for change in changes {
            let (key, value) = match change {
                StateChange::Put { key, entry } => {
                    let value = codec
                        .encode(&entry)
                        .map_err(|e| Halt::Fatal(format!("encoding state: {e}")))?;
                    if value.len() > MAX_STATE_ENTRY_BYTES {
                        return Err(Halt::Fatal(format!(
                            "state entry {key} of {} bytes, more than one Kafka message holds ({MAX_STATE_ENTRY_BYTES})",
                            value.len()
                        )));
                    }
                    (key, Some(value))
                }
                StateChange::Delete { key } => (key, None),
            };
            unwritten.push(StateRecord {
                key: format!("{prefix}{key}").into_bytes(),
                value,
            });
        }
    }
    let mut retry = Retry::new(shared, id);
    loop {
        // Plain vectors, not iterator adapters: their closures' borrows would keep the
        // task's future from being `Send` for every lifetime.
        let records: Vec<(&Output, Option<i32>)> = outputs.iter().map(|o| (o, None)).collect();
        let sent = match send_all(&shared.producer, records).await {
            Err(e) if is_permanent(&e) => {
                retry.recovered();
                return Err(Halt::Refused(format!("writing an output: {e}")));
            }
            Err(e) => Err(e),
            Ok(()) => match state_topic {
                Some((topic, partition)) if !unwritten.is_empty() => {
                    match send_state(&shared.producer, topic, partition, unwritten).await {
                        Err(e) if is_permanent(&e) => {
                            return Err(Halt::Fatal(format!("writing state: {e}")))
                        }
                        sent => sent,
                    }
                }
                _ => Ok(()),
            },
        };
        match sent {
            Ok(()) => break,
            Err(e) => {
                let reason = format!("writing: {e}");
                if !retry.wait(Dependency::Broker, &reason, cancel).await {
                    return Err(Halt::Abandoned);
                }
            }
        }
    }
    retry.recovered();
    metrics::counter!("funnelhub_stage_written_total", "stage" => stage, "kind" => "output")
        .increment(outputs.len() as u64);
    metrics::counter!("funnelhub_stage_written_total", "stage" => stage, "kind" => "state")
        .increment(unwritten.len() as u64);
    outputs.clear();
    unwritten.clear();
    Ok(())
}

/// What the keys of a source partition's state records start with
/// (`source_topic:source_partition/`; a topic name holds no `/`): several source
/// partitions may share a partition of the state topic.
pub(super) fn state_key_prefix(topic: &str, partition: i32) -> String {
    format!("{topic}:{partition}/")
}

/// The waits between tries of one step of a partition: exponential, jittered per
/// partition, each failure recorded as a stall. Nothing is built or locked until a try
/// fails: the step that works at once (nearly every batch) pays nothing.
struct Retry<'a> {
    stage: &'static str,
    stalls: &'a Stalls,
    id: &'a PartitionId,
    /// From the first failure on.
    delays: Option<ExponentialBackoff>,
}

impl<'a> Retry<'a> {
    fn new<S: Stage>(shared: &'a Shared<S>, id: &'a PartitionId) -> Self {
        Retry {
            stage: shared.stage.name(),
            stalls: &shared.stalls,
            id,
            delays: None,
        }
    }

    /// The step worked: the partition is no longer stalled, if this step had stalled it.
    fn recovered(self) {
        if self.delays.is_some() {
            self.stalls.cleared(self.id);
        }
    }

    /// Record the failure, then wait for the next try; `false` if cancelled meanwhile.
    async fn wait(
        &mut self,
        dependency: Dependency,
        reason: &str,
        cancel: &CancellationToken,
    ) -> bool {
        let (stage, id) = (self.stage, self.id);
        if cancel.is_cancelled() {
            return false;
        }
        self.stalls.failing(id, dependency, reason);
        metrics::counter!(
            "funnelhub_stage_retries_total",
            "stage" => stage,
            "dependency" => dependency.as_str(),
        )
        .increment(1);
        let delay = self
            .delays
            .get_or_insert_with(|| {
                ExponentialBuilder::default()
                    .with_max_delay(MAX_RETRY_DELAY)
                    .with_jitter()
                    .without_max_times()
                    .build()
            })
            .next()
            .unwrap_or(MAX_RETRY_DELAY);
        tracing::warn!(
            stage,
            topic = %id.0,
            partition = id.1,
            %dependency,
            ?delay,
            "retrying: {reason}"
        );
        tokio::select! {
            biased;
            _ = cancel.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }
}

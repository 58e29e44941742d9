//! A consumer-group stage: every assigned source partition gets its own task and its own
//! state, rebuilt from a changelog topic before the first record is processed.
//!
//! Per batch of one partition the order is fixed, and it is what makes a stage safe to
//! kill at any point (see `docs/processors.md`):
//!
//! 1. the processor turns the records into outputs (state changes stay in memory);
//! 2. every output is written and acknowledged;
//! 3. the state changes are written to the changelog and acknowledged;
//! 4. only then is the batch's offset stored for the next commit.
//!
//! A crash between any two steps re-reads the batch; the processors' replay rules turn
//! that into the same outputs with the same ids, never a loss.
//!
//! One thread polls the group consumer and hands records to the partition tasks (tokio
//! tasks, so partitions are processed in parallel). Rebalance callbacks run on that thread:
//! a revoked partition's task finishes its batch, its offset is committed, and its state is
//! kept aside in case the same partition comes straight back; a newly assigned partition's
//! state is restored before its task starts.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use funnelhub_schemas::common::SourcePosition;
use funnelhub_schemas::AvroRecord;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::trace_context::{self, BatchSpans};
use crate::{client, Error, KafkaConfig, TopicCodec};

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

/// Why a processor could not process a batch. Either way its state must be as before.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// Try the same batch again later (schema registry unreachable...).
    #[error("retryable: {0}")]
    Retryable(String),
    /// Stop the stage.
    #[error("fatal: {0}")]
    Fatal(String),
}

/// The state and logic of one source partition.
pub trait PartitionProcessor: Send + 'static {
    /// What the processor writes to its changelog.
    type Changelog: AvroRecord + Send + Sync + 'static;

    /// Apply a changelog record of this source partition, read at restore (in order).
    fn restore(&mut self, change: Self::Changelog);

    /// Process `batch` (one partition, offset order), appending outputs to `out`.
    fn process<'a>(
        &'a mut self,
        batch: &'a [Record],
        out: &'a mut Vec<Output>,
    ) -> impl Future<Output = Result<(), ProcessError>> + Send + 'a;

    /// State changes since the last call, to be written once the outputs are acknowledged.
    fn take_changes(&mut self) -> Vec<Self::Changelog>;

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

    /// The changelog topic's codec; `None` for a stateless stage (nothing is restored or
    /// written, and its processors' `Changelog` type is never used).
    fn changelog(&self) -> Option<&TopicCodec<<Self::Processor as PartitionProcessor>::Changelog>>;

    /// How long a partition may go without records before its processor is ticked.
    fn tick_interval(&self) -> Option<Duration> {
        None
    }

    /// How long a partition task may wait for more records once it holds one, to fill a
    /// batch of `max_batch` (like a producer's `linger.ms`). `None`: process what is there.
    fn linger(&self) -> Option<Duration> {
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
    /// Records buffered per partition before the poll thread waits (back-pressure).
    pub buffer: usize,
}

impl Default for StageSettings {
    fn default() -> Self {
        StageSettings {
            group: "funnelhub".into(),
            max_batch: 2000,
            buffer: 10_000,
        }
    }
}

type PartitionId = (Arc<str>, i32);

struct Worker<P> {
    records: mpsc::Sender<Record>,
    task: JoinHandle<Result<P, String>>,
}

/// Everything the poll thread, the rebalance callbacks and the partition tasks share.
struct Shared<S: Stage> {
    stage: Arc<S>,
    kafka: KafkaConfig,
    settings: StageSettings,
    runtime: Handle,
    producer: FutureProducer,
    changelog_partitions: i32,
    workers: Mutex<HashMap<PartitionId, Worker<S::Processor>>>,
    /// Processors of revoked partitions, reused if the partition comes straight back.
    standby: Mutex<HashMap<PartitionId, S::Processor>>,
    done_tx: std_mpsc::Sender<(Arc<str>, i32, i64)>,
    done_rx: Mutex<std_mpsc::Receiver<(Arc<str>, i32, i64)>>,
    stop: AtomicBool,
    failure: Mutex<Option<String>>,
}

struct StageContext<S: Stage>(Arc<Shared<S>>);

impl<S: Stage> ClientContext for StageContext<S> {
    /// librdkafka's statistics (every `STATS_INTERVAL`): the group's lag per assigned
    /// partition, high watermark minus committed offset.
    fn stats(&self, statistics: rdkafka::Statistics) {
        let group = &self.0.settings.group;
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                if *partition < 0 || !p.desired || p.consumer_lag < 0 {
                    continue;
                }
                metrics::gauge!(
                    "funnelhub_consumer_lag",
                    "group" => group.clone(),
                    "topic" => topic.clone(),
                    "partition" => partition.to_string(),
                )
                .set(p.consumer_lag as f64);
            }
        }
    }
}

/// Longest wait between two tries of a batch that failed with a retryable error (before
/// jitter, which adds up to as much again, drawn per partition so that partitions held by
/// the same outage do not all retry at once). Bounds how long a partition stays idle after
/// the outage ends.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(10);

/// How often librdkafka reports statistics (consumer lag).
const STATS_INTERVAL_MS: &str = "10000";

impl<S: Stage> ConsumerContext for StageContext<S> {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let shared = &self.0;
            let revoked: Vec<PartitionId> = tpl
                .elements()
                .iter()
                .map(|e| (Arc::from(e.topic()), e.partition()))
                .collect();
            shared.stop_workers(&revoked, consumer);
            tracing::info!(
                stage = shared.stage.name(),
                partitions = revoked.len(),
                "revoked"
            );
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let assigned: Vec<PartitionId> = tpl
                    .elements()
                    .iter()
                    .map(|e| (Arc::from(e.topic()), e.partition()))
                    .collect();
                if let Err(e) = self.0.start_workers(&assigned) {
                    self.0.fail(format!("restoring state: {e}"));
                }
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::warn!(stage = self.0.stage.name(), "rebalance: {e}"),
        }
    }
}

impl<S: Stage> Shared<S> {
    fn fail(&self, reason: String) {
        tracing::error!(stage = self.stage.name(), "stage stops: {reason}");
        self.failure
            .lock()
            .expect("not poisoned")
            .get_or_insert(reason);
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Let the partitions' tasks finish what they hold, store and commit their offsets,
    /// and keep their processors aside.
    fn stop_workers(&self, partitions: &[PartitionId], consumer: &BaseConsumer<StageContext<S>>) {
        let stopping: Vec<(PartitionId, Worker<S::Processor>)> = {
            let mut workers = self.workers.lock().expect("not poisoned");
            partitions
                .iter()
                .filter_map(|p| workers.remove(p).map(|w| (p.clone(), w)))
                .collect()
        };
        for (partition, worker) in stopping {
            drop(worker.records);
            match self.runtime.block_on(worker.task) {
                Ok(Ok(processor)) => {
                    self.standby
                        .lock()
                        .expect("not poisoned")
                        .insert(partition, processor);
                }
                Ok(Err(reason)) => self.fail(reason),
                Err(e) => self.fail(format!("partition task panicked: {e}")),
            }
        }
        self.report_partitions();
        self.store_done(consumer);
        if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
            // Nothing stored since the last commit is not an error worth reporting.
            if !matches!(e, KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) {
                tracing::warn!(stage = self.stage.name(), "commit: {e}");
            }
        }
    }

    /// Fail the stage if a partition task ended by itself (it only ends on a fatal error).
    fn check_workers(&self) {
        let ended: Vec<PartitionId> = self
            .workers
            .lock()
            .expect("not poisoned")
            .iter()
            .filter(|(_, w)| w.task.is_finished())
            .map(|(p, _)| p.clone())
            .collect();
        for (topic, partition) in ended {
            self.fail(format!("partition task for {topic}:{partition} ended"));
        }
    }

    /// Store the offsets the partition tasks reported done.
    fn store_done(&self, consumer: &BaseConsumer<StageContext<S>>) {
        let done = self.done_rx.lock().expect("not poisoned");
        while let Ok((topic, partition, offset)) = done.try_recv() {
            // store_offset commits offset + 1: the next record to read.
            if let Err(e) = consumer.store_offset(&topic, partition, offset) {
                tracing::debug!(stage = self.stage.name(), %topic, partition, "store offset: {e}");
            }
        }
    }

    /// Restore (or take from standby) each partition's processor and start its task.
    fn start_workers(self: &Arc<Self>, partitions: &[PartitionId]) -> Result<(), Error> {
        let mut standby = std::mem::take(&mut *self.standby.lock().expect("not poisoned"));
        for partition in partitions {
            let processor = match standby.remove(partition) {
                Some(processor) => processor,
                None => self.restore(&partition.0, partition.1)?,
            };
            let (tx, rx) = mpsc::channel(self.settings.buffer);
            let task = self.runtime.spawn(run_partition(
                self.clone(),
                partition.clone(),
                processor,
                rx,
            ));
            self.workers
                .lock()
                .expect("not poisoned")
                .insert(partition.clone(), Worker { records: tx, task });
        }
        // Partitions kept aside but not given back belong to another member now.
        self.report_partitions();
        Ok(())
    }

    fn report_partitions(&self) {
        metrics::gauge!("funnelhub_stage_partitions", "stage" => self.stage.name())
            .set(self.workers.lock().expect("not poisoned").len() as f64);
    }

    /// Rebuild one source partition's state from the changelog.
    fn restore(&self, topic: &str, partition: i32) -> Result<S::Processor, Error> {
        let started = Instant::now();
        let mut processor = self.stage.processor(topic, partition);
        let Some(codec) = self.stage.changelog() else {
            return Ok(processor);
        };
        let changelog_partition = partition % self.changelog_partitions;
        // It reads to a known end and stops: a short fetch wait whatever the user's.
        let consumer: BaseConsumer = client::consumer_config(&self.kafka, "funnelhub-restore", &[])
            .set("group.id", format!("{}-restore", self.settings.group))
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "50")
            .create()?;
        let (low, high) = consumer.fetch_watermarks(
            codec.topic(),
            changelog_partition,
            Duration::from_secs(30),
        )?;
        // Several source partitions may share a changelog partition; their records are told
        // apart by key, before decoding.
        let key = changelog_key(topic, partition);
        let mut applied = 0u64;
        if high > low {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(codec.topic(), changelog_partition, Offset::Offset(low))?;
            consumer.assign(&tpl)?;
            let mut next = low;
            while next < high {
                let Some(message) = consumer.poll(Duration::from_secs(1)) else {
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
                let change = self
                    .runtime
                    .block_on(codec.decode(bytes))
                    .map_err(|e| Error::Registry(format!("changelog {}: {e}", codec.topic())))?;
                processor.restore(change);
                applied += 1;
            }
        }
        let elapsed = started.elapsed();
        metrics::histogram!("funnelhub_stage_restore_seconds", "stage" => self.stage.name())
            .record(elapsed.as_secs_f64());
        tracing::info!(
            stage = self.stage.name(),
            topic,
            partition,
            changelog_records = applied,
            ms = elapsed.as_millis() as u64,
            "state restored"
        );
        Ok(processor)
    }
}

/// A partition's task: batches in, outputs then changelog out, offset reported done.
async fn run_partition<S: Stage>(
    shared: Arc<Shared<S>>,
    (topic, partition): PartitionId,
    mut processor: S::Processor,
    mut records: mpsc::Receiver<Record>,
) -> Result<S::Processor, String> {
    let stage = shared.stage.name();
    let tick = shared.stage.tick_interval();
    let done_age = metrics::histogram!("funnelhub_stage_done_age_seconds", "stage" => stage);
    let mut batch = Vec::with_capacity(shared.settings.max_batch);
    let mut outputs = Vec::new();
    loop {
        batch.clear();
        outputs.clear();
        let next = match tick {
            Some(every) => match tokio::time::timeout(every, records.recv()).await {
                Ok(next) => next,
                Err(_) => {
                    processor.tick(&mut outputs).map_err(|e| e.to_string())?;
                    flush(&shared, &topic, partition, &mut processor, &mut outputs).await?;
                    continue;
                }
            },
            None => records.recv().await,
        };
        match next {
            Some(record) => batch.push(record),
            None => return Ok(processor),
        }
        while batch.len() < shared.settings.max_batch {
            match records.try_recv() {
                Ok(record) => batch.push(record),
                Err(_) => break,
            }
        }
        if let Some(linger) = shared.stage.linger() {
            let until = tokio::time::Instant::now() + linger;
            while batch.len() < shared.settings.max_batch {
                match tokio::time::timeout_at(until, records.recv()).await {
                    Ok(Some(record)) => batch.push(record),
                    // Closed (the next recv ends the task) or lingered long enough.
                    Ok(None) | Err(_) => break,
                }
            }
        }
        let started = Instant::now();
        let spans = BatchSpans::start(stage, &batch);
        let mut delays = ExponentialBuilder::default()
            .with_max_delay(MAX_RETRY_DELAY)
            .with_jitter()
            .without_max_times()
            .build();
        loop {
            outputs.clear();
            match processor.process(&batch, &mut outputs).await {
                Ok(()) => break,
                Err(ProcessError::Retryable(reason)) => {
                    if shared.stop.load(Ordering::SeqCst) {
                        return Err(format!("stopped while retrying: {reason}"));
                    }
                    let delay = delays.next().unwrap_or(MAX_RETRY_DELAY);
                    tracing::warn!(stage, %topic, partition, ?delay, "retrying batch: {reason}");
                    tokio::time::sleep(delay).await;
                }
                Err(ProcessError::Fatal(reason)) => {
                    spans.end(Some(&reason));
                    return Err(reason);
                }
            }
        }
        spans.carry(&mut outputs);
        let flushed = flush(&shared, &topic, partition, &mut processor, &mut outputs).await;
        spans.end(flushed.as_ref().err().map(String::as_str));
        flushed?;
        let now = funnelhub_schemas::ids::now_ms();
        for age in batch.iter().filter_map(|r| r.age_seconds(now)) {
            done_age.record(age);
        }
        let last = batch.last().expect("a batch has a record").offset;
        // The poll thread stores it; the receiver lives as long as the stage.
        let _ = shared.done_tx.send((topic.clone(), partition, last));
        metrics::counter!("funnelhub_stage_records_total", "stage" => stage)
            .increment(batch.len() as u64);
        metrics::histogram!("funnelhub_stage_batch_seconds", "stage" => stage)
            .record(started.elapsed().as_secs_f64());
    }
}

/// Write `outputs`, then the processor's state changes, each step acknowledged.
async fn flush<S: Stage>(
    shared: &Shared<S>,
    topic: &str,
    partition: i32,
    processor: &mut S::Processor,
    outputs: &mut Vec<Output>,
) -> Result<(), String> {
    let stage = shared.stage.name();
    let written = outputs.len() as u64;
    send_all(&shared.producer, outputs.drain(..).map(|o| (o, None)))
        .await
        .map_err(|e| format!("writing outputs: {e}"))?;
    metrics::counter!("funnelhub_stage_written_total", "stage" => stage, "kind" => "output")
        .increment(written);
    let changes = processor.take_changes();
    let Some(changelog) = shared.stage.changelog() else {
        return Ok(());
    };
    let key = changelog_key(topic, partition);
    let changelog_partition = partition % shared.changelog_partitions;
    let mut records = Vec::with_capacity(changes.len());
    for change in changes {
        let value = changelog
            .encode(&change)
            .map_err(|e| format!("encoding changelog: {e}"))?;
        records.push((
            Output {
                topic: Arc::from(changelog.topic()),
                key: key.as_bytes().to_vec(),
                value,
                trace: None,
            },
            Some(changelog_partition),
        ));
    }
    let written = records.len() as u64;
    send_all(&shared.producer, records.into_iter())
        .await
        .map_err(|e| format!("writing changelog: {e}"))?;
    metrics::counter!("funnelhub_stage_written_total", "stage" => stage, "kind" => "changelog")
        .increment(written);
    Ok(())
}

/// The key of a source partition's changelog records (`source_topic:source_partition`).
fn changelog_key(topic: &str, partition: i32) -> String {
    format!("{topic}:{partition}")
}

/// Write every output (pipelined) and wait until all are acknowledged. A full producer
/// queue waits for the oldest send instead of failing.
pub async fn send_all(
    producer: &FutureProducer,
    outputs: impl Iterator<Item = (Output, Option<i32>)>,
) -> Result<(), KafkaError> {
    let mut pending: VecDeque<DeliveryFuture> = VecDeque::new();
    for (output, partition) in outputs {
        loop {
            let mut record = FutureRecord::to(&output.topic)
                .key(&output.key)
                .payload(&output.value);
            if let Some(partition) = partition {
                record = record.partition(partition);
            }
            if let Some(traceparent) = &output.trace {
                record = record.headers(trace_context::headers(traceparent));
            }
            match producer.send_result(record) {
                Ok(delivery) => {
                    pending.push_back(delivery);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    match pending.pop_front() {
                        Some(oldest) => acknowledged(oldest).await?,
                        None => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
                Err((e, _)) => return Err(e),
            }
        }
    }
    for delivery in pending {
        acknowledged(delivery).await?;
    }
    Ok(())
}

async fn acknowledged(delivery: DeliveryFuture) -> Result<(), KafkaError> {
    match delivery.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(e),
        Err(_) => Err(KafkaError::Canceled),
    }
}

/// A stage running in the background.
#[derive(Debug)]
pub struct RunningStage {
    name: &'static str,
    stop: Arc<AtomicBool>,
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

    /// Finish the batches in hand, commit, leave the group. Returns the fatal error that
    /// stopped the stage earlier, if any.
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

/// Join `settings.group` on `stage`'s inputs and process until stopped. Must be called
/// inside a multi-threaded tokio runtime.
pub fn spawn<S: Stage>(
    kafka: &KafkaConfig,
    stage: Arc<S>,
    settings: StageSettings,
) -> Result<RunningStage, Error> {
    let name = stage.name();
    let producer = client::producer(kafka, &format!("funnelhub-{name}"))?;
    let changelog_partitions = match stage.changelog() {
        Some(changelog) => {
            let metadata = producer
                .client()
                .fetch_metadata(Some(changelog.topic()), Duration::from_secs(30))?;
            metadata
                .topics()
                .first()
                .map(|t| t.partitions().len() as i32)
                .filter(|n| *n > 0)
                .ok_or_else(|| Error::Admin(format!("{} does not exist", changelog.topic())))?
        }
        None => 1,
    };
    let (done_tx, done_rx) = std_mpsc::channel();
    let shared = Arc::new(Shared {
        stage: stage.clone(),
        kafka: kafka.clone(),
        settings: settings.clone(),
        runtime: Handle::current(),
        producer,
        changelog_partitions,
        workers: Mutex::default(),
        standby: Mutex::default(),
        done_tx,
        done_rx: Mutex::new(done_rx),
        stop: AtomicBool::new(false),
        failure: Mutex::default(),
    });
    let consumer: BaseConsumer<StageContext<S>> =
        client::consumer_config(kafka, &format!("funnelhub-{name}"), &[])
            .set("group.id", &settings.group)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("statistics.interval.ms", STATS_INTERVAL_MS)
            .create_with_context(StageContext(shared.clone()))?;
    let inputs = stage.inputs();
    let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    consumer.subscribe(&inputs)?;

    let stop = Arc::new(AtomicBool::new(false));
    let stop_flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name(format!("{name}-poll"))
        .spawn(move || poll_loop(consumer, shared, stop_flag))
        .map_err(|e| Error::Admin(format!("spawning the poll thread: {e}")))?;
    Ok(RunningStage {
        name,
        stop,
        thread: Some(thread),
    })
}

fn poll_loop<S: Stage>(
    consumer: BaseConsumer<StageContext<S>>,
    shared: Arc<Shared<S>>,
    stop: Arc<AtomicBool>,
) -> Result<(), String> {
    let read_age = metrics::histogram!(
        "funnelhub_stage_read_age_seconds",
        "stage" => shared.stage.name()
    );
    while !stop.load(Ordering::SeqCst) && !shared.stop.load(Ordering::SeqCst) {
        shared.store_done(&consumer);
        shared.check_workers();
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = match message {
            Ok(message) => message,
            Err(e) => {
                tracing::warn!(stage = shared.stage.name(), "consume: {e}");
                continue;
            }
        };
        let topic: Arc<str> = Arc::from(message.topic());
        let id = (topic.clone(), message.partition());
        let record = Record {
            topic,
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            trace: trace_context::of_message(&message),
            timestamp_ms: message.timestamp().to_millis(),
        };
        if let Some(age) = record.age_seconds(funnelhub_schemas::ids::now_ms()) {
            read_age.record(age);
        }
        let sender = shared
            .workers
            .lock()
            .expect("not poisoned")
            .get(&id)
            .map(|w| w.records.clone());
        match sender {
            // Blocks while the partition's buffer is full: back-pressure on the consumer.
            Some(sender) => {
                if sender.blocking_send(record).is_err() {
                    shared.fail(format!("partition task for {}:{} ended", id.0, id.1));
                }
            }
            None => shared.fail(format!("record for unassigned partition {}:{}", id.0, id.1)),
        }
    }
    let all: Vec<PartitionId> = shared
        .workers
        .lock()
        .expect("not poisoned")
        .keys()
        .cloned()
        .collect();
    shared.stop_workers(&all, &consumer);
    consumer.unsubscribe();
    let failure = shared.failure.lock().expect("not poisoned").take();
    match failure {
        Some(reason) => Err(reason),
        None => Ok(()),
    }
}

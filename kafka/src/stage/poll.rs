//! The poll thread: one group consumer, records routed to the partition tasks, offsets
//! stored as the tasks report batches done, rebalances turned into signals to the tasks.
//!
//! It never blocks on a partition. A task's queue holds `StageSettings::buffer` records;
//! past it the partition is paused at the consumer (the records already fetched wait in
//! an overflow of this thread) and resumed once the queue has room again.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::producer::Producer;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Message, TopicPartitionList};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::partition::{self, Ended, Kept, Shared};
use super::{PartitionId, Record, Stage, StageSettings, Stalls};
use crate::{client, trace_context, Error, KafkaConfig};

/// How often librdkafka reports statistics (consumer lag).
const STATS_INTERVAL_MS: &str = "10000";

type Processor<S> = <S as Stage>::Processor;

/// A partition's task as the poll thread sees it.
struct Worker<P> {
    records: mpsc::Sender<Record>,
    /// Records fetched while the task's queue was full, oldest first.
    overflow: VecDeque<Record>,
    /// Whether the partition is paused at the consumer.
    paused: bool,
    cancel: CancellationToken,
    task: JoinHandle<Result<Ended<P>, String>>,
}

/// The group member: what the poll loop and the rebalance callbacks share.
struct Member<S: Stage> {
    shared: Arc<Shared<S>>,
    workers: Mutex<HashMap<PartitionId, Worker<Processor<S>>>>,
    /// Processors of revoked partitions, reused if the partition comes straight back at the
    /// offset where they stopped.
    kept: Mutex<HashMap<PartitionId, Kept<Processor<S>>>>,
    done: Mutex<std_mpsc::Receiver<(Arc<str>, i32, i64)>>,
    failed: AtomicBool,
    failure: Mutex<Option<String>>,
}

struct MemberContext<S: Stage>(Arc<Member<S>>);

impl<S: Stage> ClientContext for MemberContext<S> {
    /// librdkafka's statistics (every `STATS_INTERVAL_MS`): the group's lag per assigned
    /// partition, high watermark minus committed offset.
    fn stats(&self, statistics: rdkafka::Statistics) {
        let group = &self.0.shared.settings.group;
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

impl<S: Stage> ConsumerContext for MemberContext<S> {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let revoked = partitions(tpl);
            self.0.stop_workers(&revoked, consumer);
            tracing::info!(
                stage = self.0.shared.stage.name(),
                partitions = revoked.len(),
                "revoked"
            );
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => self.0.start_workers(&partitions(tpl)),
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => {
                tracing::warn!(stage = self.0.shared.stage.name(), "rebalance: {e}")
            }
        }
    }
}

fn partitions(tpl: &TopicPartitionList) -> Vec<PartitionId> {
    tpl.elements()
        .iter()
        .map(|e| (Arc::from(e.topic()), e.partition()))
        .collect()
}

fn one_partition(id: &PartitionId) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&id.0, id.1);
    tpl
}

impl<S: Stage> Member<S> {
    fn name(&self) -> &'static str {
        self.shared.stage.name()
    }

    fn fail(&self, reason: String) {
        tracing::error!(stage = self.name(), "stage stops: {reason}");
        self.failure
            .lock()
            .expect("not poisoned")
            .get_or_insert(reason);
        self.failed.store(true, Ordering::SeqCst);
    }

    /// Start a task for each newly assigned partition (its state is restored in the task).
    fn start_workers(self: &Arc<Self>, assigned: &[PartitionId]) {
        let mut kept = std::mem::take(&mut *self.kept.lock().expect("not poisoned"));
        let mut workers = self.workers.lock().expect("not poisoned");
        for id in assigned {
            let (tx, rx) = mpsc::channel(self.shared.settings.buffer);
            let cancel = CancellationToken::new();
            let task = self.shared.runtime.spawn(partition::run(
                self.shared.clone(),
                id.clone(),
                kept.remove(id),
                rx,
                cancel.clone(),
            ));
            workers.insert(
                id.clone(),
                Worker {
                    records: tx,
                    overflow: VecDeque::new(),
                    paused: false,
                    cancel,
                    task,
                },
            );
        }
        // Processors kept but not given back: their partitions belong to another member.
        metrics::gauge!("funnelhub_stage_partitions", "stage" => self.name())
            .set(workers.len() as f64);
    }

    /// Signal the partitions' tasks to stop at their next batch boundary and wait for each
    /// until `revoke_timeout` (then abandon it: its batch is re-read by the next owner);
    /// keep the processors that stopped cleanly; store and commit what is done.
    fn stop_workers(&self, stopping: &[PartitionId], consumer: &BaseConsumer<MemberContext<S>>) {
        let stopping: Vec<(PartitionId, Worker<Processor<S>>)> = {
            let mut workers = self.workers.lock().expect("not poisoned");
            let removed = stopping
                .iter()
                .filter_map(|p| workers.remove(p).map(|w| (p.clone(), w)))
                .collect();
            metrics::gauge!("funnelhub_stage_partitions", "stage" => self.name())
                .set(workers.len() as f64);
            removed
        };
        for (_, worker) in &stopping {
            worker.cancel.cancel();
        }
        let deadline = tokio::time::Instant::now() + self.shared.settings.revoke_timeout;
        for (id, mut worker) in stopping {
            drop(worker.records);
            let ended = self
                .shared
                .runtime
                .block_on(async { tokio::time::timeout_at(deadline, &mut worker.task).await });
            match ended {
                Ok(Ok(Ok(Ended::Clean(kept)))) => {
                    self.kept
                        .lock()
                        .expect("not poisoned")
                        .insert(id.clone(), kept);
                }
                Ok(Ok(Ok(Ended::Abandoned))) => {}
                Ok(Ok(Err(reason))) => self.fail(reason),
                // The runtime is shutting down: nothing to report.
                Ok(Err(e)) if e.is_cancelled() => {}
                Ok(Err(e)) => self.fail(format!("partition task panicked: {e}")),
                Err(_) => {
                    worker.task.abort();
                    metrics::counter!("funnelhub_stage_abandoned_total", "stage" => self.name())
                        .increment(1);
                    tracing::warn!(
                        stage = self.name(),
                        topic = %id.0,
                        partition = id.1,
                        timeout = ?self.shared.settings.revoke_timeout,
                        "partition did not reach a batch boundary in time; its batch is abandoned"
                    );
                }
            }
            self.shared.stalls.cleared(&id);
        }
        self.store_done(consumer);
        if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
            // Nothing stored since the last commit is not an error worth reporting.
            if !matches!(e, KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) {
                tracing::warn!(stage = self.name(), "commit: {e}");
            }
        }
    }

    /// Fail the stage if a partition task ended by itself (it only does on a fatal error).
    fn check_workers(&self) {
        let ended: Vec<(PartitionId, Worker<Processor<S>>)> = {
            let mut workers = self.workers.lock().expect("not poisoned");
            let ids: Vec<PartitionId> = workers
                .iter()
                .filter(|(_, w)| w.task.is_finished())
                .map(|(p, _)| p.clone())
                .collect();
            ids.into_iter()
                .filter_map(|p| workers.remove(&p).map(|w| (p, w)))
                .collect()
        };
        for ((topic, partition), worker) in ended {
            let reason = match self.shared.runtime.block_on(worker.task) {
                Ok(Err(reason)) => reason,
                Ok(Ok(_)) => format!("partition task for {topic}:{partition} ended"),
                // The runtime is shutting down: the stage is stopping anyway.
                Err(e) if e.is_cancelled() => continue,
                Err(e) => format!("partition task for {topic}:{partition} panicked: {e}"),
            };
            self.fail(reason);
        }
    }

    /// Store the offsets the partition tasks reported done.
    fn store_done(&self, consumer: &BaseConsumer<MemberContext<S>>) {
        let done = self.done.lock().expect("not poisoned");
        while let Ok((topic, partition, offset)) = done.try_recv() {
            // store_offset commits offset + 1: the next record to read.
            if let Err(e) = consumer.store_offset(&topic, partition, offset) {
                tracing::debug!(stage = self.name(), %topic, partition, "store offset: {e}");
            }
        }
    }

    /// Hand `record` to its partition's task, or keep it in the overflow and pause the
    /// partition if the task's queue is full.
    fn route(&self, record: Record, consumer: &BaseConsumer<MemberContext<S>>) {
        let id = (record.topic.clone(), record.partition);
        let mut workers = self.workers.lock().expect("not poisoned");
        let Some(worker) = workers.get_mut(&id) else {
            // Not ours (any more): its offset is not stored, its owner reads it.
            tracing::debug!(stage = self.name(), topic = %id.0, partition = id.1, "record of a partition not assigned here");
            return;
        };
        if worker.overflow.is_empty() {
            match worker.records.try_send(record) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(record)) => worker.overflow.push_back(record),
                // The task ended: `check_workers` reports why.
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        } else {
            worker.overflow.push_back(record);
        }
        if !worker.paused {
            match consumer.pause(&one_partition(&id)) {
                Ok(()) => worker.paused = true,
                Err(e) => {
                    tracing::warn!(stage = self.name(), topic = %id.0, partition = id.1, "pause: {e}")
                }
            }
        }
    }

    /// Move overflowing records into their tasks' queues as room frees up; resume the
    /// partitions whose overflow is empty. Whether records still wait in an overflow.
    fn feed(&self, consumer: &BaseConsumer<MemberContext<S>>) -> bool {
        let mut workers = self.workers.lock().expect("not poisoned");
        let mut waiting = false;
        for (id, worker) in workers.iter_mut().filter(|(_, w)| w.paused) {
            while let Some(record) = worker.overflow.pop_front() {
                match worker.records.try_send(record) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(record)) => {
                        worker.overflow.push_front(record);
                        break;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        worker.overflow.clear();
                        break;
                    }
                }
            }
            if worker.overflow.is_empty() {
                match consumer.resume(&one_partition(id)) {
                    Ok(()) => worker.paused = false,
                    Err(e) => {
                        tracing::warn!(stage = self.name(), topic = %id.0, partition = id.1, "resume: {e}")
                    }
                }
            } else {
                waiting = true;
            }
        }
        waiting
    }
}

/// Join the group on `stage`'s inputs on a thread of its own.
pub(super) fn start<S: Stage>(
    kafka: &KafkaConfig,
    stage: Arc<S>,
    settings: StageSettings,
    stop: Arc<AtomicBool>,
    stalls: Stalls,
) -> Result<std::thread::JoinHandle<Result<(), String>>, Error> {
    let name = stage.name();
    let producer = client::producer(kafka, &format!("funnelhub-{name}"))?;
    let state_partitions = match stage.state() {
        Some(state) => super::restore::partitions_of(producer.client(), state.topic())?,
        None => 1,
    };
    let (done_tx, done_rx) = std_mpsc::channel();
    let member = Arc::new(Member {
        shared: Arc::new(Shared {
            stage: stage.clone(),
            kafka: kafka.clone(),
            settings: settings.clone(),
            runtime: Handle::current(),
            producer,
            state_partitions,
            done: done_tx,
            stalls,
        }),
        workers: Mutex::default(),
        kept: Mutex::default(),
        done: Mutex::new(done_rx),
        failed: AtomicBool::new(false),
        failure: Mutex::default(),
    });
    let consumer: BaseConsumer<MemberContext<S>> =
        client::consumer_config(kafka, &format!("funnelhub-{name}"), &[])
            .set("group.id", &settings.group)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("statistics.interval.ms", STATS_INTERVAL_MS)
            .create_with_context(MemberContext(member.clone()))?;
    let inputs = stage.inputs();
    let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    consumer.subscribe(&inputs)?;
    std::thread::Builder::new()
        .name(format!("{name}-poll"))
        .spawn(move || poll_loop(consumer, member, stop))
        .map_err(|e| Error::Admin(format!("spawning the poll thread: {e}")))
}

fn poll_loop<S: Stage>(
    consumer: BaseConsumer<MemberContext<S>>,
    member: Arc<Member<S>>,
    stop: Arc<AtomicBool>,
) -> Result<(), String> {
    let read_age = metrics::histogram!(
        "funnelhub_stage_read_age_seconds",
        "stage" => member.name()
    );
    while !stop.load(Ordering::SeqCst) && !member.failed.load(Ordering::SeqCst) {
        member.store_done(&consumer);
        member.check_workers();
        // While records wait in an overflow, come back soon to move them on.
        let wait = if member.feed(&consumer) {
            Duration::from_millis(5)
        } else {
            Duration::from_millis(100)
        };
        let Some(message) = consumer.poll(wait) else {
            continue;
        };
        let message = match message {
            Ok(message) => message,
            Err(e) => {
                tracing::warn!(stage = member.name(), "consume: {e}");
                continue;
            }
        };
        let record = Record {
            topic: Arc::from(message.topic()),
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
        member.route(record, &consumer);
    }
    let all: Vec<PartitionId> = member
        .workers
        .lock()
        .expect("not poisoned")
        .keys()
        .cloned()
        .collect();
    member.stop_workers(&all, &consumer);
    consumer.unsubscribe();
    let failure = member.failure.lock().expect("not poisoned").take();
    match failure {
        Some(reason) => Err(reason),
        None => Ok(()),
    }
}

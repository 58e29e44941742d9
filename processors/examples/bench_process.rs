//! `scripts/bench-process`: the processors' throughput next to baselines measured in the
//! same run.
//!
//! - `bench_process logic <sessions>`: dedupe + funnel logic alone (decoded events, one
//!   thread, no Kafka), three rounds on fresh state. Prints `events best_per_s median_per_s`.
//! - `bench_process matching <buyers>`: the matcher's logic alone on the matching test's
//!   workload (decoded events, one thread, no Kafka). Prints `events events_per_s`.
//! - `bench_process pipeline <brokers> <sessions>`: the same kind of workload written to
//!   fresh raw topics, then (a) a raw pipe — one consumer reading the three raw topics and
//!   writing every record's bytes unchanged to another topic with the same producer
//!   settings, 2000 in flight, committing after the acknowledgements — and (b) the dedupe
//!   and funnel stages until the funnel has read every deduped record. Prints
//!   `records raw_pipe_per_s process_per_s ratio`.
//! - `bench_process transactions <brokers> <records> <batch>`: `records` records of 400
//!   bytes written to a fresh topic of 2 partitions, then piped to another topic twice by
//!   the same loop (`batch` records per round): (a) at least once — the round's sends
//!   acknowledged, then its offsets committed — and (b) exactly once — each round one Kafka
//!   transaction (its sends and its offsets, `send_offsets_to_transaction`), its output
//!   counted by a `read_committed` reader. Prints
//!   `records batch at_least_once_per_s transactional_per_s ratio`.
//! - `bench_process restore <brokers> <entries>`: `entries` live state entries of one
//!   source partition written to a fresh state topic (dedupe keys, then funnel sessions of
//!   three timeline events), then (a) a raw read of those records (bytes only) and (b) the
//!   partition's state rebuilt from them as a new owner does. Prints, per kind,
//!   `kind entries bytes raw_s restore_s ratio`.

use std::collections::{HashSet, VecDeque};

/// The `funnelhub` binary's allocator, so the logic is measured as it runs there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::time::{Duration, Instant};

use funnelhub_kafka::admin::{catalog_requests, ensure_topics, TopicRequest};
use funnelhub_kafka::testing::unique;
use funnelhub_kafka::{client, KafkaConfig};
use funnelhub_processors::config::MatchConfig;
use funnelhub_processors::dedupe::{dedupe_key, DedupeState, Verdict};
use funnelhub_processors::funnel::{Emitted, FunnelState};
use funnelhub_processors::matching::matcher::MatchState;
use funnelhub_processors::testing::{matching_workload, workload, RawWriter};
use funnelhub_processors::{ProcessConfig, Stages};
use funnelhub_schemas::events::EdgeEvent;
use funnelhub_schemas::{Catalog, Topic};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::FutureRecord;
use rdkafka::Message;

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).expect("see usage").clone();
    match args.get(1).map(String::as_str) {
        Some("logic") => logic(arg(2).parse().expect("sessions")),
        Some("matching") => matching(arg(2).parse().expect("buyers")),
        Some("pipeline") => pipeline(&arg(2), arg(3).parse().expect("sessions")).await,
        Some("restore") => restore(&arg(2), arg(3).parse().expect("entries")).await,
        Some("transactions") => {
            transactions(
                &arg(2),
                arg(3).parse().expect("records"),
                arg(4).parse().expect("batch"),
            )
            .await
        }
        _ => {
            eprintln!(
                "usage: bench_process logic <sessions> | matching <buyers> \
                 | pipeline <brokers> <sessions> | transactions <brokers> <records> <batch> \
                 | restore <brokers> <entries>"
            );
            std::process::exit(2);
        }
    }
}

fn logic(sessions: usize) {
    // Three rounds, each on a fresh state: this machine's timing moves by ±30% from run to
    // run (shared host), so the best round is the logic's speed and the median is printed
    // beside it.
    let events = workload(sessions, 1, true);
    let mut rates: Vec<f64> = (0..3).map(|_| logic_round(&events)).collect();
    rates.sort_by(f64::total_cmp);
    println!("{} {:.0} {:.0}", events.len(), rates[2], rates[1]);
}

/// Dedupe + funnel over `events` on a fresh state; events per second.
fn logic_round(events: &[EdgeEvent]) -> f64 {
    let mut dedupe = DedupeState::new(7 * 24 * 3_600_000);
    let mut funnel = FunnelState::new(30 * 24 * 3_600_000);
    let mut emitted = Emitted::default();
    let started = Instant::now();
    for (offset, event) in events.iter().enumerate() {
        let key = dedupe_key(event);
        let time = event.envelope().received_at;
        if !matches!(
            dedupe.check(&key, offset as i64, time),
            Verdict::Duplicate { .. }
        ) {
            funnel.apply(event, time, &mut emitted);
        }
        if offset % 2000 == 1999 {
            // What a flush does: hand the changes to the state writer.
            dedupe.take_changes();
            funnel.take_changes();
            emitted.transitions.clear();
            emitted.tickets.clear();
        }
    }
    let rate = events.len() as f64 / started.elapsed().as_secs_f64();
    // Dropping the state is not part of the logic's work.
    drop((dedupe, funnel));
    rate
}

fn matching(buyers: usize) {
    let config = MatchConfig::default();
    let (events, _) = matching_workload(buyers, 1, config.grace_ms());
    let mut state = MatchState::new(std::sync::Arc::new(config), Default::default());
    let mut emitted = Vec::new();
    let now = funnelhub_schemas::ids::now_ms();
    let started = Instant::now();
    for (i, event) in events.iter().enumerate() {
        match event {
            EdgeEvent::TrackingHit(hit) => state.hit(hit.clone(), now, &mut emitted),
            EdgeEvent::OrderEvent(order) => state.conversion(order.clone(), now, &mut emitted),
            EdgeEvent::OnboardingEvent(_) => {}
        }
        if i % 2000 == 1999 {
            // What a flush does: hand the changes to the state writer.
            state.take_changes();
            emitted.clear();
        }
    }
    state.tick(now + 3_600_000, &mut emitted);
    let elapsed = started.elapsed();
    println!(
        "{} {:.0}",
        events.len(),
        events.len() as f64 / elapsed.as_secs_f64()
    );
}

async fn pipeline(brokers: &str, sessions: usize) {
    let kafka = KafkaConfig {
        brokers: brokers.to_owned(),
        topic_prefix: unique("bench-process"),
        ..KafkaConfig::default()
    };
    ensure_topics(&kafka, &catalog_requests(&kafka))
        .await
        .expect("topics");
    let catalog = Catalog::new(&kafka.topic_prefix);
    let pipe_topic = format!("{}.pipe", kafka.topic_prefix);
    ensure_topics(
        &kafka,
        &[TopicRequest {
            name: pipe_topic.clone(),
            partitions: 6,
            configs: vec![],
        }],
    )
    .await
    .expect("pipe topic");
    let (server, registry) = funnelhub_registry::start_private(&kafka, &unique("_schemas-bench"))
        .await
        .expect("registry");
    let events = workload(sessions, 1, true);
    let distinct = events.iter().map(dedupe_key).collect::<HashSet<_>>().len();
    RawWriter::connect(&kafka, &registry)
        .await
        .write(&events)
        .await;
    let raw_topics: Vec<String> = [Topic::RawTracking, Topic::RawOrders, Topic::RawOnboarding]
        .into_iter()
        .map(|t| catalog.name(t))
        .collect();

    // (a) raw pipe
    let pipe_started = Instant::now();
    raw_pipe(&kafka, &raw_topics, &pipe_topic, events.len());
    let pipe_secs = pipe_started.elapsed().as_secs_f64();

    // (b) dedupe + funnel, from joining the groups to the funnel's last record
    let prometheus = funnelhub_runtime::prometheus();
    let started = Instant::now();
    let config = ProcessConfig {
        group_prefix: kafka.topic_prefix.clone(),
        ..ProcessConfig::default()
    };
    let mut processors = Vec::new();
    for stages in [Stages::Dedupe, Stages::Funnel] {
        processors.push(
            funnelhub_processors::start(&kafka, &registry, &config, stages, &Default::default())
                .await
                .expect("processors"),
        );
    }
    let done = format!("funnelhub_stage_records_total{{stage=\"funnel\"}} {distinct}");
    while !prometheus.render().lines().any(|l| l == done) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let process_secs = started.elapsed().as_secs_f64();
    for processors in processors {
        processors.stop().await.expect("stops");
    }
    let (pipe_eps, process_eps) = (
        events.len() as f64 / pipe_secs,
        events.len() as f64 / process_secs,
    );
    println!(
        "{} {:.0} {:.0} {:.2}",
        events.len(),
        pipe_eps,
        process_eps,
        process_eps / pipe_eps
    );
    server.stop().await.expect("registry stops");
}

/// Consume every record of `inputs` and write its bytes to `output`: up to 2000 in flight
/// (the stages' batch size), acknowledged before the offsets are committed.
fn raw_pipe(kafka: &KafkaConfig, inputs: &[String], output: &str, expected: usize) {
    let consumer: BaseConsumer = client::consumer_config(kafka, "bench-pipe", &[])
        .set("group.id", unique("bench-pipe"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    consumer.subscribe(&inputs).expect("subscribe");
    let producer = client::producer(kafka, "bench-pipe").expect("producer");
    let runtime = tokio::runtime::Handle::current();
    let mut piped = 0;
    tokio::task::block_in_place(|| {
        while piped < expected {
            let mut pending = VecDeque::new();
            while pending.len() < 2000 {
                let wait = if pending.is_empty() { 1000 } else { 0 };
                let Some(message) = consumer.poll(Duration::from_millis(wait)) else {
                    break;
                };
                let message = message.expect("consume");
                let record = FutureRecord::to(output)
                    .key(message.key().unwrap_or_default())
                    .payload(message.payload().unwrap_or_default());
                pending.push_back(
                    producer
                        .send_result(record)
                        .map_err(|(e, _)| e)
                        .expect("enqueued"),
                );
            }
            piped += pending.len();
            for delivery in pending {
                runtime
                    .block_on(delivery)
                    .expect("not cancelled")
                    .expect("acknowledged");
            }
            let _ = consumer.commit_consumer_state(CommitMode::Async);
        }
    });
}

async fn transactions(brokers: &str, records: usize, batch: usize) {
    let kafka = KafkaConfig {
        brokers: brokers.to_owned(),
        topic_prefix: unique("bench-tx"),
        ..KafkaConfig::default()
    };
    let topic = |name: &str| TopicRequest {
        name: format!("{}.{name}", kafka.topic_prefix),
        partitions: 2,
        configs: Vec::new(),
    };
    let (input, once, exactly) = (topic("in"), topic("at-least-once"), topic("exactly-once"));
    ensure_topics(&kafka, &[input.clone(), once.clone(), exactly.clone()])
        .await
        .expect("topics");
    tokio::task::block_in_place(|| {
        transactions_piped(&kafka, &input, &once, &exactly, records, batch)
    });
}

fn transactions_piped(
    kafka: &KafkaConfig,
    input: &TopicRequest,
    once: &TopicRequest,
    exactly: &TopicRequest,
    records: usize,
    batch: usize,
) {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

    let writer: BaseProducer = client::stage_producer_config(kafka, "bench-tx-writer")
        .create()
        .expect("producer");
    let value = vec![b'x'; 400];
    for i in 0..records {
        let key = format!("k{i}");
        loop {
            match writer.send(BaseRecord::to(&input.name).key(&key).payload(&value)) {
                Ok(()) => break,
                Err(_) => {
                    writer.poll(Duration::from_millis(10));
                }
            }
        }
    }
    writer.flush(Duration::from_secs(60)).expect("written");

    let pipe = |output: &str, transactional: bool| -> f64 {
        let group = unique("bench-tx");
        let consumer: BaseConsumer = client::consumer_config(kafka, "bench-tx", &[])
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .create()
            .expect("consumer");
        consumer
            .subscribe(&[input.name.as_str()])
            .expect("subscribe");
        let mut config = client::stage_producer_config(kafka, "bench-tx-pipe");
        if transactional {
            config.set("transactional.id", &group);
        }
        let producer: BaseProducer = config.create().expect("producer");
        if transactional {
            producer
                .init_transactions(Duration::from_secs(30))
                .expect("transactions");
        }
        let started = Instant::now();
        let mut piped = 0;
        while piped < records {
            if transactional {
                producer.begin_transaction().expect("begin");
            }
            let mut round = 0;
            while round < batch {
                let wait = if round == 0 { 1000 } else { 0 };
                let Some(message) = consumer.poll(Duration::from_millis(wait)) else {
                    break;
                };
                let message = message.expect("consume");
                let mut record = BaseRecord::to(output)
                    .key(message.key().unwrap_or_default())
                    .payload(message.payload().unwrap_or_default());
                loop {
                    match producer.send(record) {
                        Ok(()) => break,
                        Err((_, back)) => {
                            record = back;
                            producer.poll(Duration::from_millis(1));
                        }
                    }
                }
                round += 1;
            }
            piped += round;
            if transactional && round == 0 {
                producer
                    .abort_transaction(Duration::from_secs(30))
                    .expect("aborted");
            } else if transactional {
                let position = consumer.position().expect("position");
                let metadata = consumer.group_metadata().expect("group metadata");
                producer
                    .send_offsets_to_transaction(&position, &metadata, Duration::from_secs(30))
                    .expect("offsets in the transaction");
                producer
                    .commit_transaction(Duration::from_secs(30))
                    .expect("committed");
            } else {
                producer
                    .flush(Duration::from_secs(30))
                    .expect("acknowledged");
                // Nothing consumed yet (before the assignment): nothing to commit.
                let _ = consumer.commit_consumer_state(CommitMode::Sync);
            }
        }
        records as f64 / started.elapsed().as_secs_f64()
    };
    let at_least_once = pipe(&once.name, false);
    let transactional = pipe(&exactly.name, true);
    // What a read_committed reader sees of the transactional output: every record, once.
    let committed = funnelhub_kafka::testing::record_count(kafka, &exactly.name);
    assert!(
        committed >= records,
        "the transactional output holds every record ({committed} offsets for {records})"
    );
    println!(
        "{records} {batch} {at_least_once:.0} {transactional:.0} {:.2}",
        transactional / at_least_once
    );
}

/// Write `entries` state entries for source partition 0 of `source` (made by `entry`),
/// read them raw, then restore the partition; prints one line.
async fn restore_kind<S: funnelhub_kafka::stage::Stage>(
    kind: &str,
    kafka: &KafkaConfig,
    stage: &std::sync::Arc<S>,
    source: &str,
    entries: usize,
    entry: impl Fn(
        usize,
    ) -> (
        String,
        <S::Processor as funnelhub_kafka::stage::PartitionProcessor>::State,
    ),
) {
    use funnelhub_kafka::stage::{restore_partition, send_all, Output};
    let codec = stage.state().expect("a stage with state");
    let topic: std::sync::Arc<str> = std::sync::Arc::from(codec.topic());
    let producer = client::producer(kafka, "bench-restore").expect("producer");
    let mut bytes = 0;
    for chunk in (0..entries).collect::<Vec<_>>().chunks(50_000) {
        let mut outputs = Vec::with_capacity(chunk.len());
        for i in chunk {
            let (key, value) = entry(*i);
            let value = codec.encode(&value).expect("encodes");
            let key = format!("{source}:0/{key}").into_bytes();
            bytes += key.len() + value.len();
            outputs.push(Output {
                topic: topic.clone(),
                key,
                value,
                trace: None,
            });
        }
        let outputs: Vec<(&Output, Option<i32>)> = outputs.iter().map(|o| (o, Some(0))).collect();
        send_all(&producer, outputs).await.expect("written");
    }
    // Twice each, alternating, the best of each kept: the first read of fresh records
    // pays for the broker's page cache and the client's start.
    let (mut raw, mut restore) = (Duration::MAX, Duration::MAX);
    for _ in 0..2 {
        let (owned, topic) = (kafka.clone(), topic.to_string());
        let read = tokio::task::spawn_blocking(move || raw_partition_read(&owned, &topic, entries))
            .await
            .expect("raw read");
        raw = raw.min(read);
        let restored = restore_partition(kafka, stage, source, 0)
            .await
            .expect("restored");
        assert_eq!(restored.live_entries, entries);
        restore = restore.min(restored.elapsed);
    }
    println!(
        "{kind} {entries} {bytes} {:.2} {:.2} {:.2}",
        raw.as_secs_f64(),
        restore.as_secs_f64(),
        raw.as_secs_f64() / restore.as_secs_f64()
    );
}

async fn restore(brokers: &str, entries: usize) {
    use funnelhub_schemas::state::{DedupeEntry, FunnelSession};
    let kafka = KafkaConfig {
        brokers: brokers.to_owned(),
        topic_prefix: unique("bench-restore"),
        ..KafkaConfig::default()
    };
    ensure_topics(&kafka, &catalog_requests(&kafka))
        .await
        .expect("topics");
    let catalog = Catalog::new(&kafka.topic_prefix);
    let (_server, registry) = funnelhub_registry::start_private(&kafka, &unique("_schemas-bench"))
        .await
        .expect("registry");
    let config = ProcessConfig::default();
    let control = Default::default();
    let dedupe = funnelhub_processors::dedupe_stage(&registry, &catalog, &config, &control)
        .await
        .expect("dedupe");
    let now = funnelhub_schemas::ids::now_ms();
    restore_kind(
        "dedupe",
        &kafka,
        &dedupe,
        &catalog.name(Topic::RawTracking),
        entries,
        |i| {
            let key = format!("acme:track:pageview:{i:012}");
            let entry = DedupeEntry {
                dedupe_key: key.clone(),
                first_seen_offset: i as i64,
                record_time: now,
            };
            (key, entry)
        },
    )
    .await;
    let funnel = funnelhub_processors::funnel_stage(&registry, &catalog, &config, &control)
        .await
        .expect("funnel");
    let (_, sample) = funnelhub_schemas::testing::sample_state_entries();
    restore_kind(
        "funnel",
        &kafka,
        &funnel,
        &catalog.name(Topic::Deduped),
        entries,
        |i| {
            let mut session: FunnelSession = sample.clone();
            session.subject_id = format!("session-{i:012}");
            session.last_record_time = now;
            session.timeline = [0, 1, 2].map(|_| sample.timeline[0].clone()).to_vec();
            let key = funnelhub_schemas::catalog::key(&["acme", "onboarding", &session.subject_id]);
            (key, std::sync::Arc::new(session))
        },
    )
    .await;
}

/// The restore's baseline: partition 0 of `topic` read from its start to `records`
/// records, bytes only, by a consumer set as a restore's is.
fn raw_partition_read(kafka: &KafkaConfig, topic: &str, records: usize) -> Duration {
    let consumer: BaseConsumer = funnelhub_kafka::stage::restore_consumer(kafka, "bench-raw")
        .create()
        .expect("consumer");
    let started = Instant::now();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
        .expect("partition");
    consumer.assign(&tpl).expect("assign");
    let (mut read, mut bytes) = (0, 0);
    while read < records {
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.expect("read");
            bytes += message.key_len() + message.payload_len();
            read += 1;
        }
    }
    assert!(bytes > 0);
    started.elapsed()
}

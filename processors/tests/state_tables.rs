//! The processors' state topics are tables: one record per state key, tombstones when an
//! entry leaves the state. Against the real broker: after Kafka compacts them, a restore
//! reads fewer records and rebuilds exactly the state it rebuilt before.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use funnelhub_kafka::stage::{restore_partition, Stage};
use funnelhub_kafka::KafkaConfig;
use funnelhub_processors::testing::RawWriter;
use funnelhub_processors::{dedupe_stage, funnel_stage, match_stage};
use funnelhub_schemas::common::EventType;
use funnelhub_schemas::events::EdgeEvent;
use funnelhub_schemas::testing::{sample_order_event, sample_tracking_hit};
use funnelhub_schemas::{StageId, Topic};
use rdkafka::admin::{AdminOptions, AlterConfig, ResourceSpecifier};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Message, Offset, TopicPartitionList};

mod common;

use common::{counter, wait_for, Harness};

const HOUR: i64 = 60 * 60 * 1000;

/// Tracking hits of `sessions` sessions at `at` (three per session: a session's state is
/// rewritten twice), and one purchase of each of the first two sessions.
fn round(prefix: &str, sessions: usize, at: i64) -> Vec<EdgeEvent> {
    let mut events = Vec::new();
    for s in 0..sessions {
        for (i, event_type) in [
            EventType::Pageview,
            EventType::Click,
            EventType::InitiateCheckout,
        ]
        .into_iter()
        .enumerate()
        {
            let mut hit = sample_tracking_hit();
            hit.envelope.event_type = event_type;
            hit.envelope.event_id = format!("{prefix}-{s}-{i}");
            hit.client_event_id = None;
            hit.session_id = format!("{prefix}-session-{s}");
            hit.envelope.received_at = at + i as i64 * 1000;
            hit.envelope.occurred_at = hit.envelope.received_at;
            events.push(EdgeEvent::TrackingHit(hit));
        }
    }
    for s in 0..2 {
        let mut order = sample_order_event();
        order.order_id = format!("{prefix}-order-{s}");
        order.envelope.event_id = format!("{prefix}-order-{s}");
        order.session_id = Some(format!("{prefix}-session-{s}"));
        order.envelope.received_at = at + 10_000;
        order.envelope.occurred_at = order.envelope.received_at;
        events.push(EdgeEvent::OrderEvent(order));
    }
    events
}

/// Every record of `topic` now, as (key, has a value).
fn records(kafka: &KafkaConfig, topic: &str) -> Vec<(Vec<u8>, bool)> {
    let consumer: BaseConsumer =
        funnelhub_kafka::client::consumer_config(kafka, "test-state-tables", &[])
            .set("group.id", "test-state-tables")
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let partitions = metadata.topics()[0].partitions().len() as i32;
    let mut out = Vec::new();
    for partition in 0..partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, Duration::from_secs(10))
            .expect("watermarks");
        if high <= low {
            continue;
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(low))
            .expect("offset");
        consumer.assign(&tpl).expect("assign");
        let mut next = low;
        while next < high {
            let Some(message) = consumer.poll(Duration::from_secs(10)) else {
                panic!("{topic}:{partition} stopped before {high}");
            };
            let message = message.expect("read");
            next = message.offset() + 1;
            out.push((
                message.key().unwrap_or_default().to_vec(),
                message.payload().is_some(),
            ));
        }
    }
    out
}

/// Every source partition of `stage`'s inputs.
fn source_partitions(harness: &Harness, stage: StageId) -> Vec<(String, i32)> {
    let partitions = harness.kafka.partitions.expect("tests set partitions");
    stage
        .inputs()
        .iter()
        .flat_map(|topic| (0..partitions).map(move |p| (harness.catalog.name(*topic), p)))
        .collect()
}

/// What each of `stage`'s source partitions restores now (shown by `show`), and the
/// records it read.
async fn restore_stage<S: Stage>(
    harness: &Harness,
    stage: Arc<S>,
    id: StageId,
    show: impl Fn(&S::Processor) -> String,
) -> (Vec<String>, u64) {
    let mut states = Vec::new();
    let mut read = 0;
    for (topic, partition) in source_partitions(harness, id) {
        let restored = restore_partition(&harness.kafka, &stage, &topic, partition)
            .await
            .expect("restored");
        read += restored.records_read;
        states.push(format!("{topic}:{partition} {}", show(&restored.processor)));
    }
    (states, read)
}

/// What every stateful stage's partitions restore now: their states, compared as text,
/// and the records read.
async fn restore_all(harness: &Harness) -> (Vec<String>, u64) {
    let (registry, catalog, config, control) = (
        &harness.registry,
        &harness.catalog,
        &harness.config,
        &harness.control,
    );
    let stages = [
        restore_stage(
            harness,
            dedupe_stage(registry, catalog, config, control)
                .await
                .expect("dedupe"),
            StageId::Dedupe,
            |p| format!("{:?}", p.state().entries()),
        )
        .await,
        restore_stage(
            harness,
            funnel_stage(registry, catalog, config, control)
                .await
                .expect("funnel"),
            StageId::Funnel,
            |p| format!("{:?}", p.state().sessions()),
        )
        .await,
        restore_stage(
            harness,
            match_stage(registry, catalog, config, control)
                .await
                .expect("match"),
            StageId::Match,
            |p| format!("{:?}", p.state().snapshot()),
        )
        .await,
    ];
    stages
        .into_iter()
        .fold((Vec::new(), 0), |(mut states, read), (more, more_read)| {
            states.extend(more);
            (states, read + more_read)
        })
}

/// Make the broker compact `topic` now: segments that roll at once, any dirty ratio,
/// tombstones dropped at the first pass; then a record to roll the active segment of
/// every partition (its key belongs to no source partition).
async fn compact_now(kafka: &KafkaConfig, topic: &str) {
    let admin = funnelhub_kafka::client::admin(kafka, "test-compaction").expect("admin");
    let config = AlterConfig::new(ResourceSpecifier::Topic(topic))
        .set("cleanup.policy", "compact")
        .set("segment.ms", "100")
        .set("min.cleanable.dirty.ratio", "0.01")
        .set("delete.retention.ms", "0")
        .set("min.compaction.lag.ms", "0");
    let altered = admin
        .alter_configs(&[config], &AdminOptions::new())
        .await
        .expect("altered");
    assert!(altered.iter().all(Result::is_ok), "{altered:?}");
    roll(kafka, topic);
}

/// A record on every partition of `topic` (its key belongs to no source partition): a
/// segment older than `segment.ms` rolls, and the cleaner may compact it.
fn roll(kafka: &KafkaConfig, topic: &str) {
    let producer: ThreadedProducer<DefaultProducerContext> =
        funnelhub_kafka::client::client_config(kafka, "test-compaction")
            .create()
            .expect("producer");
    let partitions = kafka.partitions.expect("tests set partitions");
    for partition in 0..partitions {
        producer
            .send(
                BaseRecord::<[u8], [u8]>::to(topic)
                    .key(b"roll".as_slice())
                    .partition(partition),
            )
            .map_err(|(e, _)| e)
            .expect("sent");
    }
    producer.flush(Duration::from_secs(10)).expect("flushed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn state_restored_after_compaction_equals_the_state_before() {
    let mut harness = Harness::new("state-compaction").await;
    harness.config.dedupe_window_hours = 1;
    harness.config.session_ttl_hours = 1;
    harness.config.matching.lookback_hours = 1;
    harness.config.matching.max_out_of_order_secs = 0;
    // A batch per record: a session's every event rewrites its entry.
    harness.config.max_batch = 1;
    let start = 1_790_000_000_000;
    // A first round, then a second three hours of record time later: first-round dedupe
    // keys, sessions and visits leave the state (tombstones) as later records pass them,
    // sessions are rewritten, conversions wait then are decided (an entry replaced).
    // The second round is written once the first is through the matcher: routed by tenant,
    // records of different dedupe partitions may otherwise reach the matcher in any order,
    // and a first-round visit arriving after second-round ones is too old to be kept.
    let first = round("first", 20, start);
    let second = round("second", 20, start + 3 * HOUR);
    let writer = RawWriter::connect(&harness.kafka, &harness.registry).await;
    writer.write(&first).await;
    let processors = harness.start().await;
    let matched = || counter("funnelhub_stage_records_total", "stage=\"match\"");
    wait_for("the first round through the matcher", || {
        matched() >= first.len() as u64
    })
    .await;
    writer.write(&second).await;
    let events: Vec<_> = first.into_iter().chain(second).collect();
    wait_for("every event through the matcher", || {
        matched() >= events.len() as u64
    })
    .await;
    processors.stop().await.expect("stops");

    let state_topics: Vec<String> = [Topic::DedupeState, Topic::FunnelState, Topic::MatchState]
        .iter()
        .map(|t| harness.catalog.name(*t))
        .collect();
    let mut written = Vec::new();
    for topic in &state_topics {
        let records = records(&harness.kafka, topic);
        let tombstones = records.iter().filter(|(_, value)| !value).count();
        assert!(tombstones > 0, "{topic}: entries left the state");
        written.push(records.len());
    }
    let (before, read_before) = restore_all(&harness).await;
    assert!(
        before.iter().any(|s| s.contains("second-session")),
        "the second round is in the state: {before:?}"
    );

    for topic in &state_topics {
        compact_now(&harness.kafka, topic).await;
    }
    for (topic, written) in state_topics.iter().zip(&written) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let now = records(&harness.kafka, topic);
            // Each key once: its last entry, or its tombstone (Kafka drops tombstones on a
            // later pass). The roll records are not state.
            let state: Vec<&[u8]> = now
                .iter()
                .filter(|(key, _)| key != b"roll")
                .map(|(key, _)| &key[..])
                .collect();
            let keys: HashSet<&[u8]> = state.iter().copied().collect();
            if state.len() < *written && keys.len() == state.len() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{topic} not compacted: {} state records of {written}, {} keys",
                state.len(),
                keys.len()
            );
            // The new settings reach the log asynchronously: roll again until they have.
            tokio::time::sleep(Duration::from_secs(2)).await;
            roll(&harness.kafka, topic);
        }
    }
    let (after, read_after) = restore_all(&harness).await;
    println!(
        "state records read by a restore of every partition: {read_before} before \
         compaction, {read_after} after"
    );
    assert!(read_after < read_before, "{read_after} < {read_before}");
    assert_eq!(
        after, before,
        "the same state, read from the compacted tables"
    );
}

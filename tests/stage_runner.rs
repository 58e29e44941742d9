//! The stage runner on the real broker, with a relay stage whose downstream can be taken
//! away per partition: a stop or a revoke during an outage ends in time, a partition that
//! cannot keep up holds no other partition and loses nothing once it can, and a record the
//! downstream rejects goes to the DLQ while the rest flows.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use funnelhub_kafka::admin::{ensure_topics, TopicRequest};
use funnelhub_kafka::dlq::DeadLetters;
use funnelhub_kafka::stage::{
    self, Dependency, Output, PartitionProcessor, ProcessError, Record, RunningStage, Stage,
    StageSettings,
};
use funnelhub_kafka::testing::{read_records, read_until, unique};
use funnelhub_kafka::{client, KafkaConfig, SchemaRegistry, TopicCodec};
use funnelhub_schemas::derived::{DlqReason, DlqRecord};
use funnelhub_schemas::{Catalog, Topic};

/// What the relay writes to; partitions listed in `down` refuse every batch, and a batch
/// holding a value that starts with `poison` is rejected. A value that starts with
/// `inflate` is relayed as 1.5 MB, more than one Kafka message holds.
#[derive(Debug, Default)]
struct Downstream {
    down: Mutex<HashSet<i32>>,
    attempts: AtomicUsize,
}

impl Downstream {
    fn take_away(&self, partitions: &[i32]) {
        self.down.lock().expect("not poisoned").extend(partitions);
    }

    fn bring_back(&self) {
        self.down.lock().expect("not poisoned").clear();
    }
}

/// Copies every record of `input` to `output`, through `downstream`.
#[derive(Debug)]
struct Relay {
    input: String,
    output: Arc<str>,
    downstream: Arc<Downstream>,
    dead_letters: DeadLetters,
}

impl Stage for Relay {
    type Processor = RelayPartition;

    fn name(&self) -> &'static str {
        "relay"
    }

    fn inputs(&self) -> Vec<String> {
        vec![self.input.clone()]
    }

    fn state(&self) -> Option<&TopicCodec<DlqRecord>> {
        None
    }

    fn dead_letters(&self) -> Option<&DeadLetters> {
        Some(&self.dead_letters)
    }

    fn processor(self: &Arc<Self>, _topic: &str, partition: i32) -> RelayPartition {
        RelayPartition {
            relay: self.clone(),
            partition,
        }
    }
}

#[derive(Debug)]
struct RelayPartition {
    relay: Arc<Relay>,
    partition: i32,
}

impl PartitionProcessor for RelayPartition {
    type State = DlqRecord;

    async fn process(
        &mut self,
        batch: &[Record],
        out: &mut Vec<Output>,
    ) -> Result<(), ProcessError> {
        let downstream = &self.relay.downstream;
        downstream.attempts.fetch_add(1, Ordering::SeqCst);
        if downstream
            .down
            .lock()
            .expect("not poisoned")
            .contains(&self.partition)
        {
            return Err(ProcessError::unavailable(Dependency::Sink, "taken away"));
        }
        if batch
            .iter()
            .any(|r| r.value.as_deref().is_some_and(|v| v.starts_with(b"poison")))
        {
            return Err(ProcessError::Rejected("a poisoned value".into()));
        }
        out.extend(batch.iter().map(|r| {
            let mut value = r.value.clone().unwrap_or_default();
            if value.starts_with(b"inflate") {
                value.resize(1_500_000, b'.');
            }
            Output {
                topic: self.relay.output.clone(),
                key: r.key.clone().unwrap_or_default(),
                value,
                trace: None,
            }
        }));
        Ok(())
    }
}

struct Bench {
    kafka: KafkaConfig,
    registry: SchemaRegistry,
    _registry_server: funnelhub_runtime::RunningServer,
    input: String,
    output: String,
    group: String,
}

impl Bench {
    /// An input topic of two partitions and an output topic of one (so each input
    /// partition's order shows in it).
    async fn new(test: &str) -> Bench {
        let (kafka, server, registry) = funnelhub_registry::test_stack(test).await;
        let input = format!("{}.in", kafka.topic_prefix);
        let output = format!("{}.out", kafka.topic_prefix);
        let request = |name: &str, partitions| TopicRequest {
            name: name.to_owned(),
            partitions,
            configs: Vec::new(),
        };
        ensure_topics(&kafka, &[request(&input, 2), request(&output, 1)])
            .await
            .expect("topics");
        Bench {
            kafka,
            registry,
            _registry_server: server,
            input,
            output,
            group: unique("relay"),
        }
    }

    fn dlq(&self) -> String {
        Catalog::new(&self.kafka.topic_prefix).name(Topic::Dlq)
    }

    /// The first `count` dead letters, decoded.
    async fn dead_letters(&self, count: usize) -> Vec<DlqRecord> {
        let codec: TopicCodec<DlqRecord> = TopicCodec::register(&self.registry, &self.dlq())
            .await
            .expect("codec");
        let mut letters = Vec::new();
        for (_, value) in
            read_records(&self.kafka, &self.dlq(), count, Duration::from_secs(30)).await
        {
            letters.push(codec.decode(&value).await.expect("a dead letter"));
        }
        letters
    }

    /// Ten values for partition 0, `p0-<i>` but those `special` names (`poison`...).
    fn values(special: &[(usize, &str)]) -> Vec<String> {
        (0..10)
            .map(|i| match special.iter().find(|(at, _)| *at == i) {
                Some((_, kind)) => format!("{kind}-{i}"),
                None => format!("p0-{i}"),
            })
            .collect()
    }

    async fn member(&self, downstream: &Arc<Downstream>, settings: StageSettings) -> RunningStage {
        let relay = Relay {
            input: self.input.clone(),
            output: Arc::from(self.output.as_str()),
            downstream: downstream.clone(),
            dead_letters: DeadLetters::new(
                "relay",
                TopicCodec::register(&self.registry, &self.dlq())
                    .await
                    .expect("dlq codec"),
            ),
        };
        let settings = StageSettings {
            group: self.group.clone(),
            ..settings
        };
        stage::spawn(&self.kafka, Arc::new(relay), settings).expect("joins")
    }

    /// `count` records to `partition`, valued `p<partition>-<i>`.
    async fn write(&self, partition: i32, count: usize) {
        let values = (0..count).map(|i| format!("p{partition}-{i}")).collect();
        self.write_values(partition, values).await;
    }

    async fn write_values(&self, partition: i32, values: Vec<String>) {
        let producer = client::producer(&self.kafka, "relay-writer").expect("producer");
        let outputs: Vec<Output> = values
            .into_iter()
            .enumerate()
            .map(|(i, value)| Output {
                topic: Arc::from(self.input.as_str()),
                key: format!("k{i}").into_bytes(),
                value: value.into_bytes(),
                trace: None,
            })
            .collect();
        stage::send_all(&producer, outputs.iter().map(|o| (o, Some(partition))))
            .await
            .expect("written");
    }

    /// The output's values once `done` says they suffice (fails after `timeout`).
    async fn relayed(&self, timeout: Duration, done: impl Fn(&[String]) -> bool) -> Vec<String> {
        let values = |records: &[(Option<Vec<u8>>, Vec<u8>)]| -> Vec<String> {
            records
                .iter()
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                .collect()
        };
        let records = read_until(&self.kafka, &self.output, timeout, |records| {
            done(&values(records))
        })
        .await;
        values(&records)
    }
}

fn of_partition(values: &[String], partition: i32) -> Vec<String> {
    let prefix = format!("p{partition}-");
    values
        .iter()
        .filter(|v| v.starts_with(&prefix))
        .cloned()
        .collect()
}

fn expected(partition: i32, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("p{partition}-{i}")).collect()
}

/// Wait until `check` holds (fails after `timeout`).
async fn until(what: &str, timeout: Duration, check: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stop_during_an_outage_ends_at_once_and_the_stall_is_reported() {
    let bench = Bench::new("stage-stop").await;
    let downstream = Arc::new(Downstream::default());
    downstream.take_away(&[0, 1]);
    bench.write(0, 10).await;
    bench.write(1, 10).await;
    let member = bench.member(&downstream, StageSettings::default()).await;
    until("retrying", Duration::from_secs(30), || {
        downstream.attempts.load(Ordering::SeqCst) >= 4
    })
    .await;
    let stalled = member.stalled();
    assert!(
        !stalled.is_empty(),
        "a retrying partition counts as stalled"
    );
    assert!(stalled.iter().all(|s| s.dependency == Dependency::Sink));
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(20), member.stop())
        .await
        .expect("stop ends during the outage")
        .expect("no fatal error");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a partition waiting to retry stops at once, took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revoke_during_an_outage_hands_the_partitions_over_in_time() {
    let bench = Bench::new("stage-revoke").await;
    let stuck = Arc::new(Downstream::default());
    stuck.take_away(&[0, 1]);
    bench.write(0, 20).await;
    bench.write(1, 20).await;
    let settings = StageSettings {
        revoke_timeout: Duration::from_secs(5),
        ..StageSettings::default()
    };
    let first = bench.member(&stuck, settings.clone()).await;
    until("the first member retrying", Duration::from_secs(30), || {
        stuck.attempts.load(Ordering::SeqCst) >= 2
    })
    .await;
    // A second member joins: the first is revoked while its partitions wait to retry,
    // and the group settles with a partition each.
    let healthy = Arc::new(Downstream::default());
    let second = bench.member(&healthy, settings).await;
    let relayed = bench
        .relayed(Duration::from_secs(60), |values| {
            of_partition(values, 0).len() == 20 || of_partition(values, 1).len() == 20
        })
        .await;
    assert!(
        relayed.len() == 20,
        "only the second member's partition: {relayed:?}"
    );
    // The first leaves (during its outage): the second takes everything.
    tokio::time::timeout(Duration::from_secs(20), first.stop())
        .await
        .expect("the first member's stop ends during the outage")
        .expect("no fatal error");
    let relayed = bench
        .relayed(Duration::from_secs(60), |values| values.len() >= 40)
        .await;
    assert_eq!(of_partition(&relayed, 0), expected(0, 20));
    assert_eq!(of_partition(&relayed, 1), expected(1, 20));
    second.stop().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partition_that_cannot_keep_up_holds_no_other_and_loses_nothing() {
    let bench = Bench::new("stage-pause").await;
    let downstream = Arc::new(Downstream::default());
    downstream.take_away(&[0]);
    bench.write(0, 120).await;
    bench.write(1, 120).await;
    // A queue of 5 records per partition: partition 0's fills at once.
    let member = bench
        .member(
            &downstream,
            StageSettings {
                max_batch: 5,
                buffer: 5,
                ..StageSettings::default()
            },
        )
        .await;
    let relayed = bench
        .relayed(Duration::from_secs(60), |values| values.len() >= 120)
        .await;
    assert_eq!(
        of_partition(&relayed, 1),
        expected(1, 120),
        "partition 1 flows while partition 0 is held"
    );
    assert!(of_partition(&relayed, 0).is_empty());
    // `/readyz` names the held partition (here from the first failure, not after 30 s).
    let health = member.health();
    let ops = funnelhub_runtime::serve(
        "127.0.0.1:0".parse().expect("address"),
        funnelhub_runtime::ops_router_with_readiness(
            funnelhub_runtime::prometheus(),
            Arc::new(move || health.held_longer_than(Duration::ZERO)),
        ),
    )
    .await
    .expect("serves");
    let readyz = format!("{}/readyz", ops.url());
    let answer = reqwest::get(&readyz).await.expect("answers");
    assert_eq!(answer.status(), 503);
    let body: serde_json::Value = answer.json().await.expect("json");
    assert_eq!(body["ready"], false);
    assert_eq!(body["held"][0]["waiting_for"], "sink");
    let what = body["held"][0]["what"].as_str().expect("what");
    assert!(
        what.starts_with("relay ") && what.ends_with(".in:0"),
        "{what}"
    );
    downstream.bring_back();
    let relayed = bench
        .relayed(Duration::from_secs(60), |values| values.len() >= 240)
        .await;
    assert_eq!(
        of_partition(&relayed, 0),
        expected(0, 120),
        "paused and resumed: every record once, in order"
    );
    let answer = reqwest::get(&readyz).await.expect("answers");
    assert_eq!(answer.status(), 200, "ready again once the partition moves");
    ops.stop().await.expect("stops");
    member.stop().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rejected_record_is_dead_lettered_and_the_rest_of_its_partition_flows() {
    let bench = Bench::new("stage-poison").await;
    let values = Bench::values(&[(3, "poison"), (7, "poison")]);
    bench.write_values(0, values).await;
    let member = bench
        .member(&Arc::new(Downstream::default()), StageSettings::default())
        .await;
    let relayed = bench
        .relayed(Duration::from_secs(60), |values| values.len() >= 8)
        .await;
    let healthy: Vec<String> = [0, 1, 2, 4, 5, 6, 8, 9]
        .iter()
        .map(|i| format!("p0-{i}"))
        .collect();
    assert_eq!(relayed, healthy, "every other record, in order");
    let mut letters = bench.dead_letters(2).await;
    letters.sort_by_key(|l| l.source.as_ref().map(|s| s.offset));
    let offsets: Vec<i64> = letters
        .iter()
        .filter_map(|l| l.source.as_ref().map(|s| s.offset))
        .collect();
    assert_eq!(offsets, [3, 7]);
    for letter in &letters {
        assert_eq!(letter.reason, DlqReason::PermanentDeliveryFailure);
        assert_eq!(letter.stage, "relay");
        assert!(
            letter.error.contains("a poisoned value"),
            "{}",
            letter.error
        );
        assert!(letter
            .value
            .as_deref()
            .is_some_and(|v| v.starts_with(b"poison")));
    }
    member.stop().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_output_too_large_for_kafka_is_dead_lettered_and_the_rest_of_its_partition_flows() {
    let bench = Bench::new("stage-oversized").await;
    let values = Bench::values(&[(4, "inflate")]);
    bench.write_values(0, values).await;
    let member = bench
        .member(&Arc::new(Downstream::default()), StageSettings::default())
        .await;
    let relayed = bench
        .relayed(Duration::from_secs(60), |values| {
            values.iter().any(|v| v == "p0-9")
        })
        .await;
    // Records before the refused one may be written twice (same records): the batch is
    // processed again one record at a time.
    let mut distinct: Vec<String> = Vec::new();
    for value in relayed {
        if !distinct.contains(&value) {
            distinct.push(value);
        }
    }
    let healthy: Vec<String> = [0, 1, 2, 3, 5, 6, 7, 8, 9]
        .iter()
        .map(|i| format!("p0-{i}"))
        .collect();
    assert_eq!(distinct, healthy, "every other record, in order");
    let letter = bench.dead_letters(1).await.remove(0);
    assert_eq!(letter.source.as_ref().map(|s| s.offset), Some(4));
    assert_eq!(letter.reason, DlqReason::PermanentDeliveryFailure);
    assert!(
        letter.error.contains("MessageSizeTooLarge"),
        "{}",
        letter.error
    );
    assert!(!member.has_stopped(), "the stage keeps running");
    member.stop().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stage_that_reads_other_topics_than_the_stage_table_says_does_not_start() {
    let bench = Bench::new("stage-declared").await;
    let relay = Relay {
        input: bench.input.clone(),
        output: Arc::from(bench.output.as_str()),
        downstream: Arc::new(Downstream::default()),
        dead_letters: DeadLetters::new(
            "relay",
            TopicCodec::register(&bench.registry, &bench.dlq())
                .await
                .expect("dlq codec"),
        ),
    };
    let refused = stage::spawn_declared(
        &bench.kafka,
        funnelhub_schemas::StageId::Funnel,
        Arc::new(relay),
        StageSettings::default(),
    );
    match refused {
        Err(stage::StartError::Config(reason)) => {
            assert!(reason.contains("the stage table says funnel"), "{reason}")
        }
        other => panic!("started against the table: {:?}", other.map(|s| s.name())),
    }
}

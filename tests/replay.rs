//! `funnelhub replay` on the real broker: the dry run prints per partition from → to and
//! how many records are read again and changes nothing; a replay moves the committed
//! offsets; a group with a running member is refused.

use std::process::{Command, Output};
use std::time::Duration;

use funnelhub_kafka::replay::{apply, plan, ReplayFrom};
use funnelhub_kafka::KafkaConfig;
use funnelhub_schemas::{Catalog, Topic};
use funnelhub_sinks::testing::{dispatch_requests, write_requests};
use rdkafka::consumer::{BaseConsumer, Consumer};

fn replay(kafka: &KafkaConfig, registry_url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_funnelhub"))
        .arg("replay")
        .args(args)
        .args(["--brokers", &kafka.brokers])
        .env("FUNNELHUB_CONFIG", "/dev/null")
        .env("FUNNELHUB_KAFKA__TOPIC_PREFIX", &kafka.topic_prefix)
        .env("FUNNELHUB_CAPI__GROUP", &kafka.topic_prefix)
        .env("FUNNELHUB_SCHEMA_REGISTRY__URL", registry_url)
        .output()
        .expect("runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

async fn committed(kafka: &KafkaConfig, topic: &str) -> Vec<Option<i64>> {
    plan(
        kafka,
        &kafka.topic_prefix,
        &[topic.to_owned()],
        ReplayFrom::Earliest,
    )
    .await
    .expect("plan")
    .into_iter()
    .map(|p| p.committed)
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_plans_applies_and_refuses_while_the_group_runs() {
    let (kafka, server, registry) = funnelhub_registry::test_stack("replay").await;
    let topic = Catalog::new(&kafka.topic_prefix).name(Topic::CapiRequests);
    write_requests(&kafka, &registry, &dispatch_requests("acme", "111", 30))
        .await
        .expect("written");
    // The capi group has read everything.
    let group = kafka.topic_prefix.clone();
    let at_end = plan(
        &kafka,
        &group,
        std::slice::from_ref(&topic),
        ReplayFrom::Offset(i64::MAX),
    )
    .await
    .expect("plan");
    apply(&kafka, &group, &at_end).await.expect("committed");
    let ends: Vec<Option<i64>> = at_end.iter().map(|p| Some(p.high)).collect();
    assert_eq!(ends.iter().flatten().sum::<i64>(), 30);

    let dry = replay(&kafka, &server.url(), &["--stage", "capi", "--dry-run"]);
    let out = text(&dry);
    assert!(dry.status.success(), "{out}");
    assert!(out.contains("30 records will be processed again"), "{out}");
    assert!(out.contains(&format!("{topic}:0")), "per partition: {out}");
    assert!(out.contains("dry run"), "{out}");
    assert_eq!(
        committed(&kafka, &topic).await,
        ends,
        "a dry run changes nothing"
    );

    let run = replay(
        &kafka,
        &server.url(),
        &["--stage", "capi", "--to-offset", "5"],
    );
    let out = text(&run);
    assert!(run.status.success(), "{out}");
    let expected: Vec<Option<i64>> = at_end.iter().map(|p| Some(5.min(p.high))).collect();
    assert_eq!(committed(&kafka, &topic).await, expected, "{out}");

    let by_time = replay(
        &kafka,
        &server.url(),
        &["--stage", "capi", "--to-time", "2020-01-01T00:00:00Z"],
    );
    let out = text(&by_time);
    assert!(by_time.status.success(), "{out}");
    assert_eq!(
        committed(&kafka, &topic).await,
        vec![Some(0); at_end.len()],
        "{out}"
    );

    let bad = replay(
        &kafka,
        &server.url(),
        &["--stage", "capi", "--to-time", "yesterday"],
    );
    assert!(!bad.status.success());
    assert!(text(&bad).contains("RFC 3339"), "{}", text(&bad));
    let unknown = replay(&kafka, &server.url(), &["--stage", "nope"]);
    assert!(
        text(&unknown).contains("stages: dedupe, funnel"),
        "{}",
        text(&unknown)
    );

    // A time after every record: Kafka answers "no such offset" (-1) and the group moves to
    // the end of each partition, so nothing is read again.
    let future = replay(
        &kafka,
        &server.url(),
        &["--stage", "capi", "--to-time", "2099-01-01T00:00:00Z"],
    );
    let out = text(&future);
    assert!(future.status.success(), "{out}");
    assert!(out.contains("0 records will be processed again"), "{out}");
    assert_eq!(committed(&kafka, &topic).await, ends, "{out}");
    let from_start = replay(&kafka, &server.url(), &["--stage", "capi"]);
    assert!(from_start.status.success(), "{}", text(&from_start));
    assert_eq!(committed(&kafka, &topic).await, vec![Some(0); at_end.len()]);

    // A running member: the broker describes the group, so the replay is refused by name
    // and the offsets stay as they are.
    let member: BaseConsumer = funnelhub_kafka::client::client_config(&kafka, "test-member")
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    member.subscribe(&[&topic]).expect("subscribe");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while member.assignment().map(|a| a.count()).unwrap_or(0) == 0 {
        assert!(std::time::Instant::now() < deadline, "never assigned");
        let _ = member.poll(Duration::from_millis(100));
    }
    let refused = replay(
        &kafka,
        &server.url(),
        &["--stage", "capi", "--to-offset", "3"],
    );
    let out = text(&refused);
    assert!(!refused.status.success(), "{out}");
    assert!(out.contains("1 active member"), "{out}");
    assert_eq!(committed(&kafka, &topic).await, vec![Some(0); at_end.len()]);
}

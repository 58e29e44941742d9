//! Poison records (undecodable bytes, unknown schema id) go to the dead-letter topic with
//! the reason and the original bytes, and the stage keeps going.

mod common;

use std::collections::HashMap;

use common::{counter, Harness};
use funnelhub_kafka::stage::Output;
use funnelhub_kafka::TopicCodec;
use funnelhub_processors::dedupe::dedupe_key;
use funnelhub_processors::testing::{workload, RawWriter};
use funnelhub_schemas::common::SourcePosition;
use funnelhub_schemas::derived::{DedupedEvent, DlqReason, DlqRecord};
use funnelhub_schemas::Topic;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_records_are_dead_lettered_and_the_stage_keeps_going() {
    let harness = Harness::new("poison").await;
    let writer = RawWriter::connect(&harness.kafka, &harness.registry).await;
    let events = workload(3, 1, false);
    let good = writer.output(&events[0]);
    let garbage = b"definitely not avro".to_vec();
    let mut unknown_schema = vec![0, 0x7f, 0xff, 0xff, 0xff];
    unknown_schema.extend_from_slice(&good.value[5..]);
    let poison = |value: Vec<u8>| Output {
        value,
        ..good.clone()
    };
    writer
        .write_outputs(vec![
            poison(garbage.clone()),
            poison(unknown_schema.clone()),
        ])
        .await;
    // Further down: a deduped record without a tenant key (the match router cannot route
    // it) and garbage on the matcher's input.
    let deduped = TopicCodec::<DedupedEvent>::register(
        &harness.registry,
        &harness.catalog.name(Topic::Deduped),
    )
    .await
    .expect("codec");
    let keyless = deduped
        .encode(&DedupedEvent {
            dedupe_key: "k".into(),
            first_seen: SourcePosition {
                topic: "t".into(),
                partition: 0,
                offset: 0,
            },
            deduped_at: 0,
            event: events[0].clone(),
        })
        .expect("encodes");
    let deduped_topic = std::sync::Arc::from(deduped.topic());
    let inputs_topic = std::sync::Arc::from(harness.catalog.name(Topic::MatchingInputs));
    writer
        .write_outputs(vec![
            Output {
                topic: deduped_topic,
                key: Vec::new(),
                value: keyless.clone(),
                trace: None,
            },
            Output {
                topic: inputs_topic,
                key: b"acme".to_vec(),
                value: garbage.clone(),
                trace: None,
            },
        ])
        .await;
    writer.write_outputs(vec![good]).await;

    let processors = harness.start().await;
    let letters: Vec<DlqRecord> = harness.read(Topic::Dlq, 4).await;
    let deduped: Vec<DedupedEvent> = harness.read(Topic::Deduped, 2).await;
    assert!(
        deduped
            .iter()
            .any(|d| d.dedupe_key == dedupe_key(&events[0])),
        "kept going"
    );
    let by_stage: HashMap<(&str, DlqReason), &DlqRecord> = letters
        .iter()
        .map(|l| ((l.stage.as_str(), l.reason), l))
        .collect();
    assert_eq!(
        by_stage[&("match-route", DlqReason::InvalidRecord)]
            .value
            .as_deref(),
        Some(&keyless[..])
    );
    assert_eq!(
        by_stage[&("match", DlqReason::Undecodable)]
            .value
            .as_deref(),
        Some(&garbage[..])
    );
    let reasons: HashMap<DlqReason, &DlqRecord> = letters
        .iter()
        .filter(|l| l.stage == "dedupe")
        .map(|l| (l.reason, l))
        .collect();
    let undecodable = reasons[&DlqReason::Undecodable];
    assert_eq!(
        undecodable.value.as_deref(),
        Some(&garbage[..]),
        "original bytes kept"
    );
    assert_eq!(undecodable.stage, "dedupe");
    assert!(undecodable.source.is_some());
    let unknown = reasons[&DlqReason::UnknownSchema];
    assert!(unknown.error.contains("2147483647"), "{}", unknown.error);
    assert_eq!(unknown.value.as_deref(), Some(&unknown_schema[..]));
    assert_eq!(
        counter(
            "funnelhub_dlq_records_total",
            "stage=\"dedupe\",reason=\"undecodable\""
        ),
        1
    );
    processors.stop().await.expect("clean stop");
}

//! Poison records (undecodable bytes, unknown schema id) go to the dead-letter topic with
//! the reason and the original bytes, and the stage keeps going.

mod common;

use std::collections::HashMap;

use common::{counter, Harness};
use funnelhub_kafka::stage::Output;
use funnelhub_processors::dedupe::dedupe_key;
use funnelhub_processors::testing::{workload, RawWriter};
use funnelhub_schemas::derived::{DedupedEvent, DlqReason, DlqRecord};
use funnelhub_schemas::Topic;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_records_are_dead_lettered_and_the_stage_keeps_going() {
    let harness = Harness::new("poison").await;
    let writer = RawWriter::connect(&harness.kafka, &harness.registry).await;
    let events = workload(3, 1, false);
    let mut good = writer.output(&events[0]);
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
    good.key = good.key.clone();
    writer.write_outputs(vec![good]).await;

    let processors = harness.start().await;
    let letters: Vec<DlqRecord> = harness.read(Topic::Dlq, 2).await;
    let deduped: Vec<DedupedEvent> = harness.read(Topic::Deduped, 1).await;
    assert_eq!(deduped[0].dedupe_key, dedupe_key(&events[0]), "kept going");
    let reasons: HashMap<DlqReason, &DlqRecord> = letters.iter().map(|l| (l.reason, l)).collect();
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
        counter("funnelhub_dlq_records_total", "reason=\"undecodable\""),
        1
    );
    processors.stop().await.expect("clean stop");
}

//! `scripts/bench-clickhouse` (insert part): the ClickHouse sink's throughput next to
//! baselines measured in the same run, on the same rows.
//!
//! `bench_clickhouse <brokers> <clickhouse_url> <events>` writes `events` deduped events to a
//! fresh `deduped.events`, then measures:
//! (a) raw consumption of those records (bytes, one consumer);
//! (b) a raw `INSERT` of the same rows (already built in memory) into `events`, in batches
//!     of the sink's size, with the sink's client settings;
//! (c) the sink, from joining its group until it has committed every record.
//! Prints `events raw_consume_per_s raw_insert_per_s sink_per_s sink/insert sink/consume`.

use std::time::{Duration, Instant};

use funnelhub_clickhouse::{ClickHouseConfig, Server};
use funnelhub_kafka::testing::{group_caught_up, raw_consume, unique};
use funnelhub_kafka::KafkaConfig;
use funnelhub_schemas::common::{EventType, SourcePosition};
use funnelhub_schemas::derived::DedupedEvent;
use funnelhub_schemas::events::EdgeEvent;
use funnelhub_schemas::ids::now_ms;
use funnelhub_schemas::testing::sample_tracking_hit;
use funnelhub_schemas::{Catalog, Topic};
use funnelhub_sinks::clickhouse;
use funnelhub_sinks::clickhouse::rows::EventRow;
use funnelhub_sinks::testing::write_records;

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(brokers), Some(url), Some(Ok(events))) = (
        args.get(1),
        args.get(2),
        args.get(3).map(|n| n.parse::<usize>()),
    ) else {
        eprintln!("usage: bench_clickhouse <brokers> <clickhouse_url> <events>");
        std::process::exit(2);
    };
    let kafka = KafkaConfig {
        brokers: brokers.clone(),
        topic_prefix: unique("bench-ch"),
        ..KafkaConfig::default()
    };
    let (_server, registry) = funnelhub_registry::start_private(&kafka, &unique("_schemas-bench"))
        .await
        .expect("registry");
    let now = now_ms();
    let deduped: Vec<DedupedEvent> = (0..events)
        .map(|i| {
            let mut hit = sample_tracking_hit();
            hit.envelope.event_id = format!("bench-{i}");
            hit.envelope.event_type = if i % 3 == 0 {
                EventType::Pageview
            } else {
                EventType::Click
            };
            hit.envelope.occurred_at = now - (i as i64 % 86_400) * 1000;
            hit.session_id = format!("s-{}", i / 4);
            DedupedEvent {
                dedupe_key: format!("k-{i}"),
                first_seen: SourcePosition {
                    topic: "raw".into(),
                    partition: 0,
                    offset: i as i64,
                },
                deduped_at: now,
                event: EdgeEvent::TrackingHit(hit),
            }
        })
        .collect();
    write_records(
        &kafka,
        &registry,
        Topic::Deduped,
        deduped.iter().map(|d| (d.key(), d)),
    )
    .await
    .expect("written");
    let topic = Catalog::new(&kafka.topic_prefix).name(Topic::Deduped);

    // (a) raw consumption
    let raw = tokio::task::block_in_place(|| raw_consume(&kafka, &topic, events));
    let consume_rps = events as f64 / raw.as_secs_f64();

    // (b) raw INSERT of the same rows, same batch size and client settings
    let config = ClickHouseConfig {
        url: url.clone(),
        database: unique("bench").replace('-', "_"),
        group: unique("bench-ch"),
        ..ClickHouseConfig::default()
    };
    let (server, _) = Server::migrate(&config).await.expect("migrations");
    let insert_db = ClickHouseConfig {
        database: unique("bench_insert").replace('-', "_"),
        ..config.clone()
    };
    let (insert_server, _) = Server::migrate(&insert_db).await.expect("migrations");
    let rows: Vec<EventRow> = deduped.iter().map(EventRow::of_deduped).collect();
    let started = Instant::now();
    for chunk in rows.chunks(config.batch_rows) {
        let mut insert = insert_server
            .client
            .insert::<EventRow>("events")
            .await
            .expect("insert");
        for row in chunk {
            insert.write(row).await.expect("row");
        }
        insert.end().await.expect("acknowledged");
    }
    let insert_rps = events as f64 / started.elapsed().as_secs_f64();

    // (c) the sink
    let started = Instant::now();
    let (sink, _) = clickhouse::start(
        &kafka,
        &registry,
        &config,
        &funnelhub_tenants::ControlPlane::default(),
    )
    .await
    .expect("sink starts");
    let topics = vec![topic];
    while !tokio::task::block_in_place(|| group_caught_up(&kafka, &config.group, &topics)) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sink_rps = events as f64 / started.elapsed().as_secs_f64();
    sink.stop().await.expect("stops");
    let stored: u64 = server
        .client
        .query("SELECT count() FROM events FINAL")
        .fetch_one()
        .await
        .expect("count");
    assert_eq!(stored as usize, events, "every row stored once");
    for db in [&config.database, &insert_db.database] {
        let _ = server
            .client
            .query(&format!("DROP DATABASE {db}"))
            .execute()
            .await;
    }
    println!(
        "{events} {consume_rps:.0} {insert_rps:.0} {sink_rps:.0} {:.2} {:.2}",
        sink_rps / insert_rps,
        sink_rps / consume_rps
    );
}

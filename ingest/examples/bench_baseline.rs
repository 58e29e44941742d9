//! Baselines for `scripts/bench-edge`, measured in the same run as the edge:
//!
//! - `bench_baseline http <listen>`: a bare axum handler on the edge's route that reads the
//!   body, parses the JSON and answers, without validation, hashing or Kafka;
//! - `bench_baseline produce <brokers> <topic> <count>`: raw rdkafka produce rate of the
//!   edge's Avro records (same producer settings: idempotent, acks=all), all in flight;
//!   with `--then-consume`, also the rate of one plain consumer reading them back;
//! - `bench_baseline acked <brokers> <topic> <senders> <seconds>`: the same records written
//!   the way the edge writes them, `senders` at a time, each waiting for its own
//!   acknowledgement before the next (the broker's ceiling for a client that answers only
//!   after the ack, at the edge's concurrency); prints records/s, p50 and p99 ms.
//!
//! Both produce modes create `<topic>` with `PARTITIONS` partitions (default 6, the edge's
//! default) and add `PRODUCER_PROPERTIES` (`name=value` separated by spaces) to the
//! producer, as the edge's `[kafka] client_properties` would.

use std::time::{Duration, Instant};

use axum::routing::post;
use axum::{Json, Router};
use funnelhub_kafka::admin::{ensure_topics, TopicRequest};
use funnelhub_kafka::{client, AckedProducer, KafkaConfig};
use funnelhub_schemas::codec::encode;
use funnelhub_schemas::events::TrackingHit;
use funnelhub_schemas::testing::sample_tracking_hit;
use rdkafka::producer::FutureRecord;
use serde_json::{json, Value};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("http") => {
            let app = Router::new().route(
                "/api/v1/track/{kind}",
                post(|body: axum::body::Bytes| async move {
                    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    Json(json!({"status": "accepted", "session_id": parsed["session_id"]}))
                }),
            );
            let listener = tokio::net::TcpListener::bind(&args[2]).await.expect("bind");
            axum::serve(listener, app).await.expect("serve");
        }
        Some("produce") => {
            let kafka = bench_kafka(&args[2]);
            let topic = &args[3];
            let count: usize = args[4].parse().expect("count");
            bench_topic(&kafka, topic).await;
            let producer = client::producer(&kafka, "bench-raw").expect("producer");
            let records: Vec<(String, Vec<u8>)> = (0..count).map(record).collect();
            let started = Instant::now();
            // Enqueue everything (waiting only when the local queue is full), then await
            // every acknowledgement: the producer's full pipelined rate.
            let mut deliveries = Vec::with_capacity(count);
            for (key, value) in &records {
                loop {
                    match producer.send_result(FutureRecord::to(topic).key(key).payload(value)) {
                        Ok(delivery) => break deliveries.push(delivery),
                        Err((e, _))
                            if e.rdkafka_error_code()
                                == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) =>
                        {
                            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                        }
                        Err((e, _)) => panic!("enqueue failed: {e}"),
                    }
                }
            }
            for delivery in deliveries {
                delivery.await.expect("delivered").expect("acknowledged");
            }
            let secs = started.elapsed().as_secs_f64();
            if args.get(5).is_some_and(|a| a == "--then-consume") {
                // Then one plain consumer reads them all back (bytes, no decoding).
                let read = tokio::task::spawn_blocking({
                    let (kafka, topic) = (kafka.clone(), topic.clone());
                    move || funnelhub_kafka::testing::raw_consume(&kafka, &topic, count)
                })
                .await
                .expect("consumed");
                println!(
                    "{:.0} {:.0}",
                    count as f64 / secs,
                    count as f64 / read.as_secs_f64()
                );
            } else {
                println!("{:.0}", count as f64 / secs);
            }
        }
        Some("acked") => {
            let kafka = bench_kafka(&args[2]);
            let topic = args[3].clone();
            let senders: usize = args[4].parse().expect("senders");
            let seconds: f64 = args[5].parse().expect("seconds");
            bench_topic(&kafka, &topic).await;
            let producer =
                AckedProducer::new(&kafka, "bench-acked", Duration::from_secs(30)).expect("producer");
            // One warm-up record per sender (metadata, producer id), not measured.
            let run = |duration: Duration| {
                let tasks: Vec<_> = (0..senders)
                    .map(|sender| {
                        let (producer, topic) = (producer.clone(), topic.clone());
                        tokio::spawn(async move {
                            let mut latencies = Vec::new();
                            let started = Instant::now();
                            let mut i = 0usize;
                            while started.elapsed() < duration {
                                let (key, value) = record(sender * 1_000_000 + i);
                                let sent = Instant::now();
                                producer.send(&topic, key.as_bytes(), Some(&value)).await.expect("acknowledged");
                                latencies.push(sent.elapsed());
                                i += 1;
                            }
                            latencies
                        })
                    })
                    .collect();
                async move {
                    let mut all = Vec::new();
                    for task in tasks {
                        all.extend(task.await.expect("sender"));
                    }
                    all
                }
            };
            run(Duration::from_secs(3)).await;
            let started = Instant::now();
            let mut latencies = run(Duration::from_secs_f64(seconds)).await;
            let secs = started.elapsed().as_secs_f64();
            latencies.sort();
            let ms = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
            println!("{:.0} {:.2} {:.2}", latencies.len() as f64 / secs, ms(0.5), ms(0.99));
        }
        _ => eprintln!(
            "usage: bench_baseline http <listen> | produce <brokers> <topic> <count> [--then-consume] \
             | acked <brokers> <topic> <senders> <seconds>"
        ),
    }
}

/// `brokers`, plus the producer properties from `PRODUCER_PROPERTIES`.
fn bench_kafka(brokers: &str) -> KafkaConfig {
    let mut kafka = KafkaConfig {
        brokers: brokers.to_owned(),
        ..KafkaConfig::default()
    };
    for property in std::env::var("PRODUCER_PROPERTIES")
        .unwrap_or_default()
        .split_whitespace()
    {
        let (name, value) = property
            .split_once('=')
            .expect("PRODUCER_PROPERTIES: name=value");
        kafka
            .client_properties
            .insert(name.to_owned(), value.to_owned());
    }
    kafka
}

/// The benchmark's topic, with `PARTITIONS` partitions (default 6, the edge's default).
async fn bench_topic(kafka: &KafkaConfig, topic: &str) {
    ensure_topics(
        kafka,
        &[TopicRequest {
            name: topic.to_owned(),
            partitions: std::env::var("PARTITIONS")
                .ok()
                .map(|p| p.parse().expect("PARTITIONS: a number"))
                .unwrap_or(6),
            configs: vec![],
        }],
    )
    .await
    .expect("topic");
}

/// Record `i`: a click of its own session, keyed like the edge keys it.
fn record(i: usize) -> (String, Vec<u8>) {
    let mut hit: TrackingHit = sample_tracking_hit();
    hit.session_id = format!("s-{i}");
    hit.envelope.event_id = format!("e-{i}");
    (format!("bench:s-{i}"), encode(1, &hit).expect("encodes"))
}

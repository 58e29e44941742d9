//! Baselines for `scripts/bench-edge`, measured in the same run as the edge:
//!
//! - `bench_baseline http <listen>`: a bare axum handler on the edge's route that reads the
//!   body, parses the JSON and answers, without validation, hashing or Kafka;
//! - `bench_baseline produce <brokers> <topic> <count>`: raw rdkafka produce rate of the
//!   edge's Avro records (same producer settings: idempotent, acks=all), all in flight;
//!   with `--then-consume`, also the rate of one plain consumer reading them back.

use std::time::Instant;

use axum::routing::post;
use axum::{Json, Router};
use funnelhub_kafka::admin::{ensure_topics, TopicRequest};
use funnelhub_kafka::{client, KafkaConfig};
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
            let kafka = KafkaConfig {
                brokers: args[2].clone(),
                ..KafkaConfig::default()
            };
            let topic = &args[3];
            let count: usize = args[4].parse().expect("count");
            ensure_topics(
                &kafka,
                &[TopicRequest {
                    name: topic.clone(),
                    partitions: 6,
                    configs: vec![],
                }],
            )
            .await
            .expect("topic");
            let producer = client::producer(&kafka, "bench-raw").expect("producer");
            let records: Vec<(String, Vec<u8>)> = (0..count)
                .map(|i| {
                    let mut hit: TrackingHit = sample_tracking_hit();
                    hit.session_id = format!("s-{i}");
                    hit.envelope.event_id = format!("e-{i}");
                    (format!("bench:s-{i}"), encode(1, &hit).expect("encodes"))
                })
                .collect();
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
        _ => eprintln!(
            "usage: bench_baseline http <listen> | produce <brokers> <topic> <count> [--then-consume]"
        ),
    }
}

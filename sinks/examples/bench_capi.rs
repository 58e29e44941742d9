//! `scripts/bench-capi`: the CAPI sink's delivery rate next to baselines measured in the
//! same run, on the same records.
//!
//! `bench_capi <brokers> <events>` writes `events` dispatch requests (two tenants) to a
//! fresh `capi.requests`, then measures:
//! (a) raw consumption: one plain consumer reading every record's bytes (no decoding);
//! (b) the emulator alone: the same events as JSON bodies of 1,000, posted by 6 concurrent
//!     clients straight to the Graph API emulator (what Meta's side costs here);
//! (c) the sink: from joining the group until the emulator holds every event.
//! Prints `events raw_consume_per_s emulator_per_s sink_per_s ratio_to_raw`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use funnelhub_emulators::Faults;
use funnelhub_kafka::testing::{raw_consume, unique};
use funnelhub_kafka::KafkaConfig;
use funnelhub_schemas::{Catalog, Topic};
use funnelhub_sinks::meta_capi::payload::{EventsBody, ServerEvent};
use funnelhub_sinks::meta_capi::{self, CapiConfig};
use funnelhub_sinks::testing::{
    dispatch_requests, test_control, test_emulator, test_token, write_requests, TEST_TENANTS,
};

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(brokers), Some(Ok(events))) = (args.get(1), args.get(2).map(|n| n.parse())) else {
        eprintln!("usage: bench_capi <brokers> <events>");
        std::process::exit(2);
    };
    let kafka = KafkaConfig {
        brokers: brokers.clone(),
        topic_prefix: unique("bench-capi"),
        ..KafkaConfig::default()
    };
    let (_server, registry) = funnelhub_registry::start_private(&kafka, &unique("_schemas-bench"))
        .await
        .expect("registry");
    let mut requests = Vec::with_capacity(events);
    for (tenant, pixel) in TEST_TENANTS {
        requests.extend(dispatch_requests(
            tenant,
            pixel,
            events / TEST_TENANTS.len(),
        ));
    }
    let events = requests.len();
    write_requests(&kafka, &registry, &requests)
        .await
        .expect("written");

    // (a) raw consumption
    let topic = Catalog::new(&kafka.topic_prefix).name(Topic::CapiRequests);
    let raw = tokio::task::block_in_place(|| raw_consume(&kafka, &topic, events));
    let raw_eps = events as f64 / raw.as_secs_f64();

    // (b) the emulator alone
    let emulator = test_emulator(Faults::default()).await;
    let bodies: Vec<(String, Vec<u8>)> = requests
        .chunks(1000)
        .map(|chunk| {
            let body = EventsBody {
                data: chunk.iter().map(ServerEvent::of).collect(),
                test_event_code: None,
            };
            let pixel = chunk[0].pixel_id.clone();
            (pixel, serde_json::to_vec(&body).expect("serializes"))
        })
        .collect();
    let bodies = Arc::new(bodies);
    let started = Instant::now();
    let http = reqwest::Client::new();
    let clients: Vec<_> = (0..6)
        .map(|worker| {
            let (bodies, http, url) = (bodies.clone(), http.clone(), emulator.url());
            tokio::spawn(async move {
                for (pixel, body) in bodies.iter().skip(worker).step_by(6) {
                    let answer = http
                        .post(format!("{url}/v25.0/{pixel}/events"))
                        .query(&[("access_token", test_token(pixel))])
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                        .expect("answers");
                    assert!(answer.status().is_success());
                }
            })
        })
        .collect();
    for client in clients {
        client.await.expect("client ran");
    }
    let emulator_eps = events as f64 / started.elapsed().as_secs_f64();
    emulator.stop().await.expect("stops");

    // (c) the sink
    let emulator = test_emulator(Faults::default()).await;
    let config = CapiConfig {
        graph_url: emulator.url(),
        group: unique("bench-capi"),
        requests_per_second: 10_000,
        ..CapiConfig::default()
    };
    let started = Instant::now();
    let sink = meta_capi::start(&kafka, &registry, &config, &test_control())
        .await
        .expect("sink starts");
    let mut first = None;
    while emulator.counts().distinct_events < events {
        if first.is_none() && emulator.counts().requests > 0 {
            first = Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!(
        "sink: first request after {first:?}, all after {:?}",
        started.elapsed()
    );
    let sink_eps = events as f64 / started.elapsed().as_secs_f64();
    sink.stop().await.expect("stops");
    println!(
        "{events} {raw_eps:.0} {emulator_eps:.0} {sink_eps:.0} {:.2}",
        sink_eps / raw_eps
    );
}

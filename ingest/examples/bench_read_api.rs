//! `scripts/bench-clickhouse` (read part): latency of the read API's funnel and timeline
//! endpoints over HTTP with millions of rows in ClickHouse.
//!
//! `bench_read_api <brokers> <clickhouse_url> <rows> <requests> <hours>` loads `rows`
//! onboarding events of one tenant (6 per session, spread over the last `hours`) into
//! `events`, and one `session_stages` row per session, server-side
//! (`INSERT ... SELECT FROM numbers`); then
//! serves the edge with the read API and sends `requests` sequential requests to
//! `GET /api/v1/onboard/funnel`, `GET /api/v1/onboard/sessions/{id}/timeline` (random
//! sessions), `GET /api/v1/events?session_id=` and `GET /api/v1/events/{id}` (random
//! events). Prints one line per endpoint: `name p50_ms p99_ms max_ms`.

use std::time::{Duration, Instant};

use funnelhub_clickhouse::{ClickHouseConfig, Server};
use funnelhub_ingest::{EdgeConfig, Secret, TenantConfig};
use funnelhub_kafka::testing::unique;
use funnelhub_kafka::{KafkaConfig, SchemaRegistryConfig};
use rand::Rng;

const STAGES: &str =
    "['started','domain_validated','dns_applied','account_created','infra_synced','completed']";
const TYPES: &str = "['onboarding_started','domain_validated','dns_applied','account_created','infra_synced','onboarding_completed']";

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let parse = |i: usize| args.get(i).and_then(|a| a.parse::<u64>().ok());
    let (Some(brokers), Some(url), Some(rows), Some(requests), Some(hours)) =
        (args.get(1), args.get(2), parse(3), parse(4), parse(5))
    else {
        eprintln!("usage: bench_read_api <brokers> <clickhouse_url> <rows> <requests> <hours>");
        std::process::exit(2);
    };
    let clickhouse = ClickHouseConfig {
        url: url.clone(),
        database: unique("bench_api").replace('-', "_"),
        ..ClickHouseConfig::default()
    };
    let (server, _) = Server::migrate(&clickhouse).await.expect("migrations");
    let db = &clickhouse.database;
    let sessions = rows / 6;
    let spread = hours * 3600;
    let started = Instant::now();
    let load = [
        format!(
            "INSERT INTO {db}.events (tenant_id, event_id, event_type, source, occurred_at, \
             occurred_at_ms, received_at_ms, session_id, gateway, order_id, gateway_status, value, \
             currency, product_id, utm_source, utm_medium, utm_campaign, fbclid, consent_ads, \
             dedupe_key, source_topic, source_partition, source_offset, payload) \
             SELECT 'bench', concat('e-', toString(number)), arrayElement({TYPES}, number % 6 + 1), \
             'onboarding_portal', toDateTime(intDiv(toInt64(toUnixTimestamp(now())) * 1000 - (intDiv(number, 6) % {spread}) * 1000, 1000)), \
             toInt64(toUnixTimestamp(now())) * 1000 - (intDiv(number, 6) % {spread}) * 1000, \
             toInt64(toUnixTimestamp(now())) * 1000 - (intDiv(number, 6) % {spread}) * 1000, \
             concat('onb-', toString(intDiv(number, 6))), '', '', '', NULL, '', '', '', '', '', '', 1, \
             concat('k-', toString(number)), 'raw.onboarding', 0, toInt64(number), \
             '{{\"OnboardingEvent\":{{\"domain\":\"cliente.com.br\",\"attributes\":{{}}}}}}' \
             FROM numbers({rows})"
        ),
        format!(
            "INSERT INTO {db}.session_stages (tenant_id, funnel, subject_id, stage, outcome, rank, \
             updated_at, updated_at_ms, domain, utm_campaign) \
             SELECT 'bench', 'onboarding', concat('onb-', toString(number)), \
             arrayElement({STAGES}, number % 6 + 1), if(number % 6 = 5, 'completed', 'in_progress'), \
             toUInt16(number % 6), now() - (number % {spread}), \
             (toInt64(toUnixTimestamp(now())) - number % {spread}) * 1000, \
             concat('cliente', toString(number), '.com.br'), '' FROM numbers({sessions})"
        ),
    ];
    for sql in &load {
        server.client.query(sql).execute().await.expect("loaded");
    }
    eprintln!(
        "loaded {rows} events and {sessions} sessions in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let kafka = KafkaConfig {
        brokers: brokers.clone(),
        topic_prefix: unique("bench-api"),
        ..KafkaConfig::default()
    };
    let (registry, _) = funnelhub_registry::start_private(&kafka, &unique("_schemas-bench"))
        .await
        .expect("registry");
    let mut tenant = TenantConfig::new("bench");
    tenant.api_keys = vec![Secret::from("bench-key")];
    let edge = funnelhub_ingest::start(
        &EdgeConfig {
            listen: ([127, 0, 0, 1], 0).into(),
            ..EdgeConfig::default()
        },
        funnelhub_ingest::TenantDirectory::fixed([tenant]),
        &kafka,
        &SchemaRegistryConfig {
            url: registry.url(),
        },
        None,
        Some(&clickhouse),
    )
    .await
    .expect("edge");
    let http = reqwest::Client::new();
    let base = edge.url();
    let mut rng = rand::rng();
    let mut measure = |name: &str, path: &dyn Fn(&mut rand::rngs::ThreadRng) -> String| {
        let paths: Vec<String> = (0..requests).map(|_| path(&mut rng)).collect();
        (name.to_owned(), paths)
    };
    let plans = [
        measure("funnel", &|_| "/api/v1/onboard/funnel".to_string()),
        measure("timeline", &|rng| {
            format!(
                "/api/v1/onboard/sessions/onb-{}/timeline",
                rng.random_range(0..sessions)
            )
        }),
        measure("events_page", &|rng| {
            format!(
                "/api/v1/events?limit=100&session_id=onb-{}",
                rng.random_range(0..sessions)
            )
        }),
        measure("event_detail", &|rng| {
            format!("/api/v1/events/e-{}", rng.random_range(0..rows))
        }),
    ];
    for (name, paths) in plans {
        let mut latencies = Vec::with_capacity(paths.len());
        for path in paths {
            let started = Instant::now();
            let response = http
                .get(format!("{base}{path}"))
                .bearer_auth("bench-key")
                .send()
                .await
                .expect("answers");
            assert!(
                response.status().is_success(),
                "{path}: {}",
                response.status()
            );
            let _ = response.bytes().await.expect("body");
            latencies.push(started.elapsed());
        }
        latencies.sort();
        let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "{name} {:.1} {:.1} {:.1}",
            ms(at(0.5)),
            ms(at(0.99)),
            ms(*latencies.last().expect("requests"))
        );
    }
    edge.stop().await.expect("stops");
    let _ = server
        .client
        .query(&format!("DROP DATABASE {db}"))
        .execute()
        .await;
}

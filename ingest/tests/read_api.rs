//! The read API over real data: shuffled and duplicated onboarding events go through the
//! dedupe and funnel processors and the ClickHouse sink (real broker, real ClickHouse),
//! then the API answers the funnel, timelines, tickets, event listings and details as
//! the ground truth says, only to the tenant's own key; and a replay re-enqueues a stored
//! dispatch request.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use funnelhub_clickhouse::ClickHouseConfig;
use funnelhub_ingest::producer::EdgeProducer;
use funnelhub_ingest::read::ReadApi;
use funnelhub_ingest::request::Tenants;
use funnelhub_ingest::{app, EdgeConfig, EdgeState, Secret, TenantConfig};
use funnelhub_kafka::testing::{record_count, unique};
use funnelhub_kafka::{AckedProducer, KafkaConfig};
use funnelhub_processors::testing::RawWriter;
use funnelhub_processors::{ProcessConfig, Stages};
use funnelhub_schemas::common::EventType;
use funnelhub_schemas::events::EdgeEvent;
use funnelhub_schemas::ids::now_ms;
use funnelhub_schemas::testing::sample_onboarding_event;
use funnelhub_schemas::{Catalog, Topic};
use funnelhub_sinks::testing::{dispatch_requests, write_requests};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use tower::ServiceExt;

const WAIT: Duration = Duration::from_secs(120);
const MILESTONES: [EventType; 6] = [
    EventType::OnboardingStarted,
    EventType::DomainValidated,
    EventType::DnsApplied,
    EventType::AccountCreated,
    EventType::InfraSynced,
    EventType::OnboardingCompleted,
];
const STAGES: [&str; 6] = [
    "started",
    "domain_validated",
    "dns_applied",
    "account_created",
    "infra_synced",
    "completed",
];

struct Truth {
    /// Furthest stage per in-progress or completed session.
    stages: BTreeMap<&'static str, u64>,
    failed: u64,
    /// Distinct events per session.
    events: BTreeMap<String, usize>,
    total_events: usize,
}

/// Sessions reaching random depths, some failing, every event sent once or twice (a
/// retried webhook gets a new id: dedupe by (type, session, domain) removes it), all
/// shuffled.
fn workload(tenant: &str, sessions: usize) -> (Vec<EdgeEvent>, Truth) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut events = Vec::new();
    let mut truth = Truth {
        stages: STAGES.iter().map(|s| (*s, 0)).collect(),
        failed: 0,
        events: BTreeMap::new(),
        total_events: 0,
    };
    let start = now_ms() - 3 * 3600 * 1000;
    for s in 0..sessions {
        let session = format!("onb-{s}");
        let depth = rng.random_range(1..=MILESTONES.len());
        let fails = depth < MILESTONES.len() && rng.random_bool(0.25);
        let mut kinds: Vec<EventType> = MILESTONES[..depth].to_vec();
        if fails {
            kinds.push(EventType::OnboardingFailed);
            truth.failed += 1;
        } else {
            *truth.stages.get_mut(STAGES[depth - 1]).expect("stage") += 1;
        }
        truth.events.insert(session.clone(), kinds.len());
        truth.total_events += kinds.len();
        for (i, kind) in kinds.into_iter().enumerate() {
            let copies = if rng.random_bool(0.3) { 2 } else { 1 };
            for copy in 0..copies {
                let mut e = sample_onboarding_event();
                e.envelope.tenant_id = tenant.into();
                e.envelope.event_type = kind;
                e.envelope.event_id = format!("{session}-{i}-{copy}");
                e.envelope.occurred_at = start + (s * 1000 + i * 60_000) as i64;
                e.envelope.received_at = e.envelope.occurred_at + copy as i64 * 5000;
                e.session_id = session.clone();
                e.domain = format!("cliente{s}.com.br");
                e.attributes = BTreeMap::from([("step".to_string(), i.to_string())]);
                events.push(EdgeEvent::OnboardingEvent(e));
            }
        }
    }
    events.shuffle(&mut rng);
    (events, truth)
}

/// A tenant whose key `key` has scope admin, and `<key>-read` scope read.
fn tenant(id: &str, key: &str) -> TenantConfig {
    let mut tenant = TenantConfig::new(id);
    tenant.admin_api_keys = vec![Secret::from(key)];
    tenant.api_keys = vec![Secret::from(format!("{key}-read").as_str())];
    tenant
}

async fn get(app: &Router, path: &str, key: Option<&str>) -> (StatusCode, Value) {
    call(app, "GET", path, key).await
}

async fn call(app: &Router, method: &str, path: &str, key: Option<&str>) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 24)
        .await
        .expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn edge(kafka: &KafkaConfig, registry_url: &str, clickhouse: &ClickHouseConfig) -> Router {
    let registry = funnelhub_kafka::SchemaRegistry::new(&funnelhub_kafka::SchemaRegistryConfig {
        url: registry_url.into(),
    })
    .expect("registry client");
    let config = EdgeConfig::default();
    let producer = EdgeProducer::connect(kafka, &registry, Duration::from_secs(5), 5)
        .await
        .expect("producer");
    app(Arc::new(EdgeState {
        client_ip: Default::default(),
        limits: Default::default(),
        tenants: Tenants::new([tenant("acme", "key-acme"), tenant("beta", "key-beta")]),
        producer,
        registry_url: registry_url.into(),
        prometheus: None,
        read: Some(ReadApi::new(
            clickhouse.clone(),
            kafka.clone(),
            AckedProducer::new(kafka, "test-replay", Duration::from_secs(5)).expect("producer"),
            funnelhub_kafka::TopicCodec::register(
                &registry,
                &funnelhub_schemas::Catalog::new(&kafka.topic_prefix)
                    .name(funnelhub_schemas::Topic::Suppressions),
            )
            .await
            .expect("suppressions codec"),
            5,
        )),
        setup: funnelhub_setup::http::SetupHttp::disabled(),
        config,
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_read_api_answers_from_clickhouse_what_the_pipeline_computed() {
    let (kafka, server, registry) = funnelhub_registry::test_stack("read-api").await;
    let port = std::env::var("CLICKHOUSE_HTTP_PORT").unwrap_or_else(|_| "8123".into());
    let clickhouse = ClickHouseConfig {
        url: format!("http://127.0.0.1:{port}"),
        database: unique("api").replace('-', "_"),
        group: kafka.topic_prefix.clone(),
        linger_ms: 100,
        ..ClickHouseConfig::default()
    };
    let (events, truth) = workload("acme", 60);
    RawWriter::connect(&kafka, &registry)
        .await
        .write(&events)
        .await;
    let requests = dispatch_requests("acme", "111", 3);
    write_requests(&kafka, &registry, &requests)
        .await
        .expect("requests");

    let config = ProcessConfig {
        group_prefix: kafka.topic_prefix.clone(),
        ..ProcessConfig::default()
    };
    let processors = funnelhub_processors::start(
        &kafka,
        &registry,
        &config,
        Stages::All,
        &funnelhub_tenants::ControlPlane::default(),
    )
    .await
    .expect("processors");
    let (sink, _) = funnelhub_sinks::clickhouse::start(
        &kafka,
        &registry,
        &clickhouse,
        &funnelhub_tenants::ControlPlane::default(),
    )
    .await
    .expect("sink");
    let app = edge(&kafka, &server.url(), &clickhouse).await;

    // Wait until the funnel holds every session.
    let deadline = tokio::time::Instant::now() + WAIT;
    let funnel = loop {
        let (status, body) = get(&app, "/api/v1/onboard/funnel", Some("key-acme")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if body["sessions"] == 60 {
            break body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "funnel incomplete: {body}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    for (stage, count) in &truth.stages {
        assert_eq!(funnel["stages"][stage], *count, "{stage}: {funnel}");
    }
    assert_eq!(funnel["failed"], truth.failed);
    let active = funnel["active_sessions"].as_array().expect("list");
    let in_progress: u64 = truth
        .stages
        .iter()
        .filter(|(s, _)| **s != "completed")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(active.len() as u64, in_progress.min(50));

    // Keys: none → 401, another tenant's key sees none of acme's data.
    let (status, body) = get(&app, "/api/v1/onboard/funnel", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, _) = get(&app, "/api/v1/onboard/funnel", Some("key-nobody")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (_, beta) = get(&app, "/api/v1/onboard/funnel", Some("key-beta")).await;
    assert_eq!(beta["sessions"], 0, "{beta}");
    let (status, _) = get(
        &app,
        "/api/v1/onboard/sessions/onb-3/timeline",
        Some("key-beta"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Timelines: each session's distinct events in time order.
    for session in ["onb-0", "onb-7", "onb-42"] {
        let (status, timeline) = get(
            &app,
            &format!("/api/v1/onboard/sessions/{session}/timeline"),
            Some("key-acme"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{timeline}");
        let entries = timeline["events"].as_array().expect("events");
        assert_eq!(
            entries.len(),
            truth.events[session],
            "{session}: {timeline}"
        );
        let times: Vec<i64> = entries
            .iter()
            .map(|e| e["created_at_ms"].as_i64().expect("time"))
            .collect();
        assert!(
            times.windows(2).all(|w| w[0] <= w[1]),
            "time order: {times:?}"
        );
        assert_eq!(entries[0]["data"]["step"], "0");
        assert!(timeline["domain"]
            .as_str()
            .is_some_and(|d| d.ends_with(".com.br")));
    }

    // Tickets: account.created opened one; its detail carries the session's timeline.
    let tickets = sql(&clickhouse, &format!(
        "SELECT ticket_id, session_id FROM {}.ops_tickets FINAL WHERE tenant_id = 'acme' ORDER BY ticket_id LIMIT 1",
        clickhouse.database
    ))
    .await;
    let (ticket_id, ticket_session) = tickets.trim().split_once('\t').expect("a ticket");
    let (status, ticket) = get(
        &app,
        &format!("/api/v1/desk/tickets/{ticket_id}"),
        Some("key-acme"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{ticket}");
    assert_eq!(ticket["session_id"], ticket_session);
    assert_eq!(
        ticket["timeline"].as_array().map(Vec::len),
        Some(truth.events[ticket_session])
    );
    let (status, _) = get(
        &app,
        &format!("/api/v1/desk/tickets/{ticket_id}"),
        Some("key-beta"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Listing: pages of 25 until the end hold every distinct event once.
    let mut seen = BTreeSet::new();
    let mut pages = 0;
    let mut path = "/api/v1/events?limit=25&type=dns_applied".to_string();
    let dns_applied = events_of(&events, EventType::DnsApplied);
    loop {
        let (status, page) = get(&app, &path, Some("key-acme")).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        pages += 1;
        for e in page["events"].as_array().expect("events") {
            assert_eq!(e["event_type"], "dns_applied");
            assert!(
                seen.insert(e["session_id"].as_str().expect("session").to_owned()),
                "repeated: {e}"
            );
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => {
                path = format!("/api/v1/events?limit=25&type=dns_applied&cursor={cursor}")
            }
            None => break,
        }
    }
    assert_eq!(
        seen.len(),
        dns_applied,
        "every dns_applied session once, {pages} pages"
    );
    let (status, body) = get(&app, "/api/v1/events?limit=0", Some("key-acme")).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("limit"))
    );

    // Detail: an event received twice shows both copies.
    let twice = sql(
        &clickhouse,
        &format!(
            "SELECT event_id FROM {db}.events FINAL WHERE tenant_id = 'acme' AND dedupe_key IN \
         (SELECT dedupe_key FROM {db}.raw_events FINAL WHERE tenant_id = 'acme' \
          GROUP BY dedupe_key HAVING count() = 2) ORDER BY event_id LIMIT 1",
            db = clickhouse.database
        ),
    )
    .await;
    let twice = twice.trim();
    assert!(!twice.is_empty(), "some event was sent twice");
    let (status, detail) = get(&app, &format!("/api/v1/events/{twice}"), Some("key-acme")).await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    assert_eq!(detail["dedupe"]["copies_received"], 2, "{detail}");
    assert_eq!(
        detail["event"]["record"]["OnboardingEvent"]["session_id"],
        detail["event"]["session_id"]
    );
    let (status, _) = get(&app, &format!("/api/v1/events/{twice}"), Some("key-beta")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Replay: the stored dispatch request is written again to capi.requests.
    let topic = Catalog::new(&kafka.topic_prefix).name(Topic::CapiRequests);
    let deadline = tokio::time::Instant::now() + WAIT;
    let (status, body) = call(&app, "POST", "/api/v1/replay/acme-1", Some("key-acme-read")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden")),
        "a read key does not replay: {body}"
    );
    let replayed = loop {
        let (status, body) = call(&app, "POST", "/api/v1/replay/acme-1", Some("key-acme")).await;
        if status == StatusCode::ACCEPTED {
            break body;
        }
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "request never stored"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(replayed["dispatch_id"], "d-acme-1");
    assert_eq!(
        record_count(&kafka, &topic),
        4,
        "three requests and the replayed one"
    );
    let (status, _) = call(&app, "POST", "/api/v1/replay/acme-1", Some("key-beta")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    sink.stop().await.expect("sink stops");
    processors.stop().await.expect("processors stop");
    sql(
        &clickhouse,
        &format!("DROP DATABASE {}", clickhouse.database),
    )
    .await;
}

/// Sessions with an event of `kind`.
fn events_of(events: &[EdgeEvent], kind: EventType) -> usize {
    events
        .iter()
        .filter(|e| e.envelope().event_type == kind)
        .filter_map(|e| match e {
            EdgeEvent::OnboardingEvent(o) => Some(o.session_id.clone()),
            _ => None,
        })
        .collect::<BTreeSet<_>>()
        .len()
}

async fn sql(clickhouse: &ClickHouseConfig, query: &str) -> String {
    let response = reqwest::Client::new()
        .post(&clickhouse.url)
        .body(query.to_owned())
        .send()
        .await
        .expect("clickhouse answers");
    assert!(response.status().is_success());
    response.text().await.expect("body")
}

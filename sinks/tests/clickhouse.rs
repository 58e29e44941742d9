//! The ClickHouse sink on the real broker and the real ClickHouse: replaying every topic
//! leaves identical query results, and ClickHouse going away mid-ingestion loses nothing
//! and duplicates nothing.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use funnelhub_kafka::admin::reset_group_offsets;
use funnelhub_kafka::testing::{group_caught_up, unique};
use funnelhub_kafka::{KafkaConfig, SchemaRegistry};
use funnelhub_schemas::common::{EventType, SourcePosition};
use funnelhub_schemas::derived::{
    DedupedEvent, DlqReason, DlqRecord, FunnelOutcome, FunnelStage, MatchMethod,
};
use funnelhub_schemas::events::EdgeEvent;
use funnelhub_schemas::testing::{
    sample_derived, sample_onboarding_event, sample_ops_ticket, sample_order_event,
    sample_tracking_hit,
};
use funnelhub_schemas::{Catalog, Topic};
use funnelhub_sinks::clickhouse::{self, sink::STORED, ClickHouseConfig};
use funnelhub_sinks::testing::{dispatch_requests, write_records, write_requests};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(120);

fn clickhouse_url() -> String {
    let port = std::env::var("CLICKHOUSE_HTTP_PORT").unwrap_or_else(|_| "8123".into());
    format!("http://127.0.0.1:{port}")
}

fn config(kafka: &KafkaConfig, url: &str) -> ClickHouseConfig {
    ClickHouseConfig {
        url: url.to_owned(),
        database: unique("t").replace('-', "_"),
        group: kafka.topic_prefix.clone(),
        linger_ms: 100,
        ..ClickHouseConfig::default()
    }
}

/// Run `query` on the real server; the answer as TSV.
async fn sql(query: &str) -> String {
    let response = reqwest::Client::new()
        .post(clickhouse_url())
        .body(query.to_owned())
        .send()
        .await
        .expect("clickhouse answers");
    let status = response.status();
    let text = response.text().await.expect("body");
    assert!(status.is_success(), "{query}: {text}");
    text
}

/// Rows each table holds after deduplication, and what analysts would ask of them.
async fn results(db: &str) -> String {
    let mut out = String::new();
    for (table, id) in [
        (
            "raw_events",
            "(source_topic, source_partition, source_offset)",
        ),
        ("events", "event_id"),
        ("funnel_transitions", "transition_id"),
        ("session_stages", "(funnel, subject_id)"),
        ("ops_tickets", "ticket_id"),
        ("matches", "match_id"),
        ("capi_requests", "dispatch_id"),
        ("dispatch_attempts", "attempt_id"),
        ("dlq", "dlq_id"),
    ] {
        let counts = sql(&format!(
            "SELECT count(), uniqExact({id}) FROM {db}.{table} FINAL"
        ))
        .await;
        out.push_str(&format!("{table}\t{counts}"));
    }
    for query in [
        "SELECT funnel, stage, outcome, count() FROM {db}.session_stages FINAL GROUP BY funnel, stage, outcome ORDER BY funnel, stage, outcome",
        "SELECT event_type, count(), sum(value) FROM {db}.events FINAL GROUP BY event_type ORDER BY event_type",
        "SELECT gateway, count() FROM {db}.conversions GROUP BY gateway ORDER BY gateway",
        "SELECT method, count() FROM {db}.matches FINAL GROUP BY method ORDER BY method",
        "SELECT event_name, count(), sum(value) FROM {db}.capi_requests FINAL GROUP BY event_name ORDER BY event_name",
    ] {
        out.push_str(&sql(&query.replace("{db}", db)).await);
    }
    out
}

/// Counts of distinct records written per table, for the checks below.
struct Written {
    raw: usize,
    deduped: usize,
    sessions: usize,
    transitions: usize,
    requests: usize,
}

/// Write a bit of every stored topic; transitions of each session out of order.
async fn write_workload(kafka: &KafkaConfig, registry: &SchemaRegistry, round: usize) -> Written {
    let mut hits = Vec::new();
    let mut orders = Vec::new();
    let mut onboarding = Vec::new();
    for i in 0..120 {
        let mut hit = sample_tracking_hit();
        hit.envelope.event_id = format!("hit-{round}-{i}");
        hit.session_id = format!("s-{round}-{}", i % 40);
        hit.envelope.event_type = if i % 2 == 0 {
            EventType::Click
        } else {
            EventType::Pageview
        };
        hits.push(hit);
        let mut order = sample_order_event();
        order.envelope.event_id = format!("order-{round}-{i}");
        order.order_id = format!("HP-{round}-{i}");
        orders.push(order);
        let mut e = sample_onboarding_event();
        e.envelope.event_id = format!("onb-{round}-{i}");
        e.session_id = format!("onb-{round}-{}", i % 30);
        onboarding.push(e);
    }
    // The raw topics hold a re-sent copy of each click: raw keeps both, events one.
    let resent: Vec<_> = hits
        .iter()
        .filter(|h| h.envelope.event_type == EventType::Click)
        .cloned()
        .collect();
    let key = |e: &EdgeEvent| e.key();
    write_records(
        kafka,
        registry,
        Topic::RawTracking,
        hits.iter()
            .chain(&resent)
            .map(|h| (key(&EdgeEvent::TrackingHit(h.clone())), h)),
    )
    .await
    .expect("raw tracking");
    write_records(
        kafka,
        registry,
        Topic::RawOrders,
        orders
            .iter()
            .map(|o| (key(&EdgeEvent::OrderEvent(o.clone())), o)),
    )
    .await
    .expect("raw orders");
    write_records(
        kafka,
        registry,
        Topic::RawOnboarding,
        onboarding
            .iter()
            .map(|o| (key(&EdgeEvent::OnboardingEvent(o.clone())), o)),
    )
    .await
    .expect("raw onboarding");
    let deduped: Vec<DedupedEvent> = hits
        .into_iter()
        .map(EdgeEvent::TrackingHit)
        .chain(orders.into_iter().map(EdgeEvent::OrderEvent))
        .chain(onboarding.into_iter().map(EdgeEvent::OnboardingEvent))
        .enumerate()
        .map(|(i, event)| DedupedEvent {
            dedupe_key: event.envelope().event_id.clone(),
            first_seen: SourcePosition {
                topic: "raw".into(),
                partition: 0,
                offset: i as i64,
            },
            deduped_at: 1_790_000_000_000,
            event,
        })
        .collect();
    write_records(
        kafka,
        registry,
        Topic::Deduped,
        deduped.iter().map(|d| (d.key(), d)),
    )
    .await
    .expect("deduped");

    let (template, matched, _, attempt) = sample_derived();
    let stages = [
        (FunnelStage::Started, FunnelOutcome::InProgress),
        (FunnelStage::DomainValidated, FunnelOutcome::InProgress),
        (FunnelStage::DnsApplied, FunnelOutcome::Failed),
        (FunnelStage::Completed, FunnelOutcome::Completed),
    ];
    let mut transitions = Vec::new();
    for session in 0..30 {
        // Each session reaches a different depth; written furthest first.
        let depth = 1 + session % stages.len();
        for (stage, outcome) in stages[..depth].iter().rev() {
            let mut t = template.clone();
            t.subject_id = format!("onb-{round}-{session}");
            t.to_stage = *stage;
            t.outcome = *outcome;
            t.transition_id = format!("tr-{round}-{session}-{stage:?}");
            transitions.push(t);
        }
    }
    write_records(
        kafka,
        registry,
        Topic::FunnelTransitions,
        transitions.iter().map(|t| (t.subject_id.clone(), t)),
    )
    .await
    .expect("transitions");
    let tickets: Vec<_> = (0..10)
        .map(|i| {
            let mut t = sample_ops_ticket();
            t.ticket_id = format!("ticket-{round}-{i}");
            t
        })
        .collect();
    write_records(
        kafka,
        registry,
        Topic::OpsTickets,
        tickets.iter().map(|t| (t.session_id.clone(), t)),
    )
    .await
    .expect("tickets");
    let matches: Vec<_> = (0..50)
        .map(|i| {
            let mut m = matched.clone();
            m.match_id = format!("m-{round}-{i}");
            m.method = if i % 5 == 0 {
                MatchMethod::Unmatched
            } else {
                MatchMethod::ClickId
            };
            m
        })
        .collect();
    write_records(
        kafka,
        registry,
        Topic::MatchResults,
        matches.iter().map(|m| (m.tenant_id.clone(), m)),
    )
    .await
    .expect("matches");
    let requests = dispatch_requests(&format!("acme{round}"), "111", 80);
    write_requests(kafka, registry, &requests)
        .await
        .expect("requests");
    let attempts: Vec<_> = (0..40)
        .map(|i| {
            let mut a = attempt.clone();
            a.attempt_id = format!("a-{round}-{i}");
            a
        })
        .collect();
    write_records(
        kafka,
        registry,
        Topic::CapiAttempts,
        attempts.iter().map(|a| (a.tenant_id.clone(), a)),
    )
    .await
    .expect("attempts");
    let letters: Vec<_> = (0..5)
        .map(|i| DlqRecord {
            dlq_id: format!("dlq-{round}-{i}"),
            stage: "capi".into(),
            reason: DlqReason::PermanentDeliveryFailure,
            error: "Meta refused the event".into(),
            source: None,
            tenant_id: Some("acme".into()),
            event_id: Some(format!("e-{i}")),
            key: None,
            value: None,
            failed_at: 1_790_000_000_000,
        })
        .collect();
    write_records(
        kafka,
        registry,
        Topic::Dlq,
        letters.iter().map(|d| (d.dlq_id.clone(), d)),
    )
    .await
    .expect("dlq");
    Written {
        raw: 120 + 60 + 120 + 120,
        deduped: 360,
        sessions: 30,
        transitions: transitions.len(),
        requests: requests.len(),
    }
}

fn stored_topics(kafka: &KafkaConfig) -> Vec<String> {
    let catalog = Catalog::new(&kafka.topic_prefix);
    STORED.iter().map(|t| catalog.name(*t)).collect()
}

async fn until_caught_up(kafka: &KafkaConfig, group: &str) {
    let topics = stored_topics(kafka);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (kafka, group, topics) = (kafka.clone(), group.to_owned(), topics.clone());
        let done = tokio::task::spawn_blocking(move || group_caught_up(&kafka, &group, &topics))
            .await
            .expect("checked");
        if done {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sink did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replaying_every_topic_leaves_identical_query_results() {
    let (kafka, _server, registry) = funnelhub_registry::test_stack("ch-replay").await;
    let config = config(&kafka, &clickhouse_url());
    let written = write_workload(&kafka, &registry, 0).await;

    let (sink, server) = clickhouse::start(&kafka, &registry, &config)
        .await
        .expect("starts");
    assert!(
        server.version.major > 0,
        "version detected: {}",
        server.version_text
    );
    until_caught_up(&kafka, &config.group).await;
    sink.stop().await.expect("stops");
    let first = results(&config.database).await;
    let db = &config.database;
    assert_eq!(
        sql(&format!("SELECT count() FROM {db}.raw_events FINAL"))
            .await
            .trim(),
        written.raw.to_string(),
        "raw keeps every record, re-sent copies included"
    );
    assert_eq!(
        sql(&format!("SELECT count() FROM {db}.events FINAL"))
            .await
            .trim(),
        written.deduped.to_string()
    );
    assert_eq!(
        sql(&format!(
            "SELECT count() FROM {db}.funnel_transitions FINAL"
        ))
        .await
        .trim(),
        written.transitions.to_string()
    );
    assert_eq!(
        sql(&format!("SELECT count() FROM {db}.capi_requests FINAL"))
            .await
            .trim(),
        written.requests.to_string()
    );
    // Transitions were written furthest first: each session still shows its furthest.
    assert_eq!(
        sql(&format!(
            "SELECT stage, outcome, count() FROM {db}.session_stages FINAL GROUP BY stage, outcome ORDER BY stage"
        ))
        .await,
        "completed\tcompleted\t7\ndns_applied\tfailed\t7\ndomain_validated\tin_progress\t8\nstarted\tin_progress\t8\n",
        "{} sessions", written.sessions
    );

    // Replay everything: the same rows again, and nothing changes in the results.
    reset_group_offsets(&kafka, &config.group, &stored_topics(&kafka))
        .await
        .expect("reset");
    let (sink, _) = clickhouse::start(&kafka, &registry, &config)
        .await
        .expect("restarts");
    until_caught_up(&kafka, &config.group).await;
    sink.stop().await.expect("stops");
    let inserted_twice = sql(&format!("SELECT count() FROM {db}.events")).await;
    let replayed = results(&config.database).await;
    assert_eq!(
        replayed,
        first,
        "identical after replay ({} event rows before merges)",
        inserted_twice.trim()
    );
    sql(&format!("DROP DATABASE {db}")).await;
}

/// A TCP forwarder to ClickHouse that can be cut: while down, connections are refused
/// (accepted and dropped) and open ones are killed, as when the server stops.
struct Proxy {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("address");
        let up = Arc::new(AtomicBool::new(true));
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (flag, open) = (up.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !flag.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees the connection closed
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                open.lock().expect("not poisoned").push(task);
            }
        });
        Proxy {
            addr,
            up,
            connections,
        }
    }

    fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        for task in self.connections.lock().expect("not poisoned").drain(..) {
            task.abort();
        }
    }

    fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clickhouse_going_away_mid_ingestion_loses_and_duplicates_nothing() {
    let (kafka, _server, registry) = funnelhub_registry::test_stack("ch-down").await;
    let target: SocketAddr = clickhouse_url()
        .trim_start_matches("http://")
        .parse()
        .expect("address");
    let proxy = Proxy::start(target).await;
    let config = config(&kafka, &format!("http://{}", proxy.addr));
    let db = config.database.clone();

    write_workload(&kafka, &registry, 0).await;
    let (sink, _) = clickhouse::start(&kafka, &registry, &config)
        .await
        .expect("starts");
    until_caught_up(&kafka, &config.group).await;
    proxy.down();
    write_workload(&kafka, &registry, 1).await;
    // Inserts fail while it is away; the sink retries and holds the offsets.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let topics = stored_topics(&kafka);
    let (k, g, t) = (kafka.clone(), config.group.clone(), topics.clone());
    let caught_up = tokio::task::spawn_blocking(move || group_caught_up(&k, &g, &t))
        .await
        .expect("checked");
    assert!(
        !caught_up,
        "no offset moves past rows ClickHouse did not take"
    );
    assert!(funnelhub_runtime::counter_sum("funnelhub_clickhouse_insert_errors_total", "") > 0);
    // The held records show as consumer lag (librdkafka statistics, every 10 s).
    until_lag(&config.group, |lag| lag > 0).await;
    proxy.up();
    until_caught_up(&kafka, &config.group).await;
    until_lag(&config.group, |lag| lag == 0).await;
    sink.stop().await.expect("stops");

    let events = sql(&format!(
        "SELECT count(), uniqExact(event_id) FROM {db}.events FINAL"
    ))
    .await;
    assert_eq!(events, "720\t720\n", "both rounds, each event once");
    let raw = sql(&format!("SELECT count() FROM {db}.raw_events FINAL")).await;
    assert_eq!(raw.trim(), "840");
    let requests = sql(&format!(
        "SELECT count(), uniqExact(dispatch_id) FROM {db}.capi_requests FINAL"
    ))
    .await;
    assert_eq!(requests, "160\t160\n");
    sql(&format!("DROP DATABASE {db}")).await;
}

/// Wait until the sum of `funnelhub_consumer_lag` over `group`'s partitions passes `check`.
async fn until_lag(group: &str, check: impl Fn(u64) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    let label = format!("group=\"{group}\"");
    loop {
        let rendered = funnelhub_runtime::prometheus().render();
        let series: Vec<u64> = rendered
            .lines()
            .filter(|l| l.starts_with("funnelhub_consumer_lag{") && l.contains(&label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .map(|v| v as u64)
            .collect();
        if !series.is_empty() && check(series.iter().sum()) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "lag of {group}: {series:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

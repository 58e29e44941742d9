//! The ClickHouse sink on the real broker and the real ClickHouse: replaying every topic
//! leaves identical query results, and ClickHouse going away, or the broker restarting,
//! mid-ingestion loses nothing and duplicates nothing.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use funnelhub_clickhouse::ClickHouseConfig;
use funnelhub_kafka::admin::{catalog_requests, ensure_topics, reset_group_offsets};
use funnelhub_kafka::testing::{group_caught_up, unique, PrivateBroker};
use funnelhub_kafka::KafkaConfig;
use funnelhub_schemas::Catalog;
use funnelhub_sinks::clickhouse::{self, sink::STORED};
use funnelhub_sinks::testing::write_every_topic;
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

/// The sink with no tenants of its own, started (migrations applied, group joined).
async fn start_sink(
    kafka: &KafkaConfig,
    registry: &funnelhub_kafka::SchemaRegistry,
    config: &ClickHouseConfig,
) -> (
    funnelhub_kafka::stage::RunningStage,
    funnelhub_clickhouse::Server,
) {
    clickhouse::start(
        kafka,
        registry,
        config,
        &funnelhub_tenants::ControlPlane::default(),
    )
    .await
    .expect("the sink starts")
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
    let written = write_every_topic(&kafka, &registry, 0).await;

    let (sink, server) = start_sink(&kafka, &registry, &config).await;
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
    let (sink, _) = start_sink(&kafka, &registry, &config).await;
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

/// A TCP forwarder to ClickHouse that can go silent: while down, open connections are
/// killed and new ones are accepted but never answered, as when the server hangs or the
/// network drops packets (nothing tells the client the connection is dead).
struct Proxy {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    /// Connections accepted while down, held open unanswered until up again.
    silent: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("address");
        let up = Arc::new(AtomicBool::new(true));
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let silent: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (flag, open, held) = (up.clone(), connections.clone(), silent.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !flag.load(Ordering::SeqCst) {
                    held.lock().expect("not poisoned").push(client);
                    continue;
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
            silent,
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
        self.silent.lock().expect("not poisoned").clear();
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
    let config = ClickHouseConfig {
        insert_timeout_secs: 2,
        ..config(&kafka, &format!("http://{}", proxy.addr))
    };
    let db = config.database.clone();

    write_every_topic(&kafka, &registry, 0).await;
    let (sink, _) = start_sink(&kafka, &registry, &config).await;
    until_caught_up(&kafka, &config.group).await;
    proxy.down();
    write_every_topic(&kafka, &registry, 1).await;
    // Inserts get no answer while it is away: each is abandoned after its timeout and
    // retried, and the offsets are held.
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
    until_insert_errors().await;
    // The held records show as consumer lag (librdkafka statistics, every 10 s).
    until_lag(&config.group, |lag| lag > 0).await;
    proxy.up();
    until_caught_up(&kafka, &config.group).await;
    until_lag(&config.group, |lag| lag == 0).await;
    sink.stop().await.expect("stops");
    assert_both_rounds_once(&db).await;
    sql(&format!("DROP DATABASE {db}")).await;
}

/// Wait until an insert failed (here: abandoned after its timeout).
async fn until_insert_errors() {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while funnelhub_runtime::counter_sum("funnelhub_clickhouse_insert_errors_total", "") == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "an insert that gets no answer fails"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Both rounds of every topic, each row once: what a sink that lost or doubled nothing holds.
async fn assert_both_rounds_once(db: &str) {
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_restart_mid_ingestion_loses_and_duplicates_nothing() {
    // The registry lives on the shared broker; the records on a broker of the test's own.
    let (shared, _server, registry) = funnelhub_registry::test_stack("ch-broker").await;
    let mut broker = PrivateBroker::start("ch-broker");
    let kafka = KafkaConfig {
        brokers: broker.brokers(),
        ..shared
    };
    ensure_topics(&kafka, &catalog_requests(&kafka))
        .await
        .expect("topics");
    let config = config(&kafka, &clickhouse_url());
    let db = config.database.clone();

    write_every_topic(&kafka, &registry, 0).await;
    let (sink, _) = start_sink(&kafka, &registry, &config).await;
    // Stopped while the sink reads the first round; the second round is written after
    // the broker is back.
    tokio::task::block_in_place(|| broker.stop());
    tokio::time::sleep(Duration::from_secs(3)).await;
    tokio::task::block_in_place(|| broker.start_again());
    write_every_topic(&kafka, &registry, 1).await;
    until_caught_up(&kafka, &config.group).await;
    sink.stop().await.expect("stops");
    assert_both_rounds_once(&db).await;
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

#[tokio::test]
async fn retention_deletes_rows_older_than_each_tenants_days() {
    use funnelhub_clickhouse::Server;
    use funnelhub_schemas::common::SourcePosition;
    use funnelhub_schemas::events::EdgeEvent;
    use funnelhub_sinks::clickhouse::rows::EventRow;

    let kafka = funnelhub_kafka::testing::kafka_config("ch-retention");
    let mut config = config(&kafka, &clickhouse_url());
    config.retention_days = 90;
    let mut acme = funnelhub_tenants::TenantConfig::new("acme");
    acme.retention_days = Some(30);
    let tenants = funnelhub_tenants::TenantDirectory::fixed([acme]);
    let (server, _) = Server::migrate(&config).await.expect("migrations");
    let now = funnelhub_schemas::ids::now_ms();
    let day = 24 * 3600 * 1000;
    let mut insert = server
        .client
        .insert::<EventRow>("events")
        .await
        .expect("insert");
    for tenant in ["acme", "beta"] {
        for age in [10, 60, 200] {
            let mut hit = funnelhub_schemas::testing::sample_tracking_hit();
            hit.envelope.tenant_id = tenant.into();
            hit.envelope.event_id = format!("{tenant}-{age}");
            hit.envelope.occurred_at = now - age * day;
            let position = SourcePosition {
                topic: "t".into(),
                partition: 0,
                offset: age,
            };
            insert
                .write(&EventRow::raw(&EdgeEvent::TrackingHit(hit), &position))
                .await
                .expect("row");
        }
    }
    insert.end().await.expect("inserted");

    config
        .retention(&tenants)
        .enforce(&server.client, &config.database)
        .await
        .expect("issued");
    let db = &config.database;
    // Mutations run in the background: wait until none is pending.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let pending = sql(&format!(
            "SELECT count() FROM system.mutations WHERE database = '{db}' AND is_done = 0"
        ))
        .await;
        if pending.trim() == "0" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "mutations never finished"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let kept = sql(&format!(
        "SELECT event_id FROM {db}.events ORDER BY event_id"
    ))
    .await;
    assert_eq!(
        kept, "acme-10\nbeta-10\nbeta-60\n",
        "acme keeps 30 days, others 90"
    );
    sql(&format!("DROP DATABASE {db}")).await;
}

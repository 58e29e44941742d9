//! The Grafana dashboards work without Grafana: every ClickHouse panel query, Grafana's
//! macros expanded, runs on the real local ClickHouse over data the sink wrote and answers
//! the columns the panel shows, and runs on a current ClickHouse (chDB) too; every
//! Prometheus expression parses (`promtool`).

mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use funnelhub_clickhouse::ClickHouseConfig;
use funnelhub_kafka::testing::{group_caught_up, unique};
use funnelhub_schemas::Catalog;
use funnelhub_sinks::clickhouse::sink::STORED;
use funnelhub_sinks::testing::write_every_topic;
use serde_json::Value;

fn dashboard(name: &str) -> Value {
    let path = format!("dashboards/grafana/dashboards/{name}.json");
    serde_json::from_str(&std::fs::read_to_string(&path).expect("dashboard file")).expect("JSON")
}

/// (panel title, query) of every target of `datasource_uid`, and template variables.
fn queries(dashboard: &Value, uid: &str, field: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            if target["datasource"]["uid"] == uid {
                let query = target[field].as_str().expect("query").to_owned();
                out.push((panel["title"].as_str().expect("title").to_owned(), query));
            }
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if variable["datasource"]["uid"] == uid {
            let query = variable["query"].as_str().expect("query").to_owned();
            out.push((format!("variable {}", variable["name"]), query));
        }
    }
    out
}

/// Grafana's ClickHouse plugin macros as it expands them, for `tenant` over all time.
fn expand(sql: &str, db: &str) -> String {
    // Time buckets use Grafana's `$__interval_s` rather than the plugin's
    // `$__timeInterval`, whose `toStartOfInterval` ClickHouse 18.16 does not have.
    let mut out = sql
        .replace("${tenant}", "acme")
        .replace("$__interval_s", "3600")
        .replace("funnelhub.", &format!("{db}."));
    for (mac, expansion) in [(
        "$__timeFilter(",
        "{c} >= toDateTime(0) AND {c} <= toDateTime(4102444800)",
    )] {
        while let Some(start) = out.find(mac) {
            let end = start + out[start..].find(')').expect("macro closes");
            let column = out[start + mac.len()..end].to_owned();
            out.replace_range(start..=end, &expansion.replace("{c}", &column));
        }
    }
    assert!(!out.contains('$'), "every macro expanded: {out}");
    out
}

/// The columns each ClickHouse panel shows.
fn expected_columns() -> BTreeMap<&'static str, Vec<&'static str>> {
    BTreeMap::from([
        (
            "Tracking funnel: sessions reaching each stage",
            vec![
                "click",
                "pageview",
                "initiate_checkout",
                "checkout_abandoned",
                "payment_pending",
                "purchase",
            ],
        ),
        (
            "Conversion between stages by campaign",
            vec![
                "campaign",
                "sessions",
                "to_pageview",
                "pageview_to_checkout",
                "checkout_abandoned",
                "checkout_to_purchase",
            ],
        ),
        ("Purchases over time", vec!["time", "purchases", "revenue"]),
        (
            "Gateway events over time: abandoned checkouts, pending and failed payments, renewals",
            vec![
                "time",
                "checkout_abandoned",
                "payment_pending",
                "payment_failed",
                "purchase",
                "subscription_renewed",
                "subscription_canceled",
            ],
        ),
        (
            "Onboarding: sessions per current stage",
            vec!["stage", "outcome", "sessions"],
        ),
        (
            "Onboarding: active sessions",
            vec!["session_id", "stage", "domain", "updated"],
        ),
        (
            "Onboarding: time to complete (minutes)",
            vec!["p50", "p90", "completed"],
        ),
        (
            "Match rate by gateway",
            vec![
                "gateway",
                "conversions",
                "match_rate",
                "deterministic",
                "scored",
            ],
        ),
        (
            "Meta CAPI outcomes",
            vec!["outcome", "attempts", "events", "avg_latency_ms"],
        ),
        ("variable \"tenant\"", vec!["tenant_id"]),
    ])
}

async fn clickhouse(query: &str) -> Value {
    let port = std::env::var("CLICKHOUSE_HTTP_PORT").unwrap_or_else(|_| "8123".into());
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}"))
        .body(query.to_owned())
        .send()
        .await
        .expect("clickhouse answers");
    let status = response.status();
    let body = response.text().await.expect("body");
    assert!(status.is_success(), "{query}\n→ {body}");
    serde_json::from_str(&body).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_clickhouse_panel_answers_its_columns_over_sink_data() {
    let (kafka, _server, registry) = funnelhub_registry::test_stack("dashboards").await;
    let port = std::env::var("CLICKHOUSE_HTTP_PORT").unwrap_or_else(|_| "8123".into());
    let config = ClickHouseConfig {
        url: format!("http://127.0.0.1:{port}"),
        database: unique("dash").replace('-', "_"),
        group: kafka.topic_prefix.clone(),
        linger_ms: 100,
        ..ClickHouseConfig::default()
    };
    write_every_topic(&kafka, &registry, 0).await;
    let (sink, _) = funnelhub_sinks::clickhouse::start(
        &kafka,
        &registry,
        &config,
        &funnelhub_tenants::ControlPlane::default(),
    )
    .await
    .expect("sink");
    let catalog = Catalog::new(&kafka.topic_prefix);
    let topics: Vec<String> = STORED.iter().map(|t| catalog.name(*t)).collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while !tokio::task::block_in_place(|| group_caught_up(&kafka, &config.group, &topics)) {
        assert!(tokio::time::Instant::now() < deadline, "sink caught up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sink.stop().await.expect("stops");

    let expected = expected_columns();
    let mut checked = 0;
    for (title, sql) in queries(&dashboard("funnel"), "clickhouse", "rawSql") {
        let answer = clickhouse(&format!("{} FORMAT JSON", expand(&sql, &config.database))).await;
        let columns: Vec<&str> = answer["meta"]
            .as_array()
            .expect("meta")
            .iter()
            .map(|c| c["name"].as_str().expect("name"))
            .collect();
        let want = expected
            .get(title.as_str())
            .unwrap_or_else(|| panic!("columns of {title}"));
        assert_eq!(&columns, want, "{title}");
        checked += 1;
        let rows = answer["rows"].as_u64().expect("rows");
        // The sample holds onboarding sessions, purchases, matches and attempts of acme.
        if !title.starts_with("Conversion between stages") {
            assert!(rows > 0, "{title} shows data: {answer}");
        }
    }
    assert_eq!(checked, expected.len());
    clickhouse(&format!("DROP DATABASE {}", config.database)).await;
}

#[test]
fn every_clickhouse_panel_runs_on_a_current_clickhouse() {
    let db = "chdb_dashboards";
    let mut statements = support::database_with_tables(db);
    let panels = queries(&dashboard("funnel"), "clickhouse", "rawSql");
    statements.extend(panels.iter().map(|(_, sql)| expand(sql, db)));
    support::run_on_chdb(&statements);
}

#[test]
fn every_prometheus_expression_parses() {
    let exprs = queries(&dashboard("operations"), "prometheus", "expr");
    assert!(exprs.len() >= 12, "{exprs:?}");
    // promtool parses expressions of rule files: one recording rule per panel query.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (_, expr)) in exprs.iter().enumerate() {
        rules.push_str(&format!(
            "      - record: dashboard_query_{i}\n        expr: {}\n",
            serde_json::to_string(expr).expect("quoted")
        ));
    }
    let file = std::env::temp_dir().join(format!("{}.yml", unique("dash")));
    std::fs::write(&file, rules).expect("written");
    let output = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("promtool runs (scripts/stack installs prometheus)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(&format!("{} rules found", exprs.len())),
        "{stdout}"
    );
}

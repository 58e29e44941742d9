//! The ClickHouse SQL funnelhub runs — the sink's migrations and every query of
//! `docs/data-model.md` — runs on both engines it must support: the local 18.16 server and
//! a current ClickHouse (chDB 26.x, in `.venv`).

mod support;

use funnelhub_clickhouse::migrations::MIGRATIONS;
use funnelhub_kafka::testing::unique;

/// Every statement, for database `db`: the migrations, then the documented queries.
fn statements(db: &str) -> Vec<String> {
    let mut all: Vec<String> = MIGRATIONS
        .iter()
        .flat_map(|m| m.statements.iter())
        .map(|s| s.replace("{db}", db))
        .collect();
    let doc = std::fs::read_to_string("docs/data-model.md").expect("docs/data-model.md");
    let queries: Vec<String> = doc
        .split("```sql")
        .skip(1)
        .map(|block| {
            block
                .split("```")
                .next()
                .unwrap_or_default()
                .trim()
                .replace("funnelhub.", &format!("{db}."))
        })
        .collect();
    assert!(queries.len() >= 8, "the documented queries are found");
    all.extend(queries);
    all
}

#[tokio::test]
async fn migrations_and_documented_queries_run_on_the_local_18_16_server() {
    let port = std::env::var("CLICKHOUSE_HTTP_PORT").unwrap_or_else(|_| "8123".into());
    let url = format!("http://127.0.0.1:{port}");
    let db = unique("sql").replace('-', "_");
    let http = reqwest::Client::new();
    let run = |sql: String| {
        let request = http.post(&url).body(sql.clone());
        async move {
            let response = request.send().await.expect("clickhouse answers");
            let status = response.status();
            let body = response.text().await.expect("body");
            assert!(status.is_success(), "{sql}\n→ {body}");
        }
    };
    run(format!("CREATE DATABASE {db}")).await;
    for statement in statements(&db) {
        run(statement).await;
    }
    run(format!("DROP DATABASE {db}")).await;
}

#[test]
fn migrations_and_documented_queries_run_on_a_current_clickhouse() {
    let mut all = vec!["CREATE DATABASE chdb_check".to_string()];
    all.extend(statements("chdb_check"));
    support::run_on_chdb(&all);
}

//! Helpers the end-to-end test files share (each file includes this module).

#![allow(dead_code)]

pub mod pipeline;

use std::process::Command;

use funnelhub_clickhouse::migrations::MIGRATIONS;
use funnelhub_kafka::testing::unique;

/// `CREATE DATABASE db` and every migration, for database `db`.
pub fn database_with_tables(db: &str) -> Vec<String> {
    let mut statements = vec![format!("CREATE DATABASE {db}")];
    statements.extend(
        MIGRATIONS
            .iter()
            .flat_map(|m| m.statements.iter())
            .map(|s| s.replace("{db}", db)),
    );
    statements
}

/// Run `statements` in order on a current ClickHouse engine (chDB 26.x from `.venv`,
/// `tests/chdb/run_sql.py`); fails the test at the first that fails.
pub fn run_on_chdb(statements: &[String]) {
    let file = std::env::temp_dir().join(format!("{}.json", unique("chdb")));
    std::fs::write(&file, serde_json::to_string(statements).expect("json")).expect("written");
    let python = std::env::var("FUNNELHUB_PYTHON").unwrap_or_else(|_| ".venv/bin/python".into());
    let output = Command::new(python)
        .arg("tests/chdb/run_sql.py")
        .arg(&file)
        .output()
        .expect("python runs (scripts/test installs chdb-core into .venv)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.starts_with("engine 2"), "a current engine: {stdout}");
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok ")).count(),
        statements.len()
    );
}

/// A `multipart/form-data` body of one file part: (its content type, its bytes).
pub fn multipart(filename: &str, content_type: &str, bytes: &[u8]) -> (String, Vec<u8>) {
    let boundary = "funnelhub-test-boundary-7c1d";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: {content_type}\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Upload `png` (named `filename`) to setup session `session` on `edge` with `key`: the
/// attachment API's JSON answer.
pub async fn upload_screenshot(
    edge: &str,
    key: &str,
    session: &str,
    filename: &str,
    png: &[u8],
) -> serde_json::Value {
    let (content_type, body) = multipart(filename, "image/png", png);
    reqwest::Client::new()
        .post(format!(
            "{edge}/api/v1/setup/sessions/{session}/attachments"
        ))
        .bearer_auth(key)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("edge answers")
        .json()
        .await
        .expect("json")
}

/// Run browser driver `script` (a Node module under `dir`, playwright-core) with `arg` as
/// its one argument, off the async runtime; the one JSON object it prints.
pub async fn drive_browser(
    dir: std::path::PathBuf,
    script: &'static str,
    arg: serde_json::Value,
) -> serde_json::Value {
    let driven = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .arg(arg.to_string())
            .current_dir(dir)
            .output()
            .expect("node runs")
    })
    .await
    .expect("joins");
    let stdout = String::from_utf8_lossy(&driven.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "{script} printed no JSON ({e}): {stdout}{}",
            String::from_utf8_lossy(&driven.stderr)
        )
    })
}

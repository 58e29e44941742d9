//! Read queries over ClickHouse's HTTP interface, answered as JSON rows: what `funnelhub
//! report` and the simulator's check read (the sink writes with the typed client).

use serde_json::Value;

use crate::ClickHouseConfig;

/// Why a query got no rows.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("ClickHouse at {url}: {source}")]
    Unreachable { url: String, source: reqwest::Error },
    #[error("ClickHouse answered {status}: {body}")]
    Refused { status: u16, body: String },
    #[error("ClickHouse's answer is not JSON: {0}")]
    NotJson(#[from] serde_json::Error),
}

/// Run `sql` (without a `FORMAT` clause) and return its rows as JSON objects.
pub async fn json_rows(config: &ClickHouseConfig, sql: &str) -> Result<Vec<Value>, QueryError> {
    let unreachable = |source| QueryError::Unreachable {
        url: config.url.clone(),
        source,
    };
    let response = reqwest::Client::new()
        .post(&config.url)
        .query(&[("user", config.user.as_str())])
        .body(format!("{sql} FORMAT JSON"))
        .send()
        .await
        .map_err(unreachable)?;
    let status = response.status();
    let body = response.text().await.map_err(unreachable)?;
    if !status.is_success() {
        return Err(QueryError::Refused {
            status: status.as_u16(),
            body: body.trim().to_owned(),
        });
    }
    let mut answer: Value = serde_json::from_str(&body)?;
    Ok(match answer["data"].take() {
        Value::Array(rows) => rows,
        _ => Vec::new(),
    })
}

/// A count from a JSON row: ClickHouse quotes 64-bit integers (`"12"`).
pub fn count(value: &Value) -> u64 {
    value
        .as_u64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0)
}

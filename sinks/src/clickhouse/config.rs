//! `[clickhouse]`: where analysts' tables live and how the ClickHouse sink writes them.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[clickhouse]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClickHouseConfig {
    /// HTTP interface URL.
    pub url: String,
    /// Database of funnelhub's tables (created at start-up).
    pub database: String,
    /// User (the server's `default` user has no password locally).
    pub user: String,
    /// Consumer group of the sink.
    pub group: String,
    /// Most rows of one topic partition per `INSERT`.
    pub batch_rows: usize,
    /// How long a partition waits for more records to fill an `INSERT`.
    pub linger_ms: u64,
    /// Address of `/metrics` and `/healthz` when run as `funnelhub sink clickhouse`.
    pub listen: SocketAddr,
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        ClickHouseConfig {
            url: "http://127.0.0.1:8123".into(),
            database: "funnelhub".into(),
            user: "default".into(),
            group: "funnelhub-clickhouse".into(),
            batch_rows: 20_000,
            linger_ms: 1_000,
            listen: SocketAddr::from(([127, 0, 0, 1], 9103)),
        }
    }
}

impl ClickHouseConfig {
    /// Refuse settings the sink cannot work with.
    pub fn validate(&self) -> Result<(), String> {
        if self.batch_rows == 0 {
            return Err("clickhouse.batch_rows must be at least 1".into());
        }
        let valid_name = !self.database.is_empty()
            && self
                .database
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid_name {
            return Err(format!(
                "clickhouse.database must be letters, digits and _, not {:?}",
                self.database
            ));
        }
        Ok(())
    }

    pub(crate) fn linger(&self) -> Duration {
        Duration::from_millis(self.linger_ms)
    }
}

//! `[clickhouse]`: where analysts' tables live and how the ClickHouse sink writes them.

use std::net::SocketAddr;
use std::time::Duration;

use funnelhub_tenants::TenantDirectory;
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
    /// Longest an `INSERT` may take, sent and acknowledged; a slower one (a server or a
    /// network that stopped answering without closing the connection) is abandoned and
    /// retried like any failed insert.
    pub insert_timeout_secs: u64,
    /// Address of `/metrics` and `/healthz` when run as `funnelhub sink clickhouse`.
    pub listen: SocketAddr,
    /// Rows older than this are deleted (tenants may set their own `retention_days`).
    pub retention_days: u32,
    /// How often the retention deletes are issued (0: never).
    pub retention_every_secs: u64,
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
            insert_timeout_secs: 30,
            listen: SocketAddr::from(([127, 0, 0, 1], 9103)),
            retention_days: 180,
            retention_every_secs: 3600,
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
        if self.insert_timeout_secs == 0 {
            return Err("clickhouse.insert_timeout_secs must be at least 1".into());
        }
        if self.retention_days == 0 {
            return Err("retention days must be at least 1".into());
        }
        Ok(())
    }

    /// The retention to enforce now: each tenant's `retention_days`, else the default.
    pub fn retention(&self, tenants: &TenantDirectory) -> crate::retention::Retention {
        crate::retention::Retention {
            default_days: self.retention_days,
            tenants: tenants
                .all()
                .iter()
                .filter_map(|t| Some((t.id.clone(), t.retention_days.filter(|d| *d > 0)?)))
                .collect(),
        }
    }

    pub fn linger(&self) -> Duration {
        Duration::from_millis(self.linger_ms)
    }

    pub fn insert_timeout(&self) -> Duration {
        Duration::from_secs(self.insert_timeout_secs)
    }
}

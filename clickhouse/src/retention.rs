//! Retention: rows older than their tenant's retention (default 180 days) are deleted from
//! every table, by `ALTER TABLE … DELETE` mutations the ClickHouse sink issues periodically.
//! Mutations work on 18.16 and on current servers (table `TTL` does not exist on 18.16);
//! they are idempotent, so several sink members issuing them is harmless.

use std::collections::BTreeMap;
use std::time::Duration;

use clickhouse::Client;

/// Each table and the column its rows age by.
pub const AGED_BY: [(&str, &str); 12] = [
    ("raw_events", "occurred_at"),
    ("events", "occurred_at"),
    ("funnel_transitions", "occurred_at"),
    ("session_stages", "updated_at"),
    ("ops_tickets", "created_at"),
    ("matches", "decided_at"),
    ("capi_requests", "event_time"),
    ("dispatch_attempts", "attempted_at"),
    ("dlq", "failed_at"),
    ("setup_action_logs", "at"),
    ("raw_webhooks", "received_at"),
    ("setup_messages", "at"),
];

/// How long rows are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    pub default_days: u32,
    /// Tenants with their own retention.
    pub tenants: BTreeMap<String, u32>,
}

/// One delete: SQL with `?` placeholders and the values to bind, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete {
    pub sql: String,
    pub tenants: Vec<String>,
}

impl Retention {
    /// The deletes of one pass over `db`: per table, one for each tenant with its own
    /// retention and one for every other tenant.
    pub fn deletes(&self, db: &str) -> Vec<Delete> {
        let mut deletes = Vec::new();
        for (table, column) in AGED_BY {
            for (tenant, days) in &self.tenants {
                deletes.push(Delete {
                    sql: format!(
                        "ALTER TABLE {db}.{table} DELETE WHERE tenant_id = ? AND {column} < now() - INTERVAL {days} DAY"
                    ),
                    tenants: vec![tenant.clone()],
                });
            }
            let others: Vec<String> = self.tenants.keys().cloned().collect();
            let sql = if others.is_empty() {
                format!(
                    "ALTER TABLE {db}.{table} DELETE WHERE {column} < now() - INTERVAL {} DAY",
                    self.default_days
                )
            } else {
                format!(
                    "ALTER TABLE {db}.{table} DELETE WHERE {column} < now() - INTERVAL {} DAY AND NOT has(?, tenant_id)",
                    self.default_days
                )
            };
            deletes.push(Delete {
                sql,
                tenants: others,
            });
        }
        deletes
    }

    /// Issue one pass of deletes (ClickHouse applies them in the background).
    pub async fn enforce(&self, client: &Client, db: &str) -> Result<(), clickhouse::error::Error> {
        for delete in self.deletes(db) {
            let mut query = client.query(&delete.sql);
            query = match delete.tenants.len() {
                0 => query,
                1 if !delete.sql.contains("has(") => query.bind(&delete.tenants[0]),
                _ => query.bind(&delete.tenants),
            };
            query.execute().await?;
        }
        Ok(())
    }
}

/// Enforce the retention `config` gives `tenants` (read again at each pass: a tenant's
/// new `retention_days` applies without a restart) every `retention_every_secs` until the
/// task is aborted; failures are logged and retried at the next pass.
pub fn spawn(
    client: Client,
    config: crate::ClickHouseConfig,
    tenants: funnelhub_tenants::TenantDirectory,
) -> tokio::task::JoinHandle<()> {
    let db = config.database.clone();
    let every = Duration::from_secs(config.retention_every_secs);
    tokio::spawn(async move {
        // The first pass one period after start: a restart loop does not hammer the server.
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tick.tick().await;
            match config.retention(&tenants).enforce(&client, &db).await {
                Ok(()) => tracing::debug!(%db, "retention pass issued"),
                Err(e) => tracing::warn!(%db, "retention pass failed: {e}"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_table_gets_a_delete_per_special_tenant_and_one_for_the_rest() {
        let retention = Retention {
            default_days: 180,
            tenants: BTreeMap::from([("acme".to_string(), 30)]),
        };
        let deletes = retention.deletes("db");
        assert_eq!(deletes.len(), AGED_BY.len() * 2);
        assert_eq!(
            deletes[0].sql,
            "ALTER TABLE db.raw_events DELETE WHERE tenant_id = ? AND occurred_at < now() - INTERVAL 30 DAY"
        );
        assert!(deletes[1]
            .sql
            .ends_with("INTERVAL 180 DAY AND NOT has(?, tenant_id)"));
        assert_eq!(deletes[1].tenants, ["acme"]);
        let plain = Retention {
            default_days: 90,
            tenants: BTreeMap::new(),
        };
        assert!(plain
            .deletes("db")
            .iter()
            .all(|d| d.tenants.is_empty() && !d.sql.contains('?')));
    }
}

//! What the pipeline made of a run: the run's facts read back from ClickHouse (exact
//! queries: `FINAL`, `argMax` by rank, distinct ids) and from the Meta emulator.

use std::time::{Duration, Instant};

use funnelhub_clickhouse::query::{count, json_rows};
use funnelhub_clickhouse::ClickHouseConfig;
use funnelhub_emulators::meta_graph::Snapshot;
use serde_json::Value;

use crate::facts::Facts;

/// Where to look.
#[derive(Debug, Clone)]
pub struct Observer {
    pub clickhouse: ClickHouseConfig,
    /// The Meta Graph API emulator's base URL; `None` for the real Meta (not observable).
    pub meta_emulator: Option<String>,
}

/// What Meta saw of the run, beyond the deduplicated events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetaDeliveries {
    /// Events of the run Meta accepted, repeats included (a replay re-sends; Meta dedupes).
    pub received: u64,
    pub distinct: u64,
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

impl Observer {
    /// The run's facts as ClickHouse and the emulator hold them now.
    pub async fn facts(&self, run: &str) -> anyhow::Result<(Facts, MetaDeliveries)> {
        let db = &self.clickhouse.database;
        let run = run.replace('\'', "");
        let mut facts = Facts::default();
        let sql = format!(
            "SELECT tenant_id, event_type, uniqExact(event_id) AS n FROM {db}.events \
             WHERE position(session_id, '{run}') > 0 OR position(order_id, '{run}') > 0 \
             GROUP BY tenant_id, event_type"
        );
        for row in json_rows(&self.clickhouse, &sql).await? {
            facts.events.insert(
                (text(&row["tenant_id"]), text(&row["event_type"])),
                count(&row["n"]),
            );
        }
        let sql = format!(
            "SELECT tenant_id, funnel, subject_id, argMax(stage, rank) AS stage, \
             argMax(outcome, rank) AS outcome FROM {db}.session_stages \
             WHERE position(subject_id, '{run}') > 0 GROUP BY tenant_id, funnel, subject_id"
        );
        for row in json_rows(&self.clickhouse, &sql).await? {
            facts.sessions.insert(
                (
                    text(&row["tenant_id"]),
                    text(&row["funnel"]),
                    text(&row["subject_id"]),
                ),
                (text(&row["stage"]), text(&row["outcome"])),
            );
        }
        let sql = format!(
            "SELECT tenant_id, order_id, conversion_type, method, matched_session_id \
             FROM {db}.matches FINAL WHERE position(order_id, '{run}') > 0"
        );
        for row in json_rows(&self.clickhouse, &sql).await? {
            let key = (
                text(&row["tenant_id"]),
                text(&row["order_id"]),
                text(&row["conversion_type"]),
            );
            let value = (text(&row["method"]), text(&row["matched_session_id"]));
            // Two decisions for one conversion would be a bug: show it as a difference.
            if let Some(first) = facts.matches.insert(key.clone(), value.clone()) {
                if first != value {
                    facts
                        .matches
                        .insert(key, (format!("{} and {}", first.0, value.0), first.1));
                }
            }
        }
        let sql = format!(
            "SELECT tenant_id, kind, uniqExact(ticket_id) AS n FROM {db}.ops_tickets \
             WHERE position(session_id, '{run}') > 0 GROUP BY tenant_id, kind"
        );
        for row in json_rows(&self.clickhouse, &sql).await? {
            facts.tickets.insert(
                (text(&row["tenant_id"]), text(&row["kind"])),
                count(&row["n"]),
            );
        }
        let sql = format!(
            "SELECT tenant_id, event_name, blocked_reason, uniqExact(dispatch_id) AS n \
             FROM {db}.capi_requests WHERE position(event_id, '{run}') > 0 \
             GROUP BY tenant_id, event_name, blocked_reason"
        );
        for row in json_rows(&self.clickhouse, &sql).await? {
            facts.dispatches.insert(
                (
                    text(&row["tenant_id"]),
                    text(&row["event_name"]),
                    text(&row["blocked_reason"]),
                ),
                count(&row["n"]),
            );
        }
        let sql = format!(
            "SELECT tenant_id, gateway, event_name, uniqExact(webhook_id) AS n \
             FROM {db}.raw_webhooks WHERE position(gateway_event_id, '{run}') > 0 \
             OR position(order_id, '{run}') > 0 GROUP BY tenant_id, gateway, event_name"
        );
        for row in json_rows(&self.clickhouse, &sql).await? {
            facts.raw_webhooks.insert(
                (
                    text(&row["tenant_id"]),
                    text(&row["gateway"]),
                    text(&row["event_name"]),
                ),
                count(&row["n"]),
            );
        }
        let mut deliveries = MetaDeliveries::default();
        if let Some(url) = &self.meta_emulator {
            let snapshot: Snapshot = reqwest::get(format!("{url}/_emulator/events"))
                .await?
                .error_for_status()?
                .json()
                .await?;
            for event in &snapshot.events {
                if !event
                    .event_id
                    .as_deref()
                    .is_some_and(|id| id.contains(&run))
                {
                    continue;
                }
                *facts
                    .meta
                    .entry((event.pixel_id.clone(), event.event_name.clone()))
                    .or_default() += 1;
                deliveries.received += u64::from(event.times_received);
                deliveries.distinct += 1;
            }
        }
        Ok((facts, deliveries))
    }

    /// Poll until the observed facts equal `expected` or `timeout` passes; return the last
    /// observation either way. Without an emulator the Meta side is not compared.
    pub async fn settle(
        &self,
        run: &str,
        expected: &Facts,
        timeout: Duration,
    ) -> anyhow::Result<(Facts, MetaDeliveries)> {
        let expected = self.comparable(expected);
        let deadline = Instant::now() + timeout;
        loop {
            let observed = self.facts(run).await?;
            if observed.0 == expected || Instant::now() >= deadline {
                return Ok(observed);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// `expected` as this observer can see it.
    pub fn comparable(&self, expected: &Facts) -> Facts {
        if self.meta_emulator.is_some() {
            expected.clone()
        } else {
            expected.clone().without_meta()
        }
    }
}

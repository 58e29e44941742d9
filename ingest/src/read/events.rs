//! `GET /api/v1/events` and `GET /api/v1/events/{id}`.

use axum::extract::{Path, RawQuery};
use axum::response::{IntoResponse, Response};
use axum::Json;
use clickhouse::Row;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{time_param, Reader};
use crate::request::QueryParams;
use funnelhub_runtime::api::ApiError;

/// Most events per page.
const MAX_LIMIT: u64 = 1000;
/// Without `from`, the last 30 days.
const DEFAULT_WINDOW_MS: i64 = 30 * 24 * 3600 * 1000;

/// An event as listed (`dedupe_key` and `payload` only in the detail).
#[derive(Debug, Row, Serialize, Deserialize)]
struct EventRecord {
    event_id: String,
    event_type: String,
    source: String,
    session_id: String,
    occurred_at_ms: i64,
    received_at_ms: i64,
    gateway: String,
    order_id: String,
    value: Option<f64>,
    currency: String,
    utm_campaign: String,
    #[serde(skip_serializing)]
    dedupe_key: String,
    #[serde(skip_serializing)]
    payload: String,
}

const COLUMNS: &str = "event_id, event_type, source, session_id, occurred_at_ms, \
    received_at_ms, gateway, order_id, value, currency, utm_campaign, dedupe_key";

/// Where a page ends: the last event's time and id (hex, opaque to clients).
fn cursor(event: &EventRecord) -> String {
    hex::encode(format!("{}:{}", event.occurred_at_ms, event.event_id))
}

fn parse_cursor(cursor: &str) -> Result<(i64, String), ApiError> {
    let invalid = || ApiError::field("cursor", "not a cursor this API returned");
    let text =
        String::from_utf8(hex::decode(cursor).map_err(|_| invalid())?).map_err(|_| invalid())?;
    let (ms, id) = text.split_once(':').ok_or_else(invalid)?;
    Ok((ms.parse().map_err(|_| invalid())?, id.to_owned()))
}

pub async fn list(reader: Reader, RawQuery(query): RawQuery) -> Result<Response, ApiError> {
    let (tenant, api) = (&reader.tenant, reader.api());
    let params = QueryParams::parse(query.as_deref());
    let now = funnelhub_schemas::ids::now_ms();
    let to = time_param("to", params.get("to"))?.unwrap_or(now + 1);
    let from = time_param("from", params.get("from"))?.unwrap_or(to - DEFAULT_WINDOW_MS);
    if from >= to {
        return Err(ApiError::field("from", "must be before to"));
    }
    let limit = match params.get("limit") {
        None => 100,
        Some(l) => l
            .parse::<u64>()
            .ok()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or_else(|| ApiError::field("limit", "an integer from 1 to 1000"))?,
    };
    let after = params.get("cursor").map(parse_cursor).transpose()?;
    let mut sql = format!(
        "SELECT {COLUMNS}, '' AS payload FROM {{db}}.events FINAL \
         WHERE tenant_id = ? AND occurred_at >= toDateTime(?) AND occurred_at <= toDateTime(?) \
         AND occurred_at_ms >= ? AND occurred_at_ms < ?"
    );
    if params.get("type").is_some() {
        sql.push_str(" AND event_type = ?");
    }
    if params.get("session_id").is_some() {
        sql.push_str(" AND session_id = ?");
    }
    if after.is_some() {
        sql.push_str(" AND (occurred_at_ms < ? OR (occurred_at_ms = ? AND event_id < ?))");
    }
    sql.push_str(" ORDER BY occurred_at_ms DESC, event_id DESC LIMIT ?");
    let mut q = api
        .query(&sql)
        .await?
        .bind(&tenant.id)
        .bind(from.div_euclid(1000).max(0))
        .bind(to.div_euclid(1000) + 1)
        .bind(from)
        .bind(to);
    if let Some(event_type) = params.get("type") {
        q = q.bind(event_type);
    }
    if let Some(session) = params.get("session_id") {
        q = q.bind(session);
    }
    if let Some((ms, id)) = &after {
        q = q.bind(ms).bind(ms).bind(id);
    }
    let events: Vec<EventRecord> = reader.run(api.fetch(q.bind(limit))).await?;
    let next = (events.len() as u64 == limit)
        .then(|| events.last().map(cursor))
        .flatten();
    Ok(Json(json!({ "events": events, "next_cursor": next })).into_response())
}

#[derive(Debug, Row, Serialize, Deserialize)]
struct Received {
    source_topic: String,
    source_partition: i32,
    source_offset: i64,
    received_at_ms: i64,
}

#[derive(Debug, Row, Serialize, Deserialize)]
struct Matched {
    match_id: String,
    conversion_id: String,
    conversion_type: String,
    method: String,
    score: f64,
    matched_event_id: String,
    matched_session_id: String,
    decided_at_ms: i64,
}

#[derive(Debug, Row, Serialize, Deserialize)]
struct Dispatch {
    dispatch_id: String,
    event_name: String,
    event_id: String,
    pixel_id: String,
    blocked_reason: String,
    event_time_ms: i64,
}

#[derive(Debug, Row, Serialize, Deserialize)]
struct Attempt {
    attempt_id: String,
    request_id: String,
    attempt: i32,
    outcome: String,
    http_status: Option<i32>,
    fbtrace_id: String,
    error_code: Option<i32>,
    error_message: String,
    latency_ms: i64,
    attempted_at_ms: i64,
}

#[derive(Debug, Row, Serialize, Deserialize)]
struct Letter {
    dlq_id: String,
    stage: String,
    reason: String,
    error: String,
    event_id: String,
    failed_at_ms: i64,
}

pub async fn detail(reader: Reader, Path(id): Path<String>) -> Result<Response, ApiError> {
    let (t, api) = (&reader.tenant.id, reader.api());
    reader
        .run(async {
            // By the id index to the session, then a key lookup (events is sorted by
            // session); copies of one event id are identical, so no FINAL.
            let q = api
                .query(&format!(
                    "SELECT {COLUMNS}, payload FROM {{db}}.events \
                     WHERE tenant_id = ? AND session_id IN \
                     (SELECT session_id FROM {{db}}.event_index WHERE tenant_id = ? AND event_id = ?) \
                     AND event_id = ? LIMIT 1"
                ))
                .await?
                .bind(t)
                .bind(t)
                .bind(&id)
                .bind(&id);
            let Some(event) = api.fetch::<EventRecord>(q).await?.pop() else {
                return Err(ApiError::NotFound(format!("event {id}")));
            };
            let q = api
                .query(
                    "SELECT source_topic, source_partition, source_offset, received_at_ms \
                     FROM {db}.raw_events FINAL WHERE tenant_id = ? AND dedupe_key = ? \
                     ORDER BY received_at_ms, source_offset",
                )
                .await?
                .bind(t)
                .bind(&event.dedupe_key);
            let received: Vec<Received> = api.fetch(q).await?;
            let q = api
                .query(
                    "SELECT match_id, conversion_id, conversion_type, method, score, \
                     matched_event_id, matched_session_id, decided_at_ms FROM {db}.matches FINAL \
                     WHERE tenant_id = ? AND (conversion_id = ? OR matched_event_id = ?)",
                )
                .await?
                .bind(t)
                .bind(&id)
                .bind(&id);
            let matches: Vec<Matched> = api.fetch(q).await?;
            // Requests for Meta: the event's own (page views...) and its conversion's
            // (a purchase is sent with the order id as event_id).
            let match_ids: Vec<&str> = matches.iter().map(|m| m.match_id.as_str()).collect();
            let mut sql = "SELECT dispatch_id, event_name, event_id, pixel_id, blocked_reason, \
                 event_time_ms FROM {db}.capi_requests FINAL \
                 WHERE tenant_id = ? AND (event_id = ?"
                .to_string();
            // `has([], x)` does not type-check on 18.16: leave the clause out.
            sql.push_str(if match_ids.is_empty() { ")" } else { " OR has(?, match_id))" });
            let mut q = api.query(&sql).await?.bind(t).bind(&id);
            if !match_ids.is_empty() {
                q = q.bind(&match_ids);
            }
            let dispatches: Vec<Dispatch> = api.fetch(q).await?;
            let mut sent_ids: Vec<&str> = dispatches.iter().map(|d| d.event_id.as_str()).collect();
            sent_ids.push(&id);
            let q = api
                .query(
                    "SELECT attempt_id, request_id, attempt, outcome, http_status, fbtrace_id, \
                     error_code, error_message, latency_ms, attempted_at_ms \
                     FROM {db}.dispatch_attempts FINAL \
                     WHERE tenant_id = ? AND hasAny(event_ids, ?) ORDER BY attempted_at_ms, attempt",
                )
                .await?
                .bind(t)
                .bind(&sent_ids);
            let attempts: Vec<Attempt> = api.fetch(q).await?;
            let q = api
                .query(
                    "SELECT dlq_id, stage, reason, error, event_id, failed_at_ms FROM {db}.dlq FINAL \
                     WHERE tenant_id = ? AND has(?, event_id) ORDER BY failed_at_ms",
                )
                .await?
                .bind(t)
                .bind(&sent_ids);
            let letters: Vec<Letter> = api.fetch(q).await?;
            let payload: serde_json::Value =
                serde_json::from_str(&event.payload).unwrap_or(serde_json::Value::Null);
            Ok(Json(json!({
                "event": {
                    "event_id": event.event_id,
                    "event_type": event.event_type,
                    "source": event.source,
                    "session_id": event.session_id,
                    "occurred_at_ms": event.occurred_at_ms,
                    "received_at_ms": event.received_at_ms,
                    "gateway": event.gateway,
                    "order_id": event.order_id,
                    "value": event.value,
                    "currency": event.currency,
                    "utm_campaign": event.utm_campaign,
                    "record": payload,
                },
                "dedupe": {
                    "dedupe_key": event.dedupe_key,
                    "copies_received": received.len(),
                    "received": received,
                },
                "matches": matches,
                "dispatches": dispatches,
                "attempts": attempts,
                "dead_letters": letters,
            }))
            .into_response())
        })
        .await
}

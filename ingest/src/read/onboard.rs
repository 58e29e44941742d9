//! The onboarding views of seed 000: the funnel, a session's timeline, the newest tickets,
//! a ticket with its session's timeline.

use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use axum::Json;
use clickhouse::Row;
use funnelhub_schemas::derived::Funnel;
use funnelhub_schemas::events::EdgeEvent;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{ReadApi, Reader};
use funnelhub_runtime::api::ApiError;

/// Seed 000's funnel: onboarding sessions per stage ([`super::funnel::view`]).
pub async fn funnel(reader: Reader) -> Result<Response, ApiError> {
    super::funnel::view(reader, Funnel::Onboarding).await
}

#[derive(Debug, Row, Deserialize)]
struct TimelineEvent {
    event_id: String,
    event_type: String,
    occurred_at_ms: i64,
    payload: String,
}

#[derive(Debug, Row, Deserialize)]
struct CurrentStage {
    stage: String,
    outcome: String,
    domain: String,
}

/// A session's onboarding events in time order, with its current stage; `None` when the
/// session has no event.
async fn session_timeline(
    api: &ReadApi,
    tenant: &str,
    session: &str,
) -> Result<Option<Value>, ApiError> {
    let q = api
        .query(
            "SELECT event_id, event_type, occurred_at_ms, payload FROM {db}.events FINAL \
             WHERE tenant_id = ? AND session_id = ? AND source = 'onboarding_portal' \
             ORDER BY occurred_at_ms, event_id",
        )
        .await?
        .bind(tenant)
        .bind(session);
    let events: Vec<TimelineEvent> = api.fetch(q).await?;
    if events.is_empty() {
        return Ok(None);
    }
    let q = api
        .query(
            "SELECT stage, outcome, domain FROM {db}.session_stages FINAL \
             WHERE tenant_id = ? AND funnel = 'onboarding' AND subject_id = ?",
        )
        .await?
        .bind(tenant)
        .bind(session);
    let current: Option<CurrentStage> = api.fetch(q).await?.pop();
    let mut domain = current
        .as_ref()
        .map(|c| c.domain.clone())
        .unwrap_or_default();
    let entries: Vec<Value> = events
        .into_iter()
        .map(|e| {
            let data = match serde_json::from_str::<EdgeEvent>(&e.payload) {
                Ok(EdgeEvent::OnboardingEvent(onboarding)) => {
                    if domain.is_empty() {
                        domain = onboarding.domain.clone();
                    }
                    json!(onboarding.attributes)
                }
                _ => json!({}),
            };
            json!({
                "event_id": e.event_id,
                "event_type": e.event_type,
                "created_at_ms": e.occurred_at_ms,
                "data": data,
            })
        })
        .collect();
    Ok(Some(json!({
        "session_id": session,
        "domain": domain,
        "stage": current.as_ref().map(|c| c.stage.clone()),
        "outcome": current.map(|c| c.outcome),
        "events": entries,
    })))
}

pub async fn timeline(reader: Reader, Path(session): Path<String>) -> Result<Response, ApiError> {
    let (tenant, api) = (&reader.tenant, reader.api());
    reader
        .run(async {
            match session_timeline(api, &tenant.id, &session).await? {
                Some(timeline) => Ok(Json(timeline).into_response()),
                None => Err(ApiError::NotFound(format!("onboarding session {session}"))),
            }
        })
        .await
}

#[derive(Debug, Row, Serialize, Deserialize)]
struct Ticket {
    ticket_id: String,
    session_id: String,
    domain: String,
    kind: String,
    subject: String,
    cause_event_id: String,
    created_at_ms: i64,
}

/// A [`Ticket`]'s columns.
const TICKET_COLUMNS: &str =
    "ticket_id, session_id, domain, kind, subject, cause_event_id, created_at_ms";

/// Most tickets listed.
const TICKETS_LIMIT: u64 = 50;

/// The tenant's newest tickets of the last 30 days (at most [`TICKETS_LIMIT`]), newest first.
pub async fn tickets(reader: Reader) -> Result<Response, ApiError> {
    let (tenant, api) = (&reader.tenant, reader.api());
    reader
        .run(async {
            let q = api
                .query(&format!(
                    "SELECT {TICKET_COLUMNS} FROM {{db}}.ops_tickets FINAL WHERE tenant_id = ? \
                         AND created_at >= now() - INTERVAL 30 DAY \
                         ORDER BY created_at_ms DESC, ticket_id LIMIT ?"
                ))
                .await?
                .bind(&tenant.id)
                .bind(TICKETS_LIMIT);
            let tickets: Vec<Ticket> = api.fetch(q).await?;
            Ok(Json(json!({ "tickets": tickets })).into_response())
        })
        .await
}

pub async fn ticket(reader: Reader, Path(id): Path<String>) -> Result<Response, ApiError> {
    let (tenant, api) = (&reader.tenant, reader.api());
    reader
        .run(async {
            let q = api
                .query(&format!(
                    "SELECT {TICKET_COLUMNS} FROM {{db}}.ops_tickets FINAL \
                         WHERE tenant_id = ? AND ticket_id = ?"
                ))
                .await?
                .bind(&tenant.id)
                .bind(&id);
            let Some(ticket) = api.fetch::<Ticket>(q).await?.pop() else {
                return Err(ApiError::NotFound(format!("ticket {id}")));
            };
            let timeline = session_timeline(api, &tenant.id, &ticket.session_id).await?;
            let events = timeline
                .and_then(|t| t.get("events").cloned())
                .unwrap_or_else(|| json!([]));
            let mut body = serde_json::to_value(&ticket).unwrap_or_default();
            body["timeline"] = events;
            Ok(Json(body).into_response())
        })
        .await
}

//! A funnel's view: how many recent sessions stand at each stage, and the newest ones
//! still in progress. Serves `GET /api/v1/funnel/tracking` (landing page to purchase,
//! with the gateway stages `checkout_abandoned` and `payment_pending`) and seed 000's
//! `GET /api/v1/onboard/funnel`.

use axum::response::{IntoResponse, Response};
use axum::Json;
use clickhouse::Row;
use funnelhub_schemas::derived::Funnel;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::Reader;
use funnelhub_runtime::api::ApiError;

/// Most active sessions listed.
const ACTIVE_LIMIT: u64 = 50;

#[derive(Debug, Row, Deserialize)]
struct StageCount {
    stage: String,
    outcome: String,
    sessions: u64,
}

#[derive(Debug, Row, Serialize, Deserialize)]
struct ActiveSession {
    session_id: String,
    stage: String,
    domain: String,
    updated_at_ms: i64,
}

/// `funnel`'s sessions updated in the last 48 h, each at its furthest state (`argMax` by
/// rank over the window's rows rather than `FINAL` over the tenant's whole history: the
/// cost follows the window, not the table): how many stand at each stage (failed ones
/// apart), and the newest sessions still in progress.
pub async fn view(reader: Reader, funnel: Funnel) -> Result<Response, ApiError> {
    let (tenant, api) = (&reader.tenant, reader.api());
    reader
        .run(async {
            let q = api
                .query(
                    "SELECT stage, outcome, count() AS sessions FROM ( \
                     SELECT subject_id, argMax(stage, rank) AS stage, argMax(outcome, rank) AS outcome \
                     FROM {db}.session_stages \
                     WHERE tenant_id = ? AND funnel = ? \
                     AND updated_at >= now() - INTERVAL 48 HOUR GROUP BY subject_id \
                     ) GROUP BY stage, outcome",
                )
                .await?
                .bind(&tenant.id)
                .bind(funnel.as_str());
            let counts: Vec<StageCount> = api.fetch(q).await?;
            let mut stages: Map<String, Value> = funnel
                .stages()
                .iter()
                .map(|s| (s.as_str().to_owned(), json!(0)))
                .collect();
            let mut failed = 0;
            let mut total = 0;
            for c in counts {
                total += c.sessions;
                if c.outcome == "failed" {
                    failed += c.sessions;
                } else if let Some(n) = stages.get_mut(&c.stage) {
                    *n = json!(n.as_u64().unwrap_or(0) + c.sessions);
                }
            }
            let q = api
                .query(
                    "SELECT subject_id AS session_id, argMax(stage, rank) AS stage, \
                     argMax(domain, rank) AS domain, max(updated_at_ms) AS updated_at_ms \
                     FROM {db}.session_stages \
                     WHERE tenant_id = ? AND funnel = ? \
                     AND updated_at >= now() - INTERVAL 48 HOUR GROUP BY subject_id \
                     HAVING argMax(outcome, rank) = 'in_progress' \
                     ORDER BY updated_at_ms DESC, session_id LIMIT ?",
                )
                .await?
                .bind(&tenant.id)
                .bind(funnel.as_str())
                .bind(ACTIVE_LIMIT);
            let active: Vec<ActiveSession> = api.fetch(q).await?;
            Ok(Json(json!({
                "window_hours": 48,
                "sessions": total,
                "stages": stages,
                "failed": failed,
                "active_sessions": active,
            }))
            .into_response())
        })
        .await
}

/// The landing-page funnel.
pub async fn tracking(reader: Reader) -> Result<Response, ApiError> {
    view(reader, Funnel::Tracking).await
}

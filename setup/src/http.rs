//! `/api/v1/setup/...`: the setup service over HTTP, mounted by the edge. The only place
//! setup's errors become status codes.
//!
//! Callers authenticate with `Authorization: Bearer <key>`: an `[edge.setup] admin_keys`
//! key (the onboarding wizard's backend, operators) for any tenant, or a tenant's own API
//! key of scope `setup` or `admin` for that tenant's sessions (a `read` key gets 403: setup
//! can replace the tenant's pixel, token and webhook secrets). An unknown session and
//! another tenant's session look alike to a caller without an admin key.
//!
//! Routes: `POST /sessions`, `GET /sessions/{id}/status`, `GET /sessions/{id}/events`
//! (server-sent events: the status now, then after every change on any edge), `POST
//! /sessions/{id}/actions/{tool}`, `POST /sessions/{id}/validate`, `POST
//! /sessions/{id}/autoconfigure`, `POST /sessions/{id}/rollback`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use funnelhub_runtime::api::{parse_json, respond, ApiError};
use funnelhub_tenants::{KeyScope, TenantDirectory};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;

use crate::error::SetupError;
use crate::service::{check_tenant_id, SetupService, ValidateRequest};
use crate::session::Session;
use crate::tools::ToolName;

/// What the routes need.
#[derive(Debug)]
pub struct SetupHttp {
    /// `None`: every route answers 503 (no key to seal secrets with).
    pub service: Option<SetupService>,
    /// The tenants whose API keys are checked.
    pub tenants: TenantDirectory,
    /// `Retry-After` of a 503.
    pub retry_after_secs: u32,
}

type Shared = Arc<SetupHttp>;

impl SetupHttp {
    /// Routes that answer 503: setup is not enabled here.
    pub fn disabled() -> Arc<SetupHttp> {
        Arc::new(SetupHttp {
            service: None,
            tenants: TenantDirectory::default(),
            retry_after_secs: 5,
        })
    }
}

/// The routes, for a router of any state.
pub fn routes<S: Clone + Send + Sync + 'static>(state: Arc<SetupHttp>) -> Router<S> {
    Router::new()
        .route("/api/v1/setup/sessions", post(create))
        .route("/api/v1/setup/sessions/{id}/status", get(status))
        .route("/api/v1/setup/sessions/{id}/events", get(events))
        .route("/api/v1/setup/sessions/{id}/actions/{tool}", post(action))
        .route("/api/v1/setup/sessions/{id}/validate", post(validate))
        .route(
            "/api/v1/setup/sessions/{id}/autoconfigure",
            post(autoconfigure),
        )
        .route("/api/v1/setup/sessions/{id}/rollback", post(rollback))
        .with_state(state)
}

impl SetupHttp {
    /// The service, or 503.
    fn service(&self) -> Result<&SetupService, ApiError> {
        self.service.as_ref().ok_or_else(|| ApiError::Unavailable {
            reason: "setup is not enabled on this edge (it needs FUNNELHUB_TENANT_KEYS)".into(),
            retry_after_secs: self.retry_after_secs,
        })
    }

    /// The answer for a setup error.
    fn error(&self, e: SetupError) -> ApiError {
        match e {
            SetupError::InvalidInput { field, message } => ApiError::field(field, message),
            e @ (SetupError::UnknownTool(_) | SetupError::UnknownSession(_)) => {
                ApiError::NotFound(e.to_string())
            }
            e @ (SetupError::NotValidated { .. }
            | SetupError::NotConfigured { .. }
            | SetupError::TooManyOpenSessions { .. }) => ApiError::Conflict(e.to_string()),
            SetupError::Unavailable(reason) => ApiError::Unavailable {
                reason,
                retry_after_secs: self.retry_after_secs,
            },
            SetupError::Internal(detail) => ApiError::Internal(detail),
        }
    }

    /// The caller may act on `tenant_id`'s sessions.
    fn authorize(
        &self,
        service: &SetupService,
        headers: &HeaderMap,
        tenant_id: &str,
    ) -> Result<(), ApiError> {
        use subtle::ConstantTimeEq;
        let key = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or(ApiError::Unauthorized(
                "setup key (Authorization: Bearer <key>)",
            ))?;
        let admin = service
            .config()
            .admin_keys
            .iter()
            .filter(|k| k.is_usable())
            .fold(false, |found, k| {
                found | bool::from(k.expose().as_bytes().ct_eq(key.as_bytes()))
            });
        match self.tenants.by_api_key(key) {
            _ if admin => Ok(()),
            Some((tenant, scope)) if tenant.id == tenant_id => {
                if scope >= KeyScope::Setup {
                    Ok(())
                } else {
                    Err(ApiError::Forbidden(
                        "setup needs an API key of scope setup or admin",
                    ))
                }
            }
            _ => Err(ApiError::Unauthorized("setup key")),
        }
    }

    /// The service and session `id`, once the caller may see it.
    fn session_of(
        &self,
        headers: &HeaderMap,
        id: &str,
    ) -> Result<(&SetupService, Session), ApiError> {
        let service = self.service()?;
        match service.find(id) {
            Some(session) => {
                self.authorize(service, headers, &session.tenant_id)?;
                Ok((service, session))
            }
            None => {
                self.authorize(service, headers, "")?;
                Err(self.error(SetupError::UnknownSession(id.chars().take(64).collect())))
            }
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    tenant_id: Option<String>,
}

async fn create(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    respond("setup.create", create_inner(&s, &headers, &body).await)
}

async fn create_inner(
    s: &SetupHttp,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let service = s.service()?;
    let body: CreateBody = parse_json(body)?;
    let tenant_id = check_tenant_id(body.tenant_id.as_deref()).map_err(|e| s.error(e))?;
    s.authorize(service, headers, &tenant_id)?;
    let session = service.create(&tenant_id).await.map_err(|e| s.error(e))?;
    Ok((StatusCode::CREATED, Json(service.status_json(&session))).into_response())
}

async fn status(State(s): State<Shared>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let result = s
        .session_of(&headers, &id)
        .map(|(service, session)| Json(service.status_json(&session)).into_response());
    respond("setup.status", result)
}

/// `text/event-stream`: the status now, then after every change (any edge's), until the
/// client goes away. Event name `status`, data the status JSON.
async fn events(State(s): State<Shared>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let result = s.session_of(&headers, &id).map(|(service, session)| {
        let max = service.config().max_failed_attempts;
        let first = session.status_json(max);
        let changes = service.subscribe();
        let stream = futures::stream::unfold(
            (Some(first), changes, id, session.revision),
            move |(first, mut changes, id, mut seen)| async move {
                if let Some(first) = first {
                    let event = Event::default().event("status").data(first.to_string());
                    return Some((Ok::<_, Infallible>(event), (None, changes, id, seen)));
                }
                loop {
                    match changes.recv().await {
                        Ok(session) if session.id == id && session.revision > seen => {
                            seen = session.revision;
                            let data = session.status_json(max).to_string();
                            let event = Event::default().event("status").data(data);
                            return Some((Ok(event), (None, changes, id, seen)));
                        }
                        Ok(_) | Err(RecvError::Lagged(_)) => {}
                        Err(RecvError::Closed) => return None,
                    }
                }
            },
        );
        Sse::new(stream)
            .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
            .into_response()
    });
    respond("setup.events", result)
}

async fn action(
    State(s): State<Shared>,
    Path((id, tool)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    respond(
        "setup.action",
        action_inner(&s, &id, &tool, &headers, &body).await,
    )
}

async fn action_inner(
    s: &SetupHttp,
    id: &str,
    tool: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let (service, session) = s.session_of(headers, id)?;
    let tool = ToolName::parse(tool).map_err(|e| s.error(e))?;
    let input: Value = parse_json(body)?;
    let (session, action) = service
        .run_tool(&session.id, tool, input)
        .await
        .map_err(|e| s.error(e))?;
    let mut body = action.to_json();
    body["session"] = service.status_json(&session);
    Ok(Json(body).into_response())
}

async fn validate(
    State(s): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    respond(
        "setup.validate",
        validate_inner(&s, &id, &headers, &body).await,
    )
}

async fn validate_inner(
    s: &SetupHttp,
    id: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let (service, session) = s.session_of(headers, id)?;
    let request: ValidateRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ValidateRequest::default()
    } else {
        parse_json(body)?
    };
    let (session, actions) = service
        .validate(&session.id, request)
        .await
        .map_err(|e| s.error(e))?;
    let results: Vec<Value> = actions.iter().map(|a| a.to_json()).collect();
    Ok(Json(json!({
        "state": session.state.as_str(),
        "results": results,
        "session": service.status_json(&session),
    }))
    .into_response())
}

/// What a call does to the tenant.
#[derive(Debug, Clone, Copy)]
enum TenantCall {
    Autoconfigure,
    Rollback,
}

async fn autoconfigure(
    State(s): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let result = change_tenant(&s, &headers, &id, TenantCall::Autoconfigure).await;
    respond("setup.autoconfigure", result)
}

async fn rollback(State(s): State<Shared>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let result = change_tenant(&s, &headers, &id, TenantCall::Rollback).await;
    respond("setup.rollback", result)
}

async fn change_tenant(
    s: &SetupHttp,
    headers: &HeaderMap,
    id: &str,
    call: TenantCall,
) -> Result<Response, ApiError> {
    let (service, session) = s.session_of(headers, id)?;
    let result = match call {
        TenantCall::Autoconfigure => service.autoconfigure(&session.id).await,
        TenantCall::Rollback => service.rollback(&session.id).await,
    };
    let (session, change) = result.map_err(|e| s.error(e))?;
    let mut body = change.to_json();
    body["session"] = service.status_json(&session);
    Ok(Json(body).into_response())
}

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
//! /sessions/{id}/autoconfigure`, `POST /sessions/{id}/rollback`, `POST /sessions/{id}/chat`
//! (the troubleshooting assistant), `GET /sessions/{id}/messages` (its conversation), `POST
//! /sessions/{id}/escalate` (hand the session to a person: the app's button).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::multipart::MultipartRejection;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
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
    /// Event streams open now, by tenant.
    pub streams: StreamCount,
}

/// Event streams a tenant may hold open on one edge at once (a wizard or desk view holds
/// one per session); one more is answered 429.
pub const MAX_STREAMS_PER_TENANT: usize = 40;

/// Open event streams by tenant.
#[derive(Debug, Default)]
pub struct StreamCount(std::sync::Mutex<std::collections::HashMap<String, usize>>);

/// One open stream, counted until dropped.
#[derive(Debug)]
struct StreamSlot {
    http: Shared,
    tenant_id: String,
}

impl StreamCount {
    /// A slot for one more stream of `tenant_id`, unless it holds the most it may.
    fn take(http: &Shared, tenant_id: &str) -> Option<StreamSlot> {
        let mut open = http.streams.0.lock().expect("streams lock");
        let count = open.entry(tenant_id.to_owned()).or_default();
        if *count >= MAX_STREAMS_PER_TENANT {
            return None;
        }
        *count += 1;
        Some(StreamSlot {
            http: http.clone(),
            tenant_id: tenant_id.to_owned(),
        })
    }

    /// Streams of `tenant_id` open now.
    pub fn open(&self, tenant_id: &str) -> usize {
        let open = self.0.lock().expect("streams lock");
        open.get(tenant_id).copied().unwrap_or_default()
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.http.streams.0.lock().expect("streams lock");
        if let Some(count) = open.get_mut(&self.tenant_id) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.tenant_id);
            }
        }
    }
}

type Shared = Arc<SetupHttp>;

impl SetupHttp {
    /// Routes that answer 503: setup is not enabled here.
    pub fn disabled() -> Arc<SetupHttp> {
        Arc::new(SetupHttp {
            service: None,
            tenants: TenantDirectory::default(),
            retry_after_secs: 5,
            streams: StreamCount::default(),
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
        .route("/api/v1/setup/sessions/{id}/chat", post(chat))
        .route("/api/v1/setup/sessions/{id}/messages", get(messages))
        .route("/api/v1/setup/sessions/{id}/escalate", post(escalate))
        .route(
            "/api/v1/setup/sessions/{id}/attachments",
            post(attach).layer(DefaultBodyLimit::max(
                crate::attachments::MAX_ATTACHMENT_BYTES + 64 * 1024,
            )),
        )
        .route(
            "/api/v1/setup/sessions/{id}/attachments/{attachment}",
            get(attachment),
        )
        .with_state(state)
}

impl SetupHttp {
    /// `key` is an operators' key (`[edge.setup] admin_keys`); never without setup.
    pub fn is_operator_key(&self, key: &str) -> bool {
        self.service.as_ref().is_some_and(|s| s.is_admin_key(key))
    }

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
            e @ (SetupError::UnknownTool(_)
            | SetupError::UnknownSession(_)
            | SetupError::UnknownAttachment(_)) => ApiError::NotFound(e.to_string()),
            e @ SetupError::NotAnImage => ApiError::UnsupportedMediaType(e.to_string()),
            SetupError::AttachmentTooLarge { max } => ApiError::PayloadTooLarge(max),
            e @ (SetupError::NotValidated { .. }
            | SetupError::NotConfigured { .. }
            | SetupError::TooManyOpenSessions { .. }
            | SetupError::ConversationFull { .. }
            | SetupError::TooManyAttachments { .. }) => ApiError::Conflict(e.to_string()),
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
        let key = funnelhub_runtime::api::bearer_key(headers).ok_or(ApiError::Unauthorized(
            "setup key (Authorization: Bearer <key>)",
        ))?;
        let admin = service.is_admin_key(key);
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
    let result = s.session_of(&headers, &id).and_then(|(service, session)| {
        let slot = StreamCount::take(&s, &session.tenant_id).ok_or_else(|| {
            ApiError::TooManyRequests {
                what: format!(
                    "{MAX_STREAMS_PER_TENANT} event streams of this tenant are open on this edge: close one"
                ),
                retry_after_secs: s.retry_after_secs,
            }
        })?;
        let max = service.config().max_failed_attempts;
        let first = session.status_json(max);
        let changes = service.subscribe();
        // The slot lives as long as the stream: the client going away frees it.
        let stream = futures::stream::unfold(
            (Some(first), changes, id, session.revision, slot),
            move |(first, mut changes, id, mut seen, slot)| async move {
                if let Some(first) = first {
                    let event = Event::default().event("status").data(first.to_string());
                    return Some((Ok::<_, Infallible>(event), (None, changes, id, seen, slot)));
                }
                loop {
                    match changes.recv().await {
                        Ok(session) if session.id == id && session.revision > seen => {
                            seen = session.revision;
                            let data = session.status_json(max).to_string();
                            let event = Event::default().event("status").data(data);
                            return Some((Ok(event), (None, changes, id, seen, slot)));
                        }
                        Ok(_) | Err(RecvError::Lagged(_)) => {}
                        Err(RecvError::Closed) => return None,
                    }
                }
            },
        );
        Ok(Sse::new(stream)
            .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
            .into_response())
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChatBody {
    message: Option<String>,
    #[serde(default)]
    attachment_ids: Vec<String>,
}

/// `POST …/chat` `{message, attachment_ids?}` → `{reply, actions, state, message, session}`.
async fn chat(
    State(s): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    respond("setup.chat", chat_inner(&s, &id, &headers, &body).await)
}

async fn chat_inner(
    s: &SetupHttp,
    id: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let (service, session) = s.session_of(headers, id)?;
    let body: ChatBody = parse_json(body)?;
    if body.attachment_ids.len() > crate::attachments::MAX_ATTACHMENTS_PER_SESSION {
        return Err(ApiError::field("attachment_ids", "too many"));
    }
    let message = body.message.unwrap_or_default();
    let (session, reply) = service
        .chat(&session.id, &message, &body.attachment_ids)
        .await
        .map_err(|e| s.error(e))?;
    Ok(Json(json!({
        "reply": reply.text,
        "actions": reply.actions,
        "state": session.state.as_str(),
        "message": reply.to_json(),
        "session": service.status_json(&session),
    }))
    .into_response())
}

/// `POST …/escalate` → `{ticket_id, state, session}`: the session goes to a person (one
/// ticket however often it is asked).
async fn escalate(State(s): State<Shared>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let result = async {
        let (service, session) = s.session_of(&headers, &id)?;
        let (session, ticket_id) = service
            .escalate(&session.id)
            .await
            .map_err(|e| s.error(e))?;
        Ok(Json(json!({
            "ticket_id": ticket_id,
            "state": session.state.as_str(),
            "session": service.status_json(&session),
        }))
        .into_response())
    }
    .await;
    respond("setup.escalate", result)
}

/// `POST …/attachments` (multipart, one image in the first part): 201 `{attachment_id,
/// content_type, bytes, url}`. The part's file name and declared type are ignored: the
/// bytes decide (415 unless PNG, JPEG or WebP; 413 over the limit).
async fn attach(
    State(s): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    respond(
        "setup.attach",
        attach_inner(&s, &id, &headers, multipart).await,
    )
}

async fn attach_inner(
    s: &SetupHttp,
    id: &str,
    headers: &HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let (service, session) = s.session_of(headers, id)?;
    let mut multipart =
        multipart.map_err(|e| ApiError::field("body", format!("multipart/form-data: {e}")))?;
    let field = multipart
        .next_field()
        .await
        .map_err(|e| attachment_read_error(&e))?
        .ok_or_else(|| ApiError::field("file", "one image part is required"))?;
    let bytes = field.bytes().await.map_err(|e| attachment_read_error(&e))?;
    let (session, attachment) = service
        .attach(&session.id, bytes.to_vec())
        .await
        .map_err(|e| s.error(e))?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "attachment_id": attachment.id,
            "content_type": attachment.image.content_type(),
            "bytes": attachment.bytes,
            "url": format!("/api/v1/setup/sessions/{}/attachments/{}", session.id, attachment.id),
        })),
    )
        .into_response())
}

/// A multipart body that could not be read: too large, or malformed.
fn attachment_read_error(e: &axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge(crate::attachments::MAX_ATTACHMENT_BYTES)
    } else {
        ApiError::field("file", e.body_text())
    }
}

/// `GET …/attachments/{id}`: the image, with its true type, to the session's tenant only.
async fn attachment(
    State(s): State<Shared>,
    Path((id, attachment)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let (service, session) = s.session_of(&headers, &id)?;
        let (bytes, image) = service
            .attachment(&session.id, &attachment)
            .await
            .map_err(|e| s.error(e))?;
        Ok((
            [
                (header::CONTENT_TYPE, image.content_type()),
                (header::CACHE_CONTROL, "private, no-store"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            bytes,
        )
            .into_response())
    }
    .await;
    respond("setup.attachment", result)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MessagesQuery {
    cursor: Option<u32>,
    limit: Option<usize>,
}

/// `GET …/messages?cursor=&limit=`: the conversation oldest first, `next_cursor` until the
/// last page.
async fn messages(
    State(s): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    query: Result<Query<MessagesQuery>, QueryRejection>,
) -> Response {
    let result = (|| {
        let (service, session) = s.session_of(&headers, &id)?;
        let Query(query) = query.map_err(|e| ApiError::field("query", e.body_text()))?;
        let (page, next) = service
            .messages(&session.id, query.cursor, query.limit.unwrap_or(50))
            .map_err(|e| s.error(e))?;
        Ok(Json(json!({
            "session_id": session.id,
            "messages": page.iter().map(crate::chat::ChatMessage::to_json).collect::<Vec<_>>(),
            "next_cursor": next,
        }))
        .into_response())
    })();
    respond("setup.messages", result)
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

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use funnelhub_tenants::{Keyring, Secret, TenantConfig};
    use tower::ServiceExt;

    use super::*;
    use crate::config::SetupConfig;
    use crate::store::{MemorySessions, MemoryTenants};

    const ADMIN: &str = "admin-key-0123456789";
    const READ: &str = "shop-read-key-0123";

    fn app() -> (Router, Shared) {
        let config = SetupConfig {
            admin_keys: vec![Secret::from(ADMIN)],
            ..SetupConfig::default()
        };
        let keys = Keyring::parse(&Keyring::generate("k1")).expect("keys");
        let service = SetupService::new(
            config,
            Arc::new(MemorySessions::default()),
            Arc::new(MemoryTenants::default()),
            keys,
        )
        .expect("service");
        let mut shop = TenantConfig::new("shop");
        shop.api_keys = vec![Secret::from(READ)];
        let http = Arc::new(SetupHttp {
            service: Some(service),
            tenants: TenantDirectory::fixed([shop]),
            retry_after_secs: 3,
            streams: StreamCount::default(),
        });
        (routes(http.clone()), http)
    }

    async fn call(app: &Router, method: &str, path: &str, key: &str, body: &str) -> Response {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {key}"))
            .body(Body::from(body.to_owned()))
            .expect("request");
        app.clone().oneshot(request).await.expect("answer")
    }

    async fn json_of(response: Response) -> Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        serde_json::from_slice(&bytes).expect("json")
    }

    const SESSIONS: &str = "/api/v1/setup/sessions";
    const SHOP: &str = r#"{"tenant_id":"shop"}"#;

    /// A new session of tenant shop; its id.
    async fn create(app: &Router, key: &str) -> String {
        let created = call(app, "POST", SESSIONS, key, SHOP).await;
        assert_eq!(created.status(), StatusCode::CREATED);
        json_of(created).await["session_id"]
            .as_str()
            .expect("id")
            .to_owned()
    }

    #[tokio::test]
    async fn event_streams_are_bounded_per_tenant_and_a_closed_one_frees_its_slot() {
        let (app, http) = app();
        let id = create(&app, ADMIN).await;
        let events = format!("/api/v1/setup/sessions/{id}/events");
        let mut open = Vec::new();
        for _ in 0..MAX_STREAMS_PER_TENANT {
            let stream = call(&app, "GET", &events, ADMIN, "").await;
            assert_eq!(stream.status(), StatusCode::OK);
            open.push(stream);
        }
        assert_eq!(http.streams.open("shop"), MAX_STREAMS_PER_TENANT);
        let refused = call(&app, "GET", &events, ADMIN, "").await;
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            refused.headers().get("retry-after").map(|v| v.as_bytes()),
            Some(&b"3"[..])
        );
        assert_eq!(json_of(refused).await["error"], "too_many_requests");
        drop(open.pop());
        assert_eq!(http.streams.open("shop"), MAX_STREAMS_PER_TENANT - 1);
        let again = call(&app, "GET", &events, ADMIN, "").await;
        assert_eq!(again.status(), StatusCode::OK);
        drop(open);
        drop(again);
        assert_eq!(http.streams.open("shop"), 0);
    }

    #[tokio::test]
    async fn a_read_key_cannot_run_setup_and_an_unknown_tool_is_not_run() {
        let (app, _) = app();
        let forbidden = call(&app, "POST", SESSIONS, READ, SHOP).await;
        assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
        let id = create(&app, ADMIN).await;
        let unknown = call(
            &app,
            "POST",
            &format!("/api/v1/setup/sessions/{id}/actions/drop_tables"),
            ADMIN,
            r#"{"url":"https://shop.example/"}"#,
        )
        .await;
        assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
        let body = json_of(unknown).await;
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.contains("probe_landing_url")),
            "{body}"
        );
        let status = call(
            &app,
            "GET",
            &format!("/api/v1/setup/sessions/{id}/status"),
            ADMIN,
            "",
        )
        .await;
        assert_eq!(
            json_of(status).await["steps"]["url"]["attempts"],
            0,
            "nothing ran"
        );
    }
}

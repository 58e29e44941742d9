//! Guided setup (seeds 003/004), `/api/v1/setup/...` on the edge: sessions, the three
//! validation tools, `validate` (all three), `autoconfigure` (validated settings into the
//! tenant, with a rollback), consolidated status and a server-sent-events stream of it.
//! See `docs/setup.md`.
//!
//! Callers authenticate with `Authorization: Bearer <key>`: a `[edge.setup] admin_keys`
//! key (the onboarding wizard's backend, operators) for any tenant, or a tenant's own API
//! key for that tenant's sessions.

pub mod sessions;
pub mod tools;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use funnelhub_schemas::ids::now_ms;
use funnelhub_schemas::setup::{SetupActionLog, SetupSession};
use funnelhub_tenants::{record, Keyring, TenantConfig, TenantStore};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::Secret;
use crate::error::ApiError;
use crate::request::parse_json;
use crate::EdgeState;
use sessions::{state, Sessions};
use tools::{GatewayInput, MetaInput, Outcome, Tools, UrlInput};

/// `[edge.setup]`: the setup API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SetupConfig {
    /// Keys that may run setup for any tenant (`Authorization: Bearer <key>`); a tenant's
    /// own API keys reach its own sessions.
    pub admin_keys: Vec<Secret>,
    /// Failed actions after which a session is `needs_human`.
    pub max_failed_attempts: u32,
    /// Deadline of each call a tool makes.
    pub tool_timeout_ms: u64,
    /// Meta's Graph API (the token check).
    pub meta_graph_url: String,
    pub meta_api_version: String,
    /// Hotmart's authentication server (`/security/oauth/token`).
    pub hotmart_auth_url: String,
    /// Kiwify's public API (`/v1/oauth/token`, `/v1/account-details`).
    pub kiwify_api_url: String,
    /// Stripe's API (`/v1/account`).
    pub stripe_api_url: String,
    /// `host:port` pairs `probe_landing_url` may open although they resolve to a private
    /// or loopback address (a local demo's landing page, tests). Every other address that
    /// is not public is refused, so the probe is no way into the edge's own network. Empty
    /// in production.
    pub probe_private_hosts: Vec<String>,
}

impl Default for SetupConfig {
    fn default() -> Self {
        SetupConfig {
            admin_keys: Vec::new(),
            max_failed_attempts: 3,
            tool_timeout_ms: 5_000,
            meta_graph_url: "https://graph.facebook.com".into(),
            meta_api_version: "v25.0".into(),
            hotmart_auth_url: "https://api-sec-vlc.hotmart.com".into(),
            kiwify_api_url: "https://public-api.kiwify.com".into(),
            stripe_api_url: "https://api.stripe.com".into(),
            probe_private_hosts: Vec::new(),
        }
    }
}

/// The setup API's parts.
#[derive(Debug)]
pub struct SetupApi {
    pub config: SetupConfig,
    pub sessions: Sessions,
    pub tools: Tools,
    pub store: TenantStore,
    pub keys: Keyring,
    /// One session update at a time in this process (tools run outside it).
    writing: tokio::sync::Mutex<()>,
}

impl SetupApi {
    pub fn new(
        config: SetupConfig,
        sessions: Sessions,
        store: TenantStore,
        keys: Keyring,
    ) -> Result<SetupApi, String> {
        Ok(SetupApi {
            tools: Tools::new(&config)?,
            config,
            sessions,
            store,
            keys,
            writing: tokio::sync::Mutex::new(()),
        })
    }
}

/// The routes (answer 503 when the edge runs without setup).
pub fn routes() -> Router<Arc<EdgeState>> {
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
}

fn respond(route: &'static str, result: Result<Response, ApiError>) -> Response {
    crate::respond(route, result)
}

/// The setup API of this edge, or 503.
fn api(state: &EdgeState) -> Result<&SetupApi, ApiError> {
    state.setup.as_ref().ok_or_else(|| ApiError::Unavailable {
        reason: "setup is not enabled on this edge (it needs FUNNELHUB_TENANT_KEYS)".into(),
        retry_after_secs: state.config.retry_after_secs,
    })
}

/// The caller may act on `tenant_id`'s sessions.
fn authorize(
    state: &EdgeState,
    api: &SetupApi,
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
    let admin = api
        .config
        .admin_keys
        .iter()
        .filter(|k| k.is_usable())
        .fold(false, |found, k| {
            found | bool::from(k.expose().as_bytes().ct_eq(key.as_bytes()))
        });
    match state.tenants.by_api_key(key) {
        _ if admin => Ok(()),
        Some((tenant, scope)) if tenant.id == tenant_id => {
            if scope >= funnelhub_tenants::KeyScope::Setup {
                Ok(())
            } else {
                // Setup can replace the tenant's pixel, token and webhook secrets: a key
                // that reads dashboards must not.
                Err(ApiError::Forbidden(
                    "setup needs an API key of scope setup or admin",
                ))
            }
        }
        _ => Err(ApiError::Unauthorized("setup key")),
    }
}

/// The session `id`, once the caller is allowed to see it.
fn session_of(
    state: &EdgeState,
    api: &SetupApi,
    headers: &HeaderMap,
    id: &str,
) -> Result<SetupSession, ApiError> {
    // Unknown and forbidden look alike to a caller without an admin key.
    let session = api.sessions.get(id, now_ms());
    match session {
        Some(session) => {
            authorize(state, api, headers, &session.tenant_id)?;
            Ok(session)
        }
        None => {
            authorize(state, api, headers, "")?;
            Err(ApiError::NotFound(format!(
                "setup session {}",
                id.chars().take(64).collect::<String>()
            )))
        }
    }
}

fn unavailable(state: &EdgeState, reason: String) -> ApiError {
    ApiError::Unavailable {
        reason,
        retry_after_secs: state.config.retry_after_secs,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    tenant_id: Option<String>,
}

async fn create(State(s): State<Arc<EdgeState>>, headers: HeaderMap, body: Bytes) -> Response {
    respond("setup.create", create_inner(&s, &headers, &body).await)
}

async fn create_inner(
    s: &EdgeState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let api = api(s)?;
    let body: CreateBody = parse_json(body)?;
    let tenant_id = body
        .tenant_id
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::missing("tenant_id"))?;
    if tenant_id.len() > 64
        || !tenant_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(ApiError::field("tenant_id", "1-64 letters, digits, - or _"));
    }
    authorize(s, api, headers, &tenant_id)?;
    let now = now_ms();
    if api.sessions.open_sessions(&tenant_id, now) >= sessions::MAX_OPEN_SESSIONS_PER_TENANT {
        return Err(ApiError::Conflict(format!(
            "{} setup sessions of this tenant are open: finish one (autoconfigure or rollback) \
             or let it expire (7 days untouched)",
            sessions::MAX_OPEN_SESSIONS_PER_TENANT
        )));
    }
    let session = sessions::new_session(format!("setup-{}", uuid_v4()), tenant_id, now);
    api.sessions
        .put(session.clone())
        .await
        .map_err(|e| unavailable(s, e.0))?;
    tracing::info!(session = %session.session_id, tenant = %session.tenant_id, "setup session created");
    let body = sessions::status_json(&session, api.config.max_failed_attempts);
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

fn uuid_v4() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

async fn status(
    State(s): State<Arc<EdgeState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let result = api(&s).and_then(|api| {
        let session = session_of(&s, api, &headers, &id)?;
        Ok(Json(sessions::status_json(
            &session,
            api.config.max_failed_attempts,
        ))
        .into_response())
    });
    respond("setup.status", result)
}

/// `text/event-stream`: the status now, then after every change (any edge's), until the
/// client goes away. Event name `status`, data the status JSON.
async fn events(
    State(s): State<Arc<EdgeState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let result = api(&s).and_then(|api| {
        let session = session_of(&s, api, &headers, &id)?;
        let max = api.config.max_failed_attempts;
        let first = sessions::status_json(&session, max);
        let changes = api.sessions.subscribe();
        let stream = futures::stream::unfold(
            (Some(first), changes, id, session.revision),
            move |(first, mut changes, id, mut seen)| async move {
                if let Some(first) = first {
                    let event = Event::default().event("status").data(first.to_string());
                    return Some((Ok::<_, Infallible>(event), (None, changes, id, seen)));
                }
                loop {
                    match changes.recv().await {
                        Ok(session) if session.session_id == id && session.revision > seen => {
                            seen = session.revision;
                            let data = sessions::status_json(&session, max).to_string();
                            let event = Event::default().event("status").data(data);
                            return Some((Ok(event), (None, changes, id, seen)));
                        }
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
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

/// The settings validated so far, with their secrets (kept sealed in the session).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Validated {
    gateway: Option<GatewayInput>,
    meta: Option<MetaInput>,
    url: Option<String>,
}

fn open_inputs(api: &SetupApi, session: &SetupSession) -> Result<Validated, ApiError> {
    match &session.inputs {
        None => Ok(Validated::default()),
        Some(sealed) => {
            let plain = api
                .keys
                .open(&session.session_id, sealed)
                .map_err(|e| ApiError::Internal(format!("session inputs: {e}")))?;
            serde_json::from_slice(&plain)
                .map_err(|e| ApiError::Internal(format!("session inputs: {e}")))
        }
    }
}

/// One tool's input, checked (400 naming the field) before anything runs.
enum Input {
    Gateway(GatewayInput),
    Meta(MetaInput),
    Url(UrlInput, url::Url),
}

impl Input {
    fn parse(tool: &str, value: Value, field_prefix: &str) -> Result<Input, ApiError> {
        let prefixed = |e: ApiError| match e {
            ApiError::InvalidField { field, message } if !field_prefix.is_empty() => {
                ApiError::field(format!("{field_prefix}.{field}"), message)
            }
            other => other,
        };
        let bytes = value.to_string();
        match tool {
            "validate_gateway_credentials" => {
                let input: GatewayInput = parse_json(bytes.as_bytes()).map_err(prefixed)?;
                input.check().map_err(prefixed)?;
                Ok(Input::Gateway(input))
            }
            "validate_meta_token" => {
                let input: MetaInput = parse_json(bytes.as_bytes()).map_err(prefixed)?;
                input.check().map_err(prefixed)?;
                Ok(Input::Meta(input))
            }
            _ => {
                let input: UrlInput = parse_json(bytes.as_bytes()).map_err(prefixed)?;
                let url = input.check().map_err(prefixed)?;
                Ok(Input::Url(input, url))
            }
        }
    }

    async fn run(&self, tools: &Tools, tenant_id: &str) -> Outcome {
        match self {
            Input::Gateway(input) => tools.validate_gateway(input).await,
            Input::Meta(input) => tools.validate_meta(input).await,
            Input::Url(input, url) => tools.probe_url(input, url.clone(), tenant_id).await,
        }
    }

    /// Keep what validated, for autoconfigure.
    fn keep(self, validated: &mut Validated) {
        match self {
            Input::Gateway(input) => validated.gateway = Some(input),
            Input::Meta(input) => validated.meta = Some(input),
            Input::Url(input, _) => validated.url = input.url,
        }
    }
}

fn log_record(
    session: &SetupSession,
    tool: &str,
    input: &Value,
    output: &Value,
    ok: bool,
    reason: Option<String>,
    latency_ms: i64,
) -> SetupActionLog {
    SetupActionLog {
        action_id: format!("act-{}", uuid_v4()),
        session_id: session.session_id.clone(),
        tenant_id: session.tenant_id.clone(),
        tool: tool.to_owned(),
        input: input.to_string(),
        output: output.to_string(),
        status: if ok { "success" } else { "failed" }.into(),
        reason,
        latency_ms,
        at: now_ms(),
    }
}

/// Run tools, then record their outcomes in the session (one update) and the action log.
async fn run_tools(
    s: &EdgeState,
    api: &SetupApi,
    session_id: &str,
    inputs: Vec<Input>,
) -> Result<(SetupSession, Vec<(Outcome, String)>), ApiError> {
    let tenant = api
        .sessions
        .get(session_id, now_ms())
        .map(|s| s.tenant_id)
        .unwrap_or_default();
    let outcomes =
        futures::future::join_all(inputs.iter().map(|i| i.run(&api.tools, &tenant))).await;
    let _writing = api.writing.lock().await;
    let mut session = api
        .sessions
        .get(session_id, now_ms())
        .ok_or_else(|| ApiError::NotFound(session_id.into()))?;
    let mut validated = open_inputs(api, &session)?;
    let now = now_ms();
    let mut logs = Vec::new();
    for (input, outcome) in inputs.into_iter().zip(&outcomes) {
        let step = tools::step_of(outcome.tool).expect("a tool's step");
        sessions::record(
            &mut session,
            step,
            outcome,
            now,
            api.config.max_failed_attempts,
        );
        if outcome.ok {
            input.keep(&mut validated);
        }
        let log = log_record(
            &session,
            outcome.tool,
            &outcome.input,
            &outcome.output,
            outcome.ok,
            outcome.reason.clone(),
            outcome.latency_ms,
        );
        logs.push(log);
    }
    let plain = serde_json::to_vec(&validated).expect("inputs serialize");
    session.inputs = Some(
        api.keys
            .seal(&session.session_id, &plain)
            .map_err(|e| ApiError::Internal(format!("sealing session inputs: {e}")))?,
    );
    session.revision += 1;
    for log in &logs {
        api.sessions
            .log(log)
            .await
            .map_err(|e| unavailable(s, e.0))?;
    }
    api.sessions
        .put(session.clone())
        .await
        .map_err(|e| unavailable(s, e.0))?;
    let ids = logs.into_iter().map(|l| l.action_id);
    Ok((session, outcomes.into_iter().zip(ids).collect()))
}

fn outcome_json(outcome: &Outcome, action_id: &str) -> Value {
    json!({
        "action_id": action_id,
        "tool": outcome.tool,
        "status": if outcome.ok { "success" } else { "failed" },
        "reason": outcome.reason,
        "recommendation": outcome.recommendation,
        "latency_ms": outcome.latency_ms,
        "input": outcome.input,
        "output": outcome.output,
    })
}

async fn action(
    State(s): State<Arc<EdgeState>>,
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
    s: &EdgeState,
    id: &str,
    tool: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let api = api(s)?;
    let session = session_of(s, api, headers, id)?;
    if tools::step_of(tool).is_none() {
        return Err(ApiError::NotFound(format!(
            "tool {} (one of {})",
            tool.chars().take(64).collect::<String>(),
            tools::TOOLS.join(", ")
        )));
    }
    let value: Value = parse_json(body)?;
    let input = Input::parse(tool, value, "")?;
    let (session, outcomes) = run_tools(s, api, &session.session_id, vec![input]).await?;
    let (outcome, action_id) = &outcomes[0];
    let mut body = outcome_json(outcome, action_id);
    body["session"] = sessions::status_json(&session, api.config.max_failed_attempts);
    Ok(Json(body).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ValidateBody {
    gateway: Option<Value>,
    meta: Option<Value>,
    url: Option<Value>,
}

async fn validate(
    State(s): State<Arc<EdgeState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    respond(
        "setup.validate",
        validate_inner(&s, &id, &headers, &body).await,
    )
}

/// All three tools; a section missing from the body reuses the last validated input.
async fn validate_inner(
    s: &EdgeState,
    id: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let api = api(s)?;
    let session = session_of(s, api, headers, id)?;
    let body: ValidateBody = if body.iter().all(u8::is_ascii_whitespace) {
        ValidateBody::default()
    } else {
        parse_json(body)?
    };
    let stored = open_inputs(api, &session)?;
    let section = |given: Option<Value>, stored: Option<Value>, name: &str| {
        given.or(stored).ok_or_else(|| ApiError::missing(name))
    };
    let inputs = vec![
        Input::parse(
            "validate_gateway_credentials",
            section(body.gateway, stored.gateway.map(|g| json!(g)), "gateway")?,
            "gateway",
        )?,
        Input::parse(
            "validate_meta_token",
            section(body.meta, stored.meta.map(|m| json!(m)), "meta")?,
            "meta",
        )?,
        Input::parse(
            "probe_landing_url",
            section(body.url, stored.url.map(|u| json!({"url": u})), "url")?,
            "url",
        )?,
    ];
    let (session, outcomes) = run_tools(s, api, &session.session_id, inputs).await?;
    let results: Vec<Value> = outcomes.iter().map(|(o, id)| outcome_json(o, id)).collect();
    Ok(Json(json!({
        "state": session.state,
        "results": results,
        "session": sessions::status_json(&session, api.config.max_failed_attempts),
    }))
    .into_response())
}

/// The session `id`, re-read under this process's write lock (tools never run under it).
async fn locked<'a>(
    s: &'a EdgeState,
    id: &str,
    headers: &HeaderMap,
) -> Result<(&'a SetupApi, tokio::sync::MutexGuard<'a, ()>, SetupSession), ApiError> {
    let api = api(s)?;
    let session = session_of(s, api, headers, id)?;
    let guard = api.writing.lock().await;
    let session = api
        .sessions
        .get(&session.session_id, now_ms())
        .unwrap_or(session);
    Ok((api, guard, session))
}

/// After autoconfigure or rollback wrote the tenant: the session's new `state`, the action
/// logged and the session stored (both acknowledged), and the answer.
async fn tenant_changed(
    s: &EdgeState,
    api: &SetupApi,
    mut session: SetupSession,
    new_state: &str,
    output: Value,
    started: Instant,
) -> Result<Response, ApiError> {
    session.state = new_state.into();
    session.updated_at = now_ms();
    session.revision += 1;
    let tool = if new_state == state::CONFIGURED {
        "autoconfigure"
    } else {
        "rollback"
    };
    let latency = started.elapsed().as_millis() as i64;
    let log = log_record(&session, tool, &json!({}), &output, true, None, latency);
    api.sessions
        .log(&log)
        .await
        .map_err(|e| unavailable(s, e.0))?;
    api.sessions
        .put(session.clone())
        .await
        .map_err(|e| unavailable(s, e.0))?;
    tracing::info!(session = %session.session_id, tenant = %session.tenant_id, %output, "setup {tool} changed the tenant");
    let mut body = output;
    body["session"] = sessions::status_json(&session, api.config.max_failed_attempts);
    Ok(Json(body).into_response())
}

async fn autoconfigure(
    State(s): State<Arc<EdgeState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    respond(
        "setup.autoconfigure",
        autoconfigure_inner(&s, &id, &headers).await,
    )
}

/// Store the validated settings into the tenant (created if new); keep the tenant as it was
/// (sealed) for `rollback`, stored with the session before the tenant is written.
async fn autoconfigure_inner(
    s: &EdgeState,
    id: &str,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let (api, _writing, mut session) = locked(s, id, headers).await?;
    if !sessions::all_validated(&session) || session.state == state::CONFIGURED {
        return Err(ApiError::Conflict(format!(
            "session is {}: autoconfigure needs every step validated (gateway {}, meta {}, url {})",
            session.state, session.gateway.status, session.meta.status, session.url.status
        )));
    }
    let validated = open_inputs(api, &session)?;
    let before = api
        .store
        .directory()
        .get(&session.tenant_id)
        .map(|t| (*t).clone())
        .unwrap_or_else(|| TenantConfig::new(&session.tenant_id));
    let mut tenant = before.clone();
    let mut applied = Vec::new();
    if let Some(meta) = &validated.meta {
        tenant.meta_pixel_id = meta.pixel_id.clone();
        tenant.meta_access_token = meta.access_token.as_deref().map(Secret::from);
        tenant.meta_test_event_code = meta.test_event_code.clone();
        applied.extend(["meta_pixel_id", "meta_access_token"]);
    }
    if let Some(secret) = validated
        .gateway
        .as_ref()
        .and_then(|g| Some((g.gateway.as_str(), g.webhook_secret.as_deref()?)))
    {
        match secret {
            ("hotmart", hottok) => tenant.hotmart_hottok = Some(Secret::from(hottok)),
            ("kiwify", token) => tenant.kiwify_token = Some(Secret::from(token)),
            (_, signing) => {
                // The new secret first; older ones stay valid while Stripe rotates.
                tenant
                    .stripe_signing_secrets
                    .retain(|s| s.expose() != signing);
                tenant
                    .stripe_signing_secrets
                    .insert(0, Secret::from(signing));
            }
        }
        applied.push(match secret.0 {
            "hotmart" => "hotmart_hottok",
            "kiwify" => "kiwify_token",
            _ => "stripe_signing_secrets",
        });
    }
    if let Some(origin) = validated
        .url
        .as_deref()
        .and_then(|u| url::Url::parse(u).ok())
        .map(|u| u.origin().ascii_serialization())
    {
        if !tenant.allowed_origins.contains(&origin) {
            tenant.allowed_origins.push(origin);
        }
        applied.push("allowed_origins");
    }
    // Validation refuses weak secrets already; nothing weak is stored whatever the path.
    for field in &applied {
        if let Err(weak) = tenant.check_secret_setting(field) {
            return Err(ApiError::field(weak.field, weak.to_string()));
        }
    }
    // The copy to roll back to is stored (acknowledged) before the tenant changes: a
    // failure in between leaves a session that still holds it, and a retry keeps that first
    // copy instead of taking the changed tenant for "before".
    if session.rollback.is_none() {
        session.rollback = Some(
            record::seal_tenant(&before, &session.session_id, &api.keys)
                .map_err(|e| ApiError::Internal(format!("sealing the rollback copy: {e}")))?,
        );
        session.updated_at = now_ms();
        session.revision += 1;
        api.sessions
            .put(session.clone())
            .await
            .map_err(|e| unavailable(s, e.0))?;
    }
    let revision = api
        .store
        .put(
            &tenant,
            &format!("setup autoconfigure {}", session.session_id),
        )
        .await
        .map_err(|e| unavailable(s, e.to_string()))?;
    let output = json!({"tenant_id": tenant.id, "tenant_revision": revision, "applied": applied});
    tenant_changed(s, api, session, state::CONFIGURED, output, started).await
}

async fn rollback(
    State(s): State<Arc<EdgeState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    respond("setup.rollback", rollback_inner(&s, &id, &headers).await)
}

/// Put the tenant back as it was before this session's autoconfigure.
async fn rollback_inner(
    s: &EdgeState,
    id: &str,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let (api, _writing, mut session) = locked(s, id, headers).await?;
    let (state::CONFIGURED, Some(sealed)) = (session.state.as_str(), &session.rollback) else {
        return Err(ApiError::Conflict(format!(
            "session is {}: only a configured session can be rolled back",
            session.state
        )));
    };
    let before = record::open_tenant(sealed, &session.session_id, &api.keys)
        .map_err(|e| ApiError::Internal(format!("opening the rollback copy: {e}")))?;
    let revision = api
        .store
        .put(&before, &format!("setup rollback {}", session.session_id))
        .await
        .map_err(|e| unavailable(s, e.to_string()))?;
    session.rollback = None;
    let output = json!({"tenant_id": before.id, "tenant_revision": revision});
    tenant_changed(s, api, session, state::ROLLED_BACK, output, started).await
}

//! The HTTP edge (`funnelhub edge`): landing-page tracking hits, signed gateway webhooks
//! and onboarding-portal webhooks, validated, normalized, personal data hashed, written to
//! the raw topics as Avro, answered only after the broker acknowledged.
//!
//! Routes (every one takes the tenant as `?tenant=<id>`; unknown tenant → 404):
//! - `POST /api/v1/track/{click,pageview,initiate_checkout}` ([`tracking`])
//! - `POST /api/v1/webhooks/{hotmart,kiwify,stripe}` ([`webhooks`])
//! - `POST /api/v1/webhooks/onboard` ([`webhooks::onboard`])
//! - `GET /sdk/v1/funnelhub.js`: the browser tracker ([`sdk`])
//! - `GET /healthz` (process up), `GET /readyz` (broker and registry reachable: what is
//!   down, never why)
//! - on the operators' port (`edge.ops_listen`, off the public network): `GET /metrics`
//!   (Prometheus), `GET /readyz` with the reasons, `GET /healthz`
//! - the read API over ClickHouse, authenticated by tenant API keys ([`read`]), with the
//!   purge by identifier ([`privacy`])
//! - `GET /app/`: the web app (setup wizard, live status, chat, ops desk), embedded
//!   ([`webapp`]), and `GET /api/v1/whoami` for its key form

pub mod config;
pub mod limits;
pub mod metrics;
pub mod privacy;
pub mod producer;
pub mod read;
pub mod request;
pub mod sdk;
pub mod tracking;
pub mod validate;
pub mod webapp;
pub mod webhooks;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use funnelhub_clickhouse::ClickHouseConfig;
use funnelhub_kafka::{KafkaConfig, SchemaRegistry, SchemaRegistryConfig, TopicCodec};
use funnelhub_runtime::RunningServer;
use funnelhub_schemas::common::Gateway;
use funnelhub_schemas::events::EdgeEvent;
use funnelhub_schemas::Catalog;
use metrics_exporter_prometheus::PrometheusHandle;
use rdkafka::producer::Producer;
use serde_json::json;
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use config::{EdgeConfig, Secret, TenantConfig};
pub use funnelhub_runtime::api::ApiError;
use funnelhub_runtime::api::{parse_json, respond};
use funnelhub_schemas::ids::now_ms;
pub use funnelhub_tenants::TenantDirectory;
use producer::EdgeProducer;
use request::{require_json_or_text, QueryParams, Tenants};
use webhooks::Delivery;

/// What the handlers share.
#[derive(Debug)]
pub struct EdgeState {
    pub config: EdgeConfig,
    pub tenants: Tenants,
    pub producer: EdgeProducer,
    pub registry_url: String,
    pub prometheus: Option<PrometheusHandle>,
    /// The read API (`None`: its routes answer 503).
    pub read: Option<read::ReadApi>,
    /// The setup API's routes (they answer 503 without `FUNNELHUB_TENANT_KEYS`).
    pub setup: Arc<funnelhub_setup::http::SetupHttp>,
    /// How a tracking hit's client IP is found.
    pub client_ip: request::ClientIpRule,
    /// Rate limits of the tracking routes.
    pub limits: limits::RateLimits,
}

/// Why the edge could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Topics, schema registration or the producer failed.
    #[error(transparent)]
    Kafka(#[from] funnelhub_kafka::Error),
    /// The setup API could not start (keys, control topic).
    #[error("setup API: {0}")]
    Setup(#[from] funnelhub_setup::kafka::ConnectError),
    /// A setting is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The listen address is taken or not ours.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running edge: its public server and, when configured, its operators' port.
#[derive(Debug)]
pub struct Edge {
    pub public: RunningServer,
    pub ops: Option<RunningServer>,
}

impl Edge {
    /// The public base URL.
    pub fn url(&self) -> String {
        self.public.url()
    }

    /// The operators' base URL, if served.
    pub fn ops_url(&self) -> Option<String> {
        self.ops.as_ref().map(RunningServer::url)
    }

    /// Stop both servers (requests in flight finish).
    pub async fn stop(self) -> std::io::Result<()> {
        self.public.stop().await?;
        match self.ops {
            Some(ops) => ops.stop().await,
            None => Ok(()),
        }
    }
}

/// Connect to Kafka and the registry, then serve the edge on `config.listen` (and its
/// operators' port on `config.ops_listen`); with `clickhouse`, the read API too (connected
/// on first use).
pub async fn start(
    config: &EdgeConfig,
    tenants: TenantDirectory,
    kafka: &KafkaConfig,
    registry: &SchemaRegistryConfig,
    prometheus: Option<PrometheusHandle>,
    clickhouse: Option<&ClickHouseConfig>,
) -> Result<Edge, StartError> {
    let schema_registry = SchemaRegistry::new(registry)?;
    let producer = EdgeProducer::connect(
        kafka,
        &schema_registry,
        Duration::from_millis(config.produce_timeout_ms),
        config.retry_after_secs,
    )
    .await?;
    let client_ip =
        request::ClientIpRule::new(config.client_ip_header.as_deref(), &config.trusted_proxies)
            .map_err(StartError::Config)?;
    let setup = Arc::new(funnelhub_setup::http::SetupHttp {
        service: funnelhub_setup::kafka::connect(
            &config.setup,
            &tenants,
            kafka,
            &schema_registry,
            Duration::from_millis(config.produce_timeout_ms),
        )
        .await?,
        tenants: tenants.clone(),
        retry_after_secs: config.retry_after_secs,
        streams: Default::default(),
    });
    let limits = limits::RateLimits::new(&config.rate_limits);
    limits.spawn_sweeper();
    let state = Arc::new(EdgeState {
        client_ip,
        limits,
        config: config.clone(),
        tenants: Tenants::live(tenants),
        producer,
        registry_url: registry.url.clone(),
        prometheus,
        read: match clickhouse {
            Some(clickhouse) => Some(read::ReadApi::new(
                clickhouse.clone(),
                kafka.clone(),
                funnelhub_kafka::AckedProducer::new(
                    kafka,
                    "funnelhub-replay",
                    Duration::from_millis(config.produce_timeout_ms),
                )?,
                TopicCodec::of(
                    &schema_registry,
                    &Catalog::new(&kafka.topic_prefix),
                    funnelhub_schemas::topics::SUPPRESSIONS,
                )
                .await?,
                config.retry_after_secs,
            )),
            None => None,
        },
        setup,
    });
    let listen = |addr: SocketAddr| move |source| StartError::Listen { addr, source };
    let ops = match config.ops_listen {
        Some(addr) => Some(
            funnelhub_runtime::serve(addr, ops_app(state.clone()))
                .await
                .map_err(listen(addr))?,
        ),
        None => None,
    };
    let public = funnelhub_runtime::serve(config.listen, app(state))
        .await
        .map_err(listen(config.listen))?;
    tracing::info!(addr = %public.addr(), ops = ?ops.as_ref().map(RunningServer::addr), "edge listening");
    Ok(Edge { public, ops })
}

/// The edge's routes.
pub fn app(state: Arc<EdgeState>) -> Router {
    let tenants = state.tenants.clone();
    // Browsers may call the tracking routes from the tenant's landing-page origins only.
    let cors = CorsLayer::new()
        .allow_methods([Method::POST])
        .allow_headers([header::CONTENT_TYPE])
        // The tracker reads it to wait before sending a refused hit again.
        .expose_headers([header::RETRY_AFTER])
        .allow_origin(AllowOrigin::predicate(move |origin, parts| {
            let query = QueryParams::parse(parts.uri.query());
            match (query.get("tenant"), origin.to_str()) {
                (Some(tenant), Ok(origin)) => tenants.allows_origin(tenant, origin),
                _ => false,
            }
        }));
    let limit = state.config.max_body_bytes;
    let in_flight = Arc::new(tokio::sync::Semaphore::new(
        state.config.max_in_flight_requests.max(1),
    ));
    Router::new()
        .route("/api/v1/track/{kind}", post(track).layer(cors))
        .route("/api/v1/webhooks/onboard", post(onboard))
        .route("/api/v1/webhooks/{gateway}", post(gateway_webhook))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route(
            "/sdk/v1/funnelhub.js",
            get(|RawQuery(query): RawQuery, headers: HeaderMap| async move {
                sdk::tracker(query.as_deref(), &headers)
            }),
        )
        .merge(read::routes())
        .merge(webapp::routes())
        .merge(funnelhub_setup::http::routes(state.setup.clone()))
        .fallback(|uri: axum::http::Uri| async move {
            ApiError::NotFound(uri.path().chars().take(128).collect()).into_response()
        })
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            request_deadline,
        ))
        .layer(axum::middleware::from_fn_with_state(
            (state.clone(), in_flight),
            bounded_in_flight,
        ))
        .with_state(state)
}

/// Answer 503 + `Retry-After` at once when `edge.max_in_flight_requests` requests are
/// already being worked on: back-pressure on the senders (browsers and gateways retry)
/// instead of a queue that grows until memory or every deadline runs out. The slot is held
/// until the answer's head is ready: a stream being answered does not hold it.
async fn bounded_in_flight(
    State((s, slots)): State<(Arc<EdgeState>, Arc<tokio::sync::Semaphore>)>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Ok(_slot) = slots.try_acquire() else {
        // Counted, not logged: a log line per refusal would add to the overload.
        funnelhub_runtime::api::count_rejected("request", "overloaded");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, s.config.retry_after_secs.to_string())],
            Json(json!({
                "error": "overloaded",
                "message": "this edge is at its limit of requests in flight: retry later",
            })),
        )
            .into_response();
    };
    next.run(request).await
}

/// The operators' routes: `/metrics`, `/healthz`, and `/readyz` with the reasons.
/// `/metrics` and `/healthz` are every service's operators' routes
/// (`funnelhub_runtime::ops_router`); without a recorder only `/readyz` is served.
pub fn ops_app(state: Arc<EdgeState>) -> Router {
    let ops = match &state.prometheus {
        Some(handle) => funnelhub_runtime::ops_router(handle.clone()),
        None => Router::new(),
    };
    ops.merge(
        Router::new()
            .route("/readyz", get(readyz_with_reasons))
            .with_state(state),
    )
}

/// Answer 408 to a request not received and answered within `edge.request_timeout_ms`: a
/// body sent slowly or never finished holds nothing longer than that.
async fn request_deadline(
    State(s): State<Arc<EdgeState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let deadline = Duration::from_millis(s.config.request_timeout_ms);
    match tokio::time::timeout(deadline, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            funnelhub_runtime::api::count_rejected("request", "request_timeout");
            (
                StatusCode::REQUEST_TIMEOUT,
                Json(json!({
                    "error": "request_timeout",
                    "message": format!("the request was not received and answered within {} ms", s.config.request_timeout_ms),
                })),
            )
                .into_response()
        }
    }
}

type Body = Result<Bytes, BytesRejection>;
type Peer = Option<Extension<ConnectInfo<SocketAddr>>>;

fn accepted(event_id: &str) -> Response {
    Json(json!({"status": "accepted", "event_id": event_id})).into_response()
}

async fn track(
    State(s): State<Arc<EdgeState>>,
    Path(kind): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    peer: Peer,
    body: Body,
) -> Response {
    let Some(event_type) = tracking::event_type(&kind) else {
        return respond(
            "track.unknown",
            Err(ApiError::NotFound(format!(
                "/api/v1/track/{}",
                kind.chars().take(32).collect::<String>()
            ))),
        );
    };
    let route = match kind.as_str() {
        "click" => "track.click",
        "pageview" => "track.pageview",
        _ => "track.initiate_checkout",
    };
    respond(
        route,
        async {
            let query = QueryParams::parse(query.as_deref());
            let tenant = s.tenants.resolve(&query)?;
            require_json_or_text(&headers)?;
            let client = s.client_ip.client_ip(&headers, peer.map(|p| p.0 .0));
            s.limits.check(&tenant.id, client)?;
            let body = request::body(body, s.config.max_body_bytes)?;
            let ctx = tracking::RequestContext {
                client_ip: client.map(|ip| ip.to_string()),
                user_agent: headers
                    .get(header::USER_AGENT)
                    .and_then(|v| v.to_str().ok())
                    .map(|ua| ua.chars().take(512).collect()),
                received_at: now_ms(),
            };
            let hit = tracking::build_hit(event_type, &tenant, parse_json(&body)?, &ctx)?;
            let event_id = hit.envelope.event_id.clone();
            s.producer.send(&EdgeEvent::TrackingHit(hit)).await?;
            Ok(accepted(&event_id))
        }
        .await,
    )
}

async fn gateway_webhook(
    State(s): State<Arc<EdgeState>>,
    Path(gateway): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (route, gateway) = match gateway.as_str() {
        "hotmart" => ("webhook.hotmart", Gateway::Hotmart),
        "kiwify" => ("webhook.kiwify", Gateway::Kiwify),
        "stripe" => ("webhook.stripe", Gateway::Stripe),
        other => {
            return respond(
                "webhook.unknown",
                Err(ApiError::UnknownGateway(other.chars().take(32).collect())),
            )
        }
    };
    respond(
        route,
        async {
            let query = QueryParams::parse(query.as_deref());
            let tenant = s.tenants.resolve_for_webhook(&query)?;
            let body = request::body(body, s.config.max_body_bytes)?;
            let received_at = now_ms();
            let event = match gateway {
                Gateway::Hotmart => webhooks::hotmart::authenticate(&tenant, &headers, &body)?,
                Gateway::Kiwify => webhooks::kiwify::authenticate(&tenant, &query, &body)?,
                _ => webhooks::stripe::authenticate(
                    &tenant,
                    &headers,
                    &body,
                    received_at,
                    s.config.stripe_tolerance_secs,
                )?,
            };
            let delivery = webhooks::deliver(gateway, &tenant, &body, &event, received_at);
            metrics::gateway_event(gateway, &delivery);
            match delivery {
                Delivery::Event(order) => {
                    let event_id = order.envelope.event_id.clone();
                    s.producer.send(&EdgeEvent::OrderEvent(*order)).await?;
                    Ok(accepted(&event_id))
                }
                Delivery::Kept(raw) => {
                    s.producer.send_raw_webhook(&raw).await?;
                    Ok(Json(json!({
                        "status": "kept",
                        "webhook_id": raw.webhook_id,
                        "gateway_event": raw.event_name,
                        "reason": raw.reason.as_str(),
                    }))
                    .into_response())
                }
            }
        }
        .await,
    )
}

async fn onboard(
    State(s): State<Arc<EdgeState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    respond(
        "webhook.onboard",
        async {
            let query = QueryParams::parse(query.as_deref());
            let tenant = s.tenants.resolve_for_webhook(&query)?;
            let body = request::body(body, s.config.max_body_bytes)?;
            let webhooks::onboard::Accepted { event, dropped } =
                webhooks::onboard::handle(&tenant, &headers, &body, now_ms())?;
            let event_id = event.envelope.event_id.clone();
            s.producer.send(&EdgeEvent::OnboardingEvent(event)).await?;
            let mut answer = json!({"status": "accepted", "event_id": event_id});
            if !dropped.is_empty() {
                answer["dropped_attributes"] = json!(dropped);
            }
            Ok(Json(answer).into_response())
        }
        .await,
    )
}

/// Ready when the broker answers a metadata request and the registry answers HTTP.
/// Whether the broker and the registry answer, and why not.
async fn dependencies(s: &EdgeState) -> [(&'static str, Result<(), String>); 2] {
    let producer = s.producer.producer().inner().clone();
    let broker = tokio::task::spawn_blocking(move || {
        producer
            .client()
            .fetch_metadata(None, Duration::from_secs(2))
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    let registry = reqwest::Client::new()
        .get(format!("{}/subjects", s.registry_url))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map(|_| ())
        .map_err(|e| e.to_string());
    [("broker", broker), ("registry", registry)]
}

/// The readiness answer: each dependency `ok` or `unavailable`, with the reason only when
/// `reasons` (the operators' port); the reasons always go to the log.
async fn readiness(s: &EdgeState, reasons: bool) -> Response {
    let checked = dependencies(s).await;
    let mut body = json!({});
    for (what, result) in &checked {
        body[*what] = match result {
            Ok(()) => json!("ok"),
            Err(e) => {
                tracing::warn!(dependency = what, "not ready: {e}");
                if reasons {
                    json!({"status": "unavailable", "reason": e})
                } else {
                    json!("unavailable")
                }
            }
        };
    }
    let code = if checked.iter().all(|(_, r)| r.is_ok()) {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

async fn readyz(State(s): State<Arc<EdgeState>>) -> Response {
    readiness(&s, false).await
}

async fn readyz_with_reasons(State(s): State<Arc<EdgeState>>) -> Response {
    readiness(&s, true).await
}

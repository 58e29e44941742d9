//! The read API ops and dashboards use, served by the edge next to ingestion, reading the
//! ClickHouse tables of `docs/data-model.md`:
//!
//! - `GET /api/v1/events` — a tenant's deduplicated events, newest first, filtered by
//!   `type`, `session_id`, `from`/`to` (ms or RFC 3339), paged by an opaque `cursor`;
//! - `GET /api/v1/events/{id}` — one event with its history: the copies received (dedupe),
//!   its match, its dispatch requests, every attempt against Meta and dead letters;
//! - `GET /api/v1/funnel/tracking` and `GET /api/v1/onboard/funnel` — landing-page
//!   (click to purchase, with the abandoned-checkout and pending-payment stages) or
//!   onboarding sessions per current stage over the last 48 h and up to 50 active ones;
//! - `GET /api/v1/onboard/sessions/{id}/timeline` — a session's events in time order;
//! - `GET /api/v1/desk/tickets` — the newest ops tickets (at most 50);
//! - `GET /api/v1/desk/tickets/{id}` — an ops ticket with its session's timeline;
//! - `POST /api/v1/replay/{event_id}` — re-enqueue the event's stored dispatch request for
//!   the CAPI sink (same record, same `event_id`);
//! - `POST /api/v1/privacy/purge` — erase one person by email, phone or external id
//!   ([`crate::privacy`]).
//!
//! Every route takes `Authorization: Bearer <api key>`; the key decides the tenant, so a
//! key never reads another tenant's rows (every query filters on it). An operators' key
//! reads the tenant named by `X-Funnelhub-Tenant` ([`Reader`]). ClickHouse being
//! away makes these routes answer 503, never the ingestion routes: the client connects
//! lazily and the edge starts without it.

mod events;
mod funnel;
mod onboard;
mod privacy;
mod replay;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::routing::{get, post};
use axum::Router;
use funnelhub_clickhouse::{ClickHouseConfig, Server};
use funnelhub_kafka::{AckedProducer, KafkaConfig, TopicCodec};
use funnelhub_schemas::privacy::Suppression;
use tokio::sync::OnceCell;

use crate::config::TenantConfig;
use crate::EdgeState;
use funnelhub_runtime::api::ApiError;

/// What the read routes need: ClickHouse, and Kafka for replays.
#[derive(Debug)]
pub struct ReadApi {
    clickhouse: ClickHouseConfig,
    server: OnceCell<Server>,
    kafka: KafkaConfig,
    producer: AckedProducer,
    suppressions: TopicCodec<Suppression>,
    retry_after_secs: u32,
    /// Replays reading Kafka now (each holds a consumer): at most [`MAX_REPLAYS_IN_FLIGHT`].
    replays: InFlight,
    /// Purges running now (each issues ClickHouse mutations): at most
    /// [`MAX_PURGES_IN_FLIGHT`].
    purges: InFlight,
}

/// Replays an edge runs at once; one more is answered 429.
pub const MAX_REPLAYS_IN_FLIGHT: usize = 4;
/// Purges an edge runs at once; one more is answered 429.
pub const MAX_PURGES_IN_FLIGHT: usize = 2;

/// A bounded number of calls of one kind running at once, whoever makes them.
#[derive(Debug)]
struct InFlight {
    slots: std::sync::Arc<tokio::sync::Semaphore>,
    max: usize,
    what: &'static str,
}

impl InFlight {
    fn new(max: usize, what: &'static str) -> InFlight {
        InFlight {
            slots: std::sync::Arc::new(tokio::sync::Semaphore::new(max)),
            max,
            what,
        }
    }

    /// A slot, held until dropped, or 429 when all are taken.
    fn take(&self) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        self.slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::TooManyRequests {
                what: format!(
                    "{} {} are running on this edge: retry in a moment",
                    self.max, self.what
                ),
                retry_after_secs: 1,
            })
    }
}

impl ReadApi {
    pub fn new(
        clickhouse: ClickHouseConfig,
        kafka: KafkaConfig,
        producer: AckedProducer,
        suppressions: TopicCodec<Suppression>,
        retry_after_secs: u32,
    ) -> ReadApi {
        ReadApi {
            clickhouse,
            server: OnceCell::new(),
            kafka,
            producer,
            suppressions,
            retry_after_secs,
            replays: InFlight::new(MAX_REPLAYS_IN_FLIGHT, "replays"),
            purges: InFlight::new(MAX_PURGES_IN_FLIGHT, "purges"),
        }
    }

    /// The ClickHouse client, connected on first use.
    async fn client(&self) -> Result<&clickhouse::Client, ApiError> {
        let server = self
            .server
            .get_or_try_init(|| Server::connect(&self.clickhouse))
            .await
            .map_err(|e| self.unavailable(e))?;
        Ok(&server.client)
    }

    fn db(&self) -> &str {
        &self.clickhouse.database
    }

    fn unavailable(&self, e: impl std::fmt::Display) -> ApiError {
        ApiError::Unavailable {
            reason: format!("ClickHouse: {e}"),
            retry_after_secs: self.retry_after_secs,
        }
    }

    /// Run `query` (with `{db}` for the database) and fetch every row.
    async fn fetch<R>(&self, query: clickhouse::query::Query) -> Result<Vec<R>, ApiError>
    where
        R: clickhouse::RowOwned + clickhouse::RowRead,
    {
        query
            .fetch_all::<R>()
            .await
            .map_err(|e| self.unavailable(e))
    }

    /// A query on this API's database.
    async fn query(&self, sql: &str) -> Result<clickhouse::query::Query, ApiError> {
        Ok(self.client().await?.query(&sql.replace("{db}", self.db())))
    }
}

/// The read routes.
pub fn routes() -> Router<Arc<EdgeState>> {
    Router::new()
        .route("/api/v1/events", get(events::list))
        .route("/api/v1/events/{id}", get(events::detail))
        .route("/api/v1/onboard/funnel", get(onboard::funnel))
        .route("/api/v1/funnel/tracking", get(funnel::tracking))
        .route(
            "/api/v1/onboard/sessions/{id}/timeline",
            get(onboard::timeline),
        )
        .route("/api/v1/desk/tickets", get(onboard::tickets))
        .route("/api/v1/desk/tickets/{id}", get(onboard::ticket))
        .route("/api/v1/replay/{event_id}", post(replay::replay))
        .route("/api/v1/privacy/purge", post(privacy::purge_route))
}

/// The header naming the tenant an operator's key reads.
pub const TENANT_HEADER: &str = "x-funnelhub-tenant";

/// An authenticated read request: the tenant of its API key (every query filters on it),
/// or, with an operators' key (`[edge.setup] admin_keys`), the tenant named by
/// [`TENANT_HEADER`] with scope admin (configured or not). Extracting it answers 401
/// without a known key, 400 when an operator names no valid tenant id, 503 when the edge
/// has no read API.
#[derive(Debug)]
pub struct Reader {
    pub tenant: Arc<TenantConfig>,
    /// What the caller's key may do.
    pub scope: funnelhub_tenants::KeyScope,
    state: Arc<EdgeState>,
}

impl Reader {
    /// Refuse (403) a caller whose key's scope is narrower than `needed`.
    pub fn require(&self, needed: funnelhub_tenants::KeyScope) -> Result<(), ApiError> {
        if self.scope >= needed {
            Ok(())
        } else {
            Err(ApiError::Forbidden(match needed {
                funnelhub_tenants::KeyScope::Admin => "this needs an API key of scope admin",
                _ => "this needs an API key of scope setup",
            }))
        }
    }

    fn api(&self) -> &ReadApi {
        self.state.read.as_ref().expect("checked when extracted")
    }

    /// Where guided-setup screenshots are, when setup runs on this edge.
    fn setup_attachments(&self) -> Option<&funnelhub_setup::attachments::Attachments> {
        self.state
            .setup
            .service
            .as_ref()
            .map(funnelhub_setup::SetupService::attachments)
    }

    /// Run `work` against the read API within [`QUERY_TIMEOUT`].
    async fn run<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        tokio::time::timeout(QUERY_TIMEOUT, work)
            .await
            .unwrap_or_else(|_| Err(self.api().unavailable("no answer within 10 s")))
    }
}

impl FromRequestParts<Arc<EdgeState>> for Reader {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<EdgeState>,
    ) -> Result<Self, Self::Rejection> {
        let key = funnelhub_runtime::api::bearer_key(&parts.headers).ok_or(
            ApiError::Unauthorized("api key (Authorization: Bearer <key>)"),
        )?;
        let (tenant, scope) = if state.setup.is_operator_key(key) {
            let named = parts
                .headers
                .get(TENANT_HEADER)
                .and_then(|v| v.to_str().ok());
            let id = funnelhub_setup::service::check_tenant_id(named).map_err(|_| {
                ApiError::field(
                    "tenant",
                    format!("an operator key names the tenant in {TENANT_HEADER}: 1-64 letters, digits, - or _"),
                )
            })?;
            // A tenant not configured yet (a setup handed off before its first
            // autoconfigure) still has rows to read: its tickets, its setup's messages.
            let tenant = state
                .tenants
                .directory()
                .get(&id)
                .unwrap_or_else(|| Arc::new(TenantConfig::new(&id)));
            (tenant, funnelhub_tenants::KeyScope::Admin)
        } else {
            state
                .tenants
                .by_api_key(key)
                .ok_or(ApiError::Unauthorized("api key"))?
        };
        if state.read.is_none() {
            return Err(ApiError::Unavailable {
                reason: "the read API is not configured on this edge".into(),
                retry_after_secs: state.config.retry_after_secs,
            });
        }
        Ok(Reader {
            tenant,
            scope,
            state: state.clone(),
        })
    }
}

/// `from`/`to` as ms: an integer, or an RFC 3339 time.
fn time_param(name: &str, value: Option<&str>) -> Result<Option<i64>, ApiError> {
    let Some(value) = value else {
        return Ok(None);
    };
    if let Ok(ms) = value.parse::<i64>() {
        return Ok(Some(ms));
    }
    chrono::DateTime::parse_from_rfc3339(value)
        .map(|t| Some(t.timestamp_millis()))
        .map_err(|_| ApiError::field(name, "ms since 1970 or an RFC 3339 time"))
}

/// How long a read may take before the caller gets 503.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

//! Process plumbing every funnelhub service calls: serving an HTTP router with graceful
//! shutdown ([`serve`]), the process-wide Prometheus recorder ([`prometheus`]) and traces
//! ([`telemetry`]).

pub mod api;
pub mod telemetry;

use std::net::SocketAddr;
use std::sync::OnceLock;

use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long [`RunningServer::stop`] waits for requests in flight.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// An HTTP server running in the background.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stop accepting requests, let the ones in flight finish (at most
    /// [`SHUTDOWN_GRACE`]: a long-lived response such as an event stream would otherwise
    /// hold the process forever), and return.
    pub async fn stop(self) -> std::io::Result<()> {
        let _ = self.shutdown.send(());
        let mut task = self.task;
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await {
            Ok(joined) => joined.unwrap_or_else(|e| Err(std::io::Error::other(e))),
            Err(_) => {
                task.abort();
                tracing::warn!(addr = %self.addr, "connections still open {SHUTDOWN_GRACE:?} after shutdown (event streams?): closed");
                Ok(())
            }
        }
    }
}

/// Bind `listen` (port 0 picks a free port) and serve `router` in the background. Handlers
/// can extract `ConnectInfo<SocketAddr>` (the TCP peer).
pub async fn serve(listen: SocketAddr, router: Router) -> std::io::Result<RunningServer> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let (shutdown, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async {
            let _ = stopped.await;
        })
        .await
    });
    Ok(RunningServer {
        addr,
        shutdown,
        task,
    })
}

/// The process-wide Prometheus recorder, installed on first call. Every service renders
/// it on its own `/metrics`.
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .install_recorder()
                .expect("no other metrics recorder is installed")
        })
        .clone()
}

/// The sum of counter `name`'s series in this process whose labels contain `labels`
/// (`tenant="acme"`; empty: all), read from the recorder (for summaries and tests).
pub fn counter_sum(name: &str, labels: &str) -> u64 {
    let series = format!("{name}{{");
    prometheus()
        .render()
        .lines()
        .filter(|l| l.starts_with(&series) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// `/metrics` (Prometheus text) and `/healthz` for a service without other routes.
pub fn ops_router(prometheus: PrometheusHandle) -> Router {
    Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || {
                let prometheus = prometheus.clone();
                async move { prometheus.render() }
            }),
        )
        .route("/healthz", axum::routing::get(|| async { "ok" }))
}

/// Something that keeps a service from doing its work now, as `/readyz` reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NotReady {
    /// What is held (`clickhouse test.raw.tracking:0`).
    pub what: String,
    /// What it waits for (`sink`, `broker`, `registry`).
    pub waiting_for: String,
    /// For how long, in seconds.
    pub since_seconds: u64,
    /// The last failure, for people.
    pub reason: String,
}

/// Answers what keeps a service from being ready now (nothing: ready).
pub type Readiness = std::sync::Arc<dyn Fn() -> Vec<NotReady> + Send + Sync>;

/// [`ops_router`] plus `/readyz`: 200 `{"ready":true}`, or 503 with what is held:
/// `{"ready":false,"held":[NotReady...]}`.
pub fn ops_router_with_readiness(prometheus: PrometheusHandle, readiness: Readiness) -> Router {
    ops_router(prometheus).route(
        "/readyz",
        axum::routing::get(move || {
            let held = readiness();
            async move {
                let status = if held.is_empty() {
                    axum::http::StatusCode::OK
                } else {
                    axum::http::StatusCode::SERVICE_UNAVAILABLE
                };
                let body = serde_json::json!({ "ready": held.is_empty(), "held": held });
                (status, axum::Json(body))
            }
        }),
    )
}

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

/// How long a client may take to send a request's headers; then its connection is closed
/// (a client that trickles headers holds nothing longer). Bodies are bounded by each
/// service's own request deadline.
pub const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The most a request's head (request line and headers) may take, per connection: HTTP/1
/// closes a connection whose head is larger (with 431 when hyper can answer), HTTP/2 refuses
/// a header list larger. Bodies are bounded by each route's own limit.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Bind `listen` (port 0 picks a free port) and serve `router` in the background, HTTP/1
/// and HTTP/2, headers read within [`HEADER_READ_TIMEOUT`] and at most
/// [`MAX_HEADER_BYTES`]. Handlers can extract `ConnectInfo<SocketAddr>` (the TCP peer).
pub async fn serve(listen: SocketAddr, router: Router) -> std::io::Result<RunningServer> {
    serve_with(listen, router, HEADER_READ_TIMEOUT).await
}

/// [`serve`] with another header read timeout.
pub async fn serve_with(
    listen: SocketAddr,
    router: Router,
    header_read_timeout: std::time::Duration,
) -> std::io::Result<RunningServer> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let (shutdown, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(accept(listener, router, stopped, header_read_timeout));
    Ok(RunningServer {
        addr,
        shutdown,
        task,
    })
}

/// Accept connections until `stopped`, then let the open ones finish their requests.
async fn accept(
    listener: tokio::net::TcpListener,
    router: Router,
    mut stopped: oneshot::Receiver<()>,
    header_read_timeout: std::time::Duration,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use tower::ServiceExt;

    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .max_buf_size(MAX_HEADER_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_BYTES as u32);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!("accepting a connection: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stopped => break,
        };
        let service = router.clone().map_request(
            move |mut request: axum::http::Request<hyper::body::Incoming>| {
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                request
            },
        );
        let connection = builder
            .serve_connection_with_upgrades(
                TokioIo::new(stream),
                hyper_util::service::TowerToHyperService::new(service),
            )
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn router() -> Router {
        Router::new().route(
            "/peer",
            axum::routing::get(
                |axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<SocketAddr>| async move {
                    peer.ip().to_string()
                },
            ),
        )
    }

    #[tokio::test]
    async fn a_client_trickling_headers_is_cut_off_and_others_are_served() {
        let timeout = Duration::from_millis(500);
        let server = serve_with(SocketAddr::from(([127, 0, 0, 1], 0)), router(), timeout)
            .await
            .expect("serving");
        let started = Instant::now();
        let mut slow = tokio::net::TcpStream::connect(server.addr())
            .await
            .expect("connects");
        slow.write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("writes");
        // Never the blank line: the server must give up on its own.
        let mut answer = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut answer)).await;
        assert!(read.is_ok(), "the connection is still open after 5 s");
        assert!(started.elapsed() >= timeout, "{:?}", started.elapsed());
        let text = String::from_utf8_lossy(&answer);
        assert!(!text.contains("127.0.0.1"), "no request was served: {text}");

        let peer = reqwest::get(format!("{}/peer", server.url()))
            .await
            .expect("answers")
            .text()
            .await
            .expect("body");
        assert_eq!(peer, "127.0.0.1", "handlers see the TCP peer");
        server.stop().await.expect("stops");
    }

    #[tokio::test]
    async fn a_head_over_the_limit_is_refused_and_a_normal_one_served() {
        let server = serve(SocketAddr::from(([127, 0, 0, 1], 0)), router())
            .await
            .expect("serving");
        let client = reqwest::Client::new();
        let url = format!("{}/peer", server.url());
        let huge = "a".repeat(MAX_HEADER_BYTES + 1024);
        let refused = client.get(&url).header("x-filler", &huge).send().await;
        match refused {
            Ok(answer) => assert_eq!(
                answer.status(),
                reqwest::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            ),
            Err(e) => assert!(e.is_request() || e.is_connect() || e.is_body(), "{e}"),
        }
        let fine = client
            .get(&url)
            .header("x-filler", "a".repeat(8 * 1024))
            .send()
            .await
            .expect("answers");
        assert_eq!(fine.status(), reqwest::StatusCode::OK);
        server.stop().await.expect("stops");
    }
}

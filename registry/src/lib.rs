//! A Confluent-compatible schema registry whose store is a Kafka topic.
//!
//! No Confluent-compatible registry can be installed on the development machines, so
//! funnelhub serves one itself (`funnelhub registry`). It speaks the REST subset that
//! Confluent's clients use ([`api`]), with Confluent's error codes, and stores schemas in a
//! `_schemas` topic in Confluent's own record format ([`state`], [`log`]), so ids survive
//! restarts. Production can use Confluent's registry instead: only the URL changes.

pub mod api;
pub mod compatibility;
pub mod config;
pub mod error;
pub mod log;
pub mod state;

use std::net::SocketAddr;
use std::sync::Arc;

use funnelhub_kafka::KafkaConfig;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use compatibility::CompatibilityLevel;
pub use config::RegistryConfig;
pub use error::RegistryError;

/// A registry serving HTTP in the background.
#[derive(Debug)]
pub struct RunningRegistry {
    addr: SocketAddr,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl RunningRegistry {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stop accepting requests, finish the ones in flight, and return.
    pub async fn stop(self) -> std::io::Result<()> {
        let _ = self.shutdown.send(());
        self.task
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }

    /// Serve until the server fails (it does not stop by itself).
    pub async fn wait(self) -> std::io::Result<()> {
        let RunningRegistry { shutdown, task, .. } = self;
        let result = task.await.unwrap_or_else(|e| Err(std::io::Error::other(e)));
        drop(shutdown);
        result
    }
}

/// Read the schemas topic to its end, then serve the API on `config.listen`.
pub async fn start(
    config: &RegistryConfig,
    kafka: &KafkaConfig,
) -> Result<RunningRegistry, RegistryError> {
    let log = log::SchemaLog::open(kafka, &config.topic).await?;
    let registry = Arc::new(api::Registry {
        log,
        default_level: config.default_compatibility,
    });
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| RegistryError::Store(format!("cannot listen on {}: {e}", config.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| RegistryError::Store(e.to_string()))?;
    let (shutdown, stopped) = oneshot::channel::<()>();
    let app = api::app(registry);
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    tracing::info!(%addr, topic = %config.topic, "schema registry listening");
    Ok(RunningRegistry {
        addr,
        shutdown,
        task,
    })
}

//! The production stores on Kafka: sessions on the compacted topic `setup.sessions` (every
//! edge follows it, so any edge answers status, streams changes and holds the chat), one
//! record per action on `setup.actions` and per chat message on `setup.messages` (stored by
//! the ClickHouse sink in `setup_action_logs` and `setup_messages`), hand-off tickets on
//! `ops.tickets` (the funnel's ticket stream), tenants on the control topic; and
//! [`connect`], which builds the service on them.
//!
//! Writes wait for the broker's acknowledgement; the writer applies its own write at once.
//! An expired session is deleted with a tombstone by an hourly sweep any edge may run (a
//! tombstone written twice is harmless). A session record this version cannot read (an
//! unknown state) is skipped with a warning, never guessed.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use funnelhub_kafka::follow::{self, Follower};
use funnelhub_kafka::{AckedProducer, KafkaConfig, SchemaRegistry, TopicCodec};
use funnelhub_schemas::catalog::key;
use funnelhub_schemas::derived::OpsTicket;
use funnelhub_schemas::setup::{SetupActionLog, SetupMessage, SetupSession};
use funnelhub_schemas::topics;
use funnelhub_schemas::Catalog;
use funnelhub_tenants::{Keyring, TenantDirectory, TenantStore};
use tokio::sync::broadcast;

use crate::config::SetupConfig;
use crate::service::SetupService;
use crate::session::Session;
use crate::store::{SessionMap, SessionStore, StoreError};

/// How often each edge deletes expired sessions.
const SWEEP_EVERY: Duration = Duration::from_secs(60 * 60);

/// Why setup could not start.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Kafka(#[from] funnelhub_kafka::Error),
    #[error("tenant keys: {0}")]
    Keys(String),
    #[error("tenant store: {0}")]
    Tenants(String),
    #[error(transparent)]
    Setup(#[from] crate::error::SetupError),
}

/// The setup service on Kafka, when this process holds a key to seal secrets with
/// (`FUNNELHUB_TENANT_KEYS`); `None` without one (the routes then answer 503 and say why).
pub async fn connect(
    config: &SetupConfig,
    tenants: &TenantDirectory,
    kafka: &KafkaConfig,
    registry: &SchemaRegistry,
    deadline: Duration,
) -> Result<Option<SetupService>, ConnectError> {
    let keys = Keyring::from_env().map_err(|e| ConnectError::Keys(e.to_string()))?;
    if keys.active().is_none() {
        tracing::warn!(
            "no {} set: the setup API answers 503",
            funnelhub_tenants::sealing::KEYS_ENV
        );
        return Ok(None);
    }
    let attachments = crate::attachments::Attachments::open(
        config.attachments_url.as_deref(),
        &config.attachments_dir,
    )?;
    let sessions = KafkaSessions::follow(kafka, registry, deadline, Some(attachments)).await?;
    let store = TenantStore::connect(kafka, registry, keys.clone(), tenants.clone())
        .await
        .map_err(|e| ConnectError::Tenants(e.to_string()))?;
    Ok(Some(SetupService::new(
        config.clone(),
        Arc::new(sessions),
        Arc::new(store),
        keys,
    )?))
}

/// Sessions on `setup.sessions`, followed live; action logs on `setup.actions`.
#[derive(Debug, Clone)]
pub struct KafkaSessions {
    map: Arc<SessionMap>,
    producer: AckedProducer,
    sessions: Arc<TopicCodec<SetupSession>>,
    actions: Arc<TopicCodec<SetupActionLog>>,
    messages: Arc<TopicCodec<SetupMessage>>,
    tickets: Arc<TopicCodec<OpsTicket>>,
    /// Where the sessions' screenshots are, deleted with an expired session.
    attachments: Option<crate::attachments::Attachments>,
    _follower: Follower,
}

impl KafkaSessions {
    /// Read `setup.sessions` to its end and follow it; sweep expired sessions hourly while
    /// this store is in use, deleting their screenshots from `attachments`.
    pub async fn follow(
        kafka: &KafkaConfig,
        registry: &SchemaRegistry,
        deadline: Duration,
        attachments: Option<crate::attachments::Attachments>,
    ) -> Result<KafkaSessions, funnelhub_kafka::Error> {
        let catalog = Catalog::new(&kafka.topic_prefix);
        let sessions = TopicCodec::of(registry, &catalog, topics::SETUP_SESSIONS).await?;
        let actions = TopicCodec::of(registry, &catalog, topics::SETUP_ACTIONS).await?;
        let messages = TopicCodec::of(registry, &catalog, topics::SETUP_MESSAGES).await?;
        let tickets = TopicCodec::of(registry, &catalog, topics::OPS_TICKETS).await?;
        let map = Arc::new(SessionMap::default());
        let applied = map.clone();
        let follower = follow::follow(
            kafka,
            TopicCodec::of(registry, &catalog, topics::SETUP_SESSIONS).await?,
            "setup-sessions",
            move |key, value| match value.map(Session::from_record) {
                Some(Ok(session)) => applied.apply(session),
                Some(Err(e)) => tracing::warn!(session = key, "setup session skipped: {e}"),
                // A tombstone: the session expired.
                None => applied.remove(key),
            },
        )
        .await?;
        let producer = AckedProducer::new(kafka, "funnelhub-setup", deadline)?;
        let store = KafkaSessions {
            map,
            producer,
            sessions: Arc::new(sessions),
            actions: Arc::new(actions),
            messages: Arc::new(messages),
            tickets: Arc::new(tickets),
            attachments,
            _follower: follower,
        };
        let sweeper = SweepHandle {
            map: Arc::downgrade(&store.map),
            producer: store.producer.clone(),
            topic: store.sessions.topic().to_owned(),
            attachments: store.attachments.clone(),
        };
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(SWEEP_EVERY).await;
                let now = funnelhub_schemas::ids::now_ms();
                match sweeper.sweep(now).await {
                    None => return,
                    Some(Ok(0)) => {}
                    Some(Ok(gone)) => tracing::info!(gone, "expired setup sessions deleted"),
                    Some(Err(e)) => tracing::warn!("sweeping setup sessions: {e}"),
                }
            }
        });
        Ok(store)
    }
}

/// What the hourly sweep holds: not the store itself, so the sweep ends with it.
struct SweepHandle {
    map: std::sync::Weak<SessionMap>,
    producer: AckedProducer,
    topic: String,
    attachments: Option<crate::attachments::Attachments>,
}

impl SweepHandle {
    /// `None` once the store is gone.
    async fn sweep(&self, now: i64) -> Option<Result<usize, StoreError>> {
        let map = self.map.upgrade()?;
        Some(
            sweep(
                &map,
                &self.producer,
                &self.topic,
                self.attachments.as_ref(),
                now,
            )
            .await,
        )
    }
}

/// Tombstone every expired session (and delete its attachments).
async fn sweep(
    map: &SessionMap,
    producer: &AckedProducer,
    topic: &str,
    attachments: Option<&crate::attachments::Attachments>,
    now: i64,
) -> Result<usize, StoreError> {
    let gone = map.expired_of(now);
    for (tenant, id) in &gone {
        if let Some(attachments) = attachments {
            attachments
                .delete_session(tenant, id)
                .await
                .map_err(|e| StoreError(e.to_string()))?;
        }
        producer
            .send(topic, id.as_bytes(), None)
            .await
            .map_err(|e| StoreError(format!("expired session not deleted: {e}")))?;
        map.remove(id);
    }
    Ok(gone.len())
}

#[async_trait]
impl SessionStore for KafkaSessions {
    fn get(&self, id: &str, now: i64) -> Option<Session> {
        self.map.get(id, now)
    }

    fn open_sessions(&self, tenant_id: &str, now: i64) -> usize {
        self.map.open_sessions(tenant_id, now)
    }

    fn subscribe(&self) -> broadcast::Receiver<Session> {
        self.map.subscribe()
    }

    async fn put(&self, session: &Session) -> Result<(), StoreError> {
        let bytes = self
            .sessions
            .encode(&session.to_record())
            .map_err(|e| StoreError(e.to_string()))?;
        self.producer
            .send(self.sessions.topic(), session.id.as_bytes(), Some(&bytes))
            .await
            .map_err(|e| StoreError(format!("session not stored: {e}")))?;
        self.map.apply(session.clone());
        Ok(())
    }

    async fn log(&self, action: &SetupActionLog) -> Result<(), StoreError> {
        let bytes = self
            .actions
            .encode(action)
            .map_err(|e| StoreError(e.to_string()))?;
        self.producer
            .send(
                self.actions.topic(),
                action.session_id.as_bytes(),
                Some(&bytes),
            )
            .await
            .map_err(|e| StoreError(format!("action log not stored: {e}")))?;
        Ok(())
    }

    async fn log_message(&self, message: &SetupMessage) -> Result<(), StoreError> {
        let bytes = self
            .messages
            .encode(message)
            .map_err(|e| StoreError(e.to_string()))?;
        self.producer
            .send(
                self.messages.topic(),
                message.session_id.as_bytes(),
                Some(&bytes),
            )
            .await
            .map_err(|e| StoreError(format!("chat message not stored: {e}")))?;
        Ok(())
    }

    async fn raise_ticket(&self, ticket: &OpsTicket) -> Result<(), StoreError> {
        let bytes = self
            .tickets
            .encode(ticket)
            .map_err(|e| StoreError(e.to_string()))?;
        let key = key(&[&ticket.tenant_id, &ticket.session_id]);
        self.producer
            .send(self.tickets.topic(), key.as_bytes(), Some(&bytes))
            .await
            .map_err(|e| StoreError(format!("ticket not raised: {e}")))?;
        Ok(())
    }

    async fn sweep(&self, now: i64) -> Result<usize, StoreError> {
        sweep(
            &self.map,
            &self.producer,
            self.sessions.topic(),
            self.attachments.as_ref(),
            now,
        )
        .await
    }
}

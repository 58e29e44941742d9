//! Where setup keeps its sessions, action logs and tenants: [`SessionStore`] and
//! [`TenantWriter`]. Production stores are on Kafka ([`crate::kafka`]); the memory ones here
//! serve unit tests and single-process tools.
//!
//! Contract of a [`SessionStore`]:
//! - `put` returns once the session is durable (the broker acknowledged), and the writer
//!   sees its own write at once; every other reader sees it soon after;
//! - a session with a revision not above the one known is ignored (stale);
//! - expired sessions are answered as unknown, counted nowhere, and deleted by `sweep`;
//! - `subscribe` yields every later change of any session (a slow subscriber may miss
//!   some: it reads the current state again).

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Mutex, RwLock};

use async_trait::async_trait;
use funnelhub_schemas::derived::OpsTicket;
use funnelhub_schemas::setup::{SetupActionLog, SetupMessage};
use funnelhub_tenants::{TenantConfig, TenantStore};
use tokio::sync::broadcast;

use crate::session::Session;

/// A write that was not acknowledged: transient, retry later.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

/// Sessions and their action logs.
#[async_trait]
pub trait SessionStore: Send + Sync + Debug {
    /// The session `id`, unless unknown or expired at `now`.
    fn get(&self, id: &str, now: i64) -> Option<Session>;
    /// Sessions of `tenant_id` open (and not expired) at `now`.
    fn open_sessions(&self, tenant_id: &str, now: i64) -> usize;
    /// Every later change of any session.
    fn subscribe(&self) -> broadcast::Receiver<Session>;
    /// Store `session` (its revision already bumped), acknowledged.
    async fn put(&self, session: &Session) -> Result<(), StoreError>;
    /// Store one action's log record, acknowledged.
    async fn log(&self, action: &SetupActionLog) -> Result<(), StoreError>;
    /// Store one chat message's record (for the analysts' table), acknowledged.
    async fn log_message(&self, message: &SetupMessage) -> Result<(), StoreError>;
    /// Raise an ops ticket (a session handed off to a person), acknowledged. Raising the
    /// same ticket again is harmless: its id is deterministic.
    async fn raise_ticket(&self, ticket: &OpsTicket) -> Result<(), StoreError>;
    /// Delete the sessions expired at `now`; how many.
    async fn sweep(&self, now: i64) -> Result<usize, StoreError>;
}

/// The tenants autoconfigure and rollback change.
#[async_trait]
pub trait TenantWriter: Send + Sync + Debug {
    /// The tenant `id` as known now.
    fn get(&self, id: &str) -> Option<TenantConfig>;
    /// Store `tenant` as a new revision (acknowledged); that revision.
    async fn put(&self, tenant: &TenantConfig, updated_by: &str) -> Result<i64, StoreError>;
}

#[async_trait]
impl TenantWriter for TenantStore {
    fn get(&self, id: &str) -> Option<TenantConfig> {
        self.directory().get(id).map(|t| (*t).clone())
    }

    async fn put(&self, tenant: &TenantConfig, updated_by: &str) -> Result<i64, StoreError> {
        TenantStore::put(self, tenant, updated_by)
            .await
            .map_err(|e| StoreError(e.to_string()))
    }
}

/// The sessions a process knows, newest revision of each, with the change feed.
#[derive(Debug)]
pub struct SessionMap {
    map: RwLock<HashMap<String, Session>>,
    changes: broadcast::Sender<Session>,
}

impl Default for SessionMap {
    fn default() -> Self {
        SessionMap {
            map: RwLock::default(),
            changes: broadcast::channel(256).0,
        }
    }
}

impl SessionMap {
    /// Keep `session` unless an equal or newer revision is known; announce it if kept.
    pub fn apply(&self, session: Session) {
        let mut map = self.map.write().expect("sessions lock");
        if map
            .get(&session.id)
            .is_some_and(|current| current.revision >= session.revision)
        {
            return;
        }
        map.insert(session.id.clone(), session.clone());
        drop(map);
        // Nobody listening is fine.
        let _ = self.changes.send(session);
    }

    pub fn remove(&self, id: &str) {
        self.map.write().expect("sessions lock").remove(id);
    }

    pub fn get(&self, id: &str, now: i64) -> Option<Session> {
        self.map
            .read()
            .expect("sessions lock")
            .get(id)
            .filter(|s| !s.expired(now))
            .cloned()
    }

    pub fn open_sessions(&self, tenant_id: &str, now: i64) -> usize {
        self.map
            .read()
            .expect("sessions lock")
            .values()
            .filter(|s| s.tenant_id == tenant_id && s.state.is_open() && !s.expired(now))
            .count()
    }

    /// Ids of the sessions expired at `now`.
    pub fn expired(&self, now: i64) -> Vec<String> {
        self.expired_of(now).into_iter().map(|(_, id)| id).collect()
    }

    /// (tenant, id) of the sessions expired at `now`.
    pub fn expired_of(&self, now: i64) -> Vec<(String, String)> {
        self.map
            .read()
            .expect("sessions lock")
            .values()
            .filter(|s| s.expired(now))
            .map(|s| (s.tenant_id.clone(), s.id.clone()))
            .collect()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Session> {
        self.changes.subscribe()
    }
}

/// Sessions in this process's memory only.
#[derive(Debug, Default)]
pub struct MemorySessions {
    map: SessionMap,
    logs: Mutex<Vec<SetupActionLog>>,
    messages: Mutex<Vec<SetupMessage>>,
    tickets: Mutex<Vec<OpsTicket>>,
}

impl MemorySessions {
    /// Every action logged so far.
    pub fn logs(&self) -> Vec<SetupActionLog> {
        self.logs.lock().expect("logs lock").clone()
    }

    /// Every chat message logged so far.
    pub fn messages(&self) -> Vec<SetupMessage> {
        self.messages.lock().expect("messages lock").clone()
    }

    /// Every ticket raised so far.
    pub fn tickets(&self) -> Vec<OpsTicket> {
        self.tickets.lock().expect("tickets lock").clone()
    }
}

#[async_trait]
impl SessionStore for MemorySessions {
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
        self.map.apply(session.clone());
        Ok(())
    }

    async fn log(&self, action: &SetupActionLog) -> Result<(), StoreError> {
        self.logs.lock().expect("logs lock").push(action.clone());
        Ok(())
    }

    async fn log_message(&self, message: &SetupMessage) -> Result<(), StoreError> {
        self.messages
            .lock()
            .expect("messages lock")
            .push(message.clone());
        Ok(())
    }

    async fn raise_ticket(&self, ticket: &OpsTicket) -> Result<(), StoreError> {
        self.tickets
            .lock()
            .expect("tickets lock")
            .push(ticket.clone());
        Ok(())
    }

    async fn sweep(&self, now: i64) -> Result<usize, StoreError> {
        let gone = self.map.expired(now);
        for id in &gone {
            self.map.remove(id);
        }
        Ok(gone.len())
    }
}

/// Tenants in this process's memory only.
#[derive(Debug, Default)]
pub struct MemoryTenants {
    tenants: Mutex<HashMap<String, (TenantConfig, i64)>>,
}

#[async_trait]
impl TenantWriter for MemoryTenants {
    fn get(&self, id: &str) -> Option<TenantConfig> {
        let tenants = self.tenants.lock().expect("tenants lock");
        tenants.get(id).map(|(t, _)| t.clone())
    }

    async fn put(&self, tenant: &TenantConfig, _updated_by: &str) -> Result<i64, StoreError> {
        let mut tenants = self.tenants.lock().expect("tenants lock");
        let revision = tenants.get(&tenant.id).map_or(1, |(_, r)| r + 1);
        tenants.insert(tenant.id.clone(), (tenant.clone(), revision));
        Ok(revision)
    }
}

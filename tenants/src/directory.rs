//! The tenants every service reads: `[[tenants]]` from the configuration file (seeds),
//! overridden per tenant by the control topic `control.tenants`, which each process
//! follows while it runs ([`funnelhub_kafka::follow`]). A change written by
//! `funnelhub tenants set` or by setup's autoconfigure is applied by every edge, processor
//! and sink within a fetch (~100 ms), without a restart.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use funnelhub_kafka::follow::{self, Follower};
use funnelhub_kafka::{Error, KafkaConfig, SchemaRegistry, TopicCodec};
use funnelhub_schemas::control::TenantRecord;
use funnelhub_schemas::Catalog;
use tokio::sync::watch;

use crate::config::{KeyScope, TenantConfig};
use crate::record;
use crate::sealing::Keyring;

type Map = Arc<HashMap<String, Arc<TenantConfig>>>;

/// Every tenant this process knows (cheap to clone; all clones see every change).
#[derive(Debug, Clone)]
pub struct TenantDirectory {
    shared: Arc<Shared>,
    /// Stops the reader when the last clone is dropped.
    _follower: Option<Follower>,
}

#[derive(Debug)]
struct Shared {
    seeds: HashMap<String, Arc<TenantConfig>>,
    state: RwLock<State>,
    /// Bumped on every applied change.
    changes: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct State {
    /// Seeds overridden by the control topic's tenants.
    tenants: Map,
    /// The control topic's latest record of each tenant (sealed as stored).
    records: HashMap<String, TenantRecord>,
}

impl Default for TenantDirectory {
    fn default() -> Self {
        TenantDirectory::fixed(Vec::new())
    }
}

impl TenantDirectory {
    /// Only `tenants`, never changing (tests, tools).
    pub fn fixed(tenants: impl IntoIterator<Item = TenantConfig>) -> TenantDirectory {
        let seeds: HashMap<String, Arc<TenantConfig>> = tenants
            .into_iter()
            .map(|t| (t.id.clone(), Arc::new(t)))
            .collect();
        let state = State {
            tenants: Arc::new(seeds.clone()),
            records: HashMap::new(),
        };
        TenantDirectory {
            shared: Arc::new(Shared {
                seeds,
                state: RwLock::new(state),
                changes: watch::channel(0).0,
            }),
            _follower: None,
        }
    }

    /// `seeds`, then the control topic read to its end, then every later change.
    /// A record this process cannot open (its key is not in `keys`) is logged and counted
    /// (`funnelhub_tenants_unreadable_total`); the tenant keeps its previous settings.
    pub async fn follow(
        kafka: &KafkaConfig,
        registry: &SchemaRegistry,
        seeds: Vec<TenantConfig>,
        keys: Keyring,
    ) -> Result<TenantDirectory, Error> {
        let mut directory = TenantDirectory::fixed(seeds);
        let catalog = Catalog::new(&kafka.topic_prefix);
        let codec = TopicCodec::of(registry, &catalog, funnelhub_schemas::topics::TENANTS).await?;
        let shared = directory.shared.clone();
        let follower = follow::follow(kafka, codec, "tenants", move |_key, value| {
            if let Some(record) = value {
                shared.apply(record, &keys);
            }
        })
        .await?;
        directory._follower = Some(follower);
        Ok(directory)
    }

    /// The tenant `id`.
    pub fn get(&self, id: &str) -> Option<Arc<TenantConfig>> {
        self.snapshot().get(id).cloned()
    }

    /// Every tenant now, by id.
    pub fn snapshot(&self) -> Map {
        self.shared
            .state
            .read()
            .expect("tenant directory lock")
            .tenants
            .clone()
    }

    /// Every tenant now, sorted by id.
    pub fn all(&self) -> Vec<Arc<TenantConfig>> {
        let mut all: Vec<_> = self.snapshot().values().cloned().collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// The control topic's latest record of `id` (`None`: only a seed, or unknown).
    pub fn record(&self, id: &str) -> Option<TenantRecord> {
        self.shared
            .state
            .read()
            .expect("tenant directory lock")
            .records
            .get(id)
            .cloned()
    }

    /// Every tenant record of the control topic.
    pub fn records(&self) -> Vec<TenantRecord> {
        let state = self.shared.state.read().expect("tenant directory lock");
        let mut records: Vec<_> = state.records.values().cloned().collect();
        records.sort_by(|a, b| a.tenant_id.cmp(&b.tenant_id));
        records
    }

    /// Whether `id` comes only from the configuration file.
    pub fn is_seed_only(&self, id: &str) -> bool {
        self.shared.seeds.contains_key(id) && self.record(id).is_none()
    }

    /// The tenant owning API key `key`, and the key's scope (compared in constant time
    /// with every key of every tenant).
    pub fn by_api_key(&self, key: &str) -> Option<(Arc<TenantConfig>, KeyScope)> {
        let mut found = None;
        for tenant in self.snapshot().values() {
            if let Some(scope) = tenant.scope_of(key) {
                found = Some((tenant.clone(), scope));
            }
        }
        found
    }

    /// Is `origin` one of `tenant_id`'s landing-page origins?
    pub fn allows_origin(&self, tenant_id: &str, origin: &str) -> bool {
        self.get(tenant_id)
            .is_some_and(|t| t.allowed_origins.iter().any(|o| o == origin))
    }

    /// Wait until the control topic's revision of `id` is at least `revision` (a writer
    /// waiting to read its own write).
    pub async fn wait_for(&self, id: &str, revision: i64, within: Duration) -> bool {
        let mut changes = self.shared.changes.subscribe();
        let seen = |directory: &TenantDirectory| {
            directory.record(id).is_some_and(|r| r.revision >= revision)
        };
        let wait = async {
            loop {
                if seen(self) {
                    return;
                }
                if changes.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::time::timeout(within, wait).await.is_ok() && seen(self)
    }

    /// A receiver that changes with every applied record.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.shared.changes.subscribe()
    }
}

impl Shared {
    fn apply(&self, record: TenantRecord, keys: &Keyring) {
        let mut state = self.state.write().expect("tenant directory lock");
        if state
            .records
            .get(&record.tenant_id)
            .is_some_and(|current| current.revision > record.revision)
        {
            return;
        }
        match record::from_record(&record, keys) {
            Ok(tenant) => {
                let mut tenants = (*state.tenants).clone();
                tenants.insert(tenant.id.clone(), Arc::new(tenant));
                state.tenants = Arc::new(tenants);
                tracing::info!(
                    tenant = %record.tenant_id,
                    revision = record.revision,
                    by = %record.updated_by,
                    "tenant applied"
                );
                state.records.insert(record.tenant_id.clone(), record);
                metrics::gauge!("funnelhub_tenants").set(state.tenants.len() as f64);
            }
            Err(e) => {
                metrics::counter!("funnelhub_tenants_unreadable_total").increment(1);
                tracing::error!(
                    tenant = %record.tenant_id,
                    revision = record.revision,
                    "tenant record not applied: {e}"
                );
            }
        }
        drop(state);
        self.changes.send_modify(|n| *n += 1);
    }
}

//! [`SetupService`]: what guided setup does, whoever calls it (the HTTP routes, the
//! assistant): sessions, the validation tools, `validate` (all three), `autoconfigure`
//! (validated settings into the tenant, with a rollback copy) and `rollback`.
//!
//! Contract:
//! - tools run outside any lock; their outcomes are recorded in one session update (one
//!   revision) and one action-log record each, both acknowledged before the call returns;
//! - the settings validated so far, secrets included, are kept sealed in the session, never
//!   in clear, and reused by `validate` for a section the caller leaves out;
//! - autoconfigure stores the copy to roll back to (acknowledged) before it changes the
//!   tenant: a failure in between leaves a session that still holds it, and a retry keeps
//!   that first copy instead of taking the changed tenant for "before";
//! - nothing weak is stored: a secret shorter than the minimum is refused naming the field;
//! - session updates are serialized within one process; across processes the higher
//!   revision wins on the sessions topic.
//!
//! Callers authenticate and authorize before calling; the service trusts the tenant ids it
//! is given.

use std::sync::Arc;
use std::time::Instant;

use funnelhub_schemas::ids::now_ms;
use funnelhub_schemas::setup::SetupActionLog;
use funnelhub_tenants::{record, Keyring, Secret, TenantConfig};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::config::SetupConfig;
use crate::error::SetupError;
use crate::session::{Session, SessionState, MAX_OPEN_SESSIONS_PER_TENANT};
use crate::store::{SessionStore, StoreError, TenantWriter};
use crate::tools::{GatewayInput, Input, MetaInput, Outcome, ToolName, Tools};

/// One tool run, as logged.
#[derive(Debug, Clone)]
pub struct Action {
    pub action_id: String,
    pub outcome: Outcome,
}

impl Action {
    /// The answer for one action.
    pub fn to_json(&self) -> Value {
        let o = &self.outcome;
        json!({
            "action_id": self.action_id,
            "tool": o.tool.as_str(),
            "status": if o.ok { "success" } else { "failed" },
            "reason": o.reason,
            "recommendation": o.recommendation,
            "latency_ms": o.latency_ms,
            "input": o.input,
            "output": o.output,
        })
    }
}

/// The sections of a `validate` call; one left out reuses the last validated input.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidateRequest {
    pub gateway: Option<Value>,
    pub meta: Option<Value>,
    pub url: Option<Value>,
}

/// What autoconfigure or rollback wrote into the tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantChange {
    pub tenant_id: String,
    pub tenant_revision: i64,
    /// The settings autoconfigure set (`None` for a rollback, which puts back them all).
    pub applied: Option<Vec<&'static str>>,
}

impl TenantChange {
    pub fn to_json(&self) -> Value {
        let mut body =
            json!({"tenant_id": self.tenant_id, "tenant_revision": self.tenant_revision});
        if let Some(applied) = &self.applied {
            body["applied"] = json!(applied);
        }
        body
    }
}

/// The settings validated so far, with their secrets (kept sealed in the session), and
/// the last ones tried for each step (what the assistant tries again).
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Validated {
    pub(crate) gateway: Option<GatewayInput>,
    pub(crate) meta: Option<MetaInput>,
    pub(crate) url: Option<String>,
    #[serde(default)]
    pub(crate) tried: Tried,
}

/// The last input tried for each step, validated or not.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Tried {
    pub(crate) gateway: Option<GatewayInput>,
    pub(crate) meta: Option<MetaInput>,
    pub(crate) url: Option<String>,
}

impl Validated {
    fn keep(&mut self, input: Input) {
        match input {
            Input::Gateway(input) => self.gateway = Some(input),
            Input::Meta(input) => self.meta = Some(input),
            Input::Url(input) => self.url = input.url,
        }
    }

    fn tried(&mut self, input: &Input) {
        match input {
            Input::Gateway(input) => self.tried.gateway = Some(input.clone()),
            Input::Meta(input) => self.tried.meta = Some(input.clone()),
            Input::Url(input) => self.tried.url = input.url.clone(),
        }
    }
}

/// Guided setup.
#[derive(Debug)]
pub struct SetupService {
    config: SetupConfig,
    pub(crate) sessions: Arc<dyn SessionStore>,
    tenants: Arc<dyn TenantWriter>,
    keys: Keyring,
    tools: Tools,
    /// One session update at a time in this process (tools run outside it).
    pub(crate) writing: tokio::sync::Mutex<()>,
    /// The chat's engine.
    pub(crate) assistant: Arc<dyn crate::chat::Assistant>,
    /// Where screenshots are kept.
    attachments: crate::attachments::Attachments,
}

/// Check a tenant id given by a caller: 1-64 letters, digits, `-` or `_`.
pub fn check_tenant_id(tenant_id: Option<&str>) -> Result<String, SetupError> {
    let tenant_id = tenant_id
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| SetupError::missing("tenant_id"))?;
    if tenant_id.len() > 64
        || !tenant_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(SetupError::invalid(
            "tenant_id",
            "1-64 letters, digits, - or _",
        ));
    }
    Ok(tenant_id.to_owned())
}

pub(crate) fn unavailable(e: StoreError) -> SetupError {
    SetupError::Unavailable(e.0)
}

impl SetupService {
    pub fn new(
        config: SetupConfig,
        sessions: Arc<dyn SessionStore>,
        tenants: Arc<dyn TenantWriter>,
        keys: Keyring,
    ) -> Result<SetupService, SetupError> {
        let assistant: Arc<dyn crate::chat::Assistant> =
            match crate::chat::llm::ModelEngine::from_config(&config.assistant) {
                Some(model) => Arc::new(model),
                None => Arc::new(crate::chat::diagnoser::Diagnoser),
            };
        let attachments = crate::attachments::Attachments::open(
            config.attachments_url.as_deref(),
            &config.attachments_dir,
        )?;
        Ok(SetupService {
            attachments,
            tools: Tools::new(&config)?,
            config,
            sessions,
            tenants,
            keys,
            writing: tokio::sync::Mutex::new(()),
            assistant,
        })
    }

    pub fn config(&self) -> &SetupConfig {
        &self.config
    }

    /// `key` is one of the operators' keys (`[edge.setup] admin_keys`), compared in
    /// constant time with every usable one.
    pub fn is_admin_key(&self, key: &str) -> bool {
        use subtle::ConstantTimeEq;
        self.config
            .admin_keys
            .iter()
            .filter(|k| k.is_usable())
            .fold(false, |found, k| {
                found | bool::from(k.expose().as_bytes().ct_eq(key.as_bytes()))
            })
    }

    /// The consolidated status of `session`.
    pub fn status_json(&self, session: &Session) -> Value {
        session.status_json(self.config.max_failed_attempts)
    }

    /// The session `id`, unless unknown or expired.
    pub fn find(&self, id: &str) -> Option<Session> {
        self.sessions.get(id, now_ms())
    }

    /// Every later change of any session.
    pub fn subscribe(&self) -> broadcast::Receiver<Session> {
        self.sessions.subscribe()
    }

    /// Delete expired sessions; how many.
    pub async fn sweep(&self) -> Result<usize, SetupError> {
        self.sessions.sweep(now_ms()).await.map_err(unavailable)
    }

    pub(crate) fn session(&self, id: &str) -> Result<Session, SetupError> {
        self.find(id)
            .ok_or_else(|| SetupError::UnknownSession(id.chars().take(64).collect()))
    }

    /// A new session of `tenant_id` (checked with [`check_tenant_id`]), stored.
    pub async fn create(&self, tenant_id: &str) -> Result<Session, SetupError> {
        let tenant_id = check_tenant_id(Some(tenant_id))?;
        let now = now_ms();
        if self.sessions.open_sessions(&tenant_id, now) >= MAX_OPEN_SESSIONS_PER_TENANT {
            return Err(SetupError::TooManyOpenSessions {
                max: MAX_OPEN_SESSIONS_PER_TENANT,
            });
        }
        let session = Session::new(format!("setup-{}", new_id()), tenant_id, now);
        self.sessions.put(&session).await.map_err(unavailable)?;
        tracing::info!(session = %session.id, tenant = %session.tenant_id, "setup session created");
        Ok(session)
    }

    /// Run one tool on session `id` with `input` (JSON, checked first).
    pub async fn run_tool(
        &self,
        id: &str,
        tool: ToolName,
        input: Value,
    ) -> Result<(Session, Action), SetupError> {
        let session = self.session(id)?;
        let input = Input::parse(tool, input, "")?;
        let (session, mut actions) = self.run_tools(&session, vec![input]).await?;
        let action = actions
            .pop()
            .ok_or_else(|| SetupError::Internal("a tool run recorded no action".into()))?;
        Ok((session, action))
    }

    /// All three tools; a section left out reuses the last validated input.
    pub async fn validate(
        &self,
        id: &str,
        request: ValidateRequest,
    ) -> Result<(Session, Vec<Action>), SetupError> {
        let session = self.session(id)?;
        let stored = self.open_inputs(&session)?;
        let section = |given: Option<Value>, stored: Option<Value>, name: &str| {
            given.or(stored).ok_or_else(|| SetupError::missing(name))
        };
        let inputs = vec![
            Input::parse(
                ToolName::ValidateGatewayCredentials,
                section(request.gateway, stored.gateway.map(|g| json!(g)), "gateway")?,
                "gateway",
            )?,
            Input::parse(
                ToolName::ValidateMetaToken,
                section(request.meta, stored.meta.map(|m| json!(m)), "meta")?,
                "meta",
            )?,
            Input::parse(
                ToolName::ProbeLandingUrl,
                section(request.url, stored.url.map(|u| json!({"url": u})), "url")?,
                "url",
            )?,
        ];
        self.run_tools(&session, inputs).await
    }

    pub(crate) fn open_inputs(&self, session: &Session) -> Result<Validated, SetupError> {
        match &session.inputs {
            None => Ok(Validated::default()),
            Some(sealed) => {
                let plain = self
                    .keys
                    .open(&session.id, sealed)
                    .map_err(|e| SetupError::Internal(format!("session inputs: {e}")))?;
                serde_json::from_slice(&plain)
                    .map_err(|e| SetupError::Internal(format!("session inputs: {e}")))
            }
        }
    }

    /// Run tools, then record their outcomes in the session (one update) and the action log.
    pub(crate) async fn run_tools(
        &self,
        session: &Session,
        inputs: Vec<Input>,
    ) -> Result<(Session, Vec<Action>), SetupError> {
        let runs = inputs
            .iter()
            .map(|i| self.tools.run(i, &session.tenant_id))
            .collect::<Vec<_>>();
        let outcomes = futures::future::join_all(runs).await;
        let _writing = self.writing.lock().await;
        let mut session = self.session(&session.id)?;
        let mut validated = self.open_inputs(&session)?;
        let now = now_ms();
        let mut actions = Vec::new();
        let state_before = session.state;
        for (input, outcome) in inputs.into_iter().zip(outcomes) {
            session.record(&outcome, now, self.config.max_failed_attempts);
            validated.tried(&input);
            if outcome.ok {
                validated.keep(input);
            }
            actions.push(Action {
                action_id: format!("act-{}", new_id()),
                outcome,
            });
        }
        let plain = serde_json::to_vec(&validated).expect("inputs serialize");
        session.inputs = Some(
            self.keys
                .seal(&session.id, &plain)
                .map_err(|e| SetupError::Internal(format!("sealing session inputs: {e}")))?,
        );
        session.revision += 1;
        for action in &actions {
            let log = log_record(&session, action);
            self.sessions.log(&log).await.map_err(unavailable)?;
        }
        self.sessions.put(&session).await.map_err(unavailable)?;
        if state_before != SessionState::NeedsHuman && session.state == SessionState::NeedsHuman {
            self.raise_handoff_ticket(&session).await?;
        }
        Ok((session, actions))
    }

    /// Keep a screenshot for session `id`: the session listing it, and the attachment.
    pub async fn attach(
        &self,
        id: &str,
        bytes: Vec<u8>,
    ) -> Result<(Session, crate::attachments::AttachmentRef), SetupError> {
        use crate::attachments::{AttachmentRef, MAX_ATTACHMENTS_PER_SESSION};
        let session = self.session(id)?;
        if session.attachments.len() >= MAX_ATTACHMENTS_PER_SESSION {
            return Err(SetupError::TooManyAttachments {
                max: MAX_ATTACHMENTS_PER_SESSION,
            });
        }
        let size = bytes.len() as u64;
        let (attachment_id, image) = self
            .attachments
            .put(&session.tenant_id, &session.id, bytes)
            .await?;
        let _writing = self.writing.lock().await;
        let mut session = self.session(id)?;
        let attachment = match session.attachments.iter().find(|a| a.id == attachment_id) {
            // The same image again: already listed.
            Some(known) => known.clone(),
            None => {
                let attachment = AttachmentRef {
                    id: attachment_id,
                    image,
                    bytes: size,
                    at: now_ms(),
                };
                session.attachments.push(attachment.clone());
                session.updated_at = attachment.at;
                session.revision += 1;
                self.sessions.put(&session).await.map_err(unavailable)?;
                attachment
            }
        };
        Ok((session, attachment))
    }

    /// The bytes and type of attachment `attachment_id` of session `id`.
    pub async fn attachment(
        &self,
        id: &str,
        attachment_id: &str,
    ) -> Result<(Vec<u8>, crate::attachments::ImageType), SetupError> {
        let session = self.session(id)?;
        let listed = session
            .attachments
            .iter()
            .find(|a| a.id == attachment_id)
            .ok_or_else(|| {
                SetupError::UnknownAttachment(attachment_id.chars().take(64).collect())
            })?;
        let bytes = self
            .attachments
            .get(&session.tenant_id, &session.id, attachment_id)
            .await?;
        Ok((bytes, listed.image))
    }

    /// Where screenshots are kept.
    pub fn attachments(&self) -> &crate::attachments::Attachments {
        &self.attachments
    }

    /// The ops ticket of a session handed off to a person (one per session: its id is
    /// deterministic), raised on the funnel's ticket stream; its id.
    pub(crate) async fn raise_handoff_ticket(
        &self,
        session: &Session,
    ) -> Result<String, SetupError> {
        let kind = funnelhub_schemas::derived::TicketKind::SetupNeedsHuman;
        let ticket = funnelhub_schemas::derived::OpsTicket {
            ticket_id: funnelhub_schemas::ids::deterministic_id(
                "ticket",
                &[&session.tenant_id, &session.id, kind.as_str()],
            ),
            tenant_id: session.tenant_id.clone(),
            session_id: session.id.clone(),
            domain: String::new(),
            kind,
            subject: format!("[setup.needs_human] {}", session.tenant_id),
            cause_event_id: format!("{}#{}", session.id, session.revision),
            created_at: now_ms(),
        };
        self.sessions
            .raise_ticket(&ticket)
            .await
            .map_err(unavailable)?;
        tracing::info!(session = %session.id, tenant = %session.tenant_id, ticket = %ticket.ticket_id, "setup session handed off to a person");
        Ok(ticket.ticket_id)
    }

    /// Store the validated settings into the tenant (created if new), keeping the tenant as
    /// it was (sealed) for [`SetupService::rollback`].
    pub async fn autoconfigure(&self, id: &str) -> Result<(Session, TenantChange), SetupError> {
        let started = Instant::now();
        let _writing = self.writing.lock().await;
        let mut session = self.session(id)?;
        if !session.can_autoconfigure() {
            return Err(SetupError::NotValidated {
                state: session.state,
                gateway: session.gateway.status,
                meta: session.meta.status,
                url: session.url.status,
            });
        }
        let validated = self.open_inputs(&session)?;
        let before = self
            .tenants
            .get(&session.tenant_id)
            .unwrap_or_else(|| TenantConfig::new(&session.tenant_id));
        let (tenant, applied) = configured(&before, &validated)?;
        // The copy to roll back to is stored (acknowledged) before the tenant changes.
        if session.rollback.is_none() {
            session.rollback = Some(
                record::seal_tenant(&before, &session.id, &self.keys)
                    .map_err(|e| SetupError::Internal(format!("sealing the rollback copy: {e}")))?,
            );
            session.updated_at = now_ms();
            session.revision += 1;
            self.sessions.put(&session).await.map_err(unavailable)?;
        }
        let revision = self
            .tenants
            .put(&tenant, &format!("setup autoconfigure {}", session.id))
            .await
            .map_err(unavailable)?;
        let change = TenantChange {
            tenant_id: tenant.id.clone(),
            tenant_revision: revision,
            applied: Some(applied),
        };
        let session = self
            .tenant_changed(session, SessionState::Configured, &change, started)
            .await?;
        Ok((session, change))
    }

    /// Put the tenant back as it was before this session's autoconfigure.
    pub async fn rollback(&self, id: &str) -> Result<(Session, TenantChange), SetupError> {
        let started = Instant::now();
        let _writing = self.writing.lock().await;
        let mut session = self.session(id)?;
        let (SessionState::Configured, Some(sealed)) = (session.state, &session.rollback) else {
            return Err(SetupError::NotConfigured {
                state: session.state,
            });
        };
        let before = record::open_tenant(sealed, &session.id, &self.keys)
            .map_err(|e| SetupError::Internal(format!("opening the rollback copy: {e}")))?;
        let revision = self
            .tenants
            .put(&before, &format!("setup rollback {}", session.id))
            .await
            .map_err(unavailable)?;
        session.rollback = None;
        let change = TenantChange {
            tenant_id: before.id.clone(),
            tenant_revision: revision,
            applied: None,
        };
        let session = self
            .tenant_changed(session, SessionState::RolledBack, &change, started)
            .await?;
        Ok((session, change))
    }

    /// After autoconfigure or rollback wrote the tenant: the session closed as `state`, the
    /// action logged and the session stored (both acknowledged).
    async fn tenant_changed(
        &self,
        mut session: Session,
        state: SessionState,
        change: &TenantChange,
        started: Instant,
    ) -> Result<Session, SetupError> {
        session.close(state, now_ms());
        let tool = match state {
            SessionState::Configured => "autoconfigure",
            _ => "rollback",
        };
        let output = change.to_json();
        let log = SetupActionLog {
            action_id: format!("act-{}", new_id()),
            session_id: session.id.clone(),
            tenant_id: session.tenant_id.clone(),
            tool: tool.into(),
            input: "{}".into(),
            output: output.to_string(),
            status: "success".into(),
            reason: None,
            latency_ms: started.elapsed().as_millis() as i64,
            at: now_ms(),
        };
        self.sessions.log(&log).await.map_err(unavailable)?;
        self.sessions.put(&session).await.map_err(unavailable)?;
        tracing::info!(session = %session.id, tenant = %session.tenant_id, %output, "setup {tool} changed the tenant");
        Ok(session)
    }
}

/// `before` with the validated settings applied, and the names of the settings set.
fn configured(
    before: &TenantConfig,
    validated: &Validated,
) -> Result<(TenantConfig, Vec<&'static str>), SetupError> {
    let mut tenant = before.clone();
    let mut applied = Vec::new();
    if let Some(meta) = &validated.meta {
        tenant.meta_pixel_id = meta.pixel_id.clone();
        tenant.meta_access_token = meta.access_token.as_deref().map(Secret::from);
        tenant.meta_test_event_code = meta.test_event_code.clone();
        applied.extend(["meta_pixel_id", "meta_access_token"]);
    }
    if let Some(gateway) = &validated.gateway {
        if let Some(secret) = gateway.webhook_secret.as_deref() {
            let field = match gateway.gateway.as_str() {
                "hotmart" => {
                    tenant.hotmart_hottok = Some(Secret::from(secret));
                    "hotmart_hottok"
                }
                "kiwify" => {
                    tenant.kiwify_token = Some(Secret::from(secret));
                    "kiwify_token"
                }
                _ => {
                    // The new secret first; older ones stay valid while Stripe rotates.
                    tenant
                        .stripe_signing_secrets
                        .retain(|s| s.expose() != secret);
                    tenant
                        .stripe_signing_secrets
                        .insert(0, Secret::from(secret));
                    "stripe_signing_secrets"
                }
            };
            applied.push(field);
        }
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
            return Err(SetupError::invalid(weak.field, weak.to_string()));
        }
    }
    Ok((tenant, applied))
}

fn log_record(session: &Session, action: &Action) -> SetupActionLog {
    let o = &action.outcome;
    SetupActionLog {
        action_id: action.action_id.clone(),
        session_id: session.id.clone(),
        tenant_id: session.tenant_id.clone(),
        tool: o.tool.as_str().to_owned(),
        input: o.input.to_string(),
        output: o.output.to_string(),
        status: if o.ok { "success" } else { "failed" }.into(),
        reason: o.reason.clone(),
        latency_ms: o.latency_ms,
        at: now_ms(),
    }
}

fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;

    use super::*;
    use crate::session::StepStatus;
    use crate::store::{MemorySessions, MemoryTenants};

    /// Tenants whose next `failures` writes are not acknowledged.
    #[derive(Debug, Default)]
    struct Flaky {
        tenants: MemoryTenants,
        failures: AtomicUsize,
    }

    #[async_trait]
    impl TenantWriter for Flaky {
        fn get(&self, id: &str) -> Option<TenantConfig> {
            self.tenants.get(id)
        }

        async fn put(&self, tenant: &TenantConfig, by: &str) -> Result<i64, StoreError> {
            let left = self.failures.load(Ordering::SeqCst);
            if left > 0 {
                self.failures.store(left - 1, Ordering::SeqCst);
                return Err(StoreError("broker did not acknowledge".into()));
            }
            self.tenants.put(tenant, by).await
        }
    }

    fn service(tenants: Arc<Flaky>) -> (SetupService, Arc<MemorySessions>) {
        let sessions = Arc::new(MemorySessions::default());
        let keys = Keyring::parse(&Keyring::generate("k1")).expect("keys");
        let service = SetupService::new(SetupConfig::default(), sessions.clone(), tenants, keys)
            .expect("service");
        (service, sessions)
    }

    /// A session of `tenant` whose three steps validated these settings.
    async fn validated(service: &SetupService, tenant: &str) -> Session {
        let mut session = service.create(tenant).await.expect("created");
        let inputs = Validated {
            gateway: Some(GatewayInput {
                gateway: "hotmart".into(),
                webhook_secret: Some("new-hottok-0123456789".into()),
                ..GatewayInput::default()
            }),
            meta: Some(MetaInput {
                pixel_id: Some("777".into()),
                access_token: Some("EAAB-new-token-abcdef".into()),
                test_event_code: None,
            }),
            url: Some("https://shop.example/offer".into()),
            tried: Tried::default(),
        };
        let plain = serde_json::to_vec(&inputs).expect("json");
        session.inputs = Some(service.keys.seal(&session.id, &plain).expect("sealed"));
        for step in [&mut session.gateway, &mut session.meta, &mut session.url] {
            step.status = StepStatus::Success;
        }
        session.state = SessionState::Validated;
        session.revision += 1;
        service.sessions.put(&session).await.expect("stored");
        session
    }

    #[tokio::test]
    async fn autoconfigure_keeps_its_first_rollback_copy_when_the_tenant_write_fails() {
        let tenants = Arc::new(Flaky::default());
        let mut original = TenantConfig::new("shop");
        original.meta_pixel_id = Some("111".into());
        tenants
            .tenants
            .put(&original, "test")
            .await
            .expect("seeded");
        let (service, sessions) = service(tenants.clone());
        let session = validated(&service, "shop").await;

        tenants.failures.store(1, Ordering::SeqCst);
        let failed = service.autoconfigure(&session.id).await;
        assert!(
            matches!(failed, Err(SetupError::Unavailable(_))),
            "{failed:?}"
        );
        assert_eq!(tenants.get("shop"), Some(original.clone()), "unchanged");
        let kept = sessions.get(&session.id, now_ms()).expect("session");
        let copy = kept.rollback.as_ref().expect("rollback copy stored first");
        assert_eq!(
            record::open_tenant(copy, &session.id, &service.keys).expect("opens"),
            original
        );

        let (configured, change) = service.autoconfigure(&session.id).await.expect("retried");
        assert_eq!(configured.state, SessionState::Configured);
        assert_eq!(
            change.applied.as_deref(),
            Some(
                &[
                    "meta_pixel_id",
                    "meta_access_token",
                    "hotmart_hottok",
                    "allowed_origins"
                ][..]
            )
        );
        let changed = tenants.get("shop").expect("tenant");
        assert_eq!(changed.meta_pixel_id.as_deref(), Some("777"));
        assert_eq!(
            changed.allowed_origins,
            vec!["https://shop.example".to_owned()]
        );

        let (rolled_back, _) = service.rollback(&session.id).await.expect("rolled back");
        assert_eq!(rolled_back.state, SessionState::RolledBack);
        assert_eq!(
            tenants.get("shop"),
            Some(original),
            "the tenant as it was before the first attempt"
        );
        assert!(matches!(
            service.rollback(&session.id).await,
            Err(SetupError::NotConfigured {
                state: SessionState::RolledBack
            })
        ));
        let tools: Vec<String> = sessions.logs().into_iter().map(|l| l.tool).collect();
        assert_eq!(tools, ["autoconfigure", "rollback"]);
    }

    #[tokio::test]
    async fn sessions_are_bounded_per_tenant_and_autoconfigure_waits_for_every_step() {
        let (service, _) = service(Arc::new(Flaky::default()));
        let first = service.create("shop").await.expect("created");
        assert!(matches!(
            service.autoconfigure(&first.id).await,
            Err(SetupError::NotValidated {
                state: SessionState::Created,
                ..
            })
        ));
        for _ in 1..MAX_OPEN_SESSIONS_PER_TENANT {
            service.create("shop").await.expect("created");
        }
        assert!(matches!(
            service.create("shop").await,
            Err(SetupError::TooManyOpenSessions { .. })
        ));
        service
            .create("other")
            .await
            .expect("another tenant's own bound");
        assert!(matches!(
            service.create("no spaces").await,
            Err(SetupError::InvalidInput { field, .. }) if field == "tenant_id"
        ));
        assert!(matches!(
            service
                .run_tool("setup-missing", ToolName::ValidateMetaToken, json!({}))
                .await,
            Err(SetupError::UnknownSession(_))
        ));
    }
}

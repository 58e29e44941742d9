//! Setup sessions: their state on the compacted topic `setup.sessions` (every edge follows
//! it, so any edge answers status and streams changes), and one record per action on
//! `setup.actions` (stored by the ClickHouse sink in `setup_action_logs`). Writes wait for
//! the broker's acknowledgement; the writer applies its own write at once.
//!
//! Bounded: a session untouched for [`SESSION_TTL_MS`] is gone (answered as unknown,
//! dropped from memory, and deleted from the topic by [`Sessions::sweep`]), and a tenant
//! holds at most [`MAX_OPEN_SESSIONS_PER_TENANT`] sessions not yet configured or rolled
//! back.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use funnelhub_kafka::follow::{self, Follower};
use funnelhub_kafka::{AckedProducer, KafkaConfig, SchemaRegistry, TopicCodec};
use funnelhub_schemas::setup::{SetupActionLog, SetupSession, SetupStep};
use funnelhub_schemas::{Catalog, Topic};
use serde_json::{json, Value};
use tokio::sync::broadcast;

use super::tools::Outcome;

/// Session states.
pub mod state {
    pub const CREATED: &str = "created";
    pub const VALIDATING: &str = "validating";
    pub const VALIDATED: &str = "validated";
    pub const FAILED: &str = "failed";
    pub const NEEDS_HUMAN: &str = "needs_human";
    pub const CONFIGURED: &str = "configured";
    pub const ROLLED_BACK: &str = "rolled_back";
}

/// How long a session lives after its last change.
pub const SESSION_TTL_MS: i64 = 7 * 24 * 60 * 60 * 1000;
/// Sessions a tenant may have open (neither configured nor rolled back) at once.
pub const MAX_OPEN_SESSIONS_PER_TENANT: usize = 20;

/// Whether `session` has been untouched for [`SESSION_TTL_MS`] at `now`.
pub fn expired(session: &SetupSession, now: i64) -> bool {
    session.updated_at < now.saturating_sub(SESSION_TTL_MS)
}

/// Whether `session` is still open (neither configured nor rolled back).
pub fn open(session: &SetupSession) -> bool {
    ![state::CONFIGURED, state::ROLLED_BACK].contains(&session.state.as_str())
}

/// Every session this edge knows, followed live.
#[derive(Debug, Clone)]
pub struct Sessions {
    shared: Arc<Shared>,
    producer: AckedProducer,
    sessions: Arc<TopicCodec<SetupSession>>,
    actions: Arc<TopicCodec<SetupActionLog>>,
    _follower: Follower,
}

#[derive(Debug)]
struct Shared {
    map: RwLock<HashMap<String, SetupSession>>,
    changes: broadcast::Sender<SetupSession>,
}

impl Shared {
    fn apply(&self, session: SetupSession) {
        let mut map = self.map.write().expect("sessions lock");
        if map
            .get(&session.session_id)
            .is_some_and(|current| current.revision >= session.revision)
        {
            return;
        }
        map.insert(session.session_id.clone(), session.clone());
        drop(map);
        // Nobody listening is fine.
        let _ = self.changes.send(session);
    }
}

/// Why a session could not be written.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct WriteError(pub String);

impl Sessions {
    /// Read `setup.sessions` to its end and follow it.
    pub async fn follow(
        kafka: &KafkaConfig,
        registry: &SchemaRegistry,
        deadline: Duration,
    ) -> Result<Sessions, funnelhub_kafka::Error> {
        let catalog = Catalog::new(&kafka.topic_prefix);
        let sessions =
            TopicCodec::<SetupSession>::register(registry, &catalog.name(Topic::SetupSessions))
                .await?;
        let actions =
            TopicCodec::<SetupActionLog>::register(registry, &catalog.name(Topic::SetupActions))
                .await?;
        let shared = Arc::new(Shared {
            map: RwLock::default(),
            changes: broadcast::channel(256).0,
        });
        let applied = shared.clone();
        let follower = follow::follow(
            kafka,
            TopicCodec::<SetupSession>::register(registry, sessions.topic()).await?,
            "setup-sessions",
            move |key, value| match value {
                Some(session) => applied.apply(session),
                // A tombstone: the session expired.
                None => {
                    applied.map.write().expect("sessions lock").remove(key);
                }
            },
        )
        .await?;
        let producer = AckedProducer::new(kafka, "funnelhub-setup", deadline)?;
        // Hourly, while these sessions are in use.
        let (weak, sweeper, topic) = (
            Arc::downgrade(&shared),
            producer.clone(),
            sessions.topic().to_owned(),
        );
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(SWEEP_EVERY).await;
                let Some(shared) = weak.upgrade() else {
                    return;
                };
                let now = funnelhub_schemas::ids::now_ms();
                match sweep(&shared, &sweeper, &topic, now).await {
                    Ok(0) => {}
                    Ok(gone) => tracing::info!(gone, "expired setup sessions deleted"),
                    Err(e) => tracing::warn!("sweeping setup sessions: {e}"),
                }
            }
        });
        Ok(Sessions {
            shared,
            producer,
            sessions: Arc::new(sessions),
            actions: Arc::new(actions),
            _follower: follower,
        })
    }

    /// The session `id`, unless unknown or expired at `now`.
    pub fn get(&self, id: &str, now: i64) -> Option<SetupSession> {
        self.shared
            .map
            .read()
            .expect("sessions lock")
            .get(id)
            .filter(|s| !expired(s, now))
            .cloned()
    }

    /// Sessions of `tenant_id` open (and not expired) at `now`.
    pub fn open_sessions(&self, tenant_id: &str, now: i64) -> usize {
        self.shared
            .map
            .read()
            .expect("sessions lock")
            .values()
            .filter(|s| s.tenant_id == tenant_id && open(s) && !expired(s, now))
            .count()
    }

    /// Delete the sessions expired at `now` from the topic (tombstones, acknowledged; every
    /// edge following it drops them) and from memory; how many. Any edge may run it: a
    /// tombstone written twice is harmless.
    pub async fn sweep(&self, now: i64) -> Result<usize, WriteError> {
        sweep(&self.shared, &self.producer, self.sessions.topic(), now).await
    }

    /// Every later change of any session.
    pub fn subscribe(&self) -> broadcast::Receiver<SetupSession> {
        self.shared.changes.subscribe()
    }

    /// Write `session` (its revision already bumped), acknowledged, then apply it here.
    pub async fn put(&self, session: SetupSession) -> Result<(), WriteError> {
        let bytes = self
            .sessions
            .encode(&session)
            .map_err(|e| WriteError(e.to_string()))?;
        self.producer
            .send(
                self.sessions.topic(),
                session.session_id.as_bytes(),
                Some(&bytes),
            )
            .await
            .map_err(|e| WriteError(format!("session not stored: {e}")))?;
        self.shared.apply(session);
        Ok(())
    }

    /// Write one action's log record, acknowledged.
    pub async fn log(&self, action: &SetupActionLog) -> Result<(), WriteError> {
        let bytes = self
            .actions
            .encode(action)
            .map_err(|e| WriteError(e.to_string()))?;
        self.producer
            .send(
                self.actions.topic(),
                action.session_id.as_bytes(),
                Some(&bytes),
            )
            .await
            .map_err(|e| WriteError(format!("action log not stored: {e}")))?;
        Ok(())
    }
}

/// How often each edge deletes expired sessions.
const SWEEP_EVERY: Duration = Duration::from_secs(60 * 60);

async fn sweep(
    shared: &Shared,
    producer: &AckedProducer,
    topic: &str,
    now: i64,
) -> Result<usize, WriteError> {
    let gone: Vec<String> = shared
        .map
        .read()
        .expect("sessions lock")
        .values()
        .filter(|s| expired(s, now))
        .map(|s| s.session_id.clone())
        .collect();
    for id in &gone {
        producer
            .send(topic, id.as_bytes(), None)
            .await
            .map_err(|e| WriteError(format!("expired session not deleted: {e}")))?;
        shared.map.write().expect("sessions lock").remove(id);
    }
    Ok(gone.len())
}

/// A new session of `tenant_id`.
pub fn new_session(session_id: String, tenant_id: String, now: i64) -> SetupSession {
    SetupSession {
        session_id,
        tenant_id,
        revision: 1,
        state: state::CREATED.into(),
        created_at: now,
        updated_at: now,
        gateway: SetupStep::default(),
        meta: SetupStep::default(),
        url: SetupStep::default(),
        failed_attempts: 0,
        last_failure: None,
        handoff: None,
        inputs: None,
        rollback: None,
    }
}

fn step_mut<'a>(session: &'a mut SetupSession, step: &str) -> &'a mut SetupStep {
    match step {
        "gateway" => &mut session.gateway,
        "meta" => &mut session.meta,
        _ => &mut session.url,
    }
}

/// Record a tool's outcome in `session` (step status, attempts, last failure) and move its
/// state: every step validated → `validated`; `max_failed` failures → `needs_human` with a
/// handoff bundle (sticky until everything validates); a failure → `failed`; else
/// `validating`.
pub fn record(
    session: &mut SetupSession,
    step: &str,
    outcome: &Outcome,
    now: i64,
    max_failed: u32,
) {
    let entry = step_mut(session, step);
    entry.attempts += 1;
    entry.at = Some(now);
    entry.summary = Some(outcome.output.to_string());
    if outcome.ok {
        entry.status = "success".into();
        entry.reason = None;
        entry.recommendation = None;
    } else {
        entry.status = "failed".into();
        entry.reason = outcome.reason.clone();
        entry.recommendation = outcome.recommendation.clone();
        session.failed_attempts += 1;
        session.last_failure = Some(
            json!({
                "step": step,
                "tool": outcome.tool,
                "reason": outcome.reason,
                "recommendation": outcome.recommendation,
                "at": now,
            })
            .to_string(),
        );
    }
    session.updated_at = now;
    let all_ok = [&session.gateway, &session.meta, &session.url]
        .iter()
        .all(|s| s.status == "success");
    session.state = if all_ok {
        session.handoff = None;
        state::VALIDATED
    } else if session.state == state::NEEDS_HUMAN
        || session.failed_attempts >= i32::try_from(max_failed).unwrap_or(i32::MAX)
    {
        session.handoff = Some(handoff(session).to_string());
        state::NEEDS_HUMAN
    } else if !outcome.ok {
        state::FAILED
    } else {
        state::VALIDATING
    }
    .into();
}

/// What a human picking the session up needs: what was tried, each step's last error and
/// recommendation, and where the full action log is (secrets were masked everywhere).
fn handoff(session: &SetupSession) -> Value {
    json!({
        "session_id": session.session_id,
        "tenant_id": session.tenant_id,
        "failed_attempts": session.failed_attempts,
        "steps": steps_json(session),
        "last_failure": parse(&session.last_failure),
        "action_log": format!(
            "SELECT at, tool, status, reason, input, output FROM setup_action_logs FINAL WHERE tenant_id = '{}' AND session_id = '{}' ORDER BY at_ms",
            session.tenant_id, session.session_id
        ),
    })
}

fn parse(text: &Option<String>) -> Value {
    text.as_deref()
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or(Value::Null)
}

fn steps_json(session: &SetupSession) -> Value {
    let step = |s: &SetupStep| {
        json!({
            "status": s.status,
            "attempts": s.attempts,
            "reason": s.reason,
            "recommendation": s.recommendation,
            "result": parse(&s.summary),
            "at": s.at,
        })
    };
    json!({"gateway": step(&session.gateway), "meta": step(&session.meta), "url": step(&session.url)})
}

/// The consolidated status a progress UI shows.
pub fn status_json(session: &SetupSession, max_failed: u32) -> Value {
    json!({
        "session_id": session.session_id,
        "tenant_id": session.tenant_id,
        "state": session.state,
        "revision": session.revision,
        "created_at": session.created_at,
        "updated_at": session.updated_at,
        "steps": steps_json(session),
        "failed_attempts": session.failed_attempts,
        "max_failed_attempts": max_failed,
        "last_failure": parse(&session.last_failure),
        "handoff": parse(&session.handoff),
        "can_autoconfigure": session.state == state::VALIDATED
            || (session.state == state::NEEDS_HUMAN && all_validated(session)),
        "can_rollback": session.state == state::CONFIGURED && session.rollback.is_some(),
    })
}

/// Whether every step's last action succeeded.
pub fn all_validated(session: &SetupSession) -> bool {
    [&session.gateway, &session.meta, &session.url]
        .iter()
        .all(|s| s.status == "success")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(ok: bool) -> Outcome {
        Outcome {
            tool: "validate_meta_token",
            ok,
            reason: (!ok).then(|| "code 190".into()),
            recommendation: (!ok).then(|| "new token".into()),
            input: json!({}),
            output: json!({"http_status": if ok { 200 } else { 400 }}),
            latency_ms: 5,
        }
    }

    #[test]
    fn a_session_expires_a_week_after_its_last_change_and_closes_when_configured() {
        let now = 1_800_000_000_000;
        let mut session = new_session("s".into(), "acme".into(), now);
        assert!(open(&session) && !expired(&session, now + SESSION_TTL_MS));
        assert!(expired(&session, now + SESSION_TTL_MS + 1));
        session.updated_at = now + SESSION_TTL_MS;
        assert!(
            !expired(&session, now + SESSION_TTL_MS + 1),
            "a change renews it"
        );
        session.state = state::CONFIGURED.into();
        assert!(!open(&session));
    }

    #[test]
    fn states_follow_the_steps_and_failures_hand_off_to_a_human() {
        let mut s = new_session("s".into(), "acme".into(), 1);
        record(&mut s, "meta", &outcome(true), 2, 3);
        assert_eq!(s.state, state::VALIDATING);
        record(&mut s, "gateway", &outcome(false), 3, 3);
        assert_eq!(s.state, state::FAILED);
        assert!(s
            .last_failure
            .as_deref()
            .is_some_and(|f| f.contains("gateway")));
        record(&mut s, "gateway", &outcome(false), 4, 3);
        record(&mut s, "url", &outcome(false), 5, 3);
        assert_eq!(s.state, state::NEEDS_HUMAN);
        let handoff = s.handoff.clone().expect("bundle");
        assert!(
            handoff.contains("setup_action_logs") && handoff.contains("code 190"),
            "{handoff}"
        );
        record(&mut s, "url", &outcome(true), 6, 3);
        assert_eq!(
            s.state,
            state::NEEDS_HUMAN,
            "sticky until every step validates"
        );
        record(&mut s, "gateway", &outcome(true), 7, 3);
        assert_eq!(s.state, state::VALIDATED);
        assert!(s.handoff.is_none());
        assert_eq!(s.failed_attempts, 3);
    }
}

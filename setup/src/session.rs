//! A setup session: its typed state, its three steps, and how a tool's outcome moves them.
//!
//! Contract:
//! - every step validated → [`SessionState::Validated`]; `max_failed` failed actions →
//!   [`SessionState::NeedsHuman`] with a handoff bundle, sticky until every step validates;
//!   another failure → [`SessionState::Failed`]; else [`SessionState::Validating`];
//! - asked for (the chat's hand-off), a session goes [`SessionState::NeedsHuman`] at once;
//!   the handoff bundle carries the conversation (masked);
//! - [`SessionState::Configured`] and [`SessionState::RolledBack`] close a session;
//! - a session untouched for [`SESSION_TTL_MS`] is expired: answered as unknown and deleted;
//! - on the wire a session is the Avro record `SetupSession` ([`Session::to_record`]); a
//!   record whose state or step status this version does not know is refused by
//!   [`Session::from_record`], never guessed.

use std::fmt;

use funnelhub_schemas::control::Sealed;
use funnelhub_schemas::ids::deterministic_id;
use funnelhub_schemas::setup::{SetupAttachment, SetupMessage, SetupSession, SetupStep};
use serde_json::{json, Value};

use crate::attachments::{AttachmentRef, ImageType};
use crate::chat::{ActionNote, ChatMessage, EngineName, Language, Role};
use crate::tools::Outcome;

/// How long a session lives after its last change.
pub const SESSION_TTL_MS: i64 = 7 * 24 * 60 * 60 * 1000;
/// Sessions a tenant may have open (neither configured nor rolled back) at once.
pub const MAX_OPEN_SESSIONS_PER_TENANT: usize = 20;

/// Where a session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionState {
    Created,
    Validating,
    Validated,
    Failed,
    NeedsHuman,
    Configured,
    RolledBack,
}

impl SessionState {
    pub const ALL: [SessionState; 7] = [
        SessionState::Created,
        SessionState::Validating,
        SessionState::Validated,
        SessionState::Failed,
        SessionState::NeedsHuman,
        SessionState::Configured,
        SessionState::RolledBack,
    ];

    /// Its name in the API and on the topic.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Created => "created",
            SessionState::Validating => "validating",
            SessionState::Validated => "validated",
            SessionState::Failed => "failed",
            SessionState::NeedsHuman => "needs_human",
            SessionState::Configured => "configured",
            SessionState::RolledBack => "rolled_back",
        }
    }

    /// The state named `name`.
    pub fn parse(name: &str) -> Option<SessionState> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Neither configured nor rolled back.
    pub fn is_open(self) -> bool {
        !matches!(self, SessionState::Configured | SessionState::RolledBack)
    }
}

impl fmt::Display for SessionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The three things setup validates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// The payment gateway's API credentials (and the webhook secret to store).
    Gateway,
    /// The Meta pixel and its Conversions API token.
    Meta,
    /// The landing page, with the tracking snippet on it.
    Url,
}

impl Step {
    pub const ALL: [Step; 3] = [Step::Gateway, Step::Meta, Step::Url];

    pub fn as_str(self) -> &'static str {
        match self {
            Step::Gateway => "gateway",
            Step::Meta => "meta",
            Step::Url => "url",
        }
    }
}

/// The outcome of a step's last action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepStatus {
    Pending,
    Success,
    Failed,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Pending => "pending",
            StepStatus::Success => "success",
            StepStatus::Failed => "failed",
        }
    }

    pub fn parse(name: &str) -> Option<StepStatus> {
        [StepStatus::Pending, StepStatus::Success, StepStatus::Failed]
            .into_iter()
            .find(|s| s.as_str() == name)
    }
}

impl fmt::Display for StepStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One step: its last action's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRecord {
    pub status: StepStatus,
    pub attempts: u32,
    /// Technical reason of the last failure.
    pub reason: Option<String>,
    /// What the user should do about it.
    pub recommendation: Option<String>,
    /// What the last action found, secrets masked.
    pub result: Option<Value>,
    pub at: Option<i64>,
}

impl Default for StepRecord {
    fn default() -> Self {
        StepRecord {
            status: StepStatus::Pending,
            attempts: 0,
            reason: None,
            recommendation: None,
            result: None,
            at: None,
        }
    }
}

/// A record on the sessions topic this version cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("unknown session state {0:?}")]
    UnknownState(String),
    #[error("unknown status {1:?} of step {0}")]
    UnknownStepStatus(&'static str, String),
    #[error("message {0}: unknown role, language or engine")]
    UnknownMessage(i32),
}

/// A setup session.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub id: String,
    pub tenant_id: String,
    /// Bumped by every change; a change with a lower revision than the one known is stale.
    pub revision: i64,
    pub state: SessionState,
    pub created_at: i64,
    pub updated_at: i64,
    pub gateway: StepRecord,
    pub meta: StepRecord,
    pub url: StepRecord,
    pub failed_attempts: u32,
    /// Step, tool, reason and recommendation of the last failure.
    pub last_failure: Option<Value>,
    /// What a person picking the session up needs, once it needs one.
    pub handoff: Option<Value>,
    /// The validated settings with their secrets, sealed to the session.
    pub inputs: Option<Sealed>,
    /// The tenant as it was before autoconfigure, sealed to the session.
    pub rollback: Option<Sealed>,
    /// The troubleshooting chat, oldest first, masked.
    pub messages: Vec<ChatMessage>,
    /// Screenshots attached to the session.
    pub attachments: Vec<AttachmentRef>,
}

impl Session {
    /// A new session of `tenant_id`.
    pub fn new(id: String, tenant_id: String, now: i64) -> Session {
        Session {
            id,
            tenant_id,
            revision: 1,
            state: SessionState::Created,
            created_at: now,
            updated_at: now,
            gateway: StepRecord::default(),
            meta: StepRecord::default(),
            url: StepRecord::default(),
            failed_attempts: 0,
            last_failure: None,
            handoff: None,
            inputs: None,
            rollback: None,
            messages: Vec::new(),
            attachments: Vec::new(),
        }
    }

    pub fn step(&self, step: Step) -> &StepRecord {
        match step {
            Step::Gateway => &self.gateway,
            Step::Meta => &self.meta,
            Step::Url => &self.url,
        }
    }

    fn step_mut(&mut self, step: Step) -> &mut StepRecord {
        match step {
            Step::Gateway => &mut self.gateway,
            Step::Meta => &mut self.meta,
            Step::Url => &mut self.url,
        }
    }

    /// Untouched for [`SESSION_TTL_MS`] at `now`.
    pub fn expired(&self, now: i64) -> bool {
        self.updated_at < now.saturating_sub(SESSION_TTL_MS)
    }

    /// Whether every step's last action succeeded.
    pub fn all_validated(&self) -> bool {
        Step::ALL
            .iter()
            .all(|s| self.step(*s).status == StepStatus::Success)
    }

    /// Whether autoconfigure may run now.
    pub fn can_autoconfigure(&self) -> bool {
        self.all_validated() && self.state != SessionState::Configured
    }

    /// Whether rollback may run now.
    pub fn can_rollback(&self) -> bool {
        self.state == SessionState::Configured && self.rollback.is_some()
    }

    /// Record a tool's outcome on its step and move the state (module contract).
    pub fn record(&mut self, outcome: &Outcome, now: i64, max_failed: u32) {
        let step = outcome.tool.step();
        let entry = self.step_mut(step);
        entry.attempts += 1;
        entry.at = Some(now);
        entry.result = Some(outcome.output.clone());
        if outcome.ok {
            entry.status = StepStatus::Success;
            entry.reason = None;
            entry.recommendation = None;
        } else {
            entry.status = StepStatus::Failed;
            entry.reason = outcome.reason.clone();
            entry.recommendation = outcome.recommendation.clone();
            self.failed_attempts += 1;
            self.last_failure = Some(json!({
                "step": step.as_str(),
                "tool": outcome.tool.as_str(),
                "reason": outcome.reason,
                "recommendation": outcome.recommendation,
                "at": now,
            }));
        }
        self.updated_at = now;
        self.state = if self.all_validated() {
            self.handoff = None;
            SessionState::Validated
        } else if self.state == SessionState::NeedsHuman || self.failed_attempts >= max_failed {
            self.handoff = Some(self.handoff_bundle());
            SessionState::NeedsHuman
        } else if !outcome.ok {
            SessionState::Failed
        } else {
            SessionState::Validating
        };
    }

    /// Hand the session to a person now (the user asked for one); its bundle carries the
    /// conversation. Whether it was not handed off already.
    pub fn escalate(&mut self, now: i64) -> bool {
        let first = self.state != SessionState::NeedsHuman;
        self.state = SessionState::NeedsHuman;
        self.updated_at = now;
        self.handoff = Some(self.handoff_bundle());
        first
    }

    /// Append a message (its `seq` the next one).
    pub fn add_message(
        &mut self,
        role: Role,
        language: Language,
        text: String,
        actions: Vec<ActionNote>,
        engine: Option<EngineName>,
        now: i64,
    ) -> &mut ChatMessage {
        let seq = self.messages.last().map_or(1, |m| m.seq + 1);
        self.messages.push(ChatMessage {
            seq,
            role,
            language,
            text,
            actions,
            engine,
            attachment_ids: Vec::new(),
            at: now,
        });
        if self.handoff.is_some() {
            self.handoff = Some(self.handoff_bundle());
        }
        self.updated_at = now;
        self.messages.last_mut().expect("pushed above")
    }

    /// The Avro record of one of its messages.
    pub fn message_record(&self, message: &ChatMessage) -> SetupMessage {
        SetupMessage {
            message_id: deterministic_id("setup-message", &[&self.id, &message.seq.to_string()]),
            session_id: self.id.clone(),
            tenant_id: self.tenant_id.clone(),
            seq: i32::try_from(message.seq).unwrap_or(i32::MAX),
            role: message.role.as_str().into(),
            language: message.language.as_str().into(),
            text: message.text.clone(),
            actions: serde_json::to_string(&message.actions).expect("notes serialize"),
            engine: message.engine.map(|e| e.as_str().into()),
            attachment_ids: message.attachment_ids.clone(),
            at: message.at,
        }
    }

    /// Close the session as `state` (configured or rolled back), as a new revision.
    pub fn close(&mut self, state: SessionState, now: i64) {
        self.state = state;
        self.updated_at = now;
        self.revision += 1;
    }

    /// What a person picking the session up needs: what was tried, each step's last error
    /// and recommendation, and where the full action log is (secrets masked everywhere).
    fn handoff_bundle(&self) -> Value {
        json!({
            "session_id": self.id,
            "tenant_id": self.tenant_id,
            "failed_attempts": self.failed_attempts,
            "steps": self.steps_json(),
            "last_failure": self.last_failure,
            "action_log": format!(
                "SELECT at, tool, status, reason, input, output FROM setup_action_logs FINAL WHERE tenant_id = '{}' AND session_id = '{}' ORDER BY at_ms",
                self.tenant_id, self.id
            ),
            "transcript": self.messages.iter().map(|m| json!({
                "seq": m.seq, "role": m.role.as_str(), "text": m.text,
                "attachment_ids": m.attachment_ids, "at": m.at,
            })).collect::<Vec<_>>(),
            "attachments": self.attachments.iter().map(|a| json!({
                "attachment_id": a.id, "content_type": a.image.content_type(), "bytes": a.bytes,
                "url": format!("/api/v1/setup/sessions/{}/attachments/{}", self.id, a.id),
            })).collect::<Vec<_>>(),
        })
    }

    fn steps_json(&self) -> Value {
        let step = |s: &StepRecord| {
            json!({
                "status": s.status.as_str(),
                "attempts": s.attempts,
                "reason": s.reason,
                "recommendation": s.recommendation,
                "result": s.result,
                "at": s.at,
            })
        };
        json!({"gateway": step(&self.gateway), "meta": step(&self.meta), "url": step(&self.url)})
    }

    /// The consolidated status a progress UI shows.
    pub fn status_json(&self, max_failed: u32) -> Value {
        json!({
            "session_id": self.id,
            "tenant_id": self.tenant_id,
            "state": self.state.as_str(),
            "revision": self.revision,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "steps": self.steps_json(),
            "failed_attempts": self.failed_attempts,
            "max_failed_attempts": max_failed,
            "last_failure": self.last_failure,
            "handoff": self.handoff,
            "can_autoconfigure": self.state == SessionState::Validated
                || (self.state == SessionState::NeedsHuman && self.all_validated()),
            "can_rollback": self.can_rollback(),
        })
    }

    /// The Avro record of this session.
    pub fn to_record(&self) -> SetupSession {
        let step = |s: &StepRecord| SetupStep {
            status: s.status.as_str().into(),
            attempts: i32::try_from(s.attempts).unwrap_or(i32::MAX),
            reason: s.reason.clone(),
            recommendation: s.recommendation.clone(),
            summary: s.result.as_ref().map(Value::to_string),
            at: s.at,
        };
        SetupSession {
            session_id: self.id.clone(),
            tenant_id: self.tenant_id.clone(),
            revision: self.revision,
            state: self.state.as_str().into(),
            created_at: self.created_at,
            updated_at: self.updated_at,
            gateway: step(&self.gateway),
            meta: step(&self.meta),
            url: step(&self.url),
            failed_attempts: i32::try_from(self.failed_attempts).unwrap_or(i32::MAX),
            last_failure: self.last_failure.as_ref().map(Value::to_string),
            handoff: self.handoff.as_ref().map(Value::to_string),
            inputs: self.inputs.clone(),
            rollback: self.rollback.clone(),
            messages: self
                .messages
                .iter()
                .map(|m| self.message_record(m))
                .collect(),
            attachments: self
                .attachments
                .iter()
                .map(|a| SetupAttachment {
                    attachment_id: a.id.clone(),
                    content_type: a.image.content_type().into(),
                    bytes: i64::try_from(a.bytes).unwrap_or(i64::MAX),
                    at: a.at,
                })
                .collect(),
        }
    }

    /// The session an Avro record holds.
    pub fn from_record(record: SetupSession) -> Result<Session, RecordError> {
        let state = SessionState::parse(&record.state)
            .ok_or_else(|| RecordError::UnknownState(record.state.clone()))?;
        let step = |name: Step, s: SetupStep| {
            Ok(StepRecord {
                status: StepStatus::parse(&s.status)
                    .ok_or_else(|| RecordError::UnknownStepStatus(name.as_str(), s.status))?,
                attempts: u32::try_from(s.attempts).unwrap_or(0),
                reason: s.reason,
                recommendation: s.recommendation,
                result: json_of(s.summary),
                at: s.at,
            })
        };
        Ok(Session {
            id: record.session_id,
            tenant_id: record.tenant_id,
            revision: record.revision,
            state,
            created_at: record.created_at,
            updated_at: record.updated_at,
            gateway: step(Step::Gateway, record.gateway)?,
            meta: step(Step::Meta, record.meta)?,
            url: step(Step::Url, record.url)?,
            failed_attempts: u32::try_from(record.failed_attempts).unwrap_or(0),
            last_failure: json_of(record.last_failure),
            handoff: json_of(record.handoff),
            inputs: record.inputs,
            rollback: record.rollback,
            messages: record
                .messages
                .into_iter()
                .map(message_of)
                .collect::<Result<_, _>>()?,
            attachments: record
                .attachments
                .into_iter()
                .filter_map(|a| {
                    Some(AttachmentRef {
                        image: ImageType::parse(&a.content_type)?,
                        id: a.attachment_id,
                        bytes: u64::try_from(a.bytes).unwrap_or(0),
                        at: a.at,
                    })
                })
                .collect(),
        })
    }
}

/// A message of a session record.
fn message_of(record: SetupMessage) -> Result<ChatMessage, RecordError> {
    let unknown = || RecordError::UnknownMessage(record.seq);
    Ok(ChatMessage {
        seq: u32::try_from(record.seq).map_err(|_| unknown())?,
        role: Role::parse(&record.role).ok_or_else(unknown)?,
        language: Language::parse(&record.language).ok_or_else(unknown)?,
        actions: serde_json::from_str(&record.actions).unwrap_or_default(),
        engine: match &record.engine {
            None => None,
            Some(e) => Some(EngineName::parse(e).ok_or_else(unknown)?),
        },
        attachment_ids: record.attachment_ids,
        text: record.text,
        at: record.at,
    })
}

fn json_of(text: Option<String>) -> Option<Value> {
    text.and_then(|t| serde_json::from_str(&t).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::ToolName;

    fn outcome(tool: ToolName, ok: bool) -> Outcome {
        Outcome {
            tool,
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
        let mut session = Session::new("s".into(), "acme".into(), now);
        assert!(session.state.is_open() && !session.expired(now + SESSION_TTL_MS));
        assert!(session.expired(now + SESSION_TTL_MS + 1));
        session.updated_at = now + SESSION_TTL_MS;
        assert!(
            !session.expired(now + SESSION_TTL_MS + 1),
            "a change renews it"
        );
        session.close(SessionState::Configured, now + SESSION_TTL_MS);
        assert!(!session.state.is_open());
    }

    #[test]
    fn states_follow_the_steps_and_failures_hand_off_to_a_human() {
        let mut s = Session::new("s".into(), "acme".into(), 1);
        s.record(&outcome(ToolName::ValidateMetaToken, true), 2, 3);
        assert_eq!(s.state, SessionState::Validating);
        s.record(&outcome(ToolName::ValidateGatewayCredentials, false), 3, 3);
        assert_eq!(s.state, SessionState::Failed);
        assert_eq!(
            s.last_failure.as_ref().and_then(|f| f["step"].as_str()),
            Some("gateway")
        );
        s.record(&outcome(ToolName::ValidateGatewayCredentials, false), 4, 3);
        s.record(&outcome(ToolName::ProbeLandingUrl, false), 5, 3);
        assert_eq!(s.state, SessionState::NeedsHuman);
        let handoff = s.handoff.clone().expect("bundle").to_string();
        assert!(
            handoff.contains("setup_action_logs") && handoff.contains("code 190"),
            "{handoff}"
        );
        s.record(&outcome(ToolName::ProbeLandingUrl, true), 6, 3);
        assert_eq!(
            s.state,
            SessionState::NeedsHuman,
            "sticky until every step validates"
        );
        s.record(&outcome(ToolName::ValidateGatewayCredentials, true), 7, 3);
        assert_eq!(s.state, SessionState::Validated);
        assert!(s.handoff.is_none());
        assert_eq!(s.failed_attempts, 3);
    }

    #[test]
    fn a_session_survives_its_record_and_an_unknown_state_is_refused() {
        let mut s = Session::new("s".into(), "acme".into(), 1);
        s.record(&outcome(ToolName::ValidateMetaToken, false), 2, 3);
        assert_eq!(Session::from_record(s.to_record()), Ok(s.clone()));
        let mut record = s.to_record();
        record.state = "paused".into();
        assert_eq!(
            Session::from_record(record),
            Err(RecordError::UnknownState("paused".into()))
        );
        let mut record = s.to_record();
        record.url.status = "maybe".into();
        assert!(matches!(
            Session::from_record(record),
            Err(RecordError::UnknownStepStatus("url", _))
        ));
    }
}

//! Guided setup (seeds 003/004): a session's state on `setup.sessions`, one log record per
//! action on `setup.actions` and one per chat message on `setup.messages`. The edge's setup
//! API writes them.

use serde::{Deserialize, Serialize};

use crate::control::Sealed;

/// `io.funnelhub.setup.SetupStep`: the outcome of one step's last action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupStep {
    /// `pending | success | failed`.
    pub status: String,
    pub attempts: i32,
    pub reason: Option<String>,
    pub recommendation: Option<String>,
    /// What was validated, secrets masked (JSON).
    pub summary: Option<String>,
    pub at: Option<i64>,
}

impl Default for SetupStep {
    fn default() -> Self {
        SetupStep {
            status: "pending".into(),
            attempts: 0,
            reason: None,
            recommendation: None,
            summary: None,
            at: None,
        }
    }
}

/// `io.funnelhub.setup.SetupSession`: a setup session, key `session_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupSession {
    pub session_id: String,
    pub tenant_id: String,
    pub revision: i64,
    /// `created | validating | validated | failed | needs_human | configured | rolled_back`.
    pub state: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub gateway: SetupStep,
    pub meta: SetupStep,
    pub url: SetupStep,
    pub failed_attempts: i32,
    /// JSON: step, reason, recommendation.
    pub last_failure: Option<String>,
    /// JSON handoff bundle once `needs_human`.
    pub handoff: Option<String>,
    /// The validated settings with their secrets, encrypted.
    pub inputs: Option<Sealed>,
    /// The tenant before autoconfigure, encrypted.
    pub rollback: Option<Sealed>,
    /// The troubleshooting chat, oldest first.
    #[serde(default)]
    pub messages: Vec<SetupMessage>,
    /// Screenshots attached to the session.
    #[serde(default)]
    pub attachments: Vec<SetupAttachment>,
}

/// `io.funnelhub.setup.SetupAttachment`: a screenshot kept in the object store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupAttachment {
    /// SHA-256 of the bytes, hex.
    pub attachment_id: String,
    pub content_type: String,
    pub bytes: i64,
    pub at: i64,
}

/// `io.funnelhub.setup.SetupMessage`: one chat message, secrets and personal data masked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupMessage {
    pub message_id: String,
    pub session_id: String,
    pub tenant_id: String,
    pub seq: i32,
    /// `user | assistant`.
    pub role: String,
    /// `pt-BR | en`.
    pub language: String,
    pub text: String,
    /// JSON `[{tool, status, reason}]`.
    pub actions: String,
    /// `builtin | llm` (assistant messages).
    pub engine: Option<String>,
    /// The session's attachments the message refers to.
    #[serde(default)]
    pub attachment_ids: Vec<String>,
    pub at: i64,
}

/// `io.funnelhub.setup.SetupActionLog`: one action, secrets masked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupActionLog {
    pub action_id: String,
    pub session_id: String,
    pub tenant_id: String,
    pub tool: String,
    pub input: String,
    pub output: String,
    /// `success | failed`.
    pub status: String,
    pub reason: Option<String>,
    pub latency_ms: i64,
    pub at: i64,
}

//! What a setup call can fail with, by kind: the caller's input ([`SetupError::InvalidInput`],
//! [`SetupError::UnknownTool`], [`SetupError::UnknownSession`]), the session's state
//! ([`SetupError::NotValidated`], [`SetupError::NotConfigured`],
//! [`SetupError::TooManyOpenSessions`]), a store that did not acknowledge in time
//! ([`SetupError::Unavailable`], transient: retry) or a fault of ours
//! ([`SetupError::Internal`]). Only [`crate::http`] turns them into status codes.

use crate::session::{SessionState, StepStatus};

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A field is missing or invalid.
    #[error("{field}: {message}")]
    InvalidInput { field: String, message: String },
    /// No tool of that name.
    #[error(
        "tool {0} (one of validate_gateway_credentials, validate_meta_token, probe_landing_url)"
    )]
    UnknownTool(String),
    /// No such session, or it expired.
    #[error("setup session {0}")]
    UnknownSession(String),
    /// Autoconfigure before every step validated, or after it ran.
    #[error("session is {state}: autoconfigure needs every step validated (gateway {gateway}, meta {meta}, url {url})")]
    NotValidated {
        state: SessionState,
        gateway: StepStatus,
        meta: StepStatus,
        url: StepStatus,
    },
    /// Rollback of a session that is not configured (or was rolled back already).
    #[error("session is {state}: only a configured session can be rolled back")]
    NotConfigured { state: SessionState },
    /// The tenant has as many open sessions as it may.
    #[error("{max} setup sessions of this tenant are open: finish one (autoconfigure or rollback) or let it expire (7 days untouched)")]
    TooManyOpenSessions { max: usize },
    /// No attachment of that id in this session.
    #[error("attachment {0}")]
    UnknownAttachment(String),
    /// An attachment that is not a PNG, JPEG or WebP image (by its bytes).
    #[error("an attachment is a PNG, JPEG or WebP image")]
    NotAnImage,
    /// An attachment over the size limit.
    #[error("an attachment is at most {max} bytes")]
    AttachmentTooLarge { max: usize },
    /// The session holds as many attachments as it may.
    #[error("this session has {max} attachments already")]
    TooManyAttachments { max: usize },
    /// The session's conversation holds as many messages as it may.
    #[error("this conversation has {max} messages: ask for a person (\"talk to a human\") or start a new session")]
    ConversationFull { max: usize },
    /// A write was not acknowledged (retry later). The reason is for the log only.
    #[error("not stored: {0}")]
    Unavailable(String),
    /// Sealing or opening a secret failed, or a bug. Details are for the log only.
    #[error("internal: {0}")]
    Internal(String),
}

impl SetupError {
    /// A missing or invalid field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> SetupError {
        SetupError::InvalidInput {
            field: field.into(),
            message: message.into(),
        }
    }

    /// A required field that is absent or empty.
    pub fn missing(field: &str) -> SetupError {
        SetupError::invalid(field, "required")
    }

    /// The same error with its field named under `section` (`gateway.basic`).
    pub fn within(self, section: &str) -> SetupError {
        match self {
            SetupError::InvalidInput { field, message } if !section.is_empty() => {
                let field = if field == "body" {
                    section.to_owned()
                } else {
                    format!("{section}.{field}")
                };
                SetupError::InvalidInput { field, message }
            }
            other => other,
        }
    }
}

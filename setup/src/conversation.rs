//! One chat turn of a setup session ([`SetupService::chat`]) and the conversation's pages
//! ([`SetupService::messages`]).
//!
//! Contract (with [`crate::chat`]'s):
//! - the user's message is masked and stored (session and `setup.messages`, acknowledged)
//!   before the engine runs, and the reply after it: a crash in between leaves the
//!   question, never half an answer, and any edge serves the conversation;
//! - the engine acts through [`ChatTools`] only, at most `max_tool_calls` times; a tool runs
//!   with the settings the session holds (the last tried, else the last validated),
//!   completed by what the user gave in this message;
//! - an engine that cannot answer (a model down) is replaced by the built-in diagnoser for
//!   this turn, and the reply says so;
//! - a hand-off moves the session to `needs_human` and raises one ops ticket.

use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use funnelhub_schemas::ids::now_ms;
use serde_json::json;

use crate::chat::diagnoser::Diagnoser;
use crate::chat::mask::mask;
use crate::chat::{
    Assistant, Call, CallResult, ChatMessage, EngineError, EngineName, Given, Language, Memory,
    NoteStatus, Role, Toolbox, Turn, MAX_MESSAGES, MAX_MESSAGE_CHARS,
};
use crate::error::SetupError;
use crate::service::{unavailable, SetupService};
use crate::session::{Session, SessionState};
use crate::tools::{GatewayInput, Input, MetaInput, ToolName};

/// Most messages one page of [`SetupService::messages`] holds.
pub const MAX_PAGE: usize = 100;

impl SetupService {
    /// Answer `message` (referring to the session's attachments `attachment_ids`) in
    /// session `id`: the session after the turn and the reply.
    pub async fn chat(
        &self,
        id: &str,
        message: &str,
        attachment_ids: &[String],
    ) -> Result<(Session, ChatMessage), SetupError> {
        let text = message.trim();
        if text.is_empty() {
            return Err(SetupError::missing("message"));
        }
        if text.chars().count() > MAX_MESSAGE_CHARS {
            return Err(SetupError::invalid(
                "message",
                format!("at most {MAX_MESSAGE_CHARS} characters"),
            ));
        }
        let given = Given::from_message(text);
        let masked = mask(text);
        let (session, language) = {
            let _writing = self.writing.lock().await;
            let mut session = self.session(id)?;
            if session.messages.len() + 2 > MAX_MESSAGES {
                return Err(SetupError::ConversationFull { max: MAX_MESSAGES });
            }
            let so_far = session
                .messages
                .iter()
                .rev()
                .find(|m| m.role == Role::User)
                .map_or(Language::PtBr, |m| m.language);
            let language = Language::detect_or(text, so_far);
            if let Some(unknown) = attachment_ids
                .iter()
                .find(|a| !session.attachments.iter().any(|known| &known.id == *a))
            {
                return Err(SetupError::invalid(
                    "attachment_ids",
                    format!(
                        "no attachment {} in this session",
                        unknown.chars().take(64).collect::<String>()
                    ),
                ));
            }
            session
                .add_message(
                    Role::User,
                    language,
                    masked.clone(),
                    Vec::new(),
                    None,
                    now_ms(),
                )
                .attachment_ids = attachment_ids.to_vec();
            session.revision += 1;
            self.store_last_message(&session).await?;
            (session, language)
        };
        let memory = Memory::of(
            &session,
            self.status_json(&session),
            &self.config().assistant,
        );
        let tools = ChatTools {
            service: self,
            session_id: id,
            given: &given,
            calls: AtomicUsize::new(0),
        };
        let mut images = Vec::new();
        if self.config().assistant.vision && self.assistant.name() == EngineName::Llm {
            for attachment in attachment_ids {
                images.push(self.attachment(id, attachment).await.map(|(b, t)| (t, b))?);
            }
        }
        let turn = Turn {
            message: &masked,
            language,
            memory: &memory,
            given: &given,
            images: &images,
        };
        let (mut reply, engine) = match self.assistant.reply(&turn, &tools).await {
            Ok(reply) => (reply, self.assistant.name()),
            Err(EngineError::Setup(e)) => return Err(e),
            Err(e) => {
                tracing::warn!(
                    session = id,
                    "assistant engine failed, the diagnoser answers: {e}"
                );
                let mut reply = Diagnoser.reply(&turn, &tools).await.map_err(|e| match e {
                    EngineError::Setup(e) => e,
                    other => SetupError::Internal(other.to_string()),
                })?;
                let note = match language {
                    Language::PtBr => "(O assistente avançado está indisponível agora; esta resposta vem do diagnóstico automático.) ",
                    Language::En => "(The advanced assistant is unavailable right now; this answer comes from the built-in diagnosis.) ",
                };
                reply.text.insert_str(0, note);
                (reply, Diagnoser.name())
            }
        };
        // An engine never repeats a secret or personal data, whatever it was shown, and a
        // reply is bounded like a question.
        reply.text = mask(&reply.text)
            .chars()
            .take(2 * MAX_MESSAGE_CHARS)
            .collect();
        let _writing = self.writing.lock().await;
        let mut session = self.session(id)?;
        session.add_message(
            Role::Assistant,
            language,
            reply.text,
            reply.actions,
            Some(engine),
            now_ms(),
        );
        session.revision += 1;
        self.store_last_message(&session).await?;
        let answer = session.messages.last().cloned().expect("added above");
        Ok((session, answer))
    }

    /// Messages of session `id` after `after` (a `seq`), oldest first, at most `limit`;
    /// the cursor of the next page when there is one.
    pub fn messages(
        &self,
        id: &str,
        after: Option<u32>,
        limit: usize,
    ) -> Result<(Vec<ChatMessage>, Option<u32>), SetupError> {
        let session = self.session(id)?;
        let limit = limit.clamp(1, MAX_PAGE);
        let rest: Vec<ChatMessage> = session
            .messages
            .into_iter()
            .filter(|m| after.is_none_or(|a| m.seq > a))
            .collect();
        let next = (rest.len() > limit).then(|| rest[limit - 1].seq);
        Ok((rest.into_iter().take(limit).collect(), next))
    }

    /// Log the session's last message and store the session (both acknowledged).
    async fn store_last_message(&self, session: &Session) -> Result<(), SetupError> {
        if let Some(message) = session.messages.last() {
            let record = session.message_record(message);
            self.sessions
                .log_message(&record)
                .await
                .map_err(unavailable)?;
        }
        self.sessions.put(session).await.map_err(unavailable)
    }

    /// Hand session `id` to a person: `needs_human`, the bundle with the conversation, one
    /// ticket. The session as stored, and the ticket's id.
    pub async fn escalate(&self, id: &str) -> Result<(Session, String), SetupError> {
        let session = {
            let _writing = self.writing.lock().await;
            let mut session = self.session(id)?;
            session.escalate(now_ms());
            session.revision += 1;
            self.sessions.put(&session).await.map_err(unavailable)?;
            session
        };
        // Raised every time: the same deterministic id, so one ticket however often.
        let ticket = self.raise_handoff_ticket(&session).await?;
        Ok((session, ticket))
    }
}

/// What an engine may do in one turn.
struct ChatTools<'a> {
    service: &'a SetupService,
    session_id: &'a str,
    given: &'a Given,
    calls: AtomicUsize,
}

#[async_trait]
impl Toolbox for ChatTools<'_> {
    async fn call(&self, call: Call) -> Result<CallResult, SetupError> {
        let max = self.service.config().assistant.max_tool_calls;
        if self.calls.fetch_add(1, Ordering::SeqCst) >= max {
            return Ok(CallResult::of(
                &call,
                NoteStatus::Refused,
                Some(format!("at most {max} tool calls per reply")),
                json!({}),
            ));
        }
        let service = self.service;
        match call {
            Call::Status => {
                let session = service.session(self.session_id)?;
                Ok(CallResult::of(
                    &call,
                    NoteStatus::Success,
                    None,
                    service.status_json(&session),
                ))
            }
            Call::Autoconfigure => match service.autoconfigure(self.session_id).await {
                Ok((session, change)) => {
                    let mut detail = service.status_json(&session);
                    detail["tenant_change"] = change.to_json();
                    Ok(CallResult::of(&call, NoteStatus::Success, None, detail))
                }
                Err(e @ SetupError::NotValidated { .. }) => {
                    let session = service.session(self.session_id)?;
                    Ok(CallResult::of(
                        &call,
                        NoteStatus::Failed,
                        Some(e.to_string()),
                        service.status_json(&session),
                    ))
                }
                Err(e) => Err(e),
            },
            Call::EscalateToHuman => {
                let (_, ticket) = service.escalate(self.session_id).await?;
                Ok(CallResult::of(
                    &call,
                    NoteStatus::Success,
                    None,
                    json!({"ticket_id": ticket}),
                ))
            }
            Call::Validate(tool) => self.validate(&call, tool).await,
        }
    }
}

impl ChatTools<'_> {
    /// Run `tool` with the session's settings completed by the message's.
    async fn validate(&self, call: &Call, tool: ToolName) -> Result<CallResult, SetupError> {
        let service = self.service;
        let session = service.session(self.session_id)?;
        let stored = service.open_inputs(&session)?;
        let given = self.given;
        let input = match tool {
            ToolName::ValidateMetaToken => {
                let mut meta: MetaInput = stored.tried.meta.or(stored.meta).unwrap_or_default();
                if let Some(token) = &given.meta_access_token {
                    meta.access_token = Some(token.clone());
                }
                if let Some(pixel) = &given.pixel_id {
                    meta.pixel_id = Some(pixel.clone());
                }
                json!(meta)
            }
            ToolName::ValidateGatewayCredentials => {
                let mut gateway: GatewayInput =
                    stored.tried.gateway.or(stored.gateway).unwrap_or_default();
                if let Some(name) = &given.gateway {
                    if &gateway.gateway != name {
                        gateway = GatewayInput {
                            gateway: name.clone(),
                            ..GatewayInput::default()
                        };
                    }
                }
                if let Some(secret) = &given.webhook_secret {
                    gateway.webhook_secret = Some(secret.clone());
                }
                if gateway.gateway.is_empty() {
                    return Ok(needs(
                        call,
                        "gateway (hotmart, kiwify or stripe) and its credentials",
                    ));
                }
                json!(gateway)
            }
            ToolName::ProbeLandingUrl => {
                match given.url.clone().or(stored.tried.url).or(stored.url) {
                    Some(url) => json!({"url": url}),
                    None => return Ok(needs(call, "url")),
                }
            }
        };
        let input = match Input::parse(tool, input, "") {
            Ok(input) => input,
            Err(SetupError::InvalidInput { field, .. }) => return Ok(needs(call, &field)),
            Err(e) => return Err(e),
        };
        let (session, mut actions) = service.run_tools(&session, vec![input]).await?;
        let action = actions
            .pop()
            .ok_or_else(|| SetupError::Internal("a tool run recorded no action".into()))?;
        let outcome = &action.outcome;
        let detail = json!({
            "recommendation": outcome.recommendation,
            "output": outcome.output,
            "state": session.state.as_str(),
            "handed_off": session.state == SessionState::NeedsHuman,
        });
        let status = if outcome.ok {
            NoteStatus::Success
        } else {
            NoteStatus::Failed
        };
        Ok(CallResult::of(call, status, outcome.reason.clone(), detail))
    }
}

/// `call` not run: `missing` names what it needs.
fn needs(call: &Call, missing: &str) -> CallResult {
    CallResult::of(
        call,
        NoteStatus::NeedsInput,
        Some(missing.into()),
        json!({}),
    )
}

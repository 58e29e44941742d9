//! The troubleshooting chat of a setup session: what a message is, how the assistant
//! remembers the conversation, and the two things an engine may use, the session's memory
//! and a [`Toolbox`].
//!
//! Contract:
//! - a user message is 1-[`MAX_MESSAGE_CHARS`] characters; a session keeps at most
//!   [`MAX_MESSAGES`] messages (then a person should take over);
//! - every message is masked ([`mask`]) before it is stored, logged, handed off or shown to
//!   an engine: secrets, emails and phone numbers never leave the request that carried
//!   them. Secrets the user gives for a tool (a new token) are lifted out of the raw
//!   message ([`Given`]) and reach only the tool;
//! - the assistant answers in the language of the user's message ([`Language::detect`]:
//!   Brazilian Portuguese or English);
//! - an engine sees the session's status, the last `memory_turns` messages and a summary of
//!   the older ones, within `max_prompt_chars` ([`Memory`]);
//! - an engine acts only through the [`Toolbox`]: the three validation tools, the status,
//!   autoconfigure and the hand-off to a person, at most `max_tool_calls` per reply.

pub mod diagnoser;
pub mod llm;
pub mod mask;

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::SetupError;
use crate::session::Session;
use crate::tools::ToolName;

/// Longest user message, in characters.
pub const MAX_MESSAGE_CHARS: usize = 2_000;
/// Messages a session keeps (user and assistant); then the chat asks for a person.
pub const MAX_MESSAGES: usize = 60;

/// `[edge.setup.assistant]`: how the assistant remembers and acts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AssistantConfig {
    /// Recent messages an engine sees verbatim.
    pub memory_turns: usize,
    /// Bound of what an engine is shown (status, summary, recent messages), in characters.
    pub max_prompt_chars: usize,
    /// Tool calls an engine may make for one reply.
    pub max_tool_calls: usize,
    /// An OpenAI-compatible API (`https://api.openai.com/v1`, Ollama's
    /// `http://localhost:11434/v1`...): its model answers, with tool calling. Unset: the
    /// built-in diagnoser answers.
    pub base_url: Option<String>,
    /// The model's name at that API.
    pub model: String,
    /// The environment variable holding the API key (none for a local server).
    pub api_key_env: Option<String>,
    /// Deadline of one request to the model.
    pub timeout_ms: u64,
    /// Retries of a request that timed out or got 429 or 5xx.
    pub retries: u32,
    /// Whether the model accepts images: a message's screenshots are sent with it.
    pub vision: bool,
}

impl Default for AssistantConfig {
    fn default() -> Self {
        AssistantConfig {
            memory_turns: 8,
            max_prompt_chars: 6_000,
            max_tool_calls: 3,
            base_url: None,
            model: "gpt-4o-mini".into(),
            api_key_env: None,
            timeout_ms: 20_000,
            retries: 2,
            vision: false,
        }
    }
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        [Role::User, Role::Assistant]
            .into_iter()
            .find(|r| r.as_str() == text)
    }
}

/// The languages the assistant answers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// Brazilian Portuguese: most of the gateways' users.
    PtBr,
    En,
}

impl Language {
    pub fn as_str(self) -> &'static str {
        match self {
            Language::PtBr => "pt-BR",
            Language::En => "en",
        }
    }

    pub fn parse(text: &str) -> Option<Language> {
        [Language::PtBr, Language::En]
            .into_iter()
            .find(|l| l.as_str() == text)
    }

    /// The language of `text`: Portuguese or English, by its words and accents; when they
    /// do not tell, `otherwise` (the conversation's language so far).
    pub fn detect_or(text: &str, otherwise: Language) -> Language {
        const PT: [&str; 56] = [
            "não",
            "nao",
            "meu",
            "minha",
            "você",
            "voce",
            "está",
            "esta",
            "por",
            "que",
            "porque",
            "como",
            "pra",
            "para",
            "com",
            "uma",
            "um",
            "falhou",
            "erro",
            "ajuda",
            "quero",
            "preciso",
            "falar",
            "pessoa",
            "humano",
            "atendente",
            "obrigado",
            "obrigada",
            "olá",
            "ola",
            "oi",
            "funciona",
            "funcionou",
            "de",
            "do",
            "da",
            "é",
            "isso",
            "agora",
            "tentar",
            "qual",
            "quais",
            "o",
            "os",
            "no",
            "na",
            "em",
            "seu",
            "sua",
            "tudo",
            "ainda",
            "já",
            "sim",
            "bom",
            "dia",
            "conta",
        ];
        const EN: [&str; 30] = [
            "the", "my", "is", "why", "what", "how", "not", "does", "doesn't", "failed", "please",
            "help", "want", "need", "talk", "person", "human", "thanks", "hello", "hi", "it", "to",
            "a", "an", "with", "again", "try", "can", "you", "of",
        ];
        let lower = text.to_lowercase();
        let words: Vec<&str> = lower
            .split(|c: char| !c.is_alphanumeric() && c != '\'')
            .filter(|w| !w.is_empty())
            .collect();
        let pt = words.iter().filter(|w| PT.contains(w)).count()
            + lower.chars().filter(|c| "ãõçáéíóúâêô".contains(*c)).count();
        let en = words.iter().filter(|w| EN.contains(w)).count();
        match pt.cmp(&en) {
            std::cmp::Ordering::Greater => Language::PtBr,
            std::cmp::Ordering::Less => Language::En,
            std::cmp::Ordering::Equal => otherwise,
        }
    }
}

/// Which engine answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineName {
    /// The built-in diagnoser ([`diagnoser`]).
    Builtin,
    /// A model behind an OpenAI-compatible API.
    Llm,
}

impl EngineName {
    pub fn as_str(self) -> &'static str {
        match self {
            EngineName::Builtin => "builtin",
            EngineName::Llm => "llm",
        }
    }

    pub fn parse(text: &str) -> Option<EngineName> {
        [EngineName::Builtin, EngineName::Llm]
            .into_iter()
            .find(|e| e.as_str() == text)
    }
}

/// How one tool call of a reply ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoteStatus {
    Success,
    Failed,
    /// Not run: something is missing (`reason` names it).
    NeedsInput,
    /// Not run: the reply made as many calls as it may.
    Refused,
}

impl NoteStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NoteStatus::Success => "success",
            NoteStatus::Failed => "failed",
            NoteStatus::NeedsInput => "needs_input",
            NoteStatus::Refused => "refused",
        }
    }
}

/// What one tool call of a reply did, as the user is shown it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionNote {
    /// `validate_meta_token`, `status`, `autoconfigure`, `escalate_to_human`...
    pub tool: String,
    pub status: NoteStatus,
    pub reason: Option<String>,
}

/// One message of the chat (masked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub seq: u32,
    pub role: Role,
    pub language: Language,
    pub text: String,
    pub actions: Vec<ActionNote>,
    pub engine: Option<EngineName>,
    /// The session's attachments the message refers to.
    pub attachment_ids: Vec<String>,
    pub at: i64,
}

impl ChatMessage {
    pub fn to_json(&self) -> Value {
        json!({
            "seq": self.seq,
            "role": self.role.as_str(),
            "language": self.language.as_str(),
            "text": self.text,
            "actions": self.actions,
            "engine": self.engine.map(EngineName::as_str),
            "attachment_ids": self.attachment_ids,
            "at": self.at,
        })
    }
}

/// Settings a user typed into a message for a tool (a new token, a pixel id, a URL),
/// lifted out before the message is masked: they reach the tool, never a store or an
/// engine.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Given {
    pub meta_access_token: Option<String>,
    pub pixel_id: Option<String>,
    pub webhook_secret: Option<String>,
    pub gateway: Option<String>,
    pub url: Option<String>,
}

impl fmt::Debug for Given {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Given")
            .field("meta_access_token", &self.meta_access_token.is_some())
            .field("pixel_id", &self.pixel_id)
            .field("webhook_secret", &self.webhook_secret.is_some())
            .field("gateway", &self.gateway)
            .field("url", &self.url)
            .finish()
    }
}

impl Given {
    /// What `message` (raw) gives: a Meta token (`EAA…`), a pixel id (15-16 digits), a
    /// Stripe signing secret (`whsec_…`), a gateway's name, an http(s) URL.
    pub fn from_message(message: &str) -> Given {
        let mut given = Given::default();
        for word in message.split_whitespace() {
            let word = word.trim_matches(|c: char| ",;:!?()\"'".contains(c));
            let word = word.trim_end_matches('.');
            if word.starts_with("EAA") && word.len() >= 20 {
                given.meta_access_token = Some(word.to_owned());
            } else if word.starts_with("whsec_") && word.len() >= 16 {
                given.webhook_secret = Some(word.to_owned());
                given.gateway = Some("stripe".into());
            } else if (15..=16).contains(&word.len()) && word.bytes().all(|b| b.is_ascii_digit()) {
                given.pixel_id = Some(word.to_owned());
            } else if word.starts_with("https://") || word.starts_with("http://") {
                given.url = Some(word.to_owned());
            }
        }
        let lower = message.to_lowercase();
        if given.gateway.is_none() {
            given.gateway = ["hotmart", "kiwify", "stripe"]
                .into_iter()
                .find(|g| lower.contains(g))
                .map(str::to_owned);
        }
        given
    }
}

/// What an engine is shown of the session: its status, a summary of the older messages
/// and the recent ones, within the configured bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct Memory {
    pub status: Value,
    /// One line per older message (role, first words, tools run), oldest first.
    pub summary: String,
    pub recent: Vec<ChatMessage>,
}

impl Memory {
    /// The memory of `session` (its last message is the one being answered).
    pub fn of(session: &Session, status: Value, config: &AssistantConfig) -> Memory {
        let split = session.messages.len().saturating_sub(config.memory_turns);
        let (older, recent) = session.messages.split_at(split);
        let mut summary = String::new();
        for m in older {
            let mut line = format!(
                "{} #{}: {}",
                m.role.as_str(),
                m.seq,
                m.text.chars().take(80).collect::<String>()
            );
            for a in &m.actions {
                line.push_str(&format!(" [{} {}]", a.tool, a.status.as_str()));
            }
            summary.push_str(&line);
            summary.push('\n');
        }
        let mut memory = Memory {
            status,
            summary,
            recent: recent.to_vec(),
        };
        // Within the bound: the oldest summary lines go first, then the oldest messages.
        while memory.size() > config.max_prompt_chars {
            if let Some(cut) = memory.summary.find('\n') {
                memory.summary.drain(..=cut);
            } else if memory.recent.len() > 1 {
                memory.recent.remove(0);
            } else {
                break;
            }
        }
        memory
    }

    /// Characters it takes to show.
    pub fn size(&self) -> usize {
        self.status.to_string().len()
            + self.summary.len()
            + self.recent.iter().map(|m| m.text.len() + 16).sum::<usize>()
    }
}

/// One thing an engine may ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// Run a validation tool with the inputs the session holds, completed by what the user
    /// gave in this message.
    Validate(ToolName),
    /// The session's consolidated status.
    Status,
    /// Store the validated settings into the tenant.
    Autoconfigure,
    /// Hand the session to a person.
    EscalateToHuman,
}

impl Call {
    /// Its name, as offered to a model and shown to the user.
    pub fn name(&self) -> &'static str {
        match self {
            Call::Validate(tool) => tool.as_str(),
            Call::Status => "status",
            Call::Autoconfigure => "autoconfigure",
            Call::EscalateToHuman => "escalate_to_human",
        }
    }
}

/// What a call did: the note shown to the user and the details an engine explains.
#[derive(Debug, Clone, PartialEq)]
pub struct CallResult {
    pub note: ActionNote,
    /// `recommendation`, provider output, status... (secrets masked).
    pub detail: Value,
}

impl CallResult {
    /// `call` ended as `status` (for `reason`), with `detail`.
    pub fn of(call: &Call, status: NoteStatus, reason: Option<String>, detail: Value) -> Self {
        CallResult {
            note: ActionNote {
                tool: call.name().into(),
                status,
                reason,
            },
            detail,
        }
    }
}

/// What an engine may do to the session, and nothing else.
#[async_trait]
pub trait Toolbox: Send + Sync {
    async fn call(&self, call: Call) -> Result<CallResult, SetupError>;
}

/// One user message to answer.
#[derive(Debug, Clone)]
pub struct Turn<'a> {
    /// The message, masked.
    pub message: &'a str,
    pub language: Language,
    pub memory: &'a Memory,
    /// Whether the user gave settings in the message (they are not in `message`).
    pub given: &'a Given,
    /// The screenshots the message refers to, for engines that look at images (loaded
    /// only when the engine is configured to).
    pub images: &'a [(crate::attachments::ImageType, Vec<u8>)],
}

/// An engine's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub text: String,
    pub actions: Vec<ActionNote>,
}

/// Why an engine could not answer (the built-in diagnoser answers instead).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Timeout, 429 or 5xx after the retries.
    #[error("the model is unavailable: {0}")]
    Unavailable(String),
    /// It answered something that is not a reply or a valid tool call.
    #[error("the model's answer is unusable: {0}")]
    Invalid(String),
    /// A tool call failed on our side.
    #[error(transparent)]
    Setup(#[from] SetupError),
}

/// An engine: answers one turn, acting through the toolbox.
#[async_trait]
pub trait Assistant: Send + Sync + fmt::Debug {
    fn name(&self) -> EngineName;
    async fn reply(&self, turn: &Turn<'_>, tools: &dyn Toolbox) -> Result<Reply, EngineError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The language of a first message (nothing said before it).
    fn detect(text: &str) -> Language {
        Language::detect_or(text, Language::PtBr)
    }

    #[test]
    fn the_language_is_the_users() {
        assert_eq!(detect("meu token da Meta não funciona"), Language::PtBr);
        assert_eq!(detect("por que a Hotmart falhou?"), Language::PtBr);
        assert_eq!(detect("why did my Meta token fail?"), Language::En);
        assert_eq!(detect("talk to a human please"), Language::En);
        assert_eq!(detect("qual o status?"), Language::PtBr);
        assert_eq!(
            Language::detect_or("status?", Language::En),
            Language::En,
            "undecided: the conversation's language"
        );
        assert_eq!(detect("quero falar com uma pessoa"), Language::PtBr);
    }

    #[test]
    fn settings_given_in_a_message_are_lifted_out() {
        let given = Given::from_message(
            "novo token: EAABsbCS1iHgBAKZAZBx2l3xyz pixel 123456789012345 para https://lp.acme.test/oferta.",
        );
        assert_eq!(
            given.meta_access_token.as_deref(),
            Some("EAABsbCS1iHgBAKZAZBx2l3xyz")
        );
        assert_eq!(given.pixel_id.as_deref(), Some("123456789012345"));
        assert_eq!(given.url.as_deref(), Some("https://lp.acme.test/oferta"));
        assert!(
            !format!("{given:?}").contains("EAAB"),
            "Debug shows no secret"
        );
        let stripe = Given::from_message("my Stripe secret is whsec_0123456789abcdef");
        assert_eq!(stripe.gateway.as_deref(), Some("stripe"));
        assert!(stripe.webhook_secret.is_some());
    }
}

//! The model engine: a model behind an OpenAI-compatible Chat Completions API (OpenAI,
//! Azure OpenAI, Ollama, vLLM, llama.cpp), with tool calling.
//!
//! Contract:
//! - the model is shown the session's memory ([`super::Memory`]: status, summary, recent
//!   messages, all masked) and offered six tools without arguments: the three validation
//!   tools, `status`, `autoconfigure`, `escalate_to_human`. Settings (and secrets) never
//!   pass through the model: the tools use the session's and the message's, held outside
//!   the prompt. A call of another name, or with arguments, is answered with an error for
//!   the model and runs nothing;
//! - at most `max_tool_calls` tool calls per reply; then tools are no longer offered and
//!   the model must answer;
//! - a request that times out (`timeout_ms`) or gets 429 or 5xx is retried `retries` times
//!   with a growing pause; then the engine gives up ([`EngineError::Unavailable`]) and the
//!   built-in diagnoser answers the turn. Any other refusal is [`EngineError::Invalid`].

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};

use super::mask::mask;
use super::{
    ActionNote, Assistant, AssistantConfig, Call, EngineError, EngineName, Language, Reply, Role,
    Toolbox, Turn,
};
use crate::tools::ToolName;

/// The model engine.
#[derive(Debug, Clone)]
pub struct ModelEngine {
    http: reqwest::Client,
    url: String,
    model: String,
    api_key: Option<String>,
    max_tool_calls: usize,
    retries: u32,
}

/// The calls the model is offered, by name.
const CALLS: [(&str, &str); 6] = [
    (
        "validate_meta_token",
        "Check the session's Meta pixel and Conversions API token against Meta (the token and pixel the user gave are held for it).",
    ),
    (
        "validate_gateway_credentials",
        "Check the session's payment gateway (Hotmart, Kiwify or Stripe) credentials and webhook secret.",
    ),
    (
        "probe_landing_url",
        "Open the session's landing page and check it answers and carries the funnelhub tag.",
    ),
    ("status", "The session's current state and each step's last result."),
    (
        "autoconfigure",
        "Apply the validated settings to the account (only once every step validated).",
    ),
    (
        "escalate_to_human",
        "Hand the session to a person from the support team (when the user asks, or nothing works).",
    ),
];

fn call_named(name: &str) -> Option<Call> {
    Some(match name {
        "status" => Call::Status,
        "autoconfigure" => Call::Autoconfigure,
        "escalate_to_human" => Call::EscalateToHuman,
        other => Call::Validate(ToolName::parse(other).ok()?),
    })
}

impl ModelEngine {
    /// The engine of `config`, when it names a model server (`base_url`); the key is read
    /// from the environment variable `api_key_env`.
    pub fn from_config(config: &AssistantConfig) -> Option<ModelEngine> {
        let base = config.base_url.as_deref()?.trim_end_matches('/');
        let api_key = config
            .api_key_env
            .as_deref()
            .and_then(|name| std::env::var(name).ok())
            .filter(|k| !k.is_empty());
        if config.api_key_env.is_some() && api_key.is_none() {
            tracing::warn!(
                "[edge.setup.assistant] api_key_env is set but the variable is empty: requests go without a key"
            );
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms))
            .build()
            .ok()?;
        Some(ModelEngine {
            http,
            url: format!("{base}/chat/completions"),
            model: config.model.clone(),
            api_key,
            max_tool_calls: config.max_tool_calls,
            retries: config.retries,
        })
    }

    fn tools() -> Value {
        Value::Array(
            CALLS
                .iter()
                .map(|(name, description)| {
                    json!({"type": "function", "function": {
                        "name": name, "description": description,
                        "parameters": {"type": "object", "properties": {}, "additionalProperties": false},
                    }})
                })
                .collect(),
        )
    }

    fn system(turn: &Turn<'_>) -> String {
        let language = match turn.language {
            Language::PtBr => "Brazilian Portuguese",
            Language::En => "English",
        };
        let mut text = format!(
            "You are funnelhub's setup assistant. You help a business connect its payment \
             gateway, its Meta pixel (Conversions API) and its landing page. Answer in \
             {language}, briefly, with concrete steps. Use the tools to check things instead \
             of guessing; never ask the user to paste secrets into the chat again if a tool \
             can use the ones held for it; offer a person (escalate_to_human) when the user \
             asks or nothing works.\nSession status (JSON): {}",
            turn.memory.status
        );
        if !turn.memory.summary.is_empty() {
            text.push_str("\nEarlier in this conversation:\n");
            text.push_str(&turn.memory.summary);
        }
        let given = turn.given;
        let held: Vec<&str> = [
            (given.meta_access_token.is_some(), "a Meta access token"),
            (given.pixel_id.is_some(), "a pixel id"),
            (given.webhook_secret.is_some(), "a webhook signing secret"),
            (given.url.is_some(), "a landing page URL"),
        ]
        .into_iter()
        .filter_map(|(present, what)| present.then_some(what))
        .collect();
        if !held.is_empty() {
            text.push_str(&format!(
                "\nThe user's last message gave {} (masked here, held for the tools).",
                held.join(", ")
            ));
        }
        text
    }

    /// One completion, retried on timeouts, 429 and 5xx.
    async fn complete(&self, body: &Value) -> Result<Value, EngineError> {
        let mut last = String::new();
        for attempt in 0..=self.retries {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 << attempt.min(4))).await;
            }
            let mut request = self.http.post(&self.url).json(body);
            if let Some(key) = &self.api_key {
                request = request.bearer_auth(key);
            }
            match request.send().await {
                Err(e) => last = e.without_url().to_string(),
                Ok(response) => {
                    let status = response.status();
                    if status.is_success() {
                        return response
                            .json()
                            .await
                            .map_err(|e| EngineError::Invalid(e.without_url().to_string()));
                    }
                    if status.as_u16() == 429 || status.is_server_error() {
                        last = format!("HTTP {status}");
                        continue;
                    }
                    return Err(EngineError::Invalid(format!("HTTP {status}")));
                }
            }
        }
        Err(EngineError::Unavailable(last))
    }
}

#[async_trait]
impl Assistant for ModelEngine {
    fn name(&self) -> EngineName {
        EngineName::Llm
    }

    async fn reply(&self, turn: &Turn<'_>, tools: &dyn Toolbox) -> Result<Reply, EngineError> {
        let mut messages = vec![json!({"role": "system", "content": Self::system(turn)})];
        for m in &turn.memory.recent {
            let role = match m.role {
                Role::User => "user",
                Role::Assistant => "assistant",
            };
            messages.push(json!({"role": role, "content": m.text}));
        }
        // The screenshots of the message being answered, as image parts of it.
        if !turn.images.is_empty() {
            if let Some(last) = messages.last_mut().filter(|m| m["role"] == "user") {
                use base64::Engine as _;
                let mut parts = vec![json!({"type": "text", "text": last["content"]})];
                for (image, bytes) in turn.images {
                    let data = base64::engine::general_purpose::STANDARD.encode(bytes);
                    parts.push(json!({"type": "image_url", "image_url": {
                        "url": format!("data:{};base64,{data}", image.content_type()),
                    }}));
                }
                last["content"] = Value::Array(parts);
            }
        }
        let mut actions: Vec<ActionNote> = Vec::new();
        loop {
            let offer = actions.len() < self.max_tool_calls;
            let mut body = json!({"model": self.model, "messages": messages});
            if offer {
                body["tools"] = Self::tools();
                body["tool_choice"] = json!("auto");
            }
            let response = self.complete(&body).await?;
            let message = response
                .pointer("/choices/0/message")
                .cloned()
                .ok_or_else(|| EngineError::Invalid("no choices[0].message".into()))?;
            let calls = message
                .get("tool_calls")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if calls.is_empty() || !offer {
                let text = message
                    .get("content")
                    .and_then(Value::as_str)
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| EngineError::Invalid("an empty answer".into()))?;
                return Ok(Reply {
                    text: text.to_owned(),
                    actions,
                });
            }
            messages.push(json!({"role": "assistant", "content": message.get("content"), "tool_calls": calls}));
            for call in &calls {
                let id = call.get("id").and_then(Value::as_str).unwrap_or_default();
                let name = call
                    .pointer("/function/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let arguments = call
                    .pointer("/function/arguments")
                    .and_then(Value::as_str)
                    .unwrap_or("{}");
                let no_arguments = serde_json::from_str::<Value>(arguments)
                    .is_ok_and(|a| a.as_object().is_some_and(|o| o.is_empty()));
                let content = match call_named(name) {
                    Some(_) if actions.len() >= self.max_tool_calls => {
                        json!({"error": format!("at most {} tool calls per reply", self.max_tool_calls)})
                    }
                    Some(_) if !no_arguments => {
                        json!({"error": "this tool takes no arguments: it uses the settings held for the session"})
                    }
                    Some(call) => {
                        let result = tools.call(call).await?;
                        actions.push(result.note.clone());
                        json!({"result": result.note, "detail": result.detail})
                    }
                    None => json!({"error": format!("no tool named {name:?}")}),
                };
                messages.push(json!({"role": "tool", "tool_call_id": id, "content": mask(&content.to_string())}));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_six_calls_are_known() {
        assert_eq!(call_named("status"), Some(Call::Status));
        assert_eq!(
            call_named("validate_meta_token"),
            Some(Call::Validate(ToolName::ValidateMetaToken))
        );
        assert_eq!(call_named("delete_tenant"), None);
        assert_eq!(ModelEngine::tools().as_array().map(Vec::len), Some(6));
    }
}

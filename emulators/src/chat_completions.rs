//! An OpenAI-compatible Chat Completions API (`POST /v1/chat/completions`), the one OpenAI,
//! Azure OpenAI, Ollama, vLLM and llama.cpp serve, for the setup assistant's model engine.
//!
//! It enforces the API's rules a client can break: the bearer key (when one is set), a
//! `model`, a non-empty `messages` array of known roles, every `tool` message answering a
//! `tool_call_id` of an earlier assistant message's `tool_calls`, tool names of 1-64
//! letters, digits, `_` or `-`. Answers are scripted ([`Scripted`]): a tool call, a text
//! answer, an HTTP fault (429, 500...) or a delay (a timeout on the client's side); with
//! nothing scripted it answers `ok`. Every request body is recorded, so a test can check
//! what was sent (no secret, the tools offered).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use funnelhub_runtime::RunningServer;
use serde_json::{json, Value};

/// One scripted answer, used by the next request.
#[derive(Debug, Clone, PartialEq)]
pub enum Scripted {
    /// The model calls `name` with `arguments`.
    ToolCall { name: String, arguments: Value },
    /// The model answers this text.
    Answer(String),
    /// The API fails with this HTTP status (429, 500, 503...).
    Fault(u16),
    /// The API answers `ok` after this long (longer than the client waits: a timeout).
    Delay(Duration),
}

#[derive(Debug, Default)]
struct Ledger {
    script: VecDeque<Scripted>,
    requests: Vec<Value>,
    calls: u64,
}

#[derive(Debug)]
struct Emulator {
    api_key: Option<String>,
    ledger: Mutex<Ledger>,
}

/// A running emulator.
#[derive(Debug)]
pub struct ChatCompletionsEmulator {
    server: RunningServer,
    state: Arc<Emulator>,
}

impl ChatCompletionsEmulator {
    /// Serve on `listen` (port 0: any free port); with `api_key`, only that bearer key.
    pub async fn start(
        listen: SocketAddr,
        api_key: Option<String>,
    ) -> std::io::Result<ChatCompletionsEmulator> {
        let state = Arc::new(Emulator {
            api_key,
            ledger: Mutex::new(Ledger::default()),
        });
        let router = Router::new()
            .route("/v1/chat/completions", post(completions))
            .with_state(state.clone());
        let server = funnelhub_runtime::serve(listen, router).await?;
        Ok(ChatCompletionsEmulator { server, state })
    }

    /// The base URL to configure (`…/v1`).
    pub fn url(&self) -> String {
        format!("{}/v1", self.server.url())
    }

    /// Queue answers for the next requests.
    pub fn script(&self, answers: impl IntoIterator<Item = Scripted>) {
        self.state.ledger().script.extend(answers);
    }

    /// Every request body received so far (valid or not).
    pub fn requests(&self) -> Vec<Value> {
        self.state.ledger().requests.clone()
    }

    pub async fn stop(self) -> std::io::Result<()> {
        self.server.stop().await
    }
}

impl Emulator {
    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().expect("not poisoned")
    }
}

fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"message": message, "type": kind, "param": null, "code": null}})),
    )
        .into_response()
}

/// Why a request breaks the API's rules, if it does.
fn invalid(body: &Value) -> Option<String> {
    if body
        .get("model")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Some("you must provide a model parameter".into());
    }
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return Some("'messages' is a required property".into());
    };
    if messages.is_empty() {
        return Some("'messages' must contain at least one message".into());
    }
    let mut open_calls: Vec<String> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        match m.get("role").and_then(Value::as_str) {
            Some("system" | "user" | "developer") => {}
            Some("assistant") => {
                for call in m
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(id) = call.get("id").and_then(Value::as_str) {
                        open_calls.push(id.to_owned());
                    }
                }
            }
            Some("tool") => {
                let id = m.get("tool_call_id").and_then(Value::as_str).unwrap_or("");
                if !open_calls.iter().any(|c| c == id) {
                    return Some(format!(
                        "messages.[{i}]: messages with role 'tool' must be a response to a preceding message with 'tool_calls'"
                    ));
                }
            }
            _ => return Some(format!("messages.[{i}].role: unknown role")),
        }
    }
    for tool in body
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = tool
            .pointer("/function/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Some(format!("tools: invalid function name {name:?}"));
        }
    }
    None
}

async fn completions(
    State(state): State<Arc<Emulator>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let body: Value = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                &format!("body is not JSON: {e}"),
            )
        }
    };
    let scripted = {
        let mut ledger = state.ledger();
        ledger.requests.push(body.clone());
        ledger.calls += 1;
        ledger.script.pop_front()
    };
    if let Some(key) = &state.api_key {
        let presented = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if presented != Some(key.as_str()) {
            return error(
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                "Incorrect API key provided",
            );
        }
    }
    if let Some(why) = invalid(&body) {
        return error(StatusCode::BAD_REQUEST, "invalid_request_error", &why);
    }
    let model = body["model"].clone();
    let message = match scripted {
        Some(Scripted::Fault(status)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return error(status, "server_error", "injected fault");
        }
        Some(Scripted::Delay(delay)) => {
            tokio::time::sleep(delay).await;
            json!({"role": "assistant", "content": "ok"})
        }
        Some(Scripted::ToolCall { name, arguments }) => {
            let id = format!("call_{}", state.ledger().calls);
            json!({"role": "assistant", "content": null, "tool_calls": [{
                "id": id, "type": "function",
                "function": {"name": name, "arguments": arguments.to_string()},
            }]})
        }
        Some(Scripted::Answer(text)) => json!({"role": "assistant", "content": text}),
        None => json!({"role": "assistant", "content": "ok"}),
    };
    let finish = if message.get("tool_calls").is_some() {
        "tool_calls"
    } else {
        "stop"
    };
    Json(json!({
        "id": "chatcmpl-emulated", "object": "chat.completion", "created": 0, "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }))
    .into_response()
}

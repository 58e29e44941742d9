//! `validate_meta_token`: the Conversions API token reads the pixel (Graph API
//! `GET /{pixel}?fields=id,name`); Meta's error codes become what the user should do.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{mask, required, send, Outcome, Tool, ToolName};
use crate::config::SetupConfig;
use crate::error::SetupError;

/// The input.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetaInput {
    pub pixel_id: Option<String>,
    pub access_token: Option<String>,
    #[serde(default)]
    pub test_event_code: Option<String>,
}

impl MetaInput {
    fn masked(&self) -> Value {
        json!({
            "pixel_id": self.pixel_id,
            "access_token": mask(&self.access_token),
            "test_event_code": self.test_event_code,
        })
    }
}

/// The token check.
#[derive(Debug, Clone)]
pub struct MetaTool {
    http: reqwest::Client,
    graph_url: String,
    api_version: String,
}

impl MetaTool {
    pub fn new(http: reqwest::Client, config: &SetupConfig) -> MetaTool {
        MetaTool {
            http,
            graph_url: config.meta_graph_url.trim_end_matches('/').to_owned(),
            api_version: config.meta_api_version.clone(),
        }
    }
}

impl Tool for MetaTool {
    type Input = MetaInput;
    const NAME: ToolName = ToolName::ValidateMetaToken;

    fn check(input: &MetaInput) -> Result<(), SetupError> {
        let pixel = required(&input.pixel_id, "pixel_id")?;
        if !pixel.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SetupError::invalid("pixel_id", "digits only"));
        }
        required(&input.access_token, "access_token")?;
        Ok(())
    }

    async fn run(&self, input: &MetaInput, _tenant_id: &str) -> Outcome {
        let started = Instant::now();
        let pixel = input.pixel_id.as_deref().unwrap_or_default();
        let url = format!("{}/{}/{pixel}", self.graph_url, self.api_version);
        let request = self.http.get(url).query(&[
            ("fields", "id,name"),
            (
                "access_token",
                input.access_token.as_deref().unwrap_or_default(),
            ),
        ]);
        let result = send(request, "Meta").await;
        let outcome = Outcome::new(Self::NAME, input.masked(), started);
        match result {
            Err((output, reason, recommendation)) => {
                outcome.output(output).failed(reason, recommendation)
            }
            Ok((200, body)) if body.get("id").and_then(Value::as_str) == Some(pixel) => outcome
                .output(
                    json!({"http_status": 200, "pixel_id": pixel, "pixel_name": body.get("name")}),
                ),
            Ok((status, body)) => {
                let code = body.pointer("/error/code").and_then(Value::as_i64);
                let subcode = body.pointer("/error/error_subcode").and_then(Value::as_i64);
                let output = json!({"http_status": status, "code": code, "error_subcode": subcode, "type": body.pointer("/error/type")});
                let (reason, recommendation) = match code {
                    Some(190) | Some(102) => (
                        format!("Meta says the token is invalid or expired (code {})", code.unwrap_or_default()),
                        "generate a new Conversions API token in Events Manager > Settings > Conversions API",
                    ),
                    Some(10) | Some(100) | Some(200..=299) => (
                        format!("the token has no permission on pixel {pixel} (code {}{})", code.unwrap_or_default(), subcode.map(|s| format!(", subcode {s}")).unwrap_or_default()),
                        "generate the token from this pixel's own settings, or give its system user access to the pixel in Business Settings",
                    ),
                    _ => (
                        format!("Meta answered HTTP {status}"),
                        "retry later; if it persists, check Meta's status page",
                    ),
                };
                outcome.output(output).failed(reason, recommendation)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pixel_id_is_digits() {
        let meta = MetaInput {
            pixel_id: Some("12a".into()),
            access_token: Some("t".into()),
            test_event_code: None,
        };
        assert!(MetaTool::check(&meta).is_err());
    }
}

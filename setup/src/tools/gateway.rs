//! `validate_gateway_credentials`: the payment gateway's API credentials, checked with the
//! gateway itself (Hotmart's OAuth token, Kiwify's token and account, Stripe's account).
//! The webhook secret cannot be checked remotely: only its shape.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{mask, required, send, Failure, Outcome, Tool, ToolName};
use crate::config::SetupConfig;
use crate::error::SetupError;

/// The input. `webhook_secret` is what the edge verifies webhooks with (Hotmart hottok,
/// Kiwify token, Stripe `whsec_…`): stored by autoconfigure.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayInput {
    /// `hotmart`, `kiwify` or `stripe`.
    pub gateway: String,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub client_secret: Option<String>,
    /// Hotmart: the credential's Basic token.
    #[serde(default)]
    pub basic: Option<String>,
    /// Kiwify: the account id (dashboard, beside the API key).
    #[serde(default)]
    pub account_id: Option<String>,
    /// Stripe: a secret or restricted key (`sk_…` / `rk_…`).
    #[serde(default)]
    pub secret_key: Option<String>,
    #[serde(default)]
    pub webhook_secret: Option<String>,
}

impl GatewayInput {
    fn masked(&self) -> Value {
        json!({
            "gateway": self.gateway,
            "client_id": self.client_id,
            "client_secret": mask(&self.client_secret),
            "basic": mask(&self.basic),
            "account_id": self.account_id,
            "secret_key": mask(&self.secret_key),
            "webhook_secret": mask(&self.webhook_secret),
        })
    }
}

/// The gateway credential check.
#[derive(Debug, Clone)]
pub struct GatewayTool {
    http: reqwest::Client,
    hotmart_auth_url: String,
    kiwify_api_url: String,
    stripe_api_url: String,
}

impl Tool for GatewayTool {
    type Input = GatewayInput;
    const NAME: ToolName = ToolName::ValidateGatewayCredentials;

    fn check(input: &GatewayInput) -> Result<(), SetupError> {
        match input.gateway.as_str() {
            "hotmart" => {
                required(&input.client_id, "client_id")?;
                required(&input.client_secret, "client_secret")?;
                required(&input.basic, "basic")?;
            }
            "kiwify" => {
                required(&input.client_id, "client_id")?;
                required(&input.client_secret, "client_secret")?;
                required(&input.account_id, "account_id")?;
            }
            "stripe" => {
                required(&input.secret_key, "secret_key")?;
            }
            "" => return Err(SetupError::missing("gateway")),
            _ => {
                return Err(SetupError::invalid(
                    "gateway",
                    "one of hotmart, kiwify, stripe",
                ))
            }
        }
        Ok(())
    }

    async fn run(&self, input: &GatewayInput, _tenant_id: &str) -> Outcome {
        let started = Instant::now();
        let result = match input.gateway.as_str() {
            "hotmart" => self.hotmart(input).await,
            "kiwify" => self.kiwify(input).await,
            _ => self.stripe(input).await,
        };
        let outcome = Outcome::new(Self::NAME, input.masked(), started);
        let outcome = match result {
            Ok(output) => outcome.output(output),
            Err((output, reason, recommendation)) => {
                outcome.output(output).failed(reason, recommendation)
            }
        };
        match (&input.gateway[..], input.webhook_secret.as_deref()) {
            (_, Some(secret))
                if outcome.ok && funnelhub_tenants::check_secret("webhook_secret", secret).is_err() =>
            {
                outcome.failed(
                    format!(
                        "webhook_secret is empty or shorter than {} characters",
                        funnelhub_tenants::MIN_SECRET_CHARS
                    ),
                    "copy the whole webhook secret (token) from the gateway's webhook settings",
                )
            }
            ("stripe", Some(secret)) if outcome.ok && !secret.starts_with("whsec_") => outcome
                .failed(
                    "webhook_secret is not a Stripe endpoint signing secret (whsec_…)",
                    "copy the signing secret of the webhook endpoint (Developers > Webhooks > endpoint > Signing secret), not an API key",
                ),
            _ => outcome,
        }
    }
}

impl GatewayTool {
    pub fn new(http: reqwest::Client, config: &SetupConfig) -> GatewayTool {
        GatewayTool {
            http,
            hotmart_auth_url: config.hotmart_auth_url.trim_end_matches('/').to_owned(),
            kiwify_api_url: config.kiwify_api_url.trim_end_matches('/').to_owned(),
            stripe_api_url: config.stripe_api_url.trim_end_matches('/').to_owned(),
        }
    }

    async fn hotmart(&self, input: &GatewayInput) -> Result<Value, Failure> {
        let url = format!("{}/security/oauth/token", self.hotmart_auth_url);
        let request = self
            .http
            .post(url)
            .query(&[
                ("grant_type", "client_credentials"),
                ("client_id", input.client_id.as_deref().unwrap_or_default()),
                (
                    "client_secret",
                    input.client_secret.as_deref().unwrap_or_default(),
                ),
            ])
            .header(
                "authorization",
                format!("Basic {}", input.basic.as_deref().unwrap_or_default()),
            );
        let (status, body) = send(request, "Hotmart").await?;
        if status == 200 && body.get("access_token").is_some() {
            return Ok(
                json!({"http_status": status, "token_type": body.get("token_type"), "expires_in": body.get("expires_in")}),
            );
        }
        Err((
            json!({"http_status": status, "error": body.get("error")}),
            format!(
                "Hotmart refused the credentials (HTTP {status} {})",
                body.get("error").and_then(Value::as_str).unwrap_or("")
            ),
            "check client_id, client_secret and the Basic token in Hotmart > Tools > Developer Credentials (sandbox credentials do not work in production)".into(),
        ))
    }

    async fn kiwify(&self, input: &GatewayInput) -> Result<Value, Failure> {
        let base = &self.kiwify_api_url;
        let request = self.http.post(format!("{base}/v1/oauth/token")).form(&[
            ("client_id", input.client_id.as_deref().unwrap_or_default()),
            (
                "client_secret",
                input.client_secret.as_deref().unwrap_or_default(),
            ),
        ]);
        let (status, body) = send(request, "Kiwify").await?;
        let Some(token) = body.get("access_token").and_then(Value::as_str) else {
            return Err((
                json!({"http_status": status, "step": "oauth/token"}),
                format!("Kiwify refused the API key (HTTP {status} on /v1/oauth/token)"),
                "create an API key in Kiwify > Apps > API and copy its client_id and client_secret"
                    .into(),
            ));
        };
        let request = self
            .http
            .get(format!("{base}/v1/account-details"))
            .bearer_auth(token)
            .header(
                "x-kiwify-account-id",
                input.account_id.as_deref().unwrap_or_default(),
            );
        let (status, body) = send(request, "Kiwify").await?;
        if status == 200 {
            return Ok(json!({"http_status": status, "account_id": body.get("id")}));
        }
        Err((
            json!({"http_status": status, "step": "account-details"}),
            format!(
                "Kiwify accepted the API key but not account {} (HTTP {status})",
                input.account_id.as_deref().unwrap_or_default()
            ),
            "copy the account_id shown beside the API key in Kiwify > Apps > API".into(),
        ))
    }

    async fn stripe(&self, input: &GatewayInput) -> Result<Value, Failure> {
        let url = format!("{}/v1/account", self.stripe_api_url);
        let request = self
            .http
            .get(url)
            .bearer_auth(input.secret_key.as_deref().unwrap_or_default());
        let (status, body) = send(request, "Stripe").await?;
        if status == 200 {
            return Ok(
                json!({"http_status": status, "account_id": body.get("id"), "charges_enabled": body.get("charges_enabled")}),
            );
        }
        Err((
            json!({"http_status": status, "error_type": body.pointer("/error/type")}),
            format!("Stripe refused the key (HTTP {status})"),
            "use a secret or restricted key of the right mode (test/live) from Developers > API keys".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_checked_and_masked() {
        let hotmart = GatewayInput {
            gateway: "hotmart".into(),
            client_id: Some("id".into()),
            client_secret: Some("very-secret-value".into()),
            ..GatewayInput::default()
        };
        match GatewayTool::check(&hotmart) {
            Err(SetupError::InvalidInput { field, .. }) => assert_eq!(field, "basic"),
            other => panic!("{other:?}"),
        }
        let masked = hotmart.masked().to_string();
        assert!(
            !masked.contains("very-secret-value") && masked.contains("****alue"),
            "{masked}"
        );
        assert!(GatewayTool::check(&GatewayInput {
            gateway: "paypal".into(),
            ..GatewayInput::default()
        })
        .is_err());
    }
}

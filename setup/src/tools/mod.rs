//! The validation tools of guided setup, each behind [`Tool`]: an input checked before
//! anything runs (a refusal names the field), then one run against the real provider (base
//! URLs in `[edge.setup]`, emulators in tests) that always ends in an [`Outcome`]: success
//! or failure with a technical reason, what the user should do, latency, and input/output
//! with every secret masked. Nothing here logs or returns a secret in clear.
//!
//! The set of tools is closed: [`ToolName`] names each, and an unknown name is refused where
//! it is parsed, never run as another tool.

mod address;
mod gateway;
mod landing;
mod meta;

use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

use funnelhub_tenants::Secret;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use crate::config::SetupConfig;
use crate::error::SetupError;
use crate::session::Step;

pub use address::is_public;
pub use gateway::{GatewayInput, GatewayTool};
pub use landing::{has_snippet, LandingTool, UrlInput};
pub use meta::{MetaInput, MetaTool};

/// A tool, by the name in `/actions/{tool}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ToolName {
    ValidateGatewayCredentials,
    ValidateMetaToken,
    ProbeLandingUrl,
}

impl ToolName {
    pub const ALL: [ToolName; 3] = [
        ToolName::ValidateGatewayCredentials,
        ToolName::ValidateMetaToken,
        ToolName::ProbeLandingUrl,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ToolName::ValidateGatewayCredentials => "validate_gateway_credentials",
            ToolName::ValidateMetaToken => "validate_meta_token",
            ToolName::ProbeLandingUrl => "probe_landing_url",
        }
    }

    /// The tool named `name`, or [`SetupError::UnknownTool`].
    pub fn parse(name: &str) -> Result<ToolName, SetupError> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == name)
            .ok_or_else(|| SetupError::UnknownTool(name.chars().take(64).collect()))
    }

    /// The session step it validates.
    pub fn step(self) -> Step {
        match self {
            ToolName::ValidateGatewayCredentials => Step::Gateway,
            ToolName::ValidateMetaToken => Step::Meta,
            ToolName::ProbeLandingUrl => Step::Url,
        }
    }
}

impl fmt::Display for ToolName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One validation tool.
pub trait Tool {
    /// Its input as the API takes it (secrets included; kept sealed in the session).
    type Input: Serialize + DeserializeOwned + Clone + Send + Sync;
    const NAME: ToolName;

    /// Refuse missing or malformed fields (naming the field) before any call.
    fn check(input: &Self::Input) -> Result<(), SetupError>;

    /// Run it against the provider for `tenant_id`'s session.
    fn run(&self, input: &Self::Input, tenant_id: &str) -> impl Future<Output = Outcome> + Send;
}

/// What one tool run found.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub tool: ToolName,
    pub ok: bool,
    /// Technical reason of a failure.
    pub reason: Option<String>,
    /// What the user should do about it.
    pub recommendation: Option<String>,
    /// The input, secrets masked.
    pub input: Value,
    /// What the provider answered (status, codes, ids), secrets masked.
    pub output: Value,
    pub latency_ms: i64,
}

impl Outcome {
    fn new(tool: ToolName, input: Value, started: Instant) -> Outcome {
        Outcome {
            tool,
            ok: true,
            reason: None,
            recommendation: None,
            input,
            output: json!({}),
            latency_ms: started.elapsed().as_millis() as i64,
        }
    }

    fn failed(mut self, reason: impl Into<String>, recommendation: impl Into<String>) -> Outcome {
        self.ok = false;
        self.reason = Some(reason.into());
        self.recommendation = Some(recommendation.into());
        self
    }

    fn output(mut self, output: Value) -> Outcome {
        self.output = output;
        self
    }
}

/// A tool's input, checked.
#[derive(Debug, Clone)]
pub enum Input {
    Gateway(GatewayInput),
    Meta(MetaInput),
    Url(UrlInput),
}

impl Input {
    /// `tool`'s input from JSON, checked; a refusal names the field (under `prefix`, when
    /// the input is a section of a larger body).
    pub fn parse(tool: ToolName, value: Value, prefix: &str) -> Result<Input, SetupError> {
        let within = |e: SetupError| e.within(prefix);
        Ok(match tool {
            ToolName::ValidateGatewayCredentials => {
                Input::Gateway(checked::<GatewayTool>(value).map_err(within)?)
            }
            ToolName::ValidateMetaToken => Input::Meta(checked::<MetaTool>(value).map_err(within)?),
            ToolName::ProbeLandingUrl => Input::Url(checked::<LandingTool>(value).map_err(within)?),
        })
    }

    pub fn tool(&self) -> ToolName {
        match self {
            Input::Gateway(_) => ToolName::ValidateGatewayCredentials,
            Input::Meta(_) => ToolName::ValidateMetaToken,
            Input::Url(_) => ToolName::ProbeLandingUrl,
        }
    }
}

/// `T`'s input from JSON, checked.
fn checked<T: Tool>(value: Value) -> Result<T::Input, SetupError> {
    let input: T::Input = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "body".into() } else { path };
        SetupError::invalid(field, e.into_inner().to_string())
    })?;
    T::check(&input)?;
    Ok(input)
}

/// The tools, with their HTTP clients.
#[derive(Debug, Clone)]
pub struct Tools {
    pub gateway: GatewayTool,
    pub meta: MetaTool,
    pub landing: LandingTool,
}

impl Tools {
    pub fn new(config: &SetupConfig) -> Result<Tools, SetupError> {
        let http = client(config.tool_timeout_ms)?;
        Ok(Tools {
            gateway: GatewayTool::new(http.clone(), config),
            meta: MetaTool::new(http, config),
            landing: LandingTool::new(config),
        })
    }

    /// Run the tool `input` is for.
    pub async fn run(&self, input: &Input, tenant_id: &str) -> Outcome {
        match input {
            Input::Gateway(input) => self.gateway.run(input, tenant_id).await,
            Input::Meta(input) => self.meta.run(input, tenant_id).await,
            Input::Url(input) => self.landing.run(input, tenant_id).await,
        }
    }
}

/// The tools' HTTP client: bounded in time, redirects never followed by the client itself.
fn client(timeout_ms: u64) -> Result<reqwest::Client, SetupError> {
    builder(timeout_ms)
        .build()
        .map_err(|e| SetupError::Internal(format!("HTTP client: {e}")))
}

fn builder(timeout_ms: u64) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .timeout(Duration::from_millis(timeout_ms))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("funnelhub-setup/1")
}

fn mask(secret: &Option<String>) -> Value {
    match secret {
        Some(s) => json!(Secret::from(s.as_str()).masked()),
        None => Value::Null,
    }
}

fn required<'a>(value: &'a Option<String>, field: &str) -> Result<&'a str, SetupError> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| SetupError::missing(field))
}

/// The output so far, the reason and the recommendation of a failed call.
type Failure = (Value, String, String);

/// Send; a transport failure (no answer, timeout) is a failure naming the provider, never
/// the URL (it may carry a token).
async fn send(request: reqwest::RequestBuilder, provider: &str) -> Result<(u16, Value), Failure> {
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let body = response.json::<Value>().await.unwrap_or(Value::Null);
            Ok((status, body))
        }
        Err(e) => {
            let what = if e.is_timeout() {
                "timed out"
            } else {
                "unreachable"
            };
            Err((
                json!({"transport": what}),
                format!("{provider} {what}: {}", e.without_url()),
                format!("retry later; if it persists, check {provider}'s status page"),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_name_parses_back_and_no_other_does() {
        for tool in ToolName::ALL {
            assert_eq!(ToolName::parse(tool.as_str()).ok(), Some(tool));
        }
        assert!(matches!(
            ToolName::parse("drop_tables"),
            Err(SetupError::UnknownTool(name)) if name == "drop_tables"
        ));
    }

    #[test]
    fn inputs_are_checked_naming_the_field_under_their_section() {
        let refused = Input::parse(
            ToolName::ValidateGatewayCredentials,
            json!({"gateway": "hotmart", "client_id": "id", "client_secret": "very-secret-value"}),
            "gateway",
        );
        assert!(
            matches!(&refused, Err(SetupError::InvalidInput { field, .. }) if field == "gateway.basic"),
            "{refused:?}"
        );
        let refused = Input::parse(ToolName::ValidateMetaToken, json!({"pixel_id": 12}), "");
        assert!(
            matches!(&refused, Err(SetupError::InvalidInput { field, .. }) if field == "pixel_id"),
            "{refused:?}"
        );
        let url = Input::parse(
            ToolName::ProbeLandingUrl,
            json!({"url": "https://shop.example/"}),
            "",
        )
        .expect("valid");
        assert_eq!(url.tool(), ToolName::ProbeLandingUrl);
    }
}

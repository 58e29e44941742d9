//! The three validation tools of guided setup. Each calls the real provider (base URLs in
//! `[edge.setup]`, emulators in tests) and returns an [`Outcome`]: success or failure with a
//! technical reason, what the user should do, latency, and input/output with every secret
//! masked. Nothing here logs or returns a secret in clear.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::SetupConfig;
use crate::config::Secret;
use crate::error::ApiError;

/// The tools, by the name in `/actions/{tool}`.
pub const TOOLS: [&str; 3] = [
    "validate_gateway_credentials",
    "validate_meta_token",
    "probe_landing_url",
];

/// The session step each tool validates.
pub fn step_of(tool: &str) -> Option<&'static str> {
    match tool {
        "validate_gateway_credentials" => Some("gateway"),
        "validate_meta_token" => Some("meta"),
        "probe_landing_url" => Some("url"),
        _ => None,
    }
}

/// What one tool run found.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub tool: &'static str,
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
    fn new(tool: &'static str, input: Value, started: Instant) -> Outcome {
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

fn mask(secret: &Option<String>) -> Value {
    match secret {
        Some(s) => json!(Secret::from(s.as_str()).masked()),
        None => Value::Null,
    }
}

fn required<'a>(value: &'a Option<String>, field: &str) -> Result<&'a str, ApiError> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::missing(field))
}

/// `validate_gateway_credentials` input. `webhook_secret` is what the edge verifies
/// webhooks with (Hotmart hottok, Kiwify token, Stripe `whsec_…`): stored by autoconfigure.
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
    /// Refuse missing fields (400 naming the field) before any call.
    pub fn check(&self) -> Result<(), ApiError> {
        match self.gateway.as_str() {
            "hotmart" => {
                required(&self.client_id, "client_id")?;
                required(&self.client_secret, "client_secret")?;
                required(&self.basic, "basic")?;
            }
            "kiwify" => {
                required(&self.client_id, "client_id")?;
                required(&self.client_secret, "client_secret")?;
                required(&self.account_id, "account_id")?;
            }
            "stripe" => {
                required(&self.secret_key, "secret_key")?;
            }
            "" => return Err(ApiError::missing("gateway")),
            _ => return Err(ApiError::field("gateway", "one of hotmart, kiwify, stripe")),
        }
        Ok(())
    }

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

/// `validate_meta_token` input.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetaInput {
    pub pixel_id: Option<String>,
    pub access_token: Option<String>,
    #[serde(default)]
    pub test_event_code: Option<String>,
}

impl MetaInput {
    pub fn check(&self) -> Result<(), ApiError> {
        let pixel = required(&self.pixel_id, "pixel_id")?;
        if !pixel.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ApiError::field("pixel_id", "digits only"));
        }
        required(&self.access_token, "access_token")?;
        Ok(())
    }

    fn masked(&self) -> Value {
        json!({
            "pixel_id": self.pixel_id,
            "access_token": mask(&self.access_token),
            "test_event_code": self.test_event_code,
        })
    }
}

/// `probe_landing_url` input.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UrlInput {
    pub url: Option<String>,
}

impl UrlInput {
    pub fn check(&self) -> Result<url::Url, ApiError> {
        let url = url::Url::parse(required(&self.url, "url")?)
            .map_err(|e| ApiError::field("url", format!("not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(ApiError::field("url", "an http(s) URL with a host"));
        }
        Ok(url)
    }
}

/// The tools with their HTTP client (redirects never followed by the client itself).
#[derive(Debug, Clone)]
pub struct Tools {
    http: reqwest::Client,
    config: SetupConfig,
}

impl Tools {
    pub fn new(config: &SetupConfig) -> Result<Tools, String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.tool_timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("funnelhub-setup/1")
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Tools {
            http,
            config: config.clone(),
        })
    }

    /// Check the gateway's API credentials with the gateway itself.
    pub async fn validate_gateway(&self, input: &GatewayInput) -> Outcome {
        let started = Instant::now();
        let tool = "validate_gateway_credentials";
        let result = match input.gateway.as_str() {
            "hotmart" => self.hotmart(input).await,
            "kiwify" => self.kiwify(input).await,
            _ => self.stripe(input).await,
        };
        let outcome = Outcome::new(tool, input.masked(), started);
        let outcome = match result {
            Ok(output) => outcome.output(output),
            Err((output, reason, recommendation)) => {
                outcome.output(output).failed(reason, recommendation)
            }
        };
        // A webhook secret cannot be checked remotely: only its shape.
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

    async fn hotmart(&self, input: &GatewayInput) -> Result<Value, Failure> {
        let url = format!(
            "{}/security/oauth/token",
            self.config.hotmart_auth_url.trim_end_matches('/')
        );
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
        let base = self.config.kiwify_api_url.trim_end_matches('/');
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
        let url = format!(
            "{}/v1/account",
            self.config.stripe_api_url.trim_end_matches('/')
        );
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

    /// Check that the token reads the pixel (Graph API `GET /{pixel}?fields=id,name`).
    pub async fn validate_meta(&self, input: &MetaInput) -> Outcome {
        let started = Instant::now();
        let pixel = input.pixel_id.as_deref().unwrap_or_default();
        let url = format!(
            "{}/{}/{pixel}",
            self.config.meta_graph_url.trim_end_matches('/'),
            self.config.meta_api_version
        );
        let request = self.http.get(url).query(&[
            ("fields", "id,name"),
            (
                "access_token",
                input.access_token.as_deref().unwrap_or_default(),
            ),
        ]);
        let result = send(request, "Meta").await;
        let outcome = Outcome::new("validate_meta_token", input.masked(), started);
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

    /// Fetch the landing page like a browser would arrive: status, time, redirects (same
    /// host only), and whether it carries the tenant's tracking snippet.
    pub async fn probe_url(&self, input: &UrlInput, url: url::Url, tenant_id: &str) -> Outcome {
        let started = Instant::now();
        let mut outcome = self.probe(input, url, tenant_id, started).await;
        outcome.latency_ms = started.elapsed().as_millis() as i64;
        outcome
    }

    async fn probe(
        &self,
        input: &UrlInput,
        url: url::Url,
        tenant_id: &str,
        started: Instant,
    ) -> Outcome {
        let outcome = Outcome::new("probe_landing_url", json!({"url": input.url}), started);
        let host = url.host_str().unwrap_or_default().to_owned();
        let mut current = url;
        let mut hops = Vec::new();
        for _ in 0..=5 {
            // Resolved once, checked, and that address is the one connected to (a second
            // lookup could answer otherwise).
            let client =
                match self.pinned_client(&current).await {
                    Ok(client) => client,
                    Err(reason) => return outcome.failed(
                        reason,
                        "give the page's public URL (https://…), as a visitor's browser opens it",
                    ),
                };
            let response = match client.get(current.clone()).send().await {
                Ok(response) => response,
                Err(e) if e.is_timeout() => {
                    let ms = started.elapsed().as_millis();
                    return outcome
                        .output(json!({"redirects": hops, "timed_out_after_ms": ms}))
                        .failed(
                            format!("no answer within {} ms", self.config.tool_timeout_ms),
                            "check that the page is online and fast (a slow landing page loses visitors and pixel events)",
                        );
                }
                Err(e) => {
                    return outcome.output(json!({"redirects": hops})).failed(
                        format!("unreachable: {}", e.without_url()),
                        "check the address and that the site is online (DNS, TLS certificate)",
                    );
                }
            };
            let status = response.status().as_u16();
            if response.status().is_redirection() {
                let location = response
                    .headers()
                    .get("location")
                    .and_then(|l| l.to_str().ok())
                    .and_then(|l| current.join(l).ok());
                let Some(next) = location else {
                    return outcome.failed(
                        format!("HTTP {status} without a usable Location"),
                        "fix the redirect on the server",
                    );
                };
                hops.push(json!({"status": status, "to": next.as_str()}));
                if next.host_str() != Some(host.as_str()) {
                    return outcome
                        .output(json!({"http_status": status, "redirects": hops}))
                        .failed(
                            format!(
                                "redirects to another host: {}",
                                next.host_str().unwrap_or_default()
                            ),
                            "give the final landing URL (the one visitors stay on), so clicks and page views are tracked on the right origin",
                        );
                }
                current = next;
                continue;
            }
            let body = read_capped(response, MAX_PROBE_BODY_BYTES).await;
            let latency = started.elapsed().as_millis() as i64;
            let snippet = has_snippet(&body, tenant_id);
            let output = json!({
                "http_status": status,
                "response_ms": latency,
                "redirects": hops,
                "final_url": current.as_str(),
                "snippet_found": snippet,
            });
            let outcome = outcome.output(output);
            return if status >= 400 {
                outcome.failed(
                    format!("HTTP {status}"),
                    "publish the page (it answers with an error now)",
                )
            } else if !snippet {
                outcome.failed(
                    "the funnelhub tracking snippet is not on the page",
                    format!("paste the tracking snippet (docs/setup.md) with tenant={tenant_id} before </body>"),
                )
            } else {
                outcome
            };
        }
        outcome
            .output(json!({"redirects": hops}))
            .failed("more than 5 redirects", "fix the redirect loop")
    }

    /// A client that connects to `url`'s host at one address checked public (or one of a
    /// `host:port` listed in `probe_private_hosts`), whatever DNS answers later.
    async fn pinned_client(&self, url: &url::Url) -> Result<reqwest::Client, String> {
        let host = url.host_str().unwrap_or_default();
        let port = url.port_or_known_default().unwrap_or(443);
        let allowed_private = self
            .config
            .probe_private_hosts
            .iter()
            .any(|h| *h == format!("{host}:{port}"));
        let addresses: Vec<SocketAddr> = match url.host() {
            Some(url::Host::Ipv4(ip)) => vec![SocketAddr::new(ip.into(), port)],
            Some(url::Host::Ipv6(ip)) => vec![SocketAddr::new(ip.into(), port)],
            Some(url::Host::Domain(domain)) => tokio::net::lookup_host((domain, port))
                .await
                .map_err(|e| format!("cannot resolve {domain}: {e}"))?
                .collect(),
            None => return Err("the URL has no host".into()),
        };
        if let Some(private) = addresses.iter().find(|a| !is_public(a.ip())) {
            if !allowed_private {
                return Err(format!(
                    "{host} is not a public address ({}): refused",
                    private.ip()
                ));
            }
        }
        let address = *addresses
            .first()
            .ok_or_else(|| format!("{host} has no address"))?;
        let mut client = reqwest::Client::builder()
            .timeout(Duration::from_millis(self.config.tool_timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("funnelhub-setup/1");
        if let Some(url::Host::Domain(domain)) = url.host() {
            client = client.resolve(domain, address);
        }
        client.build().map_err(|e| e.to_string())
    }
}

/// Most bytes of a landing page the probe reads (the snippet is looked for in them).
const MAX_PROBE_BODY_BYTES: usize = 1 << 20;

/// The body of `response` as text, its first `limit` bytes at most.
async fn read_capped(mut response: reqwest::Response, limit: usize) -> String {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = limit - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= limit {
            break;
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// Whether `ip` is a public unicast address: not private, loopback, link-local, shared
/// (carrier-grade NAT), documentation, benchmarking, multicast, reserved or unspecified,
/// including IPv4 addresses written as IPv6 (mapped, compatible, NAT64, 6to4).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        // Shared address space (RFC 6598), IETF protocol assignments, benchmarking,
        // reserved (240/4).
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let segments = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    match segments {
        // IPv4-compatible (::a.b.c.d), NAT64 (64:ff9b::/96): the IPv4 address inside.
        [0, 0, 0, 0, 0, 0, _, _] | [0x64, 0xff9b, 0, 0, 0, 0, _, _] => {
            let [_, _, _, _, _, _, hi, lo] = segments;
            return !ip.is_unspecified()
                && !ip.is_loopback()
                && is_public_v4(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo)));
        }
        // 6to4 (2002::/16): the IPv4 address after the prefix.
        [0x2002, hi, lo, ..] => {
            return is_public_v4(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo)))
        }
        _ => {}
    }
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        // Unique local fc00::/7, link-local fe80::/10, documentation 2001:db8::/32.
        || (segments[0] & 0xfe00) == 0xfc00
        || (segments[0] & 0xffc0) == 0xfe80
        || (segments[0] == 0x2001 && segments[1] == 0x0db8))
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

/// Whether `page` carries the tracking snippet of `tenant_id`: a call to the edge's
/// tracking endpoint naming the tenant (docs/setup.md shows the snippet).
pub fn has_snippet(page: &str, tenant_id: &str) -> bool {
    page.contains("/api/v1/track/") && page.contains(&format!("tenant={tenant_id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_unicast_addresses_are_public() {
        for refused in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "240.0.0.1",
            "198.18.0.1",
            "::1",
            "::",
            "::ffff:169.254.169.254",
            "::ffff:127.0.0.1",
            "::127.0.0.1",
            "64:ff9b::10.0.0.1",
            "2002:a9fe:a9fe::1",
            "fe80::1",
            "fd00::1",
            "ff02::1",
            "2001:db8::1",
        ] {
            let ip: IpAddr = refused.parse().expect("an address");
            assert!(!is_public(ip), "{refused} is not public");
        }
        for public in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            let ip: IpAddr = public.parse().expect("an address");
            assert!(is_public(ip), "{public} is public");
        }
    }

    #[test]
    fn inputs_are_checked_and_masked() {
        let hotmart = GatewayInput {
            gateway: "hotmart".into(),
            client_id: Some("id".into()),
            client_secret: Some("very-secret-value".into()),
            ..GatewayInput::default()
        };
        match hotmart.check() {
            Err(ApiError::InvalidField { field, .. }) => assert_eq!(field, "basic"),
            other => panic!("{other:?}"),
        }
        let masked = hotmart.masked().to_string();
        assert!(
            !masked.contains("very-secret-value") && masked.contains("****alue"),
            "{masked}"
        );
        assert!(GatewayInput {
            gateway: "paypal".into(),
            ..GatewayInput::default()
        }
        .check()
        .is_err());
        let meta = MetaInput {
            pixel_id: Some("12a".into()),
            access_token: Some("t".into()),
            test_event_code: None,
        };
        assert!(meta.check().is_err());
        assert!(UrlInput {
            url: Some("ftp://x".into())
        }
        .check()
        .is_err());
        assert!(has_snippet(
            "<script>fetch('https://e/api/v1/track/pageview?tenant=acme')</script>",
            "acme"
        ));
        assert!(!has_snippet(
            "<script>fetch('https://e/api/v1/track/pageview?tenant=other')</script>",
            "acme"
        ));
    }
}

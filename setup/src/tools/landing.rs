//! `probe_landing_url`: fetch the landing page as a visitor's browser arrives (status,
//! time, redirects on the same host only) and look for the tenant's tracking snippet.
//!
//! Guarantees: each hop's host is resolved once, every address checked public (or listed in
//! `probe_private_hosts`), and that address is the one connected to (a second lookup could
//! answer otherwise); at most 5 redirects; at most [`MAX_PROBE_BODY_BYTES`] of the page read;
//! each request bounded by `tool_timeout_ms`.

use std::net::SocketAddr;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::address::is_public;
use super::{builder, required, Outcome, Tool, ToolName};
use crate::config::SetupConfig;
use crate::error::SetupError;

/// The input.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UrlInput {
    pub url: Option<String>,
}

impl UrlInput {
    /// The URL, parsed: http(s) with a host.
    pub fn parsed(&self) -> Result<url::Url, SetupError> {
        let url = url::Url::parse(required(&self.url, "url")?)
            .map_err(|e| SetupError::invalid("url", format!("not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(SetupError::invalid("url", "an http(s) URL with a host"));
        }
        Ok(url)
    }
}

/// Most bytes of a landing page the probe reads (the snippet is looked for in them).
const MAX_PROBE_BODY_BYTES: usize = 1 << 20;
/// Most redirects followed.
const MAX_REDIRECTS: usize = 5;

/// The landing-page probe.
#[derive(Debug, Clone)]
pub struct LandingTool {
    timeout_ms: u64,
    private_hosts: Vec<String>,
}

impl LandingTool {
    pub fn new(config: &SetupConfig) -> LandingTool {
        LandingTool {
            timeout_ms: config.tool_timeout_ms,
            private_hosts: config.probe_private_hosts.clone(),
        }
    }

    async fn probe(
        &self,
        url: url::Url,
        outcome: Outcome,
        tenant_id: &str,
        started: Instant,
    ) -> Outcome {
        let host = url.host_str().unwrap_or_default().to_owned();
        let mut current = url;
        let mut hops = Vec::new();
        for _ in 0..=MAX_REDIRECTS {
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
                            format!("no answer within {} ms", self.timeout_ms),
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
            let outcome = outcome.output(json!({
                "http_status": status,
                "response_ms": latency,
                "redirects": hops,
                "final_url": current.as_str(),
                "snippet_found": snippet,
            }));
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
            .private_hosts
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
        let mut client = builder(self.timeout_ms);
        if let Some(url::Host::Domain(domain)) = url.host() {
            client = client.resolve(domain, address);
        }
        client.build().map_err(|e| e.to_string())
    }
}

impl Tool for LandingTool {
    type Input = UrlInput;
    const NAME: ToolName = ToolName::ProbeLandingUrl;

    fn check(input: &UrlInput) -> Result<(), SetupError> {
        input.parsed().map(drop)
    }

    async fn run(&self, input: &UrlInput, tenant_id: &str) -> Outcome {
        let started = Instant::now();
        let outcome = Outcome::new(Self::NAME, json!({"url": input.url}), started);
        let mut outcome = match input.parsed() {
            Ok(url) => self.probe(url, outcome, tenant_id, started).await,
            Err(e) => outcome.failed(e.to_string(), "give the page's URL (https://…)"),
        };
        outcome.latency_ms = started.elapsed().as_millis() as i64;
        outcome
    }
}

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

/// Whether `page` carries the tracking of `tenant_id`: the tracker's script tag
/// (`/sdk/v1/funnelhub.js` with `data-tenant`, docs/tracker.md), or a hand-written call to
/// the edge's tracking endpoint naming the tenant.
pub fn has_snippet(page: &str, tenant_id: &str) -> bool {
    let tag = page.contains("/sdk/v1/funnelhub.js")
        && [
            format!("data-tenant=\"{tenant_id}\""),
            format!("data-tenant='{tenant_id}'"),
        ]
        .iter()
        .any(|attr| page.contains(attr.as_str()));
    let call = page.contains("/api/v1/track/") && page.contains(&format!("tenant={tenant_id}"));
    tag || call
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_http_with_a_host_and_the_snippet_names_the_tenant() {
        assert!(LandingTool::check(&UrlInput {
            url: Some("ftp://x".into())
        })
        .is_err());
        assert!(has_snippet(
            "<script>fetch('https://e/api/v1/track/pageview?tenant=acme')</script>",
            "acme"
        ));
        assert!(!has_snippet(
            "<script>fetch('https://e/api/v1/track/pageview?tenant=other')</script>",
            "acme"
        ));
        let tag = r#"<script async src="https://edge.example/sdk/v1/funnelhub.js" data-tenant="acme"></script>"#;
        assert!(has_snippet(tag, "acme"));
        assert!(!has_snippet(tag, "acm"));
    }
}

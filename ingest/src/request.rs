//! What every edge endpoint does with a request before its own logic: find the tenant,
//! read the body within the limit, parse JSON naming the bad field, find the client IP.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{header, HeaderMap};

use crate::config::TenantConfig;
use funnelhub_runtime::api::ApiError;
use funnelhub_tenants::TenantDirectory;

/// The tenants requests are resolved against: the live directory (the control topic's
/// changes apply without a restart).
#[derive(Debug, Clone, Default)]
pub struct Tenants(TenantDirectory);

impl Tenants {
    /// Fixed tenants (tests, tools).
    pub fn new(tenants: impl IntoIterator<Item = TenantConfig>) -> Self {
        Tenants(TenantDirectory::fixed(tenants))
    }

    /// The live directory.
    pub fn live(directory: TenantDirectory) -> Self {
        Tenants(directory)
    }

    /// The directory behind it.
    pub fn directory(&self) -> &TenantDirectory {
        &self.0
    }

    /// The tenant a request's query names (`?tenant=<id>`).
    pub fn resolve(&self, query: &QueryParams) -> Result<Arc<TenantConfig>, ApiError> {
        let id = query
            .get("tenant")
            .ok_or_else(|| ApiError::missing("tenant"))?;
        self.0.get(id).ok_or(ApiError::UnknownTenant)
    }

    /// The tenant a webhook names, or one with no secret at all if there is no such tenant:
    /// its authenticity check then fails exactly as a wrong signature does, so webhook
    /// answers do not tell which tenant ids exist.
    pub fn resolve_for_webhook(&self, query: &QueryParams) -> Result<Arc<TenantConfig>, ApiError> {
        match self.resolve(query) {
            Err(ApiError::UnknownTenant) => {
                let id = query.get("tenant").unwrap_or_default();
                Ok(Arc::new(TenantConfig::new(id)))
            }
            other => other,
        }
    }

    /// The tenant owning API key `key` (compared in constant time with every key).
    pub fn by_api_key(
        &self,
        key: &str,
    ) -> Option<(Arc<TenantConfig>, funnelhub_tenants::KeyScope)> {
        self.0.by_api_key(key)
    }

    /// Is `origin` one of `tenant_id`'s landing-page origins?
    pub fn allows_origin(&self, tenant_id: &str, origin: &str) -> bool {
        self.0.allows_origin(tenant_id, origin)
    }
}

/// Decoded query-string parameters (first value wins).
#[derive(Debug, Default)]
pub struct QueryParams(HashMap<String, String>);

impl QueryParams {
    pub fn parse(query: Option<&str>) -> Self {
        let mut map = HashMap::new();
        for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            map.entry(k.into_owned()).or_insert_with(|| v.into_owned());
        }
        QueryParams(map)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// The body, or 413 when over the limit.
pub fn body(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, ApiError> {
    body.map_err(|e| match e {
        BytesRejection::FailedToBufferBody(_) => ApiError::PayloadTooLarge(limit),
        other => ApiError::Internal(other.to_string()),
    })
}

/// Accept JSON bodies sent as `application/json`, as `text/plain` (`navigator.sendBeacon`)
/// or without a content type.
pub fn require_json_or_text(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let content_type = value.to_str().unwrap_or_default().to_ascii_lowercase();
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    match essence {
        "application/json" | "text/plain" | "" => Ok(()),
        other if other.ends_with("+json") => Ok(()),
        other => Err(ApiError::UnsupportedMediaType(other.to_owned())),
    }
}

/// How the client's IP is found: the TCP peer, or behind trusted reverse proxies the
/// right-most address of their header that is not one of them.
#[derive(Debug, Clone, Default)]
pub struct ClientIpRule {
    header: Option<String>,
    proxies: Vec<ipnet::IpNet>,
}

impl ClientIpRule {
    /// From `[edge] client_ip_header` and `trusted_proxies`; an error names the entry that
    /// is not an address or a CIDR block.
    pub fn new(header: Option<&str>, proxies: &[String]) -> Result<Self, String> {
        let proxies = proxies
            .iter()
            .map(|p| {
                p.parse::<ipnet::IpNet>()
                    .or_else(|_| p.parse::<IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| format!("edge.trusted_proxies: {p:?} is not an address or CIDR"))
            })
            .collect::<Result<_, _>>()?;
        Ok(ClientIpRule {
            header: header.map(str::to_ascii_lowercase),
            proxies,
        })
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        self.proxies.iter().any(|net| net.contains(&ip))
    }

    /// The client's IP for a request from `peer` with `headers`.
    pub fn client_ip(&self, headers: &HeaderMap, peer: Option<SocketAddr>) -> Option<IpAddr> {
        let peer = peer.map(|p| p.ip());
        let from_header = match (&self.header, peer) {
            (Some(name), Some(peer)) if self.trusted(peer) => headers
                .get_all(name.as_str())
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(|v| v.trim().parse::<IpAddr>())
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                // Proxies append; past an entry that is not an address nothing is known.
                .map_while(Result::ok)
                .find(|ip| !self.trusted(*ip)),
            _ => None,
        };
        from_header.or(peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_is_the_right_most_address_no_trusted_proxy_wrote() {
        let rule =
            ClientIpRule::new(Some("X-Forwarded-For"), &["10.0.0.0/8".into()]).expect("valid");
        let proxy = Some(SocketAddr::from(([10, 0, 0, 1], 5000)));
        let mut headers = HeaderMap::new();
        // The client wrote a forged address; its proxy appended the real one.
        headers.insert(
            "x-forwarded-for",
            "1.2.3.4, 203.0.113.9, 10.0.0.7".parse().expect("value"),
        );
        assert_eq!(
            rule.client_ip(&headers, proxy)
                .map(|ip| ip.to_string())
                .as_deref(),
            Some("203.0.113.9")
        );
        // Straight from the internet, the header is not believed.
        let direct = Some(SocketAddr::from(([198, 51, 100, 4], 5000)));
        assert_eq!(
            rule.client_ip(&headers, direct)
                .map(|ip| ip.to_string())
                .as_deref(),
            Some("198.51.100.4")
        );
        // No trusted proxies configured: the header is ignored.
        let untrusting = ClientIpRule::new(Some("x-forwarded-for"), &[]).expect("valid");
        assert_eq!(
            untrusting
                .client_ip(&headers, proxy)
                .map(|ip| ip.to_string())
                .as_deref(),
            Some("10.0.0.1")
        );
        headers.insert("x-forwarded-for", "garbage".parse().expect("value"));
        assert_eq!(
            rule.client_ip(&headers, proxy)
                .map(|ip| ip.to_string())
                .as_deref(),
            Some("10.0.0.1")
        );
        assert!(ClientIpRule::new(None, &["not-an-ip".into()])
            .expect_err("refused")
            .contains("not-an-ip"));
    }
}

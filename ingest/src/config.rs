//! `[edge]` configuration. Tenants are `funnelhub-tenants`' (re-exported here).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

pub use funnelhub_tenants::{Secret, TenantConfig};

/// `[edge]`: the HTTP edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdgeConfig {
    /// Address to listen on (the public routes).
    pub listen: SocketAddr,
    /// Address of the operators' port: `/metrics` and `/readyz` with the reasons of what is
    /// down. Keep it off the public network (Prometheus scrapes it); unset: not served.
    pub ops_listen: Option<SocketAddr>,
    /// Header holding the client IP, set by the reverse proxies in `trusted_proxies`
    /// (`x-forwarded-for`, `x-real-ip`...). Unset: the TCP peer address.
    pub client_ip_header: Option<String>,
    /// Addresses of the reverse proxies in front of the edge (CIDR: `10.0.0.0/8`,
    /// `192.168.1.7/32`). The header is read only on a connection from one of them, from
    /// the right: the client is the right-most address that is not a trusted proxy (what a
    /// client writes itself is on the left, never believed). Empty: the header is ignored.
    pub trusted_proxies: Vec<String>,
    /// Largest accepted request body; larger → 413.
    pub max_body_bytes: usize,
    /// How long a request may wait for the broker's acknowledgement before 503.
    pub produce_timeout_ms: u64,
    /// How long a request may take to arrive and be answered, its body included (a body
    /// sent slowly or never finished gets 408 then); a stream's body (setup's SSE) is not
    /// counted once its answer started.
    pub request_timeout_ms: u64,
    /// Requests this edge works on at once (public routes); one more is answered 503 with
    /// `Retry-After` at once, instead of queueing without bound. An answered event stream
    /// (setup's SSE) no longer counts. At least 1.
    pub max_in_flight_requests: usize,
    /// `Retry-After` seconds sent with 503.
    pub retry_after_secs: u32,
    /// Stripe: reject signatures whose timestamp is older than this (Stripe's default).
    pub stripe_tolerance_secs: i64,
    /// `[edge.rate_limits]`: requests per second per client IP and per tenant on the
    /// tracking routes (off unless set).
    pub rate_limits: crate::limits::RateLimitConfig,
    /// `[edge.setup]`: the guided-setup API.
    pub setup: funnelhub_setup::SetupConfig,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            ops_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9104))),
            client_ip_header: None,
            trusted_proxies: Vec::new(),
            max_body_bytes: 256 * 1024,
            produce_timeout_ms: 5_000,
            request_timeout_ms: 30_000,
            max_in_flight_requests: 4096,
            retry_after_secs: 5,
            stripe_tolerance_secs: 300,
            rate_limits: crate::limits::RateLimitConfig::default(),
            setup: funnelhub_setup::SetupConfig::default(),
        }
    }
}

//! `[edge]` configuration. Tenants are `funnelhub-tenants`' (re-exported here).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

pub use funnelhub_tenants::{Secret, TenantConfig};

/// `[edge]`: the HTTP edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdgeConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Header holding the client IP, set by a trusted reverse proxy (`x-forwarded-for`:
    /// first address; `x-real-ip`...). Unset: the TCP peer address. Only set it behind a
    /// proxy that overwrites the header, or clients can forge their IP.
    pub client_ip_header: Option<String>,
    /// Largest accepted request body; larger → 413.
    pub max_body_bytes: usize,
    /// How long a request may wait for the broker's acknowledgement before 503.
    pub produce_timeout_ms: u64,
    /// `Retry-After` seconds sent with 503.
    pub retry_after_secs: u32,
    /// Stripe: reject signatures whose timestamp is older than this (Stripe's default).
    pub stripe_tolerance_secs: i64,
    /// `[edge.setup]`: the guided-setup API.
    pub setup: crate::setup::SetupConfig,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            client_ip_header: None,
            max_body_bytes: 256 * 1024,
            produce_timeout_ms: 5_000,
            retry_after_secs: 5,
            stripe_tolerance_secs: 300,
            setup: crate::setup::SetupConfig::default(),
        }
    }
}

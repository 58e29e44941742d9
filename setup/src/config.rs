//! `[edge.setup]`: the setup API's settings.

use funnelhub_tenants::Secret;

use crate::chat::AssistantConfig;
use serde::{Deserialize, Serialize};

/// `[edge.setup]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SetupConfig {
    /// Keys that may run setup for any tenant (`Authorization: Bearer <key>`); a tenant's
    /// own API keys of scope `setup` or `admin` reach its own sessions.
    pub admin_keys: Vec<Secret>,
    /// Failed actions after which a session is `needs_human`.
    pub max_failed_attempts: u32,
    /// Deadline of each call a tool makes.
    pub tool_timeout_ms: u64,
    /// Meta's Graph API (the token check).
    pub meta_graph_url: String,
    pub meta_api_version: String,
    /// Hotmart's authentication server (`/security/oauth/token`).
    pub hotmart_auth_url: String,
    /// Kiwify's public API (`/v1/oauth/token`, `/v1/account-details`).
    pub kiwify_api_url: String,
    /// Stripe's API (`/v1/account`).
    pub stripe_api_url: String,
    /// `host:port` pairs `probe_landing_url` may open although they resolve to a private
    /// or loopback address (a local demo's landing page, tests). Every other address that
    /// is not public is refused, so the probe is no way into the edge's own network. Empty
    /// in production.
    pub probe_private_hosts: Vec<String>,
    /// `[edge.setup.assistant]`: the troubleshooting chat.
    pub assistant: AssistantConfig,
    /// Where chat screenshots are kept: `s3://bucket/prefix`, `gs://bucket/prefix` or
    /// `file:///path` (credentials from the `AWS_*` / `GOOGLE_*` environment); unset, the
    /// local folder `attachments_dir`.
    pub attachments_url: Option<String>,
    /// The local folder of attachments when `attachments_url` is unset.
    pub attachments_dir: String,
}

impl Default for SetupConfig {
    fn default() -> Self {
        SetupConfig {
            admin_keys: Vec::new(),
            max_failed_attempts: 3,
            tool_timeout_ms: 5_000,
            meta_graph_url: "https://graph.facebook.com".into(),
            meta_api_version: "v25.0".into(),
            hotmart_auth_url: "https://api-sec-vlc.hotmart.com".into(),
            kiwify_api_url: "https://public-api.kiwify.com".into(),
            stripe_api_url: "https://api.stripe.com".into(),
            probe_private_hosts: Vec::new(),
            assistant: AssistantConfig::default(),
            attachments_url: None,
            attachments_dir: ".stack/attachments".into(),
        }
    }
}

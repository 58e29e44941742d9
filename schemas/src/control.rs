//! The control plane's records: tenants as stored on `control.tenants` and the encrypted
//! envelope their secrets travel in ([`Sealed`]). Sealing and opening are
//! `funnelhub-tenants`' job; this module only defines the wire types.

use serde::{Deserialize, Serialize};

/// `io.funnelhub.control.Sealed`: secrets under envelope encryption (base64 fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    /// Id of the key-encryption key that wrapped the data key.
    pub key_id: String,
    /// base64(nonce || AES-256-GCM(key-encryption key, data key)).
    pub wrapped_key: String,
    /// base64 of the ciphertext's nonce.
    pub nonce: String,
    /// base64(AES-256-GCM(data key, plaintext)).
    pub ciphertext: String,
}

/// `io.funnelhub.control.TenantRecord`: one tenant's configuration, key `tenant_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantRecord {
    pub tenant_id: String,
    pub revision: i64,
    pub updated_at: i64,
    pub updated_by: String,
    pub allowed_origins: Vec<String>,
    pub consent_ads_default: bool,
    pub consent_analytics_default: bool,
    pub phone_calling_code: Option<String>,
    pub meta_pixel_id: Option<String>,
    pub meta_test_event_code: Option<String>,
    pub retention_days: Option<i32>,
    /// Meta custom event name abandoned checkouts are sent as; `None`: not sent.
    #[serde(default)]
    pub meta_abandoned_checkout_event: Option<String>,
    pub secrets: Sealed,
}

//! `[[tenants]]`: one business sending to funnelhub, with its secrets.
//!
//! Secrets deserialize from plain strings and never print: `Debug` redacts them and
//! serializing (as `funnelhub config` and `funnelhub tenants list` do) masks all but the
//! last four characters. Only [`crate::record`] writes them out, encrypted.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};

/// A secret string: readable only through `expose_secret()`, masked when printed.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(SecretString);

impl Secret {
    /// The secret itself, for signature checks only.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// `****abcd`: enough to tell two secrets apart, never enough to use one.
    pub fn masked(&self) -> String {
        let s = self.expose();
        let tail: String = s
            .chars()
            .rev()
            .take(4)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        if s.chars().count() <= 8 {
            "****".into()
        } else {
            format!("****{tail}")
        }
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(SecretString::from(s.to_owned()))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.masked())
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for Secret {}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.masked())
    }
}

/// One tenant: a business whose landing pages, gateways and portal send to funnelhub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// Appears in every URL as `?tenant=<id>` and in every event.
    pub id: String,
    /// Origins of the tenant's landing pages, allowed by CORS (`https://lp.example.com`).
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Consent when a source does not say: may events be sent to ad platforms?
    #[serde(default = "yes")]
    pub consent_ads_default: bool,
    /// Consent when a source does not say: may events be kept for analytics?
    #[serde(default = "yes")]
    pub consent_analytics_default: bool,
    /// Calling code added to phone numbers given without one (`55` for Brazil).
    #[serde(default)]
    pub phone_calling_code: Option<String>,
    /// Hotmart: the account's hottok (`X-HOTMART-HOTTOK`).
    #[serde(default)]
    pub hotmart_hottok: Option<Secret>,
    /// Kiwify: the webhook token (key of the `signature` HMAC-SHA1).
    #[serde(default)]
    pub kiwify_token: Option<Secret>,
    /// Stripe: endpoint signing secrets (`whsec_...`); several while rotating.
    #[serde(default)]
    pub stripe_signing_secrets: Vec<Secret>,
    /// Onboarding portal: the shared `X-Webhook-Secret`.
    #[serde(default)]
    pub onboard_secret: Option<Secret>,
    /// Meta pixel (dataset) id the tenant's events are sent to; without one, dispatch
    /// requests are written blocked (`no_meta_pixel`).
    #[serde(default)]
    pub meta_pixel_id: Option<String>,
    /// Conversions API access token of the pixel (Events Manager > Settings); without one
    /// the CAPI sink dead-letters the tenant's requests.
    #[serde(default)]
    pub meta_access_token: Option<Secret>,
    /// Events Manager test code sent with every event (to watch them in Test events).
    #[serde(default)]
    pub meta_test_event_code: Option<String>,
    /// Keys of the read API (`Authorization: Bearer <key>`); a key reads only its
    /// tenant's data. Several while rotating.
    #[serde(default)]
    pub api_keys: Vec<Secret>,
    /// Days the tenant's rows are kept in ClickHouse (default `[clickhouse]
    /// retention_days`, 180).
    #[serde(default)]
    pub retention_days: Option<u32>,
}

fn yes() -> bool {
    true
}

impl TenantConfig {
    /// A tenant with only an id and defaults (tests, examples).
    pub fn new(id: &str) -> Self {
        TenantConfig {
            id: id.into(),
            allowed_origins: Vec::new(),
            consent_ads_default: true,
            consent_analytics_default: true,
            phone_calling_code: None,
            hotmart_hottok: None,
            kiwify_token: None,
            stripe_signing_secrets: Vec::new(),
            onboard_secret: None,
            meta_pixel_id: None,
            meta_access_token: None,
            meta_test_event_code: None,
            api_keys: Vec::new(),
            retention_days: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let mut tenant = TenantConfig::new("acme");
        tenant.stripe_signing_secrets = vec![Secret::from("whsec_abcdefghijklmnop")];
        tenant.onboard_secret = Some(Secret::from("short"));
        let debug = format!("{tenant:?}");
        let json = serde_json::to_string(&tenant).expect("serializes");
        for text in [&debug, &json] {
            assert!(
                !text.contains("whsec_abcdefghijklmnop") && !text.contains("short"),
                "{text}"
            );
            assert!(text.contains("****mnop"), "{text}");
        }
        let parsed: TenantConfig =
            serde_json::from_str(r#"{"id":"a","kiwify_token":"tok-123456789"}"#).expect("parses");
        assert_eq!(parsed.kiwify_token.expect("set").expose(), "tok-123456789");
    }
}

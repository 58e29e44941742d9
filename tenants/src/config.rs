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

    /// Whether it may authenticate anything: at least [`MIN_SECRET_CHARS`] characters. A
    /// shorter one (stored before that was checked) authenticates nothing.
    pub fn is_usable(&self) -> bool {
        long_enough(self.expose())
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

/// Fewest characters a secret may have: an empty secret would let an empty header pass
/// (or be a public HMAC key), a short one is guessed.
pub const MIN_SECRET_CHARS: usize = 8;

/// A secret setting refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: a secret needs at least {MIN_SECRET_CHARS} characters (empty or shorter ones are refused)")]
pub struct WeakSecret {
    /// The setting, as written in the configuration (`hotmart_hottok`).
    pub field: &'static str,
}

/// Refuse `secret` for `field` if it is too short.
pub fn check_secret(field: &'static str, secret: &str) -> Result<(), WeakSecret> {
    if long_enough(secret) {
        Ok(())
    } else {
        Err(WeakSecret { field })
    }
}

fn long_enough(secret: &str) -> bool {
    secret.trim().chars().count() >= MIN_SECRET_CHARS
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
    /// Meta custom event name abandoned checkouts are sent as (`AbandonedCheckout`);
    /// without one they are not sent. Letters, digits and `_`, at most 40.
    #[serde(default)]
    pub meta_abandoned_checkout_event: Option<String>,
    /// API keys of scope `read` (`Authorization: Bearer <key>`): the read API, only this
    /// tenant's data. Several while rotating.
    #[serde(default)]
    pub api_keys: Vec<Secret>,
    /// API keys of scope `setup`: `read`, and guided setup of this tenant, which can
    /// replace its Meta pixel and token, add webhook secrets and CORS origins.
    #[serde(default)]
    pub setup_api_keys: Vec<Secret>,
    /// API keys of scope `admin`: `setup`, replays to Meta and privacy purges.
    #[serde(default)]
    pub admin_api_keys: Vec<Secret>,
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
            meta_abandoned_checkout_event: None,
            api_keys: Vec::new(),
            setup_api_keys: Vec::new(),
            admin_api_keys: Vec::new(),
            retention_days: None,
        }
    }
}

impl TenantConfig {
    /// Refuse a secret that is empty or shorter than [`MIN_SECRET_CHARS`], naming its
    /// setting: every way in (the configuration file, `funnelhub tenants`, guided setup)
    /// checks this before a tenant is used or stored.
    pub fn check_secrets(&self) -> Result<(), WeakSecret> {
        for field in SECRET_SETTINGS {
            self.check_secret_setting(field)?;
        }
        Ok(())
    }

    /// [`TenantConfig::check_secrets`] of one setting (no setting of that name: `Ok`).
    pub fn check_secret_setting(&self, field: &str) -> Result<(), WeakSecret> {
        let Some(field) = SECRET_SETTINGS.iter().copied().find(|f| *f == field) else {
            return Ok(());
        };
        let secrets: Vec<&Secret> = match field {
            "hotmart_hottok" => self.hotmart_hottok.iter().collect(),
            "kiwify_token" => self.kiwify_token.iter().collect(),
            "onboard_secret" => self.onboard_secret.iter().collect(),
            "meta_access_token" => self.meta_access_token.iter().collect(),
            "stripe_signing_secrets" => self.stripe_signing_secrets.iter().collect(),
            "api_keys" => self.api_keys.iter().collect(),
            "setup_api_keys" => self.setup_api_keys.iter().collect(),
            "admin_api_keys" => self.admin_api_keys.iter().collect(),
            _ => Vec::new(),
        };
        for secret in secrets {
            check_secret(field, secret.expose())?;
        }
        Ok(())
    }
}

/// What an API key may do; each scope includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum KeyScope {
    /// The read API.
    Read,
    /// Guided setup of the key's tenant.
    Setup,
    /// Replays to Meta and privacy purges.
    Admin,
}

impl KeyScope {
    /// Its name (`read`, `setup`, `admin`).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyScope::Read => "read",
            KeyScope::Setup => "setup",
            KeyScope::Admin => "admin",
        }
    }
}

impl TenantConfig {
    /// The scope of API key `key` for this tenant (the widest of the lists holding it),
    /// compared in constant time with every usable key; `None` if it is none of them.
    pub fn scope_of(&self, key: &str) -> Option<KeyScope> {
        use subtle::ConstantTimeEq;
        let mut scope = None;
        for (keys, of) in [
            (&self.api_keys, KeyScope::Read),
            (&self.setup_api_keys, KeyScope::Setup),
            (&self.admin_api_keys, KeyScope::Admin),
        ] {
            for candidate in keys.iter().filter(|k| k.is_usable()) {
                if bool::from(candidate.expose().as_bytes().ct_eq(key.as_bytes())) {
                    scope = scope.max(Some(of));
                }
            }
        }
        scope
    }
}

/// The settings that hold secrets.
pub const SECRET_SETTINGS: [&str; 8] = [
    "setup_api_keys",
    "admin_api_keys",
    "hotmart_hottok",
    "kiwify_token",
    "onboard_secret",
    "meta_access_token",
    "stripe_signing_secrets",
    "api_keys",
];

/// Whether `name` can be a Meta custom event name as funnelhub sends one.
pub fn is_custom_event_name(name: &str) -> bool {
    (1..=40).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The settings `funnelhub tenants set` takes, as `key=value`.
pub const SETTABLE: [&str; 16] = [
    "setup_api_keys",
    "admin_api_keys",
    "allowed_origins",
    "consent_ads_default",
    "consent_analytics_default",
    "phone_calling_code",
    "meta_pixel_id",
    "meta_test_event_code",
    "meta_abandoned_checkout_event",
    "retention_days",
    "hotmart_hottok",
    "kiwify_token",
    "stripe_signing_secrets",
    "onboard_secret",
    "meta_access_token",
    "api_keys",
];

impl TenantConfig {
    /// Set one setting from text (`funnelhub tenants set acme key=value`). Lists are
    /// comma-separated; an empty value clears the setting. The error names the key and
    /// never echoes the value (it may be a secret).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let value = value.trim();
        let text = || (!value.is_empty()).then(|| value.to_owned());
        let secret = || (!value.is_empty()).then(|| Secret::from(value));
        let list = || -> Vec<String> {
            value
                .split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let flag = || match value {
            "true" | "yes" | "1" => Ok(true),
            "false" | "no" | "0" => Ok(false),
            _ => Err(format!("{key} is true or false")),
        };
        match key {
            "allowed_origins" => self.allowed_origins = list(),
            "consent_ads_default" => self.consent_ads_default = flag()?,
            "consent_analytics_default" => self.consent_analytics_default = flag()?,
            "phone_calling_code" => self.phone_calling_code = text(),
            "meta_pixel_id" => self.meta_pixel_id = text(),
            "meta_test_event_code" => self.meta_test_event_code = text(),
            "meta_abandoned_checkout_event" => {
                self.meta_abandoned_checkout_event = match text() {
                    None => None,
                    Some(name) if is_custom_event_name(&name) => Some(name),
                    Some(_) => {
                        return Err(format!(
                            "{key} is a Meta custom event name: letters, digits and _, at most 40"
                        ))
                    }
                }
            }
            "retention_days" => {
                self.retention_days = match value {
                    "" => None,
                    days => Some(
                        days.parse()
                            .ok()
                            .filter(|d| *d > 0)
                            .ok_or("retention_days is a number of days, at least 1")?,
                    ),
                }
            }
            "hotmart_hottok" => self.hotmart_hottok = secret(),
            "kiwify_token" => self.kiwify_token = secret(),
            "stripe_signing_secrets" => {
                self.stripe_signing_secrets =
                    list().iter().map(|s| Secret::from(s.as_str())).collect()
            }
            "onboard_secret" => self.onboard_secret = secret(),
            "meta_access_token" => self.meta_access_token = secret(),
            "api_keys" => self.api_keys = list().iter().map(|s| Secret::from(s.as_str())).collect(),
            "setup_api_keys" => {
                self.setup_api_keys = list().iter().map(|s| Secret::from(s.as_str())).collect()
            }
            "admin_api_keys" => {
                self.admin_api_keys = list().iter().map(|s| Secret::from(s.as_str())).collect()
            }
            other => {
                return Err(format!(
                    "unknown setting {other:?}; one of {}",
                    SETTABLE.join(", ")
                ))
            }
        }
        self.check_secret_setting(key).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_or_short_secrets_are_refused_naming_the_setting() {
        let mut tenant = TenantConfig::new("acme");
        for key in SECRET_SETTINGS {
            let refused = tenant.set(key, "x7q2k").expect_err("a 5-character secret");
            assert!(refused.starts_with(key), "{refused}");
            assert!(!refused.contains("x7q2k"), "never echoed: {refused}");
            tenant = TenantConfig::new("acme");
            tenant.set(key, "long-enough-secret").expect("accepted");
        }
        let empty: TenantConfig =
            serde_json::from_str(r#"{"id":"a","onboard_secret":""}"#).expect("parses");
        assert_eq!(
            empty.check_secrets(),
            Err(WeakSecret {
                field: "onboard_secret"
            })
        );
    }

    #[test]
    fn a_key_has_the_widest_scope_of_the_lists_holding_it() {
        let mut tenant = TenantConfig::new("acme");
        tenant
            .set("api_keys", "reader-key-1, shared-key-1")
            .expect("read");
        tenant.set("setup_api_keys", "setup-key-1").expect("setup");
        tenant
            .set("admin_api_keys", "admin-key-1, shared-key-1")
            .expect("admin");
        assert_eq!(tenant.scope_of("reader-key-1"), Some(KeyScope::Read));
        assert_eq!(tenant.scope_of("setup-key-1"), Some(KeyScope::Setup));
        assert_eq!(tenant.scope_of("shared-key-1"), Some(KeyScope::Admin));
        assert_eq!(tenant.scope_of("admin-key-"), None);
        assert_eq!(tenant.scope_of(""), None);
        assert!(KeyScope::Admin > KeyScope::Setup && KeyScope::Setup > KeyScope::Read);
    }

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
        let mut set = TenantConfig::new("acme");
        set.set("stripe_signing_secrets", "whsec_aaaa, whsec_bbbb")
            .expect("list");
        set.set("retention_days", "30").expect("days");
        assert_eq!(set.stripe_signing_secrets.len(), 2);
        assert_eq!(set.retention_days, Some(30));
        let err = set
            .set("consent_ads_default", "maybe-secret")
            .expect_err("flag");
        assert!(!err.contains("maybe-secret"), "{err}");
        assert!(set.set("nope", "x").is_err());
        set.set("meta_pixel_id", "").expect("clears");
        assert_eq!(set.meta_pixel_id, None);
        let parsed: TenantConfig =
            serde_json::from_str(r#"{"id":"a","kiwify_token":"tok-123456789"}"#).expect("parses");
        assert_eq!(parsed.kiwify_token.expect("set").expose(), "tok-123456789");
    }
}

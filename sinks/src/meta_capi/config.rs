//! `[capi]`: how the Meta Conversions API sink consumes, batches, retries and where it
//! sends; and each tenant's access to its pixel.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use funnelhub_tenants::TenantConfig;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// Meta's accepted window for website events' `event_time`.
pub const META_MAX_EVENT_AGE_SECS: u64 = 7 * 24 * 3600;

/// `[capi]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CapiConfig {
    /// Graph API base URL: Meta's, or an emulator's (`funnelhub capi-emulator`).
    pub graph_url: String,
    /// Graph API version in the path.
    pub api_version: String,
    /// Consumer group of the sink (members share `capi.requests`' partitions).
    pub group: String,
    /// Most events in one request (Meta accepts 1,000).
    pub batch_size: usize,
    /// How long a partition waits for more requests to fill a batch.
    pub linger_ms: u64,
    /// HTTP timeout of one request (Meta suggests 1.5 s for small requests).
    pub timeout_ms: u64,
    /// Attempts of a request failing with a retryable error before its events go to the
    /// DLQ (1 = no retry).
    pub max_attempts: u32,
    /// First backoff; doubles per attempt up to `backoff_max_ms`, with full jitter.
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// Requests per second to Meta per tenant.
    pub requests_per_second: u32,
    /// Events older than this are not sent (recorded `expired`): Meta's 7 days minus an
    /// hour, so retries still land inside the window.
    pub max_event_age_secs: u64,
    /// Address of `/metrics` and `/healthz` when run as `funnelhub sink capi`.
    pub listen: SocketAddr,
}

impl Default for CapiConfig {
    fn default() -> Self {
        CapiConfig {
            graph_url: "https://graph.facebook.com".into(),
            api_version: "v25.0".into(),
            group: "funnelhub-capi".into(),
            batch_size: 1000,
            linger_ms: 200,
            timeout_ms: 5_000,
            max_attempts: 10,
            backoff_base_ms: 200,
            backoff_max_ms: 30_000,
            requests_per_second: 50,
            max_event_age_secs: META_MAX_EVENT_AGE_SECS - 3600,
            listen: SocketAddr::from(([127, 0, 0, 1], 9102)),
        }
    }
}

impl CapiConfig {
    /// Refuse settings Meta or the sink cannot work with.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=1000).contains(&self.batch_size) {
            return Err(format!(
                "capi.batch_size must be 1..=1000 (Meta's limit), not {}",
                self.batch_size
            ));
        }
        if self.max_attempts == 0 {
            return Err("capi.max_attempts must be at least 1".into());
        }
        if self.requests_per_second == 0 {
            return Err("capi.requests_per_second must be at least 1".into());
        }
        if self.max_event_age_secs > META_MAX_EVENT_AGE_SECS {
            return Err(format!(
                "capi.max_event_age_secs must be at most {META_MAX_EVENT_AGE_SECS} (Meta refuses older events)"
            ));
        }
        if self.backoff_base_ms == 0 || self.backoff_max_ms < self.backoff_base_ms {
            return Err("capi.backoff_base_ms must be > 0 and <= capi.backoff_max_ms".into());
        }
        url_base(&self.graph_url)?;
        Ok(())
    }

    pub(crate) fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

fn url_base(url: &str) -> Result<(), String> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(format!(
            "capi.graph_url must be an http(s) URL, not {url:?}"
        ))
    }
}

/// A tenant's access to its Meta pixel (from `[[tenants]]`).
#[derive(Debug, Clone)]
pub struct MetaAccess {
    pub pixel_id: String,
    /// Never logged; `Debug` redacts it.
    pub access_token: SecretString,
    /// Events Manager > Test events code: sent with every request when set.
    pub test_event_code: Option<String>,
}

impl MetaAccess {
    /// A tenant's pixel and token, when it has both.
    pub fn of(tenant: &TenantConfig) -> Option<MetaAccess> {
        Some(MetaAccess {
            pixel_id: tenant.meta_pixel_id.clone()?,
            access_token: tenant.meta_access_token.as_ref()?.expose().into(),
            test_event_code: tenant.meta_test_event_code.clone(),
        })
    }
}

/// Each pixel with its token, as an emulator of the Graph API is told them.
pub fn pixel_tokens(access: &BTreeMap<String, MetaAccess>) -> BTreeMap<String, String> {
    access
        .values()
        .map(|a| {
            (
                a.pixel_id.clone(),
                a.access_token.expose_secret().to_owned(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_limits_are_refused() {
        assert_eq!(CapiConfig::default().validate(), Ok(()));
        let too_big = CapiConfig {
            batch_size: 1001,
            ..CapiConfig::default()
        };
        assert!(too_big
            .validate()
            .expect_err("refused")
            .contains("batch_size"));
        let too_old = CapiConfig {
            max_event_age_secs: META_MAX_EVENT_AGE_SECS + 1,
            ..CapiConfig::default()
        };
        assert!(too_old.validate().is_err());
    }

    #[test]
    fn the_token_never_prints() {
        let access = MetaAccess {
            pixel_id: "1".into(),
            access_token: SecretString::from("EAAB-very-secret"),
            test_event_code: None,
        };
        assert!(!format!("{access:?}").contains("very-secret"));
    }
}

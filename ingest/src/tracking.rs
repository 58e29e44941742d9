//! `POST /api/v1/track/{click,pageview,initiate_checkout}?tenant=<id>`: landing-page hits.
//!
//! The body is JSON, sent as `application/json` or as `text/plain` by
//! `navigator.sendBeacon`. Fields (all optional but `session_id`):
//!
//! | field | meaning |
//! |---|---|
//! | `session_id` | the visit's session id (required) |
//! | `event_id` | the browser pixel's `eventID`, so Meta deduplicates pixel and server events |
//! | `occurred_at` | event time, ms since the epoch (default: now) |
//! | `page_url`, `referrer` | where the hit happened; `utm_*` and `fbclid` are read from `page_url` when not given |
//! | `utm_source`, `utm_medium`, `utm_campaign`, `utm_content`, `utm_term` | campaign |
//! | `fbclid`, `fbc`, `fbp` | Meta click ids; `fbc` is built from `fbclid` when absent |
//! | `gclid`, `gbraid`, `wbraid`, `ttclid` | Google Ads and TikTok click ids, kept raw for other destinations; read from `page_url` when not given |
//! | `email`, `phone`, `first_name`, `last_name`, `city`, `state`, `zip`, `country`, `external_id` | personal data: hashed here, never stored raw |
//! | `consent_ads`, `consent_analytics` | consent (default: the tenant's) |
//! | `value`, `currency`, `content_ids` | initiate_checkout: cart |
//!
//! The client IP comes from the socket or the configured proxy header; the user agent from
//! `User-Agent`.

use serde::Deserialize;

use funnelhub_schemas::common::{ClickIds, Consent, Envelope, EventType, Source, Utm};
use funnelhub_schemas::events::TrackingHit;
use funnelhub_schemas::identity::RawIdentity;
use funnelhub_schemas::ids::deterministic_id;
use funnelhub_schemas::SCHEMA_VERSION;

use crate::config::TenantConfig;
use crate::validate::{bounded, currency, phone_rules, text, url_field};
use funnelhub_runtime::api::ApiError;

/// The hit types, by URL segment.
pub fn event_type(segment: &str) -> Option<EventType> {
    match segment {
        "click" => Some(EventType::Click),
        "pageview" => Some(EventType::Pageview),
        "initiate_checkout" => Some(EventType::InitiateCheckout),
        _ => None,
    }
}

/// A landing page's JSON body. No `Debug`: it holds raw personal data.
#[derive(Deserialize, Default)]
pub(crate) struct TrackPayload {
    session_id: Option<String>,
    event_id: Option<String>,
    occurred_at: Option<i64>,
    page_url: Option<String>,
    referrer: Option<String>,
    utm_source: Option<String>,
    utm_medium: Option<String>,
    utm_campaign: Option<String>,
    utm_content: Option<String>,
    utm_term: Option<String>,
    fbclid: Option<String>,
    fbc: Option<String>,
    fbp: Option<String>,
    gclid: Option<String>,
    gbraid: Option<String>,
    wbraid: Option<String>,
    ttclid: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    city: Option<String>,
    state: Option<String>,
    zip: Option<String>,
    country: Option<String>,
    external_id: Option<String>,
    consent_ads: Option<bool>,
    consent_analytics: Option<bool>,
    value: Option<f64>,
    currency: Option<String>,
    #[serde(default)]
    content_ids: Vec<String>,
}

/// What the request itself says about the visitor.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub received_at: i64,
}

/// Earliest accepted event time (2015-01-01) and tolerated clock skew into the future.
const EARLIEST_MS: i64 = 1_420_070_400_000;
const FUTURE_SKEW_MS: i64 = 60 * 60 * 1000;

/// Validate and normalize a hit; hash personal data.
pub(crate) fn build_hit(
    event_type: EventType,
    tenant: &TenantConfig,
    payload: TrackPayload,
    ctx: &RequestContext,
) -> Result<TrackingHit, ApiError> {
    let session_id = text("session_id", payload.session_id, 128)?
        .ok_or_else(|| ApiError::missing("session_id"))?;
    let client_event_id = text("event_id", payload.event_id, 128)?;
    let occurred_at = match payload.occurred_at {
        None => ctx.received_at,
        Some(t) if (EARLIEST_MS..=ctx.received_at + FUTURE_SKEW_MS).contains(&t) => t,
        Some(_) => {
            return Err(ApiError::field(
                "occurred_at",
                "must be ms since the Unix epoch, not in the future",
            ))
        }
    };
    let page = url_field("page_url", payload.page_url)?;
    let referrer = url_field("referrer", payload.referrer)?;
    let from_page = |name: &str| {
        page.as_ref()
            .and_then(|u| {
                u.query_pairs()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.into_owned())
            })
            .filter(|v| !v.is_empty())
    };
    let utm_field = |field: &str, given: Option<String>| -> Result<Option<String>, ApiError> {
        Ok(text(field, given, 256)?.or_else(|| from_page(field)))
    };
    let utm = Utm {
        source: utm_field("utm_source", payload.utm_source)?,
        medium: utm_field("utm_medium", payload.utm_medium)?,
        campaign: utm_field("utm_campaign", payload.utm_campaign)?,
        content: utm_field("utm_content", payload.utm_content)?,
        term: utm_field("utm_term", payload.utm_term)?,
    };
    let fbclid = text("fbclid", payload.fbclid, 512)?.or_else(|| from_page("fbclid"));
    let fbc = match text("fbc", payload.fbc, 600)? {
        Some(fbc) => Some(meta_cookie("fbc", fbc)?),
        None => fbclid
            .as_deref()
            .map(|id| build_fbc(id, page.as_ref().and_then(|u| u.host_str()), occurred_at)),
    };
    // Other platforms' click ids: given, or read from the page URL.
    let other_click_id = |field: &str, given: Option<String>| -> Result<Option<String>, ApiError> {
        Ok(text(field, given, 512)?.or_else(|| from_page(field)))
    };
    let gclid = other_click_id("gclid", payload.gclid)?;
    let gbraid = other_click_id("gbraid", payload.gbraid)?;
    let wbraid = other_click_id("wbraid", payload.wbraid)?;
    let ttclid = other_click_id("ttclid", payload.ttclid)?;
    let fbp = text("fbp", payload.fbp, 600)?
        .map(|v| meta_cookie("fbp", v))
        .transpose()?;
    if let Some(value) = payload.value {
        if !value.is_finite() || value < 0.0 {
            return Err(ApiError::field("value", "must be a non-negative number"));
        }
    }
    let content_ids = payload
        .content_ids
        .into_iter()
        .map(|id| bounded("content_ids", id, 128))
        .collect::<Result<Vec<_>, _>>()?;

    let identity = RawIdentity {
        email: payload.email,
        phone: payload.phone,
        first_name: payload.first_name,
        last_name: payload.last_name,
        city: payload.city,
        state: payload.state,
        zip: payload.zip,
        country: payload.country,
        external_id: payload.external_id,
        ..RawIdentity::default()
    }
    .hash(&phone_rules(tenant));

    let page_url = page.map(String::from);
    let event_id = client_event_id.clone().unwrap_or_else(|| {
        deterministic_id(
            "track",
            &[
                &tenant.id,
                event_type.as_str(),
                &session_id,
                &occurred_at.to_string(),
                page_url.as_deref().unwrap_or_default(),
            ],
        )
    });
    Ok(TrackingHit {
        envelope: Envelope {
            event_id,
            tenant_id: tenant.id.clone(),
            event_type,
            occurred_at,
            received_at: ctx.received_at,
            source: Source::LandingPage,
            schema_version: SCHEMA_VERSION,
            consent: Consent {
                ads: payload.consent_ads.unwrap_or(tenant.consent_ads_default),
                analytics: payload
                    .consent_analytics
                    .unwrap_or(tenant.consent_analytics_default),
            },
            identity,
        },
        session_id,
        client_event_id,
        page_url,
        referrer: referrer.map(String::from),
        utm,
        click_ids: ClickIds {
            fbclid,
            fbc,
            fbp,
            gclid,
            gbraid,
            wbraid,
            ttclid,
        },
        client_ip: ctx.client_ip.clone(),
        user_agent: ctx.user_agent.clone(),
        value: payload.value,
        currency: currency("currency", payload.currency)?,
        content_ids,
    })
}

/// `fbc = fb.{subdomainIndex}.{creationTimeMs}.{fbclid}`, the index being the number of
/// dots in the page's registrable domain (`example.com` → 1, `example.com.br` → 2). The
/// fbclid is kept byte for byte (it is case-sensitive).
pub fn build_fbc(fbclid: &str, page_host: Option<&str>, click_time_ms: i64) -> String {
    let index = page_host
        .and_then(psl::domain_str)
        .map_or(1, |domain| domain.matches('.').count());
    format!("fb.{index}.{click_time_ms}.{fbclid}")
}

/// `fbc`/`fbp` as Meta's pixel writes them: `fb.<index>.<ms>.<value>[.<appendix>]`.
fn meta_cookie(field: &str, value: String) -> Result<String, ApiError> {
    let parts: Vec<&str> = value.splitn(4, '.').collect();
    let valid = parts.len() == 4
        && parts[0] == "fb"
        && parts[1].parse::<u8>().is_ok()
        && parts[2].len() >= 10
        && parts[2].bytes().all(|b| b.is_ascii_digit())
        && !parts[3].is_empty();
    if valid {
        Ok(value)
    } else {
        Err(ApiError::field(
            field,
            "expected fb.<subdomainIndex>.<creationTimeMs>.<value>",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(json: &str) -> TrackPayload {
        serde_json::from_str(json).expect("payload")
    }

    fn ctx() -> RequestContext {
        RequestContext {
            client_ip: Some("203.0.113.7".into()),
            user_agent: Some("Mozilla/5.0".into()),
            received_at: 1_790_000_000_000,
        }
    }

    #[test]
    fn click_from_a_facebook_ad() {
        let tenant = TenantConfig::new("acme");
        let hit = build_hit(
            EventType::Click,
            &tenant,
            payload(r#"{"session_id":"s1","page_url":"https://www.loja.com.br/oferta?utm_source=fb&utm_campaign=bf&fbclid=IwAR2_xYz","email":" Ana@Example.com "}"#),
            &ctx(),
        )
        .expect("valid");
        assert_eq!(hit.click_ids.fbclid.as_deref(), Some("IwAR2_xYz"));
        assert_eq!(
            hit.click_ids.fbc.as_deref(),
            Some("fb.2.1790000000000.IwAR2_xYz")
        );
        assert_eq!(hit.utm.source.as_deref(), Some("fb"));
        assert_eq!(hit.utm.campaign.as_deref(), Some("bf"));
        assert_eq!(
            hit.envelope.identity.email_hash.as_deref(),
            Some(funnelhub_schemas::identity::sha256_hex("ana@example.com").as_str())
        );
        assert!(hit.envelope.consent.ads);
        // Same hit again (a retried beacon): same id.
        let again = build_hit(
            EventType::Click,
            &tenant,
            payload(r#"{"session_id":"s1","page_url":"https://www.loja.com.br/oferta?utm_source=fb&utm_campaign=bf&fbclid=IwAR2_xYz"}"#),
            &ctx(),
        )
        .expect("valid");
        assert_eq!(hit.envelope.event_id, again.envelope.event_id);
    }

    #[test]
    fn client_event_id_and_consent_are_kept() {
        let hit = build_hit(
            EventType::InitiateCheckout,
            &TenantConfig::new("acme"),
            payload(r#"{"session_id":"s1","event_id":"px-1","consent_ads":false,"value":97.5,"currency":"brl","content_ids":["p1"]}"#),
            &ctx(),
        )
        .expect("valid");
        assert_eq!(hit.envelope.event_id, "px-1");
        assert!(!hit.envelope.consent.ads);
        assert_eq!(hit.currency.as_deref(), Some("BRL"));
    }

    #[test]
    fn invalid_fields_are_named() {
        let tenant = TenantConfig::new("acme");
        let field_of =
            |json: &str| match build_hit(EventType::Pageview, &tenant, payload(json), &ctx()) {
                Err(ApiError::InvalidField { field, .. }) => field,
                other => panic!(
                    "expected an invalid field, got {:?}",
                    other.map(|h| h.envelope.event_id)
                ),
            };
        assert_eq!(field_of(r#"{}"#), "session_id");
        assert_eq!(field_of(r#"{"session_id":"  "}"#), "session_id");
        assert_eq!(
            field_of(r#"{"session_id":"s","page_url":"javascript:alert(1)"}"#),
            "page_url"
        );
        assert_eq!(field_of(r#"{"session_id":"s","fbc":"IwAR"}"#), "fbc");
        assert_eq!(field_of(r#"{"session_id":"s","value":-1}"#), "value");
        assert_eq!(
            field_of(r#"{"session_id":"s","currency":"real"}"#),
            "currency"
        );
        assert_eq!(
            field_of(r#"{"session_id":"s","occurred_at":99999999999999}"#),
            "occurred_at"
        );
    }
}

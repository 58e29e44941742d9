//! Onboarding-portal webhooks (`POST /api/v1/webhooks/onboard?tenant=<id>`, seeds 000-002).
//!
//! Authenticity: `X-Webhook-Secret` compared in constant time with the tenant's secret.
//! Payload: `{event, domain, session_id, data, timestamp}` with `event` one of
//! onboarding.started, domain.validated, dns.applied, account.created, infra.synced,
//! onboarding.completed, onboarding.failed. `timestamp` is RFC 3339 or epoch seconds/ms
//! (default: now). The event id follows the seeds' dedupe rule: one event per
//! (event, session_id, domain), so portal retries collapse.
//!
//! `data` becomes string `attributes`, from an allow-list of keys and kinds ([`ATTRIBUTES`]):
//! personal data never passes through. A key naming an email or a phone (`email`,
//! `admin_email`, `telefone`, `celular`...) with a text value is hashed into the identity;
//! every other key, a value of the wrong kind and any nested object or list is dropped, and
//! the answer names what was dropped.

use std::collections::BTreeMap;

use axum::http::HeaderMap;
use funnelhub_schemas::common::{Consent, Envelope, EventType, Source};
use funnelhub_schemas::events::OnboardingEvent;
use funnelhub_schemas::identity::RawIdentity;
use funnelhub_schemas::ids::deterministic_id;
use funnelhub_schemas::SCHEMA_VERSION;
use serde::Deserialize;
use serde_json::Value;

use super::secret_matches;
use crate::config::TenantConfig;
use crate::validate::{phone_rules, text};
use funnelhub_runtime::api::parse_json;
use funnelhub_runtime::api::ApiError;

#[derive(Deserialize)]
struct Payload {
    event: Option<String>,
    domain: Option<String>,
    session_id: Option<String>,
    #[serde(default)]
    data: Option<serde_json::Map<String, Value>>,
    timestamp: Option<Value>,
}

/// What an onboarding attribute holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttributeKind {
    /// A short label: at most 64 letters, digits, spaces and `-_.:`, at most 6 digits (no
    /// phone or document number fits).
    Label,
    /// A whole number, 0 to 1,000,000,000.
    Count,
    /// `true` or `false`.
    Flag,
}

/// The attributes an onboarding event may carry (the portal's milestones: plan and sizes
/// at account creation, DNS records applied, the infrastructure's result, a failure's
/// code).
pub const ATTRIBUTES: [(&str, AttributeKind); 12] = [
    ("plan", AttributeKind::Label),
    ("mailboxes", AttributeKind::Count),
    ("users", AttributeKind::Count),
    ("quota_gb", AttributeKind::Count),
    ("records", AttributeKind::Count),
    ("dns_provider", AttributeKind::Label),
    ("provider", AttributeKind::Label),
    ("region", AttributeKind::Label),
    ("step", AttributeKind::Label),
    ("success", AttributeKind::Flag),
    ("infra_status", AttributeKind::Label),
    ("error_code", AttributeKind::Label),
];

/// Parts of a key that name an email address or a phone number (hashed into the identity).
const EMAIL_KEYS: [&str; 2] = ["email", "e-mail"];
const PHONE_KEYS: [&str; 5] = ["phone", "telefone", "celular", "mobile", "whatsapp"];

/// The attribute's text if `value` is of `kind`.
fn attribute(kind: AttributeKind, value: &Value) -> Option<String> {
    match (kind, value) {
        (AttributeKind::Label, Value::String(s)) => {
            let s = s.trim();
            let allowed = |c: char| c.is_alphanumeric() || " -_.:".contains(c);
            let digits = s.chars().filter(char::is_ascii_digit).count();
            (!s.is_empty() && s.chars().count() <= 64 && s.chars().all(allowed) && digits <= 6)
                .then(|| s.to_owned())
        }
        (AttributeKind::Count, Value::Number(n)) => n
            .as_u64()
            .filter(|n| *n <= 1_000_000_000)
            .map(|n| n.to_string()),
        (AttributeKind::Flag, Value::Bool(b)) => Some(b.to_string()),
        _ => None,
    }
}

/// An accepted onboarding webhook: its event, and the `data` keys it did not keep.
#[derive(Debug)]
pub struct Accepted {
    pub event: OnboardingEvent,
    /// Keys of `data` dropped (not on the allow-list, or not of their kind), sorted.
    pub dropped: Vec<String>,
}

/// Verify the secret, then build the event.
pub fn handle(
    tenant: &TenantConfig,
    headers: &HeaderMap,
    body: &[u8],
    received_at: i64,
) -> Result<Accepted, ApiError> {
    // A tenant without a secret (or no such tenant) fails like a wrong secret: the answer
    // does not tell which tenants exist.
    let expected = tenant.onboard_secret.as_ref();
    let presented = headers
        .get("x-webhook-secret")
        .and_then(|v| v.to_str().ok())
        .ok_or(ApiError::Unauthorized("missing X-Webhook-Secret"))?;
    if !expected.is_some_and(|expected| secret_matches(presented, expected)) {
        return Err(ApiError::Unauthorized("X-Webhook-Secret does not match"));
    }
    let payload: Payload = parse_json(body)?;
    build(tenant, payload, received_at)
}

fn timestamp_ms(value: Option<Value>, received_at: i64) -> Result<i64, ApiError> {
    let invalid = || ApiError::field("timestamp", "RFC 3339 string or epoch seconds/milliseconds");
    match value {
        None | Some(Value::Null) => Ok(received_at),
        Some(Value::String(s)) => chrono::DateTime::parse_from_rfc3339(s.trim())
            .map(|t| t.timestamp_millis())
            .map_err(|_| invalid()),
        // Below 10^11 it can only be seconds (10^11 ms is 1973).
        Some(Value::Number(n)) => match n.as_i64() {
            Some(s) if (1..100_000_000_000).contains(&s) => Ok(s * 1000),
            Some(ms) if ms >= 100_000_000_000 => Ok(ms),
            _ => Err(invalid()),
        },
        Some(_) => Err(invalid()),
    }
}

fn build(tenant: &TenantConfig, payload: Payload, received_at: i64) -> Result<Accepted, ApiError> {
    let event = text("event", payload.event, 64)?.ok_or_else(|| ApiError::missing("event"))?;
    let event_type = EventType::from_wire(&event)
        .filter(|t| t.is_onboarding())
        .ok_or_else(|| ApiError::field("event", format!("unknown event {event:?}")))?;
    let session_id = text("session_id", payload.session_id, 128)?
        .ok_or_else(|| ApiError::missing("session_id"))?;
    let domain = text("domain", payload.domain, 253)?
        .map(|d| d.to_ascii_lowercase())
        .ok_or_else(|| ApiError::missing("domain"))?;
    let occurred_at = timestamp_ms(payload.timestamp, received_at)?;

    let mut raw = RawIdentity::default();
    let mut attributes = BTreeMap::new();
    let mut dropped = Vec::new();
    for (key, value) in payload.data.unwrap_or_default() {
        let lower = key.to_lowercase();
        let names = |parts: &[&str]| parts.iter().any(|part| lower.contains(part));
        match (&value, ATTRIBUTES.iter().find(|(name, _)| *name == lower)) {
            (Value::Null, _) => {}
            (Value::String(text), _) if names(&EMAIL_KEYS) => {
                raw.email.get_or_insert(text.clone());
            }
            (Value::String(text), _) if names(&PHONE_KEYS) => {
                raw.phone.get_or_insert(text.clone());
            }
            (value, Some((name, kind))) => match attribute(*kind, value) {
                Some(text) => {
                    attributes.insert((*name).to_owned(), text);
                }
                None => dropped.push(key),
            },
            (_, None) => dropped.push(key),
        }
    }
    dropped.sort();
    if !dropped.is_empty() {
        metrics::counter!("funnelhub_onboard_attributes_dropped_total")
            .increment(dropped.len() as u64);
    }
    let event = OnboardingEvent {
        envelope: Envelope {
            event_id: deterministic_id("onboarding", &[&tenant.id, &event, &session_id, &domain]),
            tenant_id: tenant.id.clone(),
            event_type,
            occurred_at,
            received_at,
            source: Source::OnboardingPortal,
            schema_version: SCHEMA_VERSION,
            consent: Consent {
                ads: tenant.consent_ads_default,
                analytics: tenant.consent_analytics_default,
            },
            identity: raw.hash(&phone_rules(tenant)),
        },
        session_id,
        domain,
        attributes,
    };
    Ok(Accepted { event, dropped })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn tenant() -> TenantConfig {
        let mut t = TenantConfig::new("acme");
        t.onboard_secret = Some(Secret::from("ligbox-ops-secret"));
        t
    }

    fn headers(secret: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-webhook-secret", secret.parse().expect("value"));
        h
    }

    #[test]
    fn account_created_with_personal_data_removed() {
        let body = br#"{"event":"account.created","domain":"Cliente.com.br","session_id":"onb-1",
            "data":{"admin_email":"admin@cliente.com.br","plan":"pro","mailboxes":5,"admin_name":"Ana","cpf":"123"},
            "timestamp":"2026-11-20T10:00:00Z"}"#;
        let accepted = handle(&tenant(), &headers("ligbox-ops-secret"), body, 0).expect("valid");
        assert_eq!(accepted.dropped, ["admin_name", "cpf"]);
        let event = accepted.event;
        assert_eq!(event.envelope.event_type, EventType::AccountCreated);
        assert_eq!(event.domain, "cliente.com.br");
        assert_eq!(event.envelope.occurred_at, 1_795_168_800_000);
        assert_eq!(
            event.attributes.get("plan").map(String::as_str),
            Some("pro")
        );
        assert_eq!(
            event.attributes.get("mailboxes").map(String::as_str),
            Some("5")
        );
        assert!(event.envelope.identity.email_hash.is_some());
        let all = format!("{:?}", event.attributes);
        assert!(
            !all.contains("admin@") && !all.contains("Ana") && !all.contains("123"),
            "{all}"
        );
        // A retry of the same milestone has the same id.
        let again = handle(&tenant(), &headers("ligbox-ops-secret"), body, 99).expect("valid");
        assert_eq!(event.envelope.event_id, again.event.envelope.event_id);
    }

    #[test]
    fn only_listed_attributes_of_their_kind_pass_and_the_rest_is_named() {
        let body = br#"{"event":"account.created","domain":"a.com","session_id":"s",
            "data":{"telefone":"+5511987654321","senha":"hunter2","nome":"Ana Souza",
                    "contato":{"email":"ana@a.com"},"e-mail":"ana@a.com","plan":"pro",
                    "step":"+5511987654321","mailboxes":"5","success":true,
                    "error_code":"dns_timeout"}}"#;
        let accepted = handle(&tenant(), &headers("ligbox-ops-secret"), body, 0).expect("valid");
        let event = &accepted.event;
        assert_eq!(
            accepted.dropped,
            ["contato", "mailboxes", "nome", "senha", "step"],
            "not listed, nested, or not of their kind"
        );
        assert_eq!(
            event.attributes,
            BTreeMap::from([
                ("error_code".to_string(), "dns_timeout".to_string()),
                ("plan".to_string(), "pro".to_string()),
                ("success".to_string(), "true".to_string()),
            ])
        );
        let identity = &event.envelope.identity;
        assert!(identity.email_hash.is_some() && identity.phone_hash.is_some());
        let stored = format!("{event:?}");
        for raw in ["5511987654321", "hunter2", "Ana", "ana@a.com"] {
            assert!(!stored.contains(raw), "{raw} in {stored}");
        }
    }

    #[test]
    fn refusals() {
        let ok = br#"{"event":"dns.applied","domain":"a.com","session_id":"s"}"#;
        assert!(matches!(
            handle(&tenant(), &headers("nope"), ok, 0),
            Err(ApiError::Unauthorized(_))
        ));
        assert!(matches!(
            handle(&tenant(), &HeaderMap::new(), ok, 0),
            Err(ApiError::Unauthorized(_))
        ));
        let field = |body: &[u8]| match handle(&tenant(), &headers("ligbox-ops-secret"), body, 0) {
            Err(ApiError::InvalidField { field, .. }) => field,
            other => panic!("{:?}", other.map(|a| a.event.envelope.event_id)),
        };
        assert_eq!(
            field(br#"{"event":"purchase","domain":"a.com","session_id":"s"}"#),
            "event"
        );
        assert_eq!(field(br#"{"domain":"a.com","session_id":"s"}"#), "event");
        assert_eq!(
            field(br#"{"event":"dns.applied","session_id":"s"}"#),
            "domain"
        );
        assert_eq!(
            field(br#"{"event":"dns.applied","domain":"a.com"}"#),
            "session_id"
        );
        assert_eq!(field(br#"{"event":"dns.applied","domain":"a.com","session_id":"s","timestamp":"yesterday"}"#), "timestamp");
        assert_eq!(
            field(br#"{"event":"dns.applied","domain":"a.com","session_id":"s","data":[1]}"#),
            "data"
        );
    }

    #[test]
    fn timestamps() {
        assert_eq!(
            timestamp_ms(Some(serde_json::json!(1_790_000_000)), 0).expect("s"),
            1_790_000_000_000
        );
        assert_eq!(
            timestamp_ms(Some(serde_json::json!(1_790_000_000_123i64)), 0).expect("ms"),
            1_790_000_000_123
        );
        assert_eq!(timestamp_ms(None, 7).expect("default"), 7);
    }
}

//! Signed deliveries kept as sent: a gateway event funnelhub does not turn into an event
//! (a type it does not use, or a body it cannot map) is written to `raw.webhooks` and
//! from there to ClickHouse, so nothing a gateway sent is lost and a later version can
//! read it again.
//!
//! Guarantees: the kept payload holds no personal value. Every value under a key that
//! names one (emails, phones, names, documents, addresses, IPs, secrets and tokens) and
//! every string shaped like an email or a phone number, wherever it is, is replaced by
//! [`REDACTED`]; numbers, booleans, ids, statuses and amounts stay. The id is a function
//! of tenant, gateway and the gateway's delivery id (else a SHA-256 of the body), so the
//! same delivery twice is one row.
//!
//! Assumes the body was authenticated and parsed as JSON before it gets here.

use funnelhub_schemas::common::Gateway;
use funnelhub_schemas::events::{gateway_name, RawWebhook, RawWebhookReason};
use funnelhub_schemas::ids::deterministic_id;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// What replaces a personal value.
pub const REDACTED: &str = "[redacted]";
/// Deepest nesting kept; deeper values are redacted whole (a signed body is the
/// gateway's, but its depth still bounds the work).
const MAX_DEPTH: usize = 32;

/// Key words that name a personal value (matched against the words of a key:
/// `checkout_phone`, `buyerEmail`, `document_type`).
const PERSONAL_WORDS: &[&str] = &[
    "email",
    "mail",
    "phone",
    "mobile",
    "cpf",
    "cnpj",
    "document",
    "address",
    "street",
    "neighborhood",
    "complement",
    "zipcode",
    "zip",
    "postal",
    "cep",
    "ip",
    "birth",
    "birthdate",
    "hottok",
    "token",
    "secret",
    "password",
    "card",
    "city",
    "line1",
    "line2",
    "signature",
];

/// Keys that are a person's name (a `product_name` is not).
const NAME_KEYS: &[&str] = &[
    "name",
    "full_name",
    "fullname",
    "first_name",
    "firstname",
    "last_name",
    "lastname",
    "social_name",
    "customer_name",
    "buyer_name",
];

/// Why a verified delivery becomes no event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmapped {
    pub described: Described,
    pub reason: RawWebhookReason,
    /// `Unmappable`: the field that was missing or invalid.
    pub field: Option<String>,
}

/// Build the kept record of a verified delivery.
pub fn keep(
    tenant_id: &str,
    gateway: Gateway,
    body: &[u8],
    event: &Value,
    unmapped: Unmapped,
    received_at: i64,
) -> RawWebhook {
    let Unmapped {
        described,
        reason,
        field,
    } = unmapped;
    let delivery = described
        .gateway_event_id
        .clone()
        .unwrap_or_else(|| hex::encode(Sha256::digest(body)));
    RawWebhook {
        webhook_id: deterministic_id("webhook", &[tenant_id, gateway_name(gateway), &delivery]),
        tenant_id: tenant_id.to_owned(),
        gateway,
        event_name: described.name.unwrap_or_else(|| "unknown".into()),
        gateway_event_id: described.gateway_event_id,
        order_id: described.order_id,
        reason,
        field,
        received_at,
        payload: redact(event).to_string(),
    }
}

/// What a gateway's body says about itself, whatever its type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Described {
    /// The gateway's event name.
    pub name: Option<String>,
    /// The gateway's delivery id.
    pub gateway_event_id: Option<String>,
    /// The order or object the delivery is about.
    pub order_id: Option<String>,
}

/// `value` with every personal value replaced by [`REDACTED`].
pub fn redact(value: &Value) -> Value {
    redact_at(value, 0)
}

fn redact_at(value: &Value, depth: usize) -> Value {
    if depth > MAX_DEPTH {
        return Value::String(REDACTED.into());
    }
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, v)| {
                    let v = if is_personal_key(key) && !v.is_null() {
                        Value::String(REDACTED.into())
                    } else {
                        redact_at(v, depth + 1)
                    };
                    (key.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| redact_at(v, depth + 1)).collect())
        }
        Value::String(s) if looks_personal(s) => Value::String(REDACTED.into()),
        other => other.clone(),
    }
}

/// Whether a key names a personal value.
fn is_personal_key(key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    if NAME_KEYS.contains(&lower.as_str()) {
        return true;
    }
    words(key).any(|w| PERSONAL_WORDS.contains(&w.as_str()))
}

/// The lower-case words of a key: split at `_`, `-`, `.`, spaces and camelCase humps.
fn words(key: &str) -> impl Iterator<Item = String> + '_ {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut previous_lower = false;
    for c in key.chars() {
        if !c.is_ascii_alphanumeric() {
            if !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
            previous_lower = false;
            continue;
        }
        if c.is_ascii_uppercase() && previous_lower && !word.is_empty() {
            out.push(std::mem::take(&mut word));
        }
        previous_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        word.push(c.to_ascii_lowercase());
    }
    if !word.is_empty() {
        out.push(word);
    }
    out.into_iter()
}

/// An email, or a phone or document number (8+ digits and only phone punctuation).
fn looks_personal(s: &str) -> bool {
    let s = s.trim();
    if s.contains('@') && s.contains('.') && !s.contains(' ') {
        return true;
    }
    let digits = s.chars().filter(char::is_ascii_digit).count();
    digits >= 8
        && s.chars()
            .all(|c| c.is_ascii_digit() || " +-().".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn personal_values_are_redacted_wherever_they_are() {
        let body = json!({
            "id": "evt-1", "event": "CLUB_FIRST_ACCESS", "creation_date": 1763247745996_i64,
            "data": {
                "product": {"id": 0, "name": "Curso", "product_name": "Curso"},
                "user": {"name": "Maria da Silva", "email": "maria@example.com"},
                "buyer": {"checkout_phone": "11987654321", "document": "69526128664",
                          "address": {"city": "Uberlândia", "number": "10"}},
                "purchase": {"transaction": "HP1234", "buyer_ip": "203.0.113.5",
                             "recurrence_number": 2, "price": {"value": 97.0}},
                "buyerEmail": "x@example.com",
                "notes": ["call +55 (11) 98765-4321", "+55 (11) 98765-4321", "ok"],
                "hottok": "s3cret"
            }
        });
        let kept = redact(&body);
        let text = kept.to_string();
        for personal in [
            "Maria",
            "maria@example.com",
            "11987654321",
            "69526128664",
            "Uberlândia",
            "203.0.113.5",
            "x@example.com",
            "s3cret",
        ] {
            assert!(!text.contains(personal), "{personal} kept in {text}");
        }
        assert_eq!(kept["data"]["notes"][1], json!(REDACTED));
        for kept_value in ["evt-1", "CLUB_FIRST_ACCESS", "HP1234", "Curso"] {
            assert!(text.contains(kept_value), "{kept_value} lost in {text}");
        }
        assert_eq!(kept["data"]["purchase"]["recurrence_number"], json!(2));
        assert_eq!(kept["data"]["purchase"]["price"]["value"], json!(97.0));
        assert_eq!(kept["creation_date"], json!(1763247745996_i64));
    }

    #[test]
    fn the_same_delivery_keeps_the_same_id() {
        let body = br#"{"status":"abandoned","email":"a@example.com"}"#;
        let event: Value = serde_json::from_slice(body).expect("json");
        let kept = |body: &[u8]| {
            keep(
                "acme",
                Gateway::Kiwify,
                body,
                &event,
                Unmapped {
                    described: Described::default(),
                    reason: RawWebhookReason::UnusedEvent,
                    field: None,
                },
                1,
            )
        };
        assert_eq!(kept(body).webhook_id, kept(body).webhook_id);
        assert_ne!(kept(body).webhook_id, kept(b"{}").webhook_id);
        assert_eq!(kept(body).event_name, "unknown");
        assert!(!kept(body).payload.contains("a@example.com"));
    }
}

//! Stripe webhooks (`POST /api/v1/webhooks/stripe?tenant=<id>`).
//!
//! Authenticity, as Stripe's libraries check it: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=...]`;
//! expected = hex(HMAC-SHA256(endpoint secret, "{t}.{raw body}")), compared in constant
//! time with every `v1` and every configured secret (rotation); a timestamp older than the
//! tolerance (default 300 s) is refused.
//!
//! Events used (others are acknowledged and ignored):
//! - `checkout.session.completed` (paid or no payment required) and
//!   `checkout.session.async_payment_succeeded` → purchase
//! - `payment_intent.succeeded` → purchase (same order id as the checkout session's
//!   payment intent, so both deliveries deduplicate to one purchase)
//! - `charge.refunded` → refund (partial refunds of different totals are distinct events)
//! - `charge.dispute.created` → chargeback
//! - `checkout.session.expired` → cancel
//!
//! Our landing page passes its session id as `client_reference_id`, and may pass
//! `session_id`, `fbc`, `fbp`, `fbclid`, `utm_*`, `client_ip`, `user_agent`, `external_id`
//! and `consent_ads` in the object's `metadata`.

use axum::http::HeaderMap;
use funnelhub_schemas::common::{ClickIds, EventType};
use funnelhub_schemas::identity::RawIdentity;
use hmac::Hmac;
use serde_json::Value;
use sha2::Sha256;

use super::{number_at, required_at, str_at, string_at, utm_from, OrderDraft, Outcome};
use crate::config::{Secret, TenantConfig};
use crate::validate::split_name;
use funnelhub_runtime::api::parse_json;
use funnelhub_runtime::api::ApiError;

/// Longest `Stripe-Signature` header read: Stripe sends a timestamp and one signature per
/// active secret (two while a secret rolls), well under this.
pub const MAX_SIGNATURE_HEADER_BYTES: usize = 1024;
/// Most `v1` signatures a header may carry.
pub const MAX_SIGNATURES: usize = 8;

/// Check `Stripe-Signature` against the tenant's signing secrets. The expected signature
/// is computed once per secret (one HMAC over the body each), then compared in constant
/// time with each `v1` of the header: what a request costs does not grow with what it
/// sends.
pub fn verify(
    header: Option<&str>,
    body: &[u8],
    secrets: &[Secret],
    now_secs: i64,
    tolerance_secs: i64,
) -> Result<(), ApiError> {
    use hmac::digest::KeyInit;
    use hmac::Mac;
    use subtle::ConstantTimeEq;

    let header = header.ok_or(ApiError::Unauthorized("missing Stripe-Signature header"))?;
    if header.len() > MAX_SIGNATURE_HEADER_BYTES {
        return Err(ApiError::Unauthorized("Stripe-Signature header too long"));
    }
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in header.split(',') {
        match item.trim().split_once('=') {
            Some(("t", t)) => timestamp = Some(t),
            Some(("v1", sig)) => signatures.push(sig),
            _ => {}
        }
    }
    if signatures.len() > MAX_SIGNATURES {
        return Err(ApiError::Unauthorized(
            "Stripe-Signature carries too many signatures",
        ));
    }
    let timestamp =
        timestamp.ok_or(ApiError::Unauthorized("Stripe-Signature without timestamp"))?;
    let t: i64 = timestamp
        .parse()
        .map_err(|_| ApiError::Unauthorized("Stripe-Signature timestamp is not a number"))?;
    // Signatures that can be one: 32 bytes in hex.
    let presented: Vec<[u8; 32]> = signatures
        .iter()
        .filter_map(|sig| {
            let mut bytes = [0u8; 32];
            hex::decode_to_slice(sig.trim(), &mut bytes).ok()?;
            Some(bytes)
        })
        .collect();
    let mut matches = false;
    if !presented.is_empty() {
        for secret in secrets.iter().filter(|s| s.is_usable()) {
            let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.expose().as_bytes())
            else {
                continue;
            };
            mac.update(timestamp.as_bytes());
            mac.update(b".");
            mac.update(body);
            let expected = mac.finalize().into_bytes();
            for signature in &presented {
                matches |= bool::from(signature.ct_eq(expected.as_slice()));
            }
        }
    }
    if !matches {
        return Err(ApiError::Unauthorized("Stripe-Signature does not match"));
    }
    if now_secs - t > tolerance_secs {
        return Err(ApiError::Unauthorized(
            "Stripe-Signature timestamp outside the tolerance",
        ));
    }
    Ok(())
}

/// The `Stripe-Signature` header Stripe would send for `body` at `timestamp` (unix
/// seconds), computed as Stripe's libraries compute it. For simulators and tests.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    use hmac::digest::KeyInit;
    use hmac::Mac;
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes any key length");
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// Verify, then map the event.
pub fn handle(
    tenant: &TenantConfig,
    headers: &HeaderMap,
    body: &[u8],
    now_ms: i64,
    tolerance_secs: i64,
) -> Result<Outcome, ApiError> {
    // A tenant without signing secrets (or no such tenant) fails like a wrong signature:
    // the answer does not tell which tenants or gateways exist.
    let header = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    verify(
        header,
        body,
        &tenant.stripe_signing_secrets,
        now_ms / 1000,
        tolerance_secs,
    )?;
    let event: Value = parse_json(body)?;
    normalize(&event)
}

/// Map a verified Stripe event onto an order draft.
pub fn normalize(event: &Value) -> Result<Outcome, ApiError> {
    let event_type = required_at(event, &["type"])?;
    let object = event
        .get("data")
        .and_then(|d| d.get("object"))
        .ok_or_else(|| ApiError::missing("data.object"))?;
    let kind = match event_type.as_str() {
        "checkout.session.completed" => match str_at(object, &["payment_status"]) {
            Some("paid" | "no_payment_required") => EventType::Purchase,
            _ => return Ok(Outcome::Ignored(format!("{event_type}:unpaid"))),
        },
        "checkout.session.async_payment_succeeded" | "payment_intent.succeeded" => {
            EventType::Purchase
        }
        "charge.refunded" => EventType::Refund,
        "charge.dispute.created" => EventType::Chargeback,
        "checkout.session.expired" => EventType::Cancel,
        _ => return Ok(Outcome::Ignored(event_type)),
    };
    let object_id =
        required_at(object, &["id"]).map_err(|_| ApiError::missing("data.object.id"))?;
    // One order id for every event of a payment: its payment intent when there is one.
    let order_id = match event_type.as_str() {
        "payment_intent.succeeded" => object_id.clone(),
        _ => string_at(object, &["payment_intent"]).unwrap_or_else(|| object_id.clone()),
    };
    let amount = match kind {
        EventType::Refund => number_at(object, &["amount_refunded"]),
        _ => number_at(object, &["amount_total"])
            .or_else(|| number_at(object, &["amount_received"]))
            .or_else(|| number_at(object, &["amount"])),
    };
    let details = object
        .get("customer_details")
        .or_else(|| object.get("billing_details"));
    let detail = |key: &str| details.and_then(|d| string_at(d, &[key]));
    let address = |key: &str| details.and_then(|d| string_at(d, &["address", key]));
    let (first_name, last_name) = split_name(detail("name").as_deref());
    let metadata = |key: &str| string_at(object, &["metadata", key]);
    let created = number_at(event, &["created"]).map(|s| s as i64 * 1000);

    Ok(Outcome::Order(Box::new(OrderDraft {
        kind: Some(kind),
        id_discriminator: (kind == EventType::Refund)
            .then(|| amount.unwrap_or_default().to_string()),
        gateway_event_id: string_at(event, &["id"]),
        gateway_status: event_type,
        occurred_at: created,
        amount_minor: amount.map(|a| a.round() as i64),
        currency: string_at(object, &["currency"]).map(|c| c.to_ascii_uppercase()),
        product_id: metadata("product_id"),
        product_name: metadata("product_name"),
        payment_method: object
            .get("payment_method_types")
            .and_then(|types| types.get(0))
            .and_then(Value::as_str)
            .map(str::to_owned),
        original_order_id: matches!(kind, EventType::Refund | EventType::Chargeback)
            .then(|| order_id.clone()),
        session_id: string_at(object, &["client_reference_id"]).or_else(|| metadata("session_id")),
        utm: utm_from(object, &["metadata"]),
        click_ids: ClickIds {
            fbclid: metadata("fbclid"),
            fbc: metadata("fbc"),
            fbp: metadata("fbp"),
            gclid: metadata("gclid"),
            ..ClickIds::default()
        },
        client_ip: metadata("client_ip"),
        user_agent: metadata("user_agent"),
        identity: RawIdentity {
            email: detail("email")
                .or_else(|| string_at(object, &["customer_email"]))
                .or_else(|| string_at(object, &["receipt_email"])),
            phone: detail("phone"),
            first_name,
            last_name,
            city: address("city"),
            state: address("state"),
            zip: address("postal_code"),
            country: address("country"),
            external_id: metadata("external_id"),
            ..RawIdentity::default()
        },
        consent_ads: metadata("consent_ads").map(|v| v != "false"),
        order_id,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, t: i64, body: &str) -> String {
        super::sign(secret, t, body.as_bytes())
    }

    #[test]
    fn signatures() {
        let secrets = [Secret::from("whsec_test_secret")];
        let body = r#"{"id":"evt_1"}"#;
        let now = 1_790_000_000;
        let header = sign("whsec_test_secret", now - 10, body);
        assert!(verify(Some(&header), body.as_bytes(), &secrets, now, 300).is_ok());
        // Tampered body, wrong secret, stale timestamp, missing header.
        assert!(verify(Some(&header), br#"{"id":"evt_2"}"#, &secrets, now, 300).is_err());
        let other = sign("whsec_other", now, body);
        assert!(verify(Some(&other), body.as_bytes(), &secrets, now, 300).is_err());
        let stale = sign("whsec_test_secret", now - 301, body);
        assert!(verify(Some(&stale), body.as_bytes(), &secrets, now, 300).is_err());
        assert!(verify(None, body.as_bytes(), &secrets, now, 300).is_err());
        // Rotation: a second v1 and a second configured secret both work.
        let rotated = format!("{},v1=deadbeef", sign("whsec_new", now, body));
        let both = [Secret::from("whsec_old"), Secret::from("whsec_new")];
        assert!(verify(Some(&rotated), body.as_bytes(), &both, now, 300).is_ok());
    }

    #[test]
    fn a_header_of_many_signatures_is_refused_before_any_is_checked() {
        let secrets = [Secret::from("whsec_test_secret")];
        let body = vec![b'x'; 250_000];
        let now = 1_790_000_000;
        let good = super::sign("whsec_test_secret", now, &body);
        // Many empty entries: each used to cost one HMAC over the whole body.
        let flood = format!("t={now}{}", ",v1=".repeat(10_000));
        let refused = verify(Some(&flood), &body, &secrets, now, 300);
        assert!(
            matches!(refused, Err(ApiError::Unauthorized(check)) if check.contains("too long")),
            "{refused:?}"
        );
        let nine = format!("{good}{}", ",v1=00".repeat(MAX_SIGNATURES));
        let refused = verify(Some(&nine), &body, &secrets, now, 300);
        assert!(
            matches!(refused, Err(ApiError::Unauthorized(check)) if check.contains("too many")),
            "{refused:?}"
        );
        // Up to the limit, a good one among others still matches.
        let eight = format!("{good}{}", ",v1=00".repeat(MAX_SIGNATURES - 1));
        assert!(verify(Some(&eight), &body, &secrets, now, 300).is_ok());
    }

    #[test]
    fn checkout_and_payment_intent_are_one_purchase() {
        let checkout: Value = serde_json::from_str(
            r#"{"id":"evt_a","type":"checkout.session.completed","created":1790000000,
                "data":{"object":{"id":"cs_1","payment_intent":"pi_1","payment_status":"paid",
                "amount_total":19700,"currency":"brl","client_reference_id":"sess-9",
                "customer_details":{"email":"a@b.co","name":"Ana Souza"},
                "metadata":{"fbc":"fb.1.1790000000000.abc","utm_campaign":"bf"}}}}"#,
        )
        .expect("json");
        let intent: Value = serde_json::from_str(
            r#"{"id":"evt_b","type":"payment_intent.succeeded","created":1790000001,
                "data":{"object":{"id":"pi_1","amount_received":19700,"currency":"brl"}}}"#,
        )
        .expect("json");
        let tenant = TenantConfig::new("acme");
        let finish = |v: &Value| match normalize(v).expect("valid") {
            Outcome::Order(d) => d.finish(&tenant, funnelhub_schemas::common::Gateway::Stripe, 0),
            Outcome::Ignored(t) => panic!("ignored {t}"),
        };
        let a = finish(&checkout);
        let b = finish(&intent);
        assert_eq!(a.envelope.event_id, b.envelope.event_id);
        assert_eq!(a.order_id, "pi_1");
        assert_eq!(a.amount_minor, Some(19_700));
        assert_eq!(a.currency.as_deref(), Some("BRL"));
        assert_eq!(a.session_id.as_deref(), Some("sess-9"));
        assert_eq!(a.utm.campaign.as_deref(), Some("bf"));
        assert!(
            a.envelope.identity.email_hash.is_some()
                && a.envelope.identity.last_name_hash.is_some()
        );
        assert_eq!(a.envelope.occurred_at, 1_790_000_000_000);
    }

    #[test]
    fn refunds_disputes_and_ignored_types() {
        let refund = |amount: i64| -> Value {
            serde_json::from_str(&format!(
                r#"{{"id":"evt_r","type":"charge.refunded","created":1,"data":{{"object":{{"id":"ch_1","payment_intent":"pi_1","amount":19700,"amount_refunded":{amount},"currency":"brl"}}}}}}"#
            ))
            .expect("json")
        };
        let tenant = TenantConfig::new("acme");
        let id = |v: &Value| match normalize(v).expect("valid") {
            Outcome::Order(d) => d.finish(&tenant, funnelhub_schemas::common::Gateway::Stripe, 0),
            Outcome::Ignored(t) => panic!("ignored {t}"),
        };
        let partial = id(&refund(5000));
        let full = id(&refund(19700));
        assert_eq!(partial.envelope.event_type, EventType::Refund);
        assert_eq!(partial.original_order_id.as_deref(), Some("pi_1"));
        assert_ne!(partial.envelope.event_id, full.envelope.event_id);
        let other: Value =
            serde_json::from_str(r#"{"type":"customer.created","data":{"object":{"id":"cus_1"}}}"#)
                .expect("json");
        assert!(matches!(normalize(&other), Ok(Outcome::Ignored(t)) if t == "customer.created"));
        let no_object: Value = serde_json::from_str(r#"{"type":"charge.refunded"}"#).expect("json");
        assert!(
            matches!(normalize(&no_object), Err(ApiError::InvalidField { field, .. }) if field == "data.object")
        );
    }
}

//! Stripe webhooks (`POST /api/v1/webhooks/stripe?tenant=<id>`).
//!
//! Authenticity, as Stripe's libraries check it: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=...]`;
//! expected = hex(HMAC-SHA256(endpoint secret, "{t}.{raw body}")), compared in constant
//! time with every `v1` and every configured secret (rotation); a timestamp older than the
//! tolerance (default 300 s) is refused.
//!
//! Events mapped (others are kept raw; docs/edge.md has the table):
//! - `checkout.session.completed` paid or with no payment required → purchase; unpaid (a
//!   boleto, Pix or other delayed method) → payment_pending, then
//!   `checkout.session.async_payment_succeeded` → purchase or
//!   `checkout.session.async_payment_failed` → payment_failed;
//! - `payment_intent.succeeded` → purchase, `payment_intent.payment_failed` →
//!   payment_failed (the order id is the payment intent, as for its checkout session, so
//!   every delivery about one payment is one event per kind: one purchase);
//! - `checkout.session.expired` → checkout_abandoned;
//! - `invoice.paid` of a subscription's first invoice → purchase, of a later cycle →
//!   subscription_renewed (one per invoice); `customer.subscription.deleted` →
//!   subscription_canceled; `customer.subscription.updated` that changed the price →
//!   plan_changed. A subscription's purchase is one event whichever of its checkout
//!   session and first invoice arrives: both use the subscription id as the order id,
//!   and a payment intent that belongs to an invoice is left to the invoice (kept raw);
//! - `charge.refunded` → refund (partial refunds of different totals are distinct events;
//!   the amount is the total refunded so far) and `charge.dispute.created` → chargeback.
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

use super::raw::Described;
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

/// Every event type Stripe sends that funnelhub maps or is commonly subscribed to
/// (metrics label them; others count as `other`).
pub const EVENTS: &[&str] = &[
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
    "checkout.session.expired",
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.created",
    "payment_intent.processing",
    "charge.succeeded",
    "charge.refunded",
    "charge.dispute.created",
    "invoice.paid",
    "invoice.payment_failed",
    "customer.created",
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
];

/// Verify the signature; the parsed event.
pub fn authenticate(
    tenant: &TenantConfig,
    headers: &HeaderMap,
    body: &[u8],
    now_ms: i64,
    tolerance_secs: i64,
) -> Result<Value, ApiError> {
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
    parse_json(body)
}

/// The type, event id and object of any Stripe event.
pub fn describe(event: &Value) -> Described {
    Described {
        name: string_at(event, &["type"]),
        gateway_event_id: string_at(event, &["id"]),
        order_id: string_at(event, &["data", "object", "id"]),
    }
}

/// What a Stripe event type is, before its object is read.
fn kind_of(event_type: &str, object: &Value) -> Option<EventType> {
    Some(match event_type {
        "checkout.session.completed" => match str_at(object, &["payment_status"]) {
            Some("paid" | "no_payment_required") => EventType::Purchase,
            _ => EventType::PaymentPending,
        },
        "checkout.session.async_payment_succeeded" | "payment_intent.succeeded" => {
            EventType::Purchase
        }
        "checkout.session.async_payment_failed" | "payment_intent.payment_failed" => {
            EventType::PaymentFailed
        }
        "checkout.session.expired" => EventType::CheckoutAbandoned,
        "charge.refunded" => EventType::Refund,
        "charge.dispute.created" => EventType::Chargeback,
        "invoice.paid" => match str_at(object, &["billing_reason"]) {
            Some("subscription_create") => EventType::Purchase,
            Some("subscription_cycle") => EventType::SubscriptionRenewed,
            _ => return None,
        },
        "customer.subscription.deleted" => EventType::SubscriptionCanceled,
        "customer.subscription.updated" => EventType::PlanChanged,
        _ => return None,
    })
}

/// The subscription an object belongs to (`subscription`, or the newer API's
/// `parent.subscription_details.subscription`).
fn subscription_of(object: &Value) -> Option<String> {
    string_at(object, &["subscription"])
        .or_else(|| string_at(object, &["parent", "subscription_details", "subscription"]))
}

/// The first price (else plan) of a subscription's items.
fn price_of(subscription: &Value) -> Option<String> {
    subscription
        .get("items")
        .and_then(|items| items.get("data"))
        .and_then(|data| data.get(0))
        .and_then(|item| {
            string_at(item, &["price", "id"]).or_else(|| string_at(item, &["plan", "id"]))
        })
        .or_else(|| string_at(subscription, &["plan", "id"]))
}

/// Map a verified Stripe event onto an order draft.
pub fn normalize(event: &Value) -> Result<Outcome, ApiError> {
    let event_type = required_at(event, &["type"])?;
    let object = event
        .get("data")
        .and_then(|d| d.get("object"))
        .ok_or_else(|| ApiError::missing("data.object"))?;
    let Some(kind) = kind_of(&event_type, object) else {
        return Ok(Outcome::Unused(describe(event)));
    };
    let object_id =
        required_at(object, &["id"]).map_err(|_| ApiError::missing("data.object.id"))?;
    let is_subscription_object = event_type.starts_with("customer.subscription.");
    let subscription_id = if is_subscription_object {
        Some(object_id.clone())
    } else {
        subscription_of(object)
    };
    // A payment intent of an invoice is the invoice's: its purchase or renewal comes with
    // `invoice.paid`, under the subscription's or the invoice's id.
    if event_type.starts_with("payment_intent.")
        && object.get("invoice").is_some_and(|i| !i.is_null())
    {
        return Ok(Outcome::Unused(describe(event)));
    }
    // A plan change is an update whose previous attributes held other items or plan.
    let previous = event.get("data").and_then(|d| d.get("previous_attributes"));
    if kind == EventType::PlanChanged
        && !previous.is_some_and(|p| p.get("items").is_some() || p.get("plan").is_some())
    {
        return Ok(Outcome::Unused(describe(event)));
    }
    // One order id for every event of a payment: the subscription for a subscription's
    // first charge and its lifecycle, the invoice for a renewal, else the payment intent.
    let order_id = match (kind, event_type.as_str()) {
        (EventType::SubscriptionRenewed, _) => object_id.clone(),
        (_, "payment_intent.succeeded" | "payment_intent.payment_failed") => object_id.clone(),
        _ => subscription_id
            .clone()
            .filter(|_| is_subscription_object || kind == EventType::Purchase)
            .or_else(|| string_at(object, &["payment_intent"]))
            .unwrap_or_else(|| object_id.clone()),
    };
    let amount = match kind {
        EventType::Refund => number_at(object, &["amount_refunded"]),
        _ => number_at(object, &["amount_total"])
            .or_else(|| number_at(object, &["amount_paid"]))
            .or_else(|| number_at(object, &["amount_received"]))
            .or_else(|| number_at(object, &["amount"])),
    };
    let details = object
        .get("customer_details")
        .or_else(|| object.get("billing_details"));
    let detail = |key: &str| details.and_then(|d| string_at(d, &[key]));
    let address = |key: &str| details.and_then(|d| string_at(d, &["address", key]));
    let (first_name, last_name) = split_name(
        detail("name")
            .or_else(|| string_at(object, &["customer_name"]))
            .as_deref(),
    );
    let metadata = |key: &str| {
        string_at(object, &["metadata", key])
            .or_else(|| string_at(object, &["subscription_details", "metadata", key]))
    };
    let created = number_at(event, &["created"]).map(|s| s as i64 * 1000);
    let plan = match kind {
        EventType::PlanChanged | EventType::SubscriptionCanceled => price_of(object),
        _ => object
            .get("lines")
            .and_then(|lines| lines.get("data"))
            .and_then(|data| data.get(0))
            .and_then(|line| {
                string_at(line, &["price", "id"])
                    .or_else(|| string_at(line, &["pricing", "price_details", "price"]))
            }),
    };

    Ok(Outcome::Order(Box::new(OrderDraft {
        kind: Some(kind),
        id_discriminator: match kind {
            EventType::Refund => Some(amount.unwrap_or_default().to_string()),
            // A subscription changes plan many times: one event per change.
            EventType::PlanChanged => Some(format!(
                "{}:{}",
                plan.clone().unwrap_or_default(),
                created.unwrap_or_default()
            )),
            _ => None,
        },
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
            phone: detail("phone").or_else(|| string_at(object, &["customer_phone"])),
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
        subscription_id,
        plan,
        order_id,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhooks::Delivery;

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
            Outcome::Unused(t) => panic!("unused {t:?}"),
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
            Outcome::Unused(t) => panic!("unused {t:?}"),
        };
        let partial = id(&refund(5000));
        let full = id(&refund(19700));
        assert_eq!(partial.envelope.event_type, EventType::Refund);
        assert_eq!(partial.original_order_id.as_deref(), Some("pi_1"));
        assert_ne!(partial.envelope.event_id, full.envelope.event_id);
        let other: Value =
            serde_json::from_str(r#"{"type":"customer.created","data":{"object":{"id":"cus_1"}}}"#)
                .expect("json");
        assert!(
            matches!(normalize(&other), Ok(Outcome::Unused(t)) if t.name.as_deref() == Some("customer.created"))
        );
        let no_object: Value = serde_json::from_str(r#"{"type":"charge.refunded"}"#).expect("json");
        assert!(
            matches!(normalize(&no_object), Err(ApiError::InvalidField { field, .. }) if field == "data.object")
        );
    }

    /// Sign `body` as Stripe does, authenticate it, deliver it.
    fn delivered(body: &str) -> crate::webhooks::Delivery {
        let mut tenant = TenantConfig::new("acme");
        tenant.stripe_signing_secrets = vec![Secret::from("whsec_test_secret")];
        let now_ms = 1_790_000_100_000;
        let mut headers = HeaderMap::new();
        let header = super::sign("whsec_test_secret", now_ms / 1000, body.as_bytes());
        headers.insert("stripe-signature", header.parse().expect("header"));
        let event = authenticate(&tenant, &headers, body.as_bytes(), now_ms, 300).expect("signed");
        crate::webhooks::deliver(
            funnelhub_schemas::common::Gateway::Stripe,
            &tenant,
            body.as_bytes(),
            &event,
            now_ms,
        )
    }

    fn order(body: &str) -> funnelhub_schemas::events::OrderEvent {
        match delivered(body) {
            crate::webhooks::Delivery::Event(order) => *order,
            crate::webhooks::Delivery::Kept(raw) => panic!("kept raw: {raw:?}"),
        }
    }

    fn session(event_type: &str, payment_status: &str, extra: &str) -> String {
        format!(
            r#"{{"id":"evt_{event_type}","object":"event","type":"{event_type}","created":1790000000,"livemode":false,
              "data":{{"object":{{"id":"cs_1","object":"checkout.session","mode":"payment","payment_intent":"pi_1",
              "payment_status":"{payment_status}","amount_total":19700,"currency":"brl","client_reference_id":"sess-9",
              "payment_method_types":["boleto"],"customer_details":{{"email":"a@b.co","name":"Ana Souza"}},
              "metadata":{{}}{extra}}}}}}}"#
        )
    }

    #[test]
    fn a_delayed_payment_is_pending_then_one_purchase() {
        let pending = order(&session("checkout.session.completed", "unpaid", ""));
        assert_eq!(pending.envelope.event_type, EventType::PaymentPending);
        assert_eq!(pending.order_id, "pi_1");
        let paid = order(&session(
            "checkout.session.async_payment_succeeded",
            "paid",
            "",
        ));
        assert_eq!(paid.envelope.event_type, EventType::Purchase);
        let intent = order(
            r#"{"id":"evt_pi","type":"payment_intent.succeeded","created":1790000050,
                "data":{"object":{"id":"pi_1","amount_received":19700,"currency":"brl"}}}"#,
        );
        assert_eq!(
            paid.envelope.event_id, intent.envelope.event_id,
            "one purchase"
        );
        assert_ne!(paid.envelope.event_id, pending.envelope.event_id);
        let failed = order(&session(
            "checkout.session.async_payment_failed",
            "unpaid",
            "",
        ));
        assert_eq!(failed.envelope.event_type, EventType::PaymentFailed);
        assert_eq!(failed.order_id, "pi_1");
    }

    #[test]
    fn an_expired_checkout_session_is_abandoned() {
        let expired = session("checkout.session.expired", "unpaid", "")
            .replace(r#""payment_intent":"pi_1","#, r#""payment_intent":null,"#);
        let abandoned = order(&expired);
        assert_eq!(abandoned.envelope.event_type, EventType::CheckoutAbandoned);
        assert_eq!(abandoned.order_id, "cs_1");
        assert_eq!(abandoned.session_id.as_deref(), Some("sess-9"));
        assert!(abandoned.envelope.identity.email_hash.is_some());
    }

    #[test]
    fn subscriptions_first_charge_renewals_cancellation_and_plan_change() {
        let checkout = session("checkout.session.completed", "paid", "").replace(
            r#""mode":"payment","payment_intent":"pi_1","#,
            r#""mode":"subscription","payment_intent":null,"subscription":"sub_1","#,
        );
        let first = order(&checkout);
        assert_eq!(first.envelope.event_type, EventType::Purchase);
        assert_eq!(first.order_id, "sub_1");
        let invoice = |reason: &str, id: &str| {
            format!(
                r#"{{"id":"evt_{id}","type":"invoice.paid","created":1790000000,
                  "data":{{"object":{{"id":"{id}","object":"invoice","billing_reason":"{reason}",
                  "subscription":"sub_1","amount_paid":4990,"currency":"brl","customer_email":"a@b.co",
                  "lines":{{"data":[{{"price":{{"id":"price_monthly"}}}}]}}}}}}}}"#
            )
        };
        let first_invoice = order(&invoice("subscription_create", "in_1"));
        assert_eq!(
            first_invoice.envelope.event_id, first.envelope.event_id,
            "the checkout session and the first invoice are one purchase"
        );
        let renewal = order(&invoice("subscription_cycle", "in_2"));
        assert_eq!(renewal.envelope.event_type, EventType::SubscriptionRenewed);
        assert_eq!(renewal.order_id, "in_2");
        assert_eq!(renewal.subscription_id.as_deref(), Some("sub_1"));
        assert_eq!(renewal.amount_minor, Some(4990));
        assert_eq!(renewal.plan.as_deref(), Some("price_monthly"));
        assert_ne!(
            renewal.envelope.event_id,
            order(&invoice("subscription_cycle", "in_3"))
                .envelope
                .event_id
        );
        // The invoice's payment intent is the invoice's: no second purchase.
        let Delivery::Kept(_) = delivered(
            r#"{"id":"evt_pi2","type":"payment_intent.succeeded","created":1790000000,
                "data":{"object":{"id":"pi_9","invoice":"in_1","amount_received":4990,"currency":"brl"}}}"#,
        ) else {
            panic!("an invoice's payment intent became an event")
        };

        let subscription = |event_type: &str, previous: &str| {
            format!(
                r#"{{"id":"evt_{event_type}","type":"{event_type}","created":1790000300,
                  "data":{{"object":{{"id":"sub_1","object":"subscription","status":"active",
                  "items":{{"data":[{{"price":{{"id":"price_yearly"}}}}]}},"metadata":{{}}}}{previous}}}}}"#
            )
        };
        let canceled = order(&subscription("customer.subscription.deleted", ""));
        assert_eq!(
            canceled.envelope.event_type,
            EventType::SubscriptionCanceled
        );
        assert_eq!(canceled.order_id, "sub_1");
        let changed = order(&subscription(
            "customer.subscription.updated",
            r#","previous_attributes":{"items":{"data":[{"price":{"id":"price_monthly"}}]}}"#,
        ));
        assert_eq!(changed.envelope.event_type, EventType::PlanChanged);
        assert_eq!(changed.plan.as_deref(), Some("price_yearly"));
        // An update that changed no price is not a plan change.
        let Delivery::Kept(raw) = delivered(&subscription(
            "customer.subscription.updated",
            r#","previous_attributes":{"status":"trialing"}"#,
        )) else {
            panic!("a status update became a plan change")
        };
        assert_eq!(raw.event_name, "customer.subscription.updated");
    }

    #[test]
    fn unknown_types_are_kept_raw_with_their_name() {
        let Delivery::Kept(raw) = delivered(
            r#"{"id":"evt_x","type":"customer.created","created":1790000000,
                "data":{"object":{"id":"cus_1","email":"a@b.co","name":"Ana Souza"}}}"#,
        ) else {
            panic!("an event")
        };
        assert_eq!(raw.event_name, "customer.created");
        assert_eq!(raw.gateway_event_id.as_deref(), Some("evt_x"));
        assert!(!raw.payload.contains("a@b.co") && !raw.payload.contains("Ana Souza"));
    }
}

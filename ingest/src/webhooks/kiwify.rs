//! Kiwify sales webhooks (`POST /api/v1/webhooks/kiwify?tenant=<id>`).
//!
//! Authenticity, as Kiwify documents it: Kiwify appends `signature=<hex>` to the URL
//! query; the signature is hex(HMAC-SHA1(webhook token, raw body)), compared in constant
//! time over the raw bytes (never re-serialized JSON).
//!
//! Events mapped (by `webhook_event_type`, else `order_status`, else an abandoned cart's
//! `status`; docs/edge.md has the table):
//! - `order_approved` / `paid` → purchase; `subscription_renewed` → subscription_renewed;
//! - `pix_created`, `billet_created` / `waiting_payment` → payment_pending;
//!   `order_rejected` / `refused` → payment_failed;
//! - `order_refunded` / `refunded` → refund; `chargeback` / `chargedback` → chargeback;
//! - `subscription_canceled` → subscription_canceled;
//! - an abandoned cart (`status: abandoned`, no order: its `id` stands for the order) →
//!   checkout_abandoned, with `sck` and `utm_*` read from its `checkout_link`.
//!
//! Every other event is kept raw. Bodies are accepted bare or wrapped as
//! `{"order": {...}}`. `Commissions.charge_amount` is in cents (number or string). Our
//! session id travels in `TrackingParameters.sck`.

use funnelhub_schemas::common::{ClickIds, EventType, Utm};
use funnelhub_schemas::identity::RawIdentity;
use hmac::Hmac;
use serde_json::Value;
use sha1::Sha1;

use super::raw::Described;
use super::{
    hex_mac_matches, id_at, number_at, required_at, string_at, url_params, utm_from, OrderDraft,
    Outcome,
};
use crate::config::TenantConfig;
use crate::request::QueryParams;
use crate::validate::{currency, split_name};
use funnelhub_runtime::api::parse_json;
use funnelhub_runtime::api::ApiError;

/// Every event name and status Kiwify is known to send (metrics label them; others count
/// as `other`).
pub const EVENTS: &[&str] = &[
    "order_approved",
    "order_refunded",
    "order_rejected",
    "chargeback",
    "billet_created",
    "pix_created",
    "subscription_canceled",
    "subscription_renewed",
    "subscription_late",
    "paid",
    "waiting_payment",
    "refused",
    "refunded",
    "chargedback",
    "abandoned",
];

/// Verify `signature`; the parsed order (unwrapped from `{"order": ...}`).
pub fn authenticate(
    tenant: &TenantConfig,
    query: &QueryParams,
    body: &[u8],
) -> Result<Value, ApiError> {
    // A tenant without a token (or no such tenant) fails like a wrong signature: the answer
    // does not tell which tenants or gateways exist.
    let token = tenant.kiwify_token.as_ref();
    let signature = query
        .get("signature")
        .ok_or(ApiError::Unauthorized("missing signature"))?;
    // An empty token would be a public HMAC key.
    let matches = token.is_some_and(|token| {
        token.is_usable()
            && hex_mac_matches::<Hmac<Sha1>>(token.expose().as_bytes(), &[body], signature)
    });
    if !matches {
        return Err(ApiError::Unauthorized("signature does not match"));
    }
    let mut event: Value = parse_json(body)?;
    Ok(match event.get_mut("order").map(Value::take) {
        Some(order @ Value::Object(_)) => order,
        _ => event,
    })
}

/// The `signature` query value Kiwify would append for `body`. For simulators and tests.
pub fn sign(token: &str, body: &[u8]) -> String {
    use hmac::digest::KeyInit;
    use hmac::Mac;
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(token.as_bytes())
        .expect("HMAC takes any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Kiwify's dates ("2024-01-15 10:30", or RFC 3339) as ms since the epoch.
fn date_ms(text: Option<String>) -> Option<i64> {
    let text = text?;
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(&text) {
        return Some(t.timestamp_millis());
    }
    ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|format| {
            chrono::NaiveDateTime::parse_from_str(&text, format)
                .ok()
                .map(|t| t.and_utc().timestamp_millis())
        })
}

/// The event name and order of any Kiwify body.
pub fn describe(order: &Value) -> Described {
    Described {
        name: string_at(order, &["webhook_event_type"])
            .or_else(|| string_at(order, &["order_status"]))
            .or_else(|| string_at(order, &["status"])),
        gateway_event_id: None,
        order_id: string_at(order, &["order_id"]).or_else(|| id_at(order, &["id"])),
    }
}

/// Map a verified order onto an order draft.
pub fn normalize(order: &Value) -> Result<Outcome, ApiError> {
    let event_type = string_at(order, &["webhook_event_type"]);
    let status = string_at(order, &["order_status"]);
    if event_type.is_none() && status.is_none() {
        return match string_at(order, &["status"]).as_deref() {
            Some("abandoned") => abandoned(order),
            _ => Ok(Outcome::Unused(describe(order))),
        };
    }
    let name = event_type.clone().or(status.clone()).unwrap_or_default();
    let kind = match (event_type.as_deref(), status.as_deref()) {
        (Some("order_approved"), _) | (None, Some("paid")) => EventType::Purchase,
        (Some("subscription_renewed"), _) => EventType::SubscriptionRenewed,
        (Some("pix_created" | "billet_created"), _) | (None, Some("waiting_payment")) => {
            EventType::PaymentPending
        }
        (Some("order_rejected"), _) | (None, Some("refused")) => EventType::PaymentFailed,
        (Some("order_refunded"), _) | (None, Some("refunded")) => EventType::Refund,
        (Some("chargeback"), _) | (None, Some("chargedback")) => EventType::Chargeback,
        (Some("subscription_canceled"), _) => EventType::SubscriptionCanceled,
        _ => return Ok(Outcome::Unused(describe(order))),
    };
    let order_id = required_at(order, &["order_id"])?;
    let customer = |key: &str| string_at(order, &["Customer", key]);
    let (first_name, last_name) = split_name(customer("full_name").as_deref());
    let tracking = |key: &str| string_at(order, &["TrackingParameters", key]);
    let currency = currency(
        "Commissions.currency",
        string_at(order, &["Commissions", "currency"]).or_else(|| Some("BRL".into())),
    )?;

    // Renewals of one subscription may share its first order's id: each charge is its own
    // event (the number of charges completed, else the charge's date, tells them apart).
    let renewal = (kind == EventType::SubscriptionRenewed).then(|| {
        order
            .get("Subscription")
            .and_then(|s| s.get("charges"))
            .and_then(|c| c.get("completed"))
            .and_then(Value::as_array)
            .map(|completed| completed.len().to_string())
            .or_else(|| string_at(order, &["approved_date"]))
            .or_else(|| string_at(order, &["updated_at"]))
            .unwrap_or_default()
    });
    Ok(Outcome::Order(Box::new(OrderDraft {
        kind: Some(kind),
        id_discriminator: renewal,
        gateway_status: name,
        occurred_at: date_ms(string_at(order, &["approved_date"]))
            .or_else(|| date_ms(string_at(order, &["updated_at"])))
            .or_else(|| date_ms(string_at(order, &["created_at"]))),
        amount_minor: number_at(order, &["Commissions", "charge_amount"]).map(|c| c.round() as i64),
        currency,
        product_id: string_at(order, &["Product", "product_id"]),
        product_name: string_at(order, &["Product", "product_name"]),
        payment_method: string_at(order, &["payment_method"]),
        original_order_id: matches!(kind, EventType::Refund | EventType::Chargeback)
            .then(|| order_id.clone()),
        session_id: tracking("sck"),
        utm: utm_from(order, &["TrackingParameters"]),
        click_ids: ClickIds {
            fbclid: tracking("fbclid"),
            ..ClickIds::default()
        },
        client_ip: customer("ip"),
        identity: RawIdentity {
            email: customer("email"),
            phone: customer("mobile"),
            first_name,
            last_name,
            ..RawIdentity::default()
        },
        subscription_id: id_at(order, &["Subscription", "id"])
            .or_else(|| string_at(order, &["subscription_id"])),
        plan: string_at(order, &["Subscription", "plan", "id"])
            .or_else(|| string_at(order, &["Subscription", "plan", "name"])),
        order_id,
        ..OrderDraft::default()
    })))
}

/// An abandoned cart: flat buyer fields, no order (its `id`, else its checkout link,
/// stands for one). Its `checkout_link` carries our session id and UTMs when the landing
/// page's tracker decorated the link.
fn abandoned(cart: &Value) -> Result<Outcome, ApiError> {
    let link = string_at(cart, &["checkout_link"]);
    let order_id = id_at(cart, &["id"])
        .or_else(|| link.clone())
        .ok_or_else(|| ApiError::missing("id"))?;
    let params = url_params(link.as_deref());
    let param = |key: &str| {
        params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    let (first_name, last_name) = split_name(string_at(cart, &["name"]).as_deref());
    Ok(Outcome::Order(Box::new(OrderDraft {
        kind: Some(EventType::CheckoutAbandoned),
        gateway_status: "abandoned".into(),
        occurred_at: date_ms(string_at(cart, &["created_at"])),
        product_id: id_at(cart, &["product_id"]),
        product_name: string_at(cart, &["product_name"]),
        session_id: param("sck"),
        utm: Utm {
            source: param("utm_source").or_else(|| param("src")),
            medium: param("utm_medium"),
            campaign: param("utm_campaign"),
            content: param("utm_content"),
            term: param("utm_term"),
        },
        identity: RawIdentity {
            email: string_at(cart, &["email"]),
            phone: string_at(cart, &["phone"]),
            first_name,
            last_name,
            country: string_at(cart, &["country"]),
            ..RawIdentity::default()
        },
        order_id,
        ..OrderDraft::default()
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use crate::webhooks::{deliver, Delivery};
    use funnelhub_schemas::common::Gateway;
    use funnelhub_schemas::events::{OrderEvent, RawWebhookReason};

    const PAID: &str = r#"{"order":{"order_id":"kw-1","order_status":"paid","webhook_event_type":"order_approved",
      "approved_date":"2026-11-20 10:30","payment_method":"pix",
      "Customer":{"email":"c@example.com","full_name":"João Pereira","mobile":"+5511987654321","CPF":"00000000000","ip":"198.51.100.4"},
      "Product":{"product_id":"p-9","product_name":"Mentoria"},
      "Commissions":{"charge_amount":"29700","currency":"BRL"},
      "TrackingParameters":{"sck":"sess-3","utm_source":"facebook","utm_campaign":"bf","fbclid":"IwAR_Kw"}}}"#;

    fn sign(token: &str, body: &str) -> String {
        super::sign(token, body.as_bytes())
    }

    fn tenant() -> TenantConfig {
        let mut tenant = TenantConfig::new("acme");
        tenant.kiwify_token = Some(Secret::from("kiwi-token"));
        tenant
    }

    /// Sign `body` as Kiwify does (HMAC-SHA1 in the query), authenticate, deliver.
    fn delivered(body: &str) -> Delivery {
        let query = QueryParams::parse(Some(&format!(
            "tenant=acme&signature={}",
            sign("kiwi-token", body)
        )));
        let event = authenticate(&tenant(), &query, body.as_bytes()).expect("authentic");
        deliver(
            Gateway::Kiwify,
            &tenant(),
            body.as_bytes(),
            &event,
            1_795_170_700_000,
        )
    }

    fn order(body: &str) -> OrderEvent {
        match delivered(body) {
            Delivery::Event(order) => *order,
            Delivery::Kept(raw) => panic!("kept raw: {raw:?}"),
        }
    }

    #[test]
    fn an_empty_token_is_no_key() {
        // Anyone can compute HMAC-SHA1 with an empty key.
        let mut tenant = TenantConfig::new("acme");
        tenant.kiwify_token = Some(Secret::from(""));
        let query = QueryParams::parse(Some(&format!("tenant=acme&signature={}", sign("", PAID))));
        assert!(matches!(
            authenticate(&tenant, &query, PAID.as_bytes()),
            Err(ApiError::Unauthorized(_))
        ));
    }

    #[test]
    fn signed_order_is_accepted_and_tampered_refused() {
        let order = order(PAID);
        assert_eq!(order.envelope.event_type, EventType::Purchase);
        assert_eq!(order.amount_minor, Some(29_700));
        assert_eq!(order.session_id.as_deref(), Some("sess-3"));
        assert_eq!(order.utm.campaign.as_deref(), Some("bf"));
        assert_eq!(order.envelope.occurred_at, 1_795_170_600_000);
        assert_eq!(
            order.click_ids.fbc.as_deref(),
            Some("fb.1.1795170600000.IwAR_Kw"),
            "fbc built from the fbclid, at the order's time"
        );
        let query = QueryParams::parse(Some(&format!(
            "tenant=acme&signature={}",
            sign("kiwi-token", PAID)
        )));
        let tampered = PAID.replace("29700", "2970");
        assert!(matches!(
            authenticate(&tenant(), &query, tampered.as_bytes()),
            Err(ApiError::Unauthorized(_))
        ));
        let unsigned = QueryParams::parse(Some("tenant=acme"));
        assert!(matches!(
            authenticate(&tenant(), &unsigned, PAID.as_bytes()),
            Err(ApiError::Unauthorized(_))
        ));
    }

    #[test]
    fn every_sales_event_kind() {
        let with = |event: &str, status: &str| {
            PAID.replace("\"order_approved\"", &format!("\"{event}\""))
                .replace("\"paid\"", &format!("\"{status}\""))
        };
        for (event, status, kind) in [
            ("pix_created", "waiting_payment", EventType::PaymentPending),
            (
                "billet_created",
                "waiting_payment",
                EventType::PaymentPending,
            ),
            ("order_rejected", "refused", EventType::PaymentFailed),
            ("order_refunded", "refunded", EventType::Refund),
            ("chargeback", "chargedback", EventType::Chargeback),
            (
                "subscription_canceled",
                "paid",
                EventType::SubscriptionCanceled,
            ),
        ] {
            let order = order(&with(event, status));
            assert_eq!(order.envelope.event_type, kind, "{event}");
            assert_eq!(order.order_id, "kw-1");
            assert_eq!(order.gateway_status, event);
        }
        // Bare bodies carrying only a status map the same way.
        let bare = |status: &str| format!(r#"{{"order_id":"1","order_status":"{status}"}}"#);
        assert_eq!(
            order(&bare("refunded")).envelope.event_type,
            EventType::Refund
        );
        assert_eq!(
            order(&bare("waiting_payment")).envelope.event_type,
            EventType::PaymentPending
        );
        assert_eq!(
            order(&bare("refused")).envelope.event_type,
            EventType::PaymentFailed
        );
    }

    #[test]
    fn renewals_are_one_event_per_charge() {
        let renewal = |charges: usize| {
            let completed = vec![r#"{"amount":4990,"status":"paid"}"#; charges].join(",");
            PAID.replace("\"order_approved\"", "\"subscription_renewed\"").replace(
                "\"payment_method\":\"pix\",",
                &format!(
                    r#""payment_method":"credit_card","Subscription":{{"id":"sub-7","status":"active","plan":{{"id":"plan-m","name":"Mensal"}},"charges":{{"completed":[{completed}]}}}},"#
                ),
            )
        };
        let second = order(&renewal(2));
        assert_eq!(second.envelope.event_type, EventType::SubscriptionRenewed);
        assert_eq!(second.subscription_id.as_deref(), Some("sub-7"));
        assert_eq!(second.plan.as_deref(), Some("plan-m"));
        assert_ne!(
            second.envelope.event_id,
            order(&renewal(3)).envelope.event_id
        );
        assert_eq!(
            second.envelope.event_id,
            order(&renewal(2)).envelope.event_id
        );
    }

    #[test]
    fn an_abandoned_cart_without_event_type_is_accepted() {
        // As Kiwify's abandoned-cart webhook sends it: no order, no webhook_event_type.
        let cart = r#"{"id":"cart-55","checkout_link":"https://pay.kiwify.com.br/AbC12?sck=sess-3&utm_source=facebook&utm_campaign=bf",
          "country":"BR","email":"c@example.com","name":"João Pereira","phone":"+5511987654321",
          "product_id":"p-9","product_name":"Mentoria","offer_name":"Oferta","status":"abandoned",
          "store_id":"st-1","created_at":"2026-11-20T10:20:00.000Z","subscription_plan":null}"#;
        let order = order(cart);
        assert_eq!(order.envelope.event_type, EventType::CheckoutAbandoned);
        assert_eq!(order.order_id, "cart-55");
        assert_eq!(order.session_id.as_deref(), Some("sess-3"));
        assert_eq!(order.utm.campaign.as_deref(), Some("bf"));
        assert!(order.envelope.identity.email_hash.is_some());
        assert!(order.envelope.identity.phone_hash.is_some());
        assert_eq!(order.envelope.occurred_at, 1_795_170_000_000);
    }

    #[test]
    fn other_events_and_unmappable_bodies_are_kept_raw() {
        let Delivery::Kept(raw) =
            delivered(&PAID.replace("\"order_approved\"", "\"subscription_late\""))
        else {
            panic!("an event")
        };
        assert_eq!(raw.event_name, "subscription_late");
        assert_eq!(raw.reason, RawWebhookReason::UnusedEvent);
        assert_eq!(raw.order_id.as_deref(), Some("kw-1"));
        assert!(!raw.payload.contains("c@example.com"));
        assert!(!raw.payload.contains("+5511987654321"));
        let Delivery::Kept(raw) = delivered(r#"{"order_status":"paid"}"#) else {
            panic!("an event")
        };
        assert_eq!(raw.reason, RawWebhookReason::Unmappable);
        assert_eq!(raw.field.as_deref(), Some("order_id"));
        let Delivery::Kept(raw) = delivered(r#"{"hello":"world"}"#) else {
            panic!("an event")
        };
        assert_eq!(raw.event_name, "unknown");
    }
}

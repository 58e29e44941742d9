//! Hotmart webhooks, postback v2.0.0 and the legacy postback
//! (`POST /api/v1/webhooks/hotmart?tenant=<id>`).
//!
//! Authenticity: the account's hottok in the `X-HOTMART-HOTTOK` header (or a top-level
//! `hottok` field, as older postbacks send it), compared in constant time. Hotmart signs
//! nothing else and sends no timestamp, so a captured request could be replayed; the
//! deterministic event id makes a replay a harmless duplicate.
//!
//! Events mapped (by `event`; docs/edge.md has the table):
//! - `PURCHASE_APPROVED`, `PURCHASE_COMPLETE` → purchase (one event: same id); with
//!   `data.purchase.recurrence_number` above 1 → subscription_renewed (one per recurrence);
//! - `PURCHASE_BILLET_PRINTED`, `PURCHASE_DELAYED` → payment_pending; `PURCHASE_EXPIRED`
//!   → payment_failed; `PURCHASE_CANCELED` → cancel;
//! - `PURCHASE_REFUNDED` → refund; `PURCHASE_CHARGEBACK` → chargeback;
//! - `PURCHASE_OUT_OF_SHOPPING_CART` → checkout_abandoned (no transaction: the delivery id
//!   stands for the order);
//! - `SUBSCRIPTION_CANCELLATION` → subscription_canceled; `SWITCH_PLAN` → plan_changed
//!   (the plan marked `current`).
//!
//! Every other event is kept raw. The legacy postback (no `event`; `status` and flat
//! fields: `transaction`, `prod`, `price`, `email`...) maps its statuses the same way.
//! `price.value` is in major units. Our landing page passes its session id in the checkout
//! link's `sck` parameter (`data.purchase.origin.sck`); `src` is read as `utm_source`.

use axum::http::HeaderMap;
use funnelhub_schemas::common::{EventType, Utm};
use funnelhub_schemas::identity::RawIdentity;
use serde_json::Value;

use super::raw::Described;
use super::{
    id_at, number_at, required_at, secret_matches, str_at, string_at, OrderDraft, Outcome,
};
use crate::config::TenantConfig;
use crate::validate::{currency, major_to_minor, split_name};
use funnelhub_runtime::api::parse_json;
use funnelhub_runtime::api::ApiError;

/// Every event name Hotmart documents (metrics label them; others count as `other`).
pub const EVENTS: &[&str] = &[
    "PURCHASE_APPROVED",
    "PURCHASE_COMPLETE",
    "PURCHASE_CANCELED",
    "PURCHASE_REFUNDED",
    "PURCHASE_CHARGEBACK",
    "PURCHASE_PROTEST",
    "PURCHASE_BILLET_PRINTED",
    "PURCHASE_EXPIRED",
    "PURCHASE_DELAYED",
    "PURCHASE_OUT_OF_SHOPPING_CART",
    "SUBSCRIPTION_CANCELLATION",
    "SWITCH_PLAN",
    "UPDATE_SUBSCRIPTION_CHARGE_DATE",
    "CLUB_FIRST_ACCESS",
    "CLUB_MODULE_COMPLETED",
];

/// Verify the hottok; the parsed body.
pub fn authenticate(
    tenant: &TenantConfig,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, ApiError> {
    // A tenant without a hottok (or no such tenant) fails like a wrong hottok: the answer
    // does not tell which tenants or gateways exist.
    let expected = tenant.hotmart_hottok.as_ref();
    // Parse first only to find a body hottok; nothing is used before the check passes.
    let event: Value = parse_json(body)?;
    let presented = headers
        .get("x-hotmart-hottok")
        .and_then(|v| v.to_str().ok())
        .or_else(|| str_at(&event, &["hottok"]))
        .ok_or(ApiError::Unauthorized("missing hottok"))?;
    if !expected.is_some_and(|expected| secret_matches(presented, expected)) {
        return Err(ApiError::Unauthorized("hottok does not match"));
    }
    Ok(event)
}

/// The event name, delivery id and transaction of any Hotmart body.
pub fn describe(event: &Value) -> Described {
    Described {
        name: string_at(event, &["event"])
            .or_else(|| string_at(event, &["status"]).map(|s| format!("legacy:{s}"))),
        gateway_event_id: string_at(event, &["id"]),
        order_id: string_at(event, &["data", "purchase", "transaction"])
            .or_else(|| string_at(event, &["transaction"])),
    }
}

/// Map a verified postback onto an order draft.
pub fn normalize(event: &Value) -> Result<Outcome, ApiError> {
    if event.get("event").is_none() && event.get("status").is_some() {
        return legacy(event);
    }
    let name = required_at(event, &["event"])?;
    let kind = match name.as_str() {
        "PURCHASE_APPROVED" | "PURCHASE_COMPLETE" => EventType::Purchase,
        "PURCHASE_BILLET_PRINTED" | "PURCHASE_DELAYED" => EventType::PaymentPending,
        "PURCHASE_EXPIRED" => EventType::PaymentFailed,
        "PURCHASE_REFUNDED" => EventType::Refund,
        "PURCHASE_CHARGEBACK" => EventType::Chargeback,
        "PURCHASE_CANCELED" => EventType::Cancel,
        "PURCHASE_OUT_OF_SHOPPING_CART" => return abandoned(event, name),
        "SUBSCRIPTION_CANCELLATION" | "SWITCH_PLAN" => return subscription(event, name),
        _ => return Ok(Outcome::Unused(describe(event))),
    };
    let data = event.get("data").ok_or_else(|| ApiError::missing("data"))?;
    let order_id = required_at(data, &["purchase", "transaction"])
        .map_err(|_| ApiError::missing("data.purchase.transaction"))?;
    let currency = currency(
        "data.purchase.price.currency_value",
        string_at(data, &["purchase", "price", "currency_value"]),
    )?;
    let amount_minor = match (number_at(data, &["purchase", "price", "value"]), &currency) {
        (Some(value), Some(c)) => Some(major_to_minor("data.purchase.price.value", value, c)?),
        _ => None,
    };
    // A subscription's later charges are renewals, one event per recurrence.
    let recurrence = number_at(data, &["purchase", "recurrence_number"]).map(|n| n as i64);
    let kind = match (kind, recurrence) {
        (EventType::Purchase, Some(n)) if n > 1 => EventType::SubscriptionRenewed,
        (kind, _) => kind,
    };
    let occurred_at = match kind {
        EventType::Purchase | EventType::SubscriptionRenewed => {
            number_at(data, &["purchase", "approved_date"])
        }
        _ => None,
    }
    .or_else(|| number_at(event, &["creation_date"]))
    .map(|ms| ms as i64);

    Ok(Outcome::Order(Box::new(OrderDraft {
        kind: Some(kind),
        id_discriminator: (kind == EventType::SubscriptionRenewed)
            .then(|| recurrence.unwrap_or_default().to_string()),
        gateway_event_id: string_at(event, &["id"]),
        gateway_status: name,
        occurred_at,
        amount_minor,
        currency,
        product_id: id_at(data, &["product", "id"]),
        product_name: string_at(data, &["product", "name"]),
        payment_method: string_at(data, &["purchase", "payment", "type"]),
        original_order_id: matches!(
            kind,
            EventType::Refund | EventType::Chargeback | EventType::Cancel
        )
        .then(|| order_id.clone()),
        session_id: string_at(data, &["purchase", "origin", "sck"]),
        utm: Utm {
            source: string_at(data, &["purchase", "origin", "src"]),
            ..Utm::default()
        },
        client_ip: string_at(data, &["purchase", "buyer_ip"]),
        identity: buyer_identity(data.get("buyer")),
        subscription_id: string_at(data, &["subscription", "subscriber", "code"]),
        plan: id_at(data, &["subscription", "plan", "id"])
            .or_else(|| string_at(data, &["subscription", "plan", "name"])),
        order_id,
        ..OrderDraft::default()
    })))
}

/// The buyer's identity from a `buyer`-shaped object.
fn buyer_identity(buyer: Option<&Value>) -> RawIdentity {
    let Some(buyer) = buyer else {
        return RawIdentity::default();
    };
    let get = |path: &[&str]| string_at(buyer, path);
    let (first_name, last_name) = match (get(&["first_name"]), get(&["last_name"])) {
        (None, None) => split_name(get(&["name"]).as_deref()),
        names => names,
    };
    RawIdentity {
        email: get(&["email"]),
        phone: get(&["checkout_phone"]).or_else(|| get(&["phone"])),
        first_name,
        last_name,
        city: get(&["address", "city"]),
        state: get(&["address", "state"]),
        zip: get(&["address", "zipcode"]),
        country: get(&["address", "country_iso"]),
        ..RawIdentity::default()
    }
}

/// `PURCHASE_OUT_OF_SHOPPING_CART`: the buyer left the checkout. Hotmart creates no
/// transaction, so the delivery id stands for the order (its retries keep it).
fn abandoned(event: &Value, name: String) -> Result<Outcome, ApiError> {
    let data = event.get("data").ok_or_else(|| ApiError::missing("data"))?;
    let order_id = string_at(data, &["purchase", "transaction"])
        .or_else(|| string_at(event, &["id"]))
        .ok_or_else(|| ApiError::missing("id"))?;
    let sck = string_at(data, &["purchase", "origin", "sck"])
        .or_else(|| string_at(data, &["origin", "sck"]));
    Ok(Outcome::Order(Box::new(OrderDraft {
        kind: Some(EventType::CheckoutAbandoned),
        gateway_event_id: string_at(event, &["id"]),
        gateway_status: name,
        occurred_at: number_at(event, &["creation_date"]).map(|ms| ms as i64),
        product_id: id_at(data, &["product", "id"]),
        product_name: string_at(data, &["product", "name"]),
        session_id: sck,
        client_ip: string_at(data, &["buyer_ip"]),
        identity: buyer_identity(data.get("buyer")),
        order_id,
        ..OrderDraft::default()
    })))
}

/// `SUBSCRIPTION_CANCELLATION` and `SWITCH_PLAN`: the subscriber code stands for the order.
fn subscription(event: &Value, name: String) -> Result<Outcome, ApiError> {
    let data = event.get("data").ok_or_else(|| ApiError::missing("data"))?;
    let subscriber = string_at(data, &["subscriber", "code"])
        .or_else(|| string_at(data, &["subscription", "subscriber_code"]))
        .or_else(|| string_at(data, &["subscription", "subscriber", "code"]))
        .ok_or_else(|| ApiError::missing("data.subscriber.code"))?;
    let (kind, plan, discriminator) = if name == "SWITCH_PLAN" {
        // The plan switched to is the one Hotmart marks current.
        let current = data
            .get("plans")
            .and_then(Value::as_array)
            .and_then(|plans| {
                plans
                    .iter()
                    .find(|p| p.get("current") == Some(&Value::Bool(true)))
            });
        let plan = current.and_then(|p| id_at(p, &["id"]).or_else(|| string_at(p, &["name"])));
        let at = string_at(data, &["switch_plan_date"])
            .or_else(|| number_at(data, &["switch_plan_date"]).map(|n| (n as i64).to_string()));
        (EventType::PlanChanged, plan, at)
    } else {
        let plan = id_at(data, &["subscription", "plan", "id"])
            .or_else(|| string_at(data, &["subscription", "plan", "name"]));
        (EventType::SubscriptionCanceled, plan, None)
    };
    let email = string_at(data, &["subscriber", "email"])
        .or_else(|| string_at(data, &["subscription", "user", "email"]));
    Ok(Outcome::Order(Box::new(OrderDraft {
        kind: Some(kind),
        id_discriminator: discriminator,
        gateway_event_id: string_at(event, &["id"]),
        gateway_status: name,
        occurred_at: number_at(data, &["cancellation_date"])
            .or_else(|| number_at(event, &["creation_date"]))
            .map(|ms| ms as i64),
        product_id: id_at(data, &["product", "id"])
            .or_else(|| id_at(data, &["subscription", "product", "id"])),
        product_name: string_at(data, &["product", "name"])
            .or_else(|| string_at(data, &["subscription", "product", "name"])),
        identity: RawIdentity {
            email,
            phone: string_at(data, &["subscriber", "phone", "number"])
                .or_else(|| string_at(data, &["subscriber", "phone"])),
            ..RawIdentity::default()
        },
        subscription_id: Some(subscriber.clone()),
        plan,
        order_id: subscriber,
        ..OrderDraft::default()
    })))
}

/// The legacy postback: flat fields, a lower-case `status`.
fn legacy(event: &Value) -> Result<Outcome, ApiError> {
    let status = required_at(event, &["status"])?;
    let kind = match status.to_ascii_lowercase().as_str() {
        "approved" | "complete" | "completed" => EventType::Purchase,
        "billet_printed" | "waiting_payment" | "delayed" => EventType::PaymentPending,
        "expired" => EventType::PaymentFailed,
        "canceled" | "cancelled" => EventType::Cancel,
        "refunded" => EventType::Refund,
        "chargeback" => EventType::Chargeback,
        _ => return Ok(Outcome::Unused(describe(event))),
    };
    let order_id = required_at(event, &["transaction"])?;
    let currency = currency(
        "currency",
        string_at(event, &["currency"]).or_else(|| string_at(event, &["currency_code"])),
    )?;
    let amount_minor = match (number_at(event, &["price"]), &currency) {
        (Some(value), Some(c)) => Some(major_to_minor("price", value, c)?),
        _ => None,
    };
    let (first_name, last_name) = match (
        string_at(event, &["first_name"]),
        string_at(event, &["last_name"]),
    ) {
        (None, None) => split_name(string_at(event, &["name"]).as_deref()),
        names => names,
    };
    let phone = match (
        string_at(event, &["phone_local_code"]),
        string_at(event, &["phone_number"]),
    ) {
        (Some(area), Some(number)) => Some(format!("{area}{number}")),
        (None, number) => number,
        (Some(_), None) => None,
    };
    Ok(Outcome::Order(Box::new(OrderDraft {
        kind: Some(kind),
        gateway_status: format!("legacy:{status}"),
        amount_minor,
        currency,
        product_id: id_at(event, &["prod"]),
        product_name: string_at(event, &["prod_name"]),
        payment_method: string_at(event, &["payment_type"]),
        original_order_id: matches!(
            kind,
            EventType::Refund | EventType::Chargeback | EventType::Cancel
        )
        .then(|| order_id.clone()),
        session_id: string_at(event, &["sck"]),
        utm: Utm {
            source: string_at(event, &["src"]),
            ..Utm::default()
        },
        identity: RawIdentity {
            email: string_at(event, &["email"]),
            phone,
            first_name,
            last_name,
            ..RawIdentity::default()
        },
        subscription_id: string_at(event, &["subscriber_code"]),
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

    pub(crate) const APPROVED: &str = r#"{"id":"6f4b","creation_date":1790000000000,"event":"PURCHASE_APPROVED","version":"2.0.0",
      "data":{"product":{"id":4242,"name":"Curso"},
        "buyer":{"email":"comprador@example.com","name":"Maria da Silva","checkout_phone":"11987654321",
                 "address":{"city":"São Paulo","state":"SP","zipcode":"01310-100","country_iso":"BR"}},
        "purchase":{"transaction":"HP1234","approved_date":1790000000500,"status":"APPROVED",
                    "price":{"value":197.9,"currency_value":"BRL"},"payment":{"type":"PIX"},
                    "buyer_ip":"203.0.113.5","origin":{"sck":"sess-7","src":"facebook"}}}}"#;

    fn tenant() -> TenantConfig {
        let mut tenant = TenantConfig::new("acme");
        tenant.hotmart_hottok = Some(Secret::from("hottok-123"));
        tenant
    }

    /// Authenticate `body` as Hotmart sends it (hottok header), then deliver it.
    fn delivered(body: &str) -> Delivery {
        let mut headers = HeaderMap::new();
        headers.insert("x-hotmart-hottok", "hottok-123".parse().expect("value"));
        let event = authenticate(&tenant(), &headers, body.as_bytes()).expect("authentic");
        deliver(
            Gateway::Hotmart,
            &tenant(),
            body.as_bytes(),
            &event,
            1_790_000_001_000,
        )
    }

    fn order(body: &str) -> OrderEvent {
        match delivered(body) {
            Delivery::Event(order) => *order,
            Delivery::Kept(raw) => panic!("kept raw: {raw:?}"),
        }
    }

    fn with_event(name: &str) -> String {
        APPROVED.replace("PURCHASE_APPROVED", name)
    }

    #[test]
    fn approved_purchase() {
        let order = order(APPROVED);
        assert_eq!(order.envelope.event_type, EventType::Purchase);
        assert_eq!(order.order_id, "HP1234");
        assert_eq!(order.amount_minor, Some(19_790));
        assert_eq!(order.product_id.as_deref(), Some("4242"));
        assert_eq!(order.session_id.as_deref(), Some("sess-7"));
        assert_eq!(order.envelope.occurred_at, 1_790_000_000_500);
        assert!(order.envelope.identity.phone_hash.is_some());

        let mut headers = HeaderMap::new();
        headers.insert("x-hotmart-hottok", "wrong".parse().expect("value"));
        assert!(matches!(
            authenticate(&tenant(), &headers, APPROVED.as_bytes()),
            Err(ApiError::Unauthorized(_))
        ));
        assert!(matches!(
            authenticate(&tenant(), &HeaderMap::new(), APPROVED.as_bytes()),
            Err(ApiError::Unauthorized(_))
        ));
        assert!(matches!(
            authenticate(&tenant(), &HeaderMap::new(), b"hottok=hottok-123"),
            Err(ApiError::MalformedJson(_))
        ));
    }

    #[test]
    fn approved_and_complete_are_one_purchase() {
        assert_eq!(
            order(APPROVED).envelope.event_id,
            order(&with_event("PURCHASE_COMPLETE")).envelope.event_id
        );
        assert_ne!(
            order(APPROVED).envelope.event_id,
            order(&with_event("PURCHASE_REFUNDED")).envelope.event_id
        );
    }

    #[test]
    fn pending_payments_then_paid_are_distinct_kinds_of_one_order() {
        for (name, kind) in [
            ("PURCHASE_BILLET_PRINTED", EventType::PaymentPending),
            ("PURCHASE_DELAYED", EventType::PaymentPending),
            ("PURCHASE_EXPIRED", EventType::PaymentFailed),
            ("PURCHASE_CANCELED", EventType::Cancel),
            ("PURCHASE_CHARGEBACK", EventType::Chargeback),
        ] {
            let event = order(&with_event(name));
            assert_eq!(event.envelope.event_type, kind, "{name}");
            assert_eq!(event.order_id, "HP1234", "{name}");
            assert_eq!(event.gateway_status, name);
        }
        assert_eq!(
            order(&with_event("PURCHASE_BILLET_PRINTED"))
                .envelope
                .event_id,
            order(&with_event("PURCHASE_DELAYED")).envelope.event_id,
            "one pending event per order"
        );
    }

    #[test]
    fn a_recurring_charge_is_a_renewal_of_its_subscription() {
        let renewal = APPROVED.replace(
            r#""status":"APPROVED","#,
            r#""status":"APPROVED","recurrence_number":3,"#,
        );
        let renewal = renewal.replace(
            r#""product":{"id":4242,"name":"Curso"},"#,
            r#""product":{"id":4242,"name":"Curso"},"subscription":{"status":"ACTIVE","plan":{"id":123,"name":"Mensal"},"subscriber":{"code":"I9OT62C3"}},"#,
        );
        let event = order(&renewal);
        assert_eq!(event.envelope.event_type, EventType::SubscriptionRenewed);
        assert_eq!(event.subscription_id.as_deref(), Some("I9OT62C3"));
        assert_eq!(event.plan.as_deref(), Some("123"));
        let fourth =
            order(&renewal.replace(r#""recurrence_number":3"#, r#""recurrence_number":4"#));
        assert_ne!(event.envelope.event_id, fourth.envelope.event_id);
        let first = order(&renewal.replace(r#""recurrence_number":3"#, r#""recurrence_number":1"#));
        assert_eq!(first.envelope.event_type, EventType::Purchase);
    }

    #[test]
    fn an_abandoned_cart_is_a_checkout_abandoned_event() {
        // Shaped as Hotmart's abandonment postback: buyer and product, no transaction.
        let cart = r#"{"id":"a1b2c3","creation_date":1790000100000,"event":"PURCHASE_OUT_OF_SHOPPING_CART","version":"2.0.0",
          "data":{"affiliate":false,"product":{"id":4242,"name":"Curso"},"buyer_ip":"203.0.113.5",
            "buyer":{"name":"Maria da Silva","email":"comprador@example.com","phone":"11987654321"},
            "offer":{"code":"x1"},"checkout_country":{"name":"Brasil","iso":"BR"}}}"#;
        let event = order(cart);
        assert_eq!(event.envelope.event_type, EventType::CheckoutAbandoned);
        assert_eq!(event.order_id, "a1b2c3");
        assert!(event.envelope.identity.email_hash.is_some());
        assert!(event.envelope.identity.phone_hash.is_some());
        assert_eq!(event.envelope.occurred_at, 1_790_000_100_000);
    }

    #[test]
    fn subscription_cancellation_and_plan_switch() {
        let cancel = r#"{"id":"c-1","creation_date":1790000200000,"event":"SUBSCRIPTION_CANCELLATION","version":"2.0.0",
          "data":{"date_next_charge":1790600000000,"product":{"name":"Clube","id":77},
            "actual_recurrence_value":49.9,"cancellation_date":1790000199000,
            "subscriber":{"code":"I9OT62C3","name":"Maria","email":"comprador@example.com","phone":{"dddPhone":"","phone":"","dddCell":"11","cell":"987654321"}},
            "subscription":{"id":4148584,"plan":{"name":"Mensal","id":123}}}}"#;
        let event = order(cancel);
        assert_eq!(event.envelope.event_type, EventType::SubscriptionCanceled);
        assert_eq!(event.order_id, "I9OT62C3");
        assert_eq!(event.subscription_id.as_deref(), Some("I9OT62C3"));
        assert_eq!(event.plan.as_deref(), Some("123"));
        assert_eq!(event.envelope.occurred_at, 1_790_000_199_000);

        let switch = r#"{"id":"s-1","creation_date":1790000300000,"event":"SWITCH_PLAN","version":"2.0.0",
          "data":{"switch_plan_date":1790000300000,
            "subscription":{"subscriber_code":"I9OT62C3","status":"ACTIVE","product":{"id":77,"name":"Clube"},"user":{"email":"comprador@example.com"}},
            "plans":[{"id":123,"name":"Mensal","offer":{"key":"a"},"current":false},
                     {"id":456,"name":"Anual","offer":{"key":"b"},"current":true}]}}"#;
        let event = order(switch);
        assert_eq!(event.envelope.event_type, EventType::PlanChanged);
        assert_eq!(event.plan.as_deref(), Some("456"));
        assert_eq!(event.subscription_id.as_deref(), Some("I9OT62C3"));
    }

    #[test]
    fn the_legacy_postback_with_hottok_in_the_body() {
        let legacy = r#"{"hottok":"hottok-123","status":"approved","transaction":"HP99","prod":4242,
          "prod_name":"Curso","price":"197.00","currency":"BRL","email":"comprador@example.com",
          "first_name":"Maria","last_name":"Silva","phone_local_code":"11","phone_number":"987654321",
          "sck":"sess-7","src":"facebook","payment_type":"billet"}"#;
        let event =
            authenticate(&tenant(), &HeaderMap::new(), legacy.as_bytes()).expect("body hottok");
        let Delivery::Event(order) =
            deliver(Gateway::Hotmart, &tenant(), legacy.as_bytes(), &event, 0)
        else {
            panic!("kept")
        };
        assert_eq!(order.envelope.event_type, EventType::Purchase);
        assert_eq!(order.order_id, "HP99");
        assert_eq!(order.amount_minor, Some(19_700));
        assert_eq!(order.session_id.as_deref(), Some("sess-7"));
        let printed = legacy.replace(r#""status":"approved""#, r#""status":"billet_printed""#);
        let event = authenticate(&tenant(), &HeaderMap::new(), printed.as_bytes()).expect("ok");
        let Delivery::Event(order) =
            deliver(Gateway::Hotmart, &tenant(), printed.as_bytes(), &event, 0)
        else {
            panic!("kept")
        };
        assert_eq!(order.envelope.event_type, EventType::PaymentPending);
    }

    #[test]
    fn other_events_and_unmappable_bodies_are_kept_raw() {
        let Delivery::Kept(raw) = delivered(&with_event("CLUB_FIRST_ACCESS")) else {
            panic!("an event")
        };
        assert_eq!(raw.event_name, "CLUB_FIRST_ACCESS");
        assert_eq!(raw.reason, RawWebhookReason::UnusedEvent);
        assert_eq!(raw.gateway_event_id.as_deref(), Some("6f4b"));
        assert_eq!(raw.order_id.as_deref(), Some("HP1234"));
        assert!(!raw.payload.contains("comprador@example.com"));
        let Delivery::Kept(raw) = delivered(&APPROVED.replace("\"transaction\":\"HP1234\",", ""))
        else {
            panic!("an event")
        };
        assert_eq!(raw.reason, RawWebhookReason::Unmappable);
        assert_eq!(raw.field.as_deref(), Some("data.purchase.transaction"));
        assert_eq!(raw.event_name, "PURCHASE_APPROVED");
    }
}

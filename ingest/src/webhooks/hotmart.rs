//! Hotmart purchase webhooks, postback v2.0.0 (`POST /api/v1/webhooks/hotmart?tenant=<id>`).
//!
//! Authenticity: the account's hottok in the `X-HOTMART-HOTTOK` header (or a top-level
//! `hottok` field, as older postbacks send it), compared in constant time. Hotmart signs
//! nothing else and sends no timestamp, so a captured request could be replayed; the
//! deterministic event id makes a replay a harmless duplicate.
//!
//! Events used (others are acknowledged and ignored): PURCHASE_APPROVED and
//! PURCHASE_COMPLETE → purchase (one event: same id); PURCHASE_REFUNDED → refund;
//! PURCHASE_CHARGEBACK → chargeback; PURCHASE_CANCELED and PURCHASE_EXPIRED → cancel.
//! `price.value` is in major units. Our landing page passes its session id in the checkout
//! link's `sck` parameter (`data.purchase.origin.sck`); `src` is read as `utm_source`.

use axum::http::HeaderMap;
use funnelhub_schemas::common::{EventType, Utm};
use funnelhub_schemas::identity::RawIdentity;
use serde_json::Value;

use super::{number_at, required_at, secret_matches, str_at, string_at, OrderDraft, Outcome};
use crate::config::TenantConfig;
use crate::validate::{currency, major_to_minor, split_name};
use funnelhub_runtime::api::parse_json;
use funnelhub_runtime::api::ApiError;

/// Verify the hottok, then map the event.
pub fn handle(
    tenant: &TenantConfig,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Outcome, ApiError> {
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
    normalize(&event)
}

/// Map a verified postback onto an order draft.
pub fn normalize(event: &Value) -> Result<Outcome, ApiError> {
    let name = required_at(event, &["event"])?;
    let kind = match name.as_str() {
        "PURCHASE_APPROVED" | "PURCHASE_COMPLETE" => EventType::Purchase,
        "PURCHASE_REFUNDED" => EventType::Refund,
        "PURCHASE_CHARGEBACK" => EventType::Chargeback,
        "PURCHASE_CANCELED" | "PURCHASE_EXPIRED" => EventType::Cancel,
        _ => return Ok(Outcome::Ignored(name)),
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
    let buyer = |path: &[&str]| {
        let mut full = vec!["buyer"];
        full.extend_from_slice(path);
        string_at(data, &full)
    };
    let (first_name, last_name) = match (buyer(&["first_name"]), buyer(&["last_name"])) {
        (None, None) => split_name(buyer(&["name"]).as_deref()),
        names => names,
    };
    let occurred_at = match kind {
        EventType::Purchase => number_at(data, &["purchase", "approved_date"]),
        _ => None,
    }
    .or_else(|| number_at(event, &["creation_date"]))
    .map(|ms| ms as i64);

    Ok(Outcome::Order(Box::new(OrderDraft {
        kind: Some(kind),
        gateway_event_id: string_at(event, &["id"]),
        gateway_status: name,
        occurred_at,
        amount_minor,
        currency,
        product_id: string_at(data, &["product", "id"])
            .or_else(|| number_at(data, &["product", "id"]).map(|n| (n as i64).to_string())),
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
        identity: RawIdentity {
            email: buyer(&["email"]),
            phone: buyer(&["checkout_phone"]).or_else(|| buyer(&["phone"])),
            first_name,
            last_name,
            city: buyer(&["address", "city"]),
            state: buyer(&["address", "state"]),
            zip: buyer(&["address", "zipcode"]),
            country: buyer(&["address", "country_iso"]),
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

    pub(crate) const APPROVED: &str = r#"{"id":"6f4b","creation_date":1790000000000,"event":"PURCHASE_APPROVED","version":"2.0.0",
      "data":{"product":{"id":4242,"name":"Curso"},
        "buyer":{"email":"comprador@example.com","name":"Maria da Silva","checkout_phone":"11987654321",
                 "address":{"city":"São Paulo","state":"SP","zipcode":"01310-100","country_iso":"BR"}},
        "purchase":{"transaction":"HP1234","approved_date":1790000000500,"status":"APPROVED",
                    "price":{"value":197.9,"currency_value":"BRL"},"payment":{"type":"PIX"},
                    "buyer_ip":"203.0.113.5","origin":{"sck":"sess-7","src":"facebook"}}}}"#;

    #[test]
    fn approved_purchase() {
        let mut tenant = TenantConfig::new("acme");
        tenant.hotmart_hottok = Some(Secret::from("hottok-123"));
        let mut headers = HeaderMap::new();
        headers.insert("x-hotmart-hottok", "hottok-123".parse().expect("value"));
        let Outcome::Order(draft) = handle(&tenant, &headers, APPROVED.as_bytes()).expect("valid")
        else {
            panic!("ignored")
        };
        let order = draft.finish(&tenant, funnelhub_schemas::common::Gateway::Hotmart, 0);
        assert_eq!(order.order_id, "HP1234");
        assert_eq!(order.amount_minor, Some(19_790));
        assert_eq!(order.product_id.as_deref(), Some("4242"));
        assert_eq!(order.session_id.as_deref(), Some("sess-7"));
        assert_eq!(order.envelope.occurred_at, 1_790_000_000_500);
        assert!(order.envelope.identity.phone_hash.is_some());

        headers.insert("x-hotmart-hottok", "wrong".parse().expect("value"));
        assert!(matches!(
            handle(&tenant, &headers, APPROVED.as_bytes()),
            Err(ApiError::Unauthorized(_))
        ));
        assert!(matches!(
            handle(&tenant, &HeaderMap::new(), APPROVED.as_bytes()),
            Err(ApiError::Unauthorized(_))
        ));
    }

    #[test]
    fn approved_and_complete_are_one_purchase() {
        let tenant = TenantConfig::new("acme");
        let id = |json: &str| match normalize(&serde_json::from_str(json).expect("json"))
            .expect("valid")
        {
            Outcome::Order(d) => {
                d.finish(&tenant, funnelhub_schemas::common::Gateway::Hotmart, 0)
                    .envelope
                    .event_id
            }
            Outcome::Ignored(t) => panic!("{t}"),
        };
        assert_eq!(
            id(APPROVED),
            id(&APPROVED.replace("PURCHASE_APPROVED", "PURCHASE_COMPLETE"))
        );
        assert_ne!(
            id(APPROVED),
            id(&APPROVED.replace("PURCHASE_APPROVED", "PURCHASE_REFUNDED"))
        );
        let printed: Value =
            serde_json::from_str(&APPROVED.replace("PURCHASE_APPROVED", "PURCHASE_BILLET_PRINTED"))
                .expect("json");
        assert!(matches!(normalize(&printed), Ok(Outcome::Ignored(_))));
        let no_tx: Value =
            serde_json::from_str(&APPROVED.replace("\"transaction\":\"HP1234\",", ""))
                .expect("json");
        assert!(
            matches!(normalize(&no_tx), Err(ApiError::InvalidField { field, .. }) if field == "data.purchase.transaction")
        );
    }
}

//! Kiwify sales webhooks (`POST /api/v1/webhooks/kiwify?tenant=<id>`).
//!
//! Authenticity, as Kiwify documents it: Kiwify appends `signature=<hex>` to the URL
//! query; the signature is hex(HMAC-SHA1(webhook token, raw body)), compared in constant
//! time over the raw bytes (never re-serialized JSON).
//!
//! Events used (by `webhook_event_type`, else `order_status`; others acknowledged and
//! ignored): `order_approved`/`paid` → purchase; `order_refunded`/`refunded` → refund;
//! `chargeback`/`chargedback` → chargeback; `subscription_canceled` → cancel. Bodies are
//! accepted bare or wrapped as `{"order": {...}}`. `Commissions.charge_amount` is in cents
//! (number or string). Our session id travels in `TrackingParameters.sck`.

use funnelhub_schemas::common::{ClickIds, EventType};
use funnelhub_schemas::identity::RawIdentity;
use hmac::Hmac;
use serde_json::Value;
use sha1::Sha1;

use super::{hex_mac_matches, number_at, required_at, string_at, utm_from, OrderDraft, Outcome};
use crate::config::TenantConfig;
use crate::request::QueryParams;
use crate::validate::{currency, split_name};
use funnelhub_runtime::api::parse_json;
use funnelhub_runtime::api::ApiError;

/// Verify `signature`, then map the event.
pub fn handle(
    tenant: &TenantConfig,
    query: &QueryParams,
    body: &[u8],
) -> Result<Outcome, ApiError> {
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
    let event: Value = parse_json(body)?;
    normalize(event.get("order").unwrap_or(&event))
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

/// Map a verified order onto an order draft.
pub fn normalize(order: &Value) -> Result<Outcome, ApiError> {
    let event_type = string_at(order, &["webhook_event_type"]);
    let status = string_at(order, &["order_status"]);
    let name = event_type
        .clone()
        .or(status.clone())
        .ok_or_else(|| ApiError::missing("webhook_event_type"))?;
    let kind = match (event_type.as_deref(), status.as_deref()) {
        (Some("order_approved"), _) | (None, Some("paid")) => EventType::Purchase,
        (Some("order_refunded"), _) | (None, Some("refunded")) => EventType::Refund,
        (Some("chargeback"), _) | (None, Some("chargedback")) => EventType::Chargeback,
        (Some("subscription_canceled"), _) => EventType::Cancel,
        _ => return Ok(Outcome::Ignored(name)),
    };
    let order_id = required_at(order, &["order_id"])?;
    let customer = |key: &str| string_at(order, &["Customer", key]);
    let (first_name, last_name) = split_name(customer("full_name").as_deref());
    let tracking = |key: &str| string_at(order, &["TrackingParameters", key]);
    let currency = currency(
        "Commissions.currency",
        string_at(order, &["Commissions", "currency"]).or_else(|| Some("BRL".into())),
    )?;

    Ok(Outcome::Order(Box::new(OrderDraft {
        kind: Some(kind),
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
        order_id,
        ..OrderDraft::default()
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    const PAID: &str = r#"{"order":{"order_id":"kw-1","order_status":"paid","webhook_event_type":"order_approved",
      "approved_date":"2026-11-20 10:30","payment_method":"pix",
      "Customer":{"email":"c@example.com","full_name":"João Pereira","mobile":"+5511987654321","CPF":"00000000000","ip":"198.51.100.4"},
      "Product":{"product_id":"p-9","product_name":"Mentoria"},
      "Commissions":{"charge_amount":"29700","currency":"BRL"},
      "TrackingParameters":{"sck":"sess-3","utm_source":"facebook","utm_campaign":"bf","fbclid":"IwAR_Kw"}}}"#;

    fn sign(token: &str, body: &str) -> String {
        super::sign(token, body.as_bytes())
    }

    #[test]
    fn an_empty_token_is_no_key() {
        // Anyone can compute HMAC-SHA1 with an empty key.
        let mut tenant = TenantConfig::new("acme");
        tenant.kiwify_token = Some(Secret::from(""));
        let query = QueryParams::parse(Some(&format!("tenant=acme&signature={}", sign("", PAID))));
        assert!(matches!(
            handle(&tenant, &query, PAID.as_bytes()),
            Err(ApiError::Unauthorized(_))
        ));
    }

    #[test]
    fn signed_order_is_accepted_and_tampered_refused() {
        let mut tenant = TenantConfig::new("acme");
        tenant.kiwify_token = Some(Secret::from("kiwi-token"));
        let query = QueryParams::parse(Some(&format!(
            "tenant=acme&signature={}",
            sign("kiwi-token", PAID)
        )));
        let Outcome::Order(draft) = handle(&tenant, &query, PAID.as_bytes()).expect("valid") else {
            panic!("ignored")
        };
        let order = draft.finish(&tenant, funnelhub_schemas::common::Gateway::Kiwify, 0);
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
        let tampered = PAID.replace("29700", "2970");
        assert!(matches!(
            handle(&tenant, &query, tampered.as_bytes()),
            Err(ApiError::Unauthorized(_))
        ));
        let unsigned = QueryParams::parse(Some("tenant=acme"));
        assert!(matches!(
            handle(&tenant, &unsigned, PAID.as_bytes()),
            Err(ApiError::Unauthorized(_))
        ));
    }

    #[test]
    fn statuses() {
        let kind = |json: &str| match normalize(&serde_json::from_str(json).expect("json")) {
            Ok(Outcome::Order(d)) => format!("{:?}", d.kind),
            Ok(Outcome::Ignored(t)) => format!("ignored {t}"),
            Err(e) => format!("error {e}"),
        };
        assert_eq!(
            kind(r#"{"order_id":"1","order_status":"refunded"}"#),
            "Some(Refund)"
        );
        assert_eq!(
            kind(r#"{"order_id":"1","webhook_event_type":"chargeback"}"#),
            "Some(Chargeback)"
        );
        assert_eq!(
            kind(r#"{"order_id":"1","webhook_event_type":"pix_created"}"#),
            "ignored pix_created"
        );
        assert_eq!(
            kind(r#"{"order_status":"paid"}"#),
            "error order_id: required"
        );
    }
}

//! Gateway and onboarding-portal webhooks.
//!
//! Each gateway module checks authenticity the way that gateway documents it
//! (`authenticate`), then maps its payload onto an [`OrderDraft`] (`normalize`);
//! [`OrderDraft::finish`] turns every draft into the canonical [`OrderEvent`] the same way
//! (deterministic id, hashed identity, envelope).
//!
//! Contract: a delivery whose signature is valid and whose body is JSON is always
//! accepted ([`deliver`]). Event types that mean something to the funnel become events;
//! every other one, and one of a mapped type whose body lacks a field the mapping needs,
//! is kept raw ([`raw`]) with the gateway's own event name. Only a bad signature, an
//! unknown tenant or a body that is not JSON is refused: a gateway that keeps getting 4xx
//! retries, and may switch the URL off.

pub mod hotmart;
pub mod kiwify;
pub mod onboard;
pub mod raw;
pub mod stripe;

use funnelhub_schemas::common::{ClickIds, Consent, Envelope, EventType, Gateway, Source, Utm};
use funnelhub_schemas::events::{gateway_name, OrderEvent, RawWebhook, RawWebhookReason};
use funnelhub_schemas::identity::RawIdentity;
use funnelhub_schemas::ids::order_event_id;
use funnelhub_schemas::SCHEMA_VERSION;
use hmac::digest::KeyInit;
use hmac::Mac;
use subtle::ConstantTimeEq;

use crate::config::{Secret, TenantConfig};
use crate::tracking::build_fbc;
use crate::validate::phone_rules;
use funnelhub_runtime::api::ApiError;

use raw::{Described, Unmapped};

/// What a gateway's mapping makes of a verified body.
#[derive(Debug)]
pub enum Outcome {
    /// An order event (purchase, pending payment, abandoned checkout, renewal...).
    Order(Box<OrderDraft>),
    /// A type funnelhub does not turn into an event: kept raw under its own name.
    Unused(Described),
}

/// What a verified delivery becomes: an event, or a record kept raw.
#[derive(Debug)]
pub enum Delivery {
    Event(Box<OrderEvent>),
    Kept(Box<RawWebhook>),
}

impl Delivery {
    /// The gateway's event name (`PURCHASE_APPROVED`, `pix_created`, `invoice.paid`).
    pub fn gateway_event(&self) -> &str {
        match self {
            Delivery::Event(order) => &order.gateway_status,
            Delivery::Kept(raw) => &raw.event_name,
        }
    }
}

/// Map a verified delivery of `gateway` (its parsed body `event`, raw bytes `body`):
/// an [`OrderEvent`], or a [`RawWebhook`] when it is of a type funnelhub does not map or
/// lacks a field the mapping needs. Never refuses.
pub fn deliver(
    gateway: Gateway,
    tenant: &TenantConfig,
    body: &[u8],
    event: &serde_json::Value,
    received_at: i64,
) -> Delivery {
    let mapped = match gateway {
        Gateway::Hotmart => hotmart::normalize(event),
        Gateway::Kiwify => kiwify::normalize(event),
        Gateway::Stripe | Gateway::Unknown => stripe::normalize(event),
    };
    let unmapped = match mapped {
        Ok(Outcome::Order(draft)) => {
            return Delivery::Event(Box::new(draft.finish(tenant, gateway, received_at)))
        }
        Ok(Outcome::Unused(described)) => Unmapped {
            described,
            reason: RawWebhookReason::UnusedEvent,
            field: None,
        },
        Err(error) => Unmapped {
            described: match gateway {
                Gateway::Hotmart => hotmart::describe(event),
                Gateway::Kiwify => kiwify::describe(event),
                Gateway::Stripe | Gateway::Unknown => stripe::describe(event),
            },
            reason: RawWebhookReason::Unmappable,
            field: match error {
                ApiError::InvalidField { field, .. } => Some(field),
                _ => None,
            },
        },
    };
    Delivery::Kept(Box::new(raw::keep(
        &tenant.id,
        gateway,
        body,
        event,
        unmapped,
        received_at,
    )))
}

/// A gateway order before the common finishing steps. No `Debug` of personal data.
#[derive(Default)]
pub struct OrderDraft {
    /// Purchase, refund, chargeback, cancel, checkout abandoned, payment pending or
    /// failed, subscription renewed or canceled, plan changed.
    pub kind: Option<EventType>,
    pub order_id: String,
    /// Extra part of the event id when one order can have several events of one kind
    /// (partial refunds of different amounts).
    pub id_discriminator: Option<String>,
    pub gateway_event_id: Option<String>,
    pub gateway_status: String,
    pub occurred_at: Option<i64>,
    pub amount_minor: Option<i64>,
    pub currency: Option<String>,
    pub product_id: Option<String>,
    pub product_name: Option<String>,
    pub payment_method: Option<String>,
    pub original_order_id: Option<String>,
    pub session_id: Option<String>,
    pub utm: Utm,
    pub click_ids: ClickIds,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub identity: RawIdentity,
    pub consent_ads: Option<bool>,
    pub subscription_id: Option<String>,
    pub plan: Option<String>,
}

impl std::fmt::Debug for OrderDraft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderDraft")
            .field("kind", &self.kind)
            .field("order_id", &self.order_id)
            .field("gateway_status", &self.gateway_status)
            .finish_non_exhaustive()
    }
}

impl OrderDraft {
    /// The canonical event. Its id is a function of tenant, gateway, order, kind (and
    /// discriminator): every retry of the same webhook gets the same id.
    pub fn finish(self, tenant: &TenantConfig, gateway: Gateway, received_at: i64) -> OrderEvent {
        let kind = self.kind.unwrap_or(EventType::Unknown);
        let event_id = order_event_id(
            &tenant.id,
            gateway_name(gateway),
            &self.order_id,
            kind.as_str(),
            self.id_discriminator.as_deref(),
        );
        let occurred_at = self.occurred_at.unwrap_or(received_at);
        let mut click_ids = self.click_ids;
        // Meta wants `fbc`; a gateway that only carries the fbclid gets one built like the
        // tracking endpoints do (click time unknown: the order's time bounds it).
        if click_ids.fbc.is_none() {
            click_ids.fbc = click_ids
                .fbclid
                .as_deref()
                .map(|fbclid| build_fbc(fbclid, None, occurred_at));
        }
        let source = match gateway {
            Gateway::Hotmart => Source::Hotmart,
            Gateway::Kiwify => Source::Kiwify,
            Gateway::Stripe => Source::Stripe,
            Gateway::Unknown => Source::Unknown,
        };
        OrderEvent {
            envelope: Envelope {
                event_id,
                tenant_id: tenant.id.clone(),
                event_type: kind,
                occurred_at,
                received_at,
                source,
                schema_version: SCHEMA_VERSION,
                consent: Consent {
                    ads: self.consent_ads.unwrap_or(tenant.consent_ads_default),
                    analytics: tenant.consent_analytics_default,
                },
                identity: self.identity.hash(&phone_rules(tenant)),
            },
            gateway,
            order_id: self.order_id,
            gateway_event_id: self.gateway_event_id,
            gateway_status: self.gateway_status,
            amount_minor: self.amount_minor,
            currency: self.currency,
            product_id: self.product_id,
            product_name: self.product_name,
            payment_method: self.payment_method,
            original_order_id: self.original_order_id,
            session_id: self.session_id,
            utm: self.utm,
            click_ids,
            client_ip: self.client_ip,
            user_agent: self.user_agent,
            subscription_id: self.subscription_id,
            plan: self.plan,
        }
    }
}

/// Constant-time comparison of a presented secret with the configured one; never true for
/// a configured secret too short to be one (an empty one would match an empty header).
pub fn secret_matches(presented: &str, expected: &Secret) -> bool {
    expected.is_usable() && bool::from(presented.as_bytes().ct_eq(expected.expose().as_bytes()))
}

/// Constant-time check of a hex MAC of `message` keyed with `key`.
pub fn hex_mac_matches<M: Mac + KeyInit>(
    key: &[u8],
    message: &[&[u8]],
    hex_signature: &str,
) -> bool {
    let Ok(signature) = hex::decode(hex_signature.trim()) else {
        return false;
    };
    let Ok(mut mac) = <M as KeyInit>::new_from_slice(key) else {
        return false;
    };
    for part in message {
        mac.update(part);
    }
    mac.verify_slice(&signature).is_ok()
}

/// A non-empty string at a JSON path, or `None`.
pub(crate) fn str_at<'a>(value: &'a serde_json::Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(value, |v, key| v.get(key))
        .and_then(serde_json::Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// An owned non-empty string at a JSON path.
pub(crate) fn string_at(value: &serde_json::Value, path: &[&str]) -> Option<String> {
    str_at(value, path).map(str::to_owned)
}

/// A string or integer id at a JSON path (`"4242"` or `4242`).
pub(crate) fn id_at(value: &serde_json::Value, path: &[&str]) -> Option<String> {
    string_at(value, path).or_else(|| {
        path.iter()
            .try_fold(value, |v, key| v.get(key))
            .and_then(serde_json::Value::as_i64)
            .map(|n| n.to_string())
    })
}

/// Query parameters of a URL string (`sck`, `utm_*` of a checkout link).
pub(crate) fn url_params(url: Option<&str>) -> Vec<(String, String)> {
    url.and_then(|u| url::Url::parse(u).ok())
        .map(|u| {
            u.query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// A number at a JSON path, also when sent as a string ("1990").
pub(crate) fn number_at(value: &serde_json::Value, path: &[&str]) -> Option<f64> {
    let v = path.iter().try_fold(value, |v, key| v.get(key))?;
    v.as_f64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

/// A required string at a JSON path, or a 400 naming the path.
pub(crate) fn required_at(value: &serde_json::Value, path: &[&str]) -> Result<String, ApiError> {
    string_at(value, path).ok_or_else(|| ApiError::missing(&path.join(".")))
}

/// UTM parameters from a JSON object holding `utm_source`... keys.
pub(crate) fn utm_from(value: &serde_json::Value, path: &[&str]) -> Utm {
    let get = |key: &str| {
        let mut full = path.to_vec();
        full.push(key);
        string_at(value, &full)
    };
    Utm {
        source: get("utm_source"),
        medium: get("utm_medium"),
        campaign: get("utm_campaign"),
        content: get("utm_content"),
        term: get("utm_term"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_and_secrets_compare_correctly() {
        type HmacSha256 = hmac::Hmac<sha2::Sha256>;
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(b"key").expect("key");
        mac.update(b"a.b");
        let good = hex::encode(mac.finalize().into_bytes());
        assert!(hex_mac_matches::<HmacSha256>(
            b"key",
            &[b"a", b".", b"b"],
            &good
        ));
        assert!(!hex_mac_matches::<HmacSha256>(b"key", &[b"a.c"], &good));
        assert!(!hex_mac_matches::<HmacSha256>(b"other", &[b"a.b"], &good));
        assert!(!hex_mac_matches::<HmacSha256>(b"key", &[b"a.b"], "zz"));
        assert!(secret_matches(
            "s3cret-s3cret",
            &Secret::from("s3cret-s3cret")
        ));
        assert!(!secret_matches(
            "s3cret-s3cre",
            &Secret::from("s3cret-s3cret")
        ));
        assert!(
            !secret_matches("", &Secret::from("")),
            "an empty secret authenticates nothing"
        );
    }
}

//! Edge events: what `ingest/` produces to the raw topics.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::catalog::key;
use crate::common::{ClickIds, Envelope, Gateway, Utm};

/// `io.funnelhub.events.TrackingHit`: click, pageview or initiate_checkout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackingHit {
    pub envelope: Envelope,
    pub session_id: String,
    /// The browser pixel's `eventID`, when sent.
    pub client_event_id: Option<String>,
    pub page_url: Option<String>,
    pub referrer: Option<String>,
    pub utm: Utm,
    pub click_ids: ClickIds,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    /// initiate_checkout: cart value in major units.
    pub value: Option<f64>,
    pub currency: Option<String>,
    pub content_ids: Vec<String>,
}

/// `io.funnelhub.events.OrderEvent`: a gateway order event (purchase, refund, chargeback,
/// cancel, checkout abandoned, payment pending or failed, subscription renewed, canceled
/// or changed plan).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderEvent {
    pub envelope: Envelope,
    pub gateway: Gateway,
    pub order_id: String,
    pub gateway_event_id: Option<String>,
    pub gateway_status: String,
    /// Minor units of `currency`.
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
    /// The gateway's subscription the order belongs to.
    #[serde(default)]
    pub subscription_id: Option<String>,
    /// The subscription plan; for `plan_changed`, the new one.
    #[serde(default)]
    pub plan: Option<String>,
}

/// `io.funnelhub.events.RawWebhookReason`: why a signed delivery was kept raw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawWebhookReason {
    /// An event type funnelhub does not turn into an event.
    UnusedEvent,
    /// A type it maps, whose body lacks or garbles a field it needs.
    Unmappable,
    /// Written by a newer producer with a symbol this reader does not know.
    Unknown,
}

impl RawWebhookReason {
    /// The Avro symbol.
    pub fn as_str(self) -> &'static str {
        match self {
            RawWebhookReason::UnusedEvent => "unused_event",
            RawWebhookReason::Unmappable => "unmappable",
            RawWebhookReason::Unknown => "unknown",
        }
    }
}

/// `io.funnelhub.events.RawWebhook`: a signed gateway delivery kept as sent (personal
/// values redacted) because it did not become an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawWebhook {
    pub webhook_id: String,
    pub tenant_id: String,
    pub gateway: Gateway,
    pub event_name: String,
    pub gateway_event_id: Option<String>,
    pub order_id: Option<String>,
    pub reason: RawWebhookReason,
    /// `Unmappable`: the field that was missing or invalid.
    pub field: Option<String>,
    pub received_at: i64,
    /// The body as JSON, personal values redacted.
    pub payload: String,
}

impl RawWebhook {
    /// Its partition key: `tenant_id:gateway:webhook_id`.
    pub fn key(&self) -> String {
        key(&[
            &self.tenant_id,
            gateway_name(self.gateway),
            &self.webhook_id,
        ])
    }
}

/// `io.funnelhub.events.OnboardingEvent`: an onboarding-portal milestone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OnboardingEvent {
    pub envelope: Envelope,
    pub session_id: String,
    pub domain: String,
    /// The portal's `data`, flattened to strings, personal data removed or hashed.
    pub attributes: BTreeMap<String, String>,
}

/// Any edge event: the union carried by [`crate::derived::DedupedEvent`].
/// Variant order is the Avro union order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EdgeEvent {
    TrackingHit(TrackingHit),
    OrderEvent(OrderEvent),
    OnboardingEvent(OnboardingEvent),
}

impl EdgeEvent {
    /// The dedupe key of the event, scoped by tenant: two events with the same key are the
    /// same occurrence (the dedupe processor keeps the first; analysts group raw copies by
    /// it):
    /// - tracking hits: event type and `event_id` (the browser's id when it sent one);
    /// - gateway orders: `event_id`, a function of gateway, order id and canonical status;
    /// - onboarding: the seeds' rule, `(event_type, session_id, domain)`.
    pub fn dedupe_key(&self) -> String {
        let envelope = self.envelope();
        match self {
            EdgeEvent::TrackingHit(_) => key(&[
                &envelope.tenant_id,
                "track",
                envelope.event_type.as_str(),
                &envelope.event_id,
            ]),
            EdgeEvent::OrderEvent(_) => key(&[&envelope.tenant_id, "order", &envelope.event_id]),
            EdgeEvent::OnboardingEvent(e) => key(&[
                &envelope.tenant_id,
                "onboarding",
                envelope.event_type.as_str(),
                &e.session_id,
                &e.domain,
            ]),
        }
    }

    /// The record key: every event of one session, or of one order, shares a partition.
    pub fn key(&self) -> String {
        match self {
            EdgeEvent::TrackingHit(e) => key(&[&e.envelope.tenant_id, &e.session_id]),
            EdgeEvent::OrderEvent(e) => {
                key(&[&e.envelope.tenant_id, gateway_name(e.gateway), &e.order_id])
            }
            EdgeEvent::OnboardingEvent(e) => key(&[&e.envelope.tenant_id, &e.session_id]),
        }
    }

    /// The common envelope of whichever event this is.
    pub fn envelope(&self) -> &Envelope {
        match self {
            EdgeEvent::TrackingHit(e) => &e.envelope,
            EdgeEvent::OrderEvent(e) => &e.envelope,
            EdgeEvent::OnboardingEvent(e) => &e.envelope,
        }
    }
}

/// The gateway's name as used in keys and URLs.
pub fn gateway_name(gateway: Gateway) -> &'static str {
    match gateway {
        Gateway::Hotmart => "hotmart",
        Gateway::Kiwify => "kiwify",
        Gateway::Stripe => "stripe",
        Gateway::Unknown => "unknown",
    }
}

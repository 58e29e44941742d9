//! Dispatch requests for Meta's Conversions API, built where the matched visit is known so
//! the CAPI sink only delivers.
//!
//! - Purchases become `Purchase` with the order's value, currency, product and identity,
//!   completed by the matched visit: its `fbc`/`fbp`, client IP, user agent and landing URL
//!   (the real browser's), and any hashed identifier the order lacks. `event_id` is the
//!   order id, as Meta suggests, so a browser `Purchase` sent with the order id deduplicates.
//! - Landing-page hits become `PageView` / `InitiateCheckout` with the hit's own
//!   `event_id` (the browser pixel's when it sent one). A `click` is not sent: the landing
//!   page reports the same load as a page view.
//! - Abandoned checkouts become the tenant's custom event
//!   (`meta_abandoned_checkout_event`), built like a purchase, only when the tenant named
//!   one.
//! - Pending and failed payments, renewals, subscription cancellations and plan changes,
//!   refunds, chargebacks and cancels are matched and linked but not sent: Meta has no
//!   standard event for them, and a pending payment later paid is sent once, as its
//!   `Purchase`.
//!
//! A request whose visit or order withheld ad consent, or whose tenant has no pixel, is
//! still written, marked blocked with the reason: the sink records it and sends nothing.

use std::collections::BTreeMap;

use funnelhub_schemas::common::{minor_to_major, EventType, HashedIdentity};
use funnelhub_schemas::derived::CapiDispatchRequest;
use funnelhub_schemas::events::{OrderEvent, TrackingHit};
use funnelhub_schemas::ids::deterministic_id;
use funnelhub_tenants::TenantDirectory;

use super::visits::VisitView;

/// `blocked_reason` when the visit or the order said no to ads.
pub const BLOCKED_CONSENT: &str = "consent_ads=false";
/// `blocked_reason` when the tenant has no Meta pixel configured.
pub const BLOCKED_NO_PIXEL: &str = "no_meta_pixel";

/// `action_source` of an event seen in a browser (page URL and user agent known).
pub const ACTION_WEBSITE: &str = "website";
/// `action_source` of a conversion without browser context (an unmatched gateway order).
pub const ACTION_OTHER: &str = "other";

/// Meta's standard event for an event type, if it is sent at all.
pub fn meta_event_name(event_type: EventType) -> Option<&'static str> {
    match event_type {
        EventType::Pageview => Some("PageView"),
        EventType::InitiateCheckout => Some("InitiateCheckout"),
        EventType::Purchase => Some("Purchase"),
        _ => None,
    }
}

/// Where each tenant's Meta pixel and custom event names are found.
pub trait Pixels {
    fn pixel(&self, tenant_id: &str) -> Option<String>;

    /// The custom event name the tenant sends `event_type` as, if any.
    fn custom_event(&self, _tenant_id: &str, _event_type: EventType) -> Option<String> {
        None
    }
}

/// The live tenants (`[[tenants]] meta_pixel_id`, or the control topic's).
impl Pixels for TenantDirectory {
    fn pixel(&self, tenant_id: &str) -> Option<String> {
        self.get(tenant_id)?.meta_pixel_id.clone()
    }

    fn custom_event(&self, tenant_id: &str, event_type: EventType) -> Option<String> {
        match event_type {
            EventType::CheckoutAbandoned => {
                self.get(tenant_id)?.meta_abandoned_checkout_event.clone()
            }
            _ => None,
        }
    }
}

/// Tenant id → pixel id.
impl Pixels for BTreeMap<String, String> {
    fn pixel(&self, tenant_id: &str) -> Option<String> {
        self.get(tenant_id).cloned()
    }
}

/// The request for a landing-page hit.
pub fn for_hit(hit: &TrackingHit, pixels: &impl Pixels) -> Option<CapiDispatchRequest> {
    let event_name = meta_event_name(hit.envelope.event_type)?;
    let envelope = &hit.envelope;
    Some(finish(
        CapiDispatchRequest {
            dispatch_id: String::new(),
            tenant_id: envelope.tenant_id.clone(),
            pixel_id: String::new(),
            event_name: event_name.into(),
            event_id: envelope.event_id.clone(),
            event_time: envelope.occurred_at,
            action_source: String::new(),
            event_source_url: hit.page_url.clone(),
            identity: envelope.identity.clone(),
            click_ids: hit.click_ids.clone(),
            client_ip: hit.client_ip.clone(),
            user_agent: hit.user_agent.clone(),
            value: hit.value,
            currency: hit.currency.clone(),
            content_ids: hit.content_ids.clone(),
            order_id: None,
            consent_ads: envelope.consent.ads,
            blocked_reason: None,
            match_id: None,
        },
        pixels,
    ))
}

/// The request for a conversion matched to `visit` (or to nothing).
pub fn for_conversion(
    order: &OrderEvent,
    visit: Option<&VisitView<'_>>,
    match_id: &str,
    pixels: &impl Pixels,
) -> Option<CapiDispatchRequest> {
    let envelope = &order.envelope;
    let event_name = match meta_event_name(envelope.event_type) {
        Some(name) => name.to_owned(),
        None => pixels.custom_event(&envelope.tenant_id, envelope.event_type)?,
    };
    let mut click_ids = order.click_ids.clone();
    let mut identity = envelope.identity.clone();
    let (mut client_ip, mut user_agent, mut url) =
        (order.client_ip.clone(), order.user_agent.clone(), None);
    let mut consent_ads = envelope.consent.ads;
    if let Some(visit) = visit {
        // The visit's browser identifiers are the real ones; the order's only fill gaps.
        let owned = |v: Option<&str>| v.map(str::to_owned);
        click_ids.fbc = owned(visit.first(|h| h.click_ids.fbc.as_deref())).or(click_ids.fbc);
        click_ids.fbp = owned(visit.first(|h| h.click_ids.fbp.as_deref())).or(click_ids.fbp);
        click_ids.fbclid =
            owned(visit.first(|h| h.click_ids.fbclid.as_deref())).or(click_ids.fbclid);
        client_ip = owned(visit.latest(|h| h.client_ip.as_deref())).or(client_ip);
        user_agent = owned(visit.latest(|h| h.user_agent.as_deref())).or(user_agent);
        url = owned(visit.landing_url());
        identity = fill(identity, visit.identity());
        consent_ads &= visit.consent_ads();
    }
    let currency = order.currency.clone();
    Some(finish(
        CapiDispatchRequest {
            dispatch_id: String::new(),
            tenant_id: envelope.tenant_id.clone(),
            pixel_id: String::new(),
            event_name,
            event_id: order.order_id.clone(),
            event_time: envelope.occurred_at,
            action_source: String::new(),
            event_source_url: url,
            identity,
            click_ids,
            client_ip,
            user_agent,
            value: order
                .amount_minor
                .map(|minor| minor_to_major(minor, currency.as_deref().unwrap_or_default())),
            currency,
            content_ids: order.product_id.iter().cloned().collect(),
            order_id: Some(order.order_id.clone()),
            consent_ads,
            blocked_reason: None,
            match_id: Some(match_id.to_owned()),
        },
        pixels,
    ))
}

/// Every field of `first`, completed by `second` where `first` has none.
fn fill(first: HashedIdentity, second: HashedIdentity) -> HashedIdentity {
    HashedIdentity {
        email_hash: first.email_hash.or(second.email_hash),
        phone_hash: first.phone_hash.or(second.phone_hash),
        first_name_hash: first.first_name_hash.or(second.first_name_hash),
        last_name_hash: first.last_name_hash.or(second.last_name_hash),
        city_hash: first.city_hash.or(second.city_hash),
        state_hash: first.state_hash.or(second.state_hash),
        zip_hash: first.zip_hash.or(second.zip_hash),
        country_hash: first.country_hash.or(second.country_hash),
        gender_hash: first.gender_hash.or(second.gender_hash),
        birth_date_hash: first.birth_date_hash.or(second.birth_date_hash),
        external_id_hash: first.external_id_hash.or(second.external_id_hash),
    }
}

/// Pixel, deterministic dispatch id and blocked reason.
fn finish(mut request: CapiDispatchRequest, pixels: &impl Pixels) -> CapiDispatchRequest {
    // Meta refuses a `website` event without the page URL and the browser's user agent
    // (an order no visit explains has neither): such an event is reported as `other`, so
    // Meta takes it instead of the whole batch failing into the DLQ.
    request.action_source = if request.event_source_url.is_some() && request.user_agent.is_some() {
        ACTION_WEBSITE
    } else {
        ACTION_OTHER
    }
    .into();
    request.pixel_id = pixels.pixel(&request.tenant_id).unwrap_or_default();
    request.dispatch_id = deterministic_id(
        "capi",
        &[
            &request.tenant_id,
            &request.pixel_id,
            &request.event_name,
            &request.event_id,
        ],
    );
    request.blocked_reason = if !request.consent_ads {
        Some(BLOCKED_CONSENT.into())
    } else if request.pixel_id.is_empty() {
        Some(BLOCKED_NO_PIXEL.into())
    } else {
        None
    };
    request
}

#[cfg(test)]
mod tests {
    use super::*;
    use funnelhub_schemas::testing::{sample_order_event, sample_tracking_hit};

    fn pixels() -> BTreeMap<String, String> {
        [("acme".to_string(), "1234567890".to_string())].into()
    }

    #[test]
    fn a_purchase_takes_the_visits_browser_identifiers() {
        let mut visits = super::super::visits::Visits::default();
        let mut hit = sample_tracking_hit();
        hit.click_ids.fbc = Some("fb.1.1700000000000.VISIT".into());
        hit.client_ip = Some("198.51.100.1".into());
        visits.add(hit.clone());
        let view = visits
            .session(&hit.envelope.tenant_id, &hit.session_id)
            .and_then(|v| v.view(i64::MAX))
            .expect("view");
        let mut order = sample_order_event();
        order.envelope.event_type = EventType::Purchase;
        order.client_ip = Some("203.0.113.200".into());
        order.amount_minor = Some(19_790);
        order.currency = Some("BRL".into());
        let request = for_conversion(&order, Some(&view), "m-1", &pixels()).expect("sent");
        assert_eq!(request.event_name, "Purchase");
        assert_eq!(request.event_id, order.order_id);
        assert_eq!(
            request.click_ids.fbc.as_deref(),
            Some("fb.1.1700000000000.VISIT")
        );
        assert_eq!(request.client_ip.as_deref(), Some("198.51.100.1"));
        assert_eq!(request.value, Some(197.9));
        assert_eq!(request.pixel_id, "1234567890");
        assert_eq!(request.blocked_reason, None);
        assert_eq!(request.match_id.as_deref(), Some("m-1"));
        assert_eq!(
            request.action_source, ACTION_WEBSITE,
            "the visit's page and browser"
        );
    }

    #[test]
    fn an_order_without_browser_context_is_not_a_website_event() {
        let mut order = sample_order_event();
        order.envelope.event_type = EventType::Purchase;
        order.user_agent = None;
        let request = for_conversion(&order, None, "m-2", &pixels()).expect("sent");
        assert_eq!(request.event_source_url, None);
        assert_eq!(
            request.action_source, ACTION_OTHER,
            "Meta refuses website events without URL and user agent"
        );
    }

    #[test]
    fn consent_and_missing_pixels_block() {
        let mut hit = sample_tracking_hit();
        hit.envelope.event_type = EventType::Pageview;
        hit.envelope.consent.ads = false;
        let blocked = for_hit(&hit, &pixels()).expect("page view");
        assert_eq!(blocked.blocked_reason.as_deref(), Some(BLOCKED_CONSENT));
        hit.envelope.consent.ads = true;
        let no_pixel = for_hit(&hit, &BTreeMap::new()).expect("page view");
        assert_eq!(no_pixel.blocked_reason.as_deref(), Some(BLOCKED_NO_PIXEL));
        hit.envelope.event_type = EventType::Click;
        assert!(for_hit(&hit, &pixels()).is_none(), "clicks are not sent");
    }

    #[test]
    fn abandoned_checkouts_are_sent_only_as_the_tenants_custom_event() {
        let mut order = sample_order_event();
        order.envelope.tenant_id = "acme".into();
        order.envelope.event_type = EventType::CheckoutAbandoned;
        let mut tenant = funnelhub_tenants::TenantConfig::new("acme");
        tenant.meta_pixel_id = Some("1234567890".into());
        let directory = TenantDirectory::fixed([tenant.clone()]);
        assert!(
            for_conversion(&order, None, "m-3", &directory).is_none(),
            "not sent unless the tenant names an event"
        );
        tenant.meta_abandoned_checkout_event = Some("AbandonedCheckout".into());
        let directory = TenantDirectory::fixed([tenant]);
        let request = for_conversion(&order, None, "m-3", &directory).expect("sent");
        assert_eq!(request.event_name, "AbandonedCheckout");
        assert_eq!(request.pixel_id, "1234567890");
        // Pending payments and renewals are never sent: the paid order is the Purchase.
        for kind in [
            EventType::PaymentPending,
            EventType::PaymentFailed,
            EventType::SubscriptionRenewed,
            EventType::SubscriptionCanceled,
            EventType::PlanChanged,
        ] {
            order.envelope.event_type = kind;
            assert!(
                for_conversion(&order, None, "m-4", &directory).is_none(),
                "{kind:?}"
            );
        }
    }
}

//! Journeys: what one simulated person does, generated from (seed, index) so a run can be
//! repeated, each with the facts it must leave in the pipeline.
//!
//! - **visit** (70 %): a click from a Facebook ad (with `fbclid`, campaign), then maybe a
//!   page view, a checkout (email), then at the checkout one of: a purchase through one of
//!   the tenant's gateways (60 %; a third of them by Pix or boleto, reported pending
//!   first; some refunded; Hotmart buyers may then open the members' area, an event kept
//!   raw), a checkout abandoned that the gateway reports (20 %), a Pix generated that
//!   expires unpaid (8 %), or nothing. The order reaches the visit by session id (`sck`,
//!   `client_reference_id`), by click id (Kiwify, Stripe) or by the checkout email alone
//!   (Hotmart's abandoned-cart event carries no session). One visit in ten withholds ad
//!   consent: nothing of it may reach Meta.
//! - **direct purchase** (8 %): an order no visit explains (unmatched), some paid late.
//! - **onboarding** (22 %): a portal session through the seven events: most complete, some
//!   fail, some stop half-way; some arrive out of order.
//!
//! Gateways and beacons retry: some deliveries are sent twice.

use funnelhub_ingest::config::TenantConfig;
use funnelhub_schemas::common::EventType;
use funnelhub_schemas::derived::{Funnel, FunnelOutcome, FunnelStage, MatchMethod, TicketKind};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::facts::Facts;
use crate::gateways::{self, Delivery, Gateway, Order, PaymentStep};

const CAMPAIGNS: [&str; 4] = ["black-friday", "webinar", "remarketing", "lookalike"];
const PRODUCTS: [&str; 3] = ["curso-basico", "curso-pro", "mentoria"];
const USER_AGENTS: [&str; 3] = [
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 Chrome/126.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36",
];
/// The onboarding portal's events in stage order, with the stage each one reaches.
const ONBOARDING: [(&str, FunnelStage, EventType); 6] = [
    (
        "onboarding.started",
        FunnelStage::Started,
        EventType::OnboardingStarted,
    ),
    (
        "domain.validated",
        FunnelStage::DomainValidated,
        EventType::DomainValidated,
    ),
    (
        "dns.applied",
        FunnelStage::DnsApplied,
        EventType::DnsApplied,
    ),
    (
        "account.created",
        FunnelStage::AccountCreated,
        EventType::AccountCreated,
    ),
    (
        "infra.synced",
        FunnelStage::InfraSynced,
        EventType::InfraSynced,
    ),
    (
        "onboarding.completed",
        FunnelStage::Completed,
        EventType::OnboardingCompleted,
    ),
];

/// What kind of journey it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum JourneyKind {
    Visit,
    DirectPurchase,
    Onboarding,
}

/// One journey: its requests in sending order and the facts it must produce.
#[derive(Debug, Clone)]
pub struct Journey {
    pub tenant: String,
    pub kind: JourneyKind,
    pub deliveries: Vec<Delivery>,
    pub facts: Facts,
    /// Deliveries that repeat an earlier one (a gateway's or a beacon's retry).
    pub duplicates: u32,
    /// Whether some events are sent in another order than they happened.
    pub out_of_order: bool,
    /// Purchases per gateway.
    pub purchases: Vec<Gateway>,
    pub refunds: u32,
    /// Onboarding: completed, failed or neither.
    pub onboarding_outcome: Option<FunnelOutcome>,
}

/// Journeys of one run over a set of tenants.
#[derive(Debug, Clone)]
pub struct Generator {
    run: String,
    seed: u64,
    tenants: Vec<TenantConfig>,
}

impl Generator {
    /// `run` names the run: every id the journeys create contains it, so a run's facts can
    /// be told apart from earlier runs'. It must be lowercase letters and digits.
    pub fn new(run: &str, seed: u64, tenants: Vec<TenantConfig>) -> anyhow::Result<Generator> {
        anyhow::ensure!(!tenants.is_empty(), "no tenants configured to simulate");
        anyhow::ensure!(
            !run.is_empty()
                && run
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
            "run id {run:?}: lowercase letters and digits only"
        );
        Ok(Generator {
            run: run.to_owned(),
            seed,
            tenants,
        })
    }

    pub fn run(&self) -> &str {
        &self.run
    }

    /// Journey number `index`, its times starting at `now_ms`.
    pub fn journey(&self, index: u64, now_ms: i64) -> Journey {
        let mut rng = StdRng::seed_from_u64(self.seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let tenant = &self.tenants[(index % self.tenants.len() as u64) as usize];
        let gateways = Gateway::configured(tenant);
        let roll: f64 = rng.random();
        if roll < 0.08 && !gateways.is_empty() {
            self.direct_purchase(index, tenant, &gateways, &mut rng, now_ms)
        } else if roll >= 0.78 && tenant.onboard_secret.is_some() {
            self.onboarding(index, tenant, &mut rng, now_ms)
        } else {
            self.visit(index, tenant, &gateways, &mut rng, now_ms)
        }
    }

    fn empty(tenant: &TenantConfig, kind: JourneyKind) -> Journey {
        Journey {
            tenant: tenant.id.clone(),
            kind,
            deliveries: Vec::new(),
            facts: Facts::default(),
            duplicates: 0,
            out_of_order: false,
            purchases: Vec::new(),
            refunds: 0,
            onboarding_outcome: None,
        }
    }

    fn visit(
        &self,
        index: u64,
        tenant: &TenantConfig,
        gateways: &[Gateway],
        rng: &mut StdRng,
        now_ms: i64,
    ) -> Journey {
        let run = &self.run;
        let t = tenant.id.as_str();
        let mut journey = Self::empty(tenant, JourneyKind::Visit);
        let session = format!("{run}-v{index}");
        let consent = rng.random_bool(0.9);
        let campaign = *CAMPAIGNS.choose(rng).unwrap_or(&"bf");
        let product = *PRODUCTS.choose(rng).unwrap_or(&"curso");
        let user_agent = *USER_AGENTS.choose(rng).unwrap_or(&"Mozilla/5.0");
        let fbclid = format!("IwAR{run}x{index}");
        let email = format!("{run}.v{index}@example.com");
        let landing = format!("https://lp.{t}.example.com/oferta");
        let pixel = tenant.meta_pixel_id.as_deref();
        // Dispatch requests are blocked when a hit withheld ad consent; a purchase also
        // when its order did (a gateway says nothing of consent: the tenant's default).
        let blocked_if = |consent: bool| {
            if !consent {
                "consent_ads=false"
            } else if pixel.is_none() {
                "no_meta_pixel"
            } else {
                ""
            }
        };
        let meta_event = |facts: &mut Facts, name: &str, blocked: &str| {
            *facts
                .dispatches
                .entry((t.to_owned(), name.to_owned(), blocked.to_owned()))
                .or_default() += 1;
            if let (Some(pixel), "") = (pixel, blocked) {
                *facts
                    .meta
                    .entry((pixel.to_owned(), name.to_owned()))
                    .or_default() += 1;
            }
        };

        let mut stage = FunnelStage::Click;
        let mut failed = false;
        let mut hits = vec![(
            "click",
            json!({"session_id": session, "event_id": format!("{run}-ck{index}"),
                   "page_url": format!("{landing}?utm_source=facebook&utm_medium=paid&utm_campaign={campaign}&fbclid={fbclid}"),
                   "consent_ads": consent}),
        )];
        journey.facts.event(t, EventType::Click.symbol());
        let pageview = rng.random_bool(0.8);
        let checkout = pageview && rng.random_bool(0.5);
        if pageview {
            hits.push((
                "pageview",
                json!({"session_id": session, "event_id": format!("{run}-pv{index}"),
                       "page_url": landing, "consent_ads": consent}),
            ));
            journey.facts.event(t, EventType::Pageview.symbol());
            meta_event(&mut journey.facts, "PageView", blocked_if(consent));
            stage = FunnelStage::Pageview;
        }
        if checkout {
            let value = rng.random_range(47..=497) as f64;
            hits.push((
                "initiate_checkout",
                json!({"session_id": session, "event_id": format!("{run}-ic{index}"),
                       "page_url": format!("{landing}/checkout"), "email": email,
                       "value": value, "currency": "BRL", "content_ids": [product],
                       "consent_ads": consent}),
            ));
            journey.facts.event(t, EventType::InitiateCheckout.symbol());
            meta_event(&mut journey.facts, "InitiateCheckout", blocked_if(consent));
            stage = FunnelStage::InitiateCheckout;
        }
        for (kind, payload) in &hits {
            journey
                .deliveries
                .push(gateways::hit(t, kind, payload, user_agent));
            if rng.random_bool(0.05) {
                // The beacon is sent again (same client event id).
                journey
                    .deliveries
                    .push(gateways::hit(t, kind, payload, user_agent));
                journey.duplicates += 1;
            }
        }

        if checkout && !gateways.is_empty() {
            let gateway = *gateways.choose(rng).unwrap_or(&gateways[0]);
            let mut methods = vec![MatchMethod::SessionId, MatchMethod::EmailHash];
            if gateway.carries_click_id() {
                methods.push(MatchMethod::ClickId);
            }
            let method = *methods.choose(rng).unwrap_or(&MatchMethod::SessionId);
            let order = Order {
                base_id: format!("{run}o{index}"),
                amount_minor: rng.random_range(4_700..=49_700),
                email: email.clone(),
                name: "Ana Souza".into(),
                product_id: product.into(),
                session_id: (method == MatchMethod::SessionId).then(|| session.clone()),
                fbclid: (method == MatchMethod::ClickId).then(|| fbclid.clone()),
                refund: false,
                at_ms: now_ms,
            };
            let carries_session = order.session_id.is_some();
            let fate: f64 = rng.random();
            if fate < 0.6 {
                if carries_session {
                    stage = FunnelStage::Purchase;
                }
                self.order(
                    &mut journey,
                    tenant,
                    gateway,
                    order,
                    (method.as_str(), &session),
                    rng,
                );
                meta_event(
                    &mut journey.facts,
                    "Purchase",
                    blocked_if(consent && tenant.consent_ads_default),
                );
                if gateway == Gateway::Hotmart && rng.random_bool(0.3) {
                    let base = format!("{run}o{index}");
                    journey.deliveries.push(gateways::first_access_webhook(
                        tenant,
                        &base,
                        &email,
                        now_ms + 2_000,
                    ));
                    *journey
                        .facts
                        .raw_webhooks
                        .entry((t.to_owned(), "hotmart".into(), "CLUB_FIRST_ACCESS".into()))
                        .or_default() += 1;
                }
            } else if fate < 0.8 {
                // Left at the checkout; the gateway reports the abandoned cart. Hotmart's
                // report carries no session: the checkout email finds the visit.
                let cart = format!("{run}a{index}");
                let with_session = gateway != Gateway::Hotmart;
                let webhook = gateways::abandoned_webhook(
                    tenant,
                    gateway,
                    &cart,
                    &email,
                    with_session.then_some(session.as_str()),
                    now_ms,
                );
                Self::send(&mut journey, webhook, rng);
                let order_id = match gateway {
                    Gateway::Stripe => format!("cs_{cart}"),
                    _ => cart,
                };
                let method = if with_session {
                    stage = FunnelStage::CheckoutAbandoned;
                    MatchMethod::SessionId
                } else {
                    MatchMethod::EmailHash
                };
                journey
                    .facts
                    .event(t, EventType::CheckoutAbandoned.symbol());
                journey.facts.matches.insert(
                    (
                        t.to_owned(),
                        order_id,
                        EventType::CheckoutAbandoned.symbol().to_owned(),
                    ),
                    (method.as_str().to_owned(), session.clone()),
                );
                if let Some(name) = &tenant.meta_abandoned_checkout_event {
                    meta_event(
                        &mut journey.facts,
                        name,
                        blocked_if(consent && tenant.consent_ads_default),
                    );
                }
            } else if fate < 0.88 {
                // A Pix generated and never paid: pending, then expired.
                let order_id = gateway.order_id(&order.base_id);
                for (step, kind) in [
                    (PaymentStep::Pending, EventType::PaymentPending),
                    (PaymentStep::Failed, EventType::PaymentFailed),
                ] {
                    let webhook = gateways::payment_webhook(tenant, gateway, &order, step);
                    Self::send(&mut journey, webhook, rng);
                    journey.facts.event(t, kind.symbol());
                    journey.facts.matches.insert(
                        (t.to_owned(), order_id.clone(), kind.symbol().to_owned()),
                        (method.as_str().to_owned(), session.clone()),
                    );
                }
                if carries_session {
                    stage = FunnelStage::PaymentPending;
                    failed = true;
                }
            }
        }
        let outcome = if stage == FunnelStage::Purchase {
            FunnelOutcome::Completed
        } else if failed {
            FunnelOutcome::Failed
        } else {
            FunnelOutcome::InProgress
        };
        journey.facts.sessions.insert(
            (t.to_owned(), Funnel::Tracking.as_str().to_owned(), session),
            (stage.as_str().to_owned(), outcome.as_str().to_owned()),
        );
        journey
    }

    /// The purchase webhooks of `order` and their facts; `matched` is the (method,
    /// session) the matcher must find. 35 % are paid by Pix or boleto (reported pending
    /// before paid), 15 % are refunded; a subscription may renew and be canceled.
    fn order(
        &self,
        journey: &mut Journey,
        tenant: &TenantConfig,
        gateway: Gateway,
        order: Order,
        matched: (&str, &str),
        rng: &mut StdRng,
    ) {
        let t = tenant.id.as_str();
        let refund = rng.random_bool(0.15);
        let delayed = rng.random_bool(0.35);
        let order_id = gateway.order_id(&order.base_id);
        let mut webhooks = Vec::new();
        if delayed {
            webhooks.push(gateways::payment_webhook(
                tenant,
                gateway,
                &order,
                PaymentStep::Pending,
            ));
            webhooks.push(gateways::payment_webhook(
                tenant,
                gateway,
                &order,
                PaymentStep::Paid,
            ));
            journey.facts.event(t, EventType::PaymentPending.symbol());
            journey.facts.matches.insert(
                (
                    t.to_owned(),
                    order_id.clone(),
                    EventType::PaymentPending.symbol().to_owned(),
                ),
                (matched.0.to_owned(), matched.1.to_owned()),
            );
        } else {
            webhooks.push(gateways::order_webhook(tenant, gateway, &order));
        }
        journey.facts.event(t, EventType::Purchase.symbol());
        journey.facts.matches.insert(
            (
                t.to_owned(),
                order_id.clone(),
                EventType::Purchase.symbol().to_owned(),
            ),
            (matched.0.to_owned(), matched.1.to_owned()),
        );
        journey.purchases.push(gateway);
        if refund {
            let refunded = Order {
                refund: true,
                at_ms: order.at_ms + 1_000,
                ..order.clone()
            };
            webhooks.push(gateways::order_webhook(tenant, gateway, &refunded));
            journey.facts.event(t, EventType::Refund.symbol());
            journey.facts.matches.insert(
                (
                    t.to_owned(),
                    order_id.clone(),
                    EventType::Refund.symbol().to_owned(),
                ),
                (matched.0.to_owned(), matched.1.to_owned()),
            );
            journey.refunds += 1;
        }
        // A subscription (the mentoring is sold monthly): half renew once, some of those
        // then cancel.
        if !refund && order.product_id == "mentoria" && rng.random_bool(0.5) {
            let charge = format!("{}r1", order.base_id);
            let renewal_id = match gateway {
                Gateway::Stripe => format!("in_{charge}"),
                _ => charge,
            };
            webhooks.push(gateways::renewal_webhook(tenant, gateway, &order, 1));
            // Stripe's invoice names only the customer's email.
            let renewal_method = match (gateway, matched.0) {
                (Gateway::Stripe, "unmatched") => matched.0,
                (Gateway::Stripe, _) => MatchMethod::EmailHash.as_str(),
                _ => matched.0,
            };
            self.conversion(
                journey,
                t,
                &renewal_id,
                EventType::SubscriptionRenewed,
                (renewal_method, matched.1),
            );
            if rng.random_bool(0.3) {
                webhooks.push(gateways::cancellation_webhook(tenant, gateway, &order));
                let (subscription, method) = match gateway {
                    // Hotmart's cancellation names the subscriber's email.
                    Gateway::Hotmart => (
                        format!("sub{}", order.base_id),
                        if matched.0 == "unmatched" {
                            matched.0
                        } else {
                            MatchMethod::EmailHash.as_str()
                        },
                    ),
                    Gateway::Kiwify => (order_id.clone(), matched.0),
                    // Stripe's names nothing of the buyer.
                    Gateway::Stripe => (
                        format!("sub_{}", order.base_id),
                        MatchMethod::Unmatched.as_str(),
                    ),
                };
                let session = if method == "unmatched" { "" } else { matched.1 };
                self.conversion(
                    journey,
                    t,
                    &subscription,
                    EventType::SubscriptionCanceled,
                    (method, session),
                );
            }
        }
        for webhook in webhooks {
            Self::send(journey, webhook, rng);
        }
    }

    /// The facts of one more order event the matcher decides.
    fn conversion(
        &self,
        journey: &mut Journey,
        tenant: &str,
        order_id: &str,
        kind: EventType,
        (method, session): (&str, &str),
    ) {
        journey.facts.event(tenant, kind.symbol());
        journey.facts.matches.insert(
            (
                tenant.to_owned(),
                order_id.to_owned(),
                kind.symbol().to_owned(),
            ),
            (method.to_owned(), session.to_owned()),
        );
    }

    /// Add a gateway's `webhook`, sometimes twice: the gateway did not see our answer in
    /// time and sends it again.
    fn send(journey: &mut Journey, webhook: Delivery, rng: &mut StdRng) {
        let again = rng.random_bool(0.1);
        journey.deliveries.push(webhook.clone());
        if again {
            journey.deliveries.push(webhook);
            journey.duplicates += 1;
        }
    }

    fn direct_purchase(
        &self,
        index: u64,
        tenant: &TenantConfig,
        gateways: &[Gateway],
        rng: &mut StdRng,
        now_ms: i64,
    ) -> Journey {
        let run = &self.run;
        let t = tenant.id.as_str();
        let mut journey = Self::empty(tenant, JourneyKind::DirectPurchase);
        let gateway = *gateways.choose(rng).unwrap_or(&gateways[0]);
        let order = Order {
            base_id: format!("{run}d{index}"),
            amount_minor: rng.random_range(4_700..=49_700),
            email: format!("{run}.d{index}@example.com"),
            name: "Caio Reis".into(),
            product_id: (*PRODUCTS.choose(rng).unwrap_or(&"curso")).into(),
            session_id: None,
            fbclid: None,
            refund: false,
            at_ms: now_ms,
        };
        self.order(
            &mut journey,
            tenant,
            gateway,
            order,
            (MatchMethod::Unmatched.as_str(), ""),
            rng,
        );
        let blocked = match (tenant.consent_ads_default, &tenant.meta_pixel_id) {
            (false, _) => "consent_ads=false",
            (true, None) => "no_meta_pixel",
            (true, Some(pixel)) => {
                journey
                    .facts
                    .meta
                    .insert((pixel.clone(), "Purchase".into()), 1);
                ""
            }
        };
        journey
            .facts
            .dispatches
            .insert((t.to_owned(), "Purchase".into(), blocked.into()), 1);
        journey
    }

    fn onboarding(
        &self,
        index: u64,
        tenant: &TenantConfig,
        rng: &mut StdRng,
        now_ms: i64,
    ) -> Journey {
        let run = &self.run;
        let t = tenant.id.as_str();
        let mut journey = Self::empty(tenant, JourneyKind::Onboarding);
        let session = format!("{run}-ob{index}");
        let domain = format!("{run}-ob{index}.example.com");
        let fate: f64 = rng.random();
        let (reached, failed) = if fate < 0.7 {
            (ONBOARDING.len(), false)
        } else {
            (rng.random_range(1..ONBOARDING.len()), fate < 0.9)
        };
        let mut events: Vec<(&str, i64)> = ONBOARDING[..reached]
            .iter()
            .enumerate()
            .map(|(i, (name, _, _))| (*name, now_ms + i as i64 * 1_000))
            .collect();
        for (_, _, event_type) in &ONBOARDING[..reached] {
            journey.facts.event(t, event_type.symbol());
        }
        if failed {
            events.push(("onboarding.failed", now_ms + reached as i64 * 1_000));
            journey.facts.event(t, EventType::OnboardingFailed.symbol());
            journey.facts.tickets.insert(
                (t.to_owned(), TicketKind::OnboardingFailed.as_str().into()),
                1,
            );
        }
        if reached > 3 {
            journey.facts.tickets.insert(
                (t.to_owned(), TicketKind::AccountCreated.as_str().into()),
                1,
            );
        }
        // The portal retried: a later event arrives before an earlier one.
        if events.len() > 1 && rng.random_bool(0.3) {
            let at = rng.random_range(0..events.len() - 1);
            events.swap(at, at + 1);
            journey.out_of_order = true;
        }
        for (event, at_ms) in &events {
            let mut data = json!({"plan": "pro"});
            if *event == "account.created" {
                data["admin_email"] = json!(format!("admin@{domain}"));
            }
            let delivery = gateways::onboarding(
                tenant,
                &json!({"event": event, "domain": domain, "session_id": session,
                        "data": data, "timestamp": at_ms}),
            );
            journey.deliveries.push(delivery.clone());
            if rng.random_bool(0.1) {
                journey.deliveries.push(delivery);
                journey.duplicates += 1;
            }
        }
        let stage = ONBOARDING[reached - 1].1;
        let outcome = if stage == FunnelStage::Completed {
            FunnelOutcome::Completed
        } else if failed {
            FunnelOutcome::Failed
        } else {
            FunnelOutcome::InProgress
        };
        journey.onboarding_outcome = Some(outcome);
        journey.facts.sessions.insert(
            (
                t.to_owned(),
                Funnel::Onboarding.as_str().to_owned(),
                session,
            ),
            (stage.as_str().to_owned(), outcome.as_str().to_owned()),
        );
        journey
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenants() -> Vec<TenantConfig> {
        let config = r#"
            id = "acme"
            hotmart_hottok = "h"
            kiwify_token = "k"
            stripe_signing_secrets = ["whsec_x"]
            onboard_secret = "o"
            meta_pixel_id = "111"
            meta_abandoned_checkout_event = "AbandonedCheckout"
        "#;
        vec![toml::from_str(config).expect("tenant")]
    }

    #[test]
    fn the_same_seed_and_index_give_the_same_journey() {
        let generator = Generator::new("r1", 7, tenants()).expect("generator");
        let a = generator.journey(3, 1_000);
        let b = generator.journey(3, 1_000);
        assert_eq!(a.facts, b.facts);
        let bodies = |j: &Journey| {
            j.deliveries
                .iter()
                .map(|d| d.body.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(bodies(&a), bodies(&b));
        assert!(
            Generator::new("R-1", 7, tenants()).is_err(),
            "run ids are plain"
        );
    }

    #[test]
    fn journeys_cover_every_source_and_their_facts_follow_the_rules() {
        let generator = Generator::new("r2", 11, tenants()).expect("generator");
        let mut all = Facts::default();
        let mut kinds = std::collections::BTreeSet::new();
        let (mut duplicates, mut shuffled) = (0, 0);
        for index in 0..2_000 {
            let journey = generator.journey(index, 1_000);
            kinds.insert(journey.kind);
            duplicates += journey.duplicates;
            shuffled += u32::from(journey.out_of_order);
            for delivery in &journey.deliveries {
                assert!(delivery.body.contains("r2"), "every id names the run");
            }
            all.merge(journey.facts);
        }
        assert_eq!(kinds.len(), 3);
        assert!(duplicates > 50 && shuffled > 50, "{duplicates} {shuffled}");
        let methods = all.match_methods();
        for method in ["session_id", "email_hash", "click_id", "unmatched"] {
            assert!(
                methods.contains_key(&("acme".to_string(), method.to_string())),
                "{method}: {methods:?}"
            );
        }
        let onboarding = all.funnel_counts("onboarding");
        for outcome in ["completed", "failed", "in_progress"] {
            assert!(
                onboarding.keys().any(|(_, _, o)| o == outcome),
                "{onboarding:?}"
            );
        }
        // Visits without consent are recorded as blocked and never reach Meta.
        let blocked: u64 = all
            .dispatches
            .iter()
            .filter(|((_, _, reason), _)| reason == "consent_ads=false")
            .map(|(_, n)| n)
            .sum();
        let sent: u64 = all.meta.values().sum();
        let due: u64 = all.dispatches.values().sum();
        assert!(blocked > 0);
        assert_eq!(sent + blocked, due);
        // Every gateway event kind appears, in Brazilian funnel proportions: most
        // checkouts end paid, many are abandoned, some Pix expire.
        let count = |kind: &str| all.events[&("acme".to_string(), kind.to_string())];
        let (paid, abandoned, pending, expired) = (
            count("purchase"),
            count("checkout_abandoned"),
            count("payment_pending"),
            count("payment_failed"),
        );
        assert!(
            paid > abandoned && abandoned > expired && expired > 0,
            "{all:?}"
        );
        assert!(pending > expired, "paid-late orders were pending too");
        let (renewed, canceled) = (
            count("subscription_renewed"),
            count("subscription_canceled"),
        );
        assert!(renewed > canceled && canceled > 0, "{renewed} {canceled}");
        let stages = all.funnel_counts("tracking");
        for (stage, outcome) in [
            ("checkout_abandoned", "in_progress"),
            ("payment_pending", "failed"),
            ("purchase", "completed"),
        ] {
            assert!(
                stages.contains_key(&("acme".into(), stage.into(), outcome.into())),
                "{stages:?}"
            );
        }
        assert!(all
            .meta
            .contains_key(&("111".to_string(), "AbandonedCheckout".to_string())));
        assert!(all.raw_webhooks.values().sum::<u64>() > 0);
    }
}

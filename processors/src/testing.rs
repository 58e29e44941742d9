//! A realistic raw-topic workload (feature `testing`): the tests, the kill/restart check
//! and the benchmark all feed the processors the same kind of history.

use std::sync::Arc;

use funnelhub_kafka::stage::{send_all, Output};
use funnelhub_kafka::{KafkaConfig, SchemaRegistry, TopicCodec};
use funnelhub_schemas::common::EventType;
use funnelhub_schemas::events::{EdgeEvent, OnboardingEvent, OrderEvent, TrackingHit};
use funnelhub_schemas::ids::{deterministic_id, order_event_id};
use funnelhub_schemas::testing::{
    sample_onboarding_event, sample_order_event, sample_tracking_hit,
};
use funnelhub_schemas::{Catalog, Topic};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rdkafka::producer::FutureProducer;

/// `sessions` sessions' worth of raw events, in a locally shuffled arrival order, with the
/// duplicates real sources send: re-sent webhooks (identical records), portal milestones
/// re-emitted with a new id, beacons fired twice. One in three sessions is an onboarding
/// session, one a landing-page visit, one a visit that ends in a gateway purchase (when
/// `purchases`; else another visit).
///
/// A purchase reaches its session's funnel through another topic than the session's hits,
/// so whether the funnel sees it before or after them depends on timing: runs compared
/// record for record use `purchases = false`.
pub fn workload(sessions: usize, seed: u64, purchases: bool) -> Vec<EdgeEvent> {
    let mut rng = StdRng::seed_from_u64(seed);
    let base = 1_790_000_000_000i64;
    let mut events = Vec::new();
    for i in 0..sessions {
        let at = base + i as i64 * 1000;
        let mut session = match i % 3 {
            0 => onboarding_session(i, at, &mut rng),
            1 => tracking_session(i, at, false, &mut rng),
            _ => tracking_session(i, at, purchases, &mut rng),
        };
        if rng.random_bool(0.3) {
            let copy = session[rng.random_range(0..session.len())].clone();
            session.push(copy);
        }
        events.extend(session);
    }
    // Arrivals follow time, reordered within a window of 64 (retries, slow webhooks):
    // every session's events arrive out of order, as history does in production.
    events.sort_by_key(|e| e.envelope().received_at);
    for window in events.chunks_mut(64) {
        window.shuffle(&mut rng);
    }
    events
}

fn onboarding_session(i: usize, at: i64, rng: &mut StdRng) -> Vec<EdgeEvent> {
    // The milestones in funnel order, failure excluded.
    let milestones: Vec<EventType> = EventType::ALL
        .into_iter()
        .filter(|t| t.is_onboarding() && *t != EventType::OnboardingFailed)
        .collect();
    let reached = rng.random_range(1..=milestones.len());
    let mut types: Vec<EventType> = milestones[..reached].to_vec();
    if reached < milestones.len() && rng.random_bool(0.3) {
        types.push(EventType::OnboardingFailed);
    }
    let mut events: Vec<EdgeEvent> = types
        .iter()
        .enumerate()
        .map(|(step, &event_type)| {
            let mut e: OnboardingEvent = sample_onboarding_event();
            e.session_id = format!("onb-{i}");
            e.domain = format!("cliente{i}.com.br");
            e.envelope.event_type = event_type;
            e.envelope.occurred_at = at + step as i64 * 100;
            e.envelope.received_at = e.envelope.occurred_at + 5;
            e.envelope.event_id = deterministic_id(
                "onboarding",
                &[
                    &e.envelope.tenant_id,
                    event_type.as_str(),
                    &e.session_id,
                    &e.domain,
                ],
            );
            EdgeEvent::OnboardingEvent(e)
        })
        .collect();
    if rng.random_bool(0.2) {
        // The portal restarted and emitted a milestone again, later and with another id.
        let mut again = events[rng.random_range(0..events.len())].clone();
        if let EdgeEvent::OnboardingEvent(e) = &mut again {
            e.envelope.event_id = format!("{}-again", e.envelope.event_id);
            e.envelope.received_at += 60_000;
        }
        events.push(again);
    }
    events
}

fn tracking_session(i: usize, at: i64, buys: bool, rng: &mut StdRng) -> Vec<EdgeEvent> {
    let session_id = format!("sess-{i}");
    let hit = |event_type: EventType, n: usize| {
        let mut h: TrackingHit = sample_tracking_hit();
        h.session_id = session_id.clone();
        h.envelope.event_type = event_type;
        h.envelope.occurred_at = at + n as i64 * 100;
        h.envelope.received_at = h.envelope.occurred_at + 5;
        h.client_event_id = None;
        h.envelope.event_id = format!("{session_id}-{}-{n}", event_type.as_str());
        EdgeEvent::TrackingHit(h)
    };
    let mut events = vec![hit(EventType::Click, 0)];
    for n in 0..rng.random_range(1..=3) {
        events.push(hit(EventType::Pageview, n + 1));
    }
    if buys || rng.random_bool(0.3) {
        events.push(hit(EventType::InitiateCheckout, 5));
    }
    if buys {
        let mut order: OrderEvent = sample_order_event();
        order.order_id = format!("HP{i:07}");
        order.session_id = Some(session_id.clone());
        order.envelope.occurred_at = at + 900;
        order.envelope.received_at = at + 905;
        order.envelope.event_id = deterministic_id(
            "order",
            &[
                &order.envelope.tenant_id,
                "hotmart",
                &order.order_id,
                "purchase",
            ],
        );
        events.push(EdgeEvent::OrderEvent(order));
    }
    events
}

/// Writes edge events to the raw topics like the edge does (pipelined, in order).
pub struct RawWriter {
    producer: FutureProducer,
    tracking: TopicCodec<TrackingHit>,
    orders: TopicCodec<OrderEvent>,
    onboarding: TopicCodec<OnboardingEvent>,
}

impl std::fmt::Debug for RawWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawWriter").finish_non_exhaustive()
    }
}

impl RawWriter {
    /// Register the raw schemas and open a producer.
    pub async fn connect(kafka: &KafkaConfig, registry: &SchemaRegistry) -> RawWriter {
        let catalog = Catalog::new(&kafka.topic_prefix);
        RawWriter {
            producer: funnelhub_kafka::client::producer(kafka, "raw-writer").expect("producer"),
            tracking: TopicCodec::register(registry, &catalog.name(Topic::RawTracking))
                .await
                .expect("schema"),
            orders: TopicCodec::register(registry, &catalog.name(Topic::RawOrders))
                .await
                .expect("schema"),
            onboarding: TopicCodec::register(registry, &catalog.name(Topic::RawOnboarding))
                .await
                .expect("schema"),
        }
    }

    /// The encoded record of `event`, as the edge writes it.
    pub fn output(&self, event: &EdgeEvent) -> Output {
        let (topic, value) = match event {
            EdgeEvent::TrackingHit(e) => (self.tracking.topic(), self.tracking.encode(e)),
            EdgeEvent::OrderEvent(e) => (self.orders.topic(), self.orders.encode(e)),
            EdgeEvent::OnboardingEvent(e) => (self.onboarding.topic(), self.onboarding.encode(e)),
        };
        Output {
            topic: Arc::from(topic),
            key: event.key().into_bytes(),
            value: value.expect("encodes"),
            trace: None,
        }
    }

    /// Write `events` and wait for every acknowledgement.
    pub async fn write(&self, events: &[EdgeEvent]) {
        self.write_outputs(events.iter().map(|e| self.output(e)).collect())
            .await;
    }

    /// Write prepared records (e.g. poison bytes) and wait for every acknowledgement.
    pub async fn write_outputs(&self, outputs: Vec<Output>) {
        send_all(&self.producer, outputs.iter().map(|o| (o, None)))
            .await
            .expect("acknowledged");
    }
}

/// What a conversion of [`matching_workload`] carries that leads back to its visit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Evidence {
    /// The gateway passed the ad click's fbclid (Kiwify `TrackingParameters`, Stripe metadata).
    Fbclid,
    /// The checkout carried our session id (`sck`, `client_reference_id`).
    SessionId,
    /// The visit's checkout form gave the buyer's email.
    Email,
    /// The visit's checkout form gave the buyer's phone.
    Phone,
    /// Only the buyer's IP, campaign and product (Hotmart's `buyer_ip` and `src`).
    Signals,
    /// No visit: a direct or offline buyer.
    NoVisit,
    /// The session id, but the visit's hits were received after the grace period.
    AfterGrace,
    /// A refund of an earlier purchase of the workload.
    Refund,
}

/// One conversion of [`matching_workload`] and the truth about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrueMatch {
    pub tenant_id: String,
    pub conversion_id: String,
    pub evidence: Evidence,
    /// The session it came from, when the matcher can know it (`None` for no visit and
    /// for visits received after the grace period).
    pub session_id: Option<String>,
    /// Its visit's hits were received after the conversion, within the grace period.
    pub pixel_late: bool,
}

/// Landing-page visits and gateway conversions of two tenants (`acme`, `beta`) where the
/// visit behind every conversion is known. Two thirds of the visits buy nothing and share
/// the buyers' pools of IPs (carrier NAT), user agents, campaigns and products, so the
/// scoring rule has real competitors. Every order carries the buyer's email hash (gateways
/// always have it); only `Email` visits saw it. One buyer in five loaded the pixel late:
/// the visit's hits arrive after the conversion, within `grace_ms`. Refunds follow some
/// purchases an hour later.
pub fn matching_workload(
    buyers: usize,
    seed: u64,
    grace_ms: i64,
) -> (Vec<EdgeEvent>, Vec<TrueMatch>) {
    const MIN: i64 = 60_000;
    const AGENTS: [&str; 6] = [
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) Safari/604.1",
        "Mozilla/5.0 (Linux; Android 14; SM-A546E) Chrome/126.0 Mobile Safari/537.36",
        "Mozilla/5.0 (Linux; Android 13; moto g54) Chrome/125.0 Mobile Safari/537.36",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/126.0 Safari/537.36",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) Safari/605.1.15",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 16_7 like Mac OS X) Instagram 330.0",
    ];
    const CAMPAIGNS: [&str; 4] = ["black-friday", "webinar", "remarketing", "lookalike"];
    let mut rng = StdRng::seed_from_u64(seed);
    let base = 1_790_000_000_000i64;
    let ip_pool = (buyers / 3).max(4);
    let mut events = Vec::new();
    let mut truth = Vec::new();
    let visitors = buyers * 3;
    for v in 0..visitors {
        let tenant = if v % 2 == 0 { "acme" } else { "beta" };
        let buyer = v % 3 == 0;
        let n = v / 3;
        let evidence = match (buyer, n % 10) {
            (false, _) => None,
            (true, 0..=2) => Some(Evidence::Fbclid),
            (true, 3 | 4) => Some(Evidence::SessionId),
            (true, 5) => Some(Evidence::Email),
            (true, 6) => Some(Evidence::Phone),
            (true, 7 | 8) => Some(Evidence::Signals),
            (true, _) if n % 20 == 9 => Some(Evidence::NoVisit),
            (true, _) => Some(Evidence::AfterGrace),
        };
        let session_id = format!("{tenant}-visit-{v}");
        let ip = format!(
            "100.64.{}.{}",
            rng.random_range(0..ip_pool) / 250,
            rng.random_range(0..ip_pool) % 250
        );
        let agent = AGENTS[rng.random_range(0..AGENTS.len())];
        let campaign = CAMPAIGNS[rng.random_range(0..CAMPAIGNS.len())];
        let product = format!("prod-{}", rng.random_range(0..5));
        let fbclid = format!("IwAR{v:06}x{}", rng.random_range(0..1_000_000));
        let email = format!("{:064x}", (v as u128) << 64 | 0xe);
        let phone = format!("{:064x}", (v as u128) << 64 | 0xf);
        // Visits start every 20 s; a buyer pays 2–30 min after the visit's first hit.
        let start = base + v as i64 * 20_000;
        let paid_at = start + rng.random_range(2..=30) * MIN;
        let pixel_late =
            evidence.is_some_and(|e| e != Evidence::AfterGrace) && rng.random_bool(0.2);
        let hits_at = match evidence {
            Some(Evidence::AfterGrace) => paid_at + grace_ms + rng.random_range(1..=5) * MIN,
            _ if pixel_late => paid_at + rng.random_range(5..(grace_ms / 1000).max(6)) * 1000,
            _ => start,
        };
        if evidence != Some(Evidence::NoVisit) {
            let hit = |event_type: EventType, step: i64| {
                let mut h: TrackingHit = sample_tracking_hit();
                h.envelope.tenant_id = tenant.into();
                h.envelope.event_type = event_type;
                h.envelope.event_id = format!("{session_id}-{}", event_type.as_str());
                h.envelope.occurred_at = hits_at + step * 15_000;
                h.envelope.received_at = h.envelope.occurred_at + 200;
                h.envelope.identity = Default::default();
                h.session_id = session_id.clone();
                h.client_event_id = None;
                h.page_url = Some(format!(
                    "https://lp.{tenant}.com.br/oferta?utm_campaign={campaign}"
                ));
                h.utm.campaign = Some(campaign.into());
                h.click_ids.fbclid = Some(fbclid.clone());
                h.click_ids.fbc = Some(format!("fb.1.{hits_at}.{fbclid}"));
                h.click_ids.fbp = Some(format!("fb.1.{start}.{v}"));
                h.client_ip = Some(ip.clone());
                h.user_agent = Some(agent.into());
                h
            };
            events.push(EdgeEvent::TrackingHit(hit(EventType::Click, 0)));
            events.push(EdgeEvent::TrackingHit(hit(EventType::Pageview, 1)));
            if buyer || rng.random_bool(0.3) {
                let mut checkout = hit(EventType::InitiateCheckout, 2);
                checkout.content_ids = vec![product.clone()];
                match evidence {
                    Some(Evidence::Email) => {
                        checkout.envelope.identity.email_hash = Some(email.clone())
                    }
                    Some(Evidence::Phone) => {
                        checkout.envelope.identity.phone_hash = Some(phone.clone())
                    }
                    _ => {}
                }
                events.push(EdgeEvent::TrackingHit(checkout));
            }
        }
        let Some(evidence) = evidence else { continue };
        let mut order: OrderEvent = sample_order_event();
        order.envelope.tenant_id = tenant.into();
        order.order_id = format!("HP{v:08}");
        order.envelope.event_id =
            order_event_id(tenant, "hotmart", &order.order_id, "purchase", None);
        order.envelope.occurred_at = paid_at;
        order.envelope.received_at = paid_at + 500;
        order.envelope.identity = Default::default();
        order.envelope.identity.email_hash = Some(email.clone());
        order.session_id = None;
        order.product_id = Some(product.clone());
        match evidence {
            Evidence::Fbclid => order.click_ids.fbclid = Some(fbclid.clone()),
            Evidence::SessionId | Evidence::AfterGrace => {
                order.session_id = Some(session_id.clone())
            }
            Evidence::Phone => {
                // The gateway's email differs from the one typed on the landing page.
                order.envelope.identity.email_hash =
                    Some(format!("{:064x}", (v as u128) << 64 | 0xa));
                order.envelope.identity.phone_hash = Some(phone.clone());
            }
            Evidence::Signals | Evidence::NoVisit => {
                order.client_ip = Some(ip.clone());
                order.utm.campaign = Some(campaign.into());
            }
            Evidence::Email | Evidence::Refund => {}
        }
        let matched = !matches!(evidence, Evidence::NoVisit | Evidence::AfterGrace);
        truth.push(TrueMatch {
            tenant_id: tenant.into(),
            conversion_id: order.envelope.event_id.clone(),
            evidence,
            session_id: matched.then(|| session_id.clone()),
            pixel_late,
        });
        if n % 7 == 0 {
            let mut refund = order.clone();
            refund.envelope.event_type = EventType::Refund;
            refund.envelope.event_id =
                order_event_id(tenant, "hotmart", &order.order_id, "refund", None);
            refund.envelope.occurred_at = paid_at + 60 * MIN;
            refund.envelope.received_at = refund.envelope.occurred_at + 500;
            refund.gateway_status = "PURCHASE_REFUNDED".into();
            truth.push(TrueMatch {
                tenant_id: tenant.into(),
                conversion_id: refund.envelope.event_id.clone(),
                evidence: Evidence::Refund,
                // Its purchase's visit; after the grace period of the purchase, a refund an
                // hour later still finds the session on its own.
                session_id: (evidence != Evidence::NoVisit).then(|| session_id.clone()),
                pixel_late: false,
            });
            events.push(EdgeEvent::OrderEvent(refund));
        }
        events.push(EdgeEvent::OrderEvent(order));
    }
    events.sort_by_key(|e| e.envelope().received_at);
    (events, truth)
}

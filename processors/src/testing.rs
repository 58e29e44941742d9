//! A realistic raw-topic workload (feature `testing`): the tests, the kill/restart check
//! and the benchmark all feed the processors the same kind of history.

use std::sync::Arc;

use funnelhub_kafka::stage::{send_all, Output};
use funnelhub_kafka::{KafkaConfig, SchemaRegistry, TopicCodec};
use funnelhub_schemas::common::EventType;
use funnelhub_schemas::events::{EdgeEvent, OnboardingEvent, OrderEvent, TrackingHit};
use funnelhub_schemas::ids::deterministic_id;
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
        }
    }

    /// Write `events` and wait for every acknowledgement.
    pub async fn write(&self, events: &[EdgeEvent]) {
        self.write_outputs(events.iter().map(|e| self.output(e)).collect())
            .await;
    }

    /// Write prepared records (e.g. poison bytes) and wait for every acknowledgement.
    pub async fn write_outputs(&self, outputs: Vec<Output>) {
        send_all(&self.producer, outputs.into_iter().map(|o| (o, None)))
            .await
            .expect("acknowledged");
    }
}

//! Test and benchmark helpers (feature `testing`): dispatch requests as the matcher writes
//! them.

use std::collections::BTreeMap;
use std::sync::Arc;

use funnelhub_kafka::stage::{send_all, Output};
use funnelhub_kafka::{client, KafkaConfig, SchemaRegistry, TopicCodec};
use funnelhub_schemas::common::{EventType, SourcePosition};
use funnelhub_schemas::derived::CapiDispatchRequest;
use funnelhub_schemas::derived::{
    DedupedEvent, DlqReason, DlqRecord, FunnelOutcome, FunnelStage, MatchMethod,
};
use funnelhub_schemas::events::EdgeEvent;
use funnelhub_schemas::ids::now_ms;
use funnelhub_schemas::testing::{
    sample_derived, sample_onboarding_event, sample_ops_ticket, sample_order_event,
    sample_tracking_hit,
};
use funnelhub_schemas::{AvroRecord, Catalog, Topic};

use funnelhub_tenants::{ControlPlane, TenantConfig};

/// The tests' tenants and their pixels.
pub const TEST_TENANTS: [(&str, &str); 2] = [("acme", "111"), ("beta", "222")];

/// The access token of a test pixel.
pub fn test_token(pixel: &str) -> String {
    format!("EAAB-test-token-of-{pixel}")
}

/// The test tenants with their pixel and token, as the sink reads them.
pub fn test_tenants() -> Vec<TenantConfig> {
    TEST_TENANTS
        .iter()
        .map(|(tenant, pixel)| {
            let mut config = TenantConfig::new(tenant);
            config.meta_pixel_id = Some(pixel.to_string());
            config.meta_access_token = Some(test_token(pixel).as_str().into());
            config
        })
        .collect()
}

/// [`test_tenants`] and no suppression, as the sinks start with in tests.
pub fn test_control() -> ControlPlane {
    ControlPlane::fixed(test_tenants())
}

/// Each test pixel and its token, as the emulator knows them.
pub fn test_pixels() -> BTreeMap<String, String> {
    TEST_TENANTS
        .iter()
        .map(|(_, pixel)| (pixel.to_string(), test_token(pixel)))
        .collect()
}

/// Meta's test vector for `john_smith@gmail.com`.
pub const EMAIL_HASH: &str = "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f";

/// `n` valid requests of `tenant` for `pixel`, a minute old: purchases, and a page view
/// every third; event ids `{tenant}-{i}`.
pub fn dispatch_requests(tenant: &str, pixel: &str, n: usize) -> Vec<CapiDispatchRequest> {
    let mut template = sample_derived().2;
    template.identity.email_hash = Some(EMAIL_HASH.into());
    (0..n)
        .map(|i| {
            let mut r = template.clone();
            r.tenant_id = tenant.into();
            r.pixel_id = pixel.into();
            r.event_id = format!("{tenant}-{i}");
            r.dispatch_id = format!("d-{tenant}-{i}");
            r.event_time = now_ms() - 60_000;
            if i % 3 == 0 {
                r.event_name = "PageView".into();
                r.value = None;
                r.currency = None;
                r.content_ids.clear();
                r.order_id = None;
            }
            r
        })
        .collect()
}

/// Write `requests` to `capi.requests` as the matcher does (key `tenant:event_id`).
pub async fn write_requests(
    kafka: &KafkaConfig,
    registry: &SchemaRegistry,
    requests: &[CapiDispatchRequest],
) -> Result<(), funnelhub_kafka::Error> {
    let keyed = requests
        .iter()
        .map(|r| (format!("{}:{}", r.tenant_id, r.event_id), r));
    write_records(kafka, registry, Topic::CapiRequests, keyed).await
}

/// Write `records` (key, value) to `topic` of `kafka`'s catalog, acknowledged.
pub async fn write_records<'a, T: AvroRecord + 'a>(
    kafka: &KafkaConfig,
    registry: &SchemaRegistry,
    topic: Topic,
    records: impl IntoIterator<Item = (String, &'a T)>,
) -> Result<(), funnelhub_kafka::Error> {
    let name = Catalog::new(&kafka.topic_prefix).name(topic);
    let codec = TopicCodec::<T>::register(registry, &name).await?;
    let topic: Arc<str> = Arc::from(codec.topic());
    let mut outputs = Vec::new();
    for (key, value) in records {
        let output = Output {
            topic: topic.clone(),
            key: key.into_bytes(),
            value: codec.encode(value)?,
            trace: None,
        };
        outputs.push((output, None));
    }
    let producer = client::producer(kafka, "funnelhub-test-writer")?;
    send_all(&producer, outputs.iter().map(|(o, p)| (o, *p))).await?;
    Ok(())
}

/// The Graph API emulator on a free port, knowing the test pixels.
pub async fn test_emulator(
    faults: funnelhub_emulators::Faults,
) -> funnelhub_emulators::MetaGraphEmulator {
    funnelhub_emulators::MetaGraphEmulator::start(([127, 0, 0, 1], 0).into(), test_pixels(), faults)
        .await
        .expect("the emulator starts")
}

/// Distinct records [`write_every_topic`] wrote, per table.
#[derive(Debug, Clone, Copy)]
pub struct Written {
    pub raw: usize,
    pub deduped: usize,
    pub sessions: usize,
    pub transitions: usize,
    pub requests: usize,
}

/// Write a bit of every topic the ClickHouse sink stores (`round` keeps ids of several
/// calls apart); each session's transitions out of order, each click re-sent once.
pub async fn write_every_topic(
    kafka: &KafkaConfig,
    registry: &SchemaRegistry,
    round: usize,
) -> Written {
    let mut hits = Vec::new();
    let mut orders = Vec::new();
    let mut onboarding = Vec::new();
    for i in 0..120 {
        let mut hit = sample_tracking_hit();
        hit.envelope.event_id = format!("hit-{round}-{i}");
        hit.session_id = format!("s-{round}-{}", i % 40);
        hit.envelope.event_type = if i % 2 == 0 {
            EventType::Click
        } else {
            EventType::Pageview
        };
        hits.push(hit);
        let mut order = sample_order_event();
        order.envelope.event_id = format!("order-{round}-{i}");
        order.order_id = format!("HP-{round}-{i}");
        orders.push(order);
        let mut e = sample_onboarding_event();
        e.envelope.event_id = format!("onb-{round}-{i}");
        e.session_id = format!("onb-{round}-{}", i % 30);
        onboarding.push(e);
    }
    // The raw topics hold a re-sent copy of each click: raw keeps both, events one.
    let resent: Vec<_> = hits
        .iter()
        .filter(|h| h.envelope.event_type == EventType::Click)
        .cloned()
        .collect();
    let key = |e: &EdgeEvent| e.key();
    write_records(
        kafka,
        registry,
        Topic::RawTracking,
        hits.iter()
            .chain(&resent)
            .map(|h| (key(&EdgeEvent::TrackingHit(h.clone())), h)),
    )
    .await
    .expect("raw tracking");
    write_records(
        kafka,
        registry,
        Topic::RawOrders,
        orders
            .iter()
            .map(|o| (key(&EdgeEvent::OrderEvent(o.clone())), o)),
    )
    .await
    .expect("raw orders");
    write_records(
        kafka,
        registry,
        Topic::RawOnboarding,
        onboarding
            .iter()
            .map(|o| (key(&EdgeEvent::OnboardingEvent(o.clone())), o)),
    )
    .await
    .expect("raw onboarding");
    let deduped: Vec<DedupedEvent> = hits
        .into_iter()
        .map(EdgeEvent::TrackingHit)
        .chain(orders.into_iter().map(EdgeEvent::OrderEvent))
        .chain(onboarding.into_iter().map(EdgeEvent::OnboardingEvent))
        .enumerate()
        .map(|(i, event)| DedupedEvent {
            dedupe_key: event.envelope().event_id.clone(),
            first_seen: SourcePosition {
                topic: "raw".into(),
                partition: 0,
                offset: i as i64,
            },
            deduped_at: 1_790_000_000_000,
            event,
        })
        .collect();
    write_records(
        kafka,
        registry,
        Topic::Deduped,
        deduped.iter().map(|d| (d.key(), d)),
    )
    .await
    .expect("deduped");

    let (template, matched, _, attempt) = sample_derived();
    let stages = [
        (FunnelStage::Started, FunnelOutcome::InProgress),
        (FunnelStage::DomainValidated, FunnelOutcome::InProgress),
        (FunnelStage::DnsApplied, FunnelOutcome::Failed),
        (FunnelStage::Completed, FunnelOutcome::Completed),
    ];
    let mut transitions = Vec::new();
    for session in 0..30 {
        // Each session reaches a different depth; written furthest first.
        let depth = 1 + session % stages.len();
        for (stage, outcome) in stages[..depth].iter().rev() {
            let mut t = template.clone();
            t.subject_id = format!("onb-{round}-{session}");
            t.to_stage = *stage;
            t.outcome = *outcome;
            t.transition_id = format!("tr-{round}-{session}-{stage:?}");
            transitions.push(t);
        }
    }
    write_records(
        kafka,
        registry,
        Topic::FunnelTransitions,
        transitions.iter().map(|t| (t.subject_id.clone(), t)),
    )
    .await
    .expect("transitions");
    let tickets: Vec<_> = (0..10)
        .map(|i| {
            let mut t = sample_ops_ticket();
            t.ticket_id = format!("ticket-{round}-{i}");
            t
        })
        .collect();
    write_records(
        kafka,
        registry,
        Topic::OpsTickets,
        tickets.iter().map(|t| (t.session_id.clone(), t)),
    )
    .await
    .expect("tickets");
    let matches: Vec<_> = (0..50)
        .map(|i| {
            let mut m = matched.clone();
            m.match_id = format!("m-{round}-{i}");
            m.method = if i % 5 == 0 {
                MatchMethod::Unmatched
            } else {
                MatchMethod::ClickId
            };
            m
        })
        .collect();
    write_records(
        kafka,
        registry,
        Topic::MatchResults,
        matches.iter().map(|m| (m.tenant_id.clone(), m)),
    )
    .await
    .expect("matches");
    let requests = dispatch_requests(&format!("acme{round}"), "111", 80);
    write_requests(kafka, registry, &requests)
        .await
        .expect("requests");
    let attempts: Vec<_> = (0..40)
        .map(|i| {
            let mut a = attempt.clone();
            a.attempt_id = format!("a-{round}-{i}");
            a
        })
        .collect();
    write_records(
        kafka,
        registry,
        Topic::CapiAttempts,
        attempts.iter().map(|a| (a.tenant_id.clone(), a)),
    )
    .await
    .expect("attempts");
    let letters: Vec<_> = (0..5)
        .map(|i| DlqRecord {
            dlq_id: format!("dlq-{round}-{i}"),
            stage: "capi".into(),
            reason: DlqReason::PermanentDeliveryFailure,
            error: "Meta refused the event".into(),
            source: None,
            tenant_id: Some("acme".into()),
            event_id: Some(format!("e-{i}")),
            key: None,
            value: None,
            failed_at: 1_790_000_000_000,
        })
        .collect();
    write_records(
        kafka,
        registry,
        Topic::Dlq,
        letters.iter().map(|d| (d.dlq_id.clone(), d)),
    )
    .await
    .expect("dlq");
    Written {
        raw: 120 + 60 + 120 + 120,
        deduped: 360,
        sessions: 30,
        transitions: transitions.len(),
        requests: requests.len(),
    }
}

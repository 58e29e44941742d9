//! Sample records and proptest strategies, for this crate's tests and (feature `testing`)
//! for other crates' tests and benchmarks.

use std::collections::BTreeMap;

use proptest::prelude::*;

use crate::common::*;
use crate::derived::*;
use crate::events::*;

fn envelope(event_type: EventType, source: Source) -> Envelope {
    Envelope {
        event_id: crate::ids::deterministic_id("sample", &[event_type.as_str()]),
        tenant_id: "acme".into(),
        event_type,
        occurred_at: 1_790_000_000_000,
        received_at: 1_790_000_000_250,
        source,
        schema_version: crate::SCHEMA_VERSION,
        consent: Consent {
            ads: true,
            analytics: true,
        },
        identity: HashedIdentity {
            email_hash: Some(
                "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f".into(),
            ),
            ..HashedIdentity::default()
        },
    }
}

/// A click with click ids and UTM.
pub fn sample_tracking_hit() -> TrackingHit {
    TrackingHit {
        envelope: envelope(EventType::Click, Source::LandingPage),
        session_id: "sess-1".into(),
        client_event_id: Some("pixel-evt-1".into()),
        page_url: Some("https://lp.example.com/offer?utm_source=fb".into()),
        referrer: None,
        utm: Utm {
            source: Some("facebook".into()),
            campaign: Some("black-friday".into()),
            ..Utm::default()
        },
        click_ids: ClickIds {
            fbclid: Some("IwAR2xYz".into()),
            fbc: Some("fb.1.1790000000000.IwAR2xYz".into()),
            fbp: Some("fb.1.1789999999000.123456789".into()),
            gclid: Some("Cj0KCQiA-gclid".into()),
            ..ClickIds::default()
        },
        client_ip: Some("203.0.113.7".into()),
        user_agent: Some("Mozilla/5.0".into()),
        value: None,
        currency: None,
        content_ids: vec![],
    }
}

/// A Hotmart purchase.
pub fn sample_order_event() -> OrderEvent {
    OrderEvent {
        envelope: envelope(EventType::Purchase, Source::Hotmart),
        gateway: Gateway::Hotmart,
        order_id: "HP1234567".into(),
        gateway_event_id: Some("6f4b3c1e".into()),
        gateway_status: "PURCHASE_APPROVED".into(),
        amount_minor: Some(19_700),
        currency: Some("BRL".into()),
        product_id: Some("42".into()),
        product_name: Some("Curso".into()),
        payment_method: Some("PIX".into()),
        original_order_id: None,
        session_id: Some("sess-1".into()),
        utm: Utm::default(),
        click_ids: ClickIds::default(),
        client_ip: None,
        user_agent: None,
        subscription_id: None,
        plan: None,
    }
}

/// A signed Stripe delivery of a type funnelhub does not map, kept raw.
pub fn sample_raw_webhook() -> crate::events::RawWebhook {
    crate::events::RawWebhook {
        webhook_id: "0b6a1c9e-6f2d-5c1e-9a7b-3f1d2e4c5a6b".into(),
        tenant_id: "acme".into(),
        gateway: Gateway::Stripe,
        event_name: "customer.created".into(),
        gateway_event_id: Some("evt_1".into()),
        order_id: Some("cus_1".into()),
        reason: crate::events::RawWebhookReason::UnusedEvent,
        field: None,
        received_at: 1_790_000_000_000,
        payload:
            r#"{"type":"customer.created","data":{"object":{"id":"cus_1","email":"[redacted]"}}}"#
                .into(),
    }
}

/// An onboarding milestone.
pub fn sample_onboarding_event() -> OnboardingEvent {
    OnboardingEvent {
        envelope: envelope(EventType::DnsApplied, Source::OnboardingPortal),
        session_id: "onb-1".into(),
        domain: "cliente.com.br".into(),
        attributes: BTreeMap::from([("records".into(), "3".into())]),
    }
}

/// An ops ticket.
pub fn sample_ops_ticket() -> OpsTicket {
    OpsTicket {
        ticket_id: "t-1".into(),
        tenant_id: "acme".into(),
        session_id: "onb-1".into(),
        domain: "cliente.com.br".into(),
        kind: TicketKind::AccountCreated,
        subject: "[account.created] cliente.com.br".into(),
        cause_event_id: "e-1".into(),
        created_at: 1_790_000_000_000,
    }
}

fn opt_string() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(any::<String>())
}

fn arb_identity() -> impl Strategy<Value = HashedIdentity> {
    (opt_string(), opt_string(), opt_string()).prop_map(
        |(email_hash, phone_hash, external_id_hash)| HashedIdentity {
            email_hash,
            phone_hash,
            external_id_hash,
            ..HashedIdentity::default()
        },
    )
}

fn arb_envelope() -> impl Strategy<Value = Envelope> {
    (
        any::<String>(),
        any::<String>(),
        proptest::sample::select(EventType::ALL.to_vec()),
        any::<i64>(),
        any::<i64>(),
        any::<(bool, bool)>(),
        arb_identity(),
    )
        .prop_map(
            |(
                event_id,
                tenant_id,
                event_type,
                occurred_at,
                received_at,
                (ads, analytics),
                identity,
            )| Envelope {
                event_id,
                tenant_id,
                event_type,
                occurred_at,
                received_at,
                source: Source::LandingPage,
                schema_version: crate::SCHEMA_VERSION,
                consent: Consent { ads, analytics },
                identity,
            },
        )
}

fn arb_utm() -> impl Strategy<Value = Utm> {
    (opt_string(), opt_string(), opt_string()).prop_map(|(source, medium, campaign)| Utm {
        source,
        medium,
        campaign,
        ..Utm::default()
    })
}

fn arb_click_ids() -> impl Strategy<Value = ClickIds> {
    (
        (opt_string(), opt_string(), opt_string()),
        (opt_string(), opt_string(), opt_string(), opt_string()),
    )
        .prop_map(
            |((fbclid, fbc, fbp), (gclid, gbraid, wbraid, ttclid))| ClickIds {
                fbclid,
                fbc,
                fbp,
                gclid,
                gbraid,
                wbraid,
                ttclid,
            },
        )
}

/// Any tracking hit.
pub fn arb_tracking_hit() -> impl Strategy<Value = TrackingHit> {
    (
        arb_envelope(),
        any::<String>(),
        opt_string(),
        arb_utm(),
        arb_click_ids(),
        proptest::option::of(-1e12f64..1e12),
        proptest::collection::vec(any::<String>(), 0..4),
    )
        .prop_map(
            |(envelope, session_id, page_url, utm, click_ids, value, content_ids)| TrackingHit {
                envelope,
                session_id,
                client_event_id: None,
                page_url,
                referrer: None,
                utm,
                click_ids,
                client_ip: None,
                user_agent: None,
                value,
                currency: None,
                content_ids,
            },
        )
}

/// Any order event.
pub fn arb_order_event() -> impl Strategy<Value = OrderEvent> {
    (
        arb_envelope(),
        proptest::sample::select(vec![Gateway::Hotmart, Gateway::Kiwify, Gateway::Stripe]),
        any::<String>(),
        proptest::option::of(any::<i64>()),
        opt_string(),
        arb_utm(),
    )
        .prop_map(
            |(envelope, gateway, order_id, amount_minor, original_order_id, utm)| OrderEvent {
                envelope,
                gateway,
                order_id,
                gateway_event_id: None,
                gateway_status: "x".into(),
                amount_minor,
                currency: Some("BRL".into()),
                product_id: None,
                product_name: None,
                payment_method: None,
                original_order_id,
                session_id: None,
                utm,
                click_ids: ClickIds::default(),
                client_ip: None,
                user_agent: None,
                subscription_id: None,
                plan: None,
            },
        )
}

/// Any onboarding event.
pub fn arb_onboarding_event() -> impl Strategy<Value = OnboardingEvent> {
    (
        arb_envelope(),
        any::<String>(),
        any::<String>(),
        proptest::collection::btree_map(any::<String>(), any::<String>(), 0..4),
    )
        .prop_map(
            |(envelope, session_id, domain, attributes)| OnboardingEvent {
                envelope,
                session_id,
                domain,
                attributes,
            },
        )
}

/// Any deduped event (exercises the union of the three edge events).
pub fn arb_deduped_event() -> impl Strategy<Value = DedupedEvent> {
    let event = prop_oneof![
        arb_tracking_hit().prop_map(EdgeEvent::TrackingHit),
        arb_order_event().prop_map(EdgeEvent::OrderEvent),
        arb_onboarding_event().prop_map(EdgeEvent::OnboardingEvent),
    ];
    (
        any::<String>(),
        any::<String>(),
        any::<i32>(),
        any::<i64>(),
        event,
    )
        .prop_map(
            |(dedupe_key, topic, partition, offset, event)| DedupedEvent {
                dedupe_key,
                first_seen: SourcePosition {
                    topic,
                    partition,
                    offset,
                },
                deduped_at: offset,
                event,
            },
        )
}

/// Any DLQ record (exercises optional bytes and an optional record).
pub fn arb_dlq_record() -> impl Strategy<Value = DlqRecord> {
    (
        any::<String>(),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
        proptest::option::of((any::<String>(), any::<i32>(), any::<i64>())),
    )
        .prop_map(|(error, key, value, source)| DlqRecord {
            dlq_id: "d".into(),
            stage: "dedupe".into(),
            reason: DlqReason::Undecodable,
            error,
            source: source.map(|(topic, partition, offset)| SourcePosition {
                topic,
                partition,
                offset,
            }),
            tenant_id: None,
            event_id: None,
            key,
            value,
            failed_at: 0,
        })
}

/// One sample of every derived record type not covered by a strategy above.
pub fn sample_derived() -> (
    FunnelTransition,
    MatchResult,
    CapiDispatchRequest,
    DispatchAttempt,
) {
    (
        FunnelTransition {
            transition_id: "tr-1".into(),
            tenant_id: "acme".into(),
            funnel: Funnel::Onboarding,
            subject_id: "onb-1".into(),
            from_stage: Some(FunnelStage::DomainValidated),
            to_stage: FunnelStage::DnsApplied,
            outcome: FunnelOutcome::InProgress,
            cause_event_id: "e-1".into(),
            occurred_at: 1_790_000_000_000,
            domain: Some("cliente.com.br".into()),
            utm_campaign: None,
        },
        MatchResult {
            match_id: "m-1".into(),
            tenant_id: "acme".into(),
            conversion_id: "c-1".into(),
            order_id: "HP1".into(),
            gateway: Gateway::Hotmart,
            conversion_type: EventType::Purchase,
            original_conversion_id: None,
            matched_event_id: Some("e-1".into()),
            matched_session_id: Some("sess-1".into()),
            method: MatchMethod::ClickId,
            score: 1.0,
            signals: vec!["fbc".into()],
            decided_at: 1_790_000_000_000,
        },
        CapiDispatchRequest {
            dispatch_id: "d-1".into(),
            tenant_id: "acme".into(),
            pixel_id: "123".into(),
            event_name: "Purchase".into(),
            event_id: "c-1".into(),
            event_time: 1_790_000_000_000,
            action_source: "website".into(),
            event_source_url: Some("https://lp.example.com".into()),
            identity: HashedIdentity::default(),
            click_ids: ClickIds::default(),
            client_ip: Some("203.0.113.7".into()),
            user_agent: Some("Mozilla/5.0".into()),
            value: Some(197.0),
            currency: Some("BRL".into()),
            content_ids: vec!["42".into()],
            order_id: Some("HP1".into()),
            consent_ads: true,
            blocked_reason: None,
            match_id: Some("m-1".into()),
        },
        DispatchAttempt {
            attempt_id: "a-1".into(),
            tenant_id: "acme".into(),
            pixel_id: "123".into(),
            request_id: "r-1".into(),
            event_ids: vec!["c-1".into()],
            attempt: 1,
            outcome: AttemptOutcome::Sent,
            http_status: Some(200),
            fbtrace_id: Some("AbC".into()),
            events_received: Some(1),
            error_code: None,
            error_subcode: None,
            error_message: None,
            latency_ms: 12,
            attempted_at: 1_790_000_000_000,
        },
    )
}

/// Matcher state entries: a hit, a waiting conversion, a decision and the stream time.
pub fn sample_match_entries() -> Vec<crate::state::MatchEntry> {
    use crate::state::*;
    let (_, result, dispatch, _) = sample_derived();
    [
        MatchFact::TrackingHit(sample_tracking_hit()),
        MatchFact::OrderEvent(sample_order_event()),
        MatchFact::MatchDecision(MatchDecision {
            result,
            dispatch: Some(dispatch),
            record_time: 1_790_000_000_000,
        }),
        MatchFact::StreamTime(StreamTime {
            stream_time: 1_790_000_000_000,
        }),
    ]
    .into_iter()
    .map(|entry| MatchEntry { entry })
    .collect()
}

/// A dedupe state entry and a funnel session (holding a transition, a ticket and a
/// timeline).
pub fn sample_state_entries() -> (crate::state::DedupeEntry, crate::state::FunnelSession) {
    use crate::state::*;
    let (transition, ..) = sample_derived();
    (
        DedupeEntry {
            dedupe_key: "acme:onboarding:e-1".into(),
            first_seen_offset: 41,
            record_time: 1_790_000_000_000,
        },
        FunnelSession {
            transitions: vec![transition],
            tickets: vec![sample_ops_ticket()],
            tenant_id: "acme".into(),
            funnel: Funnel::Onboarding,
            subject_id: "onb-1".into(),
            stage: Some(FunnelStage::DnsApplied),
            outcome: FunnelOutcome::InProgress,
            last_record_time: 1_790_000_000_000,
            domain: Some("cliente.com.br".into()),
            utm_campaign: None,
            timeline: vec![TimelineEntry {
                event_id: "e-1".into(),
                event_type: EventType::DnsApplied,
                occurred_at: 1_790_000_000_000,
            }],
        },
    )
}

/// A purge's suppression record.
pub fn sample_suppression() -> crate::privacy::Suppression {
    crate::privacy::Suppression {
        purge_id: "purge-1".into(),
        tenant_id: "acme".into(),
        identifier_kind: crate::privacy::IdentifierKind::Email,
        identifier_hash: crate::identity::sha256_hex("ana@example.com"),
        session_ids: vec!["sess-1".into()],
        event_ids: vec!["c-1".into(), "e-1".into()],
        requested_at: 1_790_000_000_000,
    }
}

/// An encrypted envelope (the bytes are not a real ciphertext: codec tests only).
pub fn sample_sealed() -> crate::control::Sealed {
    crate::control::Sealed {
        key_id: "k1".into(),
        wrapped_key: "d3JhcHBlZA==".into(),
        nonce: "bm9uY2U=".into(),
        ciphertext: "Y2lwaGVy".into(),
    }
}

/// A tenant as the control plane stores it.
pub fn sample_tenant_record() -> crate::control::TenantRecord {
    crate::control::TenantRecord {
        tenant_id: "acme".into(),
        revision: 3,
        updated_at: 1_790_000_000_000,
        updated_by: "cli tenants set".into(),
        allowed_origins: vec!["https://lp.acme.test".into()],
        consent_ads_default: true,
        consent_analytics_default: false,
        phone_calling_code: Some("55".into()),
        meta_pixel_id: Some("1234".into()),
        meta_test_event_code: None,
        meta_abandoned_checkout_event: None,
        retention_days: Some(90),
        secrets: sample_sealed(),
    }
}

/// A setup chat message, as the assistant answered.
pub fn sample_setup_message() -> crate::setup::SetupMessage {
    crate::setup::SetupMessage {
        message_id: "msg-1".into(),
        session_id: "setup-1".into(),
        tenant_id: "acme".into(),
        seq: 2,
        role: "assistant".into(),
        language: "pt-BR".into(),
        text: "O token da Meta expirou (código 190): gere um novo token.".into(),
        actions:
            r#"[{"tool":"validate_meta_token","status":"failed","reason":"graph api code 190"}]"#
                .into(),
        engine: Some("builtin".into()),
        attachment_ids: vec![],
        at: 1_790_000_002_000,
    }
}

/// A setup session after one failed Meta validation, and that action's log.
pub fn sample_setup() -> (crate::setup::SetupSession, crate::setup::SetupActionLog) {
    use crate::setup::{SetupActionLog, SetupSession, SetupStep};
    let session = SetupSession {
        session_id: "setup-1".into(),
        tenant_id: "acme".into(),
        revision: 2,
        state: "failed".into(),
        created_at: 1_790_000_000_000,
        updated_at: 1_790_000_001_000,
        gateway: SetupStep::default(),
        meta: SetupStep {
            status: "failed".into(),
            attempts: 1,
            reason: Some("graph api code 190".into()),
            recommendation: Some("generate a new token".into()),
            summary: None,
            at: Some(1_790_000_001_000),
        },
        url: SetupStep::default(),
        failed_attempts: 1,
        last_failure: Some(r#"{"step":"meta"}"#.into()),
        handoff: None,
        inputs: Some(sample_sealed()),
        rollback: None,
        messages: vec![sample_setup_message()],
        attachments: vec![crate::setup::SetupAttachment {
            attachment_id: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
                .into(),
            content_type: "image/png".into(),
            bytes: 4_096,
            at: 1_790_000_001_500,
        }],
    };
    let log = SetupActionLog {
        action_id: "a-1".into(),
        session_id: "setup-1".into(),
        tenant_id: "acme".into(),
        tool: "validate_meta_token".into(),
        input: r#"{"pixel_id":"1234","access_token":"****abcd"}"#.into(),
        output: r#"{"http_status":401}"#.into(),
        status: "failed".into(),
        reason: Some("graph api code 190".into()),
        latency_ms: 12,
        at: 1_790_000_001_000,
    };
    (session, log)
}

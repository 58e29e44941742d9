//! One row type per table, in the column order of [`funnelhub_clickhouse::migrations`], built from the
//! topics' records. Absent strings are `''`; enum values are their Avro symbols.

use clickhouse::Row;
use funnelhub_schemas::common::{minor_to_major, SourcePosition};
use funnelhub_schemas::derived::{
    CapiDispatchRequest, DedupedEvent, DispatchAttempt, DlqRecord, FunnelOutcome, FunnelStage,
    FunnelTransition, MatchResult, OpsTicket,
};
use funnelhub_schemas::events::{gateway_name, EdgeEvent};
use serde::Serialize;

fn text(value: &Option<String>) -> String {
    value.clone().unwrap_or_default()
}

/// Milliseconds → `DateTime` seconds (0 before 1970, clamped after 2106).
fn seconds(ms: i64) -> u32 {
    u32::try_from(ms.div_euclid(1000).max(0)).unwrap_or(u32::MAX)
}

/// `raw_events` and `events`.
#[derive(Debug, Clone, PartialEq, Row, Serialize)]
pub struct EventRow {
    pub tenant_id: String,
    pub event_id: String,
    pub event_type: String,
    pub source: String,
    pub occurred_at: u32,
    pub occurred_at_ms: i64,
    pub received_at_ms: i64,
    pub session_id: String,
    pub gateway: String,
    pub order_id: String,
    pub gateway_status: String,
    pub value: Option<f64>,
    pub currency: String,
    pub product_id: String,
    pub utm_source: String,
    pub utm_medium: String,
    pub utm_campaign: String,
    pub fbclid: String,
    pub consent_ads: u8,
    pub dedupe_key: String,
    pub source_topic: String,
    pub source_partition: i32,
    pub source_offset: i64,
    /// The whole record as JSON (identifiers are hashes already).
    pub payload: String,
}

impl EventRow {
    /// The row of an edge event read at `position`.
    pub fn of(event: &EdgeEvent, position: &SourcePosition, dedupe_key: &str) -> EventRow {
        let envelope = event.envelope();
        let mut row = EventRow {
            tenant_id: envelope.tenant_id.clone(),
            event_id: envelope.event_id.clone(),
            event_type: envelope.event_type.symbol().to_owned(),
            source: envelope.source.as_str().to_owned(),
            occurred_at: seconds(envelope.occurred_at),
            occurred_at_ms: envelope.occurred_at,
            received_at_ms: envelope.received_at,
            session_id: String::new(),
            gateway: String::new(),
            order_id: String::new(),
            gateway_status: String::new(),
            value: None,
            currency: String::new(),
            product_id: String::new(),
            utm_source: String::new(),
            utm_medium: String::new(),
            utm_campaign: String::new(),
            fbclid: String::new(),
            consent_ads: u8::from(envelope.consent.ads),
            dedupe_key: dedupe_key.to_owned(),
            source_topic: position.topic.clone(),
            source_partition: position.partition,
            source_offset: position.offset,
            payload: serde_json::to_string(event).unwrap_or_default(),
        };
        let (utm, clicks) = match event {
            EdgeEvent::TrackingHit(hit) => {
                row.session_id = hit.session_id.clone();
                row.value = hit.value;
                row.currency = text(&hit.currency);
                row.product_id = hit.content_ids.first().cloned().unwrap_or_default();
                (Some(&hit.utm), Some(&hit.click_ids))
            }
            EdgeEvent::OrderEvent(order) => {
                row.session_id = text(&order.session_id);
                row.gateway = gateway_name(order.gateway).to_owned();
                row.order_id = order.order_id.clone();
                row.gateway_status = order.gateway_status.clone();
                row.currency = text(&order.currency);
                row.value = match (order.amount_minor, &order.currency) {
                    (Some(amount), Some(currency)) => Some(minor_to_major(amount, currency)),
                    _ => None,
                };
                row.product_id = text(&order.product_id);
                (Some(&order.utm), Some(&order.click_ids))
            }
            EdgeEvent::OnboardingEvent(e) => {
                row.session_id = e.session_id.clone();
                (None, None)
            }
        };
        if let Some(utm) = utm {
            row.utm_source = text(&utm.source);
            row.utm_medium = text(&utm.medium);
            row.utm_campaign = text(&utm.campaign);
        }
        if let Some(clicks) = clicks {
            row.fbclid = text(&clicks.fbclid);
        }
        row
    }

    /// The row of a record read from a raw topic at `position`.
    pub fn raw(event: &EdgeEvent, position: &SourcePosition) -> EventRow {
        EventRow::of(event, position, &event.dedupe_key())
    }

    /// The row of a deduped event: its first occurrence's position.
    pub fn of_deduped(deduped: &DedupedEvent) -> EventRow {
        EventRow::of(&deduped.event, &deduped.first_seen, &deduped.dedupe_key)
    }
}

/// `funnel_transitions`.
#[derive(Debug, Clone, PartialEq, Row, Serialize)]
pub struct TransitionRow {
    pub tenant_id: String,
    pub transition_id: String,
    pub funnel: String,
    pub subject_id: String,
    pub from_stage: String,
    pub to_stage: String,
    pub outcome: String,
    pub cause_event_id: String,
    pub occurred_at: u32,
    pub occurred_at_ms: i64,
    pub domain: String,
    pub utm_campaign: String,
}

impl From<&FunnelTransition> for TransitionRow {
    fn from(t: &FunnelTransition) -> Self {
        TransitionRow {
            tenant_id: t.tenant_id.clone(),
            transition_id: t.transition_id.clone(),
            funnel: t.funnel.as_str().to_owned(),
            subject_id: t.subject_id.clone(),
            from_stage: t
                .from_stage
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default(),
            to_stage: t.to_stage.as_str().to_owned(),
            outcome: t.outcome.as_str().to_owned(),
            cause_event_id: t.cause_event_id.clone(),
            occurred_at: seconds(t.occurred_at),
            occurred_at_ms: t.occurred_at,
            domain: text(&t.domain),
            utm_campaign: text(&t.utm_campaign),
        }
    }
}

/// `session_stages`: a session's state after a transition, ranked so that the furthest
/// one wins whatever order they are written in.
#[derive(Debug, Clone, PartialEq, Row, Serialize)]
pub struct SessionStageRow {
    pub tenant_id: String,
    pub funnel: String,
    pub subject_id: String,
    pub stage: String,
    pub outcome: String,
    pub rank: u16,
    pub updated_at: u32,
    pub updated_at_ms: i64,
    pub domain: String,
    pub utm_campaign: String,
}

impl From<&FunnelTransition> for SessionStageRow {
    fn from(t: &FunnelTransition) -> Self {
        // Stages only move forward and a session's outcome only leaves in_progress, so
        // (stage, outcome) orders a session's transitions.
        let outcome_rank: u16 = match t.outcome {
            FunnelOutcome::InProgress | FunnelOutcome::Unknown => 0,
            FunnelOutcome::Failed => 1,
            FunnelOutcome::Completed => 2,
        };
        SessionStageRow {
            tenant_id: t.tenant_id.clone(),
            funnel: t.funnel.as_str().to_owned(),
            subject_id: t.subject_id.clone(),
            stage: t.to_stage.as_str().to_owned(),
            outcome: t.outcome.as_str().to_owned(),
            rank: stage_rank(t.to_stage) * 4 + outcome_rank,
            updated_at: seconds(t.occurred_at),
            updated_at_ms: t.occurred_at,
            domain: text(&t.domain),
            utm_campaign: text(&t.utm_campaign),
        }
    }
}

/// Funnel order (a symbol from a newer writer ranks lowest).
fn stage_rank(stage: FunnelStage) -> u16 {
    match stage {
        FunnelStage::Unknown => 0,
        known => known as u16 + 1,
    }
}

/// `ops_tickets`.
#[derive(Debug, Clone, PartialEq, Row, Serialize)]
pub struct TicketRow {
    pub tenant_id: String,
    pub ticket_id: String,
    pub session_id: String,
    pub domain: String,
    pub kind: String,
    pub subject: String,
    pub cause_event_id: String,
    pub created_at: u32,
    pub created_at_ms: i64,
}

impl From<&OpsTicket> for TicketRow {
    fn from(t: &OpsTicket) -> Self {
        TicketRow {
            tenant_id: t.tenant_id.clone(),
            ticket_id: t.ticket_id.clone(),
            session_id: t.session_id.clone(),
            domain: t.domain.clone(),
            kind: t.kind.as_str().to_owned(),
            subject: t.subject.clone(),
            cause_event_id: t.cause_event_id.clone(),
            created_at: seconds(t.created_at),
            created_at_ms: t.created_at,
        }
    }
}

/// `matches`.
#[derive(Debug, Clone, PartialEq, Row, Serialize)]
pub struct MatchRow {
    pub tenant_id: String,
    pub match_id: String,
    pub conversion_id: String,
    pub order_id: String,
    pub gateway: String,
    pub conversion_type: String,
    pub original_conversion_id: String,
    pub matched_event_id: String,
    pub matched_session_id: String,
    pub method: String,
    pub score: f64,
    pub signals: Vec<String>,
    pub decided_at: u32,
    pub decided_at_ms: i64,
}

impl From<&MatchResult> for MatchRow {
    fn from(m: &MatchResult) -> Self {
        MatchRow {
            tenant_id: m.tenant_id.clone(),
            match_id: m.match_id.clone(),
            conversion_id: m.conversion_id.clone(),
            order_id: m.order_id.clone(),
            gateway: gateway_name(m.gateway).to_owned(),
            conversion_type: m.conversion_type.symbol().to_owned(),
            original_conversion_id: text(&m.original_conversion_id),
            matched_event_id: text(&m.matched_event_id),
            matched_session_id: text(&m.matched_session_id),
            method: m.method.as_str().to_owned(),
            score: m.score,
            signals: m.signals.clone(),
            decided_at: seconds(m.decided_at),
            decided_at_ms: m.decided_at,
        }
    }
}

/// `capi_requests`, with where the request is in `capi.requests` (to re-send it).
#[derive(Debug, Clone, PartialEq, Row, Serialize)]
pub struct CapiRequestRow {
    pub tenant_id: String,
    pub dispatch_id: String,
    pub pixel_id: String,
    pub event_name: String,
    pub event_id: String,
    pub event_time: u32,
    pub event_time_ms: i64,
    pub action_source: String,
    pub value: Option<f64>,
    pub currency: String,
    pub order_id: String,
    pub consent_ads: u8,
    pub blocked_reason: String,
    pub match_id: String,
    pub source_topic: String,
    pub source_partition: i32,
    pub source_offset: i64,
}

impl CapiRequestRow {
    pub fn of(r: &CapiDispatchRequest, position: &SourcePosition) -> CapiRequestRow {
        CapiRequestRow {
            tenant_id: r.tenant_id.clone(),
            dispatch_id: r.dispatch_id.clone(),
            pixel_id: r.pixel_id.clone(),
            event_name: r.event_name.clone(),
            event_id: r.event_id.clone(),
            event_time: seconds(r.event_time),
            event_time_ms: r.event_time,
            action_source: r.action_source.clone(),
            value: r.value,
            currency: text(&r.currency),
            order_id: text(&r.order_id),
            consent_ads: u8::from(r.consent_ads),
            blocked_reason: text(&r.blocked_reason),
            match_id: text(&r.match_id),
            source_topic: position.topic.clone(),
            source_partition: position.partition,
            source_offset: position.offset,
        }
    }
}

/// `dispatch_attempts`.
#[derive(Debug, Clone, PartialEq, Row, Serialize)]
pub struct AttemptRow {
    pub tenant_id: String,
    pub attempt_id: String,
    pub pixel_id: String,
    pub request_id: String,
    pub event_ids: Vec<String>,
    pub attempt: i32,
    pub outcome: String,
    pub http_status: Option<i32>,
    pub fbtrace_id: String,
    pub events_received: Option<i32>,
    pub error_code: Option<i32>,
    pub error_subcode: Option<i32>,
    pub error_message: String,
    pub latency_ms: i64,
    pub attempted_at: u32,
    pub attempted_at_ms: i64,
}

impl From<&DispatchAttempt> for AttemptRow {
    fn from(a: &DispatchAttempt) -> Self {
        AttemptRow {
            tenant_id: a.tenant_id.clone(),
            attempt_id: a.attempt_id.clone(),
            pixel_id: a.pixel_id.clone(),
            request_id: a.request_id.clone(),
            event_ids: a.event_ids.clone(),
            attempt: a.attempt,
            outcome: a.outcome.as_str().to_owned(),
            http_status: a.http_status,
            fbtrace_id: text(&a.fbtrace_id),
            events_received: a.events_received,
            error_code: a.error_code,
            error_subcode: a.error_subcode,
            error_message: text(&a.error_message),
            latency_ms: a.latency_ms,
            attempted_at: seconds(a.attempted_at),
            attempted_at_ms: a.attempted_at,
        }
    }
}

/// `dlq` (the original bytes stay in the `dlq` topic).
#[derive(Debug, Clone, PartialEq, Row, Serialize)]
pub struct DlqRow {
    pub tenant_id: String,
    pub dlq_id: String,
    pub stage: String,
    pub reason: String,
    pub error: String,
    pub event_id: String,
    pub source_topic: String,
    pub source_partition: i32,
    pub source_offset: i64,
    pub failed_at: u32,
    pub failed_at_ms: i64,
}

impl From<&DlqRecord> for DlqRow {
    fn from(d: &DlqRecord) -> Self {
        let source = d.source.as_ref();
        DlqRow {
            tenant_id: text(&d.tenant_id),
            dlq_id: d.dlq_id.clone(),
            stage: d.stage.clone(),
            reason: d.reason.as_str().to_owned(),
            error: d.error.clone(),
            event_id: text(&d.event_id),
            source_topic: source.map(|s| s.topic.clone()).unwrap_or_default(),
            source_partition: source.map_or(-1, |s| s.partition),
            source_offset: source.map_or(-1, |s| s.offset),
            failed_at: seconds(d.failed_at),
            failed_at_ms: d.failed_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use funnelhub_schemas::testing::sample_derived;

    use super::*;

    #[test]
    fn a_sessions_furthest_state_ranks_highest() {
        let mut t = sample_derived().0;
        let rank = |t: &FunnelTransition| SessionStageRow::from(t).rank;
        t.to_stage = FunnelStage::DnsApplied;
        let dns = rank(&t);
        t.outcome = FunnelOutcome::Failed;
        let failed = rank(&t);
        t.to_stage = FunnelStage::AccountCreated;
        t.outcome = FunnelOutcome::InProgress;
        let account = rank(&t);
        t.to_stage = FunnelStage::Completed;
        t.outcome = FunnelOutcome::Completed;
        let completed = rank(&t);
        assert!(dns < failed && failed < account && account < completed);
        assert_eq!(SessionStageRow::from(&t).stage, "completed");
    }

    #[test]
    fn times_are_seconds_and_enums_their_symbols() {
        let (transition, matched, request, attempt) = sample_derived();
        let row = TransitionRow::from(&transition);
        assert_eq!(row.occurred_at, 1_790_000_000);
        assert_eq!(
            (row.funnel.as_str(), row.to_stage.as_str()),
            ("onboarding", "dns_applied")
        );
        assert_eq!(MatchRow::from(&matched).method, "click_id");
        assert_eq!(AttemptRow::from(&attempt).outcome, "sent");
        let position = SourcePosition {
            topic: "t".into(),
            partition: 2,
            offset: 9,
        };
        let row = CapiRequestRow::of(&request, &position);
        assert_eq!((row.source_partition, row.source_offset), (2, 9));
    }
}

/// `setup_action_logs`: one setup action (secrets already masked by the edge).
#[derive(Debug, Clone, PartialEq, Row, Serialize)]
pub struct SetupActionRow {
    pub tenant_id: String,
    pub session_id: String,
    pub action_id: String,
    pub tool: String,
    pub status: String,
    pub reason: String,
    pub input: String,
    pub output: String,
    pub latency_ms: u32,
    pub at: u32,
    pub at_ms: i64,
}

impl From<&funnelhub_schemas::setup::SetupActionLog> for SetupActionRow {
    fn from(a: &funnelhub_schemas::setup::SetupActionLog) -> Self {
        SetupActionRow {
            tenant_id: a.tenant_id.clone(),
            session_id: a.session_id.clone(),
            action_id: a.action_id.clone(),
            tool: a.tool.clone(),
            status: a.status.clone(),
            reason: a.reason.clone().unwrap_or_default(),
            input: a.input.clone(),
            output: a.output.clone(),
            latency_ms: u32::try_from(a.latency_ms.max(0)).unwrap_or(u32::MAX),
            at: seconds(a.at),
            at_ms: a.at,
        }
    }
}

/// `raw_webhooks`: a signed gateway delivery kept as sent (personal values redacted at the
/// edge).
#[derive(Debug, Clone, PartialEq, Row, Serialize)]
pub struct RawWebhookRow {
    pub tenant_id: String,
    pub webhook_id: String,
    pub gateway: String,
    pub event_name: String,
    pub gateway_event_id: String,
    pub order_id: String,
    pub reason: String,
    pub field: String,
    pub received_at: u32,
    pub received_at_ms: i64,
    pub payload: String,
}

impl From<funnelhub_schemas::events::RawWebhook> for RawWebhookRow {
    fn from(w: funnelhub_schemas::events::RawWebhook) -> Self {
        RawWebhookRow {
            tenant_id: w.tenant_id,
            webhook_id: w.webhook_id,
            gateway: funnelhub_schemas::events::gateway_name(w.gateway).to_owned(),
            event_name: w.event_name,
            gateway_event_id: w.gateway_event_id.unwrap_or_default(),
            order_id: w.order_id.unwrap_or_default(),
            reason: w.reason.as_str().to_owned(),
            field: w.field.unwrap_or_default(),
            received_at: seconds(w.received_at),
            received_at_ms: w.received_at,
            payload: w.payload,
        }
    }
}

/// `setup_messages`: one setup chat message (secrets and personal data masked at the edge).
#[derive(Debug, Clone, PartialEq, Row, Serialize)]
pub struct SetupMessageRow {
    pub tenant_id: String,
    pub session_id: String,
    pub message_id: String,
    pub seq: u32,
    pub role: String,
    pub language: String,
    pub text: String,
    pub actions: String,
    pub engine: String,
    pub at: u32,
    pub at_ms: i64,
}

impl From<funnelhub_schemas::setup::SetupMessage> for SetupMessageRow {
    fn from(m: funnelhub_schemas::setup::SetupMessage) -> Self {
        SetupMessageRow {
            tenant_id: m.tenant_id,
            session_id: m.session_id,
            message_id: m.message_id,
            seq: u32::try_from(m.seq).unwrap_or(0),
            role: m.role,
            language: m.language,
            text: m.text,
            actions: m.actions,
            engine: m.engine.unwrap_or_default(),
            at: seconds(m.at),
            at_ms: m.at,
        }
    }
}

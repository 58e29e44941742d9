//! Records the processors and sinks derive from edge events.

use serde::{Deserialize, Serialize};

use crate::common::{ClickIds, EventType, Gateway, HashedIdentity, SourcePosition};
use crate::events::EdgeEvent;

/// `io.funnelhub.derived.DedupedEvent`: an edge event that passed deduplication.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DedupedEvent {
    pub dedupe_key: String,
    /// Source position of the first occurrence; the same position again is a replay.
    pub first_seen: SourcePosition,
    pub deduped_at: i64,
    pub event: EdgeEvent,
}

impl DedupedEvent {
    /// The record key on `deduped.events`: the session (`tenant_id:session_id`) for every
    /// event that belongs to one, orders included, so a session's funnel is read from one
    /// partition; an order without a session keeps its source key.
    pub fn key(&self) -> String {
        match &self.event {
            EdgeEvent::OrderEvent(order) => match &order.session_id {
                Some(session) => crate::catalog::key(&[&order.envelope.tenant_id, session]),
                None => self.event.key(),
            },
            _ => self.event.key(),
        }
    }
}

/// `io.funnelhub.derived.Funnel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Funnel {
    Onboarding,
    Tracking,
    Unknown,
}

/// `io.funnelhub.derived.FunnelStage`: stages of both funnels, each in funnel order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FunnelStage {
    Click,
    Pageview,
    InitiateCheckout,
    /// The checkout was left without an order (the gateway's abandoned-cart event).
    CheckoutAbandoned,
    /// An order awaits payment (Pix or boleto generated, a delayed payment).
    PaymentPending,
    Purchase,
    Started,
    DomainValidated,
    DnsApplied,
    AccountCreated,
    InfraSynced,
    Completed,
    Unknown,
}

impl Funnel {
    /// The Avro symbol.
    pub fn as_str(self) -> &'static str {
        match self {
            Funnel::Onboarding => "onboarding",
            Funnel::Tracking => "tracking",
            Funnel::Unknown => "unknown",
        }
    }

    /// The funnel's stages, in order.
    pub fn stages(self) -> &'static [FunnelStage] {
        match self {
            Funnel::Onboarding => &[
                FunnelStage::Started,
                FunnelStage::DomainValidated,
                FunnelStage::DnsApplied,
                FunnelStage::AccountCreated,
                FunnelStage::InfraSynced,
                FunnelStage::Completed,
            ],
            Funnel::Tracking => &[
                FunnelStage::Click,
                FunnelStage::Pageview,
                FunnelStage::InitiateCheckout,
                FunnelStage::CheckoutAbandoned,
                FunnelStage::PaymentPending,
                FunnelStage::Purchase,
            ],
            Funnel::Unknown => &[],
        }
    }

    /// The stage that completes this funnel.
    pub fn last_stage(self) -> Option<FunnelStage> {
        match self {
            Funnel::Onboarding => Some(FunnelStage::Completed),
            Funnel::Tracking => Some(FunnelStage::Purchase),
            Funnel::Unknown => None,
        }
    }
}

impl FunnelStage {
    /// The Avro symbol.
    pub fn as_str(self) -> &'static str {
        match self {
            FunnelStage::Click => "click",
            FunnelStage::Pageview => "pageview",
            FunnelStage::InitiateCheckout => "initiate_checkout",
            FunnelStage::CheckoutAbandoned => "checkout_abandoned",
            FunnelStage::PaymentPending => "payment_pending",
            FunnelStage::Purchase => "purchase",
            FunnelStage::Started => "started",
            FunnelStage::DomainValidated => "domain_validated",
            FunnelStage::DnsApplied => "dns_applied",
            FunnelStage::AccountCreated => "account_created",
            FunnelStage::InfraSynced => "infra_synced",
            FunnelStage::Completed => "completed",
            FunnelStage::Unknown => "unknown",
        }
    }
}

impl FunnelOutcome {
    /// The Avro symbol.
    pub fn as_str(self) -> &'static str {
        match self {
            FunnelOutcome::InProgress => "in_progress",
            FunnelOutcome::Completed => "completed",
            FunnelOutcome::Failed => "failed",
            FunnelOutcome::Unknown => "unknown",
        }
    }
}

/// `io.funnelhub.derived.FunnelOutcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FunnelOutcome {
    InProgress,
    Completed,
    Failed,
    Unknown,
}

/// `io.funnelhub.derived.FunnelTransition`: a session's stage or outcome changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunnelTransition {
    pub transition_id: String,
    pub tenant_id: String,
    pub funnel: Funnel,
    pub subject_id: String,
    pub from_stage: Option<FunnelStage>,
    pub to_stage: FunnelStage,
    pub outcome: FunnelOutcome,
    pub cause_event_id: String,
    pub occurred_at: i64,
    pub domain: Option<String>,
    pub utm_campaign: Option<String>,
}

/// `io.funnelhub.derived.TicketKind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TicketKind {
    AccountCreated,
    OnboardingFailed,
    /// A guided setup session handed off to a person.
    SetupNeedsHuman,
    Unknown,
}

impl TicketKind {
    /// The Avro symbol.
    pub fn as_str(self) -> &'static str {
        match self {
            TicketKind::AccountCreated => "account_created",
            TicketKind::OnboardingFailed => "onboarding_failed",
            TicketKind::SetupNeedsHuman => "setup_needs_human",
            TicketKind::Unknown => "unknown",
        }
    }
}

/// `io.funnelhub.derived.OpsTicket`: one per session and kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpsTicket {
    pub ticket_id: String,
    pub tenant_id: String,
    pub session_id: String,
    pub domain: String,
    pub kind: TicketKind,
    pub subject: String,
    pub cause_event_id: String,
    pub created_at: i64,
}

/// `io.funnelhub.derived.MatchMethod`: which rule matched, deterministic rules first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchMethod {
    ClickId,
    SessionId,
    EmailHash,
    PhoneHash,
    Scoring,
    Unmatched,
    Unknown,
}

impl MatchMethod {
    /// The Avro symbol.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchMethod::ClickId => "click_id",
            MatchMethod::SessionId => "session_id",
            MatchMethod::EmailHash => "email_hash",
            MatchMethod::PhoneHash => "phone_hash",
            MatchMethod::Scoring => "scoring",
            MatchMethod::Unmatched => "unmatched",
            MatchMethod::Unknown => "unknown",
        }
    }
}

/// `io.funnelhub.derived.MatchResult`: one decision per conversion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatchResult {
    pub match_id: String,
    pub tenant_id: String,
    pub conversion_id: String,
    pub order_id: String,
    pub gateway: Gateway,
    pub conversion_type: EventType,
    pub original_conversion_id: Option<String>,
    pub matched_event_id: Option<String>,
    pub matched_session_id: Option<String>,
    pub method: MatchMethod,
    pub score: f64,
    pub signals: Vec<String>,
    pub decided_at: i64,
}

/// `io.funnelhub.derived.CapiDispatchRequest`: one server event for Meta's Conversions API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapiDispatchRequest {
    pub dispatch_id: String,
    pub tenant_id: String,
    pub pixel_id: String,
    pub event_name: String,
    pub event_id: String,
    /// ms since the Unix epoch; Meta receives seconds.
    pub event_time: i64,
    pub action_source: String,
    pub event_source_url: Option<String>,
    pub identity: HashedIdentity,
    pub click_ids: ClickIds,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub value: Option<f64>,
    pub currency: Option<String>,
    pub content_ids: Vec<String>,
    pub order_id: Option<String>,
    pub consent_ads: bool,
    pub blocked_reason: Option<String>,
    pub match_id: Option<String>,
}

/// `io.funnelhub.derived.AttemptOutcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    Sent,
    Retrying,
    FailedPermanent,
    Expired,
    Blocked,
    Unknown,
}

impl AttemptOutcome {
    /// The Avro symbol.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Sent => "sent",
            AttemptOutcome::Retrying => "retrying",
            AttemptOutcome::FailedPermanent => "failed_permanent",
            AttemptOutcome::Expired => "expired",
            AttemptOutcome::Blocked => "blocked",
            AttemptOutcome::Unknown => "unknown",
        }
    }
}

/// `io.funnelhub.derived.DispatchAttempt`: audit of one attempt against Meta.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DispatchAttempt {
    pub attempt_id: String,
    pub tenant_id: String,
    pub pixel_id: String,
    pub request_id: String,
    pub event_ids: Vec<String>,
    pub attempt: i32,
    pub outcome: AttemptOutcome,
    pub http_status: Option<i32>,
    pub fbtrace_id: Option<String>,
    pub events_received: Option<i32>,
    pub error_code: Option<i32>,
    pub error_subcode: Option<i32>,
    pub error_message: Option<String>,
    pub latency_ms: i64,
    pub attempted_at: i64,
}

/// `io.funnelhub.derived.DlqReason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DlqReason {
    Undecodable,
    UnknownSchema,
    InvalidRecord,
    PermanentDeliveryFailure,
    Unknown,
}

impl DlqReason {
    /// The Avro symbol.
    pub fn as_str(self) -> &'static str {
        match self {
            DlqReason::Undecodable => "undecodable",
            DlqReason::UnknownSchema => "unknown_schema",
            DlqReason::InvalidRecord => "invalid_record",
            DlqReason::PermanentDeliveryFailure => "permanent_delivery_failure",
            DlqReason::Unknown => "unknown",
        }
    }
}

/// `io.funnelhub.derived.DlqRecord`: a record a stage could not process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DlqRecord {
    pub dlq_id: String,
    pub stage: String,
    pub reason: DlqReason,
    pub error: String,
    pub source: Option<SourcePosition>,
    pub tenant_id: Option<String>,
    pub event_id: Option<String>,
    #[serde(with = "apache_avro::serde::bytes_opt")]
    pub key: Option<Vec<u8>>,
    #[serde(with = "apache_avro::serde::bytes_opt")]
    pub value: Option<Vec<u8>>,
    pub failed_at: i64,
}

#[cfg(test)]
mod symbol_tests {
    use super::*;
    use crate::common::{EventType, Gateway, Source};
    use crate::events::gateway_name;

    fn avro<T: Serialize>(value: T) -> String {
        serde_json::to_value(value)
            .expect("serializes")
            .as_str()
            .expect("a symbol")
            .to_owned()
    }

    /// The `as_str`/`symbol` methods tables and labels use are the Avro symbols.
    #[test]
    fn names_are_the_avro_symbols() {
        use FunnelStage as S;
        for f in [Funnel::Onboarding, Funnel::Tracking, Funnel::Unknown] {
            assert_eq!(f.as_str(), avro(f));
        }
        for s in [
            S::Click,
            S::Pageview,
            S::InitiateCheckout,
            S::CheckoutAbandoned,
            S::PaymentPending,
            S::Purchase,
            S::Started,
            S::DomainValidated,
            S::DnsApplied,
            S::AccountCreated,
            S::InfraSynced,
            S::Completed,
            S::Unknown,
        ] {
            assert_eq!(s.as_str(), avro(s));
        }
        for o in [
            FunnelOutcome::InProgress,
            FunnelOutcome::Completed,
            FunnelOutcome::Failed,
            FunnelOutcome::Unknown,
        ] {
            assert_eq!(o.as_str(), avro(o));
        }
        for k in [
            TicketKind::AccountCreated,
            TicketKind::OnboardingFailed,
            TicketKind::SetupNeedsHuman,
            TicketKind::Unknown,
        ] {
            assert_eq!(k.as_str(), avro(k));
        }
        for m in [
            MatchMethod::ClickId,
            MatchMethod::SessionId,
            MatchMethod::EmailHash,
            MatchMethod::PhoneHash,
            MatchMethod::Scoring,
            MatchMethod::Unmatched,
            MatchMethod::Unknown,
        ] {
            assert_eq!(m.as_str(), avro(m));
        }
        for a in [
            AttemptOutcome::Sent,
            AttemptOutcome::Retrying,
            AttemptOutcome::FailedPermanent,
            AttemptOutcome::Expired,
            AttemptOutcome::Blocked,
            AttemptOutcome::Unknown,
        ] {
            assert_eq!(a.as_str(), avro(a));
        }
        for r in [
            DlqReason::Undecodable,
            DlqReason::UnknownSchema,
            DlqReason::InvalidRecord,
            DlqReason::PermanentDeliveryFailure,
            DlqReason::Unknown,
        ] {
            assert_eq!(r.as_str(), avro(r));
        }
        for t in EventType::ALL.into_iter().chain([EventType::Unknown]) {
            assert_eq!(t.symbol(), avro(t));
        }
        for s in [
            Source::LandingPage,
            Source::Hotmart,
            Source::Kiwify,
            Source::Stripe,
            Source::OnboardingPortal,
            Source::Unknown,
        ] {
            assert_eq!(s.as_str(), avro(s));
        }
        for g in [
            Gateway::Hotmart,
            Gateway::Kiwify,
            Gateway::Stripe,
            Gateway::Unknown,
        ] {
            assert_eq!(gateway_name(g), avro(g));
        }
    }
}

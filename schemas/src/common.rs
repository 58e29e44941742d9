//! Named types shared by several records (`avro/common/*.avsc`).

use serde::{Deserialize, Serialize};

/// `io.funnelhub.common.EventType`: every event the edge accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    Click,
    Pageview,
    InitiateCheckout,
    Purchase,
    Refund,
    Chargeback,
    Cancel,
    OnboardingStarted,
    DomainValidated,
    DnsApplied,
    AccountCreated,
    InfraSynced,
    OnboardingCompleted,
    OnboardingFailed,
    CheckoutAbandoned,
    PaymentPending,
    PaymentFailed,
    SubscriptionRenewed,
    SubscriptionCanceled,
    PlanChanged,
    /// Written by a newer producer with a symbol this reader does not know.
    Unknown,
}

impl EventType {
    /// Every known event type, in funnel order within each family.
    pub const ALL: [EventType; 20] = [
        EventType::Click,
        EventType::Pageview,
        EventType::InitiateCheckout,
        EventType::Purchase,
        EventType::Refund,
        EventType::Chargeback,
        EventType::Cancel,
        EventType::OnboardingStarted,
        EventType::DomainValidated,
        EventType::DnsApplied,
        EventType::AccountCreated,
        EventType::InfraSynced,
        EventType::OnboardingCompleted,
        EventType::OnboardingFailed,
        EventType::CheckoutAbandoned,
        EventType::PaymentPending,
        EventType::PaymentFailed,
        EventType::SubscriptionRenewed,
        EventType::SubscriptionCanceled,
        EventType::PlanChanged,
    ];

    /// The Avro symbol (`onboarding_started`), as analysts' tables store it.
    pub fn symbol(self) -> &'static str {
        match self {
            EventType::Click => "click",
            EventType::Pageview => "pageview",
            EventType::InitiateCheckout => "initiate_checkout",
            EventType::Purchase => "purchase",
            EventType::Refund => "refund",
            EventType::Chargeback => "chargeback",
            EventType::Cancel => "cancel",
            EventType::OnboardingStarted => "onboarding_started",
            EventType::DomainValidated => "domain_validated",
            EventType::DnsApplied => "dns_applied",
            EventType::AccountCreated => "account_created",
            EventType::InfraSynced => "infra_synced",
            EventType::OnboardingCompleted => "onboarding_completed",
            EventType::OnboardingFailed => "onboarding_failed",
            EventType::CheckoutAbandoned => "checkout_abandoned",
            EventType::PaymentPending => "payment_pending",
            EventType::PaymentFailed => "payment_failed",
            EventType::SubscriptionRenewed => "subscription_renewed",
            EventType::SubscriptionCanceled => "subscription_canceled",
            EventType::PlanChanged => "plan_changed",
            EventType::Unknown => "unknown",
        }
    }

    /// The name used on the wire by sources and in APIs (`onboarding.started`, `purchase`...):
    /// the onboarding portal's dotted names, else the Avro symbol.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::OnboardingStarted => "onboarding.started",
            EventType::DomainValidated => "domain.validated",
            EventType::DnsApplied => "dns.applied",
            EventType::AccountCreated => "account.created",
            EventType::InfraSynced => "infra.synced",
            EventType::OnboardingCompleted => "onboarding.completed",
            EventType::OnboardingFailed => "onboarding.failed",
            other => other.symbol(),
        }
    }

    /// One of the seven onboarding-portal milestones?
    pub fn is_onboarding(self) -> bool {
        matches!(
            self,
            EventType::OnboardingStarted
                | EventType::DomainValidated
                | EventType::DnsApplied
                | EventType::AccountCreated
                | EventType::InfraSynced
                | EventType::OnboardingCompleted
                | EventType::OnboardingFailed
        )
    }

    /// Parse a wire name (see [`EventType::as_str`]).
    pub fn from_wire(name: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

/// `io.funnelhub.common.Source`: which edge endpoint produced an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    LandingPage,
    Hotmart,
    Kiwify,
    Stripe,
    OnboardingPortal,
    Unknown,
}

impl Source {
    /// The Avro symbol.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::LandingPage => "landing_page",
            Source::Hotmart => "hotmart",
            Source::Kiwify => "kiwify",
            Source::Stripe => "stripe",
            Source::OnboardingPortal => "onboarding_portal",
            Source::Unknown => "unknown",
        }
    }
}

/// `io.funnelhub.common.Gateway`: payment gateways.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Gateway {
    Hotmart,
    Kiwify,
    Stripe,
    Unknown,
}

/// `io.funnelhub.common.Consent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    /// May the event be sent to ad platforms? `false` blocks every Meta dispatch.
    pub ads: bool,
    /// May the event be kept for first-party analytics?
    pub analytics: bool,
}

/// `io.funnelhub.common.HashedIdentity`: SHA-256 hex of values normalized per Meta's rules.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HashedIdentity {
    pub email_hash: Option<String>,
    pub phone_hash: Option<String>,
    pub first_name_hash: Option<String>,
    pub last_name_hash: Option<String>,
    pub city_hash: Option<String>,
    pub state_hash: Option<String>,
    pub zip_hash: Option<String>,
    pub country_hash: Option<String>,
    pub gender_hash: Option<String>,
    pub birth_date_hash: Option<String>,
    pub external_id_hash: Option<String>,
}

/// `io.funnelhub.common.Envelope`: fields every edge event carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Deterministic id (see [`crate::ids`]).
    pub event_id: String,
    pub tenant_id: String,
    pub event_type: EventType,
    /// Event time, ms since the Unix epoch.
    pub occurred_at: i64,
    /// When the edge accepted the event, ms since the Unix epoch.
    pub received_at: i64,
    pub source: Source,
    /// Version of the funnelhub event contract ([`crate::SCHEMA_VERSION`]).
    pub schema_version: i32,
    pub consent: Consent,
    pub identity: HashedIdentity,
}

/// `io.funnelhub.common.Utm`: campaign parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Utm {
    pub source: Option<String>,
    pub medium: Option<String>,
    pub campaign: Option<String>,
    pub content: Option<String>,
    pub term: Option<String>,
}

/// `io.funnelhub.common.ClickIds`: ad platforms' click identifiers, raw.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClickIds {
    pub fbclid: Option<String>,
    pub fbc: Option<String>,
    pub fbp: Option<String>,
    /// Google Ads and TikTok click ids, kept for destinations beyond Meta.
    #[serde(default)]
    pub gclid: Option<String>,
    #[serde(default)]
    pub gbraid: Option<String>,
    #[serde(default)]
    pub wbraid: Option<String>,
    #[serde(default)]
    pub ttclid: Option<String>,
}

/// `io.funnelhub.common.SourcePosition`: where a record was read from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SourcePosition {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// Digits after the decimal point of a currency's minor unit (ISO 4217).
pub fn minor_unit_digits(currency: &str) -> u32 {
    match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

/// An amount in minor units (19790 BRL cents) as major units (197.9), as Meta expects.
pub fn minor_to_major(amount_minor: i64, currency: &str) -> f64 {
    amount_minor as f64 / 10f64.powi(minor_unit_digits(currency) as i32)
}

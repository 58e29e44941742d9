//! Processor state as written to the state topics (`avro/DedupeEntry.avsc`,
//! `avro/FunnelSession.avsc`, `avro/MatchEntry.avsc`): tables, one record per state key,
//! compacted by Kafka. A processor's state for one source partition is rebuilt from the
//! live entries; see `docs/processors.md`.

use serde::{Deserialize, Serialize};

use crate::common::EventType;
use crate::derived::{
    CapiDispatchRequest, Funnel, FunnelOutcome, FunnelStage, FunnelTransition, MatchResult,
    OpsTicket,
};
use crate::events::{OrderEvent, TrackingHit};

/// `io.funnelhub.state.DedupeEntry`: a dedupe key and where it was first seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DedupeEntry {
    pub dedupe_key: String,
    pub first_seen_offset: i64,
    /// The edge's `received_at` of the first occurrence.
    pub record_time: i64,
}

/// `io.funnelhub.state.TimelineEntry`: one event applied to a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub event_id: String,
    pub event_type: EventType,
    pub occurred_at: i64,
}

/// `io.funnelhub.state.FunnelSession`: one session's funnel state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunnelSession {
    /// Every transition emitted, in emission order.
    pub transitions: Vec<FunnelTransition>,
    /// Every ops ticket emitted.
    pub tickets: Vec<OpsTicket>,
    pub tenant_id: String,
    pub funnel: Funnel,
    pub subject_id: String,
    /// Furthest stage reached, by the funnel's fixed order.
    pub stage: Option<FunnelStage>,
    pub outcome: FunnelOutcome,
    /// Newest record time applied (drives expiry).
    pub last_record_time: i64,
    pub domain: Option<String>,
    pub utm_campaign: Option<String>,
    /// Events applied, in event-time order.
    pub timeline: Vec<TimelineEntry>,
}

/// `io.funnelhub.state.MatchDecision`: what was emitted for one conversion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatchDecision {
    pub result: MatchResult,
    pub dispatch: Option<CapiDispatchRequest>,
    /// The conversion's `received_at`.
    pub record_time: i64,
}

/// `io.funnelhub.state.StreamTime`: a matcher partition's stream time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamTime {
    pub stream_time: i64,
}

/// What one entry of the matcher's state holds. Variant order is the Avro union order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MatchFact {
    /// A hit of a visit.
    TrackingHit(TrackingHit),
    /// A conversion waiting for its grace period.
    OrderEvent(OrderEvent),
    /// The decision taken for a conversion (replaces its waiting entry).
    MatchDecision(MatchDecision),
    StreamTime(StreamTime),
}

/// `io.funnelhub.state.MatchEntry`: one entry of the matcher's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatchEntry {
    pub entry: MatchFact,
}

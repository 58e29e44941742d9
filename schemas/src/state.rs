//! Processor state as written to changelog topics (`avro/DedupeChangelog.avsc`,
//! `avro/FunnelChangelog.avsc`, `avro/MatchChangelog.avsc`). A processor's state for one source partition is rebuilt
//! by replaying these records in order; see `docs/processors.md`.

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

/// `io.funnelhub.state.DedupeChangelog`: keys first seen in one flush of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DedupeChangelog {
    pub source_topic: String,
    pub source_partition: i32,
    pub entries: Vec<DedupeEntry>,
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
    /// The session left the state; a restore drops it.
    pub expired: bool,
}

/// `io.funnelhub.state.FunnelChangelog`: sessions changed in one flush of one partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunnelChangelog {
    pub source_topic: String,
    pub source_partition: i32,
    /// Shared with the funnel's state: a flush writes them without copying.
    pub sessions: Vec<std::sync::Arc<FunnelSession>>,
}

/// `io.funnelhub.state.MatchDecision`: what was emitted for one conversion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatchDecision {
    pub result: MatchResult,
    pub dispatch: Option<CapiDispatchRequest>,
    /// The conversion's `received_at`.
    pub record_time: i64,
}

/// `io.funnelhub.state.MatchChangelog`: matcher state changed in one flush of one partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatchChangelog {
    pub source_topic: String,
    pub source_partition: i32,
    /// Newest record time applied.
    pub stream_time: i64,
    /// Hits added to visits.
    pub hits: Vec<TrackingHit>,
    /// Conversions now waiting for their grace period.
    pub pending: Vec<OrderEvent>,
    /// Decisions taken.
    pub decisions: Vec<MatchDecision>,
}

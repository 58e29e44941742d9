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

/// Cut `v` in two halves, in order.
fn halve<T>(mut v: Vec<T>) -> (Vec<T>, Vec<T>) {
    let second = v.split_off(v.len() / 2);
    (v, second)
}

impl DedupeChangelog {
    /// Two records that, applied in order, apply what this one does; `Err(self)` if it
    /// holds one entry.
    pub fn halves(self) -> Result<(Self, Self), Self> {
        if self.entries.len() < 2 {
            return Err(self);
        }
        let (a, b) = halve(self.entries);
        let part = |entries| DedupeChangelog {
            source_topic: self.source_topic.clone(),
            source_partition: self.source_partition,
            entries,
        };
        Ok((part(a), part(b)))
    }
}

impl FunnelChangelog {
    /// Two records that, applied in order, apply what this one does; `Err(self)` if it
    /// holds one session.
    pub fn halves(self) -> Result<(Self, Self), Self> {
        if self.sessions.len() < 2 {
            return Err(self);
        }
        let (a, b) = halve(self.sessions);
        let part = |sessions| FunnelChangelog {
            source_topic: self.source_topic.clone(),
            source_partition: self.source_partition,
            sessions,
        };
        Ok((part(a), part(b)))
    }
}

impl MatchChangelog {
    /// Two records that, applied in order, apply what this one does (each kind of entry is
    /// cut in order; restore applies hits, pending conversions and decisions
    /// independently); `Err(self)` if it holds one entry.
    pub fn halves(self) -> Result<(Self, Self), Self> {
        if self.hits.len() + self.pending.len() + self.decisions.len() < 2 {
            return Err(self);
        }
        let (hits_a, hits_b) = halve(self.hits);
        let (pending_a, pending_b) = halve(self.pending);
        let (decisions_a, decisions_b) = halve(self.decisions);
        let part = |hits, pending, decisions| MatchChangelog {
            source_topic: self.source_topic.clone(),
            source_partition: self.source_partition,
            stream_time: self.stream_time,
            hits,
            pending,
            decisions,
        };
        Ok((
            part(hits_a, pending_a, decisions_a),
            part(hits_b, pending_b, decisions_b),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{sample_order_event, sample_tracking_hit};

    #[test]
    fn halves_hold_every_entry_once_in_order() {
        let hit = |i: usize| {
            let mut hit = sample_tracking_hit();
            hit.envelope.event_id = format!("hit-{i}");
            hit
        };
        let whole = MatchChangelog {
            source_topic: "t".into(),
            source_partition: 3,
            stream_time: 42,
            hits: (0..5).map(hit).collect(),
            pending: vec![sample_order_event()],
            decisions: Vec::new(),
        };
        let (a, b) = whole.clone().halves().expect("five hits and a conversion");
        assert_eq!([a.hits.clone(), b.hits.clone()].concat(), whole.hits);
        assert_eq!(
            [a.pending.clone(), b.pending.clone()].concat(),
            whole.pending
        );
        for part in [&a, &b] {
            assert_eq!((part.source_partition, part.stream_time), (3, 42));
        }
        let single = MatchChangelog {
            hits: vec![hit(0)],
            pending: Vec::new(),
            ..whole
        };
        assert!(single.halves().is_err(), "one entry cannot be cut");
        let entries = |n: usize| DedupeChangelog {
            source_topic: "t".into(),
            source_partition: 0,
            entries: (0..n)
                .map(|i| DedupeEntry {
                    dedupe_key: format!("k{i}"),
                    first_seen_offset: i as i64,
                    record_time: 0,
                })
                .collect(),
        };
        let (a, b) = entries(3).halves().expect("three entries");
        assert_eq!(a.entries.len() + b.entries.len(), 3);
        assert!(entries(1).halves().is_err());
    }
}

//! Funnel stages: `deduped.events` → `funnel.transitions` and `ops.tickets`.
//!
//! Two funnels, each with a fixed stage order:
//! - onboarding, per portal `session_id`: started → domain_validated → dns_applied →
//!   account_created → infra_synced → completed; `onboarding.failed` is an outcome;
//! - tracking, per landing-page session: click → pageview → initiate_checkout →
//!   checkout_abandoned → payment_pending → purchase (gateway events that carry the
//!   session id: an abandoned cart, a Pix or boleto generated, a paid order; the matcher
//!   links the others). A payment that failed or expired, or an order canceled, is a
//!   failure: it closes the session as `failed` unless a purchase completes it.
//!
//! A session's stage is the furthest stage reached by that order, so events arriving late
//! (retries) never move it backwards; its outcome is `completed` once the last stage is
//! reached, else `failed` once a failure was seen, else `in_progress`. Both are functions
//! of the *set* of events, whatever order they came in. The timeline keeps event-time
//! order. A transition record is emitted each time stage or outcome changes; its id is a
//! function of (tenant, funnel, session, stage, outcome), a pair a session reaches at
//! most once. `account.created` and `onboarding.failed` each open one ops ticket per
//! session.
//!
//! Replay: every transition and ticket is kept in the session's state with the event that
//! caused it. Reading that event again re-emits them unchanged; any other event already
//! applied changes nothing.

use foldhash::{HashMap, HashSet};
use std::sync::Arc;

use funnelhub_kafka::dlq::DeadLetters;
use funnelhub_kafka::stage::{
    Output, PartitionProcessor, ProcessError, Record, Stage, StateChange,
};
use funnelhub_kafka::{Suppressions, TopicCodec};
use funnelhub_schemas::catalog::key;
use funnelhub_schemas::common::EventType;
use funnelhub_schemas::derived::{
    DedupedEvent, Funnel, FunnelOutcome, FunnelStage, FunnelTransition, OpsTicket, TicketKind,
};
use funnelhub_schemas::events::EdgeEvent;
use funnelhub_schemas::ids::deterministic_id;
use funnelhub_schemas::state::{FunnelSession, TimelineEntry};
use funnelhub_schemas::StageId;
use funnelhub_tenants::TenantDirectory;

use crate::dedupe::fatal;
use crate::retention::Sweeper;

/// Timeline entries kept per session (the oldest go first).
const TIMELINE_LIMIT: usize = 100;
/// Expired sessions are swept once per this much record time.
const SWEEP_EVERY_MS: i64 = 60 * 60 * 1000;

/// What an event does to its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Reach(FunnelStage),
    Fail,
}

/// The funnel, session and effect of an event; `None` for events outside every funnel
/// (refunds, orders without a session id).
pub fn classify(event: &EdgeEvent) -> Option<(Funnel, &str, Effect)> {
    let event_type = event.envelope().event_type;
    let effect = match event_type {
        EventType::Click => Effect::Reach(FunnelStage::Click),
        EventType::Pageview => Effect::Reach(FunnelStage::Pageview),
        EventType::InitiateCheckout => Effect::Reach(FunnelStage::InitiateCheckout),
        EventType::CheckoutAbandoned => Effect::Reach(FunnelStage::CheckoutAbandoned),
        EventType::PaymentPending => Effect::Reach(FunnelStage::PaymentPending),
        EventType::Purchase => Effect::Reach(FunnelStage::Purchase),
        EventType::PaymentFailed | EventType::Cancel => Effect::Fail,
        EventType::OnboardingStarted => Effect::Reach(FunnelStage::Started),
        EventType::DomainValidated => Effect::Reach(FunnelStage::DomainValidated),
        EventType::DnsApplied => Effect::Reach(FunnelStage::DnsApplied),
        EventType::AccountCreated => Effect::Reach(FunnelStage::AccountCreated),
        EventType::InfraSynced => Effect::Reach(FunnelStage::InfraSynced),
        EventType::OnboardingCompleted => Effect::Reach(FunnelStage::Completed),
        EventType::OnboardingFailed => Effect::Fail,
        EventType::Refund
        | EventType::Chargeback
        | EventType::SubscriptionRenewed
        | EventType::SubscriptionCanceled
        | EventType::PlanChanged
        | EventType::Unknown => return None,
    };
    match event {
        EdgeEvent::TrackingHit(hit) => Some((Funnel::Tracking, hit.session_id.as_str(), effect)),
        EdgeEvent::OrderEvent(order) => order
            .session_id
            .as_deref()
            .map(|session| (Funnel::Tracking, session, effect)),
        EdgeEvent::OnboardingEvent(e) => Some((Funnel::Onboarding, e.session_id.as_str(), effect)),
    }
}

/// Records one event makes the funnel emit.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Emitted {
    pub transitions: Vec<FunnelTransition>,
    pub tickets: Vec<OpsTicket>,
}

/// The sessions of one source partition. Pure logic, no I/O.
#[derive(Debug)]
pub struct FunnelState {
    ttl_ms: i64,
    /// Shared with the state changes of a flush, which write them without copying
    /// (a session changed while a flush still holds it is copied then, `Arc::make_mut`).
    /// Behind a pointer, the map moves 8 bytes per session when it grows.
    sessions: HashMap<String, Arc<FunnelSession>>,
    changed: HashSet<String>,
    /// Keys of the sessions that left since the last flush.
    gone: Vec<String>,
    watermark: i64,
    next_sweep: i64,
}

impl FunnelState {
    /// An empty state; sessions idle for `ttl_ms` of record time are dropped.
    pub fn new(ttl_ms: i64) -> Self {
        FunnelState {
            ttl_ms,
            sessions: HashMap::default(),
            changed: HashSet::default(),
            gone: Vec::new(),
            watermark: i64::MIN,
            next_sweep: i64::MIN,
        }
    }

    /// A session's state.
    pub fn session(&self, tenant: &str, funnel: Funnel, subject: &str) -> Option<&FunnelSession> {
        self.sessions
            .get(&session_key(tenant, funnel, subject))
            .map(|s| &**s)
    }

    /// Sessions held.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Apply `event` (record time `record_time`), appending what it emits to `emitted`.
    pub fn apply(&mut self, event: &EdgeEvent, record_time: i64, emitted: &mut Emitted) {
        let Some((funnel, subject, effect)) = classify(event) else {
            return;
        };
        let envelope = event.envelope();
        let session_key = session_key(&envelope.tenant_id, funnel, subject);
        if !self.sessions.contains_key(&session_key) {
            let session = Arc::new(FunnelSession {
                transitions: Vec::new(),
                tickets: Vec::new(),
                tenant_id: envelope.tenant_id.clone(),
                funnel,
                subject_id: subject.to_owned(),
                stage: None,
                outcome: FunnelOutcome::InProgress,
                last_record_time: record_time,
                domain: None,
                utm_campaign: None,
                timeline: Vec::new(),
            });
            self.sessions.insert(session_key.clone(), session);
        }
        let session = Arc::make_mut(
            self.sessions
                .get_mut(&session_key)
                .expect("inserted above when missing"),
        );

        // Replay: re-emit what this event caused, change nothing.
        let event_id = envelope.event_id.as_str();
        let caused = |cause: &str| cause == event_id;
        if session
            .transitions
            .iter()
            .any(|t| caused(&t.cause_event_id))
            || session.tickets.iter().any(|t| caused(&t.cause_event_id))
        {
            emitted.transitions.extend(
                session
                    .transitions
                    .iter()
                    .filter(|t| caused(&t.cause_event_id))
                    .cloned(),
            );
            emitted.tickets.extend(
                session
                    .tickets
                    .iter()
                    .filter(|t| caused(&t.cause_event_id))
                    .cloned(),
            );
            return;
        }
        if session.timeline.iter().any(|e| e.event_id == event_id) {
            return;
        }

        let entry = TimelineEntry {
            event_id: event_id.to_owned(),
            event_type: envelope.event_type,
            occurred_at: envelope.occurred_at,
        };
        let at = session.timeline.partition_point(|e| {
            (e.occurred_at, &e.event_id) <= (entry.occurred_at, &entry.event_id)
        });
        session.timeline.insert(at, entry);
        if session.timeline.len() > TIMELINE_LIMIT {
            session.timeline.remove(0);
        }
        session.last_record_time = session.last_record_time.max(record_time);
        match event {
            EdgeEvent::OnboardingEvent(e) if session.domain.is_none() => {
                session.domain = Some(e.domain.clone())
            }
            EdgeEvent::TrackingHit(hit) if session.utm_campaign.is_none() => {
                session.utm_campaign = hit.utm.campaign.clone()
            }
            _ => {}
        }

        let reached = match effect {
            Effect::Reach(stage) => stage,
            // A failed onboarding had at least started; a failed payment was at least
            // pending.
            Effect::Fail => match funnel {
                Funnel::Tracking => FunnelStage::PaymentPending,
                Funnel::Onboarding | Funnel::Unknown => FunnelStage::Started,
            },
        };
        let stage = session.stage.max(Some(reached)).unwrap_or(reached);
        let outcome = if Some(stage) == funnel.last_stage() {
            FunnelOutcome::Completed
        } else if effect == Effect::Fail || session.outcome == FunnelOutcome::Failed {
            FunnelOutcome::Failed
        } else {
            FunnelOutcome::InProgress
        };
        if Some(stage) != session.stage || outcome != session.outcome {
            let transition = FunnelTransition {
                transition_id: deterministic_id(
                    "transition",
                    &[
                        &session.tenant_id,
                        funnel.as_str(),
                        &session.subject_id,
                        stage.as_str(),
                        outcome.as_str(),
                    ],
                ),
                tenant_id: session.tenant_id.clone(),
                funnel,
                subject_id: session.subject_id.clone(),
                from_stage: session.stage,
                to_stage: stage,
                outcome,
                cause_event_id: event_id.to_owned(),
                occurred_at: envelope.occurred_at,
                domain: session.domain.clone(),
                utm_campaign: session.utm_campaign.clone(),
            };
            session.stage = Some(stage);
            session.outcome = outcome;
            session.transitions.push(transition.clone());
            emitted.transitions.push(transition);
        }

        let ticket_kind = match envelope.event_type {
            EventType::AccountCreated => Some(TicketKind::AccountCreated),
            EventType::OnboardingFailed => Some(TicketKind::OnboardingFailed),
            _ => None,
        };
        if let Some(kind) = ticket_kind {
            if !session.tickets.iter().any(|t| t.kind == kind) {
                let domain = session.domain.clone().unwrap_or_default();
                let ticket = OpsTicket {
                    ticket_id: deterministic_id(
                        "ticket",
                        &[
                            &session.tenant_id,
                            &session.subject_id,
                            envelope.event_type.as_str(),
                        ],
                    ),
                    tenant_id: session.tenant_id.clone(),
                    session_id: session.subject_id.clone(),
                    subject: format!("[{}] {domain}", envelope.event_type.as_str()),
                    domain,
                    kind,
                    cause_event_id: event_id.to_owned(),
                    created_at: envelope.occurred_at,
                };
                session.tickets.push(ticket.clone());
                emitted.tickets.push(ticket);
            }
        }

        if !self.changed.contains(&session_key) {
            self.changed.insert(session_key);
        }
        self.watermark = self.watermark.max(record_time);
        self.sweep();
    }

    /// Drop sessions idle for the TTL, at most once per hour of record time.
    fn sweep(&mut self) {
        if self.watermark < self.next_sweep {
            return;
        }
        self.next_sweep = self.watermark.saturating_add(SWEEP_EVERY_MS);
        let cutoff = self.watermark.saturating_sub(self.ttl_ms);
        self.forget(|s| s.last_record_time < cutoff);
    }

    /// Newest record time applied.
    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    /// Drop the sessions `drop` names (a tenant's shorter retention, a purged person); they
    /// are deleted from the state topic too. How many.
    pub fn forget(&mut self, drop: impl Fn(&FunnelSession) -> bool) -> usize {
        let gone: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, s)| drop(s))
            .map(|(k, _)| k.clone())
            .collect();
        for key in &gone {
            self.sessions.remove(key);
            self.changed.remove(key);
        }
        let count = gone.len();
        self.gone.extend(gone);
        count
    }

    /// Apply a session read from the state topic (restore).
    pub fn restore(&mut self, key: &str, session: Arc<FunnelSession>) {
        self.watermark = self.watermark.max(session.last_record_time);
        self.sessions.insert(key.to_owned(), session);
    }

    /// Changes since the last call: the sessions that left, then those changed.
    pub fn take_changes(&mut self) -> Vec<StateChange<Arc<FunnelSession>>> {
        let mut changes: Vec<_> = self
            .gone
            .drain(..)
            .map(|key| StateChange::Delete { key })
            .collect();
        for key in self.changed.drain() {
            if let Some(session) = self.sessions.get(&key) {
                let entry = Arc::clone(session);
                changes.push(StateChange::Put { key, entry });
            }
        }
        changes
    }

    /// Every session, sorted by key (to compare states).
    pub fn sessions(&self) -> Vec<(&str, &FunnelSession)> {
        let mut sessions: Vec<_> = self
            .sessions
            .iter()
            .map(|(key, session)| (key.as_str(), &**session))
            .collect();
        sessions.sort_unstable_by_key(|(key, _)| *key);
        sessions
    }
}

fn session_key(tenant: &str, funnel: Funnel, subject: &str) -> String {
    key(&[tenant, funnel.as_str(), subject])
}

/// The funnel stage: codecs of its input and outputs.
#[derive(Debug)]
pub struct FunnelStageProcessor {
    pub(crate) ttl_ms: i64,
    pub(crate) deduped: TopicCodec<DedupedEvent>,
    pub(crate) transitions: TopicCodec<FunnelTransition>,
    pub(crate) tickets: TopicCodec<OpsTicket>,
    pub(crate) dead_letters: Arc<DeadLetters>,
    pub(crate) state: TopicCodec<Arc<FunnelSession>>,
    pub(crate) suppressions: Suppressions,
    /// Tenants' `retention_days` (live).
    pub(crate) tenants: TenantDirectory,
}

impl Stage for FunnelStageProcessor {
    type Processor = FunnelProcessor;

    fn name(&self) -> &'static str {
        StageId::Funnel.name()
    }

    fn inputs(&self) -> Vec<String> {
        vec![self.deduped.topic().to_owned()]
    }

    fn state(&self) -> Option<&TopicCodec<Arc<FunnelSession>>> {
        Some(&self.state)
    }

    fn processor(self: &Arc<Self>, topic: &str, partition: i32) -> FunnelProcessor {
        FunnelProcessor {
            stage: self.clone(),
            topic: topic.to_owned(),
            partition,
            state: FunnelState::new(self.ttl_ms),
            emitted: Emitted::default(),
            sweeper: Sweeper::new(&self.suppressions),
        }
    }
}

/// Funnels of the sessions on one partition of `deduped.events`.
#[derive(Debug)]
pub struct FunnelProcessor {
    stage: Arc<FunnelStageProcessor>,
    topic: String,
    partition: i32,
    state: FunnelState,
    emitted: Emitted,
    sweeper: Sweeper,
}

impl FunnelProcessor {
    /// Its state.
    pub fn state(&self) -> &FunnelState {
        &self.state
    }
}

impl PartitionProcessor for FunnelProcessor {
    type State = Arc<FunnelSession>;

    fn restore(&mut self, key: &str, session: Arc<FunnelSession>) {
        if self.stage.suppressions.covers(&*session) {
            // A purged person's session leaves the state topic too.
            self.state.gone.push(key.to_owned());
            return;
        }
        self.state.restore(key, session);
    }

    async fn process(
        &mut self,
        batch: &[Record],
        out: &mut Vec<Output>,
    ) -> Result<(), ProcessError> {
        let decoded = self
            .stage
            .dead_letters
            .decode_all(batch, &self.stage.deduped)
            .await?;
        for (record, deduped) in batch.iter().zip(decoded) {
            let deduped = match deduped {
                Ok(deduped) => deduped,
                Err(letter) => {
                    out.push(letter);
                    continue;
                }
            };
            if self.stage.suppressions.skip("funnel", &deduped) {
                continue;
            }
            let record_time = deduped.event.envelope().received_at;
            self.state
                .apply(&deduped.event, record_time, &mut self.emitted);
            self.write(&record.trace, out)?;
        }
        let stage = &self.stage;
        if let Some(sweep) = self.sweeper.due(
            &stage.suppressions,
            &stage.tenants,
            self.state.watermark(),
            stage.ttl_ms,
        ) {
            let forgotten = self.state.forget(|s| sweep.drops(s, s.last_record_time));
            tracing::debug!(forgotten, "funnel sessions swept (retention, purges)");
        }
        metrics::gauge!(
            "funnelhub_funnel_sessions",
            "topic" => self.topic.clone(),
            "partition" => self.partition.to_string(),
        )
        .set(self.state.len() as f64);
        Ok(())
    }

    fn take_changes(&mut self) -> Vec<StateChange<Arc<FunnelSession>>> {
        self.state.take_changes()
    }
}

impl FunnelProcessor {
    /// Encode what the last event emitted; the records carry its `trace`.
    fn write(
        &mut self,
        trace: &Option<Arc<str>>,
        out: &mut Vec<Output>,
    ) -> Result<(), ProcessError> {
        for transition in self.emitted.transitions.drain(..) {
            metrics::counter!(
                "funnelhub_funnel_transitions_total",
                "funnel" => transition.funnel.as_str(),
                "to_stage" => transition.to_stage.as_str(),
                "outcome" => transition.outcome.as_str(),
            )
            .increment(1);
            out.push(Output {
                topic: Arc::from(self.stage.transitions.topic()),
                key: key(&[&transition.tenant_id, &transition.subject_id]).into_bytes(),
                value: self.stage.transitions.encode(&transition).map_err(fatal)?,
                trace: trace.clone(),
            });
        }
        for ticket in self.emitted.tickets.drain(..) {
            metrics::counter!("funnelhub_ops_tickets_total", "kind" => ticket.kind.as_str())
                .increment(1);
            out.push(Output {
                topic: Arc::from(self.stage.tickets.topic()),
                key: key(&[&ticket.tenant_id, &ticket.session_id]).into_bytes(),
                value: self.stage.tickets.encode(&ticket).map_err(fatal)?,
                trace: trace.clone(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use funnelhub_schemas::testing::sample_tracking_hit;

    fn hit(tenant: &str, session: &str, id: &str) -> EdgeEvent {
        let mut hit = sample_tracking_hit();
        hit.envelope.tenant_id = tenant.into();
        hit.envelope.event_id = id.into();
        hit.session_id = session.into();
        EdgeEvent::TrackingHit(hit)
    }

    fn order(session: &str, kind: EventType, id: &str, at: i64) -> EdgeEvent {
        let mut order = funnelhub_schemas::testing::sample_order_event();
        order.envelope.tenant_id = "acme".into();
        order.envelope.event_type = kind;
        order.envelope.event_id = id.into();
        order.envelope.occurred_at = at;
        order.session_id = Some(session.into());
        EdgeEvent::OrderEvent(order)
    }

    /// Stage and outcome after applying `events` in order.
    fn end_state(events: &[EdgeEvent]) -> (Option<FunnelStage>, FunnelOutcome) {
        let mut state = FunnelState::new(i64::MAX / 4);
        let mut emitted = Emitted::default();
        for (i, event) in events.iter().enumerate() {
            state.apply(event, i as i64, &mut emitted);
        }
        let session = state
            .session("acme", Funnel::Tracking, "s")
            .expect("session");
        (session.stage, session.outcome)
    }

    #[test]
    fn gateway_events_move_the_tracking_funnel_in_any_order() {
        let checkout = {
            let EdgeEvent::TrackingHit(mut hit) = hit("acme", "s", "h1") else {
                unreachable!()
            };
            hit.envelope.event_type = EventType::InitiateCheckout;
            EdgeEvent::TrackingHit(hit)
        };
        let abandoned = order("s", EventType::CheckoutAbandoned, "o1", 2);
        let pending = order("s", EventType::PaymentPending, "o2", 3);
        let paid = order("s", EventType::Purchase, "o3", 4);
        let failed = order("s", EventType::PaymentFailed, "o4", 5);
        let (stage, outcome) = end_state(&[checkout.clone(), abandoned.clone()]);
        assert_eq!(
            (stage, outcome),
            (
                Some(FunnelStage::CheckoutAbandoned),
                FunnelOutcome::InProgress
            )
        );
        let (stage, outcome) = end_state(&[checkout.clone(), pending.clone()]);
        assert_eq!(
            (stage, outcome),
            (Some(FunnelStage::PaymentPending), FunnelOutcome::InProgress)
        );
        // A Pix that expired closes the session; paid later, it completes it.
        let (stage, outcome) = end_state(&[checkout.clone(), pending.clone(), failed.clone()]);
        assert_eq!(
            (stage, outcome),
            (Some(FunnelStage::PaymentPending), FunnelOutcome::Failed)
        );
        for events in [
            vec![
                checkout.clone(),
                abandoned.clone(),
                pending.clone(),
                paid.clone(),
            ],
            vec![
                paid.clone(),
                pending.clone(),
                abandoned.clone(),
                checkout.clone(),
            ],
            vec![pending, failed, paid, abandoned, checkout],
        ] {
            assert_eq!(
                end_state(&events),
                (Some(FunnelStage::Purchase), FunnelOutcome::Completed)
            );
        }
        // Renewals and plan changes are outside the funnel.
        let mut state = FunnelState::new(i64::MAX / 4);
        let mut emitted = Emitted::default();
        state.apply(
            &order("r", EventType::SubscriptionRenewed, "o9", 1),
            1,
            &mut emitted,
        );
        assert!(state.is_empty() && emitted.transitions.is_empty());
    }

    #[test]
    fn changes_taken_for_a_flush_are_not_altered_by_later_events() {
        let mut state = FunnelState::new(i64::MAX / 4);
        let mut emitted = Emitted::default();
        state.apply(&hit("acme", "s", "e1"), 10, &mut emitted);
        let flushed = puts(state.take_changes());
        assert_eq!(flushed.len(), 1);
        // The flush still holds the session while the next event changes it.
        state.apply(&hit("acme", "s", "e2"), 20, &mut emitted);
        assert_eq!(flushed[0].1.timeline.len(), 1);
        assert_eq!(flushed[0].1.last_record_time, 10);
        let next = puts(state.take_changes());
        assert_eq!(next[0].1.timeline.len(), 2);
        assert_eq!(
            state
                .session("acme", Funnel::Tracking, "s")
                .map(|s| s.last_record_time),
            Some(20)
        );
        // Once the flush let go, the session is changed in place again (no copy).
        drop((flushed, next));
        let before = state
            .session("acme", Funnel::Tracking, "s")
            .map(|s| s as *const _);
        state.apply(&hit("acme", "s", "e3"), 30, &mut emitted);
        let after = state
            .session("acme", Funnel::Tracking, "s")
            .map(|s| s as *const _);
        assert_eq!(before, after);
    }

    /// The puts of `changes`.
    fn puts(changes: Vec<StateChange<Arc<FunnelSession>>>) -> Vec<(String, Arc<FunnelSession>)> {
        changes
            .into_iter()
            .filter_map(|c| match c {
                StateChange::Put { key, entry } => Some((key, entry)),
                StateChange::Delete { .. } => None,
            })
            .collect()
    }

    /// A state topic: the last entry of each key, none for a deleted key.
    #[derive(Default)]
    struct Table(std::collections::BTreeMap<String, Arc<FunnelSession>>);

    impl Table {
        fn write(&mut self, changes: Vec<StateChange<Arc<FunnelSession>>>) {
            for change in changes {
                match change {
                    StateChange::Put { key, entry } => self.0.insert(key, entry),
                    StateChange::Delete { key } => self.0.remove(&key),
                };
            }
        }

        fn restore(&self) -> FunnelState {
            let mut state = FunnelState::new(i64::MAX / 4);
            for (key, session) in &self.0 {
                state.restore(key, session.clone());
            }
            state
        }
    }

    #[test]
    fn forgotten_sessions_are_deleted_from_the_state_topic() {
        let mut state = FunnelState::new(i64::MAX / 4);
        let mut emitted = Emitted::default();
        let mut table = Table::default();
        state.apply(&hit("acme", "gone", "e1"), 10, &mut emitted);
        state.apply(&hit("acme", "kept", "e2"), 20, &mut emitted);
        table.write(state.take_changes());
        assert_eq!(table.restore().len(), 2);
        assert_eq!(table.restore().sessions(), state.sessions());

        let forgotten = state.forget(|s| s.timeline.iter().any(|e| e.event_id == "e1"));
        assert_eq!(forgotten, 1);
        assert!(state.session("acme", Funnel::Tracking, "gone").is_none());
        let changes = state.take_changes();
        assert!(
            matches!(&changes[..], [StateChange::Delete { key }] if key.contains("gone")),
            "{changes:?}"
        );
        table.write(changes);
        let restored = table.restore();
        assert!(restored.session("acme", Funnel::Tracking, "gone").is_none());
        assert!(restored.session("acme", Funnel::Tracking, "kept").is_some());

        // The session's event read again (a replay not suppressed) starts it afresh.
        state.apply(&hit("acme", "gone", "e1"), 30, &mut emitted);
        assert_eq!(
            state
                .session("acme", Funnel::Tracking, "gone")
                .map(|s| s.timeline.len()),
            Some(1)
        );
    }
}

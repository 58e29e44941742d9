//! The matcher: `matching.inputs` → `matching.results` and `capi.requests`.
//!
//! Time is record time. A conversion received at `t` is decided once, by [`rules::find`]
//! over the visits' hits received by its *deadline* `t + grace`, when the partition's
//! *stream time* passes that deadline. Stream time is a watermark: the newest
//! `received_at` read less `max_out_of_order_secs` (records of different partitions
//! arrive interleaved, mostly when catching up). A record that pushes it past deadlines
//! first decides those conversions, then is applied. When a partition receives nothing (a
//! quiet night), the tick decides the conversions whose deadline is older than the wall
//! clock minus `idle_slack_secs` *and* that were read at least `grace` ago (wall time): a
//! live conversion is still decided about `grace` after it arrived, while one read during
//! a catch-up waits for the upstream stages to deliver the visits around it. Which hits a
//! decision sees is fixed by the deadline, not by when the matcher read them, as long as
//! they arrived within the allowance.
//!
//! Replay: every decision is kept (as long as the input topic keeps records) and reading
//! its conversion again re-emits it unchanged: same ids, same content. Hits already in
//! their visit change nothing; their page-view dispatch requests are re-emitted with the
//! same ids (Meta deduplicates by `event_id`).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use foldhash::HashMap;
use funnelhub_kafka::dlq::DeadLetters;
use funnelhub_kafka::stage::{
    Output, PartitionProcessor, ProcessError, Record, Stage, StateChange,
};
use funnelhub_kafka::{Suppressions, TopicCodec};
use funnelhub_schemas::catalog::key;
use funnelhub_schemas::common::EventType;
use funnelhub_schemas::derived::{CapiDispatchRequest, DedupedEvent, MatchMethod, MatchResult};
use funnelhub_schemas::events::{gateway_name, EdgeEvent, OrderEvent, TrackingHit};
use funnelhub_schemas::ids::{deterministic_id, now_ms, order_event_id};
use funnelhub_schemas::state::{MatchDecision, MatchEntry, MatchFact, StreamTime};
use funnelhub_schemas::StageId;
use funnelhub_tenants::TenantDirectory;

use super::dispatch;
use super::rules::{self, Window};
use super::visits::{hit_key, Visits};
use crate::config::MatchConfig;
use crate::dedupe::fatal;
use crate::retention::{Sweep, Sweeper};

/// The state key of the partition's stream time.
const STREAM_TIME_KEY: &str = "stream-time";
/// How long a partition goes without records before its processor is ticked.
pub const TICK: std::time::Duration = std::time::Duration::from_secs(1);

/// A record the matcher emits.
#[derive(Debug, Clone, PartialEq)]
pub enum Emitted {
    Match(Box<MatchResult>),
    Dispatch(Box<CapiDispatchRequest>),
}

/// A conversion waiting for its deadline.
#[derive(Debug, Clone, Copy)]
struct Waiting {
    deadline: i64,
    read_at: i64,
}

/// The matching state of one partition. Pure logic, no I/O; `now` (wall time, ms) is only
/// stamped on decisions (`decided_at`) and used by [`MatchState::tick`].
#[derive(Debug)]
pub struct MatchState {
    config: Arc<MatchConfig>,
    /// Each tenant's Meta pixel, live (a tenant without one gets its requests blocked
    /// `no_meta_pixel`).
    tenants: TenantDirectory,
    visits: Visits,
    /// Conversions waiting, by (deadline, conversion id).
    pending: BTreeMap<(i64, String), OrderEvent>,
    /// Each waiting conversion: its deadline and when (wall time) it was read.
    pending_ids: HashMap<String, Waiting>,
    decisions: HashMap<String, MatchDecision>,
    /// (record time, conversion id) of decisions, for expiry.
    decided: VecDeque<(i64, String)>,
    /// Newest record time read.
    newest: i64,
    /// The watermark: records older than this are not expected any more.
    stream_time: i64,
    /// The stream time the state topic holds.
    stream_time_written: i64,
    /// Changes not yet written to the state topic, in order (the visits keep theirs).
    changes: Vec<StateChange<MatchEntry>>,
}

/// A conversion's key in the state: its waiting entry, then its decision.
fn conversion_key(conversion_id: &str) -> String {
    key(&["conversion", conversion_id])
}

fn put(key: String, entry: MatchFact) -> StateChange<MatchEntry> {
    StateChange::Put {
        key,
        entry: MatchEntry { entry },
    }
}

impl MatchState {
    /// An empty state.
    pub fn new(config: Arc<MatchConfig>, tenants: TenantDirectory) -> Self {
        MatchState {
            config,
            tenants,
            visits: Visits::default(),
            pending: BTreeMap::new(),
            pending_ids: HashMap::default(),
            decisions: HashMap::default(),
            decided: VecDeque::new(),
            newest: i64::MIN,
            stream_time: i64::MIN,
            stream_time_written: i64::MIN,
            changes: Vec::new(),
        }
    }

    /// Visits held.
    pub fn visits(&self) -> usize {
        self.visits.len()
    }

    /// Conversions waiting for their grace period.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Newest record time applied.
    pub fn stream_time(&self) -> i64 {
        self.stream_time
    }

    /// Apply a landing-page hit.
    pub fn hit(&mut self, hit: TrackingHit, now: i64, out: &mut Vec<Emitted>) {
        self.read(hit.envelope.received_at, now, out);
        out.extend(dispatch::for_hit(&hit, &self.tenants).map(|d| Emitted::Dispatch(Box::new(d))));
        let key = hit_key(&hit);
        if self.visits.add(hit.clone()) {
            self.changes.push(put(key, MatchFact::TrackingHit(hit)));
        }
    }

    /// Apply a gateway conversion: wait for its grace period, or re-emit its decision.
    pub fn conversion(&mut self, order: OrderEvent, now: i64, out: &mut Vec<Emitted>) {
        self.read(order.envelope.received_at, now, out);
        let id = &order.envelope.event_id;
        if let Some(decision) = self.decisions.get(id) {
            emit(decision, out);
            return;
        }
        if self.pending_ids.contains_key(id) {
            return;
        }
        let deadline = order.envelope.received_at + self.config.grace_ms();
        if deadline < self.stream_time {
            // Read after its deadline (a backlog): decide with what is known by then.
            self.decide(order, now, out);
        } else {
            let key = conversion_key(id);
            self.wait(order.clone(), deadline, now);
            self.changes.push(put(key, MatchFact::OrderEvent(order)));
        }
    }

    /// Nothing was read for a while: decide the conversions due by the wall clock (less
    /// the slack for records in flight) that have waited `grace` since they were read.
    pub fn tick(&mut self, now: i64, out: &mut Vec<Emitted>) {
        let due_by = now - i64::from(self.config.idle_slack_secs) * 1000;
        let read_by = now - self.config.grace_ms();
        let due: Vec<(i64, String)> = self
            .pending
            .keys()
            .take_while(|(deadline, _)| *deadline <= due_by)
            .filter(|(_, id)| self.pending_ids[id].read_at <= read_by)
            .cloned()
            .collect();
        for key in due {
            let order = self.pending.remove(&key).expect("pending");
            self.pending_ids.remove(&key.1);
            self.decide(order, now, out);
        }
    }

    /// A record of `time` was read: move the watermark behind it.
    fn read(&mut self, time: i64, now: i64, out: &mut Vec<Emitted>) {
        self.newest = self.newest.max(time);
        let watermark = self
            .newest
            .saturating_sub(self.config.max_out_of_order_ms());
        self.advance(watermark, now, out);
    }

    fn wait(&mut self, order: OrderEvent, deadline: i64, read_at: i64) {
        let id = order.envelope.event_id.clone();
        self.pending_ids
            .insert(id.clone(), Waiting { deadline, read_at });
        self.pending.insert((deadline, id), order);
    }

    /// Move stream time to `time`: decide the conversions now due, forget what is too old.
    fn advance(&mut self, time: i64, now: i64, out: &mut Vec<Emitted>) {
        if time <= self.stream_time {
            return;
        }
        self.stream_time = time;
        while let Some(entry) = self.pending.first_entry() {
            if entry.key().0 >= time {
                break;
            }
            let order = entry.remove();
            self.pending_ids.remove(&order.envelope.event_id);
            self.decide(order, now, out);
        }
        self.expire();
    }

    fn expire(&mut self) {
        let config = &self.config;
        // A waiting conversion was received at most `grace` before stream time and looks
        // back `lookback` from there.
        self.visits.expire(
            self.stream_time
                .saturating_sub(config.grace_ms())
                .saturating_sub(config.lookback_ms()),
        );
        let cutoff = self
            .stream_time
            .saturating_sub(config.decision_retention_ms());
        while self.decided.front().is_some_and(|(time, _)| *time < cutoff) {
            let (_, id) = self.decided.pop_front().expect("front exists");
            if self.decisions.remove(&id).is_some() {
                self.changes.push(StateChange::Delete {
                    key: conversion_key(&id),
                });
            }
        }
    }

    /// Decide `order` now and remember the decision.
    fn decide(&mut self, order: OrderEvent, now: i64, out: &mut Vec<Emitted>) {
        let envelope = &order.envelope;
        let tenant = envelope.tenant_id.as_str();
        let match_id = deterministic_id("match", &[tenant, &envelope.event_id]);
        let reversal = matches!(
            envelope.event_type,
            EventType::Refund | EventType::Chargeback | EventType::Cancel
        );
        let original_conversion_id = reversal.then(|| {
            let purchase = order
                .original_order_id
                .as_deref()
                .unwrap_or(&order.order_id);
            order_event_id(
                tenant,
                gateway_name(order.gateway),
                purchase,
                EventType::Purchase.as_str(),
                None,
            )
        });
        let inherited = original_conversion_id
            .as_ref()
            .and_then(|id| self.decisions.get(id))
            .filter(|d| d.result.method != MatchMethod::Unmatched)
            .map(|d| d.result.clone());
        let deadline = envelope.received_at + self.config.grace_ms();
        let window = Window {
            deadline,
            oldest: envelope.received_at - self.config.lookback_ms(),
        };
        let (result, dispatch) = match inherited {
            // A reversal is attributed where its purchase was.
            Some(purchase) => {
                let mut signals = purchase.signals;
                signals.push("original_purchase".into());
                let result = MatchResult {
                    matched_event_id: purchase.matched_event_id,
                    matched_session_id: purchase.matched_session_id,
                    method: purchase.method,
                    score: purchase.score,
                    signals,
                    ..self.result(&order, &match_id, original_conversion_id, now)
                };
                (result, None)
            }
            None => {
                let found = rules::find(&order, &self.visits, window, &self.config.scoring);
                let dispatch = dispatch::for_conversion(
                    &order,
                    found.visit.as_ref(),
                    &match_id,
                    &self.tenants,
                );
                let result = MatchResult {
                    matched_event_id: found.event_id.map(str::to_owned),
                    matched_session_id: found.visit.map(|v| v.session_id().to_owned()),
                    method: found.method,
                    score: found.score,
                    signals: found.signals.iter().map(|s| (*s).to_owned()).collect(),
                    ..self.result(&order, &match_id, original_conversion_id, now)
                };
                (result, dispatch)
            }
        };
        metrics::counter!(
            "funnelhub_match_conversions_total",
            "method" => result.method.as_str(),
        )
        .increment(1);
        metrics::histogram!("funnelhub_match_decision_seconds")
            .record((now - envelope.received_at).max(0) as f64 / 1000.0);
        let decision = MatchDecision {
            result,
            dispatch,
            record_time: envelope.received_at,
        };
        emit(&decision, out);
        self.remember(decision.clone());
        let key = conversion_key(&decision.result.conversion_id);
        self.changes
            .push(put(key, MatchFact::MatchDecision(decision)));
    }

    /// A match result for `order` with its fixed fields set and no match.
    fn result(
        &self,
        order: &OrderEvent,
        match_id: &str,
        original_conversion_id: Option<String>,
        now: i64,
    ) -> MatchResult {
        MatchResult {
            match_id: match_id.to_owned(),
            tenant_id: order.envelope.tenant_id.clone(),
            conversion_id: order.envelope.event_id.clone(),
            order_id: order.order_id.clone(),
            gateway: order.gateway,
            conversion_type: order.envelope.event_type,
            original_conversion_id,
            matched_event_id: None,
            matched_session_id: None,
            method: MatchMethod::Unmatched,
            score: 0.0,
            signals: Vec::new(),
            decided_at: now,
        }
    }

    fn remember(&mut self, decision: MatchDecision) {
        let id = decision.result.conversion_id.clone();
        self.decided.push_back((decision.record_time, id.clone()));
        self.decisions.insert(id, decision);
    }

    /// Forget every visit, waiting conversion and decision `sweep` drops (tied to a purged
    /// person, or older than a tenant's shorter retention): none is matched, emitted or
    /// re-emitted again, and each leaves the state topic (a tombstone). A restore deletes
    /// purged entries it reads the same way (the list is read before any partition is
    /// restored), and the first sweep after it drops the old ones.
    pub fn forget(&mut self, sweep: &Sweep<'_>) {
        let visits = self.visits.forget(|visit| {
            sweep.too_old(&visit.key.0, visit.last_seen())
                || visit.hits().iter().any(|hit| sweep.purged(hit))
        });
        let pending = self.pending.len();
        let changes = &mut self.changes;
        let mut forget = |id: &str| {
            changes.push(StateChange::Delete {
                key: conversion_key(id),
            })
        };
        self.pending.retain(|(_, id), order| {
            let keep = !sweep.drops(order, order.envelope.received_at);
            if !keep {
                forget(id);
            }
            keep
        });
        let pending_ids = &mut self.pending_ids;
        pending_ids.retain(|id, w| self.pending.contains_key(&(w.deadline, id.clone())));
        let decisions = self.decisions.len();
        self.decisions.retain(|id, d| {
            let keep = !sweep.drops(d, d.record_time);
            if !keep {
                forget(id);
            }
            keep
        });
        tracing::debug!(
            visits,
            pending = pending - self.pending.len(),
            decisions = decisions - self.decisions.len(),
            "matcher state swept (retention, purges)"
        );
    }

    /// Apply an entry read from the state topic at restore (`now`: when, wall time).
    pub fn restore(&mut self, fact: MatchFact, now: i64) {
        match fact {
            MatchFact::TrackingHit(hit) => {
                self.visits.add(hit);
            }
            MatchFact::OrderEvent(order) => {
                let id = &order.envelope.event_id;
                if !self.decisions.contains_key(id) && !self.pending_ids.contains_key(id) {
                    let deadline = order.envelope.received_at + self.config.grace_ms();
                    self.wait(order, deadline, now);
                }
            }
            MatchFact::MatchDecision(decision) => {
                let id = &decision.result.conversion_id;
                if let Some(waiting) = self.pending_ids.remove(id) {
                    self.pending.remove(&(waiting.deadline, id.clone()));
                }
                self.remember(decision);
            }
            MatchFact::StreamTime(StreamTime { stream_time }) => {
                self.stream_time = self.stream_time.max(stream_time);
                self.stream_time_written = self.stream_time;
            }
        }
        self.expire();
    }

    /// Changes since the last call, in order, then the stream time if it moved.
    pub fn take_changes(&mut self) -> Vec<StateChange<MatchEntry>> {
        let mut changes: Vec<_> = self
            .visits
            .take_gone()
            .into_iter()
            .map(|key| StateChange::Delete { key })
            .collect();
        changes.append(&mut self.changes);
        if self.stream_time != self.stream_time_written {
            self.stream_time_written = self.stream_time;
            changes.push(put(
                STREAM_TIME_KEY.to_owned(),
                MatchFact::StreamTime(StreamTime {
                    stream_time: self.stream_time,
                }),
            ));
        }
        changes
    }

    /// Every visit's hits, waiting conversion and decision, and the stream time, in a
    /// fixed order (to compare states).
    pub fn snapshot(&self) -> (Vec<String>, Vec<String>, Vec<MatchDecision>, i64) {
        let mut hits: Vec<String> = self
            .visits
            .all()
            .flat_map(|visit| visit.hits().iter().map(hit_key))
            .collect();
        hits.sort_unstable();
        let mut pending: Vec<String> = self.pending_ids.keys().cloned().collect();
        pending.sort_unstable();
        let mut decisions: Vec<MatchDecision> = self.decisions.values().cloned().collect();
        decisions.sort_unstable_by(|a, b| a.result.conversion_id.cmp(&b.result.conversion_id));
        (hits, pending, decisions, self.stream_time)
    }
}

/// What a decision writes: its match result and, if any, its dispatch request.
fn emit(decision: &MatchDecision, out: &mut Vec<Emitted>) {
    out.push(Emitted::Match(Box::new(decision.result.clone())));
    out.extend(
        decision
            .dispatch
            .clone()
            .map(|d| Emitted::Dispatch(Box::new(d))),
    );
}

/// The matcher stage: its configuration and codecs.
#[derive(Debug)]
pub struct MatchStage {
    pub(crate) config: Arc<MatchConfig>,
    pub(crate) inputs: TopicCodec<DedupedEvent>,
    pub(crate) results: TopicCodec<MatchResult>,
    pub(crate) requests: TopicCodec<CapiDispatchRequest>,
    pub(crate) dead_letters: Arc<DeadLetters>,
    pub(crate) state: TopicCodec<MatchEntry>,
    pub(crate) suppressions: Suppressions,
    pub(crate) tenants: TenantDirectory,
}

impl Stage for MatchStage {
    type Processor = MatchProcessor;

    fn name(&self) -> &'static str {
        StageId::Match.name()
    }

    fn inputs(&self) -> Vec<String> {
        vec![self.inputs.topic().to_owned()]
    }

    fn state(&self) -> Option<&TopicCodec<MatchEntry>> {
        Some(&self.state)
    }

    fn tick_interval(&self) -> Option<std::time::Duration> {
        Some(TICK)
    }

    fn processor(self: &Arc<Self>, topic: &str, partition: i32) -> MatchProcessor {
        MatchProcessor {
            stage: self.clone(),
            topic: topic.to_owned(),
            partition,
            state: MatchState::new(self.config.clone(), self.tenants.clone()),
            emitted: Vec::new(),
            sweeper: Sweeper::new(&self.suppressions),
            traces: HashMap::default(),
        }
    }
}

/// The matcher of one partition.
#[derive(Debug)]
pub struct MatchProcessor {
    stage: Arc<MatchStage>,
    topic: String,
    partition: i32,
    state: MatchState,
    emitted: Vec<Emitted>,
    sweeper: Sweeper,
    /// Trace context of traced inputs whose records are not written yet (a conversion
    /// waits for its grace period), by (tenant, the id those records name: a hit's or
    /// conversion's event id, an order id). In memory only: a restart loses it.
    traces: HashMap<(String, String), Arc<str>>,
}

/// Traced inputs remembered at most (beyond, the oldest traces are simply lost).
const TRACES_KEPT: usize = 10_000;

impl MatchProcessor {
    /// After a new purge, and hourly while a tenant keeps less than the state's longest
    /// window (decisions, kept as long as the input), forget what must go.
    fn sweep(&mut self) {
        let stage = &self.stage;
        if let Some(sweep) = self.sweeper.due(
            &stage.suppressions,
            &stage.tenants,
            self.state.stream_time(),
            stage.config.decision_retention_ms(),
        ) {
            self.state.forget(&sweep);
        }
    }

    /// Remember the trace of a traced input until the records it causes are written.
    fn remember_trace(&mut self, event: &EdgeEvent, trace: &Arc<str>) {
        if self.traces.len() >= TRACES_KEPT {
            self.traces.clear();
        }
        let envelope = event.envelope();
        let mut remember = |id: &str| {
            self.traces
                .insert((envelope.tenant_id.clone(), id.to_owned()), trace.clone());
        };
        remember(&envelope.event_id);
        if let EdgeEvent::OrderEvent(order) = event {
            // Its dispatch request is named by the order id.
            remember(&order.order_id);
        }
    }

    /// Encode what the state emitted.
    fn write(&mut self, out: &mut Vec<Output>) -> Result<(), ProcessError> {
        let stage = &self.stage;
        for emitted in self.emitted.drain(..) {
            out.push(match emitted {
                Emitted::Match(result) => Output {
                    topic: Arc::from(stage.results.topic()),
                    key: key(&[&result.tenant_id, &result.conversion_id]).into_bytes(),
                    value: stage.results.encode(&result).map_err(fatal)?,
                    trace: take_trace(&mut self.traces, &result.tenant_id, &result.conversion_id),
                },
                Emitted::Dispatch(request) => {
                    metrics::counter!(
                        "funnelhub_capi_requests_total",
                        "event_name" => request.event_name.clone(),
                        "blocked" => request.blocked_reason.clone().unwrap_or_default(),
                    )
                    .increment(1);
                    Output {
                        topic: Arc::from(stage.requests.topic()),
                        key: key(&[&request.tenant_id, &request.event_id]).into_bytes(),
                        value: stage.requests.encode(&request).map_err(fatal)?,
                        trace: take_trace(&mut self.traces, &request.tenant_id, &request.event_id),
                    }
                }
            });
        }
        let labels = [
            ("topic", self.topic.clone()),
            ("partition", self.partition.to_string()),
        ];
        metrics::gauge!("funnelhub_match_visits", &labels).set(self.state.visits() as f64);
        metrics::gauge!("funnelhub_match_pending", &labels).set(self.state.pending() as f64);
        Ok(())
    }
}

fn take_trace(
    traces: &mut HashMap<(String, String), Arc<str>>,
    tenant_id: &str,
    id: &str,
) -> Option<Arc<str>> {
    if traces.is_empty() {
        return None;
    }
    traces.remove(&(tenant_id.to_owned(), id.to_owned()))
}

impl MatchProcessor {
    /// Its state.
    pub fn state(&self) -> &MatchState {
        &self.state
    }
}

impl PartitionProcessor for MatchProcessor {
    type State = MatchEntry;

    fn restore(&mut self, key: &str, entry: MatchEntry) {
        let suppressions = &self.stage.suppressions;
        let purged = match &entry.entry {
            MatchFact::TrackingHit(hit) => suppressions.covers(hit),
            MatchFact::OrderEvent(order) => suppressions.covers(order),
            MatchFact::MatchDecision(decision) => suppressions.covers(decision),
            MatchFact::StreamTime(_) => false,
        };
        if purged {
            // A purged person's entries leave the state topic too.
            self.state.changes.push(StateChange::Delete {
                key: key.to_owned(),
            });
            return;
        }
        self.state.restore(entry.entry, now_ms());
    }

    async fn process(
        &mut self,
        batch: &[Record],
        out: &mut Vec<Output>,
    ) -> Result<(), ProcessError> {
        let decoded = self
            .stage
            .dead_letters
            .decode_all(batch, &self.stage.inputs)
            .await?;
        let now = now_ms();
        self.sweep();
        let mut hits = Vec::new();
        for (record, event) in batch.iter().zip(decoded) {
            if let (Some(trace), Ok(deduped)) = (&record.trace, &event) {
                self.remember_trace(&deduped.event, trace);
                if let EdgeEvent::TrackingHit(hit) = &deduped.event {
                    hits.push((
                        hit.envelope.tenant_id.clone(),
                        hit.envelope.event_id.clone(),
                    ));
                }
            }
            match event {
                Ok(deduped) if self.stage.suppressions.skip("match", &deduped) => {}
                Ok(deduped) => match deduped.event {
                    EdgeEvent::TrackingHit(hit) => self.state.hit(hit, now, &mut self.emitted),
                    EdgeEvent::OrderEvent(order) => {
                        self.state.conversion(order, now, &mut self.emitted)
                    }
                    EdgeEvent::OnboardingEvent(_) => {}
                },
                Err(letter) => out.push(letter),
            }
        }
        self.write(out)?;
        // A hit's records are written with its batch; only conversions wait.
        for key in hits {
            self.traces.remove(&key);
        }
        Ok(())
    }

    fn take_changes(&mut self) -> Vec<StateChange<MatchEntry>> {
        self.state.take_changes()
    }

    fn tick(&mut self, out: &mut Vec<Output>) -> Result<(), ProcessError> {
        self.sweep();
        self.state.tick(now_ms(), &mut self.emitted);
        if self.emitted.is_empty() {
            return Ok(());
        }
        self.write(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use funnelhub_schemas::testing::{sample_order_event, sample_tracking_hit};

    const MIN: i64 = 60_000;
    const NOW: i64 = 1_800_000_000_000;

    fn config() -> Arc<MatchConfig> {
        let config = MatchConfig {
            grace_secs: 600,
            max_out_of_order_secs: 0,
            ..MatchConfig::default()
        };
        Arc::new(config)
    }

    fn tenants() -> TenantDirectory {
        let mut acme = funnelhub_tenants::TenantConfig::new("acme");
        acme.meta_pixel_id = Some("1234".into());
        TenantDirectory::fixed([acme])
    }

    fn hit(session: &str, id: &str, at: i64) -> TrackingHit {
        let mut hit = sample_tracking_hit();
        hit.envelope.event_type = EventType::Pageview;
        hit.session_id = session.into();
        hit.envelope.event_id = id.into();
        hit.envelope.received_at = at;
        hit
    }

    fn purchase(order_id: &str, session: &str, at: i64) -> OrderEvent {
        let mut order = sample_order_event();
        order.envelope.event_type = EventType::Purchase;
        order.order_id = order_id.into();
        order.envelope.event_id = order_event_id("acme", "stripe", order_id, "purchase", None);
        order.gateway = funnelhub_schemas::common::Gateway::Stripe;
        order.session_id = Some(session.into());
        order.envelope.identity = Default::default();
        order.click_ids = Default::default();
        order.envelope.received_at = at;
        order
    }

    fn results(out: &[Emitted]) -> Vec<&MatchResult> {
        out.iter()
            .filter_map(|e| match e {
                Emitted::Match(r) => Some(&**r),
                Emitted::Dispatch(_) => None,
            })
            .collect()
    }

    #[test]
    fn a_late_click_within_grace_matches_one_after_grace_does_not() {
        let mut state = MatchState::new(config(), tenants());
        let mut out = Vec::new();
        state.conversion(purchase("o-1", "within", 0), NOW, &mut out);
        state.conversion(purchase("o-2", "after", 0), NOW, &mut out);
        assert!(
            results(&out).is_empty(),
            "nothing is decided before the grace period"
        );
        state.hit(hit("within", "h-1", 9 * MIN), NOW, &mut out);
        // This hit passes the deadline: both conversions are decided before it applies.
        state.hit(hit("after", "h-2", 11 * MIN), NOW, &mut out);
        let decided = results(&out);
        assert_eq!(decided.len(), 2, "each conversion decided exactly once");
        assert_eq!(decided[0].method, MatchMethod::SessionId);
        assert_eq!(decided[0].matched_event_id.as_deref(), Some("h-1"));
        assert_eq!(decided[1].method, MatchMethod::Unmatched);
        state.hit(hit("after", "h-3", 30 * MIN), NOW, &mut out);
        assert_eq!(results(&out).len(), 2, "no second decision");
    }

    #[test]
    fn a_tenant_keeping_one_day_loses_its_visits_after_a_day_not_after_the_lookback() {
        const DAY: i64 = 24 * 60 * MIN;
        let mut acme = funnelhub_tenants::TenantConfig::new("acme");
        acme.meta_pixel_id = Some("1234".into());
        let mut state = MatchState::new(config(), TenantDirectory::fixed([acme.clone()]));
        let mut out = Vec::new();
        state.hit(hit("old", "h-old", 0), NOW, &mut out);
        state.hit(hit("recent", "h-new", 2 * DAY - 60 * MIN), NOW, &mut out);
        state.hit(hit("other", "h-x", 2 * DAY), NOW, &mut out);
        let none = Suppressions::none();
        let sweep = |tenants: &TenantDirectory, state: &MatchState| {
            Sweep::new(&none, tenants, state.stream_time, config().lookback_ms())
        };
        state.forget(&sweep(&tenants(), &state));
        assert_eq!(state.visits(), 3, "the 7-day lookback keeps all of them");
        acme.retention_days = Some(1);
        state.forget(&sweep(&TenantDirectory::fixed([acme]), &state));
        assert_eq!(state.visits(), 2, "a day-old visit is gone");
        state.conversion(purchase("o-1", "old", 2 * DAY), NOW, &mut out);
        state.conversion(purchase("o-2", "recent", 2 * DAY), NOW, &mut out);
        state.hit(hit("other", "h-y", 3 * DAY), NOW, &mut out);
        let decided = results(&out);
        assert_eq!(decided.len(), 2);
        let matched: Vec<_> = decided
            .iter()
            .filter_map(|r| r.matched_event_id.as_deref())
            .collect();
        assert_eq!(
            matched,
            ["h-new"],
            "the order of the forgotten visit is unmatched"
        );
    }

    #[test]
    fn the_out_of_order_allowance_waits_for_lagging_partitions() {
        let config = Arc::new(MatchConfig {
            max_out_of_order_secs: 300,
            ..(*config()).clone()
        });
        let mut state = MatchState::new(config, tenants());
        let mut out = Vec::new();
        state.conversion(purchase("o-1", "s", 0), NOW, &mut out);
        // Another partition is ahead: its records pass the deadline (10 min)...
        state.hit(hit("other", "x", 14 * MIN), NOW, &mut out);
        // ...before the lagging partition delivers the visit, received before the deadline.
        state.hit(hit("s", "h", 5 * MIN), NOW, &mut out);
        assert!(results(&out).is_empty(), "within the allowance");
        state.hit(hit("other", "y", 16 * MIN), NOW, &mut out);
        assert_eq!(results(&out)[0].method, MatchMethod::SessionId);
    }

    #[test]
    fn an_idle_partition_decides_by_the_wall_clock() {
        let mut state = MatchState::new(config(), tenants());
        let mut out = Vec::new();
        state.hit(hit("s", "h", NOW - MIN), NOW, &mut out);
        state.conversion(purchase("o-1", "s", NOW), NOW, &mut out);
        state.tick(NOW + 5 * MIN, &mut out);
        assert!(results(&out).is_empty(), "still within grace");
        state.tick(NOW + 11 * MIN, &mut out);
        assert_eq!(results(&out).len(), 1);
        assert_eq!(results(&out)[0].decided_at, NOW + 11 * MIN);
    }

    #[test]
    fn a_conversion_read_while_catching_up_waits_for_its_visits() {
        let mut state = MatchState::new(config(), tenants());
        let mut out = Vec::new();
        // Five hours of backlog: the conversion is long past its deadline by the clock...
        state.conversion(purchase("o-1", "s", NOW - 300 * MIN), NOW, &mut out);
        state.tick(NOW + MIN, &mut out);
        assert!(results(&out).is_empty(), "...but was read a minute ago");
        // ...so the upstream stages get to deliver its visit first.
        state.hit(hit("s", "h", NOW - 301 * MIN), NOW + 2 * MIN, &mut out);
        state.tick(NOW + 10 * MIN, &mut out);
        assert_eq!(results(&out)[0].method, MatchMethod::SessionId);
    }

    #[test]
    fn a_conversion_read_again_re_emits_its_decision() {
        let mut state = MatchState::new(config(), tenants());
        let mut first = Vec::new();
        state.hit(hit("s", "h", 0), NOW, &mut first);
        state.conversion(purchase("o-1", "s", 0), NOW, &mut first);
        state.hit(hit("x", "later", 20 * MIN), NOW, &mut first);
        let emitted: Vec<Emitted> = first
            .into_iter()
            .filter(|e| !matches!(e, Emitted::Dispatch(d) if d.match_id.is_none()))
            .collect();
        assert_eq!(emitted.len(), 2, "a match result and a Purchase request");
        let mut again = Vec::new();
        state.conversion(purchase("o-1", "s", 0), NOW + 99, &mut again);
        assert_eq!(again, emitted, "identical records, decided_at included");
    }

    /// A state topic after compaction: the last entry of each key not deleted, in the
    /// order they were written.
    #[derive(Default)]
    struct Table(Vec<(String, MatchEntry)>);

    impl Table {
        fn write(&mut self, changes: Vec<StateChange<MatchEntry>>) {
            for change in changes {
                match change {
                    StateChange::Put { key, entry } => {
                        self.0.retain(|(k, _)| *k != key);
                        self.0.push((key, entry));
                    }
                    StateChange::Delete { key } => self.0.retain(|(k, _)| *k != key),
                }
            }
        }

        fn restore(&self) -> MatchState {
            let mut state = MatchState::new(config(), tenants());
            for (_, entry) in &self.0 {
                state.restore(entry.entry.clone(), NOW);
            }
            state
        }
    }

    #[test]
    fn restore_gives_the_same_decisions() {
        let mut original = MatchState::new(config(), tenants());
        let mut table = Table::default();
        let mut out = Vec::new();
        original.hit(hit("s", "h", 0), NOW, &mut out);
        original.conversion(purchase("o-1", "s", MIN), NOW, &mut out);
        table.write(original.take_changes());
        let mut restored = table.restore();
        assert_eq!(restored.pending(), 1);
        assert_eq!(restored.snapshot(), original.snapshot());
        let (mut a, mut b) = (Vec::new(), Vec::new());
        original.hit(hit("y", "z", 30 * MIN), NOW, &mut a);
        restored.hit(hit("y", "z", 30 * MIN), NOW, &mut b);
        assert_eq!(a, b);
        assert_eq!(results(&a)[0].method, MatchMethod::SessionId);
        // And once decided, the decision itself is restored, in place of the waiting
        // conversion.
        table.write(original.take_changes());
        assert_eq!(table.0.len(), 4, "two hits, a decision, the stream time");
        let mut again = table.restore();
        assert_eq!(again.pending(), 0);
        assert_eq!(again.snapshot(), original.snapshot());
        let mut replay = Vec::new();
        again.conversion(purchase("o-1", "s", MIN), NOW, &mut replay);
        assert_eq!(results(&replay), results(&a));
    }

    #[test]
    fn a_refund_links_to_its_purchase_and_inherits_its_visit() {
        let mut state = MatchState::new(config(), tenants());
        let mut out = Vec::new();
        state.hit(hit("s", "h", 0), NOW, &mut out);
        let bought = purchase("o-1", "s", MIN);
        let purchase_id = bought.envelope.event_id.clone();
        state.conversion(bought, NOW, &mut out);
        let mut refund = purchase("o-1", "other", 60 * MIN);
        refund.session_id = None;
        refund.envelope.event_type = EventType::Refund;
        refund.envelope.event_id = order_event_id("acme", "stripe", "o-1", "refund", None);
        state.conversion(refund, NOW, &mut out);
        state.hit(hit("y", "z", 100 * MIN), NOW, &mut out);
        let decided = results(&out);
        assert_eq!(decided.len(), 2);
        let refund = decided[1];
        assert_eq!(
            refund.original_conversion_id.as_deref(),
            Some(purchase_id.as_str())
        );
        assert_eq!(refund.matched_session_id.as_deref(), Some("s"));
        assert_eq!(refund.signals, ["session_id", "original_purchase"]);
        let requests = out
            .iter()
            .filter(|e| matches!(e, Emitted::Dispatch(d) if d.match_id.is_some()))
            .count();
        assert_eq!(requests, 1, "the refund is not sent to Meta");
    }

    #[test]
    fn a_visit_without_ad_consent_is_matched_but_its_purchase_blocked() {
        let mut state = MatchState::new(config(), tenants());
        let mut out = Vec::new();
        let mut visit = hit("s", "h", 0);
        visit.envelope.consent.ads = false;
        state.hit(visit, NOW, &mut out);
        state.conversion(purchase("o-1", "s", 0), NOW, &mut out);
        state.tick(NOW + 60 * MIN, &mut out);
        assert_eq!(results(&out)[0].method, MatchMethod::SessionId);
        let purchase = out
            .iter()
            .find_map(|e| match e {
                Emitted::Dispatch(d) if d.event_name == "Purchase" => Some(d),
                _ => None,
            })
            .expect("a request");
        assert_eq!(
            purchase.blocked_reason.as_deref(),
            Some(dispatch::BLOCKED_CONSENT)
        );
        assert!(!purchase.consent_ads);
    }
}

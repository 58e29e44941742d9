//! The sink stage: `capi.requests` → Meta, every outcome durable before the offset moves.
//!
//! Per batch of one partition (up to `batch_size` records, lingering `linger_ms` to fill
//! it), each request ends in exactly one outcome:
//! - `suppressed`: tied to a purged person (`docs/privacy.md`): never sent, not audited;
//! - `blocked`: `blocked_reason` set or `consent_ads = false`: never sent;
//! - `expired`: older than `max_event_age_secs`: never sent;
//! - `sent`: Meta accepted the request holding it;
//! - DLQ (`permanent_delivery_failure`, Meta's error and the original record): the token,
//!   permission or pixel was refused, the event itself is invalid, the tenant has no
//!   access configured, or retryable failures lasted `max_attempts` attempts.
//!
//! Requests are grouped by (tenant, pixel) and sent in parallel, each group in chunks of
//! at most `batch_size`. An invalid event named by Meta is taken out and the rest re-sent
//! at once; an invalid request that names none is split in halves until the bad events
//! are alone. Every HTTP attempt, and every blocked or expired request, is written to
//! `capi.attempts`. The stage runner stores the offset only after those records and the
//! dead letters are acknowledged, so a crash re-sends at most the batch in flight, which
//! Meta deduplicates by `event_id`.

use std::collections::{BTreeMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use funnelhub_kafka::dlq::DeadLetters;
use funnelhub_kafka::stage::{Output, PartitionProcessor, ProcessError, Record, Stage};
use funnelhub_kafka::{Suppressions, TopicCodec};
use funnelhub_schemas::derived::{AttemptOutcome, CapiDispatchRequest, DispatchAttempt, DlqReason};
use funnelhub_schemas::ids::{deterministic_id, now_ms};
use funnelhub_schemas::StageId;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use rand::Rng;

use super::config::{CapiConfig, MetaAccess};
use super::graph::{Failure, FailureKind, GraphClient};
use super::payload::{EventsBody, ServerEvent};
use funnelhub_tenants::TenantDirectory;

/// The sink: configuration, codecs, the Graph client and the tenants' access.
#[derive(Debug)]
pub struct CapiSink {
    pub(crate) config: CapiConfig,
    pub(crate) requests: TopicCodec<CapiDispatchRequest>,
    pub(crate) attempts: TopicCodec<DispatchAttempt>,
    /// `attempts`' topic name, shared by every audit record.
    pub(crate) attempts_topic: Arc<str>,
    pub(crate) dead_letters: DeadLetters,
    pub(crate) graph: GraphClient,
    /// The tenants, live: a pixel or token set by `funnelhub tenants set` or setup's
    /// autoconfigure applies from the next batch.
    pub(crate) tenants: TenantDirectory,
    pub(crate) limiter: DefaultKeyedRateLimiter<String>,
    pub(crate) suppressions: Suppressions,
}

impl CapiSink {
    pub(crate) fn limiter(config: &CapiConfig) -> DefaultKeyedRateLimiter<String> {
        let rate = NonZeroU32::new(config.requests_per_second).unwrap_or(NonZeroU32::MIN);
        RateLimiter::keyed(Quota::per_second(rate))
    }
}

impl Stage for CapiSink {
    type Processor = CapiPartition;

    fn name(&self) -> &'static str {
        StageId::Capi.name()
    }

    fn inputs(&self) -> Vec<String> {
        vec![self.requests.topic().to_owned()]
    }

    fn state(&self) -> Option<&TopicCodec<DispatchAttempt>> {
        None
    }

    fn linger(&self) -> Option<Duration> {
        Some(Duration::from_millis(self.config.linger_ms))
    }

    fn processor(self: &Arc<Self>, _topic: &str, _partition: i32) -> CapiPartition {
        CapiPartition(self.clone())
    }
}

/// The sink of one partition (no state: outcomes are in Meta and `capi.attempts`).
#[derive(Debug)]
pub struct CapiPartition(Arc<CapiSink>);

/// A request to deliver and the record it came from.
type Item<'a> = (&'a Record, &'a CapiDispatchRequest);

fn fatal(e: impl std::fmt::Display) -> ProcessError {
    ProcessError::Fatal(e.to_string())
}

fn count(tenant: &str, outcome: &'static str, n: usize) {
    metrics::counter!("funnelhub_capi_events_total", "tenant" => tenant.to_owned(), "outcome" => outcome)
        .increment(n as u64);
}

impl PartitionProcessor for CapiPartition {
    type State = DispatchAttempt;

    async fn process(
        &mut self,
        batch: &[Record],
        out: &mut Vec<Output>,
    ) -> Result<(), ProcessError> {
        let sink = &*self.0;
        let decoded = sink.dead_letters.decode_all(batch, &sink.requests).await?;
        let mut requests = Vec::with_capacity(batch.len());
        for (record, decoded) in batch.iter().zip(decoded) {
            match decoded {
                Ok(request) => requests.push((record, request)),
                Err(letter) => out.push(letter),
            }
        }
        let now = now_ms();
        let max_age_ms = (sink.config.max_event_age_secs as i64).saturating_mul(1000);
        let mut groups: BTreeMap<(&str, &str), Vec<Item<'_>>> = BTreeMap::new();
        let mut access: BTreeMap<&str, Option<MetaAccess>> = BTreeMap::new();
        for (record, request) in &requests {
            let tenant = request.tenant_id.as_str();
            if sink.suppressions.skip("capi", request) {
                // A purged person: never sent, and no audit row that would name the event.
                count(tenant, "suppressed", 1);
            } else if let Some(reason) = blocked_reason(request) {
                count(tenant, "blocked", 1);
                out.push(sink.final_outcome(request, AttemptOutcome::Blocked, reason)?);
            } else if now.saturating_sub(request.event_time) > max_age_ms {
                count(tenant, "expired", 1);
                let reason = format!(
                    "event_time older than {} s: outside Meta's window",
                    sink.config.max_event_age_secs
                );
                out.push(sink.final_outcome(request, AttemptOutcome::Expired, &reason)?);
            } else {
                let of_tenant = access
                    .entry(tenant)
                    .or_insert_with(|| sink.tenants.get(tenant).and_then(|t| MetaAccess::of(&t)));
                match of_tenant {
                    Some(access) if access.pixel_id == request.pixel_id => groups
                        .entry((tenant, request.pixel_id.as_str()))
                        .or_default()
                        .push((record, request)),
                    Some(access) => out.push(sink.dead_letter(
                        (record, request),
                        format!(
                            "tenant {tenant}'s pixel is {}, the request is for pixel {}",
                            access.pixel_id, request.pixel_id
                        ),
                    )?),
                    None => out.push(sink.dead_letter(
                        (record, request),
                        format!("tenant {tenant} has no meta_access_token configured"),
                    )?),
                }
            }
        }
        let deliveries = groups.into_iter().flat_map(|((tenant, _), items)| {
            let access = access[tenant].as_ref().expect("grouped with an access");
            items
                .chunks(sink.config.batch_size)
                .map(|chunk| sink.deliver(access, chunk.to_vec()))
                .collect::<Vec<_>>()
        });
        for delivered in futures::future::join_all(deliveries).await {
            out.extend(delivered?);
        }
        Ok(())
    }
}

/// Why a request must not be sent, if it must not.
fn blocked_reason(request: &CapiDispatchRequest) -> Option<&str> {
    match &request.blocked_reason {
        Some(reason) => Some(reason),
        None if !request.consent_ads => Some("consent_ads=false"),
        None => None,
    }
}

impl CapiSink {
    /// Send `items` (one tenant and pixel, at most `batch_size`) until each is sent or
    /// dead-lettered; the audit records and dead letters to write.
    async fn deliver(
        &self,
        access: &MetaAccess,
        items: Vec<Item<'_>>,
    ) -> Result<Vec<Output>, ProcessError> {
        let tenant = items[0].1.tenant_id.clone();
        let mut out = Vec::new();
        let mut queue = VecDeque::from([items]);
        while let Some(chunk) = queue.pop_front() {
            let body = serde_json::to_vec(&EventsBody {
                data: chunk.iter().map(|(_, r)| ServerEvent::of(r)).collect(),
                test_event_code: access.test_event_code.as_deref(),
            })
            .map_err(fatal)?;
            let request_id = uuid::Uuid::new_v4().to_string();
            let mut delays = ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(self.config.backoff_base_ms))
                .with_max_delay(Duration::from_millis(self.config.backoff_max_ms))
                .without_max_times()
                .build();
            let mut attempt = 1;
            loop {
                self.limiter.until_key_ready(&tenant).await;
                let started = Instant::now();
                let result = self
                    .graph
                    .send_events(&access.pixel_id, &access.access_token, body.clone())
                    .await;
                let latency = started.elapsed();
                metrics::histogram!("funnelhub_capi_request_seconds", "tenant" => tenant.clone())
                    .record(latency.as_secs_f64());
                let retry = matches!(&result, Err(f) if f.kind == FailureKind::Retryable)
                    && attempt < self.config.max_attempts;
                out.push(self.audit(&request_id, &chunk, attempt, &result, retry, latency)?);
                let failure = match result {
                    Ok(accepted) => {
                        if accepted.events_received != Some(chunk.len() as i32) {
                            tracing::warn!(%tenant, pixel = %access.pixel_id, sent = chunk.len(),
                                received = ?accepted.events_received, "Meta counted another number of events");
                        }
                        count(&tenant, "sent", chunk.len());
                        break;
                    }
                    Err(failure) => failure,
                };
                if retry {
                    metrics::counter!("funnelhub_capi_retries_total", "tenant" => tenant.clone())
                        .increment(1);
                    // Full jitter: anywhere between 0 and the capped exponential delay.
                    let ceiling = delays.next().unwrap_or_default().as_millis() as u64;
                    let delay = rand::rng().random_range(0..=ceiling);
                    tracing::debug!(%tenant, attempt, delay_ms = delay, "retrying: {failure}");
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                    attempt += 1;
                    continue;
                }
                self.after_failure(failure, attempt, chunk, &mut queue, &mut out)?;
                break;
            }
        }
        Ok(out)
    }

    /// A failure that is not retried (any more): dead-letter what cannot succeed and
    /// queue what still can.
    fn after_failure<'a>(
        &self,
        failure: Failure,
        attempts: u32,
        mut chunk: Vec<Item<'a>>,
        queue: &mut VecDeque<Vec<Item<'a>>>,
        out: &mut Vec<Output>,
    ) -> Result<(), ProcessError> {
        match failure.kind {
            FailureKind::InvalidEvent(index) if index < chunk.len() => {
                let bad = chunk.remove(index);
                out.push(self.dead_letter(bad, format!("Meta refused the event: {failure}"))?);
                if !chunk.is_empty() {
                    queue.push_front(chunk);
                }
            }
            FailureKind::InvalidEvent(_) | FailureKind::InvalidRequest if chunk.len() > 1 => {
                let second = chunk.split_off(chunk.len() / 2);
                queue.push_front(second);
                queue.push_front(chunk);
            }
            kind => {
                let error = match kind {
                    FailureKind::Retryable => {
                        format!("gave up after {attempts} attempts: {failure}")
                    }
                    FailureKind::Refused => format!("Meta refused the request: {failure}"),
                    _ => format!("Meta refused the event: {failure}"),
                };
                for item in chunk {
                    out.push(self.dead_letter(item, error.clone())?);
                }
            }
        }
        Ok(())
    }

    fn dead_letter(
        &self,
        (record, request): Item<'_>,
        error: String,
    ) -> Result<Output, ProcessError> {
        count(&request.tenant_id, "dlq", 1);
        self.dead_letters
            .letter_of(
                record,
                DlqReason::PermanentDeliveryFailure,
                error,
                Some(&request.tenant_id),
                Some(&request.event_id),
            )
            .map_err(fatal)
    }

    /// The audit record of one HTTP attempt.
    fn audit(
        &self,
        request_id: &str,
        chunk: &[Item<'_>],
        attempt: u32,
        result: &Result<super::graph::Accepted, Failure>,
        retry: bool,
        latency: Duration,
    ) -> Result<Output, ProcessError> {
        let request = chunk[0].1;
        let (outcome, http_status, fbtrace_id, events_received, failure) = match result {
            Ok(accepted) => (
                AttemptOutcome::Sent,
                Some(i32::from(accepted.http_status)),
                accepted.fbtrace_id.clone(),
                accepted.events_received,
                None,
            ),
            Err(failure) => (
                if retry {
                    AttemptOutcome::Retrying
                } else {
                    AttemptOutcome::FailedPermanent
                },
                failure.http_status.map(i32::from),
                failure.fbtrace_id.clone(),
                None,
                Some(failure),
            ),
        };
        metrics::counter!(
            "funnelhub_capi_attempts_total",
            "tenant" => request.tenant_id.clone(),
            "outcome" => outcome.as_str(),
        )
        .increment(1);
        self.attempt_record(DispatchAttempt {
            attempt_id: uuid::Uuid::new_v4().to_string(),
            tenant_id: request.tenant_id.clone(),
            pixel_id: request.pixel_id.clone(),
            request_id: request_id.to_owned(),
            event_ids: chunk.iter().map(|(_, r)| r.event_id.clone()).collect(),
            attempt: attempt as i32,
            outcome,
            http_status,
            fbtrace_id,
            events_received,
            error_code: failure.and_then(|f| f.code),
            error_subcode: failure.and_then(|f| f.subcode),
            error_message: failure.map(Failure::to_string),
            latency_ms: latency.as_millis() as i64,
            attempted_at: now_ms(),
        })
    }

    /// The audit record of a request that is not sent. Its id is a function of the request
    /// and the outcome, so a replay writes the same record again.
    fn final_outcome(
        &self,
        request: &CapiDispatchRequest,
        outcome: AttemptOutcome,
        reason: &str,
    ) -> Result<Output, ProcessError> {
        let id = deterministic_id("capi-outcome", &[&request.dispatch_id, outcome.as_str()]);
        self.attempt_record(DispatchAttempt {
            attempt_id: id.clone(),
            tenant_id: request.tenant_id.clone(),
            pixel_id: request.pixel_id.clone(),
            request_id: id,
            event_ids: vec![request.event_id.clone()],
            attempt: 0,
            outcome,
            http_status: None,
            fbtrace_id: None,
            events_received: None,
            error_code: None,
            error_subcode: None,
            error_message: Some(reason.to_owned()),
            latency_ms: 0,
            attempted_at: now_ms(),
        })
    }

    fn attempt_record(&self, attempt: DispatchAttempt) -> Result<Output, ProcessError> {
        Ok(Output {
            topic: self.attempts_topic.clone(),
            key: format!("{}:{}", attempt.tenant_id, attempt.pixel_id).into_bytes(),
            value: self.attempts.encode(&attempt).map_err(fatal)?,
            trace: None,
        })
    }
}

//! Sending journeys to the edge at a steady rate, as the sources would: each journey's
//! requests in order (a gateway answers before the next webhook), many journeys at once,
//! and a retry after `Retry-After` when the edge answers 503 (as gateways do).

use funnelhub_schemas::ids::now_ms;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use indicatif::{ProgressBar, ProgressStyle};

use crate::facts::Facts;
use crate::gateways::{Delivery, Gateway};
use crate::journeys::{Generator, Journey, JourneyKind};

/// How hard and how long to drive the edge.
#[derive(Debug, Clone)]
pub struct Load {
    /// The edge's base URL (`http://127.0.0.1:8080`).
    pub edge: String,
    /// Requests per second, all journeys together.
    pub rate: u32,
    /// Stop starting journeys after this long...
    pub duration: Duration,
    /// ...or after this many journeys, whichever comes first.
    pub journeys: Option<u64>,
    /// Journeys in flight at once.
    pub concurrency: usize,
    /// Draw a progress bar on the terminal.
    pub progress: bool,
    /// Give up on a request after this many 503s / connection failures.
    pub max_attempts: u32,
}

/// What a run sent and the facts it must leave in the pipeline.
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    pub run: String,
    pub elapsed: Duration,
    pub journeys: u64,
    pub requests: u64,
    /// Requests sent again after a 503 or a connection failure.
    pub retried: u64,
    /// Requests the edge never accepted: the facts of their journeys are not reliable.
    pub failed: u64,
    /// The first few failures, with the edge's answer.
    pub failures: Vec<String>,
    /// Deliveries sent twice on purpose (gateway and beacon retries).
    pub duplicates: u64,
    /// Journeys whose events were sent out of order.
    pub out_of_order: u64,
    /// Per tenant: journeys by kind, purchases by gateway, refunds, onboarding outcomes.
    pub per_tenant: std::collections::BTreeMap<String, TenantCounts>,
    pub facts: Facts,
    /// Edge latency of accepted requests (ms, sorted).
    pub latencies_ms: Vec<f64>,
}

/// What one tenant's journeys were.
#[derive(Debug, Clone, Default)]
pub struct TenantCounts {
    pub visits: u64,
    pub direct_purchases: u64,
    pub onboarding: u64,
    pub purchases: std::collections::BTreeMap<&'static str, u64>,
    pub refunds: u64,
    pub onboarding_completed: u64,
    pub onboarding_failed: u64,
}

impl RunReport {
    fn add(&mut self, journey: Journey) {
        let counts = self.per_tenant.entry(journey.tenant.clone()).or_default();
        match journey.kind {
            JourneyKind::Visit => counts.visits += 1,
            JourneyKind::DirectPurchase => counts.direct_purchases += 1,
            JourneyKind::Onboarding => counts.onboarding += 1,
        }
        for gateway in &journey.purchases {
            *counts
                .purchases
                .entry(Gateway::as_str(*gateway))
                .or_default() += 1;
        }
        counts.refunds += u64::from(journey.refunds);
        match journey.onboarding_outcome {
            Some(funnelhub_schemas::derived::FunnelOutcome::Completed) => {
                counts.onboarding_completed += 1
            }
            Some(funnelhub_schemas::derived::FunnelOutcome::Failed) => {
                counts.onboarding_failed += 1
            }
            _ => {}
        }
        self.journeys += 1;
        self.duplicates += u64::from(journey.duplicates);
        self.out_of_order += u64::from(journey.out_of_order);
        self.facts.merge(journey.facts);
    }

    /// The `q` quantile (0..=1) of the edge's answer times, in ms.
    pub fn latency_ms(&self, q: f64) -> f64 {
        quantile(&self.latencies_ms, q)
    }
}

/// The `q` quantile (0..=1) of `sorted` (NaN when empty).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

struct Shared {
    generator: Generator,
    load: Load,
    client: reqwest::Client,
    limiter: DefaultDirectRateLimiter,
    next: AtomicU64,
    started: Instant,
    report: Mutex<RunReport>,
    progress: ProgressBar,
}

/// Drive the edge with `generator`'s journeys until `load` says stop.
pub async fn run(generator: Generator, load: Load) -> anyhow::Result<RunReport> {
    let rate = NonZeroU32::new(load.rate.max(1)).unwrap_or(NonZeroU32::MIN);
    let progress = if load.progress {
        let bar = ProgressBar::new(load.duration.as_secs().max(1));
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} s  {msg}",
            )?
            .progress_chars("=> "),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let shared = Arc::new(Shared {
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(load.concurrency)
            .build()?,
        limiter: RateLimiter::direct(Quota::per_second(rate)),
        next: AtomicU64::new(0),
        started: Instant::now(),
        report: Mutex::new(RunReport {
            run: generator.run().to_owned(),
            ..RunReport::default()
        }),
        generator,
        load: load.clone(),
        progress,
    });
    let workers: Vec<_> = (0..load.concurrency.max(1))
        .map(|_| tokio::spawn(worker(shared.clone())))
        .collect();
    for worker in workers {
        worker.await?;
    }
    shared.progress.finish_and_clear();
    let mut report = shared
        .report
        .lock()
        .map_err(|_| anyhow::anyhow!("a worker panicked"))?
        .clone();
    report.elapsed = shared.started.elapsed();
    report.latencies_ms.sort_by(f64::total_cmp);
    Ok(report)
}

async fn worker(shared: Arc<Shared>) {
    loop {
        if shared.started.elapsed() >= shared.load.duration {
            return;
        }
        let index = shared.next.fetch_add(1, Ordering::Relaxed);
        if shared.load.journeys.is_some_and(|max| index >= max) {
            return;
        }
        let journey = shared.generator.journey(index, now_ms());
        let mut latencies = Vec::with_capacity(journey.deliveries.len());
        let (mut sent, mut retried, mut failures) = (0, 0, Vec::new());
        for delivery in &journey.deliveries {
            match deliver(&shared, delivery).await {
                Delivered::Accepted { ms, attempts } => {
                    latencies.push(ms);
                    retried += u64::from(attempts - 1);
                }
                Delivered::Failed(why) => failures.push(why),
            }
            sent += 1;
        }
        let Ok(mut report) = shared.report.lock() else {
            return;
        };
        report.requests += sent;
        report.retried += retried;
        report.failed += failures.len() as u64;
        for failure in failures {
            if report.failures.len() < 5 {
                report.failures.push(failure);
            }
        }
        report.latencies_ms.extend(latencies);
        report.add(journey);
        let (requests, elapsed) = (report.requests, shared.started.elapsed());
        drop(report);
        shared.progress.set_position(elapsed.as_secs());
        shared.progress.set_message(format!(
            "{requests} requests, {:.0}/s",
            requests as f64 / elapsed.as_secs_f64().max(0.001)
        ));
    }
}

enum Delivered {
    Accepted { ms: f64, attempts: u32 },
    Failed(String),
}

async fn deliver(shared: &Shared, delivery: &Delivery) -> Delivered {
    let url = format!(
        "{}{}",
        shared.load.edge.trim_end_matches('/'),
        delivery.path
    );
    let mut attempt = 0;
    loop {
        attempt += 1;
        shared.limiter.until_ready().await;
        let mut request = shared.client.post(&url).body(delivery.body.clone());
        for (name, value) in &delivery.headers {
            request = request.header(*name, value);
        }
        let began = Instant::now();
        let wait = match request.send().await {
            Ok(response) if response.status().is_success() => {
                return Delivered::Accepted {
                    ms: began.elapsed().as_secs_f64() * 1000.0,
                    attempts: attempt,
                }
            }
            Ok(response) if response.status().as_u16() == 503 => response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .map_or(Duration::from_secs(1), Duration::from_secs),
            Ok(response) => {
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                return Delivered::Failed(format!("{} → {status} {body}", delivery.path));
            }
            Err(e) if attempt < shared.load.max_attempts => {
                tracing::debug!(error = %e, "edge unreachable, retrying");
                Duration::from_secs(1)
            }
            Err(e) => return Delivered::Failed(format!("{} → {e}", delivery.path)),
        };
        if attempt >= shared.load.max_attempts {
            return Delivered::Failed(format!("{} → 503 {attempt} times", delivery.path));
        }
        tokio::time::sleep(wait.min(Duration::from_secs(5))).await;
    }
}

//! End-to-end latency: while the workload runs, a probe sends a landing-page click every
//! `every`; one poller asks ClickHouse's `events` table (the deduplicated events, after the
//! edge, Kafka, the dedupe stage and the ClickHouse sink) every `poll` which probes are
//! there, with one range query over the table's sort key. The latency is from just before
//! the request to the first poll that finds it: `poll` is the resolution.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use funnelhub_clickhouse::query::json_rows;
use funnelhub_clickhouse::ClickHouseConfig;
use funnelhub_schemas::common::EventType;
use funnelhub_schemas::derived::{Funnel, FunnelOutcome, FunnelStage};
use serde_json::json;

use crate::facts::Facts;
use crate::gateways;

/// Where and how often to probe.
#[derive(Debug, Clone)]
pub struct Probe {
    pub edge: String,
    pub clickhouse: ClickHouseConfig,
    pub tenant: String,
    /// Every probe's session contains the run id, so its click is part of the run's facts.
    pub run: String,
    pub every: Duration,
    pub poll: Duration,
    /// A probe not in ClickHouse after this long counts as lost.
    pub give_up: Duration,
}

/// What the probes measured.
#[derive(Debug, Clone, Default)]
pub struct Latencies {
    /// Edge → ClickHouse, ms, sorted.
    pub ms: Vec<f64>,
    /// Probes never seen in ClickHouse within `give_up` (or refused by the edge).
    pub lost: u64,
    /// The probes' own facts (a click and a tracking session each).
    pub facts: Facts,
}

impl Latencies {
    /// The `q` quantile (0..=1) in ms.
    pub fn quantile(&self, q: f64) -> f64 {
        crate::driver::quantile(&self.ms, q)
    }
}

/// Probe for `duration`, then wait for the last probes (up to `give_up`).
pub async fn run(probe: Probe, duration: Duration) -> anyhow::Result<Latencies> {
    let client = reqwest::Client::new();
    let started = Instant::now();
    // Session → when its click was sent; one poller looks them all up at once (a range of
    // `events`' sort key), so the probe itself does not load ClickHouse.
    let sent: Arc<Mutex<BTreeMap<String, Instant>>> = Arc::default();
    let mut out = Latencies::default();
    let poller = {
        let (probe, sent) = (probe.clone(), sent.clone());
        tokio::spawn(async move { poll(&probe, &sent, duration).await })
    };
    let mut tick = tokio::time::interval(probe.every);
    let mut n = 0u64;
    while started.elapsed() < duration {
        tick.tick().await;
        n += 1;
        let session = format!("{}-probe{n:06}", probe.run);
        let hit = gateways::hit(
            &probe.tenant,
            "click",
            &json!({"session_id": session, "event_id": format!("{}-pr{n}", probe.run),
                    "page_url": "https://lp.example.com/probe"}),
            "funnelhub-probe",
        );
        let began = Instant::now();
        let mut request = client
            .post(format!("{}{}", probe.edge.trim_end_matches('/'), hit.path))
            .body(hit.body);
        for (name, value) in hit.headers {
            request = request.header(name, value);
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => {
                if let Ok(mut sent) = sent.lock() {
                    sent.insert(session.clone(), began);
                }
                out.facts.event(&probe.tenant, EventType::Click.symbol());
                out.facts.sessions.insert(
                    (
                        probe.tenant.clone(),
                        Funnel::Tracking.as_str().into(),
                        session,
                    ),
                    (
                        FunnelStage::Click.as_str().into(),
                        FunnelOutcome::InProgress.as_str().into(),
                    ),
                );
            }
            _ => out.lost += 1,
        }
    }
    let (ms, lost) = poller.await??;
    out.ms = ms;
    out.lost += lost;
    out.ms.sort_by(|a, b| a.total_cmp(b));
    Ok(out)
}

/// Until `duration` has passed and every probe was found or given up: (latencies, lost).
async fn poll(
    probe: &Probe,
    sent: &Mutex<BTreeMap<String, Instant>>,
    duration: Duration,
) -> anyhow::Result<(Vec<f64>, u64)> {
    let started = Instant::now();
    let sql = format!(
        "SELECT DISTINCT session_id FROM {}.events WHERE tenant_id = '{}' \
         AND session_id >= '{run}-probe' AND session_id < '{run}-probf'",
        probe.clickhouse.database,
        probe.tenant.replace('\'', ""),
        run = probe.run
    );
    let (mut ms, mut lost) = (Vec::new(), 0);
    loop {
        let waiting = sent.lock().map(|s| !s.is_empty()).unwrap_or(false);
        if !waiting && started.elapsed() > duration + probe.every {
            return Ok((ms, lost));
        }
        if waiting {
            if let Ok(rows) = json_rows(&probe.clickhouse, &sql).await {
                let now = Instant::now();
                let mut sent = sent.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                for row in rows {
                    if let Some(began) = row["session_id"].as_str().and_then(|s| sent.remove(s)) {
                        ms.push((now - began).as_secs_f64() * 1000.0);
                    }
                }
                let before = sent.len();
                sent.retain(|_, began| now - *began < probe.give_up);
                lost += (before - sent.len()) as u64;
            }
        }
        tokio::time::sleep(probe.poll).await;
    }
}

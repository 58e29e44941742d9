//! `funnelhub simulate`: drive the running pipeline with the demo workload
//! (`funnelhub-simulator`), then show what it became: the ground truth next to what
//! ClickHouse and the Meta emulator hold, the funnels, match rate and CAPI outcomes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use funnelhub_schemas::derived::Funnel;
use funnelhub_simulator::probe::{self, Probe};
use funnelhub_simulator::{Facts, Generator, Load, Observer, RunReport};

use crate::config::Config;

/// What `funnelhub simulate` was asked.
#[derive(Debug, Clone)]
pub struct Options {
    pub edge: Option<String>,
    pub rate: u32,
    pub duration: Duration,
    pub journeys: Option<u64>,
    pub concurrency: usize,
    pub seed: Option<u64>,
    pub run: Option<String>,
    pub settle: Duration,
    pub meta_emulator: Option<String>,
    pub progress: bool,
    /// Measure edge → ClickHouse latency with a probe click every 200 ms.
    pub probe: bool,
    /// Fail unless the pipeline's facts equal the ground truth within `settle`.
    pub check: bool,
}

/// Run the workload; print as it goes. Errors when requests were lost, or with `check`
/// when the pipeline's facts differ from the ground truth.
pub async fn run(config: &Config, options: Options) -> anyhow::Result<()> {
    let seed = options.seed.unwrap_or_else(rand::random);
    let run = options
        .run
        .clone()
        .unwrap_or_else(|| format!("sim{:06x}", rand::random::<u32>() & 0xff_ffff));
    let generator = Generator::new(&run, seed, config.tenants.clone())?;
    let edge = options
        .edge
        .clone()
        .unwrap_or_else(|| format!("http://{}", config.edge.listen));
    println!(
        "simulating run {run} (seed {seed}) against {edge}: {} requests/s for {} s{}, tenants {}",
        options.rate,
        options.duration.as_secs(),
        options
            .journeys
            .map(|n| format!(" or {n} journeys"))
            .unwrap_or_default(),
        config
            .tenants
            .iter()
            .map(|t| t.id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let load = funnelhub_simulator::run(
        generator,
        Load {
            edge: edge.clone(),
            rate: options.rate,
            duration: options.duration,
            journeys: options.journeys,
            concurrency: options.concurrency,
            progress: options.progress,
            max_attempts: 30,
        },
    );
    let (mut report, latencies) = if options.probe {
        let probe = Probe {
            edge: edge.clone(),
            clickhouse: config.clickhouse.clone(),
            tenant: config.tenants[0].id.clone(),
            run: run.clone(),
            every: Duration::from_millis(200),
            poll: Duration::from_millis(50),
            give_up: Duration::from_secs(60),
        };
        let (report, latencies) = tokio::join!(load, probe::run(probe, options.duration));
        (report?, Some(latencies?))
    } else {
        (load.await?, None)
    };
    print!("{}", sent(&report));
    if let Some(latencies) = latencies {
        println!(
            "latency edge → ClickHouse (a probe click every 200 ms, polled every 50 ms): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms over {} probes, {} not seen within 60 s",
            latencies.quantile(0.5),
            latencies.quantile(0.99),
            latencies.quantile(1.0),
            latencies.ms.len(),
            latencies.lost
        );
        report.facts.merge(latencies.facts);
    }
    if report.failed > 0 {
        anyhow::bail!(
            "{} requests were not accepted by the edge (first: {}); the ground truth is not reliable",
            report.failed,
            report.failures.join("; ")
        );
    }

    let meta_emulator = options.meta_emulator.clone().or_else(|| {
        (!config.has_meta_tokens()).then(|| {
            format!(
                "http://{}",
                std::net::SocketAddr::from(crate::up::EMULATOR_ADDR)
            )
        })
    });
    let observer = Observer {
        clickhouse: config.clickhouse.clone(),
        meta_emulator,
    };
    println!(
        "waiting up to {} s for ClickHouse{} to hold the run's facts (conversions are matched {} s after they arrive: [process.matching] grace_secs)",
        options.settle.as_secs(),
        if observer.meta_emulator.is_some() { " and the Meta emulator" } else { "" },
        config.process.matching.grace_secs
    );
    let settling = std::time::Instant::now();
    let (observed, deliveries) = observer.settle(&run, &report.facts, options.settle).await?;
    let expected = observer.comparable(&report.facts);
    print!("{}", outcome(&expected, &observed));
    if let Some(url) = &observer.meta_emulator {
        println!(
            "  Meta ({url}): {} distinct events of this run, {} deliveries",
            deliveries.distinct, deliveries.received
        );
    }
    let differences = expected.differences(&observed, 5);
    if differences.is_empty() {
        println!(
            "check: ClickHouse{} hold exactly the ground truth ({:.1} s after the last request)",
            if observer.meta_emulator.is_some() {
                " and Meta"
            } else {
                ""
            },
            settling.elapsed().as_secs_f64()
        );
    } else {
        println!("check: not (yet) equal to the ground truth:");
        for line in &differences {
            println!("  {line}");
        }
    }
    println!(
        "next: `funnelhub report` draws each tenant's funnels; ClickHouse: `clickhouse-client --query \"SELECT event_type, count() FROM {}.events FINAL GROUP BY event_type\"`; metrics: the edge's operators' port ([edge] ops_listen) /metrics; read API: curl -H 'Authorization: Bearer <api key>' '{edge}/api/v1/onboard/funnel'",
        config.clickhouse.database
    );
    if options.check && !differences.is_empty() {
        anyhow::bail!("the pipeline's facts differ from the ground truth");
    }
    Ok(())
}

/// What was sent.
fn sent(report: &RunReport) -> String {
    let mut out = String::new();
    let secs = report.elapsed.as_secs_f64().max(0.001);
    let _ = writeln!(
        out,
        "sent {} journeys in {secs:.1} s: {} requests ({:.0}/s), edge answer p50 {:.1} ms p99 {:.1} ms; {} retried after 503, {} duplicates and {} out-of-order sessions on purpose",
        report.journeys,
        report.requests,
        report.requests as f64 / secs,
        report.latency_ms(0.5),
        report.latency_ms(0.99),
        report.retried,
        report.duplicates,
        report.out_of_order
    );
    for (tenant, c) in &report.per_tenant {
        let gateways: Vec<String> = c
            .purchases
            .iter()
            .map(|(g, n)| format!("{g} {n}"))
            .collect();
        let _ = writeln!(
            out,
            "  {tenant:<10} visits {}, direct purchases {}, purchases {} ({}), refunds {}, onboarding sessions {} ({} completed, {} failed)",
            c.visits,
            c.direct_purchases,
            c.purchases.values().sum::<u64>(),
            gateways.join(", "),
            c.refunds,
            c.onboarding,
            c.onboarding_completed,
            c.onboarding_failed
        );
    }
    out
}

/// The run's funnels, match rate and CAPI outcomes: expected → observed.
fn outcome(expected: &Facts, observed: &Facts) -> String {
    let mut out = String::new();
    let tenants: std::collections::BTreeSet<&String> =
        expected.events.keys().map(|(t, _)| t).collect();
    for tenant in tenants {
        let _ = writeln!(out, "tenant {tenant} (expected → in the pipeline)");
        let reached = |facts: &Facts, stages: &[&str]| -> Vec<u64> {
            let counts = facts.funnel_counts("tracking");
            stages
                .iter()
                .enumerate()
                .map(|(i, _)| {
                    counts
                        .iter()
                        .filter(|((t, stage, _), _)| {
                            t == tenant
                                && stages
                                    .iter()
                                    .position(|s| s == stage)
                                    .is_some_and(|p| p >= i)
                        })
                        .map(|(_, n)| n)
                        .sum()
                })
                .collect()
        };
        let stages: Vec<&str> = Funnel::Tracking
            .stages()
            .iter()
            .map(|s| s.as_str())
            .collect();
        let (want, got) = (reached(expected, &stages), reached(observed, &stages));
        let line: Vec<String> = stages
            .iter()
            .zip(want.iter().zip(&got))
            .map(|(s, (w, g))| format!("{s} {w}→{g}"))
            .collect();
        let _ = writeln!(
            out,
            "  tracking funnel (sessions reaching): {}",
            line.join(", ")
        );
        let onboarding = |facts: &Facts| -> BTreeMap<String, u64> {
            let mut by = BTreeMap::new();
            for ((t, stage, outcome), n) in facts.funnel_counts("onboarding") {
                if &t == tenant {
                    let key = if outcome == "in_progress" {
                        stage
                    } else {
                        outcome
                    };
                    *by.entry(key).or_default() += n;
                }
            }
            by
        };
        let (want, got) = (onboarding(expected), onboarding(observed));
        let line = side_by_side(&want, &got);
        let _ = writeln!(out, "  onboarding (current stage or outcome): {}", line);
        let methods = |facts: &Facts| -> BTreeMap<String, u64> {
            facts
                .match_methods()
                .into_iter()
                .filter(|((t, _), _)| t == tenant)
                .map(|((_, m), n)| (m, n))
                .collect()
        };
        let (want, got) = (methods(expected), methods(observed));
        let rate = |m: &BTreeMap<String, u64>| {
            let all: u64 = m.values().sum();
            let unmatched = m.get("unmatched").copied().unwrap_or(0);
            if all == 0 {
                0.0
            } else {
                100.0 * (all - unmatched) as f64 / all as f64
            }
        };
        let line = side_by_side(&want, &got);
        let _ = writeln!(
            out,
            "  purchases matched {:.0}% → {:.0}%: {}",
            rate(&want),
            rate(&got),
            line
        );
        let capi = |facts: &Facts| -> BTreeMap<String, u64> {
            let mut by = BTreeMap::new();
            for ((t, _, blocked), n) in &facts.dispatches {
                if t == tenant {
                    let key = if blocked.is_empty() {
                        "to send"
                    } else {
                        blocked
                    };
                    *by.entry(key.to_owned()).or_default() += n;
                }
            }
            by
        };
        let (want, got) = (capi(expected), capi(observed));
        let line = side_by_side(&want, &got);
        let _ = writeln!(out, "  CAPI requests: {}", line);
    }
    out
}

/// `key expected→observed, ...` for every expected key.
fn side_by_side(want: &BTreeMap<String, u64>, got: &BTreeMap<String, u64>) -> String {
    want.iter()
        .map(|(k, w)| format!("{k} {w}→{}", got.get(k).copied().unwrap_or(0)))
        .collect::<Vec<_>>()
        .join(", ")
}

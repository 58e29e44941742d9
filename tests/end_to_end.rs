//! The whole pipeline, as a user runs it: `funnelhub up` on the real local broker and
//! ClickHouse, talking to a Meta Graph API emulator, driven by the simulator's workload
//! (several tenants; visits, purchases and refunds through the three gateways signed the
//! real way; onboarding sessions with failures; duplicates and out-of-order delivery).
//!
//! 1. What ClickHouse and Meta hold equals the simulator's ground truth: distinct events
//!    per type, every session's funnel stage, every conversion's match (method and visit),
//!    ops tickets, the CAPI requests (blocked ones included) and Meta's deduplicated events.
//! 2. Stop, replay every stage from the start (`funnelhub replay`), start again: once every
//!    group has caught up, the same facts hold — while Meta did receive the events again
//!    (the replay really re-ran) and deduplicated them.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use funnelhub_simulator::probe::Probe;
use funnelhub_simulator::{Generator, Load, Observer};
use support::pipeline::{caught_up, meta_emulator, replay_everything, setup, stop, up, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_pipeline_holds_the_ground_truth_and_a_full_replay_changes_nothing() {
    let emulator = meta_emulator().await;
    let setup = setup(&emulator.url());
    let pipeline = up(&setup);

    let run = "e2e".to_owned() + &format!("{:x}", rand::random::<u32>());
    let generator = Generator::new(&run, 20_261_123, setup.tenants.clone()).expect("generator");
    // Meanwhile the latency probe: clicks found in ClickHouse, timed.
    let probe = funnelhub_simulator::probe::run(
        Probe {
            edge: setup.edge.clone(),
            clickhouse: setup.clickhouse.clone(),
            tenant: "acme".into(),
            run: run.clone(),
            every: Duration::from_millis(200),
            poll: Duration::from_millis(50),
            give_up: WAIT,
        },
        Duration::from_secs(2),
    );
    let load = funnelhub_simulator::run(
        generator,
        Load {
            edge: setup.edge.clone(),
            rate: 400,
            duration: WAIT,
            journeys: Some(240),
            concurrency: 16,
            progress: false,
            max_attempts: 30,
        },
    );
    let (report, latencies) = tokio::join!(load, probe);
    let mut report = report.expect("simulated");
    let latencies = latencies.expect("probed");
    assert_eq!(latencies.lost, 0);
    assert!(latencies.ms.len() >= 5, "{latencies:?}");
    assert!(latencies.quantile(0.5) > 0.0);
    report.facts.merge(latencies.facts);
    assert_eq!(report.failed, 0, "{:?}", report.failures);
    assert_eq!(report.journeys, 240);
    assert!(
        report.duplicates > 10 && report.out_of_order > 5,
        "the workload repeats and reorders: {report:?}"
    );
    let truth = &report.facts;
    let methods = truth.match_methods();
    for method in ["session_id", "click_id", "email_hash", "unmatched"] {
        assert!(
            methods.keys().any(|(_, m)| m == method),
            "the workload exercises {method}: {methods:?}"
        );
    }

    let observer = Observer {
        clickhouse: setup.clickhouse.clone(),
        meta_emulator: Some(emulator.url()),
    };
    let (observed, meta) = observer.settle(&run, truth, WAIT).await.expect("observed");
    let differences = truth.differences(&observed, 10);
    assert!(differences.is_empty(), "{}", differences.join("\n"));
    let due_to_meta: u64 = truth.meta.values().sum();
    assert_eq!(meta.distinct, due_to_meta);
    assert!(
        truth
            .dispatches
            .keys()
            .any(|(tenant, _, reason)| tenant == "loja" && reason == "consent_ads=false"),
        "loja's default of no ad consent blocks its unmatched orders"
    );

    // Replay everything from the start.
    caught_up(&setup).await;
    stop(pipeline);
    replay_everything(&setup);
    let pipeline = up(&setup);
    let deadline = Instant::now() + WAIT;
    let again = loop {
        let (_, seen) = observer.facts(&run).await.expect("observed");
        if seen.received > meta.received {
            break seen;
        }
        assert!(
            Instant::now() < deadline,
            "the replay re-sent nothing to Meta"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(again.received > meta.received);
    caught_up(&setup).await;
    let (after, meta_after) = observer.facts(&run).await.expect("observed");
    let differences = truth.differences(&after, 10);
    assert!(
        differences.is_empty(),
        "after the replay: {}",
        differences.join("\n")
    );
    assert_eq!(
        meta_after.distinct, meta.distinct,
        "Meta deduplicated every re-sent event"
    );
    stop(pipeline);
    emulator.stop().await.expect("emulator stops");
    let _ = std::fs::remove_dir_all(Path::new(&setup.dir));
}

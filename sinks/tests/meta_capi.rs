//! The CAPI sink on the real broker against the Graph API emulator: faults, refusals,
//! consent, expiry, audit and replay.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{requests, Harness};
use funnelhub_emulators::Faults;
use funnelhub_kafka::admin::reset_group_offsets;
use funnelhub_runtime::counter_sum;
use funnelhub_schemas::derived::{AttemptOutcome, DispatchAttempt, DlqReason, DlqRecord};
use funnelhub_schemas::ids::now_ms;
use funnelhub_schemas::Topic;
use funnelhub_sinks::meta_capi;
use funnelhub_sinks::testing::{test_control, test_tenants};

/// HTTP attempts in the audit (blocked and expired outcomes have attempt 0).
fn http_attempts(attempts: &[DispatchAttempt]) -> Vec<&DispatchAttempt> {
    attempts.iter().filter(|a| a.attempt > 0).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_30_percent_faults_every_event_reaches_meta_once_and_every_attempt_is_audited() {
    let mut h = Harness::new("capi-faults").await;
    // Small batches: many requests, so that 30% of them fail.
    h.config.batch_size = 50;
    h.emulator.set_faults(Faults {
        retryable_rate: 0.3,
        // Answered after the client gave up: Meta took the events, the sink sends them
        // again, Meta's deduplication keeps one.
        slow_rate: 0.05,
        slow_ms: 1_500,
        seed: 7,
        ..Faults::default()
    });
    let mut all = requests("acme", 1500);
    all.extend(requests("beta", 500));
    let deliverable: BTreeSet<(String, String)> = all
        .iter()
        .map(|r| (r.pixel_id.clone(), r.event_id.clone()))
        .collect();
    let mut blocked = requests("acme", 20);
    for (i, r) in blocked.iter_mut().enumerate() {
        r.event_id = format!("blocked-{i}");
        r.dispatch_id = format!("d-blocked-{i}");
        if i % 2 == 0 {
            r.consent_ads = false;
        } else {
            r.blocked_reason = Some("no_meta_pixel".into());
        }
    }
    let mut expired = requests("beta", 10);
    for (i, r) in expired.iter_mut().enumerate() {
        r.event_id = format!("expired-{i}");
        r.dispatch_id = format!("d-expired-{i}");
        r.event_time = now_ms() - 8 * 24 * 3600 * 1000;
    }
    all.extend(blocked);
    all.extend(expired);
    h.write(&all).await;

    let sink = meta_capi::start(&h.kafka, &h.registry, &h.config, &test_control())
        .await
        .expect("sink starts");
    h.until_received(deliverable.len()).await;
    sink.stop().await.expect("stops cleanly");

    let seen = h.emulator.snapshot();
    let received: BTreeSet<(String, String)> = seen
        .events
        .iter()
        .map(|e| (e.pixel_id.clone(), e.event_id.clone().unwrap_or_default()))
        .collect();
    assert_eq!(
        received, deliverable,
        "exactly the deliverable events, deduplicated"
    );
    assert!(seen.injected_faults > 0 && seen.events_received >= deliverable.len() as u64);

    let attempts: Vec<DispatchAttempt> = h.read_all(Topic::CapiAttempts).await;
    let http = http_attempts(&attempts);
    assert_eq!(
        http.len() as u64,
        seen.requests,
        "one audit record per HTTP request the emulator saw"
    );
    let sent: BTreeSet<&str> = http
        .iter()
        .filter(|a| a.outcome == AttemptOutcome::Sent)
        .flat_map(|a| a.event_ids.iter().map(String::as_str))
        .collect();
    assert_eq!(sent.len(), deliverable.len());
    let retried = http
        .iter()
        .filter(|a| a.outcome == AttemptOutcome::Retrying)
        .count();
    assert!(retried > 0, "faults were retried");
    for a in &http {
        assert!(a.latency_ms >= 0 && a.attempt >= 1);
        match a.outcome {
            AttemptOutcome::Sent => {
                assert_eq!(a.http_status, Some(200));
                assert_eq!(a.events_received, Some(a.event_ids.len() as i32));
                assert!(a.fbtrace_id.is_some());
            }
            AttemptOutcome::Retrying => assert!(a.error_message.is_some(), "{a:?}"),
            other => panic!("no permanent failure expected: {a:?} {other:?}"),
        }
    }
    // Retries of one request keep its request id and count attempts up.
    let mut by_request: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for a in &http {
        by_request.entry(&a.request_id).or_default().push(a.attempt);
    }
    for numbers in by_request.values_mut() {
        numbers.sort();
        assert_eq!(*numbers, (1..=numbers.len() as i32).collect::<Vec<_>>());
    }
    let outcome = |o| {
        attempts
            .iter()
            .filter(move |a| a.outcome == o && a.attempt == 0)
            .flat_map(|a| a.event_ids.clone())
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(outcome(AttemptOutcome::Blocked).len(), 20);
    assert!(outcome(AttemptOutcome::Blocked)
        .iter()
        .all(|id| id.starts_with("blocked-")));
    assert_eq!(outcome(AttemptOutcome::Expired).len(), 10);
    assert!(received
        .iter()
        .all(|(_, id)| !id.starts_with("blocked") && !id.starts_with("expired")));
    assert!(counter_sum("funnelhub_capi_retries_total", "tenant=") > 0);
    let dead: Vec<DlqRecord> = h.read_all(Topic::Dlq).await;
    assert!(dead.is_empty(), "nothing dead-lettered: {dead:?}");

    // Replay: the group starts over; Meta sees every event again and keeps one of each.
    h.emulator.set_faults(Faults::default());
    let requests_topic = h.catalog.name(Topic::CapiRequests);
    reset_group_offsets(&h.kafka, &h.config.group, &[requests_topic])
        .await
        .expect("reset");
    let before = h.emulator.counts().events_received;
    let sink = meta_capi::start(&h.kafka, &h.registry, &h.config, &test_control())
        .await
        .expect("sink restarts");
    let deadline = tokio::time::Instant::now() + common::WAIT;
    while h.emulator.counts().events_received < before + deliverable.len() as u64 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "replay did not re-send"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    sink.stop().await.expect("stops");
    let replayed = h.emulator.snapshot();
    assert_eq!(
        replayed.events.len(),
        deliverable.len(),
        "no new event at Meta"
    );
    let attempts: Vec<DispatchAttempt> = h.read_all(Topic::CapiAttempts).await;
    let outcomes: BTreeSet<&str> = attempts
        .iter()
        .filter(|a| a.attempt == 0)
        .map(|a| a.attempt_id.as_str())
        .collect();
    assert_eq!(
        outcomes.len(),
        30,
        "blocked/expired audits keep their ids on replay"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_invalid_token_or_event_is_dead_lettered_without_retry_and_the_rest_is_delivered() {
    let h = Harness::new("capi-refused").await;
    h.emulator.set_faults(Faults {
        reject_event_ids: vec!["beta-7".into(), "beta-200".into()],
        ..Faults::default()
    });
    let mut tenants = test_tenants();
    tenants[0].meta_access_token = Some("EAAB-revoked".into());
    let control = funnelhub_tenants::ControlPlane::fixed(tenants);
    let mut all = requests("acme", 300);
    all.extend(requests("beta", 300));
    let mut orphan = requests("gamma", 1).remove(0);
    orphan.event_id = "gamma-0".into();
    all.push(orphan);
    h.write(&all).await;

    let sink = meta_capi::start(&h.kafka, &h.registry, &h.config, &control)
        .await
        .expect("sink starts");
    h.until_received(298).await;
    // The dead letters are written with the outcomes; wait for all of them.
    let deadline = tokio::time::Instant::now() + common::WAIT;
    while funnelhub_kafka::testing::record_count(&h.kafka, &h.catalog.name(Topic::Dlq)) < 303 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "dead letters missing"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    sink.stop().await.expect("stops");

    let seen = h.emulator.snapshot();
    let received: BTreeSet<String> = seen
        .events
        .iter()
        .filter_map(|e| e.event_id.clone())
        .collect();
    let expected: BTreeSet<String> = (0..300)
        .filter(|i| *i != 7 && *i != 200)
        .map(|i| format!("beta-{i}"))
        .collect();
    assert_eq!(
        received, expected,
        "beta's good events all arrive, acme's none"
    );

    let dead: Vec<DlqRecord> = h.read_all(Topic::Dlq).await;
    assert_eq!(dead.len(), 303);
    fn of<'a>(dead: &'a [DlqRecord], tenant: &'a str) -> impl Iterator<Item = &'a DlqRecord> {
        dead.iter()
            .filter(move |d| d.tenant_id.as_deref() == Some(tenant))
    }
    assert_eq!(of(&dead, "acme").count(), 300);
    for d in of(&dead, "acme") {
        assert_eq!(d.reason, DlqReason::PermanentDeliveryFailure);
        assert_eq!(d.stage, "capi");
        assert!(d.error.contains("code 190"), "{}", d.error);
        assert!(
            !d.error.contains("EAAB"),
            "the token never appears: {}",
            d.error
        );
        assert!(
            d.value.as_ref().is_some_and(|v| !v.is_empty()),
            "original record kept"
        );
    }
    let beta: BTreeSet<_> = of(&dead, "beta")
        .filter_map(|d| d.event_id.clone())
        .collect();
    assert_eq!(
        beta,
        BTreeSet::from(["beta-7".to_string(), "beta-200".to_string()])
    );
    assert!(of(&dead, "beta").all(|d| d.error.contains("$['data']")));
    let gamma: Vec<_> = of(&dead, "gamma").collect();
    assert_eq!(gamma.len(), 1);
    assert!(
        gamma[0].error.contains("no meta_access_token"),
        "{}",
        gamma[0].error
    );

    let attempts: Vec<DispatchAttempt> = h.read_all(Topic::CapiAttempts).await;
    let acme: Vec<_> = attempts.iter().filter(|a| a.tenant_id == "acme").collect();
    assert!(!acme.is_empty());
    assert!(
        acme.iter()
            .all(|a| a.attempt == 1 && a.outcome == AttemptOutcome::FailedPermanent),
        "an invalid token is never retried: {acme:?}"
    );
    assert_eq!(acme.iter().map(|a| a.event_ids.len()).sum::<usize>(), 300);
    let failed_beta = attempts
        .iter()
        .filter(|a| a.tenant_id == "beta" && a.outcome == AttemptOutcome::FailedPermanent)
        .count();
    assert!(
        failed_beta >= 2,
        "each poison event failed its request once"
    );
}

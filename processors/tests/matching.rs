//! Conversion matching against the real broker and schema registry, with generated traffic
//! whose true visit of every conversion is known: precision and recall printed and
//! asserted, late visits within and after the grace period, refunds linked, dispatch
//! requests built, and a replay of the conversion topic giving the same records.

use std::collections::{BTreeMap, HashMap};

use funnelhub_kafka::admin::reset_group_offsets;
use funnelhub_processors::matching::dispatch::BLOCKED_NO_PIXEL;
use funnelhub_processors::testing::{matching_workload, Evidence, RawWriter, TrueMatch};
use funnelhub_schemas::derived::{CapiDispatchRequest, MatchMethod, MatchResult};
use funnelhub_schemas::events::EdgeEvent;
use funnelhub_schemas::testing::sample_tracking_hit;
use funnelhub_schemas::Topic;

mod common;

use common::{counter, wait_for, Harness};

const GRACE_SECS: u32 = 600;

/// Matched / correct / true-visit counts of one group of conversions.
#[derive(Debug, Default, Clone, Copy)]
struct Quality {
    conversions: usize,
    /// Conversions whose visit the matcher could know.
    with_visit: usize,
    matched: usize,
    correct: usize,
}

impl Quality {
    fn add(&mut self, truth: &TrueMatch, result: &MatchResult) {
        self.conversions += 1;
        self.with_visit += usize::from(truth.session_id.is_some());
        if result.method != MatchMethod::Unmatched {
            self.matched += 1;
            self.correct += usize::from(result.matched_session_id == truth.session_id);
        }
    }

    fn precision(&self) -> f64 {
        self.correct as f64 / self.matched.max(1) as f64
    }

    fn recall(&self) -> f64 {
        self.correct as f64 / self.with_visit.max(1) as f64
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conversions_match_their_true_visits_and_a_replay_gives_the_same_records() {
    let mut harness = Harness::new("matching").await;
    harness.config.matching.grace_secs = GRACE_SECS;
    // The whole history is written before the processors start, so partitions are read at
    // very different speeds: the test allows a day of disorder, and once everything is read
    // one later hit per tenant moves stream time past every deadline (which hits a decision
    // sees is fixed by its deadline either way).
    harness.config.matching.max_out_of_order_secs = 24 * 3600;
    let mut acme = funnelhub_tenants::TenantConfig::new("acme");
    acme.meta_pixel_id = Some("1234567890".into());
    harness.control = funnelhub_processors::ControlPlane::fixed([acme]);
    let (events, truth) = matching_workload(300, 11, i64::from(GRACE_SECS) * 1000);
    let writer = RawWriter::connect(&harness.kafka, &harness.registry).await;
    writer.write(&events).await;

    let processors = harness.start().await;
    wait_for("the history read by the matcher", || {
        counter("funnelhub_stage_records_total", "stage=\"match\"") == events.len() as u64
    })
    .await;
    assert_eq!(
        counter("funnelhub_match_conversions_total", ""),
        0,
        "nothing decided while the allowance covers every deadline"
    );
    let newest = events
        .iter()
        .map(|e| e.envelope().received_at)
        .max()
        .expect("events");
    let clock: Vec<EdgeEvent> = ["acme", "beta"]
        .iter()
        .map(|tenant| {
            let mut hit = sample_tracking_hit();
            hit.envelope.tenant_id = (*tenant).into();
            hit.envelope.event_id = format!("{tenant}-clock");
            hit.session_id = format!("{tenant}-clock");
            hit.envelope.received_at = newest + 2 * 24 * 3600 * 1000;
            EdgeEvent::TrackingHit(hit)
        })
        .collect();
    writer.write(&clock).await;
    wait_for("every conversion decided", || {
        counter("funnelhub_match_conversions_total", "") == truth.len() as u64
    })
    .await;
    let results: Vec<MatchResult> = harness.read(Topic::MatchResults, truth.len()).await;
    let by_id: HashMap<&str, &MatchResult> = results
        .iter()
        .map(|r| (r.conversion_id.as_str(), r))
        .collect();
    assert_eq!(
        by_id.len(),
        truth.len(),
        "exactly one decision per conversion"
    );

    let mut quality: BTreeMap<Evidence, Quality> = BTreeMap::new();
    let mut overall = Quality::default();
    let mut methods: BTreeMap<String, usize> = BTreeMap::new();
    for t in &truth {
        let result = by_id[t.conversion_id.as_str()];
        assert_eq!(result.tenant_id, t.tenant_id);
        quality.entry(t.evidence).or_default().add(t, result);
        *methods.entry(format!("{:?}", result.method)).or_default() += 1;
        if t.evidence != Evidence::Refund {
            overall.add(t, result);
        }
        let deterministic = matches!(
            result.method,
            MatchMethod::ClickId
                | MatchMethod::SessionId
                | MatchMethod::EmailHash
                | MatchMethod::PhoneHash
        );
        if deterministic {
            assert_eq!(
                result.matched_session_id, t.session_id,
                "a deterministic match is always right: {t:?} {result:?}"
            );
        }
        let expected_method = match t.evidence {
            Evidence::Fbclid => Some(MatchMethod::ClickId),
            Evidence::SessionId => Some(MatchMethod::SessionId),
            Evidence::Email => Some(MatchMethod::EmailHash),
            Evidence::Phone => Some(MatchMethod::PhoneHash),
            Evidence::AfterGrace => Some(MatchMethod::Unmatched),
            Evidence::Signals | Evidence::NoVisit | Evidence::Refund => None,
        };
        if let Some(method) = expected_method {
            assert_eq!(result.method, method, "{t:?} pixel_late={}", t.pixel_late);
        }
    }
    println!(
        "match quality over {} purchases (seeded workload, 2 tenants):",
        overall.conversions
    );
    println!("  evidence      conversions  matched  correct  precision  recall");
    for (evidence, q) in &quality {
        println!(
            "  {:<12}  {:>11}  {:>7}  {:>7}  {:>9.3}  {:>6.3}",
            format!("{evidence:?}"),
            q.conversions,
            q.matched,
            q.correct,
            q.precision(),
            q.recall()
        );
    }
    println!(
        "  overall       {:>11}  {:>7}  {:>7}  {:>9.3}  {:>6.3}",
        overall.conversions,
        overall.matched,
        overall.correct,
        overall.precision(),
        overall.recall()
    );
    println!("  methods: {methods:?}");
    // Floors (the workload is seeded and decisions depend on deadlines, not timing, so
    // these numbers are the same every run; measured: scoring 0.967 / 0.967, overall 0.982
    // / 0.993). Deterministic evidence is exact, asserted per record above. Scoring alone
    // competes with ~8 other visits behind each carrier-NAT IP, a quarter of them on the
    // same campaign: it must name the right visit for 9 in 10 of the buyers it matches and
    // find 9 in 10. Overall at least 95% of matches are right and 95% of the findable
    // visits found; the misses are no-visit buyers whose IP, campaign and product a
    // stranger's visit shared (3 of 15), the false positives scoring cannot tell apart.
    let signals = quality[&Evidence::Signals];
    assert!(signals.precision() >= 0.90, "scoring precision {signals:?}");
    assert!(signals.recall() >= 0.90, "scoring recall {signals:?}");
    assert!(overall.precision() >= 0.95, "precision {overall:?}");
    assert!(overall.recall() >= 0.95, "recall {overall:?}");
    let late = truth
        .iter()
        .filter(|t| t.pixel_late && t.evidence != Evidence::Signals)
        .count();
    assert!(
        late > 10,
        "the workload has late pixels within grace ({late})"
    );

    // Refunds point at their purchase and, when it matched, at its visit.
    for t in truth.iter().filter(|t| t.evidence == Evidence::Refund) {
        let refund = by_id[t.conversion_id.as_str()];
        let purchase_id = refund.original_conversion_id.as_deref().expect("linked");
        let purchase = by_id[purchase_id];
        if purchase.method != MatchMethod::Unmatched {
            assert_eq!(refund.matched_session_id, purchase.matched_session_id);
            assert!(refund.signals.iter().any(|s| s == "original_purchase"));
        }
    }

    // One Purchase request per purchase, built from the decision; beta has no pixel.
    let purchases = truth
        .iter()
        .filter(|t| t.evidence != Evidence::Refund)
        .count();
    let dispatched = counter("funnelhub_capi_requests_total", "") as usize;
    let requests: Vec<CapiDispatchRequest> = harness.read(Topic::CapiRequests, dispatched).await;
    let purchase_requests: HashMap<&str, &CapiDispatchRequest> = requests
        .iter()
        .filter(|r| r.event_name == "Purchase")
        .map(|r| (r.match_id.as_deref().expect("from a match"), r))
        .collect();
    assert_eq!(purchase_requests.len(), purchases);
    for result in results
        .iter()
        .filter(|r| r.original_conversion_id.is_none())
    {
        let request = purchase_requests[result.match_id.as_str()];
        assert_eq!(request.event_id, result.order_id);
        let blocked = (result.tenant_id == "beta").then_some(BLOCKED_NO_PIXEL);
        assert_eq!(request.blocked_reason.as_deref(), blocked);
        if result.method == MatchMethod::ClickId {
            assert!(
                request.click_ids.fbc.is_some(),
                "the visit's fbc travels to Meta"
            );
        }
    }
    assert!(requests.iter().any(|r| r.event_name == "PageView"));
    assert!(requests.iter().any(|r| r.event_name == "InitiateCheckout"));
    processors.stop().await.expect("clean stop");

    // Replay of the conversion topic: the same match records, same ids, same content.
    let inputs = vec![harness.catalog.name(Topic::MatchingInputs)];
    reset_group_offsets(
        &harness.kafka,
        &format!("{}-match", harness.config.group_prefix),
        &inputs,
    )
    .await
    .expect("offsets reset");
    let processors = harness.start().await;
    let inputs_read = counter("funnelhub_stage_records_total", "stage=\"match\"");
    wait_for("the replay", || {
        counter("funnelhub_stage_records_total", "stage=\"match\"") >= 2 * inputs_read
    })
    .await;
    processors.stop().await.expect("clean stop");
    assert_eq!(
        counter("funnelhub_match_conversions_total", ""),
        truth.len() as u64,
        "a replay decides nothing anew"
    );
    let all: Vec<MatchResult> = harness.read(Topic::MatchResults, 2 * truth.len()).await;
    let mut copies: HashMap<&str, Vec<&MatchResult>> = HashMap::new();
    for r in &all {
        copies.entry(r.match_id.as_str()).or_default().push(r);
    }
    assert_eq!(copies.len(), truth.len(), "no new match ids");
    for (id, records) in &copies {
        assert!(records.len() >= 2, "{id} re-emitted");
        assert!(records.iter().all(|r| r == &records[0]), "{id} unchanged");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn large_hits_are_each_their_own_state_entry_and_restored() {
    // Twenty anonymous pageviews carrying ~190 KB of content ids each (as the edge accepts
    // them): one batch whose state changes are ~3.8 MB, more than one Kafka message.
    let harness = Harness::new("match-large").await;
    let hits: Vec<EdgeEvent> = (0..20)
        .map(|i| {
            let mut hit = sample_tracking_hit();
            hit.envelope.event_type = funnelhub_schemas::common::EventType::Pageview;
            hit.envelope.event_id = format!("large-hit-{i}");
            hit.session_id = format!("anonymous-{i}");
            hit.click_ids = Default::default();
            hit.client_event_id = None;
            hit.content_ids = (0..10_000).map(|j| format!("sku-{i:02}-{j:08}")).collect();
            EdgeEvent::TrackingHit(hit)
        })
        .collect();
    let writer = RawWriter::connect(&harness.kafka, &harness.registry).await;
    writer.write(&hits).await;
    let processors = harness.start().await;
    wait_for("every hit through the matcher", || {
        counter("funnelhub_stage_records_total", "stage=\"match\"") >= 20
    })
    .await;
    assert!(!processors.has_failed(), "the match stage keeps running");
    processors.stop().await.expect("stops");

    let state = harness.catalog.name(Topic::MatchState);
    let written = funnelhub_kafka::testing::record_count(&harness.kafka, &state);
    let records = harness
        .read::<funnelhub_schemas::state::MatchEntry>(Topic::MatchState, written)
        .await;
    let hits_kept = records
        .iter()
        .filter(|r| matches!(r.entry, funnelhub_schemas::state::MatchFact::TrackingHit(_)))
        .count();
    assert_eq!(hits_kept, 20, "every hit in the state once");

    // A new member restores every part before it processes anything more.
    let processors = harness.start().await;
    let mut later = sample_tracking_hit();
    later.envelope.event_id = "after-the-restart".into();
    writer.write(&[EdgeEvent::TrackingHit(later)]).await;
    wait_for("a hit after the restore", || {
        counter("funnelhub_stage_records_total", "stage=\"match\"") >= 21
    })
    .await;
    assert!(!processors.has_failed(), "restored from the parts");
    processors.stop().await.expect("stops");
}

//! One event followed from the edge to the sinks by its trace (`funnelhub up` with
//! `[telemetry] otlp_endpoint` pointing at an OTLP/HTTP receiver, on the real broker and
//! ClickHouse, the Meta emulator): a landing-page hit's trace holds the edge's span and a
//! child span in every stage it reaches, a purchase's trace goes on through the matcher's
//! grace period to the CAPI sink, and no span holds personal data or a secret.

mod support;

use std::collections::{BTreeSet, HashSet};
use std::time::Instant;

use funnelhub_emulators::{OtlpCollector, ReceivedSpan};
use funnelhub_simulator::gateways::{self, Gateway, Order};
use serde_json::json;
use support::pipeline::{deliver, meta_emulator, setup_with, stop, up, WAIT};

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0";
const EMAIL: &str = "Traced.Buyer@Example.com";

/// The spans of the trace whose edge span has `event_type`, once the trace holds spans
/// named `expected` (every one a descendant of the edge span).
async fn trace_of(
    collector: &OtlpCollector,
    event_type: &str,
    expected: &[&str],
) -> Vec<ReceivedSpan> {
    let started = Instant::now();
    loop {
        let spans = collector.spans();
        let root = spans
            .iter()
            .find(|s| s.name == "edge" && s.attribute("funnelhub.event_type") == Some(event_type));
        if let Some(root) = root {
            let trace: Vec<ReceivedSpan> = spans
                .iter()
                .filter(|s| s.trace_id == root.trace_id)
                .cloned()
                .collect();
            let names: BTreeSet<&str> = trace.iter().map(|s| s.name.as_str()).collect();
            if expected.iter().all(|n| names.contains(n)) {
                return trace;
            }
            assert!(
                started.elapsed() < WAIT,
                "the {event_type} trace never reached {expected:?}: it has {names:?}"
            );
        } else {
            assert!(
                started.elapsed() < WAIT,
                "no edge span for {event_type}; spans: {spans:#?}"
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// One root (the edge's span), every other span a child of a span of the same trace.
fn assert_one_tree(trace: &[ReceivedSpan]) {
    let ids: HashSet<&str> = trace.iter().map(|s| s.span_id.as_str()).collect();
    let roots: Vec<&ReceivedSpan> = trace
        .iter()
        .filter(|s| s.parent_span_id.is_empty())
        .collect();
    assert_eq!(roots.len(), 1, "one root: {roots:#?}");
    assert_eq!(roots[0].name, "edge");
    for span in trace {
        assert!(
            span.parent_span_id.is_empty() || ids.contains(span.parent_span_id.as_str()),
            "{} has a parent outside the trace",
            span.name
        );
        assert_eq!(span.service, "funnelhub-up");
        assert!(!span.failed, "{} failed", span.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_event_is_followed_from_the_edge_to_both_sinks() {
    let collector = OtlpCollector::start(([127, 0, 0, 1], 0).into())
        .await
        .expect("collector");
    let meta = meta_emulator().await;
    let setup = setup_with(
        &meta.url(),
        &format!(
            "[telemetry]\notlp_endpoint = \"{}\"\nexport_every_ms = 200\n",
            collector.url()
        ),
    );
    let pipeline = up(&setup);
    let acme = setup.tenants.iter().find(|t| t.id == "acme").expect("acme");

    let session = format!("traced-{}", funnelhub_schemas::ids::now_ms());
    let payload = json!({"session_id": session, "event_id": format!("{session}-pv"),
        "page_url": "https://lp.example.com/curso?fbclid=IwARtraced", "email": EMAIL,
        "consent_ads": true});
    deliver(&setup, &gateways::hit("acme", "pageview", &payload, UA)).await;
    let hit = trace_of(
        &collector,
        "pageview",
        &[
            "edge",
            "dedupe",
            "funnel",
            "match-route",
            "match",
            "capi",
            "clickhouse",
        ],
    )
    .await;
    assert_one_tree(&hit);
    let child_of = |name: &str, parent: &str| {
        let parents: HashSet<&str> = hit
            .iter()
            .filter(|s| s.name == parent)
            .map(|s| s.span_id.as_str())
            .collect();
        hit.iter()
            .any(|s| s.name == name && parents.contains(s.parent_span_id.as_str()))
    };
    assert!(child_of("dedupe", "edge"));
    assert!(child_of("funnel", "dedupe"));
    assert!(child_of("match-route", "dedupe"));
    assert!(child_of("match", "match-route"));
    assert!(
        child_of("capi", "match"),
        "the page view's dispatch request"
    );
    assert!(child_of("clickhouse", "edge"), "the raw record's row");

    // A purchase waits out the matcher's grace period; its trace goes on to Meta.
    let order = Order {
        base_id: session.clone(),
        amount_minor: 9700,
        email: EMAIL.to_owned(),
        name: "Traced Buyer".into(),
        product_id: "curso".into(),
        session_id: Some(session.clone()),
        fbclid: Some("IwARtraced".into()),
        refund: false,
        at_ms: funnelhub_schemas::ids::now_ms(),
    };
    deliver(
        &setup,
        &gateways::order_webhook(acme, Gateway::Stripe, &order),
    )
    .await;
    let purchase = trace_of(
        &collector,
        "purchase",
        &[
            "edge",
            "dedupe",
            "match-route",
            "match",
            "capi",
            "clickhouse",
        ],
    )
    .await;
    assert_one_tree(&purchase);

    // Spans name ids, tenants and stages: never the buyer's address or a secret.
    let secrets: Vec<String> = acme
        .stripe_signing_secrets
        .iter()
        .map(|s| s.expose().to_owned())
        .chain([EMAIL.to_owned(), EMAIL.to_lowercase()])
        .collect();
    for span in collector.spans() {
        for (key, value) in &span.attributes {
            for secret in &secrets {
                assert!(
                    !value.contains(secret.as_str()),
                    "{key} of {} holds a secret",
                    span.name
                );
            }
        }
    }
    stop(pipeline);
    collector.stop().await.expect("collector stops");
}

//! The browser tracker (`web/tracker/`, served by the edge at `/sdk/v1/funnelhub.js`) in
//! Debian's headless Chromium, driven by `web/tracker/test/browser.mjs` (playwright-core),
//! against `funnelhub up` on the real broker and landing pages served by this test:
//!
//! - a visit from an ad (`?fbclid=…&utm_…`) puts a page view on `raw.tracking` with the
//!   `_fbc` cookie's value (click time of that visit), `_fbp`, `gclid`, the campaign and ads consent;
//!   the next page keeps the same session and the same `fbc`;
//! - the pixel (`fbq`, a stub on the page) gets each page view with `eventID` equal to the
//!   hit's event id, so Meta deduplicates the two copies;
//! - a click on a Hotmart checkout link leaves with `sck=<session>` and the campaign, and an
//!   `initiate_checkout` hit of that session lands;
//! - with ads consent denied no Meta cookie is written and the hit says `consent.ads=false`;
//! - the pages' consoles show no error.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::Html;
use axum::routing::{get, post};
use funnelhub_schemas::codec::split_frame;
use funnelhub_schemas::common::EventType;
use funnelhub_schemas::derived::{MatchMethod, MatchResult};
use funnelhub_schemas::events::TrackingHit;
use funnelhub_schemas::{Catalog, Decoder, Topic};
use funnelhub_simulator::gateways::{self, Gateway, Order};
use serde_json::Value;
use support::pipeline::{deliver, setup_with, stop, up, WAIT};

const HOTTOK: &str = "shop-hottok-0123456789";

/// The identity hashing vectors the edge's unit tests check too.
fn vectors_file() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/testdata/identity-vectors.json")
}

/// A landing page of tenant `shop` whose consent banner (Google Consent Mode) said `ads`.
fn page(edge_port: u16, ads: &str) -> String {
    page_to(&format!("http://edge.shop.test:{edge_port}"), ads)
}

/// A landing page whose consent comes from an IAB TCF v2 CMP granting purposes 1, 3 and 4.
fn tcf_page(edge_port: u16) -> String {
    format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>Shop</title>
<script>
window.__tcfapi = function (command, version, callback) {{
  if (command === 'addEventListener') {{
    setTimeout(function () {{
      callback({{eventStatus: 'tcloaded', purpose: {{consents: {{1: true, 3: true, 4: true, 8: true}}}}}}, true);
    }}, 20);
  }}
}};
</script>
<script async src="http://edge.shop.test:{edge_port}/sdk/v1/funnelhub.js" data-tenant="shop"></script>
</head><body><h1>The offer</h1></body></html>"#
    )
}

/// [`page`] with the tracker sending to `endpoint`.
fn page_to(endpoint: &str, ads: &str) -> String {
    format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>Shop</title>
<script>
window.dataLayer = window.dataLayer || [];
function gtag(){{ dataLayer.push(arguments); }}
gtag('consent', 'default', {{ad_storage: '{ads}', ad_user_data: '{ads}', analytics_storage: 'granted'}});
window.__fbqCalls = [];
window.fbq = function () {{ window.__fbqCalls.push(Array.from(arguments)); }};
</script>
<script async src="{endpoint}/sdk/v1/funnelhub.js" data-endpoint="{endpoint}" data-tenant="shop"></script>
</head><body><h1>The offer</h1>
<button id="cta" data-fh-event="initiate_checkout" data-fh-value="97">Add to cart</button>
<a id="buy" href="https://pay.hotmart.com/X123?off=abc">Buy now</a>
</body></html>"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tracker_in_chromium_carries_click_ids_consent_and_the_session_to_the_checkout() {
    let tracker = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web/tracker");
    assert!(
        tracker.join("node_modules/playwright-core").exists(),
        "run `npm ci` in web/tracker first (scripts/test does)"
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("landing port");
    let landing_port = listener.local_addr().expect("addr").port();
    let landing = format!("http://www.shop.test:{landing_port}");
    let setup = setup_with(
        "http://127.0.0.1:9",
        &format!(
            r#"
[[tenants]]
id = "shop"
allowed_origins = ["{landing}"]
meta_pixel_id = "333000333"
hotmart_hottok = "{HOTTOK}"
"#
        ),
    );
    let edge_port: u16 = setup
        .edge
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("edge port");
    // An edge that answers every hit 503 (Retry-After: 1), and serves the tracker.
    let flaky_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("flaky port");
    let flaky_port = flaky_listener.local_addr().expect("addr").port();
    let flaky_edge = axum::Router::new()
        .route(
            "/sdk/v1/funnelhub.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "application/javascript")],
                    funnelhub_ingest::sdk::TRACKER,
                )
            }),
        )
        .route(
            "/api/v1/track/{kind}",
            post(|| async {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [
                        (header::RETRY_AFTER, "1"),
                        (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
                        (header::ACCESS_CONTROL_EXPOSE_HEADERS, "retry-after"),
                    ],
                    "{}",
                )
            }),
        );
    tokio::spawn(async move { axum::serve(flaky_listener, flaky_edge).await });
    let flaky = page_to(&format!("http://flaky.shop.test:{flaky_port}"), "granted");
    let granted = page(edge_port, "granted");
    let denied = page(edge_port, "denied");
    let app = axum::Router::new()
        .route("/", get(move || async move { Html(granted) }))
        .route(
            "/page2",
            get({
                let page = page(edge_port, "granted");
                move || async move { Html(page) }
            }),
        )
        .route("/denied", get(move || async move { Html(denied) }))
        .route("/flaky", get(move || async move { Html(flaky) }))
        .route(
            "/blank",
            get(|| async { Html("<!doctype html><title>blank</title><p>blank</p>") }),
        )
        .route(
            "/bare",
            get(move || async move {
                Html(format!(
                    r#"<!doctype html><title>bare</title><script async src="http://edge.shop.test:{edge_port}/sdk/v1/funnelhub.js" data-tenant="shop"></script>"#
                ))
            }),
        )
        .route(
            "/tcf",
            get(move || async move { Html(tcf_page(edge_port)) }),
        )
        .route(
            "/favicon.ico",
            get(|| async { axum::http::StatusCode::NO_CONTENT }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let pipeline = up(&setup);

    let screenshot = setup.dir.join("tracker.png");
    let out = support::drive_browser(
        tracker.clone(),
        "test/browser.mjs",
        serde_json::json!({
            "landing": landing,
            "screenshot": screenshot,
            "vectors": vectors_file(),
        }),
    )
    .await;
    assert!(out["failure"].is_null(), "{}", out["failure"]);
    // The only error a console may show: the flaky edge's 503, which the page itself logs.
    let errors: Vec<&Value> = out["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter(|e| {
            !e.as_str().is_some_and(|e| {
                e.starts_with("/flaky: Failed to load resource") && e.contains("503")
            })
        })
        .collect();
    assert!(errors.is_empty(), "console errors: {errors:?}");
    assert!(screenshot.exists(), "a screenshot of the test page");
    assert_eq!(
        out["globals"],
        serde_json::json!(["funnelhub"]),
        "no global but window.funnelhub"
    );

    // The browser hashes as the edge does: the shared vectors, byte for byte.
    let vectors: Value =
        serde_json::from_str(&std::fs::read_to_string(vectors_file()).expect("vectors"))
            .expect("json");
    let vectors = vectors["vectors"].as_array().expect("vectors");
    let hashed = out["vectors"].as_array().expect("hashed in the page");
    assert_eq!(hashed.len(), vectors.len());
    for (vector, got) in vectors.iter().zip(hashed) {
        assert_eq!(got, &vector["sha256"], "{vector}");
    }

    // Cookies on the registrable domain, in Meta's formats, with the real click time.
    let cookies = &out["cookies"];
    let fbc = cookies["_fbc"]["value"]
        .as_str()
        .expect("_fbc set")
        .to_owned();
    let fbp = cookies["_fbp"]["value"]
        .as_str()
        .expect("_fbp set")
        .to_owned();
    assert!(
        cookies["_fbc"]["domain"]
            .as_str()
            .is_some_and(|d| d.trim_start_matches('.') == "shop.test"),
        "{cookies}"
    );
    assert!(
        fbc.starts_with("fb.1.") && fbc.ends_with(".AbC-123_xYz"),
        "fbclid kept as given: {fbc}"
    );
    assert!(fbp.starts_with("fb.1."), "{fbp}");
    let session = out["first"]["session"].as_str().expect("session");
    assert_eq!(
        out["second"]["session"], session,
        "one session over two pages"
    );

    // The pixel got each page view with the hit's event id.
    let event_id = |visit: &str| {
        let calls = out[visit]["fbq"].as_array().expect("fbq calls");
        assert_eq!(calls.len(), 1, "{visit}: {calls:?}");
        assert_eq!(calls[0][0], "track");
        assert_eq!(calls[0][1], "PageView");
        calls[0][3]["eventID"].as_str().expect("eventID").to_owned()
    };
    let (first_id, second_id) = (event_id("first"), event_id("second"));

    // The checkout link left with the session and the campaign.
    let checkout = url::Url::parse(out["checkout"].as_str().expect("checkout url")).expect("url");
    let query: HashMap<String, String> = checkout.query_pairs().into_owned().collect();
    assert_eq!(
        query.get("sck").map(String::as_str),
        Some(session),
        "{checkout}"
    );
    assert_eq!(query.get("off").map(String::as_str), Some("abc"));
    assert_eq!(
        query.get("utm_campaign").map(String::as_str),
        Some("bf"),
        "{checkout}"
    );
    assert_eq!(query.get("src").map(String::as_str), Some("facebook"));
    let denied_session = out["denied"]["session"]
        .as_str()
        .expect("session")
        .to_owned();
    let denied_cookies = out["denied"]["cookies"].as_array().expect("cookies");
    assert!(
        !denied_cookies.iter().any(|c| c == "_fbc" || c == "_fbp"),
        "no Meta cookie without ads consent: {denied_cookies:?}"
    );

    // What the edge put on the topic.
    let topic = Catalog::new(&setup.kafka.topic_prefix).name(Topic::RawTracking);
    let decoder = Decoder::<TrackingHit>::bundled();
    let decode = |records: &[(Option<Vec<u8>>, Vec<u8>)]| -> Vec<TrackingHit> {
        records
            .iter()
            .map(|(_, v)| {
                let (_, body) = split_frame(v).expect("Confluent framing");
                decoder.decode(body).expect("a tracking hit")
            })
            .filter(|h| h.envelope.tenant_id == "shop")
            .collect()
    };
    let tcf_session = out["tcf"]["session"].as_str().expect("tcf session");
    let identified_id = out["identified"].as_str().expect("click id").to_owned();
    let retried = out["retried"]["eventId"]
        .as_str()
        .expect("queued event id")
        .to_owned();
    assert_eq!(out["retried"]["refusedStatus"], 503);
    assert_eq!(
        out["retried"]["left"],
        serde_json::json!([]),
        "the queue is empty"
    );
    let records = funnelhub_kafka::testing::read_until(&setup.kafka, &topic, WAIT, |r| {
        let hits = decode(r);
        // Every hit asserted below; they land in any order across partitions.
        let id = |id: &str| hits.iter().any(|h| h.envelope.event_id == id);
        let session_of = |s: &str| hits.iter().any(|h| h.session_id == s);
        let checkouts = hits
            .iter()
            .filter(|h| {
                h.envelope.event_type == EventType::InitiateCheckout && h.session_id == session
            })
            .count();
        [
            first_id.as_str(),
            second_id.as_str(),
            identified_id.as_str(),
            retried.as_str(),
        ]
        .iter()
        .all(|i| id(i))
            && session_of(tcf_session)
            && session_of(&denied_session)
            && checkouts >= 2
    })
    .await;
    let hits = decode(&records);
    let by_id = |id: &str| {
        hits.iter()
            .find(|h| h.envelope.event_id == id)
            .unwrap_or_else(|| panic!("no hit {id} among {}", hits.len()))
    };
    for (id, visit) in [(&first_id, "first"), (&second_id, "second")] {
        let hit = by_id(id);
        assert_eq!(hit.envelope.event_type, EventType::Pageview, "{visit}");
        assert_eq!(hit.session_id, session, "{visit}");
        assert_eq!(
            hit.click_ids.fbc.as_deref(),
            Some(fbc.as_str()),
            "{visit}: fbc"
        );
        assert_eq!(
            hit.click_ids.fbp.as_deref(),
            Some(fbp.as_str()),
            "{visit}: fbp"
        );
        assert_eq!(hit.utm.source.as_deref(), Some("facebook"), "{visit}");
        assert_eq!(hit.utm.campaign.as_deref(), Some("bf"), "{visit}");
        assert_eq!(
            hit.click_ids.gclid.as_deref(),
            Some("Cj0-Test_1"),
            "{visit}: gclid kept for the session"
        );
        assert!(hit.envelope.consent.ads, "{visit}");
        assert_eq!(hit.client_event_id.as_deref(), Some(id.as_str()));
    }
    assert!(
        hits.iter().any(
            |h| h.envelope.event_type == EventType::InitiateCheckout && h.session_id == session
        ),
        "the checkout click is tracked"
    );
    // identify() hashed in the page; the edge kept the hashes (never hashed twice).
    let identified = by_id(&identified_id);
    assert_eq!(identified.envelope.event_type, EventType::Click);
    assert_eq!(
        identified.envelope.identity.email_hash.as_deref(),
        Some(funnelhub_schemas::identity::sha256_hex("ana.souza@example.com").as_str())
    );
    assert_eq!(
        identified.envelope.identity.phone_hash.as_deref(),
        Some(funnelhub_schemas::identity::sha256_hex("16505551212").as_str())
    );

    // An element with data-fh-event is tracked on click, without code.
    assert!(
        hits.iter()
            .any(|h| h.envelope.event_type == EventType::InitiateCheckout
                && h.session_id == session
                && h.value == Some(97.0)),
        "the data-fh-event button's hit"
    );

    // Consent from a TCF CMP: granted, so the click id cookie is written and the hit says so.

    assert!(
        out["tcf"]["cookies"]
            .as_array()
            .expect("cookies")
            .iter()
            .any(|c| c == "_fbc"),
        "{}",
        out["tcf"]
    );
    let tcf_hit = hits
        .iter()
        .find(|h| h.session_id == tcf_session)
        .expect("the TCF visit's hit");
    assert!(
        tcf_hit.envelope.consent.ads,
        "TCF purposes 1, 3 and 4 grant ads"
    );
    assert!(tcf_hit
        .click_ids
        .fbc
        .as_deref()
        .is_some_and(|fbc| fbc.ends_with(".Tcf1")));

    // The hit the flaky edge refused arrived once, sent again by the next page.
    assert_eq!(
        hits.iter()
            .filter(|h| h.envelope.event_id == retried)
            .count(),
        1,
        "the queued hit lands exactly once"
    );

    // The sale joins its click: the gateway returns the link's sck, and the matcher's
    // deterministic session rule ties the purchase to the visit.
    let mut shop = funnelhub_tenants::TenantConfig::new("shop");
    shop.hotmart_hottok = Some(funnelhub_tenants::Secret::from(HOTTOK));
    let order = Order {
        base_id: format!("HP{}", &session[..12]),
        amount_minor: 19700,
        email: "ana@example.com".into(),
        name: "Ana Souza".into(),
        product_id: "curso".into(),
        session_id: query.get("sck").cloned(),
        fbclid: None,
        refund: false,
        at_ms: funnelhub_schemas::ids::now_ms(),
    };
    deliver(
        &setup,
        &gateways::order_webhook(&shop, Gateway::Hotmart, &order),
    )
    .await;
    let results = Catalog::new(&setup.kafka.topic_prefix).name(Topic::MatchResults);
    let matches = Decoder::<MatchResult>::bundled();
    let found = |records: &[(Option<Vec<u8>>, Vec<u8>)]| -> Option<MatchResult> {
        records.iter().find_map(|(_, v)| {
            let (_, body) = split_frame(v).ok()?;
            let result = matches.decode(body).ok()?;
            (result.tenant_id == "shop" && result.order_id.contains(&order.base_id))
                .then_some(result)
        })
    };
    let records =
        funnelhub_kafka::testing::read_until(&setup.kafka, &results, WAIT, |r| found(r).is_some())
            .await;
    let decided = found(&records).expect("the sale's match");
    assert_eq!(decided.method, MatchMethod::SessionId, "{decided:?}");
    assert_eq!(decided.matched_session_id.as_deref(), Some(session));

    let refused = hits
        .iter()
        .find(|h| h.session_id == denied_session)
        .expect("the denied visit's hit");
    assert!(
        !refused.envelope.consent.ads,
        "the hit says ads consent is denied"
    );
    assert_eq!(refused.click_ids.fbp, None);

    tokio::time::sleep(Duration::from_millis(100)).await;
    stop(pipeline);
}

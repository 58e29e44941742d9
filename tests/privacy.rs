//! Erasure by identifier on the whole pipeline (`funnelhub up` on the real broker and
//! ClickHouse, the Meta emulator): two buyers of one tenant visit, check out and pay
//! through Stripe; one of them is purged through `POST /api/v1/privacy/purge`.
//!
//! - After the purge no table holds her hash, her session or her events; the other buyer
//!   is untouched; the receipt counts what was deleted and does not hold the hash.
//! - The tenant's guided-setup screenshots are deleted by any purge (one may show her).
//! - Every stage is replayed from the start and the pipeline started again: the other
//!   buyer's events reach Meta again (the replay really ran), hers do not, and ClickHouse
//!   still holds nothing of her.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use funnelhub_clickhouse::query::{count, json_rows};
use funnelhub_clickhouse::ClickHouseConfig;
use funnelhub_emulators::MetaGraphEmulator;
use funnelhub_schemas::identity::sha256_hex;
use funnelhub_schemas::privacy::receipt_digest;
use funnelhub_simulator::gateways::{self, Gateway, Order};
use serde_json::{json, Value};
use support::pipeline::{
    caught_up, deliver, meta_emulator, replay_everything, setup, stop, up, Setup, WAIT,
};

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0";

/// One buyer's visit (click, checkout with her email), Stripe purchase and, if asked,
/// its refund.
async fn buyer(setup: &Setup, run: &str, who: &str, email: &str, refund: bool) -> String {
    let acme = setup.tenants.iter().find(|t| t.id == "acme").expect("acme");
    let session = format!("{run}-{who}");
    let fbclid = format!("IwAR{run}{who}");
    let landing = "https://lp.example.com/curso";
    for (kind, payload) in [
        (
            "click",
            json!({"session_id": session, "event_id": format!("{session}-ck"),
                   "page_url": format!("{landing}?fbclid={fbclid}"), "consent_ads": true}),
        ),
        (
            "initiate_checkout",
            json!({"session_id": session, "event_id": format!("{session}-ic"),
                   "page_url": format!("{landing}/checkout"), "email": email, "value": 97.0,
                   "currency": "BRL", "content_ids": ["curso"], "consent_ads": true}),
        ),
    ] {
        deliver(setup, &gateways::hit("acme", kind, &payload, UA)).await;
    }
    let mut order = Order {
        base_id: format!("{run}{who}"),
        amount_minor: 9700,
        email: email.to_owned(),
        name: format!("{who} Silva"),
        product_id: "curso".into(),
        session_id: Some(session.clone()),
        fbclid: Some(fbclid),
        refund: false,
        at_ms: funnelhub_schemas::ids::now_ms(),
    };
    deliver(
        setup,
        &gateways::order_webhook(acme, Gateway::Stripe, &order),
    )
    .await;
    if refund {
        order.refund = true;
        deliver(
            setup,
            &gateways::order_webhook(acme, Gateway::Stripe, &order),
        )
        .await;
    }
    session
}

async fn number(clickhouse: &ClickHouseConfig, sql: &str) -> u64 {
    let sql = sql.replace("{db}", &clickhouse.database);
    let rows = json_rows(clickhouse, &sql).await.expect(&sql);
    count(&rows[0]["n"])
}

/// Rows of every table that point at one person: her hash, her session or her events.
async fn rows_of(
    clickhouse: &ClickHouseConfig,
    hash: &str,
    session: &str,
    events: &[String],
) -> BTreeMap<&'static str, u64> {
    let ids = serde_json::to_string(events)
        .expect("json")
        .replace('"', "'");
    let ids = if events.is_empty() {
        "['']".to_owned()
    } else {
        ids
    };
    let by_session_or_payload = format!(
        "session_id = '{session}' OR position(payload, '{hash}') > 0 OR has({ids}, event_id)"
    );
    let checks = [
        ("raw_events", by_session_or_payload.clone()),
        ("events", by_session_or_payload),
        (
            "event_index",
            format!("session_id = '{session}' OR has({ids}, event_id)"),
        ),
        ("session_stages", format!("subject_id = '{session}'")),
        (
            "funnel_transitions",
            format!("subject_id = '{session}' OR has({ids}, cause_event_id)"),
        ),
        (
            "matches",
            format!("matched_session_id = '{session}' OR has({ids}, conversion_id)"),
        ),
        ("capi_requests", format!("has({ids}, event_id)")),
        ("dispatch_attempts", format!("hasAny(event_ids, {ids})")),
    ];
    let mut found = BTreeMap::new();
    for (table, condition) in checks {
        let sql = format!(
            "SELECT count() AS n FROM {{db}}.{table} WHERE tenant_id = 'acme' AND ({condition})"
        );
        found.insert(table, number(clickhouse, &sql).await);
    }
    found
}

/// `rows` (of [`rows_of`]) hold the person's events, visit, match and dispatches.
fn assert_held(rows: &BTreeMap<&str, u64>, who: &str) {
    for table in [
        "raw_events",
        "events",
        "session_stages",
        "matches",
        "capi_requests",
    ] {
        assert!(rows[table] > 0, "{who}: nothing in {table}: {rows:?}");
    }
}

/// Times Meta received each of `events` (0: never).
fn received(emulator: &MetaGraphEmulator, events: &[String]) -> BTreeMap<String, u32> {
    let snapshot = emulator.snapshot();
    events
        .iter()
        .map(|id| {
            let times = snapshot
                .events
                .iter()
                .filter(|e| e.event_id.as_deref() == Some(id))
                .map(|e| e.times_received)
                .sum();
            (id.clone(), times)
        })
        .collect()
}

async fn purge_request(setup: &Setup, key: Option<&str>, body: Value) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{}/api/v1/privacy/purge", setup.edge))
        .json(&body)
        .timeout(Duration::from_secs(120));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.expect("edge answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn wait_until<F: std::future::Future<Output = bool>>(what: &str, check: impl Fn() -> F) {
    let deadline = Instant::now() + WAIT;
    while !check().await {
        assert!(Instant::now() < deadline, "waited too long for {what}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_purged_person_is_erased_and_a_full_replay_neither_stores_nor_sends_her_again() {
    let emulator = meta_emulator().await;
    let setup = setup(&emulator.url());
    let pipeline = up(&setup);
    let ch = &setup.clickhouse;
    let run = format!("pv{:x}", rand::random::<u32>());

    let ana = buyer(&setup, &run, "ana", "Ana.Souza@Example.com", true).await;
    let bruno = buyer(&setup, &run, "bruno", "bruno@example.com", false).await;
    let ana_hash = sha256_hex("ana.souza@example.com");
    let bruno_hash = sha256_hex("bruno@example.com");
    // Both purchases matched to their visits and sent to Meta, Ana's refund decided too.
    wait_until("three matched orders in ClickHouse", || async {
        let sql = format!(
            "SELECT count() AS n FROM {{db}}.matches FINAL WHERE tenant_id = 'acme' \
             AND position(order_id, '{run}') > 0 AND method != 'unmatched'"
        );
        number(ch, &sql).await == 3
    })
    .await;
    wait_until("both purchases at Meta", || async {
        let purchases = emulator
            .snapshot()
            .events
            .iter()
            .filter(|e| e.event_name == "Purchase" && e.event.to_string().contains(&run))
            .count();
        purchases == 2
    })
    .await;
    caught_up(&setup).await;
    let events_of = |session: String, hash: String| async move {
        let sql = format!(
            "SELECT DISTINCT event_id FROM {}.events FINAL WHERE tenant_id = 'acme' \
             AND (session_id = '{session}' OR position(payload, '{hash}') > 0)",
            ch.database
        );
        let rows = json_rows(ch, &sql).await.expect("events");
        rows.iter()
            .map(|r| r["event_id"].as_str().expect("id").to_owned())
            .collect::<Vec<_>>()
    };
    let ana_events = events_of(ana.clone(), ana_hash.clone()).await;
    let bruno_events = events_of(bruno.clone(), bruno_hash.clone()).await;
    assert_eq!(
        ana_events.len(),
        4,
        "click, checkout, purchase, refund: {ana_events:?}"
    );
    assert_eq!(bruno_events.len(), 3, "{bruno_events:?}");
    let before = rows_of(ch, &ana_hash, &ana, &ana_events).await;
    assert_held(&before, "Ana before the purge");
    let bruno_before = rows_of(ch, &bruno_hash, &bruno, &bruno_events).await;
    let ana_at_meta = received(&emulator, &ana_events);
    assert!(ana_at_meta.values().any(|t| *t > 0), "{ana_at_meta:?}");

    // Refusals name what is wrong; nothing is purged by them.
    let (status, _) = purge_request(&setup, None, json!({"email": "x@example.com"})).await;
    assert_eq!(status, 401);
    let (status, body) = purge_request(&setup, Some("acme-api-key"), json!({})).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("email")),
        "{body}"
    );
    let (status, body) = purge_request(
        &setup,
        Some("acme-api-key"),
        json!({"email": "a@example.com", "phone": "11987654321"}),
    )
    .await;
    assert_eq!(status, 400, "{body}");

    // A guided-setup screenshot of the tenant (it may show a buyer: a sale's screen).
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("{}/api/v1/setup/sessions", setup.edge))
        .bearer_auth("acme-api-key")
        .json(&json!({"tenant_id": "acme"}))
        .send()
        .await
        .expect("edge answers")
        .json()
        .await
        .expect("json");
    let setup_session = created["session_id"].as_str().expect("session").to_owned();
    let stored = support::upload_screenshot(
        &setup.edge,
        "acme-api-key",
        &setup_session,
        "sale.png",
        &[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 1, 2, 3],
    )
    .await;
    let screenshot = format!(
        "{}/api/v1/setup/sessions/{setup_session}/attachments/{}",
        setup.edge,
        stored["attachment_id"].as_str().expect("attachment id")
    );
    let status_of = |url: String| {
        let http = http.clone();
        async move {
            http.get(url)
                .bearer_auth("acme-api-key")
                .send()
                .await
                .expect("edge answers")
                .status()
                .as_u16()
        }
    };
    assert_eq!(status_of(screenshot.clone()).await, 200);

    // A purge of someone the tenant never saw stores a receipt and costs ClickHouse no
    // mutation (mutations rewrite table parts); the tenant's screenshots go, all of them.
    let nobody = format!("nobody-{run}@example.com");
    let (status, empty) =
        purge_request(&setup, Some("acme-api-key"), json!({"email": nobody})).await;
    assert_eq!(status, 200, "{empty}");
    assert_eq!(empty["deleted"]["setup_attachments"], 1, "{empty}");
    assert_eq!(status_of(screenshot).await, 404, "the screenshot is gone");
    assert_eq!(
        (empty["events"].as_u64(), empty["left"].as_u64()),
        (Some(0), Some(0)),
        "{empty}"
    );
    let mutations = format!(
        "SELECT count() AS n FROM system.mutations WHERE database = '{{db}}' \
         AND position(command, '{}') > 0",
        sha256_hex(&nobody)
    );
    assert_eq!(number(ch, &mutations).await, 0, "no mutation for nobody");

    // The purge, with the address written differently than at checkout.
    let (status, receipt) = purge_request(
        &setup,
        Some("acme-api-key"),
        json!({"email": "  ANA.souza@example.COM "}),
    )
    .await;
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(receipt["left"], 0, "{receipt}");
    assert_eq!(receipt["events"], 4, "{receipt}");
    assert_eq!(receipt["sessions"], 1, "{receipt}");
    assert!(count(&receipt["deleted"]["events"]) >= 4, "{receipt}");
    let after = rows_of(ch, &ana_hash, &ana, &ana_events).await;
    assert!(
        after.values().all(|n| *n == 0),
        "after the purge: {after:?}"
    );
    assert_eq!(
        rows_of(ch, &bruno_hash, &bruno, &bruno_events).await,
        bruno_before,
        "the other buyer is untouched"
    );
    let receipts = json_rows(
        ch,
        &format!(
            "SELECT purge_id, identifier_kind, identifier_digest, events, left \
             FROM {}.purge_receipts WHERE tenant_id = 'acme' AND purge_id != '{}'",
            ch.database,
            empty["purge_id"].as_str().expect("nobody's receipt")
        ),
    )
    .await
    .expect("receipts");
    assert_eq!(receipts.len(), 1, "{receipts:?}");
    assert_eq!(receipts[0]["purge_id"], receipt["purge_id"]);
    assert_eq!(receipts[0]["identifier_kind"], "email");
    assert_eq!(receipts[0]["identifier_digest"], receipt_digest(&ana_hash));
    assert!(!receipts[0].to_string().contains(&ana_hash));
    // The read API finds nothing of her either.
    let listed: Value = reqwest::Client::new()
        .get(format!("{}/api/v1/events?session_id={ana}", setup.edge))
        .bearer_auth("acme-api-key")
        .send()
        .await
        .expect("read api")
        .json()
        .await
        .expect("json");
    assert_eq!(
        listed["events"].as_array().map(Vec::len),
        Some(0),
        "{listed}"
    );

    // Replay every stage from the start.
    caught_up(&setup).await;
    stop(pipeline);
    let bruno_at_meta = received(&emulator, &bruno_events);
    let ana_at_meta = received(&emulator, &ana_events);
    replay_everything(&setup);
    let pipeline = up(&setup);
    wait_until("Bruno's events sent again by the replay", || async {
        let now = received(&emulator, &bruno_events);
        now.iter()
            .all(|(id, times)| *times > bruno_at_meta[id] || bruno_at_meta[id] == 0)
    })
    .await;
    caught_up(&setup).await;
    // The matcher's grace period and the sinks' linger, then look again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    caught_up(&setup).await;
    let replayed = rows_of(ch, &ana_hash, &ana, &ana_events).await;
    assert!(
        replayed.values().all(|n| *n == 0),
        "after the replay: {replayed:?}"
    );
    assert_eq!(
        received(&emulator, &ana_events),
        ana_at_meta,
        "nothing of Ana was sent to Meta again"
    );
    let bruno_after = rows_of(ch, &bruno_hash, &bruno, &bruno_events).await;
    assert_held(&bruno_after, "Bruno after the replay");
    stop(pipeline);
    emulator.stop().await.expect("emulator stops");
    let _ = std::fs::remove_dir_all(&setup.dir);
}

//! The web app (`/app/`, `web/app/`) in Debian's headless Chromium, driven by
//! `web/app/test/app.mjs` (playwright-core), against `funnelhub up` on the real broker and
//! ClickHouse, with the Meta Graph API and gateway emulators behind the setup tools and a
//! landing page of the test's own:
//!
//! - a wrong key stays on the key form; a key the API refuses later returns to it;
//! - the wizard's happy path (landing page, Stripe, Meta) ends `configured`, shown live,
//!   and rolls back; its first step is done by keyboard; a malformed field is refused in
//!   the browser before anything is sent, focus on it; the webhook URL to paste is shown;
//! - a bad Meta token shows its failure live and opens the chat, which diagnoses it and
//!   re-validates with a new token given in a message; screenshots go up by the picker
//!   and by drag-and-drop and show in the conversation; "talk to a person" hands off (one
//!   ticket); a reload brings the session back;
//! - the desk's funnel numbers equal the API's for seeded onboarding sessions; a session
//!   and a ticket show their timelines; the API's error shows beside the field it names;
//!   an event shows its deduplicated copies and its dispatch is replayed;
//! - an operator's key reads the tenant it names; at 375 px nothing overflows;
//! - every field has a label, no request leaves the edge's origin, no console error.
//!
//! Screenshots of each scenario go to `target/web-app/` (docs/web.md shows them).

mod support;

use std::time::{Duration, Instant};

use axum::extract::Path;
use axum::response::Html;
use axum::routing::get;
use funnelhub_emulators::{GatewayAccounts, GatewayEmulator};
use funnelhub_simulator::gateways;
use serde_json::{json, Value};
use support::pipeline::{deliver, free_port, setup_with, stop, up, Setup, WAIT};

const ADMIN: &str = "web-app-operator-key-01";
const TENANT_KEY: &str = "acme-api-key";
const PIXEL: &str = "444000444";
const TOKEN: &str = "EAABwebAppGoodToken0123456789";
const BAD_TOKEN: &str = "EAABwebAppRevokedToken98765";
const STRIPE_KEY: &str = "sk_test_51WebAppSecretKey0000";
const WHSEC: &str = "whsec_web_app_signing_secret_01";
const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36";

/// A landing page per tenant: `/<tenant>` carries the tracker's tag naming it.
async fn landing(edge: &str) -> (String, funnelhub_runtime::RunningServer) {
    let port = free_port();
    let edge = edge.to_owned();
    let router = axum::Router::new().route(
        "/{tenant}",
        get(move |Path(tenant): Path<String>| {
            let edge = edge.clone();
            async move {
                Html(format!(
                    r#"<!doctype html><title>Curso</title><script async src="{edge}/sdk/v1/funnelhub.js" data-tenant="{tenant}"></script><h1>Curso</h1>"#
                ))
            }
        }),
    );
    let server = funnelhub_runtime::serve(([127, 0, 0, 1], port).into(), router)
        .await
        .expect("landing server");
    (format!("http://127.0.0.1:{port}"), server)
}

async fn get_json(setup: &Setup, path: &str, key: &str, tenant: Option<&str>) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .get(format!("{}{path}", setup.edge))
        .bearer_auth(key);
    if let Some(tenant) = tenant {
        request = request.header("x-funnelhub-tenant", tenant);
    }
    let response = request.send().await.expect("edge answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done().await {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Onboarding sessions of tenant acme: one in progress, one completed, one failed; one
/// webhook delivered twice.
async fn seed_onboarding(setup: &Setup) {
    let acme = setup.tenants.iter().find(|t| t.id == "acme").expect("acme");
    let now = funnelhub_schemas::ids::now_ms();
    let journeys: [(&str, &[(&str, Value)]); 3] = [
        (
            "ob-web-1",
            &[
                ("onboarding.started", json!({"plan": "pro"})),
                ("domain.validated", json!({})),
            ],
        ),
        (
            "ob-web-2",
            &[
                ("onboarding.started", json!({"plan": "basic"})),
                ("domain.validated", json!({})),
                ("dns.applied", json!({"records": 3})),
                ("account.created", json!({"mailboxes": 5})),
                ("infra.synced", json!({"success": true})),
                ("onboarding.completed", json!({})),
            ],
        ),
        (
            "ob-web-3",
            &[
                ("onboarding.started", json!({"plan": "pro"})),
                (
                    "onboarding.failed",
                    json!({"error_code": "DNS_TIMEOUT", "step": "dns"}),
                ),
            ],
        ),
    ];
    for (session, events) in journeys {
        for (i, (event, data)) in events.iter().enumerate() {
            let payload = json!({
                "event": event, "domain": format!("{session}.example.com"), "session_id": session,
                "data": data, "timestamp": now - 60_000 + i as i64 * 1000,
            });
            let delivery = gateways::onboarding(acme, &payload);
            deliver(setup, &delivery).await;
            if session == "ob-web-1" && i == 0 {
                deliver(setup, &delivery).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_web_app_in_chromium_sets_up_chats_hands_off_and_shows_the_desk() {
    let app = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web/app");
    assert!(
        app.join("node_modules/playwright-core").exists(),
        "run `npm ci` in web/app first (scripts/test does)"
    );
    let meta = support::pipeline::meta_emulator_with(PIXEL, TOKEN).await;
    let gateways_emulator = GatewayEmulator::start(
        ([127, 0, 0, 1], 0).into(),
        GatewayAccounts {
            hotmart: vec![],
            kiwify: vec![],
            stripe: vec![(STRIPE_KEY.into(), "acct_web".into())],
        },
    )
    .await
    .expect("gateway emulator");
    // The edge's address is only known once set up: the landing page names it as the
    // tracker's origin, which the probe does not fetch, so any address serves.
    let (site, _landing) = landing("https://edge.example").await;
    let extra = format!(
        r#"
[edge.setup]
admin_keys = ["{ADMIN}"]
max_failed_attempts = 3
tool_timeout_ms = 2000
meta_graph_url = "{meta}"
stripe_api_url = "{gw}"
probe_private_hosts = ["{landing}"]
"#,
        meta = meta.url(),
        gw = gateways_emulator.url(),
        landing = site.trim_start_matches("http://"),
    );
    let setup = setup_with(&meta.url(), &extra);
    let pipeline = up(&setup);

    // Desk data: onboarding sessions, and a page view Meta receives.
    seed_onboarding(&setup).await;
    let pageview_session = format!("web-pv-{}", funnelhub_schemas::ids::now_ms());
    let payload = json!({"session_id": pageview_session, "event_id": format!("{pageview_session}-pv"),
        "page_url": "https://lp.example.com/curso?fbclid=IwARwebapp", "consent_ads": true});
    deliver(&setup, &gateways::hit("acme", "pageview", &payload, UA)).await;
    wait_for("the seeded funnel in ClickHouse", async || {
        let (status, body) = get_json(&setup, "/api/v1/onboard/funnel", TENANT_KEY, None).await;
        status == 200 && body["sessions"] == 3 && body["failed"] == 1
    })
    .await;
    wait_for("the page view's dispatch in ClickHouse", async || {
        let (_, list) = get_json(
            &setup,
            &format!("/api/v1/events?session_id={pageview_session}"),
            TENANT_KEY,
            None,
        )
        .await;
        let Some(id) = list["events"][0]["event_id"].as_str() else {
            return false;
        };
        let (_, detail) = get_json(&setup, &format!("/api/v1/events/{id}"), TENANT_KEY, None).await;
        detail["dispatches"]
            .as_array()
            .is_some_and(|d| !d.is_empty())
    })
    .await;
    let (_, tickets) = get_json(&setup, "/api/v1/desk/tickets", TENANT_KEY, None).await;
    let kinds: Vec<&str> = tickets["tickets"]
        .as_array()
        .expect("tickets")
        .iter()
        .filter_map(|t| t["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"onboarding_failed"), "{tickets}");

    let shots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/web-app");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let out = support::drive_browser(
        app.clone(),
        "test/app.mjs",
        json!({
            "edge": setup.edge, "admin": ADMIN, "tenant_key": TENANT_KEY, "landing": site,
            "pixel": PIXEL, "token": TOKEN, "bad_token": BAD_TOKEN,
            "stripe_key": STRIPE_KEY, "whsec": WHSEC,
            "pageview_session": pageview_session, "shots": shots,
        }),
    )
    .await;
    assert!(out["failure"].is_null(), "{}\n{out:#}", out["failure"]);
    assert_eq!(out["foreign"], json!([]), "requests to another origin");
    assert_eq!(out["unlabelled"], json!([]), "fields without a label");
    // The only console errors: the browser reporting the refusals the test provokes (the
    // wrong keys' 401s, the search's 400, the missing session's 404).
    let provoked = |e: &str| {
        (e.starts_with("wrong_key: Failed to load resource") && e.contains("401"))
            || (e.starts_with("desk: Failed to load resource") && e.contains("400"))
            || (e.starts_with("chat: Failed to load resource") && e.contains("404"))
    };
    let errors: Vec<&Value> = out["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter(|e| !e.as_str().is_some_and(provoked))
        .collect();
    assert!(errors.is_empty(), "console errors: {errors:?}");

    // A wrong key.
    let wrong = &out["wrong_key"];
    assert_eq!(wrong["onForm"], true, "{wrong}");
    assert_eq!(wrong["error"], "This key is not valid here.", "{wrong}");
    assert_eq!(wrong["hash"], "#/key", "{wrong}");
    assert_eq!(wrong["stored"], Value::Null, "a refused key is forgotten");
    assert!(
        wrong["notice"]
            .as_str()
            .is_some_and(|n| n.contains("refused")),
        "{wrong}"
    );

    // The wizard's happy path, and what the API says of it.
    let wizard = &out["wizard"];
    assert_eq!(wizard["sentForBadUrl"], 0, "{wizard}");
    assert_eq!(wizard["firstFocus"], "tenant_id", "{wizard}");
    assert_eq!(wizard["focusAfterError"], "url", "{wizard}");
    assert!(
        wizard["rolledBack"]
            .as_str()
            .is_some_and(|r| r.contains("Rolled back")),
        "{wizard}"
    );
    assert_eq!(wizard["gatewayShown"], "stripe", "{wizard}");
    assert!(
        wizard["urlError"]
            .as_str()
            .is_some_and(|e| e.contains("http")),
        "{wizard}"
    );
    assert_eq!(
        wizard["webhookUrl"],
        format!("{}/api/v1/webhooks/stripe?tenant=shop", setup.edge),
        "{wizard}"
    );
    assert_eq!(
        wizard["steps"],
        json!(["step-success", "step-success", "step-success"])
    );
    let session = wizard["session"].as_str().expect("session id");
    let (status, body) = get_json(
        &setup,
        &format!("/api/v1/setup/sessions/{session}/status"),
        ADMIN,
        None,
    )
    .await;
    assert_eq!(
        (status, &body["state"]),
        (200, &json!("rolled_back")),
        "{body}"
    );
    assert_eq!(body["tenant_id"], "shop");

    // The chat: failure shown live, diagnosed, re-validated, screenshots, hand-off.
    let chat = &out["chat"];
    assert_eq!(
        chat["heading"], "Configurar o rastreamento",
        "pt-BR: {chat}"
    );
    for key in ["stepFailure", "lastFailure"] {
        assert!(
            chat[key]
                .as_str()
                .is_some_and(|t| t.contains("O que fazer")),
            "{key}: {chat}"
        );
    }
    assert!(
        chat["diagnosis"]
            .as_str()
            .is_some_and(|d| d.contains("validate_meta_token") && d.contains("falhou")),
        "{chat}"
    );
    assert_eq!(chat["revalidated"], "action success", "{chat}");
    assert!(
        chat["fixed"]
            .as_str()
            .is_some_and(|f| f.contains("Validado agora")),
        "the failed step says it is fixed: {chat}"
    );
    assert!(
        chat["notImage"]
            .as_str()
            .is_some_and(|e| e.contains("notas.txt")),
        "{chat}"
    );
    assert_eq!(chat["pendingAfter"], 0, "{chat}");
    assert!(
        chat["handoff"]
            .as_str()
            .is_some_and(|h| h.contains("Com uma pessoa") && h.contains("Chamado")),
        "{chat}"
    );
    assert_eq!(chat["personDisabled"], true);
    assert!(
        chat["afterReload"].as_u64().is_some_and(|n| n >= 6),
        "{chat}"
    );
    assert!(
        chat["gone"]
            .as_str()
            .is_some_and(|g| g.contains("não existe")),
        "a missing session says so: {chat}"
    );
    let chat_session = chat["session"].as_str().expect("chat session");
    let (_, body) = get_json(
        &setup,
        &format!("/api/v1/setup/sessions/{chat_session}/messages"),
        ADMIN,
        None,
    )
    .await;
    let messages = body["messages"].as_array().expect("messages");
    let with_shots = messages
        .iter()
        .find(|m| m["attachment_ids"].as_array().is_some_and(|a| a.len() == 2))
        .expect("a message with both screenshots");
    assert_eq!(with_shots["role"], "user");
    assert!(
        !body.to_string().contains(TOKEN) && !body.to_string().contains(BAD_TOKEN),
        "no token in the stored conversation"
    );
    wait_for("the hand-off ticket", async || {
        let (_, tickets) = get_json(&setup, "/api/v1/desk/tickets", ADMIN, Some("loja2")).await;
        tickets["tickets"].as_array().is_some_and(|t| {
            t.iter()
                .any(|t| t["kind"] == "setup_needs_human" && t["session_id"] == chat_session)
        })
    })
    .await;

    // The desk: the bars are the API's numbers.
    let desk = &out["desk"];
    let api = &desk["api"]["body"];
    for (stage, count) in api["stages"].as_object().expect("stages") {
        assert_eq!(&desk["bars"][stage], count, "{stage}: {desk}");
    }
    assert_eq!(desk["bars"]["failed"], api["failed"]);
    assert_eq!(desk["bars"]["domain_validated"], 1, "{desk}");
    assert_eq!(desk["bars"]["completed"], 1, "{desk}");
    assert_eq!(desk["bars"]["failed"], 1, "{desk}");
    assert_eq!(desk["active"], json!(["ob-web-1"]), "{desk}");
    assert_eq!(
        desk["timeline"],
        json!(["onboarding_started", "domain_validated"]),
        "{desk}"
    );
    assert!(
        desk["tickets"]
            .as_array()
            .is_some_and(|t| t.contains(&json!("Onboarding failed"))),
        "{desk}"
    );
    assert!(
        desk["fromError"]
            .as_str()
            .is_some_and(|e| e.contains("before")),
        "{desk}"
    );
    assert!(
        desk["copies"].as_str().is_some_and(|c| c.contains(": 1 ")),
        "{desk}"
    );
    assert!(
        desk["replayed"]
            .as_str()
            .is_some_and(|r| r.contains("Queued again")),
        "{desk}"
    );

    // An operator, on a phone.
    let mobile = &out["operator_mobile"];
    assert_eq!(mobile["bars"], desk["bars"], "{mobile}");
    assert_eq!(mobile["deskOverflow"], 0, "{mobile}");
    assert_eq!(mobile["wizardOverflow"], 0, "{mobile}");
    for name in [
        "key-form",
        "wizard-configured",
        "chat-diagnosis",
        "chat-screenshots",
        "handoff",
        "desk",
        "desk-event",
        "mobile-desk",
        "mobile-wizard",
    ] {
        assert!(shots.join(format!("{name}.png")).exists(), "{name}.png");
    }
    stop(pipeline);
}

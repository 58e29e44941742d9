//! Guided setup and the tenant control plane on the whole pipeline (`funnelhub up` on the
//! real broker and ClickHouse; emulators of Meta's Graph API and of Hotmart, Kiwify and
//! Stripe's credential endpoints; a landing-page server of the test's own):
//!
//! - every endpoint, every refusal (no key, another tenant's key, bad input, unknown tool,
//!   autoconfigure too early) and every tool failure (gateway rejects the credentials,
//!   token invalid, token without permission on the pixel, URL redirects to another host,
//!   URL times out, snippet missing); three failures put the session in `needs_human` with
//!   a handoff bundle; the SSE stream reports each change;
//! - autoconfigure creates the new tenant and every running service applies it without a
//!   restart: the edge accepts its Stripe webhooks, the matcher and the CAPI sink send its
//!   page views to its pixel with its token; rollback takes it back;
//! - no secret appears in any response, in the log, in ClickHouse or in the control topic;
//! - `funnelhub tenants rotate-key` keeps every tenant readable with only the new key.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::response::{Html, IntoResponse, Redirect};
use axum::routing::get;
use funnelhub_clickhouse::query::json_rows;
use funnelhub_emulators::{GatewayAccounts, GatewayEmulator, HotmartCredential, KiwifyCredential};
use futures::StreamExt;
use serde_json::{json, Value};
use support::pipeline::{funnelhub, setup_with, stop, up, Setup, WAIT};

const ADMIN: &str = "setup-admin-key-0001";
const PIXEL: &str = "333000333";
const TOKEN: &str = "EAAB-new-shop-token-9f8e7d6c";
const HOTMART_SECRET: &str = "hm-secret-5a4b3c2d1e";
const HOTMART_BASIC: &str = "aG0tY2xpZW50OmhtLXNlY3JldA-basic";
const KIWIFY_SECRET: &str = "kw-secret-0a9b8c7d6e";
const STRIPE_KEY: &str = "sk_test_51ShopSecretKey0000abcd";
const WHSEC: &str = "whsec_shop_signing_secret_77aa";
const BAD_TOKEN: &str = "EAAB-revoked-token-1234abcd";
const CLI_KEY: &str = "cli-shop-read-key-5566";
const SECRETS: [&str; 8] = [
    CLI_KEY,
    TOKEN,
    HOTMART_SECRET,
    HOTMART_BASIC,
    KIWIFY_SECRET,
    STRIPE_KEY,
    WHSEC,
    BAD_TOKEN,
];

/// Every response body the test saw, to grep for secrets at the end.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<String>>>);

struct Client {
    http: reqwest::Client,
    edge: String,
    seen: Seen,
}

impl Client {
    async fn call(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.edge);
        let mut request = match method {
            "GET" => self.http.get(url),
            _ => self.http.post(url),
        };
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("edge answers");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        self.seen.0.lock().expect("seen").push(text.clone());
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, Some(ADMIN), Some(body)).await
    }

    async fn act(&self, session: &str, tool: &str, input: Value) -> Value {
        let (status, body) = self
            .post(
                &format!("/api/v1/setup/sessions/{session}/actions/{tool}"),
                input,
            )
            .await;
        assert_eq!(status, 200, "{tool}: {body}");
        body
    }
}

/// A landing page server: `/ok` carries the snippet, `/bare` does not, `/away` redirects to
/// another host, `/hop` redirects on the same host, `/slow` answers after 3 s.
async fn landing() -> (String, funnelhub_runtime::RunningServer) {
    let port = support::pipeline::free_port();
    let page = "<html><body>Curso<script>navigator.sendBeacon('https://edge.example/api/v1/track/pageview?tenant=shop', JSON.stringify({}))</script></body></html>";
    let router = axum::Router::new()
        .route("/ok", get(move || async move { Html(page) }))
        .route(
            "/bare",
            get(|| async { Html("<html><body>no tracking here</body></html>") }),
        )
        .route("/hop", get(|| async { Redirect::temporary("/ok") }))
        .route(
            "/away",
            get(move || async move {
                Redirect::temporary(&format!("http://localhost:{port}/ok")).into_response()
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                Html("late")
            }),
        );
    let server = funnelhub_runtime::serve(([127, 0, 0, 1], port).into(), router)
        .await
        .expect("landing server");
    (format!("http://127.0.0.1:{port}"), server)
}

/// The status events of `session`'s SSE stream, collected in the background.
fn follow_events(client: &Client, session: &str) -> Arc<Mutex<Vec<Value>>> {
    let events = Arc::new(Mutex::new(Vec::new()));
    let collected = events.clone();
    let request = client
        .http
        .get(format!(
            "{}/api/v1/setup/sessions/{session}/events",
            client.edge
        ))
        .bearer_auth(ADMIN);
    tokio::spawn(async move {
        let response = request.send().await.expect("stream opens");
        assert_eq!(
            response.headers()["content-type"].to_str().expect("type"),
            "text/event-stream"
        );
        let mut stream = response.bytes_stream();
        let mut buffer = String::new();
        while let Some(Ok(chunk)) = stream.next().await {
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let event: String = buffer.drain(..end + 2).collect();
                if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) {
                    collected
                        .lock()
                        .expect("events")
                        .push(serde_json::from_str(data).expect("status json"));
                }
            }
        }
    });
    events
}

async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done().await {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// `funnelhub tenants ARGS` with `stdin` on standard input; its standard output.
fn tenants_cli(setup: &Setup, args: &[&str], stdin: &str) -> String {
    use std::io::Write;
    let mut child = funnelhub(setup)
        .arg("tenants")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("funnelhub tenants runs");
    writeln!(child.stdin.take().expect("stdin"), "{stdin}").expect("stdin written");
    let output = child.wait_with_output().expect("finishes");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{args:?}: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    text
}

fn stripe_webhook(setup: &Setup, secret: &str) -> reqwest::RequestBuilder {
    let body = json!({
        "id": "evt_shop_1", "object": "event", "type": "checkout.session.completed",
        "created": funnelhub_schemas::ids::now_ms() / 1000, "livemode": false,
        "data": {"object": {"id": "cs_shop_1", "object": "checkout.session",
            "amount_total": 9700, "currency": "brl", "payment_status": "paid",
            "customer_details": {"email": "buyer@example.com"}, "payment_intent": "pi_shop_1"}}
    })
    .to_string();
    let t = funnelhub_schemas::ids::now_ms() / 1000;
    let signature = funnelhub_ingest::webhooks::stripe::sign(secret, t, body.as_bytes());
    reqwest::Client::new()
        .post(format!("{}/api/v1/webhooks/stripe?tenant=shop", setup.edge))
        .header("content-type", "application/json")
        .header("stripe-signature", signature)
        .body(body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn setup_sessions_validate_autoconfigure_and_roll_back_a_live_tenant() {
    let meta = support::pipeline::meta_emulator_with(PIXEL, TOKEN).await;
    let gateways = GatewayEmulator::start(
        ([127, 0, 0, 1], 0).into(),
        GatewayAccounts {
            hotmart: vec![HotmartCredential {
                client_id: "hm-client".into(),
                client_secret: HOTMART_SECRET.into(),
                basic: HOTMART_BASIC.into(),
            }],
            kiwify: vec![KiwifyCredential {
                client_id: "kw-client".into(),
                client_secret: KIWIFY_SECRET.into(),
                account_id: "acc-shop".into(),
            }],
            stripe: vec![(STRIPE_KEY.into(), "acct_shop".into())],
        },
    )
    .await
    .expect("gateway emulator");
    let (site, _landing) = landing().await;
    let extra = format!(
        r#"
[edge.setup]
admin_keys = ["{ADMIN}"]
max_failed_attempts = 3
tool_timeout_ms = 800
meta_graph_url = "{meta}"
hotmart_auth_url = "{gw}"
kiwify_api_url = "{gw}"
stripe_api_url = "{gw}"
probe_private_hosts = ["{landing}"]
"#,
        meta = meta.url(),
        gw = gateways.url(),
        landing = site.trim_start_matches("http://"),
    );
    let setup = setup_with(&meta.url(), &extra);
    let pipeline = up(&setup);
    let client = Client {
        http: reqwest::Client::new(),
        edge: setup.edge.clone(),
        seen: Seen::default(),
    };

    // Refusals: no key, another tenant's key, no tenant_id.
    let sessions = "/api/v1/setup/sessions";
    let (status, _) = client
        .call("POST", sessions, None, Some(json!({"tenant_id": "shop"})))
        .await;
    assert_eq!(status, 401);
    let (status, _) = client
        .call(
            "POST",
            sessions,
            Some("acme-api-key"),
            Some(json!({"tenant_id": "loja"})),
        )
        .await;
    assert_eq!(status, 401, "a tenant's key reaches only its own sessions");
    let (status, body) = client
        .call(
            "POST",
            sessions,
            Some("acme-read-key"),
            Some(json!({"tenant_id": "acme"})),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("forbidden")),
        "a read key cannot run setup, which can replace the pixel and secrets: {body}"
    );
    let (status, body) = client.post(sessions, json!({})).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("tenant_id")),
        "{body}"
    );
    let (status, own) = client
        .call(
            "POST",
            sessions,
            Some("acme-api-key"),
            Some(json!({"tenant_id": "acme"})),
        )
        .await;
    assert_eq!(status, 201, "a tenant may set itself up: {own}");

    // A session for a tenant that does not exist yet.
    let (status, created) = client.post(sessions, json!({"tenant_id": "shop"})).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["state"], "created");
    let id = created["session_id"]
        .as_str()
        .expect("session id")
        .to_owned();
    let events = follow_events(&client, &id);
    wait_for("the event stream's first status", async || {
        !events.lock().expect("events").is_empty()
    })
    .await;
    let base = format!("{sessions}/{id}");
    let (status, _) = client
        .post(&format!("{base}/actions/hack_the_planet"), json!({}))
        .await;
    assert_eq!(status, 404);
    let (status, body) = client
        .post(&format!("{base}/actions/validate_gateway_credentials"),
              json!({"gateway": "hotmart", "client_id": "hm-client", "client_secret": HOTMART_SECRET}))
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("basic")),
        "{body}"
    );
    let (status, body) = client
        .post(&format!("{base}/autoconfigure"), json!({}))
        .await;
    assert_eq!(status, 409, "nothing validated yet: {body}");

    // Failures: the gateway rejects the credentials, Meta rejects the token twice.
    let failed = client
        .act(&id, "validate_gateway_credentials",
             json!({"gateway": "hotmart", "client_id": "hm-client", "client_secret": "wrong-secret", "basic": HOTMART_BASIC}))
        .await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(
        failed["reason"]
            .as_str()
            .expect("reason")
            .contains("Hotmart refused"),
        "{failed}"
    );
    assert_eq!(failed["output"]["http_status"], 401);
    assert_eq!(failed["session"]["state"], "failed");
    let no_permission = client
        .act(
            &id,
            "validate_meta_token",
            json!({"pixel_id": PIXEL, "access_token": "token-acme"}),
        )
        .await;
    assert_eq!(no_permission["status"], "failed");
    assert!(
        no_permission["reason"]
            .as_str()
            .expect("reason")
            .contains("no permission"),
        "{no_permission}"
    );
    assert!(no_permission["latency_ms"].as_i64().is_some());
    let invalid = client
        .act(
            &id,
            "validate_meta_token",
            json!({"pixel_id": PIXEL, "access_token": BAD_TOKEN}),
        )
        .await;
    assert!(
        invalid["reason"]
            .as_str()
            .expect("reason")
            .contains("invalid or expired"),
        "{invalid}"
    );
    assert_eq!(
        invalid["session"]["state"], "needs_human",
        "three failures: {invalid}"
    );
    let handoff = &invalid["session"]["handoff"];
    assert_eq!(handoff["failed_attempts"], 3, "{handoff}");
    assert!(handoff["steps"]["gateway"]["reason"]
        .as_str()
        .expect("reason")
        .contains("Hotmart"));
    assert!(handoff["action_log"].as_str().expect("query").contains(&id));

    // A private address not listed in `probe_private_hosts` (the edge's own port, as
    // ClickHouse's or a cloud metadata service's would be): refused before any request.
    let edge_host = setup.edge.trim_start_matches("http://").to_owned();
    for address in [
        format!("http://{edge_host}/healthz"),
        "http://[::ffff:127.0.0.1]:8123/?query=SELECT%201".to_owned(),
    ] {
        let probe = client
            .act(&id, "probe_landing_url", json!({"url": address}))
            .await;
        assert_eq!(probe["status"], "failed", "{address}: {probe}");
        assert!(
            probe["reason"]
                .as_str()
                .expect("reason")
                .contains("not a public address"),
            "{address}: {probe}"
        );
    }

    // The landing URL: another host, a timeout, no snippet, then a same-host redirect to
    // the page with the snippet.
    for (path, reason) in [
        ("/away", "redirects to another host: localhost"),
        ("/slow", "no answer within 800 ms"),
        ("/bare", "snippet is not on the page"),
    ] {
        let probe = client
            .act(
                &id,
                "probe_landing_url",
                json!({"url": format!("{site}{path}")}),
            )
            .await;
        assert_eq!(probe["status"], "failed", "{path}: {probe}");
        assert!(
            probe["reason"].as_str().expect("reason").contains(reason),
            "{path}: {probe}"
        );
        assert!(probe["recommendation"]
            .as_str()
            .is_some_and(|r| !r.is_empty()));
    }
    let probe = client
        .act(
            &id,
            "probe_landing_url",
            json!({"url": format!("{site}/hop")}),
        )
        .await;
    assert_eq!(probe["status"], "success", "{probe}");
    assert_eq!(probe["output"]["snippet_found"], true);
    assert_eq!(
        probe["output"]["redirects"].as_array().map(Vec::len),
        Some(1)
    );

    // Kiwify: the key is fine but the account is another one.
    let kiwify = client
        .act(&id, "validate_gateway_credentials",
             json!({"gateway": "kiwify", "client_id": "kw-client", "client_secret": KIWIFY_SECRET, "account_id": "acc-other"}))
        .await;
    assert_eq!(kiwify["status"], "failed");
    assert_eq!(kiwify["output"]["http_status"], 403, "{kiwify}");

    // Everything right: `validate` runs the three tools (the URL from the last success).
    let (status, validated) = client
        .post(
            &format!("{base}/validate"),
            json!({
                "gateway": {"gateway": "stripe", "secret_key": STRIPE_KEY, "webhook_secret": WHSEC},
                "meta": {"pixel_id": PIXEL, "access_token": TOKEN},
            }),
        )
        .await;
    assert_eq!(status, 200, "{validated}");
    assert_eq!(validated["state"], "validated", "{validated}");
    assert_eq!(validated["results"].as_array().map(Vec::len), Some(3));
    assert!(validated["session"]["can_autoconfigure"]
        .as_bool()
        .expect("flag"));

    // Before autoconfigure the tenant does not exist anywhere: its webhooks fail as a
    // wrong signature would (an answer never tells which tenants exist).
    let response = stripe_webhook(&setup, WHSEC).send().await.expect("edge");
    assert_eq!(response.status().as_u16(), 401);

    let (status, configured) = client
        .post(&format!("{base}/autoconfigure"), json!({}))
        .await;
    assert_eq!(status, 200, "{configured}");
    assert_eq!(configured["session"]["state"], "configured");
    let applied = configured["applied"].to_string();
    for setting in [
        "meta_access_token",
        "stripe_signing_secrets",
        "allowed_origins",
    ] {
        assert!(applied.contains(setting), "{applied}");
    }

    // Live without a restart: the edge takes the tenant's webhooks; the matcher and the
    // CAPI sink send its page view to its pixel with its token.
    wait_for("the edge to know tenant shop", async || {
        stripe_webhook(&setup, WHSEC)
            .send()
            .await
            .expect("edge")
            .status()
            == 200
    })
    .await;
    let hit = json!({"session_id": "shop-visit-1", "event_id": "shop-pv-1",
                     "page_url": format!("{site}/ok"), "consent_ads": true});
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/track/pageview?tenant=shop", setup.edge))
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0",
        )
        .json(&hit)
        .send()
        .await
        .expect("edge");
    assert_eq!(response.status().as_u16(), 200);
    wait_for(
        "Meta to receive shop's page view on its pixel",
        async || {
            meta.snapshot()
                .of_pixel(PIXEL)
                .any(|e| e.event_id.as_deref() == Some("shop-pv-1"))
        },
    )
    .await;

    // Rollback: the tenant as it was (it did not exist: nothing configured).
    let (status, rolled) = client.post(&format!("{base}/rollback"), json!({})).await;
    assert_eq!(status, 200, "{rolled}");
    assert_eq!(rolled["session"]["state"], "rolled_back");
    wait_for("the edge to drop shop's Stripe secret", async || {
        stripe_webhook(&setup, WHSEC)
            .send()
            .await
            .expect("edge")
            .status()
            == 401
    })
    .await;
    let (status, _) = client.post(&format!("{base}/rollback"), json!({})).await;
    assert_eq!(status, 409, "rolled back once");

    // The status endpoint and the event stream.
    let (status, current) = client
        .call("GET", &format!("{base}/status"), Some(ADMIN), None)
        .await;
    assert_eq!(
        (status, current["state"].as_str()),
        (200, Some("rolled_back"))
    );
    let (status, _) = client
        .call("GET", &format!("{base}/status"), Some("acme-api-key"), None)
        .await;
    assert_eq!(status, 401, "acme cannot read shop's session");
    let streamed: Vec<String> = events
        .lock()
        .expect("events")
        .iter()
        .map(|e| e["state"].as_str().unwrap_or_default().to_owned())
        .collect();
    for state in [
        "created",
        "failed",
        "needs_human",
        "validated",
        "configured",
        "rolled_back",
    ] {
        assert!(
            streamed.iter().any(|s| s == state),
            "{state} not streamed: {streamed:?}"
        );
    }

    // Every action in ClickHouse, masked.
    let clickhouse = &setup.clickhouse;
    let mut rows = Vec::new();
    wait_for("the action log in ClickHouse", async || {
        rows = json_rows(clickhouse, &format!(
            "SELECT tool, status, reason, input, output, latency_ms FROM {}.setup_action_logs FINAL WHERE session_id = '{id}'",
            clickhouse.database
        ))
        .await
        .unwrap_or_default();
        rows.len() == 15
    })
    .await;
    let failed_rows = rows.iter().filter(|r| r["status"] == "failed").count();
    assert_eq!(failed_rows, 9, "{rows:?}");
    assert!(
        rows.iter().any(|r| r["tool"] == "autoconfigure")
            && rows.iter().any(|r| r["tool"] == "rollback")
    );
    let all_rows = json_rows(
        clickhouse,
        &format!("SELECT * FROM {}.setup_action_logs", clickhouse.database),
    )
    .await
    .expect("rows");
    let stored = serde_json::to_string(&all_rows).expect("json");
    assert!(stored.contains("****"), "inputs are masked, not dropped");

    // The control topic holds the tenant sealed.
    let topic = funnelhub_schemas::Catalog::new(&setup.kafka.topic_prefix)
        .name(funnelhub_schemas::Topic::Tenants);
    let records = funnelhub_kafka::testing::read_records(&setup.kafka, &topic, 2, WAIT).await;
    let control: Vec<u8> = records.iter().flat_map(|(_, v)| v.clone()).collect();
    let control = String::from_utf8_lossy(&control).into_owned();

    // Operators: `funnelhub tenants add` (the key from stdin) reaches the running edge's
    // read API at once; `set` revokes it just as fast; adding an existing tenant is refused.
    let read_with = |key: &str| {
        let url = format!("{}/api/v1/events?limit=1", setup.edge);
        let key = key.to_owned();
        async move {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(key)
                .send()
                .await
                .expect("edge")
                .status()
                .as_u16()
        }
    };
    assert_eq!(read_with(CLI_KEY).await, 401);
    let add = tenants_cli(
        &setup,
        &["add", "cli-shop", "api_keys=-", "meta_pixel_id=444"],
        CLI_KEY,
    );
    assert!(add.contains("added tenant cli-shop (revision 1)"), "{add}");
    wait_for("the edge to accept the new API key", async || {
        read_with(CLI_KEY).await == 200
    })
    .await;
    let set = tenants_cli(&setup, &["set", "cli-shop", "api_keys="], "");
    assert!(set.contains("revision 2"), "{set}");
    wait_for("the edge to refuse the cleared key", async || {
        read_with(CLI_KEY).await == 401
    })
    .await;
    // A generated key of scope setup runs setup for its tenant; shown once, stored masked.
    let generated = tenants_cli(&setup, &["new-api-key", "cli-shop", "--scope", "setup"], "");
    let setup_key = generated.lines().next().expect("the key").trim().to_owned();
    assert!(
        setup_key.starts_with("fh_setup_") && setup_key.len() == 49,
        "{generated}"
    );
    assert!(generated.contains("revision 3"), "{generated}");
    wait_for("the edge to accept the generated setup key", async || {
        client
            .call(
                "POST",
                "/api/v1/setup/sessions",
                Some(&setup_key),
                Some(json!({"tenant_id": "cli-shop"})),
            )
            .await
            .0
            == 201
    })
    .await;
    assert_eq!(read_with(&setup_key).await, 200, "setup includes read");
    let listed = tenants_cli(&setup, &["list"], "");
    assert!(!listed.contains(&setup_key), "{listed}");
    let again = funnelhub(&setup)
        .args(["tenants", "add", "cli-shop"])
        .output()
        .expect("runs");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("tenant cli-shop exists"));

    // Key rotation: with the new key first, rotate; then the new key alone reads every tenant.
    let k2 = funnelhub_tenants::Keyring::generate("k2");
    let rotate = funnelhub(&setup)
        .env(
            funnelhub_tenants::sealing::KEYS_ENV,
            format!("{k2},{}", setup.keys),
        )
        .args(["tenants", "rotate-key"])
        .output()
        .expect("rotate-key runs");
    let text = String::from_utf8_lossy(&rotate.stdout);
    assert!(
        rotate.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&rotate.stderr)
    );
    assert!(text.contains("tenant shop: key k1 -> k2"), "{text}");
    let list = funnelhub(&setup)
        .env(funnelhub_tenants::sealing::KEYS_ENV, &k2)
        .args(["tenants", "list"])
        .output()
        .expect("list runs");
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(list.status.success(), "{text}");
    assert!(
        text.contains("shop  [control topic revision 3 by \"rotate-key k1 -> k2\" (key k2)]"),
        "{text}"
    );
    assert!(text.contains("acme  [configuration file]"), "{text}");
    assert!(
        text.contains("cli-shop  [control topic revision 4"),
        "{text}"
    );
    for secret in SECRETS {
        assert!(!text.contains(secret), "{secret} listed");
    }

    // A tenant holds at most 20 open sessions (the one above is rolled back: not open).
    let mut created = 0;
    let refused = loop {
        let (status, body) = client
            .post(sessions, json!({"tenant_id": "cli-bounded"}))
            .await;
        match status {
            201 => created += 1,
            other => break (other, body),
        }
        assert!(created <= 20, "more than 20 open sessions");
    };
    assert_eq!(created, 20);
    assert_eq!(refused.0, 409, "{}", refused.1);

    stop(pipeline);

    // No secret anywhere.
    let log = std::fs::read_to_string(setup.log()).expect("log");
    assert!(
        log.contains("setup autoconfigure changed the tenant"),
        "the log is the edge's"
    );
    let responses = client.seen.0.lock().expect("seen").join("\n");
    for secret in SECRETS {
        for (what, text) in [
            ("a response", &responses),
            ("the log", &log),
            ("ClickHouse", &stored),
            ("the control topic", &control),
        ] {
            assert!(!text.contains(secret), "{secret} in {what}");
        }
    }
}

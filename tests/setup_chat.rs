//! The setup assistant's chat through `funnelhub up` on the real broker and ClickHouse,
//! with the Meta Graph API emulator behind the token tool:
//!
//! - a bad Meta token is diagnosed (the tool ran, its failure explained in the user's
//!   language with the recommendation), and a second message that depends on the first
//!   (the pixel given before, a new token now) re-validates it;
//! - the conversation survives a restart of the edge, masked: no token in any message;
//! - repeated failures hand the session to a person: `needs_human`, the transcript in the
//!   bundle, one ops ticket however often it is asked for;
//! - messages land in `setup_messages`; limits and another tenant's key are refused;
//! - with a model configured (the OpenAI-compatible emulator), the model's tool call runs
//!   the tool, no secret reaches the model, an unknown tool runs nothing, and a model that
//!   fails or times out is replaced by the built-in diagnoser for the turn.

mod support;

use std::time::{Duration, Instant};

use funnelhub_clickhouse::query::json_rows;
use funnelhub_emulators::{ChatCompletionsEmulator, Faults, MetaGraphEmulator, Scripted};
use serde_json::{json, Value};
use support::multipart;
use support::pipeline::{setup_with, stop, up, WAIT};

const ADMIN: &str = "setup-admin-key-chat-01";
const PIXEL: &str = "123456789012345";
const TOKEN: &str = "EAABgoodChatToken0123456789";
const BAD_TOKEN: &str = "EAABrevokedChatToken987654";

struct Client {
    http: reqwest::Client,
    edge: String,
}

impl Client {
    async fn call(&self, method: &str, path: &str, key: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.edge);
        let mut request = match method {
            "GET" => self.http.get(url),
            _ => self.http.post(url),
        }
        .bearer_auth(key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("edge answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn session(&self, tenant: &str) -> String {
        let (status, body) = self
            .call(
                "POST",
                "/api/v1/setup/sessions",
                ADMIN,
                Some(json!({"tenant_id": tenant})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["session_id"].as_str().expect("id").to_owned()
    }

    async fn chat(&self, session: &str, message: &str) -> Value {
        let (status, body) = self
            .call(
                "POST",
                &format!("/api/v1/setup/sessions/{session}/chat"),
                ADMIN,
                Some(json!({"message": message})),
            )
            .await;
        assert_eq!(status, 200, "{message}: {body}");
        body
    }
}

async fn eventually(clickhouse: &funnelhub_clickhouse::ClickHouseConfig, sql: &str, want: Value) {
    let sql = sql.replace("{db}", &clickhouse.database);
    let deadline = Instant::now() + WAIT;
    loop {
        let got = Value::Array(json_rows(clickhouse, &sql).await.expect(&sql));
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "{sql}\n got {got}\nwant {want}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_assistant_diagnoses_remembers_survives_a_restart_and_hands_off_once() {
    let meta = support::pipeline::meta_emulator_with(PIXEL, TOKEN).await;
    let extra = format!(
        "\n[edge.setup]\nadmin_keys = [\"{ADMIN}\"]\nmax_failed_attempts = 3\ntool_timeout_ms = 800\nmeta_graph_url = \"{}\"\n",
        meta.url()
    );
    let setup = setup_with(&meta.url(), &extra);
    let mut pipeline = up(&setup);
    let client = Client {
        http: reqwest::Client::new(),
        edge: setup.edge.clone(),
    };

    // A bad token, diagnosed in Portuguese with the tool's recommendation.
    let session = client.session("acme").await;
    let first = client
        .chat(
            &session,
            &format!("Meu token da Meta não funciona: {BAD_TOKEN} (pixel {PIXEL})"),
        )
        .await;
    assert_eq!(
        first["actions"][0]["tool"], "validate_meta_token",
        "{first}"
    );
    assert_eq!(first["actions"][0]["status"], "failed", "{first}");
    let reply = first["reply"].as_str().expect("reply");
    assert!(
        reply.contains("falhou") && reply.contains("gere um novo token"),
        "{reply}"
    );
    assert_eq!(first["message"]["language"], "pt-BR");
    assert_eq!(first["state"], "failed");

    // The next message relies on the first: the pixel given before, a new token now.
    let second = client
        .chat(&session, &format!("gerei outro, tente de novo: {TOKEN}"))
        .await;
    assert_eq!(second["actions"][0]["status"], "success", "{second}");
    assert_eq!(second["session"]["steps"]["meta"]["status"], "success");

    // English in, English out; the status without running a tool.
    let third = client.chat(&session, "what is the status?").await;
    assert_eq!(third["message"]["language"], "en", "{third}");
    assert!(
        third["reply"]
            .as_str()
            .expect("reply")
            .contains("Still to validate"),
        "{third}"
    );

    // Limits and tenancy.
    let (status, body) = client
        .call(
            "POST",
            &format!("/api/v1/setup/sessions/{session}/chat"),
            ADMIN,
            Some(json!({"message": "x".repeat(2_001)})),
        )
        .await;
    assert_eq!((status, body["field"].as_str()), (400, Some("message")));
    let (status, _) = client
        .call(
            "GET",
            &format!("/api/v1/setup/sessions/{session}/messages"),
            "acme-read-key",
            None,
        )
        .await;
    assert_eq!(status, 403, "a read key does not reach setup");
    let other = client.session("loja").await;
    let (status, _) = client
        .call(
            "GET",
            &format!("/api/v1/setup/sessions/{other}/messages"),
            "acme-api-key",
            None,
        )
        .await;
    assert_eq!(status, 401, "another tenant's key sees no session");

    // A restart of the edge keeps the conversation, masked.
    stop(pipeline);
    pipeline = up(&setup);
    let (status, page) = client
        .call(
            "GET",
            &format!("/api/v1/setup/sessions/{session}/messages?limit=4"),
            ADMIN,
            None,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    let messages = page["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 4, "{page}");
    assert_eq!(messages[0]["role"], "user");
    assert_eq!(messages[1]["role"], "assistant");
    let cursor = page["next_cursor"].as_u64().expect("more");
    let (_, rest) = client
        .call(
            "GET",
            &format!("/api/v1/setup/sessions/{session}/messages?cursor={cursor}"),
            ADMIN,
            None,
        )
        .await;
    assert_eq!(rest["messages"].as_array().map(Vec::len), Some(2), "{rest}");
    assert_eq!(rest["next_cursor"], Value::Null);
    let text = format!("{page}{rest}");
    assert!(
        !text.contains(TOKEN) && !text.contains(BAD_TOKEN) && text.contains("[secret]"),
        "{text}"
    );

    // Repeated failures hand the session to a person, with one ticket.
    let stuck = client.session("acme").await;
    let mut last = Value::Null;
    for _ in 0..3 {
        last = client
            .chat(
                &stuck,
                &format!("validate my Meta token {BAD_TOKEN} pixel {PIXEL}"),
            )
            .await;
    }
    assert_eq!(last["state"], "needs_human", "{last}");
    let handoff = &last["session"]["handoff"];
    assert_eq!(
        handoff["transcript"].as_array().map(Vec::len),
        Some(6),
        "the bundle carries the conversation: {handoff}"
    );
    assert!(
        last["reply"]
            .as_str()
            .expect("reply")
            .contains("called a person"),
        "{last}"
    );
    let asked = client.chat(&stuck, "I want to talk to a human").await;
    assert_eq!(asked["actions"][0]["tool"], "escalate_to_human", "{asked}");
    let ticket = asked["reply"].as_str().expect("reply").to_owned();
    assert!(ticket.contains("Ticket"), "{ticket}");
    eventually(
        &setup.clickhouse,
        &format!(
            "SELECT kind, count() AS n FROM {{db}}.ops_tickets FINAL WHERE session_id = '{stuck}' GROUP BY kind"
        ),
        json!([{"kind": "setup_needs_human", "n": "1"}]),
    )
    .await;
    // Every message in the analysts' table, masked.
    eventually(
        &setup.clickhouse,
        &format!(
            "SELECT role, count() AS n FROM {{db}}.setup_messages FINAL WHERE session_id = '{session}' GROUP BY role ORDER BY role"
        ),
        json!([{"role": "assistant", "n": "3"}, {"role": "user", "n": "3"}]),
    )
    .await;
    let rows = json_rows(
        &setup.clickhouse,
        &format!(
            "SELECT text FROM {}.setup_messages WHERE position(text, 'EAAB') > 0",
            setup.clickhouse.database
        ),
    )
    .await
    .expect("query");
    assert!(rows.is_empty(), "{rows:?}");

    stop(pipeline);
    meta.stop().await.expect("emulator stops");
    let _ = std::fs::remove_dir_all(&setup.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_model_engine_calls_tools_never_sees_a_secret_and_falls_back_when_down() {
    let meta = MetaGraphEmulator::start(
        ([127, 0, 0, 1], 0).into(),
        [(PIXEL.to_string(), TOKEN.to_string())].into(),
        Faults::default(),
    )
    .await
    .expect("meta emulator");
    let model =
        ChatCompletionsEmulator::start(([127, 0, 0, 1], 0).into(), Some("llm-test-key-42".into()))
            .await
            .expect("model emulator");
    // `funnelhub up` inherits it; each test runs in its own process.
    std::env::set_var("SETUP_CHAT_TEST_LLM_KEY", "llm-test-key-42");
    let extra = format!(
        "\n[edge.setup]\nadmin_keys = [\"{ADMIN}\"]\ntool_timeout_ms = 800\nmeta_graph_url = \"{}\"\n\
         [edge.setup.assistant]\nbase_url = \"{}\"\nmodel = \"test-model\"\n\
         api_key_env = \"SETUP_CHAT_TEST_LLM_KEY\"\ntimeout_ms = 1000\nretries = 1\nvision = true\n",
        meta.url(),
        model.url()
    );
    let setup = setup_with(&meta.url(), &extra);
    let pipeline = up(&setup);
    let client = Client {
        http: reqwest::Client::new(),
        edge: setup.edge.clone(),
    };
    let session = client.session("acme").await;

    // The model calls the token tool; the tool runs with the token lifted from the message.
    model.script([
        Scripted::ToolCall {
            name: "validate_meta_token".into(),
            arguments: json!({}),
        },
        Scripted::Answer("A Meta recusou o token: gere um novo no Gerenciador de Eventos.".into()),
    ]);
    let first = client
        .chat(
            &session,
            &format!("meu token {BAD_TOKEN} do pixel {PIXEL} não funciona"),
        )
        .await;
    assert_eq!(first["message"]["engine"], "llm", "{first}");
    assert_eq!(
        first["reply"],
        "A Meta recusou o token: gere um novo no Gerenciador de Eventos."
    );
    assert_eq!(first["actions"][0]["tool"], "validate_meta_token");
    assert_eq!(first["actions"][0]["status"], "failed");
    let sent = model.requests();
    assert_eq!(sent.len(), 2, "a tool call, then the answer");
    let offered: Vec<&str> = sent[0]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t.pointer("/function/name").and_then(Value::as_str))
        .collect();
    assert_eq!(
        offered,
        [
            "validate_meta_token",
            "validate_gateway_credentials",
            "probe_landing_url",
            "status",
            "autoconfigure",
            "escalate_to_human"
        ]
    );
    let tool_message = sent[1]["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .find(|m| m["role"] == "tool")
        .expect("the tool's result went back to the model");
    assert!(
        tool_message["content"]
            .as_str()
            .expect("content")
            .contains("code 190"),
        "{tool_message}"
    );

    // A tool the model invents runs nothing.
    model.script([
        Scripted::ToolCall {
            name: "delete_tenant".into(),
            arguments: json!({}),
        },
        Scripted::Answer("Não posso fazer isso.".into()),
    ]);
    let invented = client.chat(&session, "apague minha conta").await;
    assert_eq!(invented["actions"], json!([]), "{invented}");

    // The model down (500 twice) or too slow: the diagnoser answers, and says so.
    model.script([Scripted::Fault(500), Scripted::Fault(500)]);
    let down = client.chat(&session, "qual o status?").await;
    assert_eq!(down["message"]["engine"], "builtin", "{down}");
    assert!(
        down["reply"]
            .as_str()
            .expect("reply")
            .contains("indisponível"),
        "{down}"
    );
    model.script([
        Scripted::Delay(Duration::from_secs(3)),
        Scripted::Delay(Duration::from_secs(3)),
    ]);
    let slow = client.chat(&session, "what is the status?").await;
    assert_eq!(slow["message"]["engine"], "builtin", "{slow}");
    assert!(
        slow["reply"]
            .as_str()
            .expect("reply")
            .contains("unavailable"),
        "{slow}"
    );

    // A model that looks at images gets the message's screenshot with it.
    let mut png = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    png.extend_from_slice(b"events manager");
    let stored = support::upload_screenshot(&setup.edge, ADMIN, &session, "print.png", &png).await;
    model.script([Scripted::Answer("Vi o print.".into())]);
    let (status, seen) = client
        .call(
            "POST",
            &format!("/api/v1/setup/sessions/{session}/chat"),
            ADMIN,
            Some(json!({"message": "veja o print", "attachment_ids": [stored["attachment_id"]]})),
        )
        .await;
    assert_eq!(
        (status, seen["reply"].as_str()),
        (200, Some("Vi o print.")),
        "{seen}"
    );
    let last = model.requests().pop().expect("a request");
    let image = last["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_array())
        .and_then(|parts| parts.iter().find(|p| p["type"] == "image_url"))
        .expect("the screenshot went with the message");
    assert!(image["image_url"]["url"]
        .as_str()
        .expect("url")
        .starts_with("data:image/png;base64,"));

    // No secret in anything the model was sent.
    let everything = serde_json::to_string(&model.requests()).expect("json");
    assert!(
        !everything.contains(BAD_TOKEN) && !everything.contains(TOKEN),
        "a token reached the model"
    );

    stop(pipeline);
    model.stop().await.expect("model emulator stops");
    meta.stop().await.expect("emulator stops");
    let _ = std::fs::remove_dir_all(&setup.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn screenshots_are_images_bounded_kept_by_content_and_only_the_tenants() {
    let extra = format!("\n[edge.setup]\nadmin_keys = [\"{ADMIN}\"]\n");
    let setup = setup_with("http://127.0.0.1:9", &extra);
    let pipeline = up(&setup);
    let client = Client {
        http: reqwest::Client::new(),
        edge: setup.edge.clone(),
    };
    let session = client.session("acme").await;
    let upload = |key: &'static str, session: String, part: (String, Vec<u8>)| {
        let http = client.http.clone();
        let url = format!("{}/api/v1/setup/sessions/{session}/attachments", setup.edge);
        async move {
            let response = http
                .post(url)
                .bearer_auth(key)
                .header("content-type", part.0)
                .body(part.1)
                .send()
                .await
                .expect("edge answers");
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let mut png = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    png.extend_from_slice(b"a screenshot of the Events Manager");

    // An image, whatever its name says, is kept under its SHA-256 and served back.
    let (status, stored) = upload(
        ADMIN,
        session.clone(),
        multipart("../../etc/passwd", "text/plain", &png),
    )
    .await;
    assert_eq!(status, 201, "{stored}");
    assert_eq!(stored["content_type"], "image/png");
    let id = stored["attachment_id"].as_str().expect("id").to_owned();
    assert_eq!(id.len(), 64);
    let response = client
        .http
        .get(format!(
            "{}/api/v1/setup/sessions/{session}/attachments/{id}",
            setup.edge
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("edge answers");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().expect("type"),
        "image/png"
    );
    assert_eq!(response.bytes().await.expect("bytes").as_ref(), &png[..]);
    assert!(
        setup
            .dir
            .join(format!(
                ".stack/attachments/attachments/acme/{session}/{id}"
            ))
            .exists(),
        "kept in the local folder, by content"
    );

    // Not an image (whatever it claims), too large, or asked by path tricks: refused.
    let (status, _) = upload(
        ADMIN,
        session.clone(),
        multipart("shot.png", "image/png", b"<svg onload=alert(1)>"),
    )
    .await;
    assert_eq!(status, 415);
    let mut huge = png.clone();
    huge.resize(5 * 1024 * 1024 + 1, 0);
    let (status, _) = upload(
        ADMIN,
        session.clone(),
        multipart("big.png", "image/png", &huge),
    )
    .await;
    assert_eq!(status, 413);
    for tricky in ["..%2F..%2Fetc%2Fpasswd", "%2e%2e", &"A".repeat(64)] {
        let (status, _) = client
            .call(
                "GET",
                &format!("/api/v1/setup/sessions/{session}/attachments/{tricky}"),
                ADMIN,
                None,
            )
            .await;
        assert_eq!(status, 404, "{tricky}");
    }

    // Another tenant's key reaches neither the session nor its attachment.
    let (status, _) = client
        .call(
            "GET",
            &format!("/api/v1/setup/sessions/{session}/attachments/{id}"),
            "loja-no-such-key",
            None,
        )
        .await;
    assert_eq!(status, 401);

    // A message refers to it; an unknown id is refused; the hand-off lists it.
    let (status, body) = client
        .call(
            "POST",
            &format!("/api/v1/setup/sessions/{session}/chat"),
            ADMIN,
            Some(json!({"message": "veja o print", "attachment_ids": ["f".repeat(64)]})),
        )
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("attachment_ids"))
    );
    let (status, body) = client
        .call(
            "POST",
            &format!("/api/v1/setup/sessions/{session}/chat"),
            ADMIN,
            Some(json!({"message": "quero falar com uma pessoa, veja o print", "attachment_ids": [id]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let handoff = &body["session"]["handoff"];
    assert_eq!(handoff["attachments"][0]["attachment_id"], id, "{handoff}");
    assert_eq!(
        handoff["transcript"][0]["attachment_ids"][0], id,
        "{handoff}"
    );

    stop(pipeline);
    let _ = std::fs::remove_dir_all(&setup.dir);
}

//! The Graph API emulator answers as Meta documents: accepted events are deduplicated,
//! every rule violation names the event and field, and faults are injected on demand.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use funnelhub_emulators::{Faults, MetaGraphEmulator};
use serde_json::{json, Value};

const EM: &str = "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f";

async fn emulator() -> MetaGraphEmulator {
    let pixels = BTreeMap::from([
        ("111".to_string(), "token-111".to_string()),
        ("222".to_string(), "token-222".to_string()),
    ]);
    MetaGraphEmulator::start(([127, 0, 0, 1], 0).into(), pixels, Faults::default())
        .await
        .expect("starts")
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}

fn event(id: &str) -> Value {
    json!({
        "event_name": "Purchase",
        "event_time": now() - 60,
        "event_id": id,
        "action_source": "website",
        "event_source_url": "https://lp.example.com/oferta",
        "user_data": {"em": [EM], "client_user_agent": "Mozilla/5.0",
                      "client_ip_address": "203.0.113.7",
                      "fbc": "fb.1.1554763741205.AbCdEf", "fbp": "fb.1.1558571054389.1098115397"},
        "custom_data": {"value": 197.0, "currency": "BRL", "content_ids": ["curso"]}
    })
}

async fn post(emulator: &MetaGraphEmulator, pixel: &str, token: &str, data: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/v25.0/{pixel}/events", emulator.url()))
        .query(&[("access_token", token)])
        .json(&json!({ "data": data }))
        .send()
        .await
        .expect("answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json"))
}

fn user_msg(answer: &Value) -> &str {
    answer["error"]["error_user_msg"]
        .as_str()
        .unwrap_or_default()
}

#[tokio::test]
async fn accepted_events_are_deduplicated_by_event_name_and_id() {
    let emulator = emulator().await;
    let (status, answer) = post(
        &emulator,
        "111",
        "token-111",
        json!([event("o-1"), event("o-2")]),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["events_received"], 2);
    assert!(answer["fbtrace_id"].as_str().is_some_and(|t| !t.is_empty()));
    let (status, _) = post(&emulator, "111", "token-111", json!([event("o-1")])).await;
    assert_eq!(status, 200);
    let mut page_view = event("o-1");
    page_view["event_name"] = json!("PageView");
    let (status, _) = post(&emulator, "111", "token-111", json!([page_view])).await;
    assert_eq!(status, 200);

    let seen = emulator.snapshot();
    assert_eq!(seen.events_received, 4);
    let unique: Vec<_> = seen
        .of_pixel("111")
        .map(|e| {
            (
                e.event_name.as_str(),
                e.event_id.as_deref().unwrap_or(""),
                e.times_received,
            )
        })
        .collect();
    assert_eq!(
        unique,
        [
            ("Purchase", "o-1", 2),
            ("Purchase", "o-2", 1),
            ("PageView", "o-1", 1)
        ]
    );
}

#[tokio::test]
async fn tokens_and_pixels_are_checked() {
    let emulator = emulator().await;
    let (status, answer) = post(&emulator, "111", "wrong", json!([event("a")])).await;
    assert_eq!(
        (status, answer["error"]["code"].as_i64()),
        (400, Some(190)),
        "{answer}"
    );
    let (_, answer) = post(&emulator, "111", "token-222", json!([event("a")])).await;
    assert_eq!(answer["error"]["code"], 100);
    assert_eq!(
        answer["error"]["error_subcode"], 33,
        "another pixel's token: {answer}"
    );
    let (status, answer) = reqwest::Client::new()
        .get(format!(
            "{}/v25.0/111?fields=id,name&access_token=token-111",
            emulator.url()
        ))
        .send()
        .await
        .map(|r| (r.status().as_u16(), r))
        .expect("answers");
    let answer: Value = answer.json().await.expect("json");
    assert_eq!((status, answer["id"].as_str()), (200, Some("111")));
    assert_eq!(emulator.snapshot().events_received, 0);
}

#[tokio::test]
async fn each_documented_rule_rejects_the_whole_request_and_names_the_event() {
    let emulator = emulator().await;
    type Breaks = fn(&mut Value);
    let cases: [(Breaks, &str); 10] = [
        (
            |e| e["event_time"] = json!(now() - 8 * 24 * 3600),
            "['event_time'] is too far in the past",
        ),
        (
            |e| e["event_time"] = json!(now() * 1000),
            "['event_time'] is in the future",
        ),
        (
            |e| {
                e.as_object_mut().map(|o| o.remove("event_name"));
            },
            "['event_name'] is required",
        ),
        (
            |e| e["action_source"] = json!("web"),
            "['action_source'] is not a valid",
        ),
        (
            |e| e["user_data"]["em"] = json!("john@example.com"),
            "['user_data']['em'] is not a valid SHA-256",
        ),
        (
            |e| e["user_data"]["em"] = json!(EM.to_uppercase()),
            "['user_data']['em'] is not a valid SHA-256",
        ),
        (
            |e| {
                e["user_data"]
                    .as_object_mut()
                    .map(|o| o.remove("client_user_agent"));
            },
            "client_user_agent'] is required for website events",
        ),
        (
            |e| {
                e["custom_data"]
                    .as_object_mut()
                    .map(|o| o.remove("currency"));
            },
            "['custom_data']['currency'] is required for Purchase",
        ),
        (
            |e| e["user_data"]["fbc"] = json!("AbCdEf"),
            "['user_data']['fbc'] is not in the format",
        ),
        (
            |e| e["user_data"] = json!({"zz": "1"}),
            "['data'][1]['user_data'] must contain at least one",
        ),
    ];
    for (i, (breaks, expected)) in cases.iter().enumerate() {
        let mut bad = event(&format!("bad-{i}"));
        breaks(&mut bad);
        let (status, answer) =
            post(&emulator, "111", "token-111", json!([event("good"), bad])).await;
        assert_eq!(status, 400, "case {i}: {answer}");
        assert_eq!(answer["error"]["code"], 100);
        assert_eq!(answer["error"]["error_subcode"], 2_804_019);
        let msg = user_msg(&answer);
        assert!(msg.contains("$['data'][1]"), "case {i}: {msg}");
        assert!(msg.contains(expected), "case {i}: {msg}");
    }
    let too_many: Vec<Value> = (0..1001).map(|i| event(&i.to_string())).collect();
    let (status, answer) = post(&emulator, "111", "token-111", json!(too_many)).await;
    assert_eq!(status, 400);
    assert!(user_msg(&answer).contains("between 1 and 1000"), "{answer}");
    let seen = emulator.snapshot();
    assert_eq!(
        seen.events_received, 0,
        "no event of a rejected request is kept"
    );
    assert_eq!(seen.rejected_requests, 11);
}

#[tokio::test]
async fn the_form_encoded_body_of_metas_curl_example_is_accepted() {
    let emulator = emulator().await;
    let form = [
        ("data", json!([event("f-1")]).to_string()),
        ("access_token", "token-111".to_string()),
        ("test_event_code", "TEST123".to_string()),
    ];
    let response = reqwest::Client::new()
        .post(format!("{}/v25.0/111/events", emulator.url()))
        .form(&form)
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status().as_u16(), 200);
    let seen = emulator.snapshot();
    assert_eq!(seen.events[0].test_event_code.as_deref(), Some("TEST123"));
}

#[tokio::test]
async fn faults_are_injected_on_demand() {
    let emulator = emulator().await;
    emulator.set_faults(Faults {
        retryable_rate: 1.0,
        ..Faults::default()
    });
    let mut codes = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let (status, answer) = post(&emulator, "111", "token-111", json!([event("x")])).await;
        assert!(status >= 400, "{answer}");
        codes.insert(answer["error"]["code"].as_i64().expect("code"));
    }
    assert_eq!(
        codes.into_iter().collect::<Vec<_>>(),
        [1, 2, 4, 17, 613, 80004]
    );
    assert_eq!(emulator.snapshot().events_received, 0);

    emulator.set_faults(Faults {
        slow_rate: 1.0,
        slow_ms: 300,
        ..Faults::default()
    });
    let started = std::time::Instant::now();
    let (status, _) = post(&emulator, "111", "token-111", json!([event("slow")])).await;
    assert_eq!(status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));

    emulator.set_faults(Faults {
        reject_event_ids: vec!["poison".into()],
        ..Faults::default()
    });
    let (status, answer) = post(
        &emulator,
        "111",
        "token-111",
        json!([event("ok"), event("ok2"), event("poison")]),
    )
    .await;
    assert_eq!(status, 400);
    assert!(user_msg(&answer).contains("$['data'][2]"), "{answer}");

    emulator.set_faults(Faults {
        invalid_token: true,
        ..Faults::default()
    });
    let (_, answer) = post(&emulator, "111", "token-111", json!([event("t")])).await;
    assert_eq!(answer["error"]["code"], 190);

    // Over HTTP too, as `funnelhub capi-emulator` is driven.
    let response = reqwest::Client::new()
        .post(format!("{}/_emulator/faults", emulator.url()))
        .json(&json!({}))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status().as_u16(), 204);
    let (status, _) = post(&emulator, "111", "token-111", json!([event("after")])).await;
    assert_eq!(status, 200);
    let seen: Value = reqwest::get(format!("{}/_emulator/events", emulator.url()))
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    assert_eq!(
        seen["events"].as_array().map(Vec::len),
        Some(2),
        "slow and after: {seen}"
    );
}

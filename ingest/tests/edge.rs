//! The edge against the real broker and schema registry: one test per endpoint and per
//! rejection reason, signatures computed the way each gateway computes them, and what
//! lands on the topics checked record by record.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use funnelhub_ingest::producer::EdgeProducer;
use funnelhub_ingest::request::Tenants;
use funnelhub_ingest::webhooks::{kiwify, stripe};
use funnelhub_ingest::{app, ops_app, EdgeConfig, EdgeState, Secret, TenantConfig};
use funnelhub_kafka::testing::{kafka_config, read_records, read_until, unique, PrivateBroker};
use funnelhub_kafka::{KafkaConfig, SchemaRegistry, TopicCodec};
use funnelhub_runtime::RunningServer;
use funnelhub_schemas::codec::split_frame;
use funnelhub_schemas::common::EventType;
use funnelhub_schemas::events::{OnboardingEvent, OrderEvent, RawWebhook, TrackingHit};
use funnelhub_schemas::{AvroRecord, Catalog, Decoder, Topic};
use serde_json::{json, Value};
use tower::ServiceExt;

const WAIT: Duration = Duration::from_secs(30);
const STRIPE_SECRET: &str = "whsec_test_0123456789abcdef";
const KIWIFY_TOKEN: &str = "kiwify-token-0123";
const HOTTOK: &str = "hottok-0123456789";
const ONBOARD_SECRET: &str = "onboard-secret-0123";

fn tenant() -> TenantConfig {
    let mut t = TenantConfig::new("acme");
    t.allowed_origins = vec!["https://lp.acme.com".into()];
    t.phone_calling_code = Some("55".into());
    t.hotmart_hottok = Some(Secret::from(HOTTOK));
    t.kiwify_token = Some(Secret::from(KIWIFY_TOKEN));
    t.stripe_signing_secrets = vec![Secret::from(STRIPE_SECRET)];
    t.onboard_secret = Some(Secret::from(ONBOARD_SECRET));
    t
}

struct Edge {
    app: Router,
    /// The operators' port's routes.
    ops: Router,
    kafka: KafkaConfig,
    registry: SchemaRegistry,
    _server: RunningServer,
}

impl Edge {
    async fn start(name: &str) -> Edge {
        Edge::start_on(
            kafka_config(name),
            kafka_config(name),
            EdgeConfig::default(),
        )
        .await
    }

    /// `registry_kafka` stores schemas; `kafka` receives events (they differ in the
    /// broker-outage test).
    async fn start_on(kafka: KafkaConfig, registry_kafka: KafkaConfig, config: EdgeConfig) -> Edge {
        let (server, registry) =
            funnelhub_registry::start_private(&registry_kafka, &unique("_schemas"))
                .await
                .expect("registry");
        let producer = EdgeProducer::connect(
            &kafka,
            &registry,
            Duration::from_millis(config.produce_timeout_ms),
            config.retry_after_secs,
        )
        .await
        .expect("producer");
        let limits = funnelhub_ingest::limits::RateLimits::new(&config.rate_limits);
        let state = Arc::new(EdgeState {
            config: EdgeConfig {
                max_body_bytes: 8 * 1024,
                ..config
            },
            tenants: Tenants::new([tenant()]),
            producer,
            registry_url: server.url(),
            prometheus: Some(funnelhub_runtime::prometheus()),
            read: None,
            setup: funnelhub_setup::http::SetupHttp::disabled(),
            client_ip: Default::default(),
            limits,
        });
        Edge {
            app: app(state.clone()),
            ops: ops_app(state),
            kafka,
            registry,
            _server: server,
        }
    }

    /// What the operators' port's `/metrics` says now.
    async fn metrics(&self) -> String {
        let response = self
            .ops
            .clone()
            .oneshot(
                Request::get("/metrics")
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("metrics");
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        String::from_utf8(body.to_vec()).expect("utf-8")
    }

    async fn send(&self, request: Request<Body>) -> (StatusCode, Value, axum::http::HeaderMap) {
        let response = self.app.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, body, headers)
    }

    async fn post(
        &self,
        uri: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> (StatusCode, Value) {
        let mut request = Request::post(uri);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let (status, body, _) = self.send(request.body(body.into()).expect("request")).await;
        (status, body)
    }

    fn topic(&self, topic: Topic) -> String {
        Catalog::new(&self.kafka.topic_prefix).name(topic)
    }

    /// The first `n` records of `topic`, decoded, with their keys.
    async fn records<T: AvroRecord>(&self, topic: Topic, n: usize) -> Vec<(String, T)> {
        let name = self.topic(topic);
        let codec = TopicCodec::<T>::register(&self.registry, &name)
            .await
            .expect("codec");
        let mut out = Vec::new();
        for (key, value) in read_records(&self.kafka, &name, n, WAIT).await {
            let decoded = codec.decode(&value).await.expect("decodes");
            out.push((
                String::from_utf8(key.unwrap_or_default()).expect("utf-8 key"),
                decoded,
            ));
        }
        out
    }

    /// Raw bytes of the first `n` records of `topic`.
    async fn raw(&self, topic: Topic, n: usize) -> Vec<Vec<u8>> {
        read_records(&self.kafka, &self.topic(topic), n, WAIT)
            .await
            .into_iter()
            .map(|(_, v)| v)
            .collect()
    }
}

fn json_headers() -> [(&'static str, &'static str); 1] {
    [("content-type", "application/json")]
}

#[tokio::test]
async fn tracking_hits_land_hashed_on_one_partition_per_session() {
    let edge = Edge::start("edge-track").await;
    let click = json!({
        "session_id": "s1",
        "page_url": "https://www.acme.com.br/oferta?utm_source=facebook&utm_campaign=bf&fbclid=IwAR_Case",
        "email": "Ana@Example.com", "phone": "(11) 98765-4321", "first_name": "Ana"
    });
    let (status, body) = edge
        .post(
            "/api/v1/track/click?tenant=acme",
            &[
                ("content-type", "application/json"),
                ("user-agent", "Mozilla/5.0 test"),
            ],
            click.to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let click_id = body["event_id"].as_str().expect("event_id").to_owned();
    // navigator.sendBeacon sends text/plain.
    let (status, _) = edge
        .post(
            "/api/v1/track/pageview?tenant=acme",
            &[("content-type", "text/plain;charset=UTF-8")],
            r#"{"session_id":"s1","page_url":"https://www.acme.com.br/oferta"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = edge
        .post("/api/v1/track/initiate_checkout?tenant=acme", &json_headers(), r#"{"session_id":"s1","event_id":"pixel-42","value":197.9,"currency":"brl","consent_ads":false}"#)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["event_id"], "pixel-42");

    let records = edge.records::<TrackingHit>(Topic::RawTracking, 3).await;
    let mut types: Vec<EventType> = records.iter().map(|(_, h)| h.envelope.event_type).collect();
    types.sort();
    assert_eq!(
        types,
        vec![
            EventType::Click,
            EventType::Pageview,
            EventType::InitiateCheckout
        ]
    );
    assert!(
        records.iter().all(|(key, _)| key == "acme:s1"),
        "one key per session"
    );
    let (_, hit) = records
        .iter()
        .find(|(_, h)| h.envelope.event_type == EventType::Click)
        .expect("click");
    assert_eq!(hit.envelope.event_id, click_id);
    assert_eq!(
        hit.click_ids
            .fbc
            .as_deref()
            .map(|f| f.ends_with(".IwAR_Case") && f.starts_with("fb.2.")),
        Some(true)
    );
    assert_eq!(hit.utm.campaign.as_deref(), Some("bf"));
    assert_eq!(hit.user_agent.as_deref(), Some("Mozilla/5.0 test"));
    assert_eq!(
        hit.envelope.identity.phone_hash.as_deref(),
        Some(funnelhub_schemas::identity::sha256_hex("5511987654321").as_str())
    );
    let (_, checkout) = records
        .iter()
        .find(|(_, h)| h.envelope.event_type == EventType::InitiateCheckout)
        .expect("checkout");
    assert!(!checkout.envelope.consent.ads);
    assert_eq!(checkout.value, Some(197.9));
    // Raw personal data never reaches the topic.
    for bytes in edge.raw(Topic::RawTracking, 3).await {
        let text = String::from_utf8_lossy(&bytes).to_lowercase();
        assert!(
            !text.contains("ana@example.com")
                && !text.contains("98765")
                && !text.contains("\u{6}ana"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn cors_allows_only_the_tenant_origins() {
    let edge = Edge::start("edge-cors").await;
    let preflight = |origin: &str| {
        Request::options("/api/v1/track/click?tenant=acme")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .body(Body::empty())
            .expect("request")
    };
    let (_, _, headers) = edge.send(preflight("https://lp.acme.com")).await;
    assert_eq!(
        headers
            .get("access-control-allow-origin")
            .map(|v| v.to_str().expect("ascii")),
        Some("https://lp.acme.com")
    );
    let (_, _, headers) = edge.send(preflight("https://evil.example")).await;
    assert!(headers.get("access-control-allow-origin").is_none());
}

fn stripe_checkout(session: &str, amount: i64) -> String {
    json!({
        "id": format!("evt_{session}"), "object": "event", "type": "checkout.session.completed",
        "created": chrono_now_secs(), "livemode": false,
        "data": {"object": {
            "id": format!("cs_{session}"), "object": "checkout.session", "payment_intent": format!("pi_{session}"),
            "payment_status": "paid", "amount_total": amount, "currency": "brl",
            "client_reference_id": session,
            "customer_details": {"email": "buyer@example.com", "name": "Bia Lima"},
            "metadata": {"fbc": "fb.1.1790000000000.AbC", "utm_campaign": "bf"}
        }}
    })
    .to_string()
}

fn chrono_now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

#[tokio::test]
async fn stripe_signed_like_stripe_is_accepted_retries_share_an_id_tampering_is_refused() {
    let edge = Edge::start("edge-stripe").await;
    let body = stripe_checkout("s9", 19_700);
    let signature = stripe::sign(STRIPE_SECRET, chrono_now_secs(), body.as_bytes());
    let headers = [
        ("content-type", "application/json"),
        ("stripe-signature", signature.as_str()),
    ];
    let (status, first) = edge
        .post(
            "/api/v1/webhooks/stripe?tenant=acme",
            &headers,
            body.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    // Stripe retries the same delivery: same event id.
    let (status, retry) = edge
        .post(
            "/api/v1/webhooks/stripe?tenant=acme",
            &headers,
            body.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(first["event_id"], retry["event_id"]);
    // A tampered amount under the original signature is refused.
    let tampered = body.replace("19700", "1");
    let (status, refused) = edge
        .post("/api/v1/webhooks/stripe?tenant=acme", &headers, tampered)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused["error"], "unauthorized");
    assert!(!refused.to_string().contains(STRIPE_SECRET));
    // A signature older than the tolerance is refused.
    let old = stripe::sign(STRIPE_SECRET, chrono_now_secs() - 301, body.as_bytes());
    let (status, _) = edge
        .post(
            "/api/v1/webhooks/stripe?tenant=acme",
            &[("stripe-signature", old.as_str())],
            body.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A valid sentinel after the refusals: the refused requests produced nothing.
    let sentinel = stripe_checkout("sentinel", 1);
    let sig = stripe::sign(STRIPE_SECRET, chrono_now_secs(), sentinel.as_bytes());
    let (status, _) = edge
        .post(
            "/api/v1/webhooks/stripe?tenant=acme",
            &[("stripe-signature", sig.as_str())],
            sentinel,
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // Exactly the two deliveries of s9 and the sentinel: nothing from the refused ones.
    let records = edge.records::<OrderEvent>(Topic::RawOrders, 3).await;
    let s9: Vec<_> = records
        .iter()
        .filter(|(_, o)| o.order_id == "pi_s9")
        .collect();
    assert_eq!(s9.len(), 2);
    assert!(records.iter().any(|(_, o)| o.order_id == "pi_sentinel"));
    assert!(s9
        .iter()
        .all(|(_, o)| o.envelope.event_id == first["event_id"].as_str().expect("id")));
    let (key, order) = s9[0];
    assert_eq!(key, "acme:stripe:pi_s9");
    assert_eq!(
        (order.amount_minor, order.currency.as_deref()),
        (Some(19_700), Some("BRL"))
    );
    assert_eq!(order.session_id.as_deref(), Some("s9"));
}

#[tokio::test]
async fn hotmart_and_kiwify_check_their_secrets() {
    let edge = Edge::start("edge-gateways").await;
    let hotmart = json!({
        "id": "h-1", "creation_date": 1_790_000_000_000i64, "event": "PURCHASE_APPROVED", "version": "2.0.0",
        "data": {"product": {"id": 1, "name": "Curso"}, "buyer": {"email": "b@example.com", "name": "Caio Reis"},
                 "purchase": {"transaction": "HP99", "price": {"value": 97.0, "currency_value": "BRL"}, "origin": {"sck": "s5"}}}
    })
    .to_string();
    let (status, body) = edge
        .post(
            "/api/v1/webhooks/hotmart?tenant=acme",
            &[("x-hotmart-hottok", HOTTOK)],
            hotmart.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = edge
        .post(
            "/api/v1/webhooks/hotmart?tenant=acme",
            &[("x-hotmart-hottok", "wrong")],
            hotmart.clone(),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );
    // A valid webhook of a type funnelhub does not use: acknowledged and kept raw, with
    // personal values redacted, not an order.
    let first_access = hotmart.replace("PURCHASE_APPROVED", "CLUB_FIRST_ACCESS");
    let (status, body) = edge
        .post(
            "/api/v1/webhooks/hotmart?tenant=acme",
            &[("x-hotmart-hottok", HOTTOK)],
            first_access,
        )
        .await;
    assert_eq!(
        (status, body["status"].as_str(), body["reason"].as_str()),
        (StatusCode::OK, Some("kept"), Some("unused_event"))
    );
    let kept = edge.records::<RawWebhook>(Topic::RawWebhooks, 1).await;
    let (key, raw) = &kept[0];
    assert_eq!(raw.event_name, "CLUB_FIRST_ACCESS");
    assert_eq!(key, &format!("acme:hotmart:{}", raw.webhook_id));
    assert!(raw.payload.contains("HP99") && !raw.payload.contains("b@example.com"));

    let kiwify = json!({"order": {"order_id": "kw-7", "order_status": "paid", "webhook_event_type": "order_approved",
        "Customer": {"email": "k@example.com", "full_name": "Davi Luz", "mobile": "+5511999990000"},
        "Commissions": {"charge_amount": 4990, "currency": "BRL"}, "TrackingParameters": {"sck": "s6"}}})
    .to_string();
    let signature = kiwify::sign(KIWIFY_TOKEN, kiwify.as_bytes());
    let (status, body) = edge
        .post(
            &format!("/api/v1/webhooks/kiwify?tenant=acme&signature={signature}"),
            &json_headers(),
            kiwify.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = edge
        .post(
            &format!("/api/v1/webhooks/kiwify?tenant=acme&signature={signature}"),
            &json_headers(),
            kiwify.replace("4990", "1"),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let records = edge.records::<OrderEvent>(Topic::RawOrders, 2).await;
    let mut orders: Vec<(&str, Option<i64>, Option<&str>)> = records
        .iter()
        .map(|(_, o)| (o.order_id.as_str(), o.amount_minor, o.session_id.as_deref()))
        .collect();
    orders.sort();
    assert_eq!(
        orders,
        vec![
            ("HP99", Some(9_700), Some("s5")),
            ("kw-7", Some(4_990), Some("s6"))
        ]
    );
}

#[tokio::test]
async fn a_webhook_for_an_unknown_tenant_is_answered_as_a_wrong_signature() {
    let edge = Edge::start("edge-enumerate").await;
    let now = funnelhub_schemas::ids::now_ms() / 1000;
    let body = r#"{"id":"evt_1","type":"charge.refunded"}"#;
    let forged =
        funnelhub_ingest::webhooks::stripe::sign("whsec_guessed_secret", now, body.as_bytes());
    let onboard = json!({"event": "dns.applied", "domain": "a.com", "session_id": "s"}).to_string();
    for (route, headers, body) in [
        (
            "stripe",
            vec![("stripe-signature", forged.as_str())],
            body.to_owned(),
        ),
        ("stripe", vec![], body.to_owned()),
        (
            "hotmart",
            vec![("x-hotmart-hottok", "guessed-hottok")],
            "{}".to_owned(),
        ),
        ("kiwify", vec![], "{}".to_owned()),
        (
            "onboard",
            vec![("x-webhook-secret", "guessed-secret")],
            onboard,
        ),
    ] {
        let query = if route == "kiwify" {
            "&signature=00"
        } else {
            ""
        };
        let answer = |tenant: &str| {
            let uri = format!("/api/v1/webhooks/{route}?tenant={tenant}{query}");
            let (headers, body) = (headers.clone(), body.clone());
            let edge = &edge;
            async move { edge.post(&uri, &headers, body).await }
        };
        let known = answer("acme").await;
        let unknown = answer("nobody-here").await;
        assert_eq!(known.0, StatusCode::UNAUTHORIZED, "{route}: {}", known.1);
        assert_eq!(unknown, known, "{route}: the same answer, tenant or not");
    }
}

#[tokio::test]
async fn onboarding_webhook_checks_the_secret_and_the_event() {
    let edge = Edge::start("edge-onboard").await;
    let body = |event: &str| {
        json!({"event": event, "domain": "cliente.com.br", "session_id": "onb-1",
        "data": {"admin_email": "admin@cliente.com.br", "plan": "pro"}, "timestamp": "2026-11-20T10:00:00Z"}).to_string()
    };
    let ok = [("x-webhook-secret", ONBOARD_SECRET)];
    let (status, first) = edge
        .post(
            "/api/v1/webhooks/onboard?tenant=acme",
            &ok,
            body("account.created"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let (status, retry) = edge
        .post(
            "/api/v1/webhooks/onboard?tenant=acme",
            &ok,
            body("account.created"),
        )
        .await;
    assert_eq!(
        (status, &retry["event_id"]),
        (StatusCode::OK, &first["event_id"])
    );
    let (status, _) = edge
        .post(
            "/api/v1/webhooks/onboard?tenant=acme",
            &[("x-webhook-secret", "nope")],
            body("dns.applied"),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, refused) = edge
        .post(
            "/api/v1/webhooks/onboard?tenant=acme",
            &ok,
            body("payment.done"),
        )
        .await;
    assert_eq!(
        (status, refused["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("event"))
    );
    let (status, _) = edge
        .post(
            "/api/v1/webhooks/onboard?tenant=acme",
            &ok,
            body("onboarding.completed"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let records = edge
        .records::<OnboardingEvent>(Topic::RawOnboarding, 3)
        .await;
    let types: Vec<EventType> = records.iter().map(|(_, e)| e.envelope.event_type).collect();
    assert_eq!(
        types,
        vec![
            EventType::AccountCreated,
            EventType::AccountCreated,
            EventType::OnboardingCompleted
        ]
    );
    assert_eq!(
        records[0].1.attributes.get("plan").map(String::as_str),
        Some("pro")
    );
    assert!(!records[0].1.attributes.values().any(|v| v.contains('@')));
    assert!(records.iter().all(|(key, _)| key == "acme:onb-1"));
}

/// (uri, headers, body, expected status, expected `error`, expected `field`)
type RejectionCase = (
    &'static str,
    &'static [(&'static str, &'static str)],
    String,
    StatusCode,
    &'static str,
    Option<&'static str>,
);

#[tokio::test]
async fn a_body_that_never_finishes_gets_408_within_the_request_timeout() {
    let name = "edge-slow-body";
    let config = EdgeConfig {
        request_timeout_ms: 300,
        ..EdgeConfig::default()
    };
    let edge = Edge::start_on(kafka_config(name), kafka_config(name), config).await;
    // A first chunk, then nothing: the client stalls mid-body (slow loris).
    use futures::StreamExt as _;
    let chunks = futures::stream::iter([Ok::<_, std::io::Error>(axum::body::Bytes::from_static(
        b"{\"session_id\":",
    ))])
    .chain(futures::stream::pending());
    let chunks = futures::StreamExt::boxed(chunks);
    let request = Request::post("/api/v1/track/click?tenant=acme")
        .header("content-type", "application/json")
        .body(Body::from_stream(chunks))
        .expect("request");
    let started = std::time::Instant::now();
    let (status, body, _) = tokio::time::timeout(Duration::from_secs(10), edge.send(request))
        .await
        .expect("answered, not held");
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT, "{body}");
    assert_eq!(body["error"], "request_timeout");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn beyond_its_requests_in_flight_the_edge_answers_503_at_once_and_recovers() {
    let name = "edge-in-flight";
    let config = EdgeConfig {
        max_in_flight_requests: 1,
        request_timeout_ms: 2_000,
        ..EdgeConfig::default()
    };
    let edge = Edge::start_on(kafka_config(name), kafka_config(name), config).await;
    // One request holds the only slot: its body never finishes.
    use futures::StreamExt as _;
    let stalled = futures::StreamExt::boxed(
        futures::stream::iter([Ok::<_, std::io::Error>(axum::body::Bytes::from_static(
            b"{\"session_id\":",
        ))])
        .chain(futures::stream::pending()),
    );
    let held = Request::post("/api/v1/track/click?tenant=acme")
        .header("content-type", "application/json")
        .body(Body::from_stream(stalled))
        .expect("request");
    let app = edge.app.clone();
    let holder = tokio::spawn(async move { app.oneshot(held).await.expect("infallible") });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let hit = || {
        Request::post("/api/v1/track/click?tenant=acme")
            .header("content-type", "application/json")
            .body(Body::from(r#"{"session_id":"in-flight-1"}"#))
            .expect("request")
    };
    let started = std::time::Instant::now();
    let (status, body, headers) = edge.send(hit()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "overloaded");
    assert_eq!(headers["retry-after"], "5");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "refused at once"
    );
    // The held request ends (408 at its deadline) and frees the slot.
    let held = holder.await.expect("joins");
    assert_eq!(held.status(), StatusCode::REQUEST_TIMEOUT);
    let (status, body, _) = edge.send(hit()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let metrics = edge.metrics().await;
    assert!(
        metrics.contains(r#"funnelhub_edge_rejected_total{route="request",reason="overloaded"}"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_tenant_over_its_tracking_rate_gets_429_with_retry_after_then_sends_again() {
    let name = "edge-rate-limit";
    let config = EdgeConfig {
        rate_limits: funnelhub_ingest::limits::RateLimitConfig {
            per_tenant_per_sec: 2,
            ..Default::default()
        },
        ..EdgeConfig::default()
    };
    let edge = Edge::start_on(kafka_config(name), kafka_config(name), config).await;
    let hit = |i: u32| {
        Request::post("/api/v1/track/click?tenant=acme")
            .header("content-type", "application/json")
            .body(Body::from(format!(r#"{{"session_id":"limited-{i}"}}"#)))
            .expect("request")
    };
    let mut statuses = Vec::new();
    for i in 0..4 {
        let (status, body, headers) = edge.send(hit(i)).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(body["error"], "too_many_requests", "{body}");
            assert_eq!(headers["retry-after"], "1");
        }
        statuses.push(status.as_u16());
    }
    assert_eq!(statuses, [200, 200, 429, 429]);
    // A second later the tenant may send again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(edge.send(hit(9)).await.0, StatusCode::OK);
}

#[tokio::test]
async fn every_rejection_has_its_status_and_names_the_problem_and_stores_nothing() {
    let edge = Edge::start("edge-reject").await;
    let cases: Vec<RejectionCase> = vec![
        (
            "/api/v1/track/click?tenant=nobody",
            &[],
            r#"{"session_id":"s"}"#.into(),
            StatusCode::NOT_FOUND,
            "unknown_tenant",
            None,
        ),
        (
            "/api/v1/track/click",
            &[],
            r#"{"session_id":"s"}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_field",
            Some("tenant"),
        ),
        (
            "/api/v1/track/teleport?tenant=acme",
            &[],
            r#"{"session_id":"s"}"#.into(),
            StatusCode::NOT_FOUND,
            "not_found",
            None,
        ),
        (
            "/api/v1/webhooks/paypal?tenant=acme",
            &[],
            "{}".into(),
            StatusCode::NOT_FOUND,
            "unknown_gateway",
            None,
        ),
        (
            "/api/v1/track/click?tenant=acme",
            &[],
            "{\"session_id\":".into(),
            StatusCode::BAD_REQUEST,
            "malformed_json",
            None,
        ),
        (
            "/api/v1/track/click?tenant=acme",
            &[],
            r#"{"page_url":"https://a.com"}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_field",
            Some("session_id"),
        ),
        (
            "/api/v1/track/click?tenant=acme",
            &[],
            r#"{"session_id":7}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_field",
            Some("session_id"),
        ),
        (
            "/api/v1/track/click?tenant=acme",
            &[("content-type", "application/x-www-form-urlencoded")],
            "session_id=s".into(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            None,
        ),
        (
            "/api/v1/track/click?tenant=acme",
            &[],
            format!(
                r#"{{"session_id":"s","page_url":"https://a.com/{}"}}"#,
                "x".repeat(9000)
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            None,
        ),
        (
            "/api/v1/webhooks/stripe?tenant=acme",
            &[],
            stripe_checkout("x", 1),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            None,
        ),
    ];
    for (uri, headers, body, status, error, field) in cases {
        let (got, json) = edge.post(uri, headers, body).await;
        assert_eq!(got, status, "{uri}: {json}");
        assert_eq!(json["error"], error, "{uri}: {json}");
        assert!(
            json["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{uri}: {json}"
        );
        if let Some(field) = field {
            assert_eq!(json["field"], field, "{uri}: {json}");
        }
    }
    // Nothing was produced: the first record on the topic is this sentinel.
    let (status, sentinel) = edge
        .post(
            "/api/v1/track/click?tenant=acme",
            &[],
            r#"{"session_id":"sentinel"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let records = edge.records::<TrackingHit>(Topic::RawTracking, 1).await;
    assert_eq!(
        records[0].1.envelope.event_id,
        sentinel["event_id"].as_str().expect("id")
    );

    // Health, readiness and metrics.
    let get = |uri: &str| Request::get(uri).body(Body::empty()).expect("request");
    assert_eq!(edge.send(get("/healthz")).await.0, StatusCode::OK);
    let (status, ready, _) = edge.send(get("/readyz")).await;
    assert_eq!(
        (status, &ready["broker"], &ready["registry"]),
        (StatusCode::OK, &json!("ok"), &json!("ok"))
    );
    // Metrics are for operators: not on the public port.
    let public = edge
        .app
        .clone()
        .oneshot(get("/metrics"))
        .await
        .expect("answer");
    assert_eq!(public.status(), StatusCode::NOT_FOUND);
    let text = edge.metrics().await;
    assert!(
        text.contains(
            r#"funnelhub_edge_rejected_total{route="track.click",reason="payload_too_large"}"#
        ),
        "{text}"
    );
    assert!(text.contains("funnelhub_edge_produce_seconds"), "{text}");
}

fn hotmart_purchase(transaction: &str) -> String {
    json!({"id": transaction, "event": "PURCHASE_APPROVED",
           "data": {"purchase": {"transaction": transaction, "price": {"value": 10.0, "currency_value": "BRL"}}}})
    .to_string()
}

#[tokio::test]
async fn broker_down_means_503_with_retry_after_and_retries_land_once_it_is_back() {
    // A broker of the test's own, so stopping it disturbs no other test.
    let mut broker = PrivateBroker::start("edge-outage");
    let kafka = KafkaConfig {
        brokers: broker.brokers(),
        ..kafka_config("edge-outage")
    };
    let config = EdgeConfig {
        produce_timeout_ms: 2_000,
        retry_after_secs: 7,
        ..EdgeConfig::default()
    };
    let edge = Edge::start_on(kafka, kafka_config("edge-outage-registry"), config).await;
    let post = |tx: &str| {
        Request::post("/api/v1/webhooks/hotmart?tenant=acme")
            .header("x-hotmart-hottok", HOTTOK)
            .body(Body::from(hotmart_purchase(tx)))
            .expect("request")
    };
    let (status, before, _) = edge.send(post("HP-before")).await;
    assert_eq!(status, StatusCode::OK, "{before}");

    broker.stop();
    let pending = ["HP-1", "HP-2", "HP-3"];
    for tx in pending {
        let (status, body, headers) = edge.send(post(tx)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{tx}: {body}");
        assert_eq!(body["error"], "unavailable");
        assert_eq!(
            headers
                .get("retry-after")
                .map(|v| v.to_str().expect("ascii")),
            Some("7")
        );
    }

    // Readiness: the public answer says what is down, the operators' port also why.
    let get = |uri: &str| Request::get(uri).body(Body::empty()).expect("request");
    let (status, public, _) = edge.send(get("/readyz")).await;
    assert_eq!(
        (status, &public["broker"]),
        (StatusCode::SERVICE_UNAVAILABLE, &json!("unavailable"))
    );
    let ops = edge.ops.clone().oneshot(get("/readyz")).await.expect("ops");
    assert_eq!(ops.status(), StatusCode::SERVICE_UNAVAILABLE);
    let ops: Value = serde_json::from_slice(
        &axum::body::to_bytes(ops.into_body(), 1 << 16)
            .await
            .expect("body"),
    )
    .expect("json");
    assert_eq!(ops["broker"]["status"], "unavailable", "{ops}");
    assert!(
        ops["broker"]["reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{ops}"
    );

    // The gateway retries after the broker is back: every retried request lands.
    broker.start_again();
    let mut ids = vec![before["event_id"].as_str().expect("id").to_owned()];
    for tx in pending {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let (status, body, _) = edge.send(post(tx)).await;
            if status == StatusCode::OK {
                ids.push(body["event_id"].as_str().expect("id").to_owned());
                break;
            }
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{tx}: {body}");
            assert!(
                std::time::Instant::now() < deadline,
                "{tx} never landed after the broker came back: {body}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    // Every acknowledged event is stored. The 503'd attempts stay queued in the producer
    // and are written too once the broker is back: extra copies with the same event ids,
    // which downstream deduplication removes. No other id may appear.
    let expected: HashSet<String> = ids.into_iter().collect();
    let records = read_until(
        &edge.kafka,
        &edge.topic(Topic::RawOrders),
        WAIT,
        |records| event_ids(records).is_superset(&expected),
    )
    .await;
    assert_eq!(event_ids(&records), expected);
}

/// Event ids of raw order records (written with the bundled schema).
fn event_ids(records: &[(Option<Vec<u8>>, Vec<u8>)]) -> HashSet<String> {
    let decoder = Decoder::<OrderEvent>::bundled();
    records
        .iter()
        .map(|(_, value)| {
            let (_, body) = split_frame(value).expect("framed");
            decoder.decode(body).expect("decodes").envelope.event_id
        })
        .collect()
}

//! Gateway events through the whole pipeline (`funnelhub up` on the real broker and
//! ClickHouse, a Meta Graph API emulator), each body shaped as its gateway publishes it
//! and signed the way that gateway signs:
//!
//! - a Hotmart boleto printed, then paid (delivered twice): the session passes
//!   `payment_pending` and ends at `purchase`, and Meta gets exactly one `Purchase`;
//! - a Kiwify abandoned cart (no order, no `webhook_event_type`): 2xx, the session ends at
//!   `checkout_abandoned`, sent to Meta as the tenant's custom event;
//! - a Stripe delayed payment (`checkout.session.completed` unpaid, then
//!   `async_payment_succeeded` and `payment_intent.succeeded`): one `Purchase`;
//! - a signed Stripe event of a type funnelhub does not map, delivered twice: 2xx, one row
//!   in `raw_webhooks` with its own name and no personal value.

mod support;

use std::time::{Duration, Instant};

use funnelhub_clickhouse::query::json_rows;
use funnelhub_clickhouse::ClickHouseConfig;
use funnelhub_ingest::webhooks::{kiwify, stripe};
use funnelhub_simulator::gateways::{self, Delivery};
use serde_json::{json, Value};
use support::pipeline::{caught_up, deliver, meta_emulator, setup, stop, up, WAIT};

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0";

async fn rows(clickhouse: &ClickHouseConfig, sql: &str) -> Vec<Value> {
    let sql = sql.replace("{db}", &clickhouse.database);
    json_rows(clickhouse, &sql).await.expect(&sql)
}

/// Poll `sql` until its rows equal `want` (or fail after [`WAIT`]).
async fn eventually(clickhouse: &ClickHouseConfig, sql: &str, want: Value) {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = Value::Array(rows(clickhouse, sql).await);
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "{sql}\n got {got}\nwant {want}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn checkout(session: &str, email: &str) -> Delivery {
    gateways::hit(
        "acme",
        "initiate_checkout",
        &json!({"session_id": session, "event_id": format!("{session}-ic"),
                "page_url": "https://lp.example.com/curso/checkout", "email": email,
                "value": 97.0, "currency": "BRL", "consent_ads": true}),
        UA,
    )
}

fn hotmart(event: &str, id: &str, transaction: &str, session: &str, email: &str) -> Delivery {
    let body = json!({
        "id": id, "creation_date": funnelhub_schemas::ids::now_ms(), "event": event, "version": "2.0.0",
        "data": {
            "product": {"id": 4242, "name": "Curso"},
            "buyer": {"email": email, "name": "Maria da Silva", "checkout_phone": "11987654321"},
            "purchase": {"transaction": transaction, "status": "BILLET_PRINTED",
                         "approved_date": funnelhub_schemas::ids::now_ms(),
                         "price": {"value": 97.0, "currency_value": "BRL"},
                         "payment": {"type": "BILLET"}, "origin": {"sck": session}}
        }
    });
    Delivery {
        path: "/api/v1/webhooks/hotmart?tenant=acme".into(),
        headers: vec![
            ("content-type", "application/json".into()),
            ("x-hotmart-hottok", "acme-hottok".into()),
        ],
        body: body.to_string(),
    }
}

fn kiwify_cart(cart: &str, session: &str, email: &str) -> Delivery {
    let body = json!({
        "id": cart, "status": "abandoned", "country": "BR", "email": email, "name": "João Pereira",
        "phone": "+5511987654321", "product_id": "p-9", "product_name": "Mentoria",
        "offer_name": "Oferta", "store_id": "st-1",
        "checkout_link": format!("https://pay.kiwify.com.br/AbC12?sck={session}&utm_source=facebook"),
        "created_at": chrono::Utc::now().to_rfc3339(),
    })
    .to_string();
    let signature = kiwify::sign("acme-kiwify", body.as_bytes());
    Delivery {
        path: format!("/api/v1/webhooks/kiwify?tenant=acme&signature={signature}"),
        headers: vec![("content-type", "application/json".into())],
        body,
    }
}

fn stripe_event(id: &str, event_type: &str, object: Value) -> Delivery {
    let now = chrono::Utc::now().timestamp();
    let body = json!({"id": id, "object": "event", "type": event_type, "created": now,
                      "livemode": false, "data": {"object": object}})
    .to_string();
    Delivery {
        path: "/api/v1/webhooks/stripe?tenant=acme".into(),
        headers: vec![
            ("content-type", "application/json".into()),
            (
                "stripe-signature",
                stripe::sign("whsec_acme", now, body.as_bytes()),
            ),
        ],
        body,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gateway_events_join_the_funnel_and_every_signed_delivery_is_kept() {
    let emulator = meta_emulator().await;
    let setup = setup(&emulator.url());
    let pipeline = up(&setup);
    let run = format!("gw{:x}", rand::random::<u32>());
    let ch = &setup.clickhouse;

    // Hotmart: boleto printed, then paid; the paid delivery arrives twice.
    let (h_session, h_tx) = (format!("{run}-h"), format!("HP{run}"));
    deliver(
        &setup,
        &checkout(&h_session, &format!("{run}-h@example.com")),
    )
    .await;
    let email = format!("{run}-h@example.com");
    for delivery in [
        hotmart(
            "PURCHASE_BILLET_PRINTED",
            &format!("{run}-1"),
            &h_tx,
            &h_session,
            &email,
        ),
        hotmart(
            "PURCHASE_APPROVED",
            &format!("{run}-2"),
            &h_tx,
            &h_session,
            &email,
        ),
        hotmart(
            "PURCHASE_APPROVED",
            &format!("{run}-2"),
            &h_tx,
            &h_session,
            &email,
        ),
    ] {
        deliver(&setup, &delivery).await;
    }

    // Kiwify: an abandoned cart, as Kiwify sends it.
    let k_session = format!("{run}-k");
    deliver(
        &setup,
        &checkout(&k_session, &format!("{run}-k@example.com")),
    )
    .await;
    let cart = format!("cart-{run}");
    deliver(
        &setup,
        &kiwify_cart(&cart, &k_session, &format!("{run}-k@example.com")),
    )
    .await;

    // Stripe: a delayed payment, pending then paid (two deliveries say so).
    let (s_session, intent) = (format!("{run}-s"), format!("pi_{run}"));
    deliver(
        &setup,
        &checkout(&s_session, &format!("{run}-s@example.com")),
    )
    .await;
    let session_object = |status: &str| {
        json!({"id": format!("cs_{run}"), "object": "checkout.session", "mode": "payment",
               "payment_intent": intent, "payment_status": status, "amount_total": 9700,
               "currency": "brl", "client_reference_id": s_session,
               "payment_method_types": ["boleto"],
               "customer_details": {"email": format!("{run}-s@example.com"), "name": "Ana Souza"},
               "metadata": {}})
    };
    for delivery in [
        stripe_event(
            &format!("evt_{run}_1"),
            "checkout.session.completed",
            session_object("unpaid"),
        ),
        stripe_event(
            &format!("evt_{run}_2"),
            "checkout.session.async_payment_succeeded",
            session_object("paid"),
        ),
        stripe_event(
            &format!("evt_{run}_3"),
            "payment_intent.succeeded",
            json!({"id": intent, "object": "payment_intent", "amount": 9700,
                   "amount_received": 9700, "currency": "brl", "metadata": {}}),
        ),
    ] {
        deliver(&setup, &delivery).await;
    }

    // Stripe: a type funnelhub does not map, signed, delivered twice.
    let unknown = stripe_event(
        &format!("evt_{run}_c"),
        "customer.created",
        json!({"id": format!("cus_{run}"), "object": "customer",
               "email": format!("{run}-c@example.com"), "name": "Ana Souza", "phone": "+5511987654321"}),
    );
    for _ in 0..2 {
        let response = reqwest::Client::new()
            .post(format!("{}{}", setup.edge, unknown.path))
            .headers(
                unknown
                    .headers
                    .iter()
                    .map(|(k, v)| (k.parse().expect("name"), v.parse().expect("value")))
                    .collect(),
            )
            .body(unknown.body.clone())
            .send()
            .await
            .expect("edge answers");
        assert_eq!(response.status(), reqwest::StatusCode::OK);
        let answer: Value = response.json().await.expect("json");
        assert_eq!(
            (answer["status"].as_str(), answer["gateway_event"].as_str()),
            (Some("kept"), Some("customer.created"))
        );
    }

    // The funnel: each session's furthest stage and outcome.
    eventually(
        ch,
        &format!(
            "SELECT subject_id, stage, outcome FROM {{db}}.session_stages FINAL \
             WHERE subject_id IN ('{h_session}', '{k_session}', '{s_session}') ORDER BY subject_id"
        ),
        json!([
            {"subject_id": h_session, "stage": "purchase", "outcome": "completed"},
            {"subject_id": k_session, "stage": "checkout_abandoned", "outcome": "in_progress"},
            {"subject_id": s_session, "stage": "purchase", "outcome": "completed"},
        ]),
    )
    .await;
    // The boleto and the delayed payment passed through payment_pending on the way (when
    // they arrived before the payment: the funnel records stages as they are reached).
    eventually(
        ch,
        &format!(
            "SELECT DISTINCT subject_id FROM {{db}}.funnel_transitions FINAL \
             WHERE subject_id IN ('{h_session}', '{s_session}') AND to_stage = 'payment_pending' \
             ORDER BY subject_id"
        ),
        json!([{"subject_id": h_session}, {"subject_id": s_session}]),
    )
    .await;

    // The read API's landing-page funnel shows the new stages.
    let funnel: Value = reqwest::Client::new()
        .get(format!("{}/api/v1/funnel/tracking", setup.edge))
        .bearer_auth("acme-read-key")
        .send()
        .await
        .expect("read API answers")
        .json()
        .await
        .expect("json");
    assert_eq!(
        (&funnel["stages"], &funnel["failed"], &funnel["sessions"]),
        (
            &json!({"click": 0, "pageview": 0, "initiate_checkout": 0,
                    "checkout_abandoned": 1, "payment_pending": 0, "purchase": 2}),
            &json!(0),
            &json!(3)
        ),
        "{funnel}"
    );

    // The raw delivery: one row, its own name, no personal value.
    eventually(
        ch,
        &format!(
            "SELECT event_name, reason, order_id, count() AS n FROM {{db}}.raw_webhooks FINAL \
             WHERE gateway_event_id = 'evt_{run}_c' GROUP BY event_name, reason, order_id"
        ),
        json!([{"event_name": "customer.created", "reason": "unused_event",
                "order_id": format!("cus_{run}"), "n": "1"}]),
    )
    .await;
    let payload = rows(
        ch,
        &format!("SELECT payload FROM {{db}}.raw_webhooks WHERE gateway_event_id = 'evt_{run}_c'"),
    )
    .await;
    let payload = payload[0]["payload"].as_str().expect("payload");
    assert!(
        !payload.contains("@example.com") && !payload.contains("Ana Souza"),
        "{payload}"
    );

    // Meta: one Purchase per paid order, the abandoned cart as the custom event, nothing
    // for pending payments.
    caught_up(&setup).await;
    eventually(
        ch,
        &format!(
            "SELECT event_name, event_id, count(DISTINCT dispatch_id) AS n FROM {{db}}.capi_requests FINAL \
             WHERE event_id IN ('{h_tx}', '{intent}', '{cart}') GROUP BY event_name, event_id \
             ORDER BY event_name, event_id"
        ),
        json!([
            {"event_name": "AbandonedCheckout", "event_id": cart, "n": "1"},
            {"event_name": "Purchase", "event_id": h_tx, "n": "1"},
            {"event_name": "Purchase", "event_id": intent, "n": "1"},
        ]),
    )
    .await;
    let deadline = Instant::now() + WAIT;
    loop {
        let snapshot = emulator.snapshot();
        let mut sent: Vec<(String, String)> = snapshot
            .of_pixel("111000111")
            .filter(|e| {
                e.event_id
                    .as_deref()
                    .is_some_and(|id| [&h_tx, &intent, &cart].contains(&&id.to_owned()))
            })
            .map(|e| (e.event_name.clone(), e.event_id.clone().unwrap_or_default()))
            .collect();
        sent.sort();
        let want = vec![
            ("AbandonedCheckout".to_owned(), cart.clone()),
            ("Purchase".to_owned(), h_tx.clone()),
            ("Purchase".to_owned(), intent.clone()),
        ];
        if sent == want {
            break;
        }
        assert!(Instant::now() < deadline, "Meta got {sent:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    stop(pipeline);
    emulator.stop().await.expect("emulator stops");
    let _ = std::fs::remove_dir_all(&setup.dir);
}

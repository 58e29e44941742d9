//! Requests as each source sends them: landing-page hits, the three gateways' webhooks
//! signed the way each gateway signs (with the edge's own signing functions, which the
//! edge's tests check against the gateways' documented examples), onboarding webhooks.

use funnelhub_ingest::config::{Secret, TenantConfig};
use funnelhub_ingest::webhooks::{kiwify, stripe};
use serde_json::{json, Value};

/// One HTTP request to the edge.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Path and query, e.g. `/api/v1/track/click?tenant=acme`.
    pub path: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

/// A payment gateway a tenant is configured for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Gateway {
    Hotmart,
    Kiwify,
    Stripe,
}

impl Gateway {
    pub fn as_str(self) -> &'static str {
        match self {
            Gateway::Hotmart => "hotmart",
            Gateway::Kiwify => "kiwify",
            Gateway::Stripe => "stripe",
        }
    }

    /// The gateways `tenant` has secrets for.
    pub fn configured(tenant: &TenantConfig) -> Vec<Gateway> {
        let mut out = Vec::new();
        if tenant.hotmart_hottok.is_some() {
            out.push(Gateway::Hotmart);
        }
        if tenant.kiwify_token.is_some() {
            out.push(Gateway::Kiwify);
        }
        if !tenant.stripe_signing_secrets.is_empty() {
            out.push(Gateway::Stripe);
        }
        out
    }

    /// Whether the gateway's webhook can carry the landing page's `fbclid`.
    pub fn carries_click_id(self) -> bool {
        matches!(self, Gateway::Kiwify | Gateway::Stripe)
    }

    /// The order id the edge will read from this gateway's webhook for `base`.
    pub fn order_id(self, base: &str) -> String {
        match self {
            Gateway::Stripe => format!("pi_{base}"),
            _ => base.to_owned(),
        }
    }
}

/// A landing-page hit (`kind`: click, pageview, initiate_checkout).
pub fn hit(tenant: &str, kind: &str, payload: &Value, user_agent: &str) -> Delivery {
    Delivery {
        path: format!("/api/v1/track/{kind}?tenant={tenant}"),
        headers: vec![
            ("content-type", "application/json".into()),
            ("user-agent", user_agent.into()),
        ],
        body: payload.to_string(),
    }
}

/// An order as the simulator thinks of it; each gateway writes it its own way.
#[derive(Debug, Clone)]
pub struct Order {
    /// The gateway's transaction id (Stripe: the payment intent is `pi_<base>`).
    pub base_id: String,
    pub amount_minor: i64,
    pub email: String,
    pub name: String,
    pub product_id: String,
    /// Our session id, passed through the checkout (`sck`, `client_reference_id`).
    pub session_id: Option<String>,
    /// The landing page's `fbclid`, passed through the checkout.
    pub fbclid: Option<String>,
    pub refund: bool,
    /// Milliseconds since the epoch.
    pub at_ms: i64,
}

/// The webhook announcing `order` (approved, or refunded when `order.refund`).
pub fn order_webhook(tenant: &TenantConfig, gateway: Gateway, order: &Order) -> Delivery {
    let id = &tenant.id;
    match gateway {
        Gateway::Hotmart => {
            let mut purchase = json!({
                "transaction": order.base_id,
                "approved_date": order.at_ms,
                "price": {"value": order.amount_minor as f64 / 100.0, "currency_value": "BRL"},
                "payment": {"type": "CREDIT_CARD"},
            });
            if let Some(session) = &order.session_id {
                purchase["origin"] = json!({"sck": session});
            }
            let body = json!({
                "id": format!("{}-{}", order.base_id, if order.refund { "r" } else { "p" }),
                "creation_date": order.at_ms,
                "event": if order.refund { "PURCHASE_REFUNDED" } else { "PURCHASE_APPROVED" },
                "version": "2.0.0",
                "data": {
                    "product": {"id": order.product_id, "name": "Curso"},
                    "buyer": {"email": order.email, "name": order.name},
                    "purchase": purchase,
                }
            });
            let hottok = exposed(tenant.hotmart_hottok.as_ref());
            Delivery {
                path: format!("/api/v1/webhooks/hotmart?tenant={id}"),
                headers: vec![
                    ("content-type", "application/json".into()),
                    ("x-hotmart-hottok", hottok),
                ],
                body: body.to_string(),
            }
        }
        Gateway::Kiwify => {
            let mut tracking = json!({"utm_source": "facebook"});
            if let Some(session) = &order.session_id {
                tracking["sck"] = json!(session);
            }
            if let Some(fbclid) = &order.fbclid {
                tracking["fbclid"] = json!(fbclid);
            }
            let body = json!({"order": {
                "order_id": order.base_id,
                "order_status": if order.refund { "refunded" } else { "paid" },
                "webhook_event_type": if order.refund { "order_refunded" } else { "order_approved" },
                "payment_method": "pix",
                "Product": {"product_id": order.product_id, "product_name": "Curso"},
                "Customer": {"email": order.email, "full_name": order.name},
                "Commissions": {"charge_amount": order.amount_minor, "currency": "BRL"},
                "TrackingParameters": tracking,
            }})
            .to_string();
            let token = exposed(tenant.kiwify_token.as_ref());
            let signature = kiwify::sign(&token, body.as_bytes());
            Delivery {
                path: format!("/api/v1/webhooks/kiwify?tenant={id}&signature={signature}"),
                headers: vec![("content-type", "application/json".into())],
                body,
            }
        }
        Gateway::Stripe => {
            let intent = Gateway::Stripe.order_id(&order.base_id);
            let mut metadata = json!({"product_id": order.product_id, "utm_source": "facebook"});
            if let Some(fbclid) = &order.fbclid {
                metadata["fbclid"] = json!(fbclid);
            }
            let (event_type, object) = if order.refund {
                (
                    "charge.refunded",
                    json!({"id": format!("ch_{}", order.base_id), "object": "charge",
                           "payment_intent": intent, "amount": order.amount_minor,
                           "amount_refunded": order.amount_minor, "currency": "brl",
                           "billing_details": {"email": order.email, "name": order.name},
                           "metadata": metadata}),
                )
            } else {
                let mut object = json!({"id": format!("cs_{}", order.base_id), "object": "checkout.session",
                    "payment_intent": intent, "payment_status": "paid",
                    "amount_total": order.amount_minor, "currency": "brl",
                    "customer_details": {"email": order.email, "name": order.name},
                    "metadata": metadata});
                if let Some(session) = &order.session_id {
                    object["client_reference_id"] = json!(session);
                }
                ("checkout.session.completed", object)
            };
            let body = json!({
                "id": format!("evt_{}_{}", order.base_id, if order.refund { "r" } else { "p" }),
                "object": "event", "type": event_type, "created": order.at_ms / 1000,
                "livemode": false, "data": {"object": object},
            })
            .to_string();
            let secret = exposed(tenant.stripe_signing_secrets.first());
            let signature = stripe::sign(&secret, order.at_ms / 1000, body.as_bytes());
            Delivery {
                path: format!("/api/v1/webhooks/stripe?tenant={id}"),
                headers: vec![
                    ("content-type", "application/json".into()),
                    ("stripe-signature", signature),
                ],
                body,
            }
        }
    }
}

/// A step of a delayed payment (Pix, boleto) of an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentStep {
    /// The Pix code or boleto was generated: Hotmart `PURCHASE_BILLET_PRINTED`, Kiwify
    /// `pix_created`, Stripe `checkout.session.completed` unpaid.
    Pending,
    /// It was paid: Hotmart `PURCHASE_APPROVED`, Kiwify `order_approved`, Stripe
    /// `checkout.session.async_payment_succeeded`.
    Paid,
    /// It expired unpaid: Hotmart `PURCHASE_EXPIRED`, Kiwify `order_rejected`, Stripe
    /// `checkout.session.async_payment_failed`.
    Failed,
}

/// The webhook of one step of `order`'s delayed payment.
pub fn payment_webhook(
    tenant: &TenantConfig,
    gateway: Gateway,
    order: &Order,
    step: PaymentStep,
) -> Delivery {
    let (hotmart, kiwify, stripe_type, suffix) = match step {
        PaymentStep::Pending => (
            "PURCHASE_BILLET_PRINTED",
            ("pix_created", "waiting_payment"),
            "checkout.session.completed",
            "b",
        ),
        PaymentStep::Paid => (
            "PURCHASE_APPROVED",
            ("order_approved", "paid"),
            "checkout.session.async_payment_succeeded",
            "p",
        ),
        PaymentStep::Failed => (
            "PURCHASE_EXPIRED",
            ("order_rejected", "refused"),
            "checkout.session.async_payment_failed",
            "x",
        ),
    };
    let mut paid = order_webhook(tenant, gateway, order);
    let mut body: Value = serde_json::from_str(&paid.body).expect("our own JSON");
    match gateway {
        Gateway::Hotmart => {
            body["event"] = json!(hotmart);
            body["id"] = json!(format!("{}-{suffix}", order.base_id));
            body["data"]["purchase"]["payment"]["type"] = json!("BILLET");
        }
        Gateway::Kiwify => {
            body["order"]["webhook_event_type"] = json!(kiwify.0);
            body["order"]["order_status"] = json!(kiwify.1);
        }
        Gateway::Stripe => {
            body["type"] = json!(stripe_type);
            body["id"] = json!(format!("evt_{}_{suffix}", order.base_id));
            let object = &mut body["data"]["object"];
            object["payment_method_types"] = json!(["boleto"]);
            if step != PaymentStep::Paid {
                object["payment_status"] = json!("unpaid");
            }
        }
    }
    paid.body = body.to_string();
    resign(tenant, gateway, paid, order.at_ms)
}

/// A subscription's later charge (`cycle` 1 is the first renewal), as each gateway reports
/// it: Hotmart `PURCHASE_APPROVED` with `recurrence_number` (a new transaction
/// `<base>r<cycle>`), Kiwify `subscription_renewed` (order `<base>r<cycle>`), Stripe
/// `invoice.paid` of a `subscription_cycle` (invoice `in_<base>r<cycle>`, only the
/// customer's email).
pub fn renewal_webhook(
    tenant: &TenantConfig,
    gateway: Gateway,
    order: &Order,
    cycle: u32,
) -> Delivery {
    let charge = format!("{}r{cycle}", order.base_id);
    let at_ms = order.at_ms + i64::from(cycle) * 1_000;
    let delivery = match gateway {
        Gateway::Hotmart | Gateway::Kiwify => {
            let renewed = Order {
                base_id: charge.clone(),
                at_ms,
                ..order.clone()
            };
            let mut delivery = order_webhook(tenant, gateway, &renewed);
            let mut body: Value = serde_json::from_str(&delivery.body).expect("our own JSON");
            if gateway == Gateway::Hotmart {
                body["data"]["purchase"]["recurrence_number"] = json!(cycle + 1);
                body["data"]["subscription"] = json!({"status": "ACTIVE",
                    "plan": {"id": 77, "name": "Mensal"},
                    "subscriber": {"code": format!("sub{}", order.base_id)}});
            } else {
                body["order"]["webhook_event_type"] = json!("subscription_renewed");
                body["order"]["Subscription"] = json!({"id": format!("sub{}", order.base_id),
                    "status": "active", "plan": {"id": "mensal", "name": "Mensal"},
                    "charges": {"completed": vec![json!({"status": "paid"}); cycle as usize + 1]}});
            }
            delivery.body = body.to_string();
            delivery
        }
        Gateway::Stripe => Delivery {
            path: format!("/api/v1/webhooks/stripe?tenant={}", tenant.id),
            headers: vec![("content-type", "application/json".into())],
            body: json!({"id": format!("evt_{charge}"), "object": "event", "type": "invoice.paid",
                "created": at_ms / 1000, "livemode": false,
                "data": {"object": {"id": format!("in_{charge}"), "object": "invoice",
                    "billing_reason": "subscription_cycle", "subscription": format!("sub_{}", order.base_id),
                    "amount_paid": order.amount_minor, "currency": "brl",
                    "customer_email": order.email,
                    "lines": {"data": [{"price": {"id": "price_mensal"}}]}}}})
            .to_string(),
        },
    };
    resign(tenant, gateway, delivery, at_ms)
}

/// The cancellation of `order`'s subscription: Hotmart `SUBSCRIPTION_CANCELLATION`
/// (subscriber code and email), Kiwify `subscription_canceled` (the order's body), Stripe
/// `customer.subscription.deleted` (the subscription alone, no email).
pub fn cancellation_webhook(tenant: &TenantConfig, gateway: Gateway, order: &Order) -> Delivery {
    let at_ms = order.at_ms + 60_000;
    let delivery = match gateway {
        Gateway::Hotmart => Delivery {
            path: format!("/api/v1/webhooks/hotmart?tenant={}", tenant.id),
            headers: vec![("content-type", "application/json".into())],
            body: json!({"id": format!("{}-c", order.base_id), "creation_date": at_ms,
                "event": "SUBSCRIPTION_CANCELLATION", "version": "2.0.0",
                "data": {"cancellation_date": at_ms, "product": {"id": 4242, "name": "Curso"},
                    "subscriber": {"code": format!("sub{}", order.base_id), "name": order.name,
                                   "email": order.email},
                    "subscription": {"id": 4148584, "plan": {"id": 77, "name": "Mensal"}}}})
            .to_string(),
        },
        Gateway::Kiwify => {
            let mut delivery = order_webhook(tenant, gateway, order);
            let mut body: Value = serde_json::from_str(&delivery.body).expect("our own JSON");
            body["order"]["webhook_event_type"] = json!("subscription_canceled");
            body["order"]["Subscription"] = json!({"id": format!("sub{}", order.base_id), "status": "canceled"});
            delivery.body = body.to_string();
            delivery
        }
        Gateway::Stripe => Delivery {
            path: format!("/api/v1/webhooks/stripe?tenant={}", tenant.id),
            headers: vec![("content-type", "application/json".into())],
            body: json!({"id": format!("evt_{}_c", order.base_id), "object": "event",
                "type": "customer.subscription.deleted", "created": at_ms / 1000, "livemode": false,
                "data": {"object": {"id": format!("sub_{}", order.base_id), "object": "subscription",
                    "status": "canceled", "items": {"data": [{"price": {"id": "price_mensal"}}]},
                    "metadata": {}}}})
            .to_string(),
        },
    };
    resign(tenant, gateway, delivery, at_ms)
}

/// A checkout left without paying, as each gateway reports it: Hotmart
/// `PURCHASE_OUT_OF_SHOPPING_CART` (buyer and product, no transaction, no session),
/// Kiwify's abandoned cart (flat fields, the session in `checkout_link`), Stripe
/// `checkout.session.expired`. The order id the edge reads is `cart` (Stripe: `cs_<cart>`).
pub fn abandoned_webhook(
    tenant: &TenantConfig,
    gateway: Gateway,
    cart: &str,
    email: &str,
    session: Option<&str>,
    at_ms: i64,
) -> Delivery {
    let id = &tenant.id;
    let body = match gateway {
        Gateway::Hotmart => json!({
            "id": cart, "creation_date": at_ms, "event": "PURCHASE_OUT_OF_SHOPPING_CART",
            "version": "2.0.0",
            "data": {"affiliate": false, "product": {"id": 4242, "name": "Curso"},
                     "buyer": {"email": email, "name": "Ana Souza", "phone": "11987654321"},
                     "offer": {"code": "x1"}, "checkout_country": {"name": "Brasil", "iso": "BR"}},
        }),
        Gateway::Kiwify => json!({
            "id": cart, "status": "abandoned", "country": "BR", "email": email,
            "name": "Ana Souza", "phone": "+5511987654321", "product_id": "curso",
            "product_name": "Curso", "offer_name": "Oferta", "store_id": "st-1",
            "checkout_link": match session {
                Some(session) => format!("https://pay.kiwify.com.br/AbC12?sck={session}"),
                None => "https://pay.kiwify.com.br/AbC12".into(),
            },
            "created_at": chrono::DateTime::from_timestamp_millis(at_ms)
                .map(|t| t.to_rfc3339())
                .unwrap_or_default(),
        }),
        Gateway::Stripe => {
            let mut object = json!({"id": format!("cs_{cart}"), "object": "checkout.session",
                "mode": "payment", "payment_intent": null, "payment_status": "unpaid",
                "status": "expired", "amount_total": 9700, "currency": "brl",
                "customer_details": {"email": email, "name": "Ana Souza"}, "metadata": {}});
            if let Some(session) = session {
                object["client_reference_id"] = json!(session);
            }
            json!({"id": format!("evt_{cart}_e"), "object": "event",
                   "type": "checkout.session.expired", "created": at_ms / 1000,
                   "livemode": false, "data": {"object": object}})
        }
    };
    let unsigned = Delivery {
        path: format!("/api/v1/webhooks/{}?tenant={id}", gateway.as_str()),
        headers: vec![("content-type", "application/json".into())],
        body: body.to_string(),
    };
    resign(tenant, gateway, unsigned, at_ms)
}

/// A Hotmart members'-area event funnelhub does not map (kept raw): the buyer's first
/// access to the course. Its delivery id is `<base>-club`.
pub fn first_access_webhook(
    tenant: &TenantConfig,
    base: &str,
    email: &str,
    at_ms: i64,
) -> Delivery {
    let body = json!({
        "id": format!("{base}-club"), "creation_date": at_ms, "event": "CLUB_FIRST_ACCESS",
        "version": "2.0.0",
        "data": {"product": {"id": 4242, "name": "Curso"}, "user": {"name": "Ana Souza", "email": email}},
    });
    let unsigned = Delivery {
        path: format!("/api/v1/webhooks/hotmart?tenant={}", tenant.id),
        headers: vec![("content-type", "application/json".into())],
        body: body.to_string(),
    };
    resign(tenant, Gateway::Hotmart, unsigned, at_ms)
}

/// `delivery` (its body final) signed the way `gateway` signs.
fn resign(tenant: &TenantConfig, gateway: Gateway, mut delivery: Delivery, at_ms: i64) -> Delivery {
    let id = &tenant.id;
    match gateway {
        Gateway::Hotmart => {
            delivery
                .headers
                .retain(|(name, _)| *name != "x-hotmart-hottok");
            delivery
                .headers
                .push(("x-hotmart-hottok", exposed(tenant.hotmart_hottok.as_ref())));
        }
        Gateway::Kiwify => {
            let token = exposed(tenant.kiwify_token.as_ref());
            let signature = kiwify::sign(&token, delivery.body.as_bytes());
            delivery.path = format!("/api/v1/webhooks/kiwify?tenant={id}&signature={signature}");
        }
        Gateway::Stripe => {
            let secret = exposed(tenant.stripe_signing_secrets.first());
            let signature = stripe::sign(&secret, at_ms / 1000, delivery.body.as_bytes());
            delivery
                .headers
                .retain(|(name, _)| *name != "stripe-signature");
            delivery.headers.push(("stripe-signature", signature));
        }
    }
    delivery
}

/// An onboarding-portal webhook.
pub fn onboarding(tenant: &TenantConfig, payload: &Value) -> Delivery {
    let secret = exposed(tenant.onboard_secret.as_ref());
    Delivery {
        path: format!("/api/v1/webhooks/onboard?tenant={}", tenant.id),
        headers: vec![
            ("content-type", "application/json".into()),
            ("x-webhook-secret", secret),
        ],
        body: payload.to_string(),
    }
}

/// The secret to sign with (empty when the tenant has none: the edge will refuse it).
fn exposed(secret: Option<&Secret>) -> String {
    secret.map(|s| s.expose().to_owned()).unwrap_or_default()
}

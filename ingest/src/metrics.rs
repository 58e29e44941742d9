//! The edge's own metrics (Prometheus names; docs/operations.md lists them). Requests
//! answered and refused are counted by `funnelhub_runtime::api::respond`.

use std::time::Duration;

use funnelhub_schemas::common::Gateway;
use funnelhub_schemas::events::gateway_name;
use metrics::{counter, histogram};

use crate::webhooks::{self, Delivery};

/// `funnelhub_edge_gateway_events_total{gateway,gateway_event,outcome}`: signed gateway
/// deliveries by the gateway's own event name (names the gateway does not document count
/// as `other`, so a sender cannot grow the label set), `outcome` `event` (became an
/// event) or `kept` (kept raw).
pub const GATEWAY_EVENTS: &str = "funnelhub_edge_gateway_events_total";
/// `funnelhub_edge_produce_seconds{topic,outcome}`: time until the broker acknowledged.
pub const PRODUCE_SECONDS: &str = "funnelhub_edge_produce_seconds";

pub fn gateway_event(gateway: Gateway, delivery: &Delivery) {
    let documented = match gateway {
        Gateway::Hotmart => webhooks::hotmart::EVENTS,
        Gateway::Kiwify => webhooks::kiwify::EVENTS,
        Gateway::Stripe | Gateway::Unknown => webhooks::stripe::EVENTS,
    };
    let name = delivery.gateway_event();
    let label = documented
        .iter()
        .find(|known| **known == name)
        .copied()
        .unwrap_or("other");
    let outcome = match delivery {
        Delivery::Event(_) => "event",
        Delivery::Kept(_) => "kept",
    };
    counter!(
        GATEWAY_EVENTS,
        "gateway" => gateway_name(gateway),
        "gateway_event" => label,
        "outcome" => outcome
    )
    .increment(1);
}

pub fn produce_latency(topic: &str, elapsed: Duration, acknowledged: bool) {
    let outcome = if acknowledged { "acked" } else { "failed" };
    histogram!(PRODUCE_SECONDS, "topic" => topic.to_owned(), "outcome" => outcome)
        .record(elapsed.as_secs_f64());
}

//! The edge's own metrics (Prometheus names; docs/operations.md lists them). Requests
//! answered and refused are counted by `funnelhub_runtime::api::respond`.

use std::time::Duration;

use metrics::{counter, histogram};

/// `funnelhub_edge_ignored_total{route,gateway_event}`: valid webhooks funnelhub does not use.
pub const IGNORED: &str = "funnelhub_edge_ignored_total";
/// `funnelhub_edge_produce_seconds{topic,outcome}`: time until the broker acknowledged.
pub const PRODUCE_SECONDS: &str = "funnelhub_edge_produce_seconds";

pub fn ignored(route: &'static str, gateway_event: String) {
    counter!(IGNORED, "route" => route, "gateway_event" => gateway_event).increment(1);
}

pub fn produce_latency(topic: &str, elapsed: Duration, acknowledged: bool) {
    let outcome = if acknowledged { "acked" } else { "failed" };
    histogram!(PRODUCE_SECONDS, "topic" => topic.to_owned(), "outcome" => outcome)
        .record(elapsed.as_secs_f64());
}

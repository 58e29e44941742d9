//! Every metric the edge emits (Prometheus names; see docs/operations.md once it exists).

use std::time::Duration;

use metrics::{counter, histogram};

/// `funnelhub_edge_requests_total{route,status}`: requests answered.
pub const REQUESTS: &str = "funnelhub_edge_requests_total";
/// `funnelhub_edge_rejected_total{route,reason}`: requests refused or not stored.
pub const REJECTED: &str = "funnelhub_edge_rejected_total";
/// `funnelhub_edge_ignored_total{route,gateway_event}`: valid webhooks funnelhub does not use.
pub const IGNORED: &str = "funnelhub_edge_ignored_total";
/// `funnelhub_edge_produce_seconds{topic,outcome}`: time until the broker acknowledged.
pub const PRODUCE_SECONDS: &str = "funnelhub_edge_produce_seconds";

pub fn request(route: &'static str, status: u16) {
    counter!(REQUESTS, "route" => route, "status" => status.to_string()).increment(1);
}

pub fn rejected(route: &'static str, reason: &'static str) {
    counter!(REJECTED, "route" => route, "reason" => reason).increment(1);
}

pub fn ignored(route: &'static str, gateway_event: String) {
    counter!(IGNORED, "route" => route, "gateway_event" => gateway_event).increment(1);
}

pub fn produce_latency(topic: &str, elapsed: Duration, acknowledged: bool) {
    let outcome = if acknowledged { "acked" } else { "failed" };
    histogram!(PRODUCE_SECONDS, "topic" => topic.to_owned(), "outcome" => outcome)
        .record(elapsed.as_secs_f64());
}

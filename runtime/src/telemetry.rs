//! Traces: OpenTelemetry spans exported over OTLP/HTTP (protobuf), off by default
//! (`[telemetry] otlp_endpoint`). One event is followed from the edge to the sinks by W3C
//! trace context carried in a `traceparent` Kafka header: the edge starts a trace per
//! accepted event and writes the header with the record; every stage
//! (`funnelhub_kafka::stage`) reading a record that carries one opens a child span for it
//! and writes the child's context on the records it derives. See `docs/operations.md`.
//!
//! Spans hold ids, names, tenants and event types, never personal data or secrets.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::global::{self, BoxedSpan};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{Span as _, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider,
};
use opentelemetry_sdk::Resource;
use serde::{Deserialize, Serialize};

/// The Kafka header (and HTTP header) that carries W3C trace context.
pub const TRACEPARENT: &str = "traceparent";

/// `[telemetry]`: trace export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// OTLP/HTTP collector base URL (`http://127.0.0.1:4318`; spans go to `/v1/traces`).
    /// Unset: no spans are made and no `traceparent` headers written.
    pub otlp_endpoint: Option<String>,
    /// Share of new traces kept (0.0-1.0); a record's stages follow the edge's decision.
    pub sample_ratio: f64,
    /// How often finished spans are sent.
    pub export_every_ms: u64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            otlp_endpoint: None,
            sample_ratio: 1.0,
            export_every_ms: 1000,
        }
    }
}

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether spans are being made in this process.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The trace exporter of this process; [`Telemetry::shutdown`] sends what is left.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Start exporting spans of `service` (`service.name`) if the configuration asks for
    /// it; otherwise nothing is made.
    pub fn start(config: &TelemetryConfig, service: &str) -> Result<Telemetry, String> {
        let Some(endpoint) = &config.otlp_endpoint else {
            return Ok(Telemetry { provider: None });
        };
        if !(0.0..=1.0).contains(&config.sample_ratio) {
            return Err(format!(
                "telemetry.sample_ratio = {}: must be within 0.0..=1.0",
                config.sample_ratio
            ));
        }
        let exporter = SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
            .with_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("telemetry.otlp_endpoint {endpoint}: {e}"))?;
        let batches = BatchSpanProcessor::builder(exporter)
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_scheduled_delay(Duration::from_millis(config.export_every_ms.max(1)))
                    .build(),
            )
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(batches)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                config.sample_ratio,
            ))))
            .with_resource(
                Resource::builder()
                    .with_service_name(service.to_owned())
                    .build(),
            )
            .build();
        global::set_tracer_provider(provider.clone());
        ENABLED.store(true, Ordering::Relaxed);
        tracing::info!(endpoint, "exporting traces over OTLP/HTTP");
        Ok(Telemetry {
            provider: Some(provider),
        })
    }

    /// Send the spans not sent yet and stop.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider {
            ENABLED.store(false, Ordering::Relaxed);
            if let Err(e) = provider.shutdown_with_timeout(Duration::from_secs(5)) {
                tracing::warn!("sending the last spans: {e}");
            }
        }
    }
}

/// A span of ours whose context records carry on (`traceparent`).
pub struct TraceSpan {
    span: BoxedSpan,
    traceparent: Option<Arc<str>>,
}

impl std::fmt::Debug for TraceSpan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceSpan")
            .field("traceparent", &self.traceparent)
            .finish_non_exhaustive()
    }
}

impl TraceSpan {
    /// Start `name`, a child of `parent` (a `traceparent` value) or a new trace; `None`
    /// when tracing is off.
    pub fn start(
        name: impl Into<std::borrow::Cow<'static, str>>,
        parent: Option<&str>,
        attributes: Vec<KeyValue>,
    ) -> Option<TraceSpan> {
        if !enabled() {
            return None;
        }
        let propagator = TraceContextPropagator::new();
        let parent_cx = match parent {
            Some(traceparent) => {
                let carrier = HashMap::from([(TRACEPARENT.to_owned(), traceparent.to_owned())]);
                propagator.extract(&carrier)
            }
            None => Context::new(),
        };
        let tracer = global::tracer("funnelhub");
        let mut span = tracer.start_with_context(name, &parent_cx);
        span.set_attributes(attributes);
        let cx = Context::new().with_remote_span_context(span.span_context().clone());
        let mut carrier = HashMap::new();
        propagator.inject_context(&cx, &mut carrier);
        Some(TraceSpan {
            span,
            traceparent: carrier.remove(TRACEPARENT).map(Arc::from),
        })
    }

    /// The context records derived under this span carry (`None` for an invalid context;
    /// an unsampled span still passes its "not sampled" decision on).
    pub fn traceparent(&self) -> Option<&Arc<str>> {
        self.traceparent.as_ref()
    }

    /// Mark the span failed.
    pub fn fail(&mut self, reason: impl Into<std::borrow::Cow<'static, str>>) {
        self.span.set_status(Status::error(reason));
    }

    /// End it now (dropping it ends it too).
    pub fn end(mut self) {
        self.span.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_made_while_tracing_is_off() {
        let telemetry = Telemetry::start(&TelemetryConfig::default(), "test").expect("off");
        assert!(telemetry.provider.is_none());
        assert!(TraceSpan::start("x", None, Vec::new()).is_none());
    }

    #[test]
    fn a_bad_ratio_is_refused() {
        let config = TelemetryConfig {
            otlp_endpoint: Some("http://127.0.0.1:4318".into()),
            sample_ratio: 2.0,
            ..TelemetryConfig::default()
        };
        let err = Telemetry::start(&config, "test").expect_err("ratio");
        assert!(err.contains("sample_ratio"), "{err}");
    }
}

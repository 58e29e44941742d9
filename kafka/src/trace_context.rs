//! Trace context on records: the `traceparent` header ([`funnelhub_runtime::telemetry`]).
//! A stage opens one span per traced record of a batch, a child of the record's context,
//! and the outputs derived from that record carry the child's context on.

use std::collections::HashMap;
use std::sync::Arc;

use funnelhub_runtime::telemetry::{TraceSpan, TRACEPARENT};
use opentelemetry::KeyValue;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::Message;

use crate::stage::{Output, Record};

/// The `traceparent` a consumed message carries.
pub fn of_message(message: &impl Message) -> Option<Arc<str>> {
    let headers = message.headers()?;
    headers
        .iter()
        .find(|h| h.key == TRACEPARENT)
        .and_then(|h| std::str::from_utf8(h.value?).ok())
        .map(Arc::from)
}

/// The headers of a record carrying `traceparent`.
pub fn headers(traceparent: &str) -> OwnedHeaders {
    OwnedHeaders::new().insert(Header {
        key: TRACEPARENT,
        value: Some(traceparent),
    })
}

/// The spans of one batch: one per traced record, keyed by the record's `traceparent`.
#[derive(Debug, Default)]
pub struct BatchSpans {
    spans: HashMap<Arc<str>, TraceSpan>,
}

impl BatchSpans {
    /// Open the spans of `stage` for the traced records of `batch` (none while tracing is
    /// off or no record is traced).
    pub fn start(stage: &'static str, batch: &[Record]) -> BatchSpans {
        let mut spans = HashMap::new();
        for record in batch {
            let Some(parent) = &record.trace else {
                continue;
            };
            if spans.contains_key(parent) {
                continue;
            }
            let attributes = vec![
                KeyValue::new("funnelhub.stage", stage),
                KeyValue::new("messaging.destination.name", record.topic.to_string()),
                KeyValue::new(
                    "messaging.destination.partition.id",
                    record.partition.to_string(),
                ),
                KeyValue::new("messaging.kafka.offset", record.offset),
            ];
            if let Some(span) = TraceSpan::start(stage, Some(parent), attributes) {
                spans.insert(parent.clone(), span);
            }
        }
        BatchSpans { spans }
    }

    /// Outputs derived from a traced record carry its span's context instead of the
    /// record's (tracing off here: the record's context goes on unchanged).
    pub fn carry(&self, outputs: &mut [Output]) {
        if self.spans.is_empty() {
            return;
        }
        for output in outputs {
            if let Some(span) = output.trace.as_ref().and_then(|t| self.spans.get(t)) {
                output.trace = span.traceparent().cloned();
            }
        }
    }

    /// End every span, failed with `failure` if the batch failed.
    pub fn end(self, failure: Option<&str>) {
        for (_, mut span) in self.spans {
            if let Some(reason) = failure {
                span.fail(reason.to_owned());
            }
            span.end();
        }
    }
}

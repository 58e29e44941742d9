//! Writing edge events to their raw topics.
//!
//! A request is answered 2xx only after the broker acknowledged its record (idempotent
//! producer, `acks=all`). When the broker does not acknowledge within
//! `produce_timeout_ms` (down, partitioned, queue full), the request gets 503 with
//! `Retry-After` and the sender retries; the retry carries the same deterministic
//! `event_id`, so a record that was in fact stored before the timeout is deduplicated
//! downstream.

use std::time::{Duration, Instant};

use funnelhub_kafka::admin::{catalog_requests, ensure_topics};
use funnelhub_kafka::{AckedProducer, KafkaConfig, SchemaRegistry, TopicCodec};
use funnelhub_runtime::telemetry::TraceSpan;
use funnelhub_schemas::events::{EdgeEvent, OnboardingEvent, OrderEvent, RawWebhook, TrackingHit};
use funnelhub_schemas::Catalog;
use opentelemetry::KeyValue;
use rdkafka::producer::Producer;

use crate::metrics;
use funnelhub_runtime::api::ApiError;

/// The edge's producer and the codecs of the three raw topics.
pub struct EdgeProducer {
    producer: AckedProducer,
    tracking: TopicCodec<TrackingHit>,
    orders: TopicCodec<OrderEvent>,
    onboarding: TopicCodec<OnboardingEvent>,
    raw_webhooks: TopicCodec<RawWebhook>,
    retry_after_secs: u32,
}

impl std::fmt::Debug for EdgeProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeProducer")
            .field("tracking", &self.tracking)
            .finish_non_exhaustive()
    }
}

impl EdgeProducer {
    /// Create missing topics, register the raw topics' schemas, open the producer.
    pub async fn connect(
        kafka: &KafkaConfig,
        registry: &SchemaRegistry,
        produce_timeout: Duration,
        retry_after_secs: u32,
    ) -> Result<Self, funnelhub_kafka::Error> {
        ensure_topics(kafka, &catalog_requests(kafka)).await?;
        let catalog = Catalog::new(&kafka.topic_prefix);
        use funnelhub_schemas::topics::{RAW_ONBOARDING, RAW_ORDERS, RAW_TRACKING, RAW_WEBHOOKS};
        let edge = EdgeProducer {
            producer: AckedProducer::new(kafka, "funnelhub-edge", produce_timeout)?,
            tracking: TopicCodec::of(registry, &catalog, RAW_TRACKING).await?,
            orders: TopicCodec::of(registry, &catalog, RAW_ORDERS).await?,
            onboarding: TopicCodec::of(registry, &catalog, RAW_ONBOARDING).await?,
            raw_webhooks: TopicCodec::of(registry, &catalog, RAW_WEBHOOKS).await?,
            retry_after_secs,
        };
        // Learn the raw topics' leaders before the first request, not during it.
        for topic in [
            edge.tracking.topic(),
            edge.orders.topic(),
            edge.onboarding.topic(),
            edge.raw_webhooks.topic(),
        ] {
            let (client, topic) = (edge.producer.inner().clone(), topic.to_owned());
            tokio::task::spawn_blocking(move || {
                client
                    .client()
                    .fetch_metadata(Some(&topic), Duration::from_secs(10))
            })
            .await
            .map_err(|e| funnelhub_kafka::Error::Admin(e.to_string()))??;
        }
        Ok(edge)
    }

    /// The underlying producer (readiness checks).
    pub fn producer(&self) -> &AckedProducer {
        &self.producer
    }

    /// Encode `event`, write it, and return once the broker acknowledged it.
    pub async fn send(&self, event: &EdgeEvent) -> Result<(), ApiError> {
        let (topic, payload) = match event {
            EdgeEvent::TrackingHit(e) => (self.tracking.topic(), self.tracking.encode(e)),
            EdgeEvent::OrderEvent(e) => (self.orders.topic(), self.orders.encode(e)),
            EdgeEvent::OnboardingEvent(e) => (self.onboarding.topic(), self.onboarding.encode(e)),
        };
        let payload = payload.map_err(|e| {
            ApiError::Internal(format!("encoding {}: {e}", event.envelope().event_id))
        })?;
        let envelope = event.envelope();
        let attributes = vec![
            KeyValue::new("funnelhub.tenant_id", envelope.tenant_id.clone()),
            KeyValue::new("funnelhub.event_id", envelope.event_id.clone()),
            KeyValue::new("funnelhub.event_type", envelope.event_type.as_str()),
        ];
        self.write(topic, &event.key(), &payload, attributes).await
    }

    /// Write a signed delivery kept raw, once the broker acknowledged it.
    pub async fn send_raw_webhook(&self, raw: &RawWebhook) -> Result<(), ApiError> {
        let payload = self
            .raw_webhooks
            .encode(raw)
            .map_err(|e| ApiError::Internal(format!("encoding {}: {e}", raw.webhook_id)))?;
        let attributes = vec![
            KeyValue::new("funnelhub.tenant_id", raw.tenant_id.clone()),
            KeyValue::new("funnelhub.webhook_id", raw.webhook_id.clone()),
        ];
        self.write(self.raw_webhooks.topic(), &raw.key(), &payload, attributes)
            .await
    }

    /// Write one encoded record and wait for the broker's acknowledgement.
    async fn write(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
        mut attributes: Vec<KeyValue>,
    ) -> Result<(), ApiError> {
        attributes.push(KeyValue::new(
            "messaging.destination.name",
            topic.to_owned(),
        ));
        // The event's trace starts here; every stage it reaches adds its span.
        let span = TraceSpan::start("edge", None, attributes);
        let started = Instant::now();
        let result = self
            .producer
            .send_traced(
                topic,
                key.as_bytes(),
                Some(payload),
                span.as_ref().and_then(|s| s.traceparent()).map(|t| &**t),
            )
            .await;
        metrics::produce_latency(topic, started.elapsed(), result.is_ok());
        if let Some(mut span) = span {
            if let Err(e) = &result {
                span.fail(e.to_string());
            }
            span.end();
        }
        result.map(|_| ()).map_err(|e| ApiError::Unavailable {
            reason: format!("event not stored, the broker did not acknowledge: {e}"),
            retry_after_secs: self.retry_after_secs,
        })
    }
}

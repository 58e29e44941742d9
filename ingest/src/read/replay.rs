//! `POST /api/v1/replay/{event_id}`: send one event to Meta again.
//!
//! The event's newest dispatch request is found in ClickHouse (`capi_requests` keeps each
//! request's position in `capi.requests`), read back from Kafka at that position, and
//! written again, bytes and key unchanged, to `capi.requests`. The CAPI sink then treats
//! it as any request: same `event_id` (Meta deduplicates within 48 h), still blocked if
//! it was blocked (a replay never bypasses consent), dead-lettered again if still invalid.

use std::time::{Duration, Instant};

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use clickhouse::Row;
use funnelhub_kafka::client;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::Deserialize;
use serde_json::json;

use super::{ReadApi, Reader};
use funnelhub_runtime::api::ApiError;

#[derive(Debug, Row, Deserialize)]
struct Stored {
    dispatch_id: String,
    event_name: String,
    source_topic: String,
    source_partition: i32,
    source_offset: i64,
}

pub async fn replay(reader: Reader, Path(event_id): Path<String>) -> Result<Response, ApiError> {
    reader.require(funnelhub_tenants::KeyScope::Admin)?;
    let (tenant, api) = (&reader.tenant, reader.api());
    // Each replay opens a Kafka consumer: a bounded number at once, whoever asks.
    let _slot = api.replays.take()?;
    let q = api
        .query(
            "SELECT dispatch_id, event_name, source_topic, source_partition, source_offset \
             FROM {db}.capi_requests FINAL WHERE tenant_id = ? AND event_id = ? \
             ORDER BY event_time_ms DESC, source_offset DESC LIMIT 1",
        )
        .await?
        .bind(&tenant.id)
        .bind(&event_id);
    let Some(stored) = reader.run(api.fetch::<Stored>(q)).await?.pop() else {
        return Err(ApiError::NotFound(format!(
            "dispatch request for event {event_id}"
        )));
    };
    let (key, value) = read_at(api, &stored).await?;
    let written = api
        .producer
        .send(&stored.source_topic, &key, Some(&value))
        .await
        .map_err(|e| ApiError::Unavailable {
            reason: format!("re-enqueueing: {e}"),
            retry_after_secs: api.retry_after_secs,
        })?;
    tracing::info!(tenant = %tenant.id, %event_id, dispatch_id = %stored.dispatch_id, "dispatch re-enqueued");
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "status": "requeued",
            "event_id": event_id,
            "event_name": stored.event_name,
            "dispatch_id": stored.dispatch_id,
            "from": {"topic": stored.source_topic, "partition": stored.source_partition, "offset": stored.source_offset},
            "to": {"partition": written.partition, "offset": written.offset},
        })),
    )
        .into_response())
}

/// The record at the stored position.
async fn read_at(api: &ReadApi, stored: &Stored) -> Result<(Vec<u8>, Vec<u8>), ApiError> {
    let gone = |why: String| {
        ApiError::NotFound(format!("the stored request is no longer in Kafka: {why}"))
    };
    let consumer: BaseConsumer = client::consumer_config(&api.kafka, "funnelhub-replay", &[])
        .set("group.id", "funnelhub-replay-reader")
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| api.unavailable_kafka(e))?;
    let (topic, partition, offset) = (
        stored.source_topic.clone(),
        stored.source_partition,
        stored.source_offset,
    );
    let read = tokio::task::spawn_blocking(move || {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, partition, Offset::Offset(offset))
            .map_err(|e| e.to_string())?;
        consumer.assign(&tpl).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(500)) {
                Some(Ok(m)) if m.offset() == offset => {
                    return Ok(Some((
                        m.key().unwrap_or_default().to_vec(),
                        m.payload().unwrap_or_default().to_vec(),
                    )))
                }
                Some(Ok(m)) if m.offset() > offset => return Ok(None),
                Some(Err(e)) => return Err(e.to_string()),
                _ => {}
            }
        }
        Err("no answer within 10 s".to_string())
    })
    .await
    .map_err(|e| api.unavailable_kafka(e))?;
    match read {
        Ok(Some(record)) => Ok(record),
        Ok(None) => Err(gone("expired by retention".into())),
        Err(e) => Err(api.unavailable_kafka(e)),
    }
}

impl ReadApi {
    fn unavailable_kafka(&self, e: impl std::fmt::Display) -> ApiError {
        ApiError::Unavailable {
            reason: format!("Kafka: {e}"),
            retry_after_secs: self.retry_after_secs,
        }
    }
}

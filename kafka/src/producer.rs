//! Sends that end with the broker's acknowledgement, or with the caller's deadline.
//!
//! librdkafka never times a message out here (`message.timeout.ms=0`, retries without
//! end): the caller's deadline is applied to *waiting for* the acknowledgement instead.
//! A send past its deadline reports [`SendError::NotAcknowledged`] (the edge answers 503,
//! a processor does not commit), while the record stays queued and is written once the
//! broker is reachable; the sender's retry carries the same deterministic id, so the
//! extra copy is deduplicated downstream.
//!
//! Why not let librdkafka time messages out: with `enable.idempotence`, a timed-out
//! message leaves a gap in the producer's sequence numbers and librdkafka bumps the
//! producer epoch itself; some Kafka-protocol brokers fail on the bump, and never timing
//! out avoids the gap on every broker ([ADR 004](../../docs/adr/004-producer-deadlines.md)).

use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

use crate::{client, Error, KafkaConfig};

/// Where an acknowledged record was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub partition: i32,
    pub offset: i64,
}

/// Why a send did not end with an acknowledgement.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Not acknowledged within the deadline (broker unreachable or slow, queue full). The
    /// record may still be written later.
    #[error("not acknowledged within {0:?}")]
    NotAcknowledged(Duration),
    /// The broker or client refused the record.
    #[error(transparent)]
    Kafka(#[from] KafkaError),
}

/// An idempotent, `acks=all` producer with a per-send deadline.
#[derive(Clone)]
pub struct AckedProducer {
    producer: FutureProducer,
    deadline: Duration,
}

impl std::fmt::Debug for AckedProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AckedProducer")
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl AckedProducer {
    /// `deadline` bounds how long one send waits for queue space and acknowledgement.
    pub fn new(config: &KafkaConfig, client_id: &str, deadline: Duration) -> Result<Self, Error> {
        Ok(AckedProducer {
            producer: client::acked_producer(config, client_id)?,
            deadline,
        })
    }

    /// The underlying producer (metadata requests, flushing).
    pub fn inner(&self) -> &FutureProducer {
        &self.producer
    }

    /// Send and wait for the broker's acknowledgement, at most the deadline.
    /// A `None` payload is a tombstone (deletes the key in a compacted topic).
    pub async fn send(
        &self,
        topic: &str,
        key: &[u8],
        payload: Option<&[u8]>,
    ) -> Result<Written, SendError> {
        self.send_traced(topic, key, payload, None).await
    }

    /// [`AckedProducer::send`], the record carrying `traceparent` (trace context) if given.
    pub async fn send_traced(
        &self,
        topic: &str,
        key: &[u8],
        payload: Option<&[u8]>,
        traceparent: Option<&str>,
    ) -> Result<Written, SendError> {
        let mut record = FutureRecord::to(topic).key(key);
        if let Some(payload) = payload {
            record = record.payload(payload);
        }
        if let Some(traceparent) = traceparent {
            record = record.headers(crate::trace_context::headers(traceparent));
        }
        let send = self.producer.send(record, Timeout::After(self.deadline));
        match tokio::time::timeout(self.deadline, send).await {
            Err(_) => Err(SendError::NotAcknowledged(self.deadline)),
            Ok(Err((
                KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                _,
            ))) => Err(SendError::NotAcknowledged(self.deadline)),
            Ok(Err((error, _))) => Err(SendError::Kafka(error)),
            Ok(Ok(delivery)) => Ok(Written {
                partition: delivery.partition,
                offset: delivery.offset,
            }),
        }
    }
}

//! Writing a batch's outputs and state changes: pipelined, each acknowledged.

use std::collections::VecDeque;
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;

use super::Output;
use crate::trace_context;

/// One record of a state topic: `None` is a tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StateRecord {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

/// Write every output (pipelined; to `Some` partition, or by key) and wait until all are
/// acknowledged. A full producer queue waits for the oldest send instead of failing.
pub async fn send_all<'a>(
    producer: &FutureProducer,
    outputs: impl IntoIterator<Item = (&'a Output, Option<i32>)>,
) -> Result<(), KafkaError> {
    let mut records = Vec::new();
    for (output, partition) in outputs {
        let mut record = FutureRecord::to(&output.topic)
            .key(&output.key[..])
            .payload(&output.value[..]);
        if let Some(partition) = partition {
            record = record.partition(partition);
        }
        if let Some(traceparent) = &output.trace {
            record = record.headers(trace_context::headers(traceparent));
        }
        records.push(record);
    }
    send_records(producer, records).await
}

/// Write state records to one partition of `topic`, acknowledged like [`send_all`].
pub(super) async fn send_state(
    producer: &FutureProducer,
    topic: &str,
    partition: i32,
    state: &[StateRecord],
) -> Result<(), KafkaError> {
    let mut records = Vec::with_capacity(state.len());
    for change in state {
        let record = FutureRecord::to(topic)
            .key(&change.key[..])
            .partition(partition);
        records.push(match &change.value {
            Some(value) => record.payload(&value[..]),
            None => record,
        });
    }
    send_records(producer, records).await
}

async fn send_records(
    producer: &FutureProducer,
    records: Vec<FutureRecord<'_, [u8], [u8]>>,
) -> Result<(), KafkaError> {
    let mut pending: VecDeque<DeliveryFuture> = VecDeque::new();
    for mut record in records {
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    pending.push_back(delivery);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    match pending.pop_front() {
                        Some(oldest) => acknowledged(oldest).await?,
                        None => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
                Err((e, _)) => return Err(e),
            }
        }
    }
    for delivery in pending {
        acknowledged(delivery).await?;
    }
    Ok(())
}

async fn acknowledged(delivery: DeliveryFuture) -> Result<(), KafkaError> {
    match delivery.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(e),
        Err(_) => Err(KafkaError::Canceled),
    }
}

/// Whether writing again cannot help: the record itself is refused (too large, invalid) or
/// the stage may not write there. Everything else (timeouts, leaders moving, a broker
/// restarting) passes.
pub(crate) fn is_permanent(e: &KafkaError) -> bool {
    use RDKafkaErrorCode::*;
    let code = match e {
        KafkaError::MessageProduction(code) => *code,
        _ => return false,
    };
    matches!(
        code,
        MessageSizeTooLarge
            | InvalidMessageSize
            | InvalidMessage
            | InvalidRecord
            | MessageBatchTooLarge
            | TopicAuthorizationFailed
            | ClusterAuthorizationFailed
            | InvalidRequiredAcks
    )
}

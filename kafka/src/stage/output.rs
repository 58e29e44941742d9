//! Writing a batch's outputs and changelog records: pipelined, each acknowledged.

use std::collections::VecDeque;
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;

use super::Output;
use crate::trace_context;

/// Write every output (pipelined; to `Some` partition, or by key) and wait until all are
/// acknowledged. A full producer queue waits for the oldest send instead of failing.
pub async fn send_all<'a>(
    producer: &FutureProducer,
    outputs: impl IntoIterator<Item = (&'a Output, Option<i32>)>,
) -> Result<(), KafkaError> {
    let mut pending: VecDeque<DeliveryFuture> = VecDeque::new();
    for (output, partition) in outputs {
        loop {
            let mut record = FutureRecord::to(&output.topic)
                .key(&output.key)
                .payload(&output.value);
            if let Some(partition) = partition {
                record = record.partition(partition);
            }
            if let Some(traceparent) = &output.trace {
                record = record.headers(trace_context::headers(traceparent));
            }
            match producer.send_result(record) {
                Ok(delivery) => {
                    pending.push_back(delivery);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
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

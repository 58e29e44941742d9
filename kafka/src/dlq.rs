//! The dead-letter topic: a record a stage cannot process is written there with the reason,
//! its original key and value untouched, and the stage moves on.

use std::sync::Arc;

use funnelhub_schemas::derived::{DlqReason, DlqRecord};
use funnelhub_schemas::ids::{deterministic_id, now_ms};

use crate::stage::{Output, Record};
use crate::{DecodeError, Error, TopicCodec};

/// Writes [`DlqRecord`]s for one stage.
#[derive(Debug)]
pub struct DeadLetters {
    stage: &'static str,
    codec: TopicCodec<DlqRecord>,
}

impl DeadLetters {
    /// Dead letters of `stage`, written with `codec` (the catalog's `dlq` topic).
    pub fn new(stage: &'static str, codec: TopicCodec<DlqRecord>) -> Self {
        DeadLetters { stage, codec }
    }

    /// The dead letter of `record`. Its id is a function of stage and source position, so
    /// re-reading the record writes the same dead letter again.
    pub fn letter(
        &self,
        record: &Record,
        reason: DlqReason,
        error: String,
    ) -> Result<Output, Error> {
        metrics::counter!(
            "funnelhub_dlq_records_total",
            "stage" => self.stage,
            "reason" => reason_name(reason),
        )
        .increment(1);
        tracing::warn!(
            stage = self.stage,
            topic = %record.topic,
            partition = record.partition,
            offset = record.offset,
            reason = reason_name(reason),
            "dead-lettered: {error}"
        );
        let letter = DlqRecord {
            dlq_id: deterministic_id(
                "dlq",
                &[
                    self.stage,
                    &record.topic,
                    &record.partition.to_string(),
                    &record.offset.to_string(),
                ],
            ),
            stage: self.stage.to_owned(),
            reason,
            error,
            source: Some(record.position()),
            tenant_id: None,
            event_id: None,
            key: record.key.clone(),
            value: record.value.clone(),
            failed_at: now_ms(),
        };
        Ok(Output {
            topic: Arc::from(self.codec.topic()),
            key: record.key.clone().unwrap_or_default(),
            value: self.codec.encode(&letter)?,
        })
    }

    /// The dead letter of a record that did not decode. `None` when the failure is an
    /// outage (registry unreachable): retry instead.
    pub fn undecodable(
        &self,
        record: &Record,
        error: &DecodeError,
    ) -> Option<Result<Output, Error>> {
        let reason = match error {
            DecodeError::Undecodable(_) => DlqReason::Undecodable,
            DecodeError::UnknownSchema(_) => DlqReason::UnknownSchema,
            DecodeError::Registry(_) => return None,
        };
        Some(self.letter(record, reason, error.to_string()))
    }
}

fn reason_name(reason: DlqReason) -> &'static str {
    match reason {
        DlqReason::Undecodable => "undecodable",
        DlqReason::UnknownSchema => "unknown_schema",
        DlqReason::InvalidRecord => "invalid_record",
        DlqReason::PermanentDeliveryFailure => "permanent_delivery_failure",
        DlqReason::Unknown => "unknown",
    }
}

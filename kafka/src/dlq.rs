//! The dead-letter topic: a record a stage cannot process is written there with the reason,
//! its original key and value untouched, and the stage moves on.

use std::sync::Arc;

use funnelhub_schemas::derived::{DlqReason, DlqRecord};
use funnelhub_schemas::ids::{deterministic_id, now_ms};
use funnelhub_schemas::AvroRecord;

use futures::future::BoxFuture;

use crate::stage::{Dependency, Output, ProcessError, Record};
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
        self.letter_of(record, reason, error, None, None)
    }

    /// [`DeadLetters::letter`] of a decoded record, naming its tenant and event.
    pub fn letter_of(
        &self,
        record: &Record,
        reason: DlqReason,
        error: String,
        tenant_id: Option<&str>,
        event_id: Option<&str>,
    ) -> Result<Output, Error> {
        metrics::counter!(
            "funnelhub_dlq_records_total",
            "stage" => self.stage,
            "reason" => reason.as_str(),
        )
        .increment(1);
        tracing::warn!(
            stage = self.stage,
            topic = %record.topic,
            partition = record.partition,
            offset = record.offset,
            reason = reason.as_str(),
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
            tenant_id: tenant_id.map(str::to_owned),
            event_id: event_id.map(str::to_owned),
            key: record.key.clone(),
            value: record.value.clone(),
            failed_at: now_ms(),
        };
        Ok(Output {
            topic: Arc::from(self.codec.topic()),
            key: record.key.clone().unwrap_or_default(),
            value: self.codec.encode(&letter)?,
            trace: record.trace.clone(),
        })
    }

    /// Decode every record of `batch` with `decode`. A record without a value, or whose
    /// bytes do not decode, becomes its dead letter (`Err`); a registry outage fails the
    /// whole batch as retryable, before the caller changed any state.
    pub async fn decode_batch<T, F>(
        &self,
        batch: &[Record],
        decode: F,
    ) -> Result<Vec<Result<T, Output>>, ProcessError>
    where
        F: for<'a> Fn(&'a Record, &'a [u8]) -> BoxFuture<'a, Result<T, DecodeError>>,
    {
        let mut decoded = Vec::with_capacity(batch.len());
        for record in batch {
            decoded.push(match record.value.as_deref() {
                None => Err(missing_value()),
                Some(bytes) => classify(decode(record, bytes).await)?,
            });
        }
        self.letters(batch, decoded)
    }

    /// [`DeadLetters::decode_batch`] for a topic of one value type.
    pub async fn decode_all<T: AvroRecord>(
        &self,
        batch: &[Record],
        codec: &TopicCodec<T>,
    ) -> Result<Vec<Result<T, Output>>, ProcessError> {
        let mut decoded = Vec::with_capacity(batch.len());
        for record in batch {
            decoded.push(match record.value.as_deref() {
                None => Err(missing_value()),
                Some(bytes) => classify(codec.decode(bytes).await)?,
            });
        }
        self.letters(batch, decoded)
    }

    /// Each failure as its dead letter.
    fn letters<T>(
        &self,
        batch: &[Record],
        decoded: Vec<Result<T, (DlqReason, String)>>,
    ) -> Result<Vec<Result<T, Output>>, ProcessError> {
        batch
            .iter()
            .zip(decoded)
            .map(|(record, decoded)| match decoded {
                Ok(value) => Ok(Ok(value)),
                Err((reason, error)) => self
                    .letter(record, reason, error)
                    .map(Err)
                    .map_err(|e| ProcessError::Fatal(e.to_string())),
            })
            .collect()
    }
}

fn missing_value() -> (DlqReason, String) {
    (DlqReason::InvalidRecord, "record has no value".to_owned())
}

/// A decoded value, or why its record is dead-lettered; a registry outage is retryable.
#[allow(clippy::type_complexity)]
fn classify<T>(
    decoded: Result<T, DecodeError>,
) -> Result<Result<T, (DlqReason, String)>, ProcessError> {
    match decoded {
        Ok(value) => Ok(Ok(value)),
        Err(DecodeError::Registry(e)) => Err(ProcessError::unavailable(Dependency::Registry, e)),
        Err(e @ DecodeError::Undecodable(_)) => Ok(Err((DlqReason::Undecodable, e.to_string()))),
        Err(e @ DecodeError::UnknownSchema(_)) => {
            Ok(Err((DlqReason::UnknownSchema, e.to_string())))
        }
    }
}

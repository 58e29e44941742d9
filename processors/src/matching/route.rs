//! The match router: `deduped.events` → `matching.inputs`, the same records keyed by
//! tenant, so that every visit and conversion of a tenant reaches one matcher partition
//! (the rules compare a conversion with any of the tenant's visits).
//!
//! Stateless and decode-free: the value is copied byte for byte (its schema id stays
//! valid, `matching.inputs` has the same value schema) and the key is the part of the
//! `deduped.events` key before the first `:`, which is the tenant id (or, for a tenant id
//! holding `:`, a prefix of it: still the same for all of that tenant's records).

use std::sync::Arc;

use funnelhub_kafka::dlq::DeadLetters;
use funnelhub_kafka::stage::{Output, PartitionProcessor, ProcessError, Record, Stage};
use funnelhub_kafka::TopicCodec;
use funnelhub_schemas::derived::DlqReason;
use funnelhub_schemas::state::MatchEntry;
use funnelhub_schemas::StageId;

use crate::dedupe::fatal;

/// The router: which topic it reads and which it writes.
#[derive(Debug)]
pub struct RouteStage {
    pub(crate) deduped: String,
    pub(crate) inputs: Arc<str>,
    pub(crate) dead_letters: Arc<DeadLetters>,
}

impl Stage for RouteStage {
    type Processor = RouteProcessor;

    fn name(&self) -> &'static str {
        StageId::MatchRoute.name()
    }

    fn inputs(&self) -> Vec<String> {
        vec![self.deduped.clone()]
    }

    fn state(&self) -> Option<&TopicCodec<MatchEntry>> {
        None
    }

    fn processor(self: &Arc<Self>, _topic: &str, _partition: i32) -> RouteProcessor {
        RouteProcessor(self.clone())
    }
}

/// The router of one partition (no state).
#[derive(Debug)]
pub struct RouteProcessor(Arc<RouteStage>);

/// The tenant part of a `deduped.events` key.
pub fn tenant_of(key: &[u8]) -> &[u8] {
    key.split(|b| *b == b':').next().unwrap_or(key)
}

impl PartitionProcessor for RouteProcessor {
    type State = MatchEntry;

    async fn process(
        &mut self,
        batch: &[Record],
        out: &mut Vec<Output>,
    ) -> Result<(), ProcessError> {
        for record in batch {
            match (&record.key, &record.value) {
                (Some(key), Some(value)) if !tenant_of(key).is_empty() => out.push(Output {
                    topic: self.0.inputs.clone(),
                    key: tenant_of(key).to_vec(),
                    value: value.clone(),
                    trace: record.trace.clone(),
                }),
                _ => out.push(
                    self.0
                        .dead_letters
                        .letter(
                            record,
                            DlqReason::InvalidRecord,
                            "a deduped event without a tenant key or a value".into(),
                        )
                        .map_err(fatal)?,
                ),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tenant_is_the_key_up_to_the_first_colon() {
        assert_eq!(tenant_of(b"acme:sess-1"), b"acme");
        assert_eq!(tenant_of(b"acme:stripe:pi_1"), b"acme");
        assert_eq!(tenant_of(b"acme"), b"acme");
    }
}

//! One contract per topic: each catalog [`Topic`] with the Rust type of its values, so a
//! service cannot write or read a topic with the wrong type (`TopicCodec::of` takes a
//! [`Typed`] topic and yields a codec of exactly that type). The key layout of each topic is
//! its catalog entry's `key`; the tests check that every topic has one typed definition and
//! that its type's schema is the catalog's value schema.

use std::marker::PhantomData;
use std::sync::Arc;

use crate::catalog::Topic;
use crate::control::TenantRecord;
use crate::derived::{
    CapiDispatchRequest, DedupedEvent, DispatchAttempt, DlqRecord, FunnelTransition, MatchResult,
    OpsTicket,
};
use crate::events::{OnboardingEvent, OrderEvent, RawWebhook, TrackingHit};
use crate::privacy::Suppression;
use crate::setup::{SetupActionLog, SetupMessage, SetupSession};
use crate::state::{DedupeEntry, FunnelSession, MatchEntry};

/// A topic whose values are `V`.
#[derive(Debug)]
pub struct Typed<V> {
    pub topic: Topic,
    value: PhantomData<fn() -> V>,
}

impl<V> Clone for Typed<V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<V> Copy for Typed<V> {}

impl<V> Typed<V> {
    const fn new(topic: Topic) -> Typed<V> {
        Typed {
            topic,
            value: PhantomData,
        }
    }
}

pub const RAW_TRACKING: Typed<TrackingHit> = Typed::new(Topic::RawTracking);
pub const RAW_ORDERS: Typed<OrderEvent> = Typed::new(Topic::RawOrders);
pub const RAW_ONBOARDING: Typed<OnboardingEvent> = Typed::new(Topic::RawOnboarding);
pub const DEDUPED: Typed<DedupedEvent> = Typed::new(Topic::Deduped);
pub const FUNNEL_TRANSITIONS: Typed<FunnelTransition> = Typed::new(Topic::FunnelTransitions);
pub const OPS_TICKETS: Typed<OpsTicket> = Typed::new(Topic::OpsTickets);
pub const MATCHING_INPUTS: Typed<DedupedEvent> = Typed::new(Topic::MatchingInputs);
pub const MATCH_RESULTS: Typed<MatchResult> = Typed::new(Topic::MatchResults);
pub const CAPI_REQUESTS: Typed<CapiDispatchRequest> = Typed::new(Topic::CapiRequests);
pub const CAPI_ATTEMPTS: Typed<DispatchAttempt> = Typed::new(Topic::CapiAttempts);
pub const DLQ: Typed<DlqRecord> = Typed::new(Topic::Dlq);
pub const DEDUPE_STATE: Typed<DedupeEntry> = Typed::new(Topic::DedupeState);
pub const FUNNEL_STATE: Typed<Arc<FunnelSession>> = Typed::new(Topic::FunnelState);
pub const MATCH_STATE: Typed<MatchEntry> = Typed::new(Topic::MatchState);
pub const SUPPRESSIONS: Typed<Suppression> = Typed::new(Topic::Suppressions);
pub const TENANTS: Typed<TenantRecord> = Typed::new(Topic::Tenants);
pub const SETUP_SESSIONS: Typed<SetupSession> = Typed::new(Topic::SetupSessions);
pub const SETUP_ACTIONS: Typed<SetupActionLog> = Typed::new(Topic::SetupActions);
pub const RAW_WEBHOOKS: Typed<RawWebhook> = Typed::new(Topic::RawWebhooks);
pub const SETUP_MESSAGES: Typed<SetupMessage> = Typed::new(Topic::SetupMessages);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AvroRecord;

    fn entry<V: AvroRecord>(typed: Typed<V>) -> (Topic, &'static str) {
        (typed.topic, V::FULL_NAME)
    }

    #[test]
    fn every_topic_has_one_typed_definition_of_its_catalog_schema() {
        let typed = [
            entry(RAW_TRACKING),
            entry(RAW_ORDERS),
            entry(RAW_ONBOARDING),
            entry(DEDUPED),
            entry(FUNNEL_TRANSITIONS),
            entry(OPS_TICKETS),
            entry(MATCHING_INPUTS),
            entry(MATCH_RESULTS),
            entry(CAPI_REQUESTS),
            entry(CAPI_ATTEMPTS),
            entry(DLQ),
            entry(DEDUPE_STATE),
            entry(FUNNEL_STATE),
            entry(MATCH_STATE),
            entry(SUPPRESSIONS),
            entry(TENANTS),
            entry(SETUP_SESSIONS),
            entry(SETUP_ACTIONS),
            entry(RAW_WEBHOOKS),
            entry(SETUP_MESSAGES),
        ];
        let topics: Vec<Topic> = typed.iter().map(|(t, _)| *t).collect();
        assert_eq!(
            topics,
            Topic::ALL,
            "one definition per topic, in catalog order"
        );
        for (topic, schema) in typed {
            assert_eq!(schema, topic.spec().value_schema, "{topic:?}");
        }
    }
}

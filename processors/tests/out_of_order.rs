//! The funnel's state is a function of the set of events, never of their arrival order:
//! many random orders (with duplicates) of many sessions' onboarding events all end at the
//! stage the fixed enum order says, and replaying them changes nothing.

use std::collections::{BTreeSet, HashMap};

use funnelhub_kafka::stage::StateChange;
use funnelhub_processors::funnel::{Emitted, FunnelState};
use funnelhub_schemas::common::EventType;
use funnelhub_schemas::derived::{Funnel, FunnelOutcome, FunnelStage};
use funnelhub_schemas::events::{EdgeEvent, OnboardingEvent};
use funnelhub_schemas::testing::sample_onboarding_event;
use proptest::prelude::*;

const MILESTONES: [(EventType, Option<FunnelStage>); 7] = [
    (EventType::OnboardingStarted, Some(FunnelStage::Started)),
    (
        EventType::DomainValidated,
        Some(FunnelStage::DomainValidated),
    ),
    (EventType::DnsApplied, Some(FunnelStage::DnsApplied)),
    (EventType::AccountCreated, Some(FunnelStage::AccountCreated)),
    (EventType::InfraSynced, Some(FunnelStage::InfraSynced)),
    (EventType::OnboardingCompleted, Some(FunnelStage::Completed)),
    (EventType::OnboardingFailed, None),
];

fn event(session: usize, milestone: usize) -> EdgeEvent {
    let mut e: OnboardingEvent = sample_onboarding_event();
    let (event_type, _) = MILESTONES[milestone];
    e.session_id = format!("s{session}");
    e.domain = format!("d{session}.com");
    e.envelope.tenant_id = "acme".into();
    e.envelope.event_type = event_type;
    e.envelope.event_id = format!("s{session}-{}", event_type.as_str());
    // Event time follows the milestone order; arrival order is what gets shuffled.
    e.envelope.occurred_at = 1_000_000 + milestone as i64 * 1000;
    e.envelope.received_at = e.envelope.occurred_at;
    EdgeEvent::OnboardingEvent(e)
}

/// Sessions, each with the milestones it emitted (indexes into MILESTONES).
fn sessions() -> impl Strategy<Value = Vec<BTreeSet<usize>>> {
    prop::collection::vec(
        prop::collection::btree_set(0..MILESTONES.len(), 1..=7),
        1..20,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn any_arrival_order_gives_the_furthest_stage(
        sessions in sessions(),
        seed in any::<u64>(),
        duplicates in prop::collection::vec(any::<prop::sample::Index>(), 0..30),
    ) {
        let mut arrivals: Vec<EdgeEvent> = sessions
            .iter()
            .enumerate()
            .flat_map(|(s, milestones)| milestones.iter().map(move |&m| event(s, m)))
            .collect();
        for d in &duplicates {
            let copy = arrivals[d.index(arrivals.len())].clone();
            arrivals.push(copy);
        }
        shuffle(&mut arrivals, seed);

        let mut state = FunnelState::new(i64::MAX / 4);
        let mut emitted = Emitted::default();
        for e in &arrivals {
            state.apply(e, 1_000_000, &mut emitted);
        }

        for (s, milestones) in sessions.iter().enumerate() {
            let session = state
                .session("acme", Funnel::Onboarding, &format!("s{s}"))
                .expect("every session is tracked");
            let furthest = milestones
                .iter()
                .filter_map(|&m| MILESTONES[m].1)
                .max()
                .unwrap_or(FunnelStage::Started);
            prop_assert_eq!(session.stage, Some(furthest));
            let failed = milestones.contains(&6);
            let expected_outcome = if furthest == FunnelStage::Completed {
                FunnelOutcome::Completed
            } else if failed {
                FunnelOutcome::Failed
            } else {
                FunnelOutcome::InProgress
            };
            prop_assert_eq!(session.outcome, expected_outcome);
            // The timeline is in event-time order and holds each event once.
            prop_assert_eq!(session.timeline.len(), milestones.len());
            prop_assert!(session.timeline.windows(2).all(|w| w[0].occurred_at <= w[1].occurred_at));
            // Stages only move forward, and every (stage, outcome) is reached once.
            prop_assert!(session.transitions.windows(2).all(|w| w[0].to_stage <= w[1].to_stage));
            let ids: BTreeSet<_> = session.transitions.iter().map(|t| &t.transition_id).collect();
            prop_assert_eq!(ids.len(), session.transitions.len());
            let last = session.transitions.last().expect("at least one transition");
            prop_assert_eq!((last.to_stage, last.outcome), (furthest, expected_outcome));
            // One ticket per kind the session produced.
            let expected_tickets = usize::from(milestones.contains(&3)) + usize::from(failed);
            prop_assert_eq!(session.tickets.len(), expected_tickets);
        }

        // A copy of an event re-emits what it caused: same id, same record.
        let by_id: HashMap<_, _> = emitted
            .transitions
            .iter()
            .map(|t| (t.transition_id.clone(), t.clone()))
            .collect();
        prop_assert!(emitted.transitions.iter().all(|t| &by_id[&t.transition_id] == t));
        let total: usize = sessions
            .iter()
            .enumerate()
            .map(|(s, _)| state.session("acme", Funnel::Onboarding, &format!("s{s}")).map_or(0, |x| x.transitions.len()))
            .sum();
        prop_assert_eq!(by_id.len(), total, "every distinct transition is in the state");

        // A replay of the same records re-emits exactly what was emitted, and nothing else.
        let mut replayed = Emitted::default();
        for e in &arrivals {
            state.apply(e, 1_000_000, &mut replayed);
        }
        let again: HashMap<_, _> = replayed
            .transitions
            .iter()
            .map(|t| (t.transition_id.clone(), t.clone()))
            .collect();
        prop_assert_eq!(again, by_id);
        let tickets: BTreeSet<_> = emitted.tickets.iter().map(|t| t.ticket_id.clone()).collect();
        let tickets_again: BTreeSet<_> = replayed.tickets.iter().map(|t| t.ticket_id.clone()).collect();
        prop_assert_eq!(tickets_again, tickets);
    }
}

/// Fisher-Yates with a small deterministic generator (the seed comes from proptest, so a
/// failing order shrinks and replays).
fn shuffle<T>(items: &mut [T], mut seed: u64) {
    for i in (1..items.len()).rev() {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let j = (seed >> 33) as usize % (i + 1);
        items.swap(i, j);
    }
}

#[test]
fn a_failure_after_completion_does_not_undo_it() {
    let mut state = FunnelState::new(i64::MAX / 4);
    let mut emitted = Emitted::default();
    state.apply(&event(1, 5), 0, &mut emitted);
    state.apply(&event(1, 6), 0, &mut emitted);
    let session = state
        .session("acme", Funnel::Onboarding, "s1")
        .expect("tracked");
    assert_eq!(session.outcome, FunnelOutcome::Completed);
    assert_eq!(emitted.transitions.len(), 1, "failure changed nothing");
    assert_eq!(
        emitted.tickets.len(),
        1,
        "but ops still get the failure ticket"
    );
    assert_eq!(
        emitted.tickets[0].subject, "[onboarding.failed] d1.com",
        "subject names the event and the domain, no personal data"
    );
}

#[test]
fn idle_sessions_expire_by_record_time() {
    let hour = 60 * 60 * 1000;
    let mut state = FunnelState::new(24 * hour);
    let mut emitted = Emitted::default();
    state.apply(&event(1, 0), 0, &mut emitted);
    state.apply(&event(2, 0), 20 * hour, &mut emitted);
    assert_eq!(state.len(), 2);
    state.take_changes();
    state.apply(&event(3, 0), 26 * hour, &mut emitted);
    assert_eq!(state.len(), 2, "session 1 idled out");
    let changes = state.take_changes();
    assert!(
        changes
            .iter()
            .any(|c| matches!(c, StateChange::Delete { key } if key.ends_with(":s1"))),
        "the idle session is deleted from the state topic: {changes:?}"
    );
    let mut restored = FunnelState::new(24 * hour);
    for change in changes {
        if let StateChange::Put { key, entry } = change {
            restored.restore(&key, entry);
        }
    }
    assert!(restored.session("acme", Funnel::Onboarding, "s1").is_none());
    assert!(restored.session("acme", Funnel::Onboarding, "s3").is_some());
}

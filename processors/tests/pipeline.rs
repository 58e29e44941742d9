//! Dedupe and funnel against the real broker and schema registry: duplicates dropped and
//! counted, a replay after an offset reset re-emitting the same outputs with the same ids,
//! poison records dead-lettered while the stage keeps going.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use funnelhub_kafka::admin::reset_group_offsets;
use funnelhub_processors::dedupe::dedupe_key;
use funnelhub_processors::funnel::{classify, Effect};
use funnelhub_processors::testing::{workload, RawWriter};
use funnelhub_schemas::common::EventType;
use funnelhub_schemas::derived::{DedupedEvent, Funnel, FunnelStage, FunnelTransition, OpsTicket};
use funnelhub_schemas::events::EdgeEvent;
use funnelhub_schemas::Topic;

mod common;

use common::{counter, wait_for, Harness};

/// What the workload must produce, computed from the events themselves.
struct Expected {
    distinct: usize,
    duplicates: usize,
    /// Furthest stage per onboarding session.
    furthest: HashMap<String, FunnelStage>,
    tickets: usize,
}

fn expected(events: &[EdgeEvent]) -> Expected {
    let mut keys = HashSet::new();
    let mut furthest: HashMap<String, FunnelStage> = HashMap::new();
    let mut tickets = HashSet::new();
    for event in events {
        keys.insert(dedupe_key(event));
        if let Some((Funnel::Onboarding, session, effect)) = classify(event) {
            let stage = match effect {
                Effect::Reach(stage) => stage,
                Effect::Fail => FunnelStage::Started,
            };
            let entry = furthest.entry(session.to_owned()).or_insert(stage);
            *entry = (*entry).max(stage);
            let kind = event.envelope().event_type;
            if matches!(
                kind,
                EventType::AccountCreated | EventType::OnboardingFailed
            ) {
                tickets.insert((session.to_owned(), kind));
            }
        }
    }
    Expected {
        distinct: keys.len(),
        duplicates: events.len() - keys.len(),
        furthest,
        tickets: tickets.len(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicates_are_dropped_and_a_replay_re_emits_the_same_outputs() {
    let harness = Harness::new("dedupe-replay").await;
    let events = workload(90, 7, true);
    let expect = expected(&events);
    assert!(expect.duplicates > 5, "the workload has duplicates");
    RawWriter::connect(&harness.kafka, &harness.registry)
        .await
        .write(&events)
        .await;
    // The records wait in Kafka before the processors start: their age says so.
    let written = std::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let processors = harness.start().await;
    wait_for("every raw record deduped", || {
        counter("funnelhub_dedupe_events_total", "verdict=\"new\"") == expect.distinct as u64
            && counter("funnelhub_dedupe_events_total", "verdict=\"duplicate\"")
                == expect.duplicates as u64
    })
    .await;
    wait_for("every deduped record through the funnel", || {
        counter("funnelhub_stage_records_total", "stage=\"funnel\"") == expect.distinct as u64
    })
    .await;
    let transitions_emitted = counter("funnelhub_funnel_transitions_total", "");
    // Record age (Kafka timestamp → now): every raw record was read at least 1.5 s old,
    // and every deduped record was done (outputs acknowledged) in the funnel.
    assert_eq!(
        counter("funnelhub_stage_read_age_seconds_count", "stage=\"dedupe\""),
        events.len() as u64
    );
    let youngest_read = counter(
        "funnelhub_stage_read_age_seconds",
        "stage=\"dedupe\",quantile=\"0\"",
    );
    assert!(
        youngest_read >= 1,
        "read after waiting 1.5 s: {youngest_read} s"
    );
    assert!(youngest_read <= written.elapsed().as_secs());
    assert_eq!(
        counter("funnelhub_stage_done_age_seconds_count", "stage=\"funnel\""),
        expect.distinct as u64
    );
    assert_eq!(
        counter("funnelhub_dedupe_events_total", "verdict=\"replay\""),
        0
    );
    // Written and acknowledged: one deduped event per distinct one, and one state entry
    // per key first seen (none leaves the window here).
    assert_eq!(
        counter(
            "funnelhub_stage_written_total",
            "stage=\"dedupe\",kind=\"output\""
        ),
        expect.distinct as u64
    );
    assert_eq!(
        counter(
            "funnelhub_stage_written_total",
            "stage=\"dedupe\",kind=\"state\""
        ),
        expect.distinct as u64
    );

    let deduped: Vec<DedupedEvent> = harness.read(Topic::Deduped, expect.distinct).await;
    let keys: HashSet<_> = deduped.iter().map(|d| d.dedupe_key.clone()).collect();
    assert_eq!(keys.len(), expect.distinct, "each event exactly once");

    // At-least-once: a record re-read after a rebalance re-emits what it caused, same id
    // and content; count distinct ids.
    let transitions: Vec<FunnelTransition> = harness
        .read(Topic::FunnelTransitions, transitions_emitted as usize)
        .await;
    let first_run: HashMap<String, FunnelTransition> = transitions
        .iter()
        .map(|t| (t.transition_id.clone(), t.clone()))
        .collect();
    assert!(transitions
        .iter()
        .all(|t| &first_run[&t.transition_id] == t));
    let mut reached: HashMap<String, FunnelStage> = HashMap::new();
    for t in transitions
        .iter()
        .filter(|t| t.funnel == Funnel::Onboarding)
    {
        let stage = reached.entry(t.subject_id.clone()).or_insert(t.to_stage);
        *stage = (*stage).max(t.to_stage);
    }
    assert_eq!(reached, expect.furthest, "current stage of every session");
    let tickets: Vec<OpsTicket> = harness
        .read(
            Topic::OpsTickets,
            counter("funnelhub_ops_tickets_total", "") as usize,
        )
        .await;
    let ticket_ids: HashSet<_> = tickets.iter().map(|t| t.ticket_id.clone()).collect();
    assert_eq!(
        ticket_ids.len(),
        expect.tickets,
        "one ticket per session and kind"
    );
    assert!(tickets.len() >= expect.tickets);
    processors.stop().await.expect("clean stop");

    // Replay: reset both groups to the beginning and run again.
    for (stage, inputs) in [
        (
            "dedupe",
            vec![Topic::RawTracking, Topic::RawOrders, Topic::RawOnboarding],
        ),
        ("funnel", vec![Topic::Deduped]),
    ] {
        let inputs: Vec<String> = inputs
            .into_iter()
            .map(|t| harness.catalog.name(t))
            .collect();
        let reset = reset_group_offsets(
            &harness.kafka,
            &format!("{}-{stage}", harness.config.group_prefix),
            &inputs,
        )
        .await
        .expect("offsets reset");
        assert_eq!(reset, inputs.len() * 3);
    }
    let processors = harness.start().await;
    wait_for("the replay", || {
        counter("funnelhub_dedupe_events_total", "verdict=\"replay\"") == expect.distinct as u64
            && counter("funnelhub_stage_records_total", "stage=\"funnel\"")
                == 3 * expect.distinct as u64
    })
    .await;
    processors.stop().await.expect("clean stop");
    assert_eq!(
        counter("funnelhub_dedupe_events_total", "verdict=\"new\""),
        expect.distinct as u64,
        "a replay is not new"
    );

    // Every output is there again, with the same id and the same content.
    let replayed: Vec<DedupedEvent> = harness.read(Topic::Deduped, 2 * expect.distinct).await;
    let mut copies: BTreeMap<String, Vec<DedupedEvent>> = BTreeMap::new();
    for mut d in replayed {
        d.deduped_at = 0;
        copies.entry(d.dedupe_key.clone()).or_default().push(d);
    }
    assert_eq!(copies.len(), expect.distinct);
    for (key, records) in &copies {
        assert!(records.len() >= 2, "{key} re-emitted");
        assert!(records.iter().all(|r| r == &records[0]), "{key} unchanged");
    }
    let all: Vec<FunnelTransition> = harness
        .read(
            Topic::FunnelTransitions,
            counter("funnelhub_funnel_transitions_total", "") as usize,
        )
        .await;
    let mut by_id: HashMap<String, Vec<FunnelTransition>> = HashMap::new();
    for t in all {
        by_id.entry(t.transition_id.clone()).or_default().push(t);
    }
    assert_eq!(by_id.len(), first_run.len(), "no new transition ids");
    for (id, copies) in &by_id {
        assert!(copies.len() >= 2, "{id} re-emitted");
        assert!(copies.iter().all(|c| c == &first_run[id]), "{id} unchanged");
    }
    let tickets_again: Vec<OpsTicket> = harness
        .read(
            Topic::OpsTickets,
            counter("funnelhub_ops_tickets_total", "") as usize,
        )
        .await;
    let ids_again: HashSet<_> = tickets_again.iter().map(|t| t.ticket_id.clone()).collect();
    assert_eq!(ids_again, ticket_ids);
}

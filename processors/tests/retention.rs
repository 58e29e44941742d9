//! Per-tenant retention of processor state on the real broker: a tenant keeping one day
//! has its dedupe keys swept after a day of record time (a re-delivery two days later is
//! new again), while another tenant's keys stay for the whole dedupe window.

use funnelhub_processors::testing::RawWriter;
use funnelhub_processors::ControlPlane;
use funnelhub_schemas::events::EdgeEvent;
use funnelhub_schemas::ids::now_ms;
use funnelhub_schemas::testing::sample_tracking_hit;
use funnelhub_tenants::TenantConfig;

mod common;

use common::{counter, wait_for, Harness};

const DAY: i64 = 24 * 60 * 60 * 1000;

fn hit(tenant: &str, id: &str, received_at: i64) -> EdgeEvent {
    let mut hit = sample_tracking_hit();
    hit.envelope.tenant_id = tenant.into();
    hit.envelope.event_id = id.into();
    hit.envelope.received_at = received_at;
    // One session per tenant: its events share a partition, so one state sees them.
    hit.session_id = format!("{tenant}-session");
    EdgeEvent::TrackingHit(hit)
}

fn verdicts() -> (u64, u64) {
    (
        counter("funnelhub_dedupe_events_total", "verdict=\"new\""),
        counter("funnelhub_dedupe_events_total", "verdict=\"duplicate\""),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_short_retention_sweeps_dedupe_keys_before_the_window_does() {
    let mut harness = Harness::new("state-retention").await;
    let mut short = TenantConfig::new("short");
    short.retention_days = Some(1);
    harness.control = ControlPlane::fixed([short, TenantConfig::new("long")]);
    let writer = RawWriter::connect(&harness.kafka, &harness.registry).await;
    let processors = harness.start().await;

    let t0 = now_ms() - 10 * DAY;
    let first = [hit("short", "a", t0), hit("long", "a", t0)];
    writer.write(&first).await;
    wait_for("the first hits", || verdicts() == (2, 0)).await;
    // Two days later (record time): the short tenant's first key is past its retention.
    writer
        .write(&[
            hit("short", "b", t0 + 2 * DAY),
            hit("long", "b", t0 + 2 * DAY),
        ])
        .await;
    wait_for("the later hits", || verdicts() == (4, 0)).await;

    // Both first hits delivered again (new offsets, same keys), within the 7-day window.
    writer.write(&first).await;
    wait_for("the re-deliveries", || {
        let (new, duplicates) = verdicts();
        new + duplicates == 6
    })
    .await;
    assert_eq!(
        verdicts(),
        (5, 1),
        "the short tenant's key was swept (new again), the long tenant's kept (duplicate)"
    );
    processors.stop().await.expect("clean stop");
}

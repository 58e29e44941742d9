//! `funnelhub sink capi` killed with SIGKILL mid-batch, twice, then restarted: every
//! request reaches Meta (the emulator), and the only duplicates are re-sends of the same
//! `event_id`, which Meta's deduplication absorbs.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use funnelhub_emulators::{Faults, MetaGraphEmulator};
use funnelhub_kafka::testing::{record_count, unique};
use funnelhub_kafka::KafkaConfig;
use funnelhub_schemas::{Catalog, Topic};
use funnelhub_sinks::testing::{
    dispatch_requests, test_emulator, test_token, write_requests, TEST_TENANTS,
};

const WAIT: Duration = Duration::from_secs(120);

fn spawn_sink(kafka: &KafkaConfig, registry_url: &str, config_file: &str, graph: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_funnelhub"))
        .args(["sink", "capi", "--brokers", &kafka.brokers])
        .env("FUNNELHUB_CONFIG", config_file)
        .env("FUNNELHUB_KAFKA__TOPIC_PREFIX", &kafka.topic_prefix)
        .env("FUNNELHUB_SCHEMA_REGISTRY__URL", registry_url)
        .env("FUNNELHUB_CAPI__GRAPH_URL", graph)
        .env("FUNNELHUB_CAPI__GROUP", &kafka.topic_prefix)
        .env("FUNNELHUB_CAPI__LISTEN", "127.0.0.1:0")
        .env("FUNNELHUB_CAPI__BATCH_SIZE", "100")
        .env("FUNNELHUB_CAPI__TIMEOUT_MS", "2000")
        .env("FUNNELHUB_CAPI__BACKOFF_BASE_MS", "10")
        .env("FUNNELHUB_CAPI__BACKOFF_MAX_MS", "100")
        .env("FUNNELHUB_CAPI__MAX_ATTEMPTS", "50")
        .env("FUNNELHUB_CAPI__REQUESTS_PER_SECOND", "1000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("funnelhub sink capi starts")
}

async fn until(emulator: &MetaGraphEmulator, what: &str, done: impl Fn(u64, usize) -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let seen = emulator.counts();
        if done(seen.events_received, seen.distinct_events) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited for {what}: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_sink_loses_nothing_and_duplicates_only_by_event_id() {
    let (kafka, server, registry) = funnelhub_registry::test_stack("capi-killed").await;
    // Slow answers and some faults keep batches in flight when the kill comes.
    let faults = Faults {
        retryable_rate: 0.1,
        slow_rate: 0.3,
        slow_ms: 150,
        seed: 3,
        ..Faults::default()
    };
    let emulator = test_emulator(faults).await;
    let mut requests = dispatch_requests("acme", "111", 4000);
    requests.extend(dispatch_requests("beta", "222", 2000));
    write_requests(&kafka, &registry, &requests)
        .await
        .expect("written");
    let expected: BTreeSet<String> = requests.iter().map(|r| r.event_id.clone()).collect();

    let config_file = std::env::temp_dir().join(format!("{}.toml", unique("capi")));
    let tenants: String = TEST_TENANTS
        .iter()
        .map(|(id, pixel)| {
            let token = test_token(pixel);
            format!("[[tenants]]\nid = \"{id}\"\nmeta_pixel_id = \"{pixel}\"\nmeta_access_token = \"{token}\"\n")
        })
        .collect();
    // A killed member's partitions move after its session times out: keep that short.
    let kafka_section = "[kafka.client_properties]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"1000\"\n";
    std::fs::write(&config_file, format!("{kafka_section}{tenants}")).expect("config file");
    let config_file = config_file.to_string_lossy().into_owned();

    for kill_at in [1_500, 3_500] {
        let mut child = spawn_sink(&kafka, &server.url(), &config_file, &emulator.url());
        until(&emulator, "progress", |received, _| received >= kill_at).await;
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
    }
    let mut child = spawn_sink(&kafka, &server.url(), &config_file, &emulator.url());
    until(&emulator, "every event", |_, distinct| {
        distinct >= expected.len()
    })
    .await;
    // Let the last batch's audit land, then stop.
    tokio::time::sleep(Duration::from_secs(2)).await;
    child.kill().expect("stop");
    child.wait().expect("reaped");

    let seen = emulator.snapshot();
    let received: BTreeSet<String> = seen
        .events
        .iter()
        .filter_map(|e| e.event_id.clone())
        .collect();
    assert_eq!(received, expected, "nothing lost, nothing foreign");
    let resent: u64 = seen
        .events
        .iter()
        .map(|e| u64::from(e.times_received - 1))
        .sum();
    eprintln!(
        "requests {} (faults {}), events received {}, distinct {}, re-sent after kills {}",
        seen.requests,
        seen.injected_faults,
        seen.events_received,
        seen.events.len(),
        resent
    );
    let dlq = Catalog::new(&kafka.topic_prefix).name(Topic::Dlq);
    assert_eq!(record_count(&kafka, &dlq), 0, "nothing dead-lettered");
}

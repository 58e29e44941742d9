//! `funnelhub process` killed with SIGKILL mid-stream, twice, then restarted, ends with
//! exactly the distinct outputs of an uninterrupted run over the same records; so does one
//! killed while it restores its partitions' state, a run whose broker is stopped and
//! started again mid-stream, and a run where a second member joins the group mid-stream
//! and leaves again on SIGTERM.

use std::collections::{BTreeMap, HashMap};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use funnelhub_kafka::admin::{catalog_requests, ensure_topics};
use funnelhub_kafka::testing::{kafka_config, read_until, unique, PrivateBroker};
use funnelhub_kafka::{KafkaConfig, SchemaRegistry};
use funnelhub_processors::dedupe::dedupe_key;
use funnelhub_processors::testing::{workload, RawWriter};
use funnelhub_processors::{ProcessConfig, Stages};
use funnelhub_schemas::codec::split_frame;
use funnelhub_schemas::derived::{DedupedEvent, FunnelTransition, OpsTicket};
use funnelhub_schemas::events::EdgeEvent;
use funnelhub_schemas::{AvroRecord, Catalog, Decoder, Topic};

const WAIT: Duration = Duration::from_secs(120);

/// Distinct outputs of one run, by id; processing times and topic names left out.
#[derive(Debug, PartialEq)]
struct Outputs {
    deduped: BTreeMap<String, (i32, i64, EdgeEvent)>,
    transitions: BTreeMap<String, FunnelTransition>,
    tickets: BTreeMap<String, OpsTicket>,
}

async fn distinct<T: AvroRecord, K: Ord, V>(
    kafka: &KafkaConfig,
    _registry: &SchemaRegistry,
    topic: Topic,
    expected: usize,
    by: impl Fn(T) -> (K, V),
) -> BTreeMap<K, V> {
    let name = Catalog::new(&kafka.topic_prefix).name(topic);
    let mut seen = BTreeMap::new();
    let mut decoded = 0;
    // Our own records: the bundled schema is their writer schema.
    read_until(kafka, &name, WAIT, |records| {
        for (_, value) in &records[decoded..] {
            let (_, body) = split_frame(value).expect("framed");
            let (k, v) = by(Decoder::<T>::bundled().decode(body).expect("decodes"));
            seen.insert(k, v);
        }
        decoded = records.len();
        seen.len() >= expected
    })
    .await;
    seen
}

async fn outputs(
    kafka: &KafkaConfig,
    registry: &SchemaRegistry,
    counts: (usize, usize, usize),
) -> Outputs {
    Outputs {
        deduped: distinct(
            kafka,
            registry,
            Topic::Deduped,
            counts.0,
            |d: DedupedEvent| {
                (
                    d.dedupe_key,
                    (d.first_seen.partition, d.first_seen.offset, d.event),
                )
            },
        )
        .await,
        transitions: distinct(
            kafka,
            registry,
            Topic::FunnelTransitions,
            counts.1,
            |t: FunnelTransition| (t.transition_id.clone(), t),
        )
        .await,
        tickets: distinct(
            kafka,
            registry,
            Topic::OpsTickets,
            counts.2,
            |t: OpsTicket| (t.ticket_id.clone(), t),
        )
        .await,
    }
}

fn spawn_process(kafka: &KafkaConfig, registry_url: &str, config_file: &str) -> Child {
    process_command(kafka, registry_url, config_file)
        .stderr(Stdio::null())
        .spawn()
        .expect("funnelhub process starts")
}

fn process_command(kafka: &KafkaConfig, registry_url: &str, config_file: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_funnelhub"));
    command
        .args(["process", "--brokers", &kafka.brokers])
        .env("FUNNELHUB_CONFIG", config_file)
        .env("FUNNELHUB_KAFKA__TOPIC_PREFIX", &kafka.topic_prefix)
        .env("FUNNELHUB_PROCESS__GROUP_PREFIX", &kafka.topic_prefix)
        .env("FUNNELHUB_PROCESS__LISTEN", "127.0.0.1:0")
        .env("FUNNELHUB_PROCESS__MAX_BATCH", "50")
        .env("FUNNELHUB_SCHEMA_REGISTRY__URL", registry_url)
        .stdout(Stdio::null());
    command
}

/// SIGKILL `child` and reap it.
fn sigkill(mut child: Child) {
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
}

/// Distinct values on `topic` so far (raw bytes; deduped values differ only by time).
async fn progress(kafka: &KafkaConfig, topic: &str, at_least: usize) {
    read_until(kafka, topic, WAIT, |records| records.len() >= at_least).await;
}

/// The reference: the same records through the processors in-process, uninterrupted.
struct Reference {
    distinct_events: usize,
    whole: Outputs,
    server: funnelhub_runtime::RunningServer,
    registry: SchemaRegistry,
}

/// Write the workload to `interrupted` (not read yet) and to a prefix of its own, run the
/// processors in-process over the latter to the end, and keep their distinct outputs.
async fn uninterrupted_run(interrupted: &KafkaConfig) -> Reference {
    // Installs the recorder so the in-process run's metrics have somewhere to go.
    funnelhub_runtime::prometheus();
    let uninterrupted = kafka_config("process-whole");
    for kafka in [&uninterrupted, interrupted] {
        ensure_topics(kafka, &catalog_requests(kafka))
            .await
            .expect("topics");
    }
    let (server, registry) = funnelhub_registry::start_private(&uninterrupted, &unique("_schemas"))
        .await
        .expect("registry");

    // Same records, same order, into both prefixes (so same partitions and offsets).
    let events = workload(450, 42, false);
    for kafka in [&uninterrupted, interrupted] {
        RawWriter::connect(kafka, &registry)
            .await
            .write(&events)
            .await;
    }
    let distinct_events = events
        .iter()
        .map(dedupe_key)
        .collect::<std::collections::HashSet<_>>()
        .len();

    // The uninterrupted run, in-process.
    let processors = funnelhub_processors::start(
        &uninterrupted,
        &registry,
        &ProcessConfig {
            group_prefix: uninterrupted.topic_prefix.clone(),
            ..ProcessConfig::default()
        },
        Stages::All,
        &funnelhub_processors::ControlPlane::default(),
    )
    .await
    .expect("start");
    let deduped = distinct(
        &uninterrupted,
        &registry,
        Topic::Deduped,
        distinct_events,
        |d: DedupedEvent| (d.dedupe_key, ()),
    )
    .await;
    assert_eq!(deduped.len(), distinct_events);
    // The funnel is done once the records it read reach the deduped count.
    let deadline = tokio::time::Instant::now() + WAIT;
    while !funnelhub_runtime::prometheus().render().lines().any(|l| {
        l == format!("funnelhub_stage_records_total{{stage=\"funnel\"}} {distinct_events}")
    }) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "funnel did not finish"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    processors.stop().await.expect("stops");
    let counts = |name: &str| {
        funnelhub_runtime::prometheus()
            .render()
            .lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as usize
    };
    let expected_transitions = counts("funnelhub_funnel_transitions_total");
    let expected_tickets = counts("funnelhub_ops_tickets_total");
    let whole = outputs(
        &uninterrupted,
        &registry,
        (distinct_events, expected_transitions, expected_tickets),
    )
    .await;
    assert_eq!(
        whole.transitions.len(),
        expected_transitions,
        "no re-emission in a clean run"
    );
    Reference {
        distinct_events,
        whole,
        server,
        registry,
    }
}

/// A config file with nothing in it: `funnelhub process` runs on defaults and environment.
fn empty_config_file() -> String {
    config_file("")
}

/// A config file for processes that get SIGKILLed: a killed member leaves its group after
/// 10 s without heartbeats (the broker's minimum is 6 s), not 45 s, so the next member
/// gets the partitions sooner. The outcome is the same either way.
fn killed_members_config_file() -> String {
    config_file("[kafka.consumer_properties]\n\"session.timeout.ms\" = \"10000\"\n")
}

fn config_file(text: &str) -> String {
    let path = std::env::temp_dir().join(format!("{}.toml", unique("config")));
    std::fs::write(&path, text).expect("config file");
    path.to_string_lossy().into_owned()
}

impl Outputs {
    /// How many distinct deduped events, transitions and tickets there are.
    fn counts(&self) -> (usize, usize, usize) {
        (
            self.deduped.len(),
            self.transitions.len(),
            self.tickets.len(),
        )
    }
}

fn assert_same_outputs(interrupted: &Outputs, whole: &Outputs) {
    assert_eq!(interrupted.deduped.len(), whole.deduped.len());
    assert_eq!(interrupted.deduped, whole.deduped, "deduped events");
    let diff: HashMap<_, _> = interrupted
        .transitions
        .iter()
        .filter(|(id, t)| whole.transitions.get(*id) != Some(t))
        .collect();
    assert!(diff.is_empty(), "transitions differ: {diff:?}");
    assert_eq!(interrupted, whole);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_processor_ends_with_the_outputs_of_an_uninterrupted_run() {
    let killed = kafka_config("process-killed");
    let Reference {
        distinct_events,
        whole,
        server,
        registry,
        ..
    } = uninterrupted_run(&killed).await;

    // The same records through `funnelhub process`, SIGKILLed twice mid-stream.
    let config_file = killed_members_config_file();
    let deduped_topic = Catalog::new(&killed.topic_prefix).name(Topic::Deduped);
    for kill_after in [distinct_events / 4, distinct_events / 2] {
        let child = spawn_process(&killed, &server.url(), &config_file);
        progress(&killed, &deduped_topic, kill_after).await;
        sigkill(child);
    }
    let child = spawn_process(&killed, &server.url(), &config_file);
    let after_kills = outputs(&killed, &registry, whole.counts()).await;
    sigkill(child);

    assert_same_outputs(&after_kills, &whole);
    let _ = std::fs::remove_file(&config_file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_processor_killed_while_restoring_ends_with_the_outputs_of_an_uninterrupted_run() {
    let killed = kafka_config("process-restoring");
    let Reference {
        distinct_events,
        whole,
        server,
        registry,
    } = uninterrupted_run(&killed).await;

    // Half the records through a first process, which leaves its state behind (SIGKILL).
    let config_file = killed_members_config_file();
    let deduped_topic = Catalog::new(&killed.topic_prefix).name(Topic::Deduped);
    let first = spawn_process(&killed, &server.url(), &config_file);
    progress(&killed, &deduped_topic, distinct_events / 2).await;
    sigkill(first);

    // A second one is SIGKILLed as soon as it reports its first partition restored: the
    // others are restoring or about to.
    let mut restoring = process_command(&killed, &server.url(), &config_file)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("funnelhub process starts");
    let log = restoring.stderr.take().expect("piped");
    let restored = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        std::io::BufReader::new(log)
            .lines()
            .map_while(Result::ok)
            .any(|line| line.contains("state restored"))
    });
    let restored = tokio::time::timeout(WAIT, restored)
        .await
        .expect("a partition restored in time")
        .expect("read the log");
    sigkill(restoring);
    assert!(
        restored,
        "the second process restored state before it was killed"
    );

    // A third one restores again and finishes.
    let last = spawn_process(&killed, &server.url(), &config_file);
    let after = outputs(&killed, &registry, whole.counts()).await;
    sigkill(last);
    assert_same_outputs(&after, &whole);
    let _ = std::fs::remove_file(&config_file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_restart_mid_stream_ends_with_the_outputs_of_an_uninterrupted_run() {
    let mut broker = PrivateBroker::start("process-broker");
    let restarted = KafkaConfig {
        brokers: broker.brokers(),
        ..kafka_config("process-broker")
    };
    ensure_topics(&restarted, &catalog_requests(&restarted))
        .await
        .expect("topics");
    let Reference {
        distinct_events,
        whole,
        server,
        registry,
    } = uninterrupted_run(&restarted).await;

    let config_file = empty_config_file();
    let mut child = spawn_process(&restarted, &server.url(), &config_file);
    let deduped_topic = Catalog::new(&restarted.topic_prefix).name(Topic::Deduped);
    progress(&restarted, &deduped_topic, distinct_events / 3).await;
    // Stopped while the stages are mid-stream, down long enough for every client to notice.
    tokio::task::block_in_place(|| broker.stop());
    tokio::time::sleep(Duration::from_secs(3)).await;
    tokio::task::block_in_place(|| broker.start_again());
    let after_restart = outputs(&restarted, &registry, whole.counts()).await;
    assert!(
        child.try_wait().expect("status").is_none(),
        "funnelhub process survived the broker restart"
    );
    sigkill(child);
    assert_same_outputs(&after_restart, &whole);
    let _ = std::fs::remove_file(&config_file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_joining_and_leaving_mid_stream_ends_with_the_outputs_of_an_uninterrupted_run() {
    let shared = kafka_config("process-members");
    let Reference {
        distinct_events,
        whole,
        server,
        registry,
    } = uninterrupted_run(&shared).await;

    // A first member starts; a second joins mid-stream (every partition is revoked and the
    // group splits them), then leaves on SIGTERM mid-stream (revoked again: its
    // partitions go back to the first, which reuses what it kept or restores the rest).
    let config_file = empty_config_file();
    let deduped_topic = Catalog::new(&shared.topic_prefix).name(Topic::Deduped);
    let mut first = spawn_process(&shared, &server.url(), &config_file);
    progress(&shared, &deduped_topic, distinct_events / 4).await;
    let mut second = spawn_process(&shared, &server.url(), &config_file);
    progress(&shared, &deduped_topic, distinct_events / 2).await;
    let interrupted = Command::new("kill")
        .args(["-TERM", &second.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(interrupted.success());
    let left = tokio::task::spawn_blocking(move || second.wait())
        .await
        .expect("joined")
        .expect("reaped");
    assert!(left.success(), "the second member left cleanly: {left}");
    let after = outputs(&shared, &registry, whole.counts()).await;
    assert!(
        first.try_wait().expect("status").is_none(),
        "the first member kept running"
    );
    sigkill(first);
    assert_same_outputs(&after, &whole);
    let _ = std::fs::remove_file(&config_file);
}

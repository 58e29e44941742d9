//! The whole pipeline, as a user runs it: `funnelhub up` on the real local broker and
//! ClickHouse, talking to a Meta Graph API emulator, driven by the simulator's workload
//! (several tenants; visits, purchases and refunds through the three gateways signed the
//! real way; onboarding sessions with failures; duplicates and out-of-order delivery).
//!
//! 1. What ClickHouse and Meta hold equals the simulator's ground truth: distinct events
//!    per type, every session's funnel stage, every conversion's match (method and visit),
//!    ops tickets, the CAPI requests (blocked ones included) and Meta's deduplicated events.
//! 2. Stop, replay every stage from the start (`funnelhub replay`), start again: once every
//!    group has caught up, the same facts hold — while Meta did receive the events again
//!    (the replay really re-ran) and deduplicated them.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use funnelhub_emulators::{Faults, MetaGraphEmulator};
use funnelhub_ingest::config::TenantConfig;
use funnelhub_kafka::replay::{plan, ReplayFrom};
use funnelhub_kafka::testing::{kafka_config, unique};
use funnelhub_kafka::KafkaConfig;
use funnelhub_processors::config::ProcessConfig;
use funnelhub_schemas::Catalog;
use funnelhub_simulator::probe::Probe;
use funnelhub_simulator::{Generator, Load, Observer};
use funnelhub_sinks::clickhouse::ClickHouseConfig;

const WAIT: Duration = Duration::from_secs(120);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Everything one pipeline of this test is configured with.
struct Setup {
    kafka: KafkaConfig,
    config_file: std::path::PathBuf,
    dir: std::path::PathBuf,
    edge: String,
    clickhouse: ClickHouseConfig,
    tenants: Vec<TenantConfig>,
}

const TENANTS: &str = r#"
[[tenants]]
id = "acme"
hotmart_hottok = "acme-hottok"
kiwify_token = "acme-kiwify"
stripe_signing_secrets = ["whsec_acme"]
onboard_secret = "acme-onboard"
meta_pixel_id = "111000111"
meta_access_token = "token-acme"

[[tenants]]
id = "loja"
kiwify_token = "loja-kiwify"
stripe_signing_secrets = ["whsec_loja"]
onboard_secret = "loja-onboard"
meta_pixel_id = "222000222"
meta_access_token = "token-loja"
consent_ads_default = false
"#;

fn setup(graph_url: &str) -> Setup {
    let kafka = kafka_config("e2e");
    let dir = std::env::temp_dir().join(unique("e2e"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let registry_port = free_port();
    let edge_port = free_port();
    let database = unique("e2e").replace('-', "_");
    let clickhouse_url = std::env::var("FUNNELHUB_CLICKHOUSE__URL").unwrap_or_else(|_| {
        format!(
            "http://127.0.0.1:{}",
            std::env::var("CLICKHOUSE_HTTP_PORT").unwrap_or_else(|_| "8123".into())
        )
    });
    let prefix = &kafka.topic_prefix;
    let config = format!(
        r#"
[kafka]
brokers = "{brokers}"
topic_prefix = "{prefix}"
partitions = 3

[registry]
listen = "127.0.0.1:{registry_port}"
topic = "{prefix}-schemas"

[schema_registry]
url = "http://127.0.0.1:{registry_port}"

[edge]
listen = "127.0.0.1:{edge_port}"

[process]
group_prefix = "{prefix}"

[process.matching]
grace_secs = 2
max_out_of_order_secs = 1
idle_slack_secs = 1

[capi]
graph_url = "{graph_url}"
group = "{prefix}-capi"
linger_ms = 50
backoff_base_ms = 10
backoff_max_ms = 200

[clickhouse]
url = "{clickhouse_url}"
database = "{database}"
group = "{prefix}-clickhouse"
linger_ms = 100
{TENANTS}"#,
        brokers = kafka.brokers,
    );
    let config_file = dir.join("funnelhub.toml");
    std::fs::write(&config_file, config).expect("config written");
    #[derive(serde::Deserialize)]
    struct Tenants {
        tenants: Vec<TenantConfig>,
    }
    let tenants: Tenants = toml::from_str(TENANTS).expect("tenants");
    Setup {
        kafka,
        config_file,
        dir,
        edge: format!("http://127.0.0.1:{edge_port}"),
        clickhouse: ClickHouseConfig {
            url: clickhouse_url,
            database,
            ..ClickHouseConfig::default()
        },
        tenants: tenants.tenants,
    }
}

/// `funnelhub` with the test's configuration, run in its own directory.
fn funnelhub(setup: &Setup) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_funnelhub"));
    command
        .env("FUNNELHUB_CONFIG", &setup.config_file)
        .env_remove("FUNNELHUB_CLICKHOUSE__URL")
        .current_dir(&setup.dir);
    command
}

/// A running `funnelhub up`, killed if the test fails before stopping it.
struct Pipeline(Option<Child>);

impl Drop for Pipeline {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `funnelhub up`, once it printed that it is up.
fn up(setup: &Setup) -> Pipeline {
    let mut pipeline = Pipeline(Some(
        funnelhub(setup)
            .arg("up")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("funnelhub up starts"),
    ));
    let stdout = pipeline
        .0
        .as_mut()
        .and_then(|child| child.stdout.take())
        .expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = String::new();
    loop {
        match lines.next() {
            Some(Ok(line)) => {
                seen.push_str(&line);
                seen.push('\n');
                if line.contains("Press Ctrl-C to stop") {
                    break;
                }
            }
            _ => panic!("funnelhub up stopped before it was up:\n{seen}"),
        }
    }
    // Keep reading so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    pipeline
}

/// Ctrl-C, as a user stops it: finishes batches in hand and commits.
fn stop(mut pipeline: Pipeline) {
    let mut child = pipeline.0.take().expect("running");
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "funnelhub up stopped cleanly: {status}");
            return;
        }
        assert!(Instant::now() < deadline, "funnelhub up did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every stage's consumer group with its inputs.
fn groups(setup: &Setup) -> Vec<(String, Vec<String>)> {
    let catalog = Catalog::new(&setup.kafka.topic_prefix);
    let process = ProcessConfig {
        group_prefix: setup.kafka.topic_prefix.clone(),
        ..ProcessConfig::default()
    };
    let prefix = &setup.kafka.topic_prefix;
    funnelhub_processors::stage_groups(&process, &catalog)
        .into_iter()
        .chain(funnelhub_sinks::stage_groups(
            &format!("{prefix}-capi"),
            &format!("{prefix}-clickhouse"),
            &catalog,
        ))
        .map(|(_, group, topics)| (group, topics))
        .collect()
}

/// Records not yet read and committed by each group, in all.
async fn unread(setup: &Setup) -> i64 {
    let mut total = 0;
    for (group, topics) in groups(setup) {
        for p in plan(&setup.kafka, &group, &topics, ReplayFrom::Earliest)
            .await
            .expect("plan")
        {
            total += (p.high - p.committed.unwrap_or(p.low)).max(0);
        }
    }
    total
}

async fn caught_up(setup: &Setup) {
    let deadline = Instant::now() + WAIT;
    let mut quiet = 0;
    while quiet < 2 {
        let left = unread(setup).await;
        quiet = if left == 0 { quiet + 1 } else { 0 };
        assert!(Instant::now() < deadline, "{left} records still unread");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn replay_everything(setup: &Setup) {
    for stage in [
        "dedupe",
        "funnel",
        "match-route",
        "match",
        "capi",
        "clickhouse",
    ] {
        let output = funnelhub(setup)
            .args(["replay", "--stage", stage, "--force"])
            .output()
            .expect("funnelhub replay runs");
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{stage}: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(text.contains("will be processed again"), "{stage}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_pipeline_holds_the_ground_truth_and_a_full_replay_changes_nothing() {
    let pixels: BTreeMap<String, String> = [
        ("111000111".to_string(), "token-acme".to_string()),
        ("222000222".to_string(), "token-loja".to_string()),
    ]
    .into();
    let emulator = MetaGraphEmulator::start(([127, 0, 0, 1], 0).into(), pixels, Faults::default())
        .await
        .expect("emulator");
    let setup = setup(&emulator.url());
    let pipeline = up(&setup);

    let run = "e2e".to_owned() + &format!("{:x}", rand::random::<u32>());
    let generator = Generator::new(&run, 20_261_123, setup.tenants.clone()).expect("generator");
    // Meanwhile the latency probe: clicks found in ClickHouse, timed.
    let probe = funnelhub_simulator::probe::run(
        Probe {
            edge: setup.edge.clone(),
            clickhouse: setup.clickhouse.clone(),
            tenant: "acme".into(),
            run: run.clone(),
            every: Duration::from_millis(200),
            poll: Duration::from_millis(50),
            give_up: WAIT,
        },
        Duration::from_secs(2),
    );
    let load = funnelhub_simulator::run(
        generator,
        Load {
            edge: setup.edge.clone(),
            rate: 400,
            duration: WAIT,
            journeys: Some(240),
            concurrency: 16,
            progress: false,
            max_attempts: 30,
        },
    );
    let (report, latencies) = tokio::join!(load, probe);
    let mut report = report.expect("simulated");
    let latencies = latencies.expect("probed");
    assert_eq!(latencies.lost, 0);
    assert!(latencies.ms.len() >= 5, "{latencies:?}");
    assert!(latencies.quantile(0.5) > 0.0);
    report.facts.merge(latencies.facts);
    assert_eq!(report.failed, 0, "{:?}", report.failures);
    assert_eq!(report.journeys, 240);
    assert!(
        report.duplicates > 10 && report.out_of_order > 5,
        "the workload repeats and reorders: {report:?}"
    );
    let truth = &report.facts;
    let methods = truth.match_methods();
    for method in ["session_id", "click_id", "email_hash", "unmatched"] {
        assert!(
            methods.keys().any(|(_, m)| m == method),
            "the workload exercises {method}: {methods:?}"
        );
    }

    let observer = Observer {
        clickhouse: setup.clickhouse.clone(),
        meta_emulator: Some(emulator.url()),
    };
    let (observed, meta) = observer.settle(&run, truth, WAIT).await.expect("observed");
    let differences = truth.differences(&observed, 10);
    assert!(differences.is_empty(), "{}", differences.join("\n"));
    let due_to_meta: u64 = truth.meta.values().sum();
    assert_eq!(meta.distinct, due_to_meta);
    assert!(
        truth
            .dispatches
            .keys()
            .any(|(tenant, _, reason)| tenant == "loja" && reason == "consent_ads=false"),
        "loja's default of no ad consent blocks its unmatched orders"
    );

    // Replay everything from the start.
    caught_up(&setup).await;
    stop(pipeline);
    replay_everything(&setup);
    let pipeline = up(&setup);
    let deadline = Instant::now() + WAIT;
    let again = loop {
        let (_, seen) = observer.facts(&run).await.expect("observed");
        if seen.received > meta.received {
            break seen;
        }
        assert!(
            Instant::now() < deadline,
            "the replay re-sent nothing to Meta"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(again.received > meta.received);
    caught_up(&setup).await;
    let (after, meta_after) = observer.facts(&run).await.expect("observed");
    let differences = truth.differences(&after, 10);
    assert!(
        differences.is_empty(),
        "after the replay: {}",
        differences.join("\n")
    );
    assert_eq!(
        meta_after.distinct, meta.distinct,
        "Meta deduplicated every re-sent event"
    );
    stop(pipeline);
    emulator.stop().await.expect("emulator stops");
    let _ = std::fs::remove_dir_all(Path::new(&setup.dir));
}

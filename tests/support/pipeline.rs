//! A whole pipeline for end-to-end tests: `funnelhub up` as a child process with its own
//! topics, ClickHouse database and ports, the tenants of [`TENANTS`], and the tools a user
//! has around it (Ctrl-C, `funnelhub replay`, "has every group caught up").

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use funnelhub_clickhouse::ClickHouseConfig;
use funnelhub_emulators::{Faults, MetaGraphEmulator};
use funnelhub_ingest::config::TenantConfig;
use funnelhub_kafka::replay::{plan, ReplayFrom};
use funnelhub_kafka::testing::{kafka_config, unique};
use funnelhub_kafka::KafkaConfig;
use funnelhub_processors::config::ProcessConfig;
use funnelhub_schemas::Catalog;

pub const WAIT: Duration = Duration::from_secs(120);

/// A port free now, below the kernel's ephemeral range (32768 and up on Linux): a port the
/// kernel handed out for `:0` is free only until it hands it out again, to any of the many
/// outgoing connections of tests running in parallel, before `funnelhub up` binds it.
pub fn free_port() -> u16 {
    for _ in 0..1_000 {
        let port = rand::random_range(20_000..32_000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 20000-32000")
}

/// Everything one pipeline of this test is configured with.
pub struct Setup {
    pub kafka: KafkaConfig,
    pub config_file: std::path::PathBuf,
    pub dir: std::path::PathBuf,
    pub edge: String,
    pub clickhouse: ClickHouseConfig,
    pub tenants: Vec<TenantConfig>,
    /// `FUNNELHUB_TENANT_KEYS` of every `funnelhub` this test runs.
    pub keys: String,
}

pub const TENANTS: &str = r#"
[[tenants]]
id = "acme"
hotmart_hottok = "acme-hottok"
kiwify_token = "acme-kiwify"
stripe_signing_secrets = ["whsec_acme"]
onboard_secret = "acme-onboard"
meta_pixel_id = "111000111"
meta_access_token = "token-acme"
meta_abandoned_checkout_event = "AbandonedCheckout"
api_keys = ["acme-read-key"]
admin_api_keys = ["acme-api-key"]

[[tenants]]
id = "loja"
kiwify_token = "loja-kiwify"
stripe_signing_secrets = ["whsec_loja"]
onboard_secret = "loja-onboard"
meta_pixel_id = "222000222"
meta_access_token = "token-loja"
consent_ads_default = false
"#;

pub fn setup(graph_url: &str) -> Setup {
    setup_with(graph_url, "")
}

/// [`setup`] with more configuration (TOML tables) before the tenants.
pub fn setup_with(graph_url: &str, extra: &str) -> Setup {
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
ops_listen = "127.0.0.1:0"

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
{extra}
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
        keys: funnelhub_tenants::Keyring::generate("k1"),
    }
}

impl Setup {
    /// Where every `funnelhub up` of the test appends its log.
    pub fn log(&self) -> std::path::PathBuf {
        self.dir.join("funnelhub.log")
    }
}

/// `funnelhub` with the test's configuration, run in its own directory.
pub fn funnelhub(setup: &Setup) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_funnelhub"));
    command
        .env("FUNNELHUB_CONFIG", &setup.config_file)
        .env(funnelhub_tenants::sealing::KEYS_ENV, &setup.keys)
        .env_remove("FUNNELHUB_CLICKHOUSE__URL")
        .current_dir(&setup.dir);
    command
}

/// A running `funnelhub up`, killed if the test fails before stopping it.
pub struct Pipeline(pub Option<Child>);

impl Drop for Pipeline {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `funnelhub up`, once it printed that it is up.
pub fn up(setup: &Setup) -> Pipeline {
    let mut pipeline = Pipeline(Some(
        funnelhub(setup)
            .arg("up")
            .stdout(Stdio::piped())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(setup.log())
                    .expect("log file"),
            )
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
pub fn stop(mut pipeline: Pipeline) {
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
pub fn groups(setup: &Setup) -> Vec<(String, Vec<String>)> {
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
pub async fn unread(setup: &Setup) -> i64 {
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

pub async fn caught_up(setup: &Setup) {
    let deadline = Instant::now() + WAIT;
    let mut quiet = 0;
    while quiet < 2 {
        let left = unread(setup).await;
        quiet = if left == 0 { quiet + 1 } else { 0 };
        assert!(Instant::now() < deadline, "{left} records still unread");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub fn replay_everything(setup: &Setup) {
    for stage in [
        "dedupe",
        "funnel",
        "match-route",
        "match",
        "capi",
        "clickhouse",
    ] {
        let output = funnelhub(setup)
            .args(["replay", "--stage", stage])
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

/// A Meta Graph API emulator that knows [`TENANTS`]' pixels and tokens.
pub async fn meta_emulator() -> MetaGraphEmulator {
    let pixels = [
        ("111000111".to_string(), "token-acme".to_string()),
        ("222000222".to_string(), "token-loja".to_string()),
    ]
    .into();
    MetaGraphEmulator::start(([127, 0, 0, 1], 0).into(), pixels, Faults::default())
        .await
        .expect("emulator")
}

/// A Meta Graph API emulator that knows acme's pixel and token and `pixel` with `token` (a
/// tenant that guided setup creates).
pub async fn meta_emulator_with(pixel: &str, token: &str) -> MetaGraphEmulator {
    let pixels = [
        ("111000111".to_string(), "token-acme".to_string()),
        (pixel.to_string(), token.to_string()),
    ]
    .into();
    MetaGraphEmulator::start(([127, 0, 0, 1], 0).into(), pixels, Faults::default())
        .await
        .expect("meta emulator")
}

/// Send a prepared request (hit, signed webhook) to the edge; it must be accepted.
pub async fn deliver(setup: &Setup, delivery: &funnelhub_simulator::gateways::Delivery) {
    let mut request = reqwest::Client::new()
        .post(format!("{}{}", setup.edge, delivery.path))
        .body(delivery.body.clone());
    for (name, value) in &delivery.headers {
        request = request.header(*name, value);
    }
    let response = request.send().await.expect("edge answers");
    let status = response.status();
    assert!(
        status.is_success(),
        "{}: {status} {}",
        delivery.path,
        response.text().await.unwrap_or_default()
    );
}

//! Helpers for tests that run against the real local stack (`scripts/stack up`).
//! Every test gets unique topic names, so tests run in parallel and never see each
//! other's records.

use crate::KafkaConfig;

/// Kafka config for tests: `FUNNELHUB_TEST_BROKERS` or the local stack's broker, with a
/// unique topic prefix.
pub fn kafka_config(test: &str) -> KafkaConfig {
    KafkaConfig {
        brokers: std::env::var("FUNNELHUB_TEST_BROKERS")
            .unwrap_or_else(|_| "127.0.0.1:9092".into()),
        topic_prefix: unique(test),
        partitions: Some(3),
        ..KafkaConfig::default()
    }
}

/// `name` plus a random suffix.
pub fn unique(name: &str) -> String {
    format!("test-{name}-{}", uuid::Uuid::new_v4().simple())
}

/// Read `count` records from every partition of `topic`, from the beginning, within
/// `timeout`; returns (key, value) pairs. Fails the test if fewer arrive.
pub async fn read_records(
    config: &KafkaConfig,
    topic: &str,
    count: usize,
    timeout: std::time::Duration,
) -> Vec<(Option<Vec<u8>>, Vec<u8>)> {
    read_until(config, topic, timeout, |records| records.len() >= count).await
}

/// Read `topic` from the beginning until `done` says the records read so far suffice;
/// fails the test after `timeout`.
pub async fn read_until(
    config: &KafkaConfig,
    topic: &str,
    timeout: std::time::Duration,
    mut done: impl FnMut(&[(Option<Vec<u8>>, Vec<u8>)]) -> bool,
) -> Vec<(Option<Vec<u8>>, Vec<u8>)> {
    use rdkafka::consumer::Consumer;
    use rdkafka::Message;

    let consumer = crate::client::consumer(
        config,
        "test-reader",
        &unique("reader"),
        &[("fetch.wait.max.ms", "50")],
    )
    .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut records = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while !done(&records) {
        let message = tokio::time::timeout_at(deadline, consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("gave up on {topic} after {} records", records.len()))
            .expect("consume");
        records.push((
            message.key().map(<[u8]>::to_vec),
            message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        ));
    }
    records
}

/// Records in `topic` now: the sum of its partitions' high minus low watermarks.
pub fn record_count(config: &KafkaConfig, topic: &str) -> usize {
    use rdkafka::consumer::{BaseConsumer, Consumer};

    let timeout = std::time::Duration::from_secs(10);
    let consumer: BaseConsumer = crate::client::client_config(config, "test-count")
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .expect("metadata");
    metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions())
        .map(|p| {
            let (low, high) = consumer
                .fetch_watermarks(topic, p.id(), timeout)
                .expect("watermarks");
            (high - low) as usize
        })
        .sum()
}

/// Whether `group` has committed, on every partition of `topics`, the offset after the
/// last record (it has processed everything written so far).
pub fn group_caught_up(config: &KafkaConfig, group: &str, topics: &[String]) -> bool {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Offset, TopicPartitionList};

    let timeout = std::time::Duration::from_secs(10);
    let consumer: BaseConsumer = crate::client::client_config(config, "test-lag")
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    let mut ends = Vec::new();
    for topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), timeout)
            .expect("metadata");
        for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
            let (_, high) = consumer
                .fetch_watermarks(topic, partition.id(), timeout)
                .expect("watermarks");
            tpl.add_partition(topic, partition.id());
            ends.push((topic.clone(), partition.id(), high));
        }
    }
    let committed = consumer
        .committed_offsets(tpl, timeout)
        .expect("committed offsets");
    ends.iter().all(|(topic, partition, high)| {
        *high == 0
            || committed
                .find_partition(topic, *partition)
                .is_some_and(|p| p.offset() == Offset::Offset(*high))
    })
}

/// The raw consumption baseline of the benchmarks: one plain consumer (its own group)
/// reading `expected` records of `topic` from the start, bytes only. Returns the time from
/// subscribing to the last record. Call from a multi-threaded runtime.
pub fn raw_consume(config: &KafkaConfig, topic: &str, expected: usize) -> std::time::Duration {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::Message;

    let consumer: BaseConsumer = crate::client::consumer_config(config, "bench-raw", &[])
        .set("group.id", unique("bench-raw"))
        .set("enable.auto.commit", "true")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    let started = std::time::Instant::now();
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut read = 0;
    let mut bytes = 0usize;
    while read < expected {
        if let Some(message) = consumer.poll(std::time::Duration::from_millis(1000)) {
            bytes += message.expect("consume").payload().map_or(0, <[u8]>::len);
            read += 1;
        }
    }
    assert!(bytes > 0, "records have values");
    started.elapsed()
}

/// An Apache Kafka node of one test's own (`scripts/kafka/node`, the local stack's jars),
/// on free loopback ports with its data in a temporary folder, so the test can stop and
/// start it without disturbing any other test. Dropping it kills the node and removes the
/// folder.
#[derive(Debug)]
pub struct PrivateBroker {
    child: Option<std::process::Child>,
    dir: std::path::PathBuf,
    port: u16,
    controller_port: u16,
}

impl PrivateBroker {
    /// Start a fresh node and wait until it answers a metadata request.
    pub fn start(name: &str) -> Self {
        let free = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .expect("bind")
                .local_addr()
                .expect("addr")
                .port()
        };
        let port = free();
        let mut controller_port = free();
        while controller_port == port {
            controller_port = free();
        }
        let mut broker = PrivateBroker {
            child: None,
            dir: std::env::temp_dir().join(unique(name)),
            port,
            controller_port,
        };
        broker.start_again();
        broker
    }

    /// `host:port` to bootstrap from.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stop the node as an operator would (SIGTERM, a clean shutdown); data is kept.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = std::process::Command::new("kill")
                .arg(child.id().to_string())
                .status();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while child.try_wait().ok().flatten().is_none() {
                if std::time::Instant::now() > deadline {
                    let _ = child.kill();
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            let _ = child.wait();
        }
    }

    /// Start the node again on the same ports and data; waits until it answers.
    pub fn start_again(&mut self) {
        self.stop();
        std::fs::create_dir_all(&self.dir).expect("broker dir");
        let node = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/kafka/node");
        let log = std::fs::File::create(self.dir.join("node.out")).expect("log");
        let child = std::process::Command::new(node)
            .arg(&self.dir)
            .arg(self.port.to_string())
            .arg(self.controller_port.to_string())
            .env("KAFKA_HEAP", "384m")
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("scripts/kafka/node runs (scripts/stack up installs the jars)");
        self.child = Some(child);
        let config = KafkaConfig {
            brokers: self.brokers(),
            ..KafkaConfig::default()
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "the private Kafka node exited ({status}): {}",
                    std::fs::read_to_string(self.dir.join("node.out")).unwrap_or_default()
                );
            }
            if metadata_answers(&config) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the private Kafka node did not answer within 90 s (log {})",
                self.dir.display()
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}

/// Whether a broker at `config` answers a metadata request naming at least one broker.
fn metadata_answers(config: &KafkaConfig) -> bool {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let Ok(consumer) = crate::client::client_config(config, "test-ready").create::<BaseConsumer>()
    else {
        return false;
    };
    consumer
        .fetch_metadata(None, std::time::Duration::from_secs(1))
        .is_ok_and(|m| !m.brokers().is_empty())
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

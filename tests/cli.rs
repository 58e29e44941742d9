//! The `funnelhub` binary as a user runs it, against the real local stack.

mod support;

use std::process::Command;

use funnelhub_kafka::testing::{kafka_config, unique};
use funnelhub_schemas::{Catalog, Topic};
use support::pipeline::free_port;

fn funnelhub() -> Command {
    Command::new(env!("CARGO_BIN_EXE_funnelhub"))
}

#[test]
fn up_creates_topics_serves_the_registry_and_registers_every_schema() {
    let kafka = kafka_config("cli-up");
    let port = free_port();
    let run = |partitions: Option<&str>| {
        let mut command = funnelhub();
        if let Some(partitions) = partitions {
            command.env("FUNNELHUB_KAFKA__PARTITIONS", partitions);
        }
        command
            .args(["up", "--once", "--brokers", &kafka.brokers])
            .env("FUNNELHUB_KAFKA__TOPIC_PREFIX", &kafka.topic_prefix)
            .env("FUNNELHUB_PROCESS__GROUP_PREFIX", &kafka.topic_prefix)
            .env("FUNNELHUB_CAPI__GROUP", &kafka.topic_prefix)
            .env("FUNNELHUB_CLICKHOUSE__GROUP", &kafka.topic_prefix)
            .env("FUNNELHUB_REGISTRY__TOPIC", unique("_schemas-cli"))
            .env("FUNNELHUB_REGISTRY__LISTEN", format!("127.0.0.1:{port}"))
            .env(
                "FUNNELHUB_SCHEMA_REGISTRY__URL",
                format!("http://127.0.0.1:{port}"),
            )
            .output()
            .expect("runs")
    };
    let first = run(None);
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(stdout.contains("funnelhub is up"), "{stdout}");
    assert!(
        stdout.contains("CAPI sink") && stdout.contains("Graph API emulator"),
        "without tokens the sink talks to the emulator: {stdout}"
    );
    let catalog = Catalog::new(&kafka.topic_prefix);
    for topic in Topic::ALL {
        let line = stdout
            .lines()
            .find(|l| l.contains(&format!("{} ", catalog.name(topic))))
            .unwrap_or_else(|| panic!("{topic:?} listed:\n{stdout}"));
        assert!(
            line.contains("created") && line.contains("schema id"),
            "{line}"
        );
    }
    // Run again: idempotent, everything already exists.
    let second = run(None);
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(second.status.success(), "{stdout}");
    assert_eq!(
        stdout.matches(" exists").count(),
        Topic::ALL.len(),
        "{stdout}"
    );
    // Another partition count configured: existing topics keep theirs, and `up` shows the
    // count the broker holds, not the configured one.
    let partitions_of = |stdout: &str, topic: &str| -> String {
        let line = stdout
            .lines()
            .find(|l| l.contains(&format!("{topic} ")))
            .unwrap_or_else(|| panic!("{topic} listed:\n{stdout}"));
        line.split(" partitions")
            .next()
            .expect("count")
            .split_whitespace()
            .last()
            .expect("count")
            .to_owned()
    };
    let first_stdout = String::from_utf8_lossy(&first.stdout).into_owned();
    let third = run(Some("7"));
    let stdout = String::from_utf8_lossy(&third.stdout);
    assert!(third.status.success(), "{stdout}");
    for topic in Topic::ALL {
        let name = catalog.name(topic);
        assert_eq!(
            partitions_of(&stdout, &name),
            partitions_of(&first_stdout, &name),
            "{stdout}"
        );
    }
    assert_eq!(
        stdout.matches("exists (configured 7").count(),
        Topic::ALL.len(),
        "{stdout}"
    );
}

#[test]
fn up_says_how_to_start_the_stack_when_kafka_is_down() {
    let output = funnelhub()
        .args([
            "up",
            "--once",
            "--brokers",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("scripts/stack up"), "{stderr}");
}

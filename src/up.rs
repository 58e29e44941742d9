//! `funnelhub up`: the main job on the local stack.
//!
//! Today it brings up the foundation every other part runs on: checks the brokers,
//! creates the catalog's topics, serves the embedded schema registry, registers every
//! value schema, and reports what is up. The edge, processors and sinks join it as they
//! are built.

use std::fmt::Write as _;

use anyhow::Context;
use funnelhub_kafka::admin::{catalog_requests, check_brokers, ensure_topics, TopicOutcome};
use funnelhub_kafka::SchemaRegistry;
use funnelhub_schemas::Catalog;

use crate::config::Config;

/// Start everything; return after printing the summary when `once`, else on Ctrl-C.
pub async fn run(config: &Config, once: bool) -> anyhow::Result<()> {
    let brokers = check_brokers(&config.kafka).await.with_context(|| {
        format!(
            "Kafka does not answer at {} (start the local stack with `scripts/stack up`)",
            config.kafka.brokers
        )
    })?;
    let outcomes = ensure_topics(&config.kafka, &catalog_requests(&config.kafka))
        .await
        .context("creating topics")?;
    let registry = funnelhub_registry::start(&config.registry, &config.kafka)
        .await
        .context("starting the schema registry")?;
    let catalog = Catalog::new(&config.kafka.topic_prefix);
    let ids = SchemaRegistry::new(&config.schema_registry)?
        .register_catalog(&catalog)
        .await
        .with_context(|| format!("registering schemas at {}", config.schema_registry.url))?;
    let clickhouse = clickhouse_version(&config.clickhouse.url).await;

    let mut out = String::new();
    writeln!(out, "funnelhub is up")?;
    writeln!(
        out,
        "  kafka            {} (brokers: {})",
        config.kafka.brokers,
        brokers.join(", ")
    )?;
    writeln!(
        out,
        "  schema registry  {} (stored in topic {})",
        registry.url(),
        config.registry.topic
    )?;
    match &clickhouse {
        Ok(version) => writeln!(
            out,
            "  clickhouse       {} (version {version})",
            config.clickhouse.url
        )?,
        Err(e) => writeln!(
            out,
            "  clickhouse       {} NOT REACHABLE: {e}",
            config.clickhouse.url
        )?,
    }
    writeln!(out, "  topics (prefix {}):", catalog.prefix())?;
    for ((topic, name), (created, outcome)) in catalog.topics().zip(&outcomes) {
        debug_assert_eq!(&name, created);
        let spec = topic.spec();
        let id = ids
            .iter()
            .find(|(t, _)| *t == name)
            .map_or(0, |(_, id)| *id);
        writeln!(
            out,
            "    {name:<36} {:>2} partitions  schema id {id:<3} key {:<28} {}",
            config.kafka.partitions.unwrap_or(spec.partitions),
            spec.key,
            if *outcome == TopicOutcome::Created {
                "created"
            } else {
                "exists"
            },
        )?;
    }
    print!("{out}");
    if once {
        registry.stop().await?;
        return Ok(());
    }
    println!("Press Ctrl-C to stop.");
    tokio::signal::ctrl_c().await?;
    println!("stopping");
    registry.stop().await?;
    Ok(())
}

async fn clickhouse_version(url: &str) -> anyhow::Result<String> {
    let response = reqwest::Client::new()
        .post(url)
        .body("SELECT version()")
        .timeout(std::time::Duration::from_secs(5))
        .send()
        .await?
        .error_for_status()?;
    Ok(response.text().await?.trim().to_owned())
}

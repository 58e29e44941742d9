//! `funnelhub privacy purge`: the purge of `POST /api/v1/privacy/purge` for operators
//! (`funnelhub_ingest::privacy`), printing the receipt.

use std::io::BufRead;
use std::time::Duration;

use anyhow::{bail, Context};
use funnelhub_clickhouse::Server;
use funnelhub_ingest::privacy::{identifier_hash, purge, Purger, SETTLE};
use funnelhub_ingest::validate::phone_rules;
use funnelhub_kafka::admin::{catalog_requests, ensure_topics};
use funnelhub_kafka::{AckedProducer, SchemaRegistry, TopicCodec};
use funnelhub_schemas::privacy::IdentifierKind;
use funnelhub_schemas::Catalog;

use crate::config::Config;

/// One identifier in clear: `-` reads it from standard input (kept out of shell history).
pub fn identifier(value: String) -> anyhow::Result<String> {
    if value != "-" {
        return Ok(value);
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim().to_owned())
}

pub async fn run(
    config: &Config,
    tenant: &str,
    kind: IdentifierKind,
    value: &str,
) -> anyhow::Result<()> {
    let Some(tenant) = config.tenants.iter().find(|t| t.id == tenant) else {
        bail!("no tenant {tenant} in the configuration");
    };
    let Some(hash) = identifier_hash(kind, value, &phone_rules(tenant)) else {
        bail!("the {} normalizes to nothing", kind.as_str());
    };
    let kafka = &config.kafka;
    ensure_topics(kafka, &catalog_requests(kafka)).await?;
    let registry = SchemaRegistry::new(&config.schema_registry)?;
    let suppressions = TopicCodec::of(
        &registry,
        &Catalog::new(&kafka.topic_prefix),
        funnelhub_schemas::topics::SUPPRESSIONS,
    )
    .await?;
    let producer = AckedProducer::new(kafka, "funnelhub-privacy", Duration::from_secs(15))?;
    let server = Server::connect(&config.clickhouse)
        .await
        .with_context(|| format!("ClickHouse at {}", config.clickhouse.url))?;
    let attachments = funnelhub_setup::attachments::Attachments::open(
        config.edge.setup.attachments_url.as_deref(),
        &config.edge.setup.attachments_dir,
    )?;
    let purger = Purger {
        clickhouse: &server.client,
        database: &config.clickhouse.database,
        producer: &producer,
        suppressions: &suppressions,
        settle: SETTLE,
        attachments: Some(&attachments),
    };
    let receipt = purge(&purger, &tenant.id, kind, &hash).await?;
    println!("{}", serde_json::to_string_pretty(&receipt)?);
    if receipt.left > 0 {
        bail!(
            "{} rows were still found after the deletes: run the purge again",
            receipt.left
        );
    }
    Ok(())
}

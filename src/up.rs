//! `funnelhub up`: the main job on the local stack.
//!
//! Checks the brokers, creates the catalog's topics, serves the embedded schema registry,
//! registers every value schema, serves the edge, runs the processors, and reports what is
//! up. The sinks join it as they are built.

use std::fmt::Write as _;

use anyhow::Context;
use funnelhub_kafka::admin::{catalog_requests, check_brokers, ensure_topics, TopicOutcome};
use funnelhub_kafka::SchemaRegistry;
use funnelhub_schemas::Catalog;
use funnelhub_tenants::{ControlPlane, Keyring};

use crate::config::Config;

/// Start everything; return after printing the summary when `once`, else on Ctrl-C.
pub async fn run(config: &Config, once: bool) -> anyhow::Result<()> {
    let brokers = check_brokers(&config.kafka).await.with_context(|| {
        format!(
            "Kafka does not answer at {} (start the local stack with `scripts/stack up`)",
            config.kafka.brokers
        )
    })?;
    // What the broker serves, for the summary; a listener this cannot read (TLS, SASL)
    // is not an error.
    let protocol = match funnelhub_kafka::broker::api_versions(
        &config.kafka.brokers,
        std::time::Duration::from_secs(5),
    )
    .await
    {
        Ok(apis) => apis.summary(),
        Err(e) => format!("versions not read: {e}"),
    };
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
    // One control plane for every service of this process: tenants and suppressions are
    // each read once.
    let control = control_plane(config).await?;
    let edge = start_edge(config, &control).await?;
    let processors = start_processors(config, funnelhub_processors::Stages::All, &control).await?;
    let capi = start_capi(config, &control).await?;
    // ClickHouse is optional for the rest of the pipeline: without it the sink does not
    // run and its topics wait (retention 30 days) until `funnelhub sink clickhouse` runs.
    let clickhouse = funnelhub_sinks::clickhouse::start(
        &config.kafka,
        &SchemaRegistry::new(&config.schema_registry)?,
        &config.clickhouse,
        &control,
    )
    .await;

    let mut out = String::new();
    writeln!(out, "funnelhub is up")?;
    writeln!(
        out,
        "  kafka            {} (brokers: {})",
        config.kafka.brokers,
        brokers.join(", ")
    )?;
    writeln!(out, "                   {protocol}")?;
    writeln!(
        out,
        "  schema registry  {} (stored in topic {})",
        registry.url(),
        config.registry.topic
    )?;
    let metrics = match edge.ops_url() {
        Some(ops) => format!("{ops}/metrics"),
        None => "not served: [edge] ops_listen is unset".into(),
    };
    writeln!(
        out,
        "  edge             {} (metrics at {metrics})",
        edge.url()
    )?;
    writeln!(
        out,
        "  web app          {}/app/ (setup wizard, chat, ops desk: sign in with an API key)",
        edge.url()
    )?;
    writeln!(
        out,
        "  processors       {} (groups {}-*, metrics with the edge's)",
        processors.names().join(", "),
        config.process.group_prefix
    )?;
    writeln!(
        out,
        "  CAPI sink        group {} → {}",
        config.capi.group,
        match &capi.emulator {
            Some(emulator) => format!(
                "Graph API emulator {} (no tenant has a meta_access_token; received events: {}/_emulator/events)",
                emulator.url(),
                emulator.url()
            ),
            None => config.capi.graph_url.clone(),
        }
    )?;
    let tenants = control.tenants.all();
    if tenants.is_empty() {
        writeln!(out, "                   no tenants configured: every request gets 404 (see funnelhub.example.toml, `funnelhub tenants add`)")?;
    }
    for tenant in &tenants {
        let configured = [
            ("hotmart", tenant.hotmart_hottok.is_some()),
            ("kiwify", tenant.kiwify_token.is_some()),
            ("stripe", !tenant.stripe_signing_secrets.is_empty()),
            ("onboard", tenant.onboard_secret.is_some()),
        ];
        let sources: Vec<&str> = std::iter::once("track")
            .chain(
                configured
                    .iter()
                    .filter(|(_, on)| *on)
                    .map(|(name, _)| *name),
            )
            .collect();
        writeln!(
            out,
            "                   tenant {:<12} {}",
            tenant.id,
            sources.join(", ")
        )?;
    }
    match &clickhouse {
        Ok((_, server)) => writeln!(
            out,
            "  clickhouse       {} database {} (version {}; sink group {})",
            config.clickhouse.url,
            config.clickhouse.database,
            server.version_text,
            config.clickhouse.group
        )?,
        Err(e) => writeln!(
            out,
            "  clickhouse       {} NOT REACHABLE: {e}",
            config.clickhouse.url
        )?,
    }
    // What the broker holds: a topic created earlier keeps its partition count.
    let partitions = funnelhub_kafka::admin::partition_counts(&config.kafka)
        .await
        .unwrap_or_default();
    writeln!(out, "  topics (prefix {}):", catalog.prefix())?;
    for (topic, name) in catalog.topics() {
        let created = outcomes
            .iter()
            .any(|(n, outcome)| *n == name && *outcome == TopicOutcome::Created);
        let spec = topic.spec();
        let id = ids
            .iter()
            .find(|(t, _)| *t == name)
            .map_or(0, |(_, id)| *id);
        let configured = config.kafka.partitions.unwrap_or(spec.partitions);
        let actual = partitions.get(name.as_str()).copied();
        let state = match (created, actual) {
            (true, _) => "created".to_owned(),
            (false, Some(n)) if n != configured as usize => {
                format!("exists (configured {configured}: an existing topic keeps its count)")
            }
            (false, _) => "exists".to_owned(),
        };
        writeln!(
            out,
            "    {name:<36} {:>2} partitions  schema id {id:<3} key {:<28} {state}",
            actual.unwrap_or(configured as usize),
            spec.key,
        )?;
    }
    print!("{out}");
    let stopped = if once {
        Ok(())
    } else {
        println!("Press Ctrl-C to stop.");
        until_stopped(|| {
            processors.has_failed()
                || capi.sink.has_stopped()
                || clickhouse
                    .as_ref()
                    .is_ok_and(|(sink, _)| sink.has_stopped())
        })
        .await
    };
    println!("stopping");
    // The edge first: it needs the registry until its last request; then the processors
    // and the sink (each finishes its batch in hand and commits).
    edge.stop().await?;
    processors.stop().await.map_err(anyhow::Error::msg)?;
    capi.sink.stop().await.map_err(anyhow::Error::msg)?;
    if let Ok((sink, _)) = clickhouse {
        sink.stop().await.map_err(anyhow::Error::msg)?;
        if !once {
            // The funnel without Grafana, from what this run stored.
            let tenants: Vec<String> = tenants.iter().map(|t| t.id.clone()).collect();
            let out = std::path::Path::new("funnelhub-report");
            match crate::report::run(&config.clickhouse, &tenants, 7, out).await {
                Ok((text, files)) => {
                    print!("{text}");
                    for file in files {
                        println!("funnel drawn in {}", file.display());
                    }
                }
                Err(e) => println!("no funnel report: {e:#}"),
            }
        }
    }
    if let Some(emulator) = capi.emulator {
        emulator.stop().await?;
    }
    registry.stop().await?;
    stopped
}

/// What every service of this process follows: the configuration file's tenants overridden
/// by `control.tenants` (secrets opened with the keys in `FUNNELHUB_TENANT_KEYS`), and the
/// suppression list. Without any Meta token anywhere, tenants with a pixel get emulated
/// tokens (see [`start_capi`]).
pub async fn control_plane(config: &Config) -> anyhow::Result<ControlPlane> {
    let registry = SchemaRegistry::new(&config.schema_registry)?;
    let seeds = if config.has_meta_tokens() {
        config.tenants.clone()
    } else {
        config.emulated_tenants()
    };
    ControlPlane::follow(&config.kafka, &registry, seeds, Keyring::from_env()?)
        .await
        .context("reading the tenants and the suppression list")
}

/// The processors as `funnelhub process` and `funnelhub up` run them.
pub async fn start_processors(
    config: &Config,
    which: funnelhub_processors::Stages,
    control: &ControlPlane,
) -> anyhow::Result<funnelhub_processors::Processors> {
    let registry = SchemaRegistry::new(&config.schema_registry)?;
    funnelhub_processors::start(&config.kafka, &registry, &config.process, which, control)
        .await
        .context("starting the processors")
}

/// Where `funnelhub up` serves the Graph API emulator when the port is free.
pub const EMULATOR_ADDR: ([u8; 4], u16) = ([127, 0, 0, 1], 8090);

/// The CAPI sink as `funnelhub up` runs it, and the emulator it talks to when no tenant
/// has a real token.
pub struct Capi {
    pub sink: funnelhub_kafka::stage::RunningStage,
    pub emulator: Option<funnelhub_emulators::MetaGraphEmulator>,
}

/// Start the CAPI sink. Without any tenant token the sink talks to a Graph API emulator
/// (on `127.0.0.1:8090`, else any free port) knowing every tenant's pixel, so that the demo
/// pipeline runs end to end; with tokens it talks to `[capi] graph_url`.
pub async fn start_capi(config: &Config, control: &ControlPlane) -> anyhow::Result<Capi> {
    let registry = SchemaRegistry::new(&config.schema_registry)?;
    let mut capi = config.capi.clone();
    let emulator = if config.has_meta_tokens() {
        None
    } else {
        let pixels = config.emulator_pixels();
        let faults = funnelhub_emulators::Faults::default;
        let emulator = match funnelhub_emulators::MetaGraphEmulator::start(
            EMULATOR_ADDR.into(),
            pixels.clone(),
            faults(),
        )
        .await
        {
            Ok(emulator) => emulator,
            Err(_) => funnelhub_emulators::MetaGraphEmulator::start(
                ([127, 0, 0, 1], 0).into(),
                pixels,
                faults(),
            )
            .await
            .context("starting the Graph API emulator")?,
        };
        capi.graph_url = emulator.url();
        Some(emulator)
    };
    let sink = funnelhub_sinks::meta_capi::start(&config.kafka, &registry, &capi, control)
        .await
        .context("starting the CAPI sink")?;
    Ok(Capi { sink, emulator })
}

/// Until SIGINT or SIGTERM, or an error if a stage stopped by itself (`has_failed`).
pub async fn until_stopped(has_failed: impl Fn() -> bool) -> anyhow::Result<()> {
    let mut check = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = crate::shutdown::requested() => return Ok(()),
            _ = check.tick() => {
                if has_failed() {
                    anyhow::bail!("a stage stopped (see the log)");
                }
            }
        }
    }
}

/// The edge as `funnelhub edge` and `funnelhub up` run it.
pub async fn start_edge(
    config: &Config,
    control: &ControlPlane,
) -> anyhow::Result<funnelhub_ingest::Edge> {
    funnelhub_ingest::start(
        &config.edge,
        control.tenants.clone(),
        &config.kafka,
        &config.schema_registry,
        Some(funnelhub_runtime::prometheus()),
        Some(&config.clickhouse),
    )
    .await
    .context("starting the edge")
}

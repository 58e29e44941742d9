//! `funnelhub`: the command that runs every part of the pipeline.

mod config;
mod privacy;
mod replay;
mod report;
mod shutdown;
mod simulate;
mod tenants;
mod up;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

/// mimalloc: the processors' state allocates and frees small strings per event; glibc's
/// malloc spent ~20% of the funnel logic's time in free/consolidate (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use clap::{Parser, Subcommand};
use funnelhub_kafka::admin::{catalog_requests, ensure_topics, TopicOutcome};
use funnelhub_kafka::SchemaRegistry;
use funnelhub_schemas::Catalog;

use crate::config::{Config, FlagOverrides, KafkaFlags, SchemaRegistryFlags};
use funnelhub_runtime::telemetry::Telemetry;

/// Kafka-native server-side tracking and funnel pipeline.
///
/// Configuration: built-in defaults (they match `scripts/stack up`) → TOML file →
/// FUNNELHUB_<SECTION>__<FIELD> environment variables → flags. `funnelhub config` prints it.
#[derive(Debug, Parser)]
#[command(name = "funnelhub", version, about, long_about)]
struct Cli {
    /// TOML configuration file (default: $FUNNELHUB_CONFIG, else ./funnelhub.toml if present).
    #[arg(long, global = true, env = "FUNNELHUB_CONFIG")]
    config: Option<PathBuf>,
    /// Kafka bootstrap servers (overrides [kafka] brokers).
    #[arg(long, global = true)]
    brokers: Option<String>,
    /// Schema registry URL clients use (overrides [schema_registry] url).
    #[arg(long, global = true)]
    registry_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the pipeline on the local stack: creates topics, serves the schema registry,
    /// registers every schema, serves the edge, prints what is up, runs until Ctrl-C.
    Up {
        /// Stop after printing what is up (smoke test).
        #[arg(long)]
        once: bool,
    },
    /// Serve the Confluent-compatible schema registry (schemas stored in Kafka's
    /// `_schemas` topic) until Ctrl-C.
    Registry,
    /// Create the catalog's missing topics (idempotent) and list every topic.
    Topics,
    /// Register every topic's value schema with the schema registry and print the ids.
    Schemas,
    /// Print the effective configuration as TOML.
    Config,
    /// HTTP edge: landing-page hits and signed gateway/onboarding webhooks to Avro on
    /// Kafka, answered after the broker acknowledged; until Ctrl-C.
    Edge,
    /// Stateful processors: dedupe (raw topics → deduped.events), funnel stages
    /// (→ funnel.transitions, ops.tickets) and conversion matching (→ matching.results,
    /// capi.requests), each a consumer group; until Ctrl-C.
    Process {
        /// Run one stage only (scale stages apart); default all.
        #[arg(long, value_enum, default_value_t = StageArg::All)]
        stage: StageArg,
    },
    /// Sinks: `capi` (Meta Conversions API) or `clickhouse` (analysts' tables, created by
    /// migrations at start-up); each a consumer group; until Ctrl-C.
    Sink {
        /// Which sink.
        #[arg(value_parser = ["capi", "clickhouse"])]
        which: String,
    },
    /// Reset a stage's consumer group to re-read history: from the earliest retained
    /// record (default), an offset or a time. Prints per partition from → to and how many
    /// records are processed again; refuses while the group has active members. Every
    /// stage is idempotent, so a replay re-emits the same records (docs/replay.md).
    Replay {
        /// Stage: dedupe, funnel, match-route, match, capi, clickhouse.
        #[arg(long)]
        stage: Option<String>,
        /// A consumer group by name instead of a stage (with --topic).
        #[arg(long, conflicts_with = "stage")]
        group: Option<String>,
        /// Topics to reset (full names); default the stage's inputs.
        #[arg(long = "topic")]
        topics: Vec<String>,
        /// Start at this offset on every partition.
        #[arg(long, conflicts_with = "to_time")]
        to_offset: Option<i64>,
        /// Start at the first record at or after this time (RFC 3339, e.g.
        /// 2026-01-01T00:00:00Z).
        #[arg(long)]
        to_time: Option<String>,
        /// Print the plan only.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print each tenant's funnels from ClickHouse (the Funnel dashboard's own queries)
    /// and draw them into `funnel-<tenant>.png`: the funnel without Grafana.
    Report {
        /// Tenants (default: every configured tenant).
        #[arg(long = "tenant")]
        tenants: Vec<String>,
        /// Window in days.
        #[arg(long, default_value_t = 7)]
        days: u32,
        /// Directory of the PNG files.
        #[arg(long, default_value = "funnelhub-report")]
        out: PathBuf,
    },
    /// Demo workload against the running pipeline (`funnelhub up`): the configured
    /// tenants' visits, purchases and refunds through Hotmart, Kiwify and Stripe webhooks
    /// signed the real way, onboarding sessions through all seven events with failures,
    /// duplicates and out-of-order delivery. Then prints the ground truth next to what
    /// ClickHouse and the Meta emulator hold: funnels, match rate, CAPI outcomes.
    Simulate {
        /// Requests per second.
        #[arg(long, default_value_t = 50)]
        rate: u32,
        /// Seconds to keep starting journeys.
        #[arg(long, default_value_t = 60)]
        duration: u64,
        /// Stop after this many journeys (a journey: one visitor, buyer or onboarding
        /// session).
        #[arg(long)]
        journeys: Option<u64>,
        /// Journeys in flight at once.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Seed of the workload (default random): the same seed sends the same journeys.
        #[arg(long)]
        seed: Option<u64>,
        /// Run id inside every id the run creates (lowercase letters and digits).
        #[arg(long)]
        run: Option<String>,
        /// Edge base URL (default http://[edge] listen).
        #[arg(long)]
        edge: Option<String>,
        /// Seconds to wait for the pipeline to hold the run's facts.
        #[arg(long, default_value_t = 60)]
        settle: u64,
        /// Meta Graph API emulator to read back (default http://127.0.0.1:8090, the one
        /// `funnelhub up` starts, while no tenant has a Meta token).
        #[arg(long)]
        meta_emulator: Option<String>,
        /// Exit with an error unless the pipeline holds exactly the ground truth.
        #[arg(long)]
        check: bool,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        /// Measure edge → ClickHouse latency meanwhile (a probe click every 200 ms).
        #[arg(long)]
        probe_latency: bool,
    },
    /// Data rights (LGPD/GDPR): `purge` erases one person of a tenant by email, phone or
    /// external id (docs/privacy.md).
    Privacy {
        #[command(subcommand)]
        action: PrivacyCommand,
    },
    /// Tenants on the control plane (topic `control.tenants`, secrets encrypted with the
    /// keys in FUNNELHUB_TENANT_KEYS): running services apply changes without a restart.
    Tenants {
        #[command(subcommand)]
        action: TenantsCommand,
    },
    /// Serve an emulator of Meta's Graph API (Conversions API endpoint) that enforces
    /// Meta's documented rules and can inject faults; knows each `[[tenants]]` pixel with
    /// its `meta_access_token` (`emulated-token-<tenant>` without one). Point
    /// `[capi] graph_url` at it. Until Ctrl-C.
    CapiEmulator {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: std::net::SocketAddr,
    },
}

#[derive(Debug, Subcommand)]
enum TenantsCommand {
    /// Add a tenant: `funnelhub tenants add acme meta_pixel_id=123 meta_access_token=-`
    /// (`-` reads the value from standard input, one line per `-`).
    Add {
        id: String,
        /// key=value settings (see `set`).
        settings: Vec<String>,
    },
    /// Change settings: allowed_origins, consent_ads_default, consent_analytics_default,
    /// phone_calling_code, meta_pixel_id, meta_test_event_code,
    /// meta_abandoned_checkout_event, retention_days,
    /// hotmart_hottok, kiwify_token, stripe_signing_secrets, onboard_secret,
    /// meta_access_token, api_keys (lists comma-separated; empty clears).
    Set {
        id: String,
        #[arg(required = true)]
        settings: Vec<String>,
    },
    /// Every tenant with its settings, secrets masked (`****abcd`), and where it comes from.
    List,
    /// Re-wrap every tenant's data key with the first key of FUNNELHUB_TENANT_KEYS (keep
    /// the old key there until this ran; the ciphertexts do not change).
    RotateKey,
    /// Give tenant `id` a new random API key of `--scope` read (the read API), setup (also
    /// guided setup, which can replace the pixel, token and webhook secrets) or admin (also
    /// replays and purges), and print it: the only time it is shown in clear.
    NewApiKey {
        id: String,
        #[arg(long, value_enum)]
        scope: ScopeArg,
    },
    /// Print a new random key-encryption key (`id:base64`) for FUNNELHUB_TENANT_KEYS.
    NewKey {
        #[arg(long, default_value = "k1")]
        id: String,
    },
}

/// An API key's scope.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ScopeArg {
    Read,
    Setup,
    Admin,
}

#[derive(Debug, Subcommand)]
enum PrivacyCommand {
    /// Delete every ClickHouse row tied to the person, suppress them in every stage
    /// (replays included) and in Meta dispatches, and print the purge receipt. The
    /// identifier is hashed as the edge hashes it and never stored; `-` reads it from
    /// standard input.
    Purge {
        /// Tenant id.
        #[arg(long)]
        tenant: String,
        #[arg(long, group = "identifier", required = true)]
        email: Option<String>,
        #[arg(long, group = "identifier")]
        phone: Option<String>,
        #[arg(long, group = "identifier")]
        external_id: Option<String>,
    },
}

impl Command {
    /// The `service.name` suffix of its spans.
    fn service(&self) -> &'static str {
        match self {
            Command::Up { .. } => "up",
            Command::Edge => "edge",
            Command::Process { .. } => "process",
            Command::Sink { .. } => "sink",
            Command::Simulate { .. } => "simulate",
            _ => "cli",
        }
    }
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum StageArg {
    All,
    Dedupe,
    Funnel,
    /// The match router and the matcher.
    Match,
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,rdkafka=warn".into());
    // FUNNELHUB_LOG_FORMAT=json: one JSON object per line (fields such as tenant_id and
    // event_id as keys), for log shippers; text otherwise.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("FUNNELHUB_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
    let cli = Cli::parse();
    // Before any stage starts counting: metrics recorded earlier would be lost.
    funnelhub_runtime::prometheus();
    let flags = FlagOverrides {
        kafka: cli.brokers.clone().map(|brokers| KafkaFlags { brokers }),
        schema_registry: cli
            .registry_url
            .clone()
            .map(|url| SchemaRegistryFlags { url }),
    };
    let config = match Config::load(cli.config.as_deref(), &flags) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: loading configuration: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    // Outside the async runtime: the exporter sends from a thread of its own.
    let service = format!("funnelhub-{}", cli.command.service());
    let telemetry = match Telemetry::start(&config.telemetry, &service) {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime starts");
    let result = runtime.block_on(run(cli, config));
    drop(runtime);
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, config: Config) -> anyhow::Result<()> {
    shutdown::listen().context("listening for SIGINT and SIGTERM")?;
    match cli.command {
        Command::Up { once } => up::run(&config, once).await,
        Command::Registry => {
            let registry = funnelhub_registry::start(&config.registry, &config.kafka)
                .await
                .context("starting the schema registry")?;
            println!("schema registry listening on {}", registry.url());
            shutdown::requested().await;
            registry.stop().await?;
            Ok(())
        }
        Command::Topics => {
            let created = ensure_topics(&config.kafka, &catalog_requests(&config.kafka)).await?;
            for (name, outcome) in created {
                let what = match outcome {
                    TopicOutcome::Created => "created",
                    TopicOutcome::AlreadyExisted => "exists",
                };
                println!("{what:8} {name}");
            }
            Ok(())
        }
        Command::Schemas => {
            let registry = SchemaRegistry::new(&config.schema_registry)?;
            let catalog = Catalog::new(&config.kafka.topic_prefix);
            for (topic, id) in registry.register_catalog(&catalog).await? {
                println!("{id:>4}  {topic}-value");
            }
            Ok(())
        }
        Command::Config => {
            print!("{}", toml::to_string_pretty(&config)?);
            Ok(())
        }
        Command::Edge => {
            let control = up::control_plane(&config).await?;
            let edge = up::start_edge(&config, &control).await?;
            println!(
                "edge listening on {} ({} tenants)",
                edge.url(),
                control.tenants.all().len()
            );
            shutdown::requested().await;
            edge.stop().await?;
            Ok(())
        }
        Command::Process { stage } => {
            let which = match stage {
                StageArg::All => funnelhub_processors::Stages::All,
                StageArg::Dedupe => funnelhub_processors::Stages::Dedupe,
                StageArg::Funnel => funnelhub_processors::Stages::Funnel,
                StageArg::Match => funnelhub_processors::Stages::Match,
            };
            let prometheus = funnelhub_runtime::prometheus();
            let control = up::control_plane(&config).await?;
            let processors = up::start_processors(&config, which, &control).await?;
            let ops = funnelhub_runtime::serve(
                config.process.listen,
                funnelhub_runtime::ops_router_with_readiness(
                    prometheus,
                    funnelhub_kafka::stage::readiness(processors.health()),
                ),
            )
            .await
            .with_context(|| format!("cannot listen on {}", config.process.listen))?;
            println!(
                "processors running: {} (metrics at {}/metrics)",
                processors.names().join(", "),
                ops.url()
            );
            up::until_stopped(|| processors.has_failed()).await?;
            ops.stop().await?;
            processors.stop().await.map_err(anyhow::Error::msg)
        }
        Command::Sink { which } if which == "capi" => {
            let registry = SchemaRegistry::new(&config.schema_registry)?;
            if !config.has_meta_tokens() {
                // As `funnelhub up`: without tokens only an emulator can be talked to.
                tracing::warn!(graph_url = %config.capi.graph_url, "no tenant has a meta_access_token: sending with emulated tokens, which only `funnelhub capi-emulator` accepts");
            }
            let control = up::control_plane(&config).await?;
            let sink =
                funnelhub_sinks::meta_capi::start(&config.kafka, &registry, &config.capi, &control)
                    .await
                    .context("starting the CAPI sink")?;
            let what = format!(
                "CAPI sink delivering to {} (group {})",
                config.capi.graph_url, config.capi.group
            );
            run_stage(sink, config.capi.listen, &what).await
        }
        Command::Sink { .. } => {
            let registry = SchemaRegistry::new(&config.schema_registry)?;
            let control = up::control_plane(&config).await?;
            let (sink, server) = funnelhub_sinks::clickhouse::start(
                &config.kafka,
                &registry,
                &config.clickhouse,
                &control,
            )
            .await
            .context("starting the ClickHouse sink")?;
            let what = format!(
                "ClickHouse sink writing to {} database {} (ClickHouse {}, group {})",
                config.clickhouse.url,
                config.clickhouse.database,
                server.version_text,
                config.clickhouse.group
            );
            run_stage(sink, config.clickhouse.listen, &what).await
        }
        Command::Report { tenants, days, out } => {
            let tenants = if tenants.is_empty() {
                config.tenants.iter().map(|t| t.id.clone()).collect()
            } else {
                tenants
            };
            let (text, files) = report::run(&config.clickhouse, &tenants, days, &out).await?;
            print!("{text}");
            for file in files {
                println!("wrote {}", file.display());
            }
            Ok(())
        }
        Command::Simulate {
            rate,
            duration,
            journeys,
            concurrency,
            seed,
            run,
            edge,
            settle,
            meta_emulator,
            check,
            quiet,
            probe_latency,
        } => {
            let options = simulate::Options {
                edge,
                rate,
                duration: std::time::Duration::from_secs(duration),
                journeys,
                concurrency,
                seed,
                run,
                settle: std::time::Duration::from_secs(settle),
                meta_emulator,
                progress: !quiet,
                probe: probe_latency,
                check,
            };
            simulate::run(&config, options).await
        }
        Command::Privacy {
            action:
                PrivacyCommand::Purge {
                    tenant,
                    email,
                    phone,
                    external_id,
                },
        } => {
            use funnelhub_schemas::privacy::IdentifierKind;
            let (kind, value) = match (email, phone, external_id) {
                (Some(v), _, _) => (IdentifierKind::Email, v),
                (_, Some(v), _) => (IdentifierKind::Phone, v),
                (_, _, Some(v)) => (IdentifierKind::ExternalId, v),
                _ => anyhow::bail!("give --email, --phone or --external-id"),
            };
            privacy::run(&config, &tenant, kind, &privacy::identifier(value)?).await
        }
        Command::Tenants { action } => {
            let action = match action {
                TenantsCommand::Add { id, settings } => tenants::Action::Add { id, settings },
                TenantsCommand::Set { id, settings } => tenants::Action::Set { id, settings },
                TenantsCommand::List => tenants::Action::List,
                TenantsCommand::RotateKey => tenants::Action::RotateKey,
                TenantsCommand::NewKey { id } => tenants::Action::NewKey { id },
                TenantsCommand::NewApiKey { id, scope } => tenants::Action::NewApiKey {
                    id,
                    scope: match scope {
                        ScopeArg::Read => funnelhub_tenants::KeyScope::Read,
                        ScopeArg::Setup => funnelhub_tenants::KeyScope::Setup,
                        ScopeArg::Admin => funnelhub_tenants::KeyScope::Admin,
                    },
                },
            };
            print!("{}", tenants::run(&config, action).await?);
            Ok(())
        }
        Command::CapiEmulator { listen } => {
            let pixels = config.emulator_pixels();
            let emulator = funnelhub_emulators::MetaGraphEmulator::start(
                listen,
                pixels,
                funnelhub_emulators::Faults::default(),
            )
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
            println!(
                "Meta Graph API emulator at {} (faults: POST /_emulator/faults, received: GET /_emulator/events)",
                emulator.url()
            );
            shutdown::requested().await;
            emulator.stop().await?;
            Ok(())
        }
        Command::Replay {
            stage,
            group,
            topics,
            to_offset,
            to_time,
            dry_run,
        } => {
            let from = match (to_offset, to_time) {
                (Some(offset), _) => funnelhub_kafka::replay::ReplayFrom::Offset(offset),
                (None, Some(time)) => funnelhub_kafka::replay::ReplayFrom::Time(
                    chrono::DateTime::parse_from_rfc3339(&time)
                        .with_context(|| format!("--to-time {time:?} is not an RFC 3339 time"))?
                        .timestamp_millis(),
                ),
                (None, None) => funnelhub_kafka::replay::ReplayFrom::Earliest,
            };
            let request = replay::Request {
                stage,
                group,
                topics,
                from,
                dry_run,
            };
            print!("{}", replay::run(&config, request).await?);
            Ok(())
        }
    }
}

/// Serve `/metrics`, `/healthz` and `/readyz` on `listen` beside a running stage until
/// Ctrl-C (or the stage stops by itself), then stop both.
async fn run_stage(
    stage: funnelhub_kafka::stage::RunningStage,
    listen: std::net::SocketAddr,
    what: &str,
) -> anyhow::Result<()> {
    let ops = funnelhub_runtime::serve(
        listen,
        funnelhub_runtime::ops_router_with_readiness(
            funnelhub_runtime::prometheus(),
            funnelhub_kafka::stage::readiness(vec![stage.health()]),
        ),
    )
    .await
    .with_context(|| format!("cannot listen on {listen}"))?;
    println!("{what}; metrics at {}/metrics", ops.url());
    let stopped = up::until_stopped(|| stage.has_stopped()).await;
    ops.stop().await?;
    stage.stop().await.map_err(anyhow::Error::msg)?;
    stopped
}

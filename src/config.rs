//! The one configuration type of every funnelhub command, and its loader.
//!
//! Layers, later ones win: built-in defaults (they work with `scripts/stack up`) → a TOML
//! file (`--config`, else `FUNNELHUB_CONFIG`, else `./funnelhub.toml` when present) →
//! environment variables `FUNNELHUB_<SECTION>__<FIELD>` (e.g.
//! `FUNNELHUB_KAFKA__BROKERS=broker:9092`) → command-line flags.
//! `funnelhub config` prints the result.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use funnelhub_clickhouse::ClickHouseConfig;
use funnelhub_ingest::{EdgeConfig, TenantConfig};
use funnelhub_kafka::{KafkaConfig, SchemaRegistryConfig};
use funnelhub_processors::ProcessConfig;
use funnelhub_registry::RegistryConfig;
use funnelhub_sinks::meta_capi::CapiConfig;
use serde::{Deserialize, Serialize};

/// Every setting, by section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[kafka]`: brokers, topic prefix, replication, client properties.
    pub kafka: KafkaConfig,
    /// `[schema_registry]`: the registry clients use (the embedded one or Confluent's).
    pub schema_registry: SchemaRegistryConfig,
    /// `[registry]`: the embedded registry server (`funnelhub registry`, `funnelhub up`).
    pub registry: RegistryConfig,
    /// `[clickhouse]`: where analysts' tables live, and the ClickHouse sink.
    pub clickhouse: ClickHouseConfig,
    /// `[edge]`: the HTTP edge.
    pub edge: EdgeConfig,
    /// `[process]`: dedupe, funnel and matching processors.
    pub process: ProcessConfig,
    /// `[capi]`: the Meta Conversions API sink.
    pub capi: CapiConfig,
    /// `[[tenants]]`: who may send events, with their secrets (never printed).
    pub tenants: Vec<TenantConfig>,
    /// `[telemetry]`: OpenTelemetry trace export (off unless `otlp_endpoint` is set).
    pub telemetry: funnelhub_runtime::telemetry::TelemetryConfig,
}

/// Settings given as flags (highest precedence).
#[derive(Debug, Default, Serialize)]
pub struct FlagOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaFlags>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema_registry: Option<SchemaRegistryFlags>,
}

#[derive(Debug, Serialize)]
pub struct KafkaFlags {
    pub brokers: String,
}

#[derive(Debug, Serialize)]
pub struct SchemaRegistryFlags {
    pub url: String,
}

impl Config {
    /// Load the layers in order. `file` is the `--config` flag.
    pub fn load(file: Option<&Path>, flags: &FlagOverrides) -> anyhow::Result<Config> {
        let file: Option<PathBuf> = file
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("FUNNELHUB_CONFIG").map(PathBuf::from))
            .or_else(|| {
                let local = PathBuf::from("funnelhub.toml");
                local.exists().then_some(local)
            });
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                anyhow::bail!("config file {} does not exist", file.display());
            }
            figment = figment.merge(Toml::file(file));
        }
        figment
            // Only FUNNELHUB_<SECTION>__<FIELD>: other FUNNELHUB_* variables (the stack's,
            // the tests') are not configuration.
            .merge(
                Env::prefixed("FUNNELHUB_")
                    .filter(|key| key.as_str().contains("__"))
                    .split("__"),
            )
            .merge(Serialized::defaults(flags))
            .extract::<Config>()
            .map_err(anyhow::Error::from)
            .and_then(Config::checked)
    }

    /// Refuse processor windows longer than the default retention: a tenant's own
    /// `retention_days` caps the processors' state (`processors::retention`), the default
    /// must not be exceeded by the windows themselves.
    /// Refuse a tenant secret that is empty or short too (`tenants[<id>].<setting>`).
    fn checked(self) -> anyhow::Result<Config> {
        for tenant in &self.tenants {
            tenant
                .check_secrets()
                .map_err(|e| anyhow::anyhow!("tenants[{}].{e}", tenant.id))?;
        }
        for key in &self.edge.setup.admin_keys {
            funnelhub_tenants::check_secret("edge.setup.admin_keys", key.expose())?;
        }
        let keep_hours = u64::from(self.clickhouse.retention_days) * 24;
        let process = &self.process;
        for (field, hours) in [
            ("process.dedupe_window_hours", process.dedupe_window_hours),
            ("process.session_ttl_hours", process.session_ttl_hours),
            (
                "process.matching.lookback_hours",
                process.matching.lookback_hours,
            ),
        ] {
            anyhow::ensure!(
                u64::from(hours) <= keep_hours,
                "{field} = {hours} keeps processor state longer than clickhouse.retention_days \
                 = {} allows",
                self.clickhouse.retention_days
            );
        }
        Ok(self)
    }

    /// Whether any tenant has a Conversions API token (else only an emulator of Meta's
    /// Graph API can be talked to).
    pub fn has_meta_tokens(&self) -> bool {
        self.tenants.iter().any(|t| t.meta_access_token.is_some())
    }

    /// The tenants for a Graph API emulator: those with a pixel but no token get
    /// `emulated-token-<tenant>`.
    pub fn emulated_tenants(&self) -> Vec<TenantConfig> {
        let mut tenants = self.tenants.clone();
        for tenant in &mut tenants {
            if tenant.meta_pixel_id.is_some() && tenant.meta_access_token.is_none() {
                tenant.meta_access_token =
                    Some(format!("emulated-token-{}", tenant.id).as_str().into());
            }
        }
        tenants
    }

    /// Each pixel with its token, as a Graph API emulator is told them.
    pub fn emulator_pixels(&self) -> std::collections::BTreeMap<String, String> {
        self.emulated_tenants()
            .iter()
            .filter_map(|t| {
                Some((
                    t.meta_pixel_id.clone()?,
                    t.meta_access_token.as_ref()?.expose().to_owned(),
                ))
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail works with figment::Error
mod tests {
    use super::*;

    fn load(file: Option<&Path>, flags: &FlagOverrides) -> Result<Config, figment::Error> {
        Config::load(file, flags).map_err(|e| figment::Error::from(format!("{e:#}")))
    }

    #[test]
    fn layers_apply_in_order_and_unknown_keys_are_refused() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "funnelhub.toml",
                "[kafka]\nbrokers = \"file:9092\"\ntopic_prefix = \"from-file\"\n",
            )?;
            jail.set_env("FUNNELHUB_KAFKA__TOPIC_PREFIX", "from-env");
            jail.set_env("FUNNELHUB_STACK_DIR", "/not/config");
            let config = load(None, &FlagOverrides::default())?;
            assert_eq!(config.kafka.brokers, "file:9092");
            assert_eq!(config.kafka.topic_prefix, "from-env");
            assert_eq!(config.registry, RegistryConfig::default());

            let flags = FlagOverrides {
                kafka: Some(KafkaFlags {
                    brokers: "flag:9092".into(),
                }),
                schema_registry: None,
            };
            let config = load(None, &flags)?;
            assert_eq!(config.kafka.brokers, "flag:9092");
            assert_eq!(config.kafka.topic_prefix, "from-env");

            jail.create_file("bad.toml", "[kafka]\nbrokerz = \"x\"\n")?;
            let err = load(Some(Path::new("bad.toml")), &FlagOverrides::default())
                .expect_err("unknown key");
            assert!(err.to_string().contains("brokerz"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn the_example_loads_with_two_partitions_and_a_short_clickhouse_linger() {
        figment::Jail::expect_with(|_| {
            let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("funnelhub.example.toml");
            let config = load(Some(&example), &FlagOverrides::default())?;
            assert_eq!(config.kafka.partitions, Some(2));
            assert!(config.kafka.client_properties.is_empty());
            assert!(config.kafka.consumer_properties.is_empty());
            assert_eq!(config.clickhouse.linger_ms, 250);
            assert_eq!(config.tenants.len(), 3);
            Ok(())
        });
    }

    #[test]
    fn an_empty_tenant_secret_is_refused_naming_the_tenant_and_setting() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "funnelhub.toml",
                "[[tenants]]\nid = \"acme\"\nonboard_secret = \"\"\n",
            )?;
            let err = load(None, &FlagOverrides::default()).expect_err("an empty secret");
            assert!(
                err.to_string().contains("tenants[acme].onboard_secret"),
                "{err}"
            );
            Ok(())
        });
    }

    #[test]
    fn librdkafka_properties_keep_their_dotted_names() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "funnelhub.toml",
                "[kafka.client_properties]\n\"client.rack\" = \"r1\"\n\
                 [kafka.consumer_properties]\n\"fetch.wait.max.ms\" = \"100\"\n",
            )?;
            let config = load(None, &FlagOverrides::default())?;
            let kafka = &config.kafka;
            assert_eq!(
                kafka
                    .client_properties
                    .get("client.rack")
                    .map(String::as_str),
                Some("r1"),
                "{kafka:?}"
            );
            assert_eq!(
                kafka
                    .consumer_properties
                    .get("fetch.wait.max.ms")
                    .map(String::as_str),
                Some("100"),
                "{kafka:?}"
            );
            Ok(())
        });
    }

    #[test]
    fn emulated_tenants_get_a_token_only_when_they_have_a_pixel_and_none() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "funnelhub.toml",
                "[[tenants]]\nid = \"a\"\nmeta_pixel_id = \"111\"\n[[tenants]]\nid = \"b\"\n",
            )?;
            let config = load(None, &FlagOverrides::default())?;
            assert!(!config.has_meta_tokens());
            let pixels: Vec<_> = config.emulator_pixels().into_iter().collect();
            assert_eq!(
                pixels,
                [("111".to_string(), "emulated-token-a".to_string())]
            );
            Ok(())
        });
    }

    #[test]
    fn processor_windows_may_not_outlast_the_default_retention() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("funnelhub.toml", "[clickhouse]\nretention_days = 3\n")?;
            let err = Config::load(None, &FlagOverrides::default()).expect_err("7-day window");
            assert!(
                err.to_string().contains("process.dedupe_window_hours"),
                "{err}"
            );
            jail.create_file(
                "funnelhub.toml",
                "[clickhouse]\nretention_days = 30\n[process]\ndedupe_window_hours = 24\n",
            )?;
            assert!(Config::load(None, &FlagOverrides::default()).is_ok());
            Ok(())
        });
    }

    #[test]
    fn defaults_match_the_local_stack() {
        let config = Config::default();
        assert_eq!(config.kafka.brokers, "127.0.0.1:9092");
        assert_eq!(
            config.schema_registry.url,
            format!("http://{}", config.registry.listen)
        );
    }
}

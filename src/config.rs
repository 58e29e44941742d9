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
use funnelhub_ingest::{EdgeConfig, TenantConfig};
use funnelhub_kafka::{KafkaConfig, SchemaRegistryConfig};
use funnelhub_processors::ProcessConfig;
use funnelhub_registry::RegistryConfig;
use funnelhub_sinks::clickhouse::ClickHouseConfig;
use funnelhub_sinks::meta_capi::{CapiConfig, MetaAccess};
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
            .map(Config::with_tenant_pixels)
            .map(Config::with_tenant_retention)
            .map_err(anyhow::Error::from)
    }

    /// The ClickHouse sink reads each tenant's `retention_days`.
    fn with_tenant_retention(mut self) -> Config {
        self.clickhouse.tenant_retention = self
            .tenants
            .iter()
            .filter_map(|t| Some((t.id.clone(), t.retention_days?)))
            .collect();
        self
    }

    /// Each tenant's pixel and Conversions API token, for the CAPI sink.
    pub fn meta_access(&self) -> std::collections::BTreeMap<String, MetaAccess> {
        self.tenants
            .iter()
            .filter_map(|t| {
                let access = MetaAccess {
                    pixel_id: t.meta_pixel_id.clone()?,
                    access_token: t.meta_access_token.as_ref()?.expose().into(),
                    test_event_code: t.meta_test_event_code.clone(),
                };
                Some((t.id.clone(), access))
            })
            .collect()
    }

    /// [`Config::meta_access`] for a Graph API emulator: tenants with a pixel but no token
    /// get `emulated-token-<tenant>`.
    pub fn emulated_meta_access(&self) -> std::collections::BTreeMap<String, MetaAccess> {
        let mut access = self.meta_access();
        for tenant in &self.tenants {
            if let (Some(pixel), false) = (&tenant.meta_pixel_id, access.contains_key(&tenant.id)) {
                let emulated = MetaAccess {
                    pixel_id: pixel.clone(),
                    access_token: format!("emulated-token-{}", tenant.id).into(),
                    test_event_code: tenant.meta_test_event_code.clone(),
                };
                access.insert(tenant.id.clone(), emulated);
            }
        }
        access
    }

    /// The matcher reads each tenant's Meta pixel from `[[tenants]] meta_pixel_id`.
    fn with_tenant_pixels(mut self) -> Config {
        self.process.matching.pixels = self
            .tenants
            .iter()
            .filter_map(|t| Some((t.id.clone(), t.meta_pixel_id.clone()?)))
            .collect();
        self
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
    fn the_matcher_gets_each_tenants_pixel() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "funnelhub.toml",
                "[[tenants]]\nid = \"a\"\nmeta_pixel_id = \"111\"\n[[tenants]]\nid = \"b\"\n",
            )?;
            let config = load(None, &FlagOverrides::default())?;
            let pixels: Vec<_> = config.process.matching.pixels.into_iter().collect();
            assert_eq!(pixels, [("a".to_string(), "111".to_string())]);
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

//! `funnelhub tenants`: operators add, list and change tenants on the control topic; every
//! running service applies the change without a restart (docs/tenants.md).

use std::fmt::Write as _;
use std::io::BufRead;

use anyhow::Context;
use funnelhub_kafka::admin::{catalog_requests, ensure_topics};
use funnelhub_kafka::SchemaRegistry;
use funnelhub_tenants::{KeyScope, Keyring, Secret, TenantConfig, TenantDirectory, TenantStore};

use crate::config::Config;

/// What `funnelhub tenants` was asked.
#[derive(Debug)]
pub enum Action {
    Add { id: String, settings: Vec<String> },
    Set { id: String, settings: Vec<String> },
    List,
    RotateKey,
    NewKey { id: String },
    NewApiKey { id: String, scope: KeyScope },
}

/// Characters of a generated API key after its prefix (alphanumeric: ~238 bits).
const API_KEY_CHARS: usize = 40;

/// A new random API key of `scope`: `fh_<scope>_` and 40 letters and digits.
fn new_api_key(scope: KeyScope) -> String {
    use rand::distr::{Alphanumeric, SampleString};
    format!(
        "fh_{}_{}",
        scope.as_str(),
        Alphanumeric.sample_string(&mut rand::rng(), API_KEY_CHARS)
    )
}

/// Run `action`; returns what to print.
pub async fn run(config: &Config, action: Action) -> anyhow::Result<String> {
    if let Action::NewKey { id } = &action {
        return Ok(format!(
            "{}\n# add it first in {} on every service (keep the old keys until `funnelhub tenants rotate-key` ran)\n",
            Keyring::generate(id),
            funnelhub_tenants::sealing::KEYS_ENV
        ));
    }
    let keys = Keyring::from_env()?;
    let registry = SchemaRegistry::new(&config.schema_registry)?;
    ensure_topics(&config.kafka, &catalog_requests(&config.kafka))
        .await
        .context("creating topics")?;
    let directory = TenantDirectory::follow(
        &config.kafka,
        &registry,
        config.tenants.clone(),
        keys.clone(),
    )
    .await
    .context("reading the tenants")?;
    let store = TenantStore::connect(&config.kafka, &registry, keys, directory.clone()).await?;
    let mut out = String::new();
    match action {
        Action::NewKey { .. } => unreachable!("answered above"),
        Action::List => list(&directory, &mut out)?,
        Action::Add { id, settings } => {
            if directory.get(&id).is_some() {
                anyhow::bail!("tenant {id} exists: use `funnelhub tenants set {id} key=value`");
            }
            valid_id(&id)?;
            let mut tenant = TenantConfig::new(&id);
            apply(&mut tenant, &settings)?;
            let revision = store.put(&tenant, "cli tenants add").await?;
            writeln!(out, "added tenant {id} (revision {revision})")?;
        }
        Action::Set { id, settings } => {
            let Some(current) = directory.get(&id) else {
                anyhow::bail!("no tenant {id}: `funnelhub tenants add {id}` first");
            };
            let mut tenant = (*current).clone();
            apply(&mut tenant, &settings)?;
            let revision = store.put(&tenant, "cli tenants set").await?;
            writeln!(out, "tenant {id} now at revision {revision}")?;
        }
        Action::NewApiKey { id, scope } => {
            let Some(current) = directory.get(&id) else {
                anyhow::bail!("no tenant {id}: `funnelhub tenants add {id}` first");
            };
            let mut tenant = (*current).clone();
            let key = new_api_key(scope);
            match scope {
                KeyScope::Read => &mut tenant.api_keys,
                KeyScope::Setup => &mut tenant.setup_api_keys,
                KeyScope::Admin => &mut tenant.admin_api_keys,
            }
            .push(Secret::from(key.as_str()));
            let revision = store
                .put(
                    &tenant,
                    &format!("cli tenants new-api-key {}", scope.as_str()),
                )
                .await?;
            writeln!(out, "{key}")?;
            writeln!(
                out,
                "# a {} key of tenant {id} (revision {revision}): shown once, store it now",
                scope.as_str()
            )?;
        }
        Action::RotateKey => {
            let rotated = store.rotate().await?;
            let active = Keyring::from_env()?;
            let active = active.active().unwrap_or("?");
            for (tenant, from) in &rotated {
                writeln!(out, "tenant {tenant}: key {from} -> {active}")?;
            }
            writeln!(
                out,
                "{} tenants re-wrapped with key {active}; {} already were",
                rotated.len(),
                directory.records().len() - rotated.len()
            )?;
        }
    }
    Ok(out)
}

/// Tenant ids appear in URLs and topic keys: letters, digits, `-` and `_`.
fn valid_id(id: &str) -> anyhow::Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    anyhow::ensure!(ok, "tenant id {id:?}: 1-64 letters, digits, - or _");
    Ok(())
}

/// Apply `key=value` settings; a value `-` is read from standard input (one line per `-`,
/// in order), so secrets stay out of shell history.
fn apply(tenant: &mut TenantConfig, settings: &[String]) -> anyhow::Result<()> {
    let mut stdin = std::io::stdin().lock().lines();
    for setting in settings {
        // Not echoed: a mistyped setting may be a pasted secret.
        let Some((key, value)) = setting.split_once('=') else {
            anyhow::bail!(
                "settings are key=value, keys: {}",
                funnelhub_tenants::config::SETTABLE.join(", ")
            );
        };
        let value = if value == "-" {
            stdin
                .next()
                .with_context(|| format!("{key}=-: no line left on standard input"))??
        } else {
            value.to_owned()
        };
        tenant.set(key, &value).map_err(anyhow::Error::msg)?;
    }
    Ok(())
}

fn list(directory: &TenantDirectory, out: &mut String) -> anyhow::Result<()> {
    let tenants = directory.all();
    if tenants.is_empty() {
        writeln!(out, "no tenants (`funnelhub tenants add <id>`)")?;
    }
    for tenant in tenants {
        let source = match directory.record(&tenant.id) {
            Some(record) => format!(
                "control topic revision {} by {:?} (key {})",
                record.revision, record.updated_by, record.secrets.key_id
            ),
            None => "configuration file".into(),
        };
        writeln!(out, "{}  [{source}]", tenant.id)?;
        // Masked as `funnelhub config` prints them: never a secret in clear.
        let json = serde_json::to_value(&*tenant)?;
        if let Some(fields) = json.as_object() {
            for (key, value) in fields {
                let empty = value.is_null() || value.as_array().is_some_and(|a| a.is_empty());
                if key != "id" && !empty {
                    writeln!(out, "    {key} = {value}")?;
                }
            }
        }
    }
    Ok(())
}

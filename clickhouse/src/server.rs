//! The ClickHouse server: its version decides how the client talks to it, and versioned
//! migrations bring its tables up to date at start-up.
//!
//! Servers before 20.x (Debian's 18.16 locally) refuse the setting the `clickhouse`
//! crate's schema validation sends and answer LZ4 requests with empty bodies: for them
//! validation and compression are off. Current servers get both.

use clickhouse::{Client, Compression};
use serde::Deserialize;

use crate::config::ClickHouseConfig;
use crate::migrations::MIGRATIONS;

/// A server's version, `major.minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
}

impl Version {
    /// Parse `18.16.1` or `24.8.4.13`.
    pub fn parse(text: &str) -> Option<Version> {
        let mut parts = text.trim().split('.');
        Some(Version {
            major: parts.next()?.parse().ok()?,
            minor: parts.next()?.parse().ok()?,
        })
    }

    /// Whether the client may validate rows against the server's schema and compress.
    pub fn is_current(self) -> bool {
        self.major >= 20
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// A client set up for the server behind `config.url`, using `config.database`.
#[derive(Clone)]
pub struct Server {
    pub client: Client,
    pub version: Version,
    pub version_text: String,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("version", &self.version_text)
            .finish_non_exhaustive()
    }
}

fn base_client(config: &ClickHouseConfig) -> Client {
    Client::default()
        .with_url(&config.url)
        .with_user(&config.user)
        .with_validation(false)
        .with_compression(Compression::None)
}

impl Server {
    /// Ask the server its version and set the client up for it (the database must exist
    /// before the client uses it: see [`Server::migrate`]).
    pub async fn connect(config: &ClickHouseConfig) -> Result<Server, clickhouse::error::Error> {
        let version_text: String = base_client(config)
            .query("SELECT version()")
            .fetch_one()
            .await?;
        let version = Version::parse(&version_text).unwrap_or(Version { major: 0, minor: 0 });
        let mut client = base_client(config).with_database(&config.database);
        if version.is_current() {
            client = client
                .with_validation(true)
                .with_compression(Compression::Lz4);
        }
        Ok(Server {
            client,
            version,
            version_text,
        })
    }

    /// Create the database and apply every migration not applied yet, in order. Each
    /// statement is idempotent (`IF NOT EXISTS`), so members starting together are safe.
    /// Returns the versions applied now.
    pub async fn migrate(
        config: &ClickHouseConfig,
    ) -> Result<(Server, Vec<u32>), clickhouse::error::Error> {
        let bare = base_client(config);
        bare.query(&format!(
            "CREATE DATABASE IF NOT EXISTS {}",
            config.database
        ))
        .execute()
        .await?;
        let server = Server::connect(config).await?;
        let db = &config.database;
        bare.query(&format!(
            "CREATE TABLE IF NOT EXISTS {db}.schema_migrations \
             (version UInt32, name String, applied_at DateTime) \
             ENGINE = ReplacingMergeTree() ORDER BY version"
        ))
        .execute()
        .await?;
        #[derive(Debug, Deserialize, clickhouse::Row)]
        struct Applied {
            version: u32,
        }
        let applied: Vec<u32> = bare
            .query(&format!("SELECT version FROM {db}.schema_migrations"))
            .fetch_all::<Applied>()
            .await?
            .into_iter()
            .map(|a| a.version)
            .collect();
        let mut now_applied = Vec::new();
        for migration in MIGRATIONS {
            if applied.contains(&migration.version) {
                continue;
            }
            for statement in migration.statements {
                bare.query(&statement.replace("{db}", db)).execute().await?;
            }
            bare.query(&format!(
                "INSERT INTO {db}.schema_migrations (version, name, applied_at) VALUES (?, ?, now())"
            ))
            .bind(migration.version)
            .bind(migration.name)
            .execute()
            .await?;
            tracing::info!(
                version = migration.version,
                name = migration.name,
                "clickhouse migration applied"
            );
            now_applied.push(migration.version);
        }
        Ok((server, now_applied))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_old_servers_are_told_apart() {
        let old = Version::parse("18.16.1").expect("parses");
        assert_eq!(
            old,
            Version {
                major: 18,
                minor: 16
            }
        );
        assert!(!old.is_current());
        assert!(Version::parse("24.8.4.13").expect("parses").is_current());
        assert_eq!(Version::parse("garbage"), None);
    }
}

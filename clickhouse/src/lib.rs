//! ClickHouse access shared by every crate that talks to it (the sink, the read API and
//! purge on the edge, `funnelhub report` and `privacy`): the `[clickhouse]` settings
//! ([`config`]), the server with its version and versioned migrations ([`server`],
//! [`migrations`]; the tables are described in `docs/data-model.md`), JSON read queries
//! ([`query`]), and the mutations that delete rows: per-tenant retention ([`retention`]) and
//! erasure of one person ([`purge`]). What the sink writes, and how, stays in the sink.

pub mod config;
pub mod migrations;
pub mod purge;
pub mod query;
pub mod retention;
pub mod server;

pub use config::ClickHouseConfig;
pub use server::{Server, Version};

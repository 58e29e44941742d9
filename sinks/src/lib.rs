//! Sinks (`funnelhub sink capi|clickhouse`): Meta Conversions API delivery ([`meta_capi`])
//! and idempotent ClickHouse tables (issue #8).

pub mod clickhouse;
pub mod meta_capi;
#[cfg(feature = "testing")]
pub mod testing;

//! Sinks (`funnelhub sink capi|clickhouse`): Meta Conversions API delivery and idempotent
//! ClickHouse tables. Issues #7 and #8.

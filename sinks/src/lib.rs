//! Sinks (`funnelhub sink capi|clickhouse`): Meta Conversions API delivery ([`meta_capi`])
//! and idempotent ClickHouse tables (issue #8).

pub mod clickhouse;
pub mod meta_capi;
#[cfg(feature = "testing")]
pub mod testing;

use funnelhub_schemas::{Catalog, StageId};

/// Each sink's name, consumer group and input topics (what a replay resets), beside
/// `funnelhub_processors::stage_groups`.
pub fn stage_groups(
    capi_group: &str,
    clickhouse_group: &str,
    catalog: &Catalog,
) -> Vec<(&'static str, String, Vec<String>)> {
    [
        (StageId::Capi, capi_group),
        (StageId::ClickHouse, clickhouse_group),
    ]
    .into_iter()
    .map(|(id, group)| {
        (
            id.name(),
            group.to_owned(),
            id.inputs().iter().map(|t| catalog.name(*t)).collect(),
        )
    })
    .collect()
}

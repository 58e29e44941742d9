//! `funnelhub replay`: reset a stage's consumer group to re-run history (docs/replay.md).

use std::fmt::Write as _;

use anyhow::{bail, Context};
use funnelhub_kafka::replay::{apply, group_members, plan, PartitionPlan, ReplayFrom};
use funnelhub_schemas::Catalog;

use crate::config::Config;

/// Which group and topics, from where, for real or not.
#[derive(Debug)]
pub struct Request {
    pub stage: Option<String>,
    pub group: Option<String>,
    pub topics: Vec<String>,
    pub from: ReplayFrom,
    pub dry_run: bool,
}

/// Every stage's consumer group and inputs, as configured.
pub fn stage_groups(config: &Config) -> Vec<(&'static str, String, Vec<String>)> {
    let catalog = Catalog::new(&config.kafka.topic_prefix);
    let mut all = funnelhub_processors::stage_groups(&config.process, &catalog);
    all.extend(funnelhub_sinks::stage_groups(
        &config.capi.group,
        &config.clickhouse.group,
        &catalog,
    ));
    all
}

/// Print the plan; apply it unless `dry_run`. Refuses while the group has members.
pub async fn run(config: &Config, request: Request) -> anyhow::Result<String> {
    let (group, mut topics) = match (&request.stage, &request.group) {
        (Some(stage), _) => {
            let (_, group, inputs) = stage_groups(config)
                .into_iter()
                .find(|(name, _, _)| name == stage)
                .with_context(|| {
                    let names: Vec<_> = stage_groups(config).iter().map(|s| s.0).collect();
                    format!("unknown stage {stage:?}; stages: {}", names.join(", "))
                })?;
            (group, inputs)
        }
        (None, Some(group)) => (group.clone(), Vec::new()),
        (None, None) => bail!("name a --stage (or a --group with --topic)"),
    };
    if !request.topics.is_empty() {
        topics = request.topics.clone();
    }
    if topics.is_empty() {
        bail!("--group needs at least one --topic");
    }
    let plans = plan(&config.kafka, &group, &topics, request.from)
        .await
        .context("reading offsets")?;
    let mut out = describe(&group, &plans);
    if request.dry_run {
        out.push_str("dry run: nothing changed\n");
        return Ok(out);
    }
    let members = group_members(&config.kafka, &group)
        .await
        .with_context(|| format!("describing group {group}"))?;
    if members > 0 {
        bail!(
            "group {group} has {members} active member(s): stop the stage first (its own commits would overwrite the replay), then run again"
        );
    }
    apply(&config.kafka, &group, &plans).await.with_context(|| {
        format!("committing the new offsets (a broker refuses them while group {group} has members)")
    })?;
    out.push_str("applied: the stage re-reads from these offsets when it starts\n");
    Ok(out)
}

fn describe(group: &str, plans: &[PartitionPlan]) -> String {
    let mut out = format!("group {group}\n");
    let _ = writeln!(
        out,
        "  {:<44} {:>9} {:>9} {:>9} {:>11}",
        "topic:partition", "from", "to", "end", "reprocessed"
    );
    for p in plans {
        let from = p.committed.map_or("-".to_string(), |c| c.to_string());
        let _ = writeln!(
            out,
            "  {:<44} {:>9} {:>9} {:>9} {:>11}",
            format!("{}:{}", p.topic, p.partition),
            from,
            p.target,
            p.high,
            p.reprocessed()
        );
    }
    let total: i64 = plans.iter().map(PartitionPlan::reprocessed).sum();
    let _ = writeln!(out, "  {total} records will be processed again");
    out
}

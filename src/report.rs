//! The funnel without Grafana: `funnelhub report` (and `funnelhub up` when it stops) runs
//! the Funnel dashboard's own queries (`dashboards/grafana/dashboards/funnel.json`, the
//! same SQL Grafana runs) against ClickHouse for each tenant, prints the funnels and draws
//! them into a PNG.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use funnelhub_clickhouse::query::{count, json_rows};
use funnelhub_clickhouse::ClickHouseConfig;
use funnelhub_schemas::derived::Funnel;
use plotters::prelude::*;
use serde_json::Value;

const DASHBOARD: &str = include_str!("../dashboards/grafana/dashboards/funnel.json");
const TRACKING_PANEL: &str = "Tracking funnel: sessions reaching each stage";
const ONBOARDING_PANEL: &str = "Onboarding: sessions per current stage";

/// One tenant's funnels over the window.
#[derive(Debug, Clone, PartialEq)]
pub struct Funnels {
    pub tenant: String,
    /// (stage, sessions that reached it) in funnel order.
    pub tracking: Vec<(String, u64)>,
    /// (stage, sessions currently there), then `failed`.
    pub onboarding: Vec<(String, u64)>,
}

fn panel_sql(title: &str) -> anyhow::Result<String> {
    let dashboard: Value = serde_json::from_str(DASHBOARD)?;
    dashboard["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["title"] == title)
        .and_then(|p| p["targets"][0]["rawSql"].as_str())
        .map(str::to_owned)
        .with_context(|| format!("panel {title:?} in funnel.json"))
}

/// The panel's SQL as Grafana would send it for `tenant` over the last `days`.
fn expand(sql: &str, tenant: &str, database: &str, days: u32) -> String {
    let quoted = tenant.replace('\\', "\\\\").replace('\'', "\\'");
    let mut out = sql
        .replace("${tenant}", &quoted)
        .replace("funnelhub.", &format!("{database}."));
    while let Some(start) = out.find("$__timeFilter(") {
        let Some(close) = out[start..].find(')') else {
            break;
        };
        let column = out[start + "$__timeFilter(".len()..start + close].to_owned();
        out.replace_range(
            start..=start + close,
            &format!("{column} >= now() - INTERVAL {days} DAY"),
        );
    }
    out
}

async fn rows(clickhouse: &ClickHouseConfig, sql: &str) -> anyhow::Result<Vec<Value>> {
    Ok(json_rows(clickhouse, sql).await?)
}

/// Run the two funnel panels for `tenant`.
pub async fn funnels(
    clickhouse: &ClickHouseConfig,
    tenant: &str,
    days: u32,
) -> anyhow::Result<Funnels> {
    let tracking_sql = expand(
        &panel_sql(TRACKING_PANEL)?,
        tenant,
        &clickhouse.database,
        days,
    );
    let row = rows(clickhouse, &tracking_sql)
        .await?
        .pop()
        .unwrap_or_default();
    let tracking = Funnel::Tracking
        .stages()
        .iter()
        .map(|stage| (stage.as_str().to_owned(), count(&row[stage.as_str()])))
        .collect();
    let onboarding_sql = expand(
        &panel_sql(ONBOARDING_PANEL)?,
        tenant,
        &clickhouse.database,
        days,
    );
    let mut onboarding: Vec<(String, u64)> = Funnel::Onboarding
        .stages()
        .iter()
        .map(|s| (s.as_str().to_owned(), 0))
        .collect();
    let mut failed = 0;
    for row in rows(clickhouse, &onboarding_sql).await? {
        let sessions = count(&row["sessions"]);
        if row["outcome"] == "failed" {
            failed += sessions;
        } else if let Some(entry) = onboarding
            .iter_mut()
            .find(|(s, _)| row["stage"] == s.as_str())
        {
            entry.1 += sessions;
        }
    }
    onboarding.push(("failed".into(), failed));
    Ok(Funnels {
        tenant: tenant.to_owned(),
        tracking,
        onboarding,
    })
}

/// The funnels as text.
pub fn text(funnels: &Funnels, days: u32) -> String {
    let mut out = format!("tenant {} (last {days} days)\n", funnels.tenant);
    let first = funnels.tracking.first().map_or(0, |(_, n)| *n);
    let _ = writeln!(out, "  tracking funnel (sessions reaching each stage)");
    for (stage, n) in &funnels.tracking {
        let share = if first > 0 {
            *n as f64 / first as f64 * 100.0
        } else {
            0.0
        };
        let _ = writeln!(out, "    {stage:<20} {n:>8}  {share:>5.1}%");
    }
    let _ = writeln!(out, "  onboarding (sessions per current stage)");
    for (stage, n) in &funnels.onboarding {
        let _ = writeln!(out, "    {stage:<20} {n:>8}");
    }
    out
}

/// A font for the PNG's labels: plotters draws text with a TTF it is given.
fn register_font() -> anyhow::Result<()> {
    const FONTS: [&str; 2] = [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
    ];
    let path = FONTS
        .iter()
        .find(|p| Path::new(p).exists())
        .context("no DejaVuSans.ttf (Debian: apt install fonts-dejavu-core)")?;
    let bytes: &'static [u8] = Box::leak(std::fs::read(path)?.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| anyhow::anyhow!("{path} is not a usable font"))
}

/// Draw the two funnels of `funnels` into `path` (PNG, 1200×500).
pub fn png(funnels: &Funnels, days: u32, path: &Path) -> anyhow::Result<()> {
    static FONT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    FONT.get_or_init(|| register_font().map_err(|e| e.to_string()))
        .clone()
        .map_err(anyhow::Error::msg)?;
    let root = BitMapBackend::new(path, (1200, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let title = format!("funnelhub: {} (last {days} days)", funnels.tenant);
    let root = root.titled(&title, ("sans-serif", 28))?;
    let (left, right) = root.split_horizontally(600);
    bars(
        &left,
        "Tracking funnel (sessions reaching each stage)",
        &funnels.tracking,
        BLUE,
    )?;
    bars(
        &right,
        "Onboarding (sessions per current stage)",
        &funnels.onboarding,
        GREEN,
    )?;
    root.present()?;
    Ok(())
}

fn bars(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    caption: &str,
    data: &[(String, u64)],
    color: RGBColor,
) -> anyhow::Result<()> {
    let max = data.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((0..data.len()).into_segmented(), 0..max + max / 8 + 1)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(data.len())
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => data
                .get(*i)
                .map(|(s, _)| s.replace('_', " "))
                .unwrap_or_default(),
            _ => String::new(),
        })
        .x_label_style(("sans-serif", 10))
        .y_label_style(("sans-serif", 12))
        .draw()?;
    chart.draw_series(
        Histogram::vertical(&chart)
            .style(color.mix(0.7).filled())
            .margin(12)
            .data(data.iter().enumerate().map(|(i, (_, n))| (i, *n))),
    )?;
    chart.draw_series(data.iter().enumerate().map(|(i, (_, n))| {
        Text::new(
            n.to_string(),
            (SegmentValue::CenterOf(i), *n),
            ("sans-serif", 14).into_font(),
        )
    }))?;
    Ok(())
}

/// Print every tenant's funnels and write `funnel-<tenant>.png` into `out`; returns the
/// files written.
pub async fn run(
    clickhouse: &ClickHouseConfig,
    tenants: &[String],
    days: u32,
    out: &Path,
) -> anyhow::Result<(String, Vec<PathBuf>)> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut printed = String::new();
    let mut files = Vec::new();
    for tenant in tenants {
        let funnels = funnels(clickhouse, tenant, days).await?;
        printed.push_str(&text(&funnels, days));
        let safe: String = tenant
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let file = out.join(format!("funnel-{safe}.png"));
        png(&funnels, days, &file).with_context(|| format!("drawing {}", file.display()))?;
        files.push(file);
    }
    Ok((printed, files))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panels_are_read_from_the_dashboard_and_expanded() {
        let sql = expand(
            &panel_sql(TRACKING_PANEL).expect("panel"),
            "o'brien",
            "db",
            7,
        );
        assert!(sql.contains("tenant_id = 'o\\'brien'"), "{sql}");
        assert!(
            sql.contains("updated_at >= now() - INTERVAL 7 DAY"),
            "{sql}"
        );
        assert!(sql.contains("FROM db.session_stages"), "{sql}");
        assert!(!sql.contains('$'), "{sql}");
    }

    #[test]
    fn the_png_is_drawn() {
        let funnels = Funnels {
            tenant: "acme".into(),
            tracking: vec![("click".into(), 100), ("purchase".into(), 7)],
            onboarding: vec![("started".into(), 3), ("failed".into(), 1)],
        };
        let file = std::env::temp_dir().join(format!("funnel-{}.png", std::process::id()));
        png(&funnels, 7, &file).expect("drawn");
        let bytes = std::fs::read(&file).expect("written");
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        assert!(bytes.len() > 5_000, "not blank: {} bytes", bytes.len());
        assert!(text(&funnels, 7).contains("purchase                    7    7.0%"));
    }
}

//! `docs/operations.md` stays true: it lists every metric the code emits and explains
//! every alert of `dashboards/prometheus/alerts.yml`.

use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable").flatten() {
        let path = entry.path();
        if path.is_dir() {
            if !path.ends_with("target") && !path.ends_with("tests") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `"funnelhub_..."` string literal in the services' sources.
fn emitted_metrics() -> Vec<String> {
    let mut files = Vec::new();
    for dir in [
        "ingest/src",
        "kafka/src",
        "processors/src",
        "sinks/src",
        "runtime/src",
        "src",
    ] {
        rust_files(Path::new(dir), &mut files);
    }
    let mut names = std::collections::BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable");
        for piece in text.split('"').skip(1).step_by(2) {
            if piece.starts_with("funnelhub_")
                && piece.len() > "funnelhub_".len()
                && piece.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            {
                names.insert(piece.to_owned());
            }
        }
    }
    names.into_iter().collect()
}

#[test]
fn every_metric_is_documented() {
    let doc = std::fs::read_to_string("docs/operations.md").expect("docs/operations.md");
    let metrics = emitted_metrics();
    assert!(metrics.len() > 20, "metrics found: {metrics:?}");
    let missing: Vec<_> = metrics
        .iter()
        .filter(|m| !doc.contains(&format!("`{m}`")))
        .collect();
    assert!(missing.is_empty(), "not in docs/operations.md: {missing:?}");
}

#[test]
fn every_alert_has_a_runbook_section() {
    let doc = std::fs::read_to_string("docs/operations.md").expect("docs/operations.md");
    let rules = std::fs::read_to_string("dashboards/prometheus/alerts.yml").expect("alerts.yml");
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(alerts.len() >= 6, "{alerts:?}");
    for alert in alerts {
        assert!(
            doc.contains(&format!("### {alert}\n")),
            "no section for {alert}"
        );
        assert!(
            rules.contains(&format!("docs/operations.md#{}", alert.to_lowercase())),
            "{alert} links its runbook"
        );
    }
}

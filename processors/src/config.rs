//! `[process]` settings.

use serde::{Deserialize, Serialize};

use funnelhub_schemas::catalog::{
    DEDUPE_CHANGELOG_RETENTION_DAYS, FUNNEL_CHANGELOG_RETENTION_DAYS,
};

const HOUR_MS: i64 = 60 * 60 * 1000;

/// How the processors run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessConfig {
    /// A duplicate of a key seen within this many hours of record time is dropped.
    pub dedupe_window_hours: u32,
    /// A session with no event for this many hours of record time leaves the funnel state.
    pub session_ttl_hours: u32,
    /// Consumer groups are `<group_prefix>-dedupe` and `<group_prefix>-funnel`.
    pub group_prefix: String,
    /// Most records processed per partition batch.
    pub max_batch: usize,
    /// Where `/metrics`, `/healthz` are served.
    pub listen: std::net::SocketAddr,
}

impl Default for ProcessConfig {
    fn default() -> Self {
        ProcessConfig {
            dedupe_window_hours: 7 * 24,
            session_ttl_hours: 30 * 24,
            group_prefix: "funnelhub".into(),
            max_batch: 2000,
            listen: ([127, 0, 0, 1], 9101).into(),
        }
    }
}

impl ProcessConfig {
    /// The dedupe window in ms.
    pub fn dedupe_window_ms(&self) -> i64 {
        i64::from(self.dedupe_window_hours) * HOUR_MS
    }

    /// The session TTL in ms.
    pub fn session_ttl_ms(&self) -> i64 {
        i64::from(self.session_ttl_hours) * HOUR_MS
    }

    /// Refuse windows the changelogs do not retain (state older than the retention is gone,
    /// so a restored processor would forget keys the window still covers).
    pub fn validate(&self) -> Result<(), String> {
        let check = |field: &str, hours: u32, retention_days: i64| {
            let max = (retention_days - 1) * 24;
            if hours == 0 || i64::from(hours) > max {
                Err(format!(
                    "process.{field} = {hours}: must be 1..={max} (the changelog keeps \
                     {retention_days} days; raise its retention.ms and this limit together)"
                ))
            } else {
                Ok(())
            }
        };
        check(
            "dedupe_window_hours",
            self.dedupe_window_hours,
            DEDUPE_CHANGELOG_RETENTION_DAYS,
        )?;
        check(
            "session_ttl_hours",
            self.session_ttl_hours,
            FUNNEL_CHANGELOG_RETENTION_DAYS,
        )?;
        if self.max_batch == 0 {
            return Err("process.max_batch must be at least 1".into());
        }
        Ok(())
    }
}

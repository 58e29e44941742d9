//! `[process]` settings.

use serde::{Deserialize, Serialize};

use funnelhub_schemas::catalog::{
    DEDUPE_STATE_RETENTION_DAYS, FUNNEL_STATE_RETENTION_DAYS, INPUT_RETENTION_DAYS,
    MATCH_STATE_RETENTION_DAYS,
};

const HOUR_MS: i64 = 60 * 60 * 1000;

/// How the processors run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessConfig {
    /// A duplicate of a key seen within this many hours of record time is dropped.
    pub dedupe_window_hours: u32,
    /// A session with no event for this many hours of record time leaves the funnel state.
    pub session_ttl_hours: u32,
    /// Consumer groups are `<group_prefix>-<stage>`: `-dedupe`, `-funnel`, `-match-route`,
    /// `-match`.
    pub group_prefix: String,
    /// Most records processed per partition batch.
    pub max_batch: usize,
    /// Where `/metrics`, `/healthz` are served.
    pub listen: std::net::SocketAddr,
    /// `[process.matching]`: the conversion matcher.
    pub matching: MatchConfig,
}

/// `[process.matching]`: how conversions are matched to visits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MatchConfig {
    /// A conversion waits this long (record time) for late visits before it is decided.
    pub grace_secs: u32,
    /// Visits older than this (record time) are no longer candidates.
    pub lookback_hours: u32,
    /// How far records may arrive out of record-time order (partitions read at different
    /// speeds, mostly while catching up): a conversion is decided once the matcher has
    /// read records this much newer than its deadline.
    pub max_out_of_order_secs: u32,
    /// A partition that received nothing for a second is taken to have seen every record
    /// older than the wall clock minus this; conversions due by then are decided.
    pub idle_slack_secs: u32,
    /// Weights and threshold of the scoring rule.
    pub scoring: ScoringConfig,
}

impl Default for MatchConfig {
    fn default() -> Self {
        MatchConfig {
            grace_secs: 600,
            lookback_hours: 7 * 24,
            max_out_of_order_secs: 300,
            idle_slack_secs: 30,
            scoring: ScoringConfig::default(),
        }
    }
}

/// `[process.matching.scoring]`: a candidate visit's score is the sum of the weights of
/// the signals it shares with the conversion (time decays with the gap); the best visit at
/// or above `threshold` is the match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScoringConfig {
    /// Same client IP.
    pub ip: f64,
    /// Same user agent.
    pub user_agent: f64,
    /// Time proximity: the full weight at no gap, half of it per `time_half_life_minutes`.
    pub time: f64,
    /// Same `utm_campaign`.
    pub utm: f64,
    /// The ordered product among the visit's content ids.
    pub product: f64,
    /// Lowest score that matches.
    pub threshold: f64,
    /// Gap between visit and conversion that halves the time signal.
    pub time_half_life_minutes: u32,
}

impl Default for ScoringConfig {
    fn default() -> Self {
        // A match needs the IP and one more specific signal: IP + user agent (0.65), or IP
        // + campaign or product within ~80 minutes (0.55 + time). IP + time alone tops out
        // at 0.60 (carrier NAT shares IPs), and without the IP the best is 0.55: a shared
        // user agent, campaign and product are too common to name one buyer.
        ScoringConfig {
            ip: 0.45,
            user_agent: 0.20,
            time: 0.15,
            utm: 0.10,
            product: 0.10,
            threshold: 0.61,
            time_half_life_minutes: 60,
        }
    }
}

impl MatchConfig {
    /// The grace period in ms.
    pub fn grace_ms(&self) -> i64 {
        i64::from(self.grace_secs) * 1000
    }

    /// The out-of-order allowance in ms.
    pub fn max_out_of_order_ms(&self) -> i64 {
        i64::from(self.max_out_of_order_secs) * 1000
    }

    /// The lookback in ms.
    pub fn lookback_ms(&self) -> i64 {
        i64::from(self.lookback_hours) * HOUR_MS
    }

    /// How long decisions are kept for replays: as long as the matcher's input.
    pub fn decision_retention_ms(&self) -> i64 {
        INPUT_RETENTION_DAYS * 24 * HOUR_MS
    }

    fn validate(&self) -> Result<(), String> {
        let max_lookback = (MATCH_STATE_RETENTION_DAYS - 1) * 24;
        if self.lookback_hours == 0 || i64::from(self.lookback_hours) > max_lookback {
            return Err(format!(
                "process.matching.lookback_hours = {}: must be 1..={max_lookback} (the \
                 state topic keeps {MATCH_STATE_RETENTION_DAYS} days)",
                self.lookback_hours
            ));
        }
        if i64::from(self.grace_secs) * 1000 >= self.lookback_ms() {
            return Err("process.matching.grace_secs must be shorter than the lookback".into());
        }
        let s = &self.scoring;
        for (name, weight) in [
            ("ip", s.ip),
            ("user_agent", s.user_agent),
            ("time", s.time),
            ("utm", s.utm),
            ("product", s.product),
        ] {
            if !(weight.is_finite() && weight >= 0.0) {
                return Err(format!(
                    "process.matching.scoring.{name} = {weight}: must be a weight >= 0"
                ));
            }
        }
        let total = s.ip + s.user_agent + s.time + s.utm + s.product;
        if !(s.threshold > 0.0 && s.threshold <= total) {
            return Err(format!(
                "process.matching.scoring.threshold = {}: must be in (0, {total}] (the sum \
                 of the weights), or nothing could ever match",
                s.threshold
            ));
        }
        if s.time_half_life_minutes == 0 {
            return Err(
                "process.matching.scoring.time_half_life_minutes must be at least 1".into(),
            );
        }
        Ok(())
    }
}

impl Default for ProcessConfig {
    fn default() -> Self {
        ProcessConfig {
            dedupe_window_hours: 7 * 24,
            session_ttl_hours: 30 * 24,
            group_prefix: "funnelhub".into(),
            max_batch: 2000,
            listen: ([127, 0, 0, 1], 9101).into(),
            matching: MatchConfig::default(),
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

    /// Refuse windows the state topics do not retain (state older than the retention is gone,
    /// so a restored processor would forget keys the window still covers).
    pub fn validate(&self) -> Result<(), String> {
        let check = |field: &str, hours: u32, retention_days: i64| {
            let max = (retention_days - 1) * 24;
            if hours == 0 || i64::from(hours) > max {
                Err(format!(
                    "process.{field} = {hours}: must be 1..={max} (the state topic keeps \
                     {retention_days} days; raise its retention.ms and this limit together)"
                ))
            } else {
                Ok(())
            }
        };
        check(
            "dedupe_window_hours",
            self.dedupe_window_hours,
            DEDUPE_STATE_RETENTION_DAYS,
        )?;
        check(
            "session_ttl_hours",
            self.session_ttl_hours,
            FUNNEL_STATE_RETENTION_DAYS,
        )?;
        if self.max_batch == 0 {
            return Err("process.max_batch must be at least 1".into());
        }
        self.matching.validate()
    }
}

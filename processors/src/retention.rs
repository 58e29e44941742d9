//! What a stage's state may keep (`docs/privacy.md`): nothing of a purged person, and
//! nothing of a tenant older than its `retention_days` where that is shorter than the
//! stage's own window (dedupe window, session TTL, match lookback). The windows keep
//! expiring state as before; on top, each partition processor sweeps its state with a
//! [`Sweep`] when a purge arrives and once per hour of record time ([`Sweeper`]).
//!
//! Times are record times (the edge's `received_at`), measured back from the newest the
//! partition read, like the windows: a replay of old history keeps what it kept then.

use std::collections::HashMap;

use funnelhub_kafka::Suppressions;
use funnelhub_schemas::privacy::Tied;
use funnelhub_tenants::TenantDirectory;

const HOUR_MS: i64 = 60 * 60 * 1000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// When a partition processor sweeps: after each new purge, and once per hour of record
/// time while some tenant keeps less than the stage's window.
#[derive(Debug)]
pub struct Sweeper {
    purges: u64,
    next: i64,
}

impl Sweeper {
    /// A sweeper for a processor whose state is restored without the purges already read
    /// (restore skips them), so only later purges call for a sweep.
    pub fn new(suppressions: &Suppressions) -> Sweeper {
        Sweeper {
            purges: suppressions.generation(),
            next: i64::MIN,
        }
    }

    /// The sweep due now for state whose newest record time is `watermark` and whose own
    /// window is `window_ms`, or `None` when there is nothing to sweep.
    pub fn due<'a>(
        &mut self,
        suppressions: &'a Suppressions,
        tenants: &TenantDirectory,
        watermark: i64,
        window_ms: i64,
    ) -> Option<Sweep<'a>> {
        let purges = suppressions.generation();
        let purged = purges != self.purges;
        let hourly = watermark >= self.next;
        if !purged && !hourly {
            return None;
        }
        self.purges = purges;
        if hourly {
            self.next = watermark.saturating_add(HOUR_MS);
        }
        let sweep = Sweep::new(suppressions, tenants, watermark, window_ms);
        (purged || !sweep.retention.is_empty()).then_some(sweep)
    }
}

/// One sweep: which state entries go.
#[derive(Debug)]
pub struct Sweep<'a> {
    suppressions: &'a Suppressions,
    /// Tenants keeping less than the window: record times before this go.
    retention: HashMap<String, i64>,
}

impl<'a> Sweep<'a> {
    /// The sweep at `watermark` for a stage whose window is `window_ms`.
    pub fn new(
        suppressions: &'a Suppressions,
        tenants: &TenantDirectory,
        watermark: i64,
        window_ms: i64,
    ) -> Sweep<'a> {
        let retention = tenants
            .all()
            .iter()
            .filter_map(|tenant| {
                let keep = i64::from(tenant.retention_days?).saturating_mul(DAY_MS);
                (keep < window_ms).then(|| (tenant.id.clone(), watermark.saturating_sub(keep)))
            })
            .collect();
        Sweep {
            suppressions,
            retention,
        }
    }

    /// Whether an entry tied as `record`, last touched at record time `time`, goes: its
    /// tenant keeps less than that, or it belongs to a purged person.
    pub fn drops(&self, record: &impl Tied, time: i64) -> bool {
        let ties = record.ties();
        self.too_old(ties.tenant_id, time) || self.suppressions.covers(&ties)
    }

    /// Whether `tenant` keeps nothing from record time `time` any more.
    pub fn too_old(&self, tenant: &str, time: i64) -> bool {
        self.retention
            .get(tenant)
            .is_some_and(|cutoff| time < *cutoff)
    }

    /// Whether `record` belongs to a purged person.
    pub fn purged(&self, record: &impl Tied) -> bool {
        self.suppressions.covers(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use funnelhub_schemas::privacy::Ties;
    use funnelhub_tenants::TenantConfig;

    fn tenants() -> TenantDirectory {
        let mut short = TenantConfig::new("short");
        short.retention_days = Some(2);
        let mut long = TenantConfig::new("long");
        long.retention_days = Some(365);
        TenantDirectory::fixed([short, long, TenantConfig::new("default")])
    }

    fn tied(tenant: &str) -> Ties<'_> {
        Ties {
            tenant_id: tenant,
            ..Ties::default()
        }
    }

    #[test]
    fn only_tenants_keeping_less_than_the_window_lose_state_early() {
        let none = Suppressions::none();
        let now = 100 * DAY_MS;
        let sweep = Sweep::new(&none, &tenants(), now, 7 * DAY_MS);
        let three_days_ago = now - 3 * DAY_MS;
        assert!(sweep.drops(&tied("short"), three_days_ago));
        assert!(!sweep.drops(&tied("short"), now - DAY_MS));
        assert!(
            !sweep.drops(&tied("long"), three_days_ago),
            "the window governs"
        );
        assert!(!sweep.drops(&tied("default"), three_days_ago));
        assert!(!sweep.drops(&tied("unknown"), three_days_ago));
    }

    #[test]
    fn sweeps_are_hourly_and_only_when_someone_keeps_less() {
        let none = Suppressions::none();
        let mut sweeper = Sweeper::new(&none);
        let tenants = tenants();
        assert!(sweeper.due(&none, &tenants, 0, 7 * DAY_MS).is_some());
        assert!(sweeper
            .due(&none, &tenants, HOUR_MS - 1, 7 * DAY_MS)
            .is_none());
        assert!(sweeper.due(&none, &tenants, HOUR_MS, 7 * DAY_MS).is_some());
        let roomy = TenantDirectory::fixed([TenantConfig::new("default")]);
        assert!(
            sweeper
                .due(&none, &roomy, 10 * HOUR_MS, 7 * DAY_MS)
                .is_none(),
            "nobody keeps less than the window"
        );
    }
}

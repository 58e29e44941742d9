//! What a simulation run must leave behind, in the shape both the ground truth (what the
//! simulator sent) and the observation (what ClickHouse and the Meta emulator hold) take,
//! so that checking the pipeline is one comparison.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The facts of one run. Every key starts with the tenant (or the Meta pixel).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// (tenant, event type symbol) → distinct events (`events`, after dedupe).
    pub events: BTreeMap<(String, String), u64>,
    /// (tenant, funnel, session) → (current stage, outcome) (`session_stages`).
    pub sessions: BTreeMap<(String, String, String), (String, String)>,
    /// (tenant, order id, conversion type) → (method, matched session) (`matches`).
    pub matches: BTreeMap<(String, String, String), (String, String)>,
    /// (tenant, ticket kind) → tickets (`ops_tickets`).
    pub tickets: BTreeMap<(String, String), u64>,
    /// (tenant, Meta event name, blocked reason or "") → dispatch requests (`capi_requests`).
    pub dispatches: BTreeMap<(String, String, String), u64>,
    /// (pixel, Meta event name) → distinct events Meta accepted (after Meta's own dedupe).
    pub meta: BTreeMap<(String, String), u64>,
    /// (tenant, gateway, gateway event name) → distinct signed deliveries kept raw
    /// (`raw_webhooks`).
    pub raw_webhooks: BTreeMap<(String, String, String), u64>,
}

impl Facts {
    /// Add `other`'s facts to these (counts add up, keyed facts are inserted).
    pub fn merge(&mut self, other: Facts) {
        fn add<K: Ord>(into: &mut BTreeMap<K, u64>, from: BTreeMap<K, u64>) {
            for (k, n) in from {
                *into.entry(k).or_default() += n;
            }
        }
        add(&mut self.events, other.events);
        self.sessions.extend(other.sessions);
        self.matches.extend(other.matches);
        add(&mut self.tickets, other.tickets);
        add(&mut self.dispatches, other.dispatches);
        add(&mut self.meta, other.meta);
        add(&mut self.raw_webhooks, other.raw_webhooks);
    }

    /// Count one event of `event_type` (a symbol) for `tenant`.
    pub fn event(&mut self, tenant: &str, event_type: &str) {
        *self
            .events
            .entry((tenant.to_owned(), event_type.to_owned()))
            .or_default() += 1;
    }

    /// Without the Meta side (when it cannot be observed: a real Meta).
    pub fn without_meta(mut self) -> Facts {
        self.meta.clear();
        self
    }

    /// Sessions of `funnel` grouped by (tenant, stage, outcome).
    pub fn funnel_counts(&self, funnel: &str) -> BTreeMap<(String, String, String), u64> {
        let mut out = BTreeMap::new();
        for ((tenant, f, _), (stage, outcome)) in &self.sessions {
            if f == funnel {
                *out.entry((tenant.clone(), stage.clone(), outcome.clone()))
                    .or_default() += 1;
            }
        }
        out
    }

    /// Conversions per (tenant, method).
    pub fn match_methods(&self) -> BTreeMap<(String, String), u64> {
        let mut out = BTreeMap::new();
        for ((tenant, _, kind), (method, _)) in &self.matches {
            if kind == "purchase" {
                *out.entry((tenant.clone(), method.clone())).or_default() += 1;
            }
        }
        out
    }

    /// How `observed` differs from these expected facts: one line per difference, the
    /// first `limit` of each section, and how many in all. Empty when they are equal.
    pub fn differences(&self, observed: &Facts, limit: usize) -> Vec<String> {
        let mut out = Vec::new();
        section(&mut out, "events", &self.events, &observed.events, limit);
        section(
            &mut out,
            "sessions",
            &self.sessions,
            &observed.sessions,
            limit,
        );
        section(&mut out, "matches", &self.matches, &observed.matches, limit);
        section(&mut out, "tickets", &self.tickets, &observed.tickets, limit);
        section(
            &mut out,
            "capi requests",
            &self.dispatches,
            &observed.dispatches,
            limit,
        );
        section(&mut out, "meta", &self.meta, &observed.meta, limit);
        section(
            &mut out,
            "raw webhooks",
            &self.raw_webhooks,
            &observed.raw_webhooks,
            limit,
        );
        out
    }
}

fn section<K: Ord + std::fmt::Debug, V: PartialEq + std::fmt::Debug>(
    out: &mut Vec<String>,
    name: &str,
    expected: &BTreeMap<K, V>,
    observed: &BTreeMap<K, V>,
    limit: usize,
) {
    let mut lines = Vec::new();
    for (key, want) in expected {
        match observed.get(key) {
            Some(got) if got == want => {}
            Some(got) => lines.push(format!("{name} {key:?}: expected {want:?}, found {got:?}")),
            None => lines.push(format!("{name} {key:?}: expected {want:?}, found nothing")),
        }
    }
    for (key, got) in observed {
        if !expected.contains_key(key) {
            lines.push(format!("{name} {key:?}: not expected, found {got:?}"));
        }
    }
    let total = lines.len();
    out.extend(lines.into_iter().take(limit));
    if total > limit {
        let mut more = String::new();
        let _ = write!(more, "{name}: {} more differences", total - limit);
        out.push(more);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(a: &str, b: &str) -> (String, String) {
        (a.into(), b.into())
    }

    #[test]
    fn differences_name_missing_unexpected_and_changed_facts() {
        let mut expected = Facts::default();
        expected.event("acme", "click");
        expected.event("acme", "click");
        expected.event("acme", "purchase");
        let mut observed = Facts::default();
        observed.event("acme", "click");
        observed.event("acme", "refund");
        let lines = expected.differences(&observed, 10);
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines[0].contains("expected 2, found 1"), "{lines:?}");
        assert!(lines[1].contains("found nothing"), "{lines:?}");
        assert!(lines[2].contains("not expected"), "{lines:?}");
        assert!(expected.differences(&expected.clone(), 10).is_empty());
        assert_eq!(expected.differences(&observed, 1).len(), 2, "limited");
    }

    #[test]
    fn merge_adds_counts() {
        let mut a = Facts::default();
        a.event("acme", "click");
        let mut b = Facts::default();
        b.event("acme", "click");
        b.meta.insert(key("px", "Purchase"), 2);
        a.merge(b);
        assert_eq!(a.events[&key("acme", "click")], 2);
        assert_eq!(a.meta[&key("px", "Purchase")], 2);
    }
}

//! The matching rules: which visit led to a conversion. Pure functions of the conversion,
//! the visits as of its deadline and the scoring configuration.
//!
//! Deterministic rules first, in this order, the first that finds a visit wins:
//! 1. click id: the order's `fbclid` (or the one inside its `fbc`), then its `fbp`;
//! 2. session id: the session id the checkout carried (`sck`, `client_reference_id`...);
//! 3. email hash; 4. phone hash.
//!
//! Then scoring, over the visits that share the order's IP (and its user agent, if the
//! weights let a visit without the IP reach the threshold): the sum of the weights of the
//! shared signals (IP, user agent, campaign, product) plus a time-proximity
//! weight that halves every half-life. The best visit at or above the threshold matches;
//! otherwise the conversion is unmatched.
//!
//! When a rule finds several visits the one seen last before the deadline wins (last
//! touch), ties broken by session id, so the choice never depends on reading order.

use funnelhub_schemas::derived::MatchMethod;
use funnelhub_schemas::events::OrderEvent;

use super::visits::{fbclid_of_fbc, Signal, Visit, VisitView, Visits};
use crate::config::ScoringConfig;

/// The outcome of the rules for one conversion.
#[derive(Debug, Clone)]
pub struct Found<'a> {
    pub method: MatchMethod,
    pub visit: Option<VisitView<'a>>,
    /// The hit the conversion is attributed to.
    pub event_id: Option<&'a str>,
    /// 1 for deterministic rules, the score for scoring, 0 when unmatched.
    pub score: f64,
    pub signals: Vec<&'static str>,
}

/// How a deterministic rule finds visits.
enum Lookup<'v> {
    Signal(Signal, Option<&'v str>),
    Session(Option<&'v str>),
}

/// Where and when to look.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Hits received after this are not seen (the conversion's grace deadline).
    pub deadline: i64,
    /// Visits last seen before this are too old (the lookback).
    pub oldest: i64,
}

/// Apply the rules to `order`.
pub fn find<'a>(
    order: &OrderEvent,
    visits: &'a Visits,
    window: Window,
    scoring: &ScoringConfig,
) -> Found<'a> {
    let tenant = order.envelope.tenant_id.as_str();
    let views = |candidates: &mut dyn Iterator<Item = &'a Visit>| -> Option<VisitView<'a>> {
        candidates
            .filter_map(|v| v.view(window.deadline))
            .filter(|v| v.last_seen() >= window.oldest)
            .max_by(|a, b| (a.last_seen(), a.session_id()).cmp(&(b.last_seen(), b.session_id())))
    };
    let fbclid = order
        .click_ids
        .fbclid
        .as_deref()
        .or_else(|| order.click_ids.fbc.as_deref().and_then(fbclid_of_fbc));
    let identity = &order.envelope.identity;
    let rules = [
        (MatchMethod::ClickId, Lookup::Signal(Signal::Fbclid, fbclid)),
        (
            MatchMethod::ClickId,
            Lookup::Signal(Signal::Fbp, order.click_ids.fbp.as_deref()),
        ),
        (
            MatchMethod::SessionId,
            Lookup::Session(order.session_id.as_deref()),
        ),
        (
            MatchMethod::EmailHash,
            Lookup::Signal(Signal::EmailHash, identity.email_hash.as_deref()),
        ),
        (
            MatchMethod::PhoneHash,
            Lookup::Signal(Signal::PhoneHash, identity.phone_hash.as_deref()),
        ),
    ];
    for (method, lookup) in rules {
        let found = match lookup {
            Lookup::Session(session) => session.and_then(|session| {
                views(&mut visits.session(tenant, session).into_iter())
                    .map(|view| (view, view.entry_hit(), "session_id"))
            }),
            Lookup::Signal(signal, value) => value.and_then(|value| {
                views(&mut visits.with(signal, tenant, value)).map(|view| {
                    let hit = view.hit_with(signal, value).unwrap_or(view.entry_hit());
                    (view, hit, signal.as_str())
                })
            }),
        };
        if let Some((view, hit, signal)) = found {
            return Found {
                method,
                visit: Some(view),
                event_id: Some(&hit.envelope.event_id),
                score: 1.0,
                signals: vec![signal],
            };
        }
    }
    score(order, visits, window, scoring).unwrap_or(Found {
        method: MatchMethod::Unmatched,
        visit: None,
        event_id: None,
        score: 0.0,
        signals: Vec::new(),
    })
}

/// The scoring rule: the best candidate at or above the threshold.
fn score<'a>(
    order: &OrderEvent,
    visits: &'a Visits,
    window: Window,
    config: &ScoringConfig,
) -> Option<Found<'a>> {
    let tenant = order.envelope.tenant_id.as_str();
    let ip = order.client_ip.as_deref();
    let user_agent = order.user_agent.as_deref();
    // Blocking: candidates share the IP. Visits sharing only the user agent (a handful of
    // strings cover most phones) are compared only if the weights let a visit without the
    // IP reach the threshold; with the defaults they cannot.
    let without_ip = config.user_agent + config.time + config.utm + config.product;
    let user_agent = user_agent.filter(|_| without_ip >= config.threshold);
    let candidates = ip
        .into_iter()
        .flat_map(|ip| visits.with(Signal::Ip, tenant, ip))
        .chain(
            user_agent
                .into_iter()
                .flat_map(|ua| visits.with(Signal::UserAgent, tenant, ua)),
        )
        .filter_map(|v| v.view(window.deadline))
        .filter(|v| v.last_seen() >= window.oldest);
    let half_life = f64::from(config.time_half_life_minutes) * 60_000.0;
    let mut best: Option<(f64, Vec<&'static str>, VisitView<'a>)> = None;
    for view in candidates {
        let mut total = 0.0;
        let mut signals = Vec::new();
        let mut add = |name: &'static str, weight: f64| {
            if weight > 0.0 {
                total += weight;
                signals.push(name);
            }
        };
        if ip.is_some_and(|ip| view.has(Signal::Ip, ip)) {
            add("ip", config.ip);
        }
        if order
            .user_agent
            .as_deref()
            .is_some_and(|ua| view.has(Signal::UserAgent, ua))
        {
            add("user_agent", config.user_agent);
        }
        let gap = (order.envelope.received_at - view.last_seen()).abs() as f64;
        let decay = 0.5f64.powf(gap / half_life);
        if decay >= 0.01 {
            add("time", config.time * decay);
        }
        if order
            .utm
            .campaign
            .as_deref()
            .is_some_and(|c| view.utm_campaign() == Some(c))
        {
            add("utm", config.utm);
        }
        if order
            .product_id
            .as_deref()
            .is_some_and(|p| view.showed_product(p))
        {
            add("product", config.product);
        }
        let better = match &best {
            None => true,
            Some((score, _, current)) => {
                (total, view.last_seen(), view.session_id())
                    > (*score, current.last_seen(), current.session_id())
            }
        };
        if better {
            best = Some((total, signals, view));
        }
    }
    let (score, signals, view) = best?;
    (score >= config.threshold).then(|| Found {
        method: MatchMethod::Scoring,
        visit: Some(view),
        event_id: Some(&view.entry_hit().envelope.event_id),
        score,
        signals,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use funnelhub_schemas::events::TrackingHit;
    use funnelhub_schemas::testing::{sample_order_event, sample_tracking_hit};

    const MIN: i64 = 60_000;

    fn hit(session: &str, id: &str, at: i64) -> TrackingHit {
        let mut hit = sample_tracking_hit();
        hit.session_id = session.into();
        hit.envelope.event_id = id.into();
        hit.envelope.received_at = at;
        hit.envelope.identity = Default::default();
        hit.click_ids = Default::default();
        hit.client_ip = None;
        hit.user_agent = None;
        hit.utm = Default::default();
        hit.content_ids = Vec::new();
        hit
    }

    fn order(at: i64) -> OrderEvent {
        let mut order = sample_order_event();
        order.envelope.received_at = at;
        order.envelope.identity = Default::default();
        order.click_ids = Default::default();
        order.session_id = None;
        order.client_ip = None;
        order.user_agent = None;
        order.utm = Default::default();
        order.product_id = None;
        order
    }

    fn window(at: i64) -> Window {
        Window {
            deadline: at + 10 * MIN,
            oldest: at - 7 * 24 * 60 * MIN,
        }
    }

    #[test]
    fn deterministic_rules_apply_in_order() {
        let mut visits = Visits::default();
        let mut by_email = hit("s-email", "e1", 0);
        by_email.envelope.identity.email_hash = Some("em".into());
        let mut by_click = hit("s-click", "c1", 0);
        by_click.click_ids.fbc = Some("fb.1.1700000000000.CLICK".into());
        visits.add(by_email);
        visits.add(by_click);
        visits.add(hit("s-session", "x1", 0));

        let mut o = order(MIN);
        o.envelope.identity.email_hash = Some("em".into());
        o.session_id = Some("s-session".into());
        let found = find(&o, &visits, window(MIN), &ScoringConfig::default());
        assert_eq!(found.method, MatchMethod::SessionId, "session before email");
        assert_eq!(found.visit.map(|v| v.session_id()), Some("s-session"));

        o.click_ids.fbclid = Some("CLICK".into());
        let found = find(&o, &visits, window(MIN), &ScoringConfig::default());
        assert_eq!(found.method, MatchMethod::ClickId, "click id first");
        assert_eq!(found.event_id, Some("c1"));
        assert_eq!(found.signals, ["fbclid"]);

        o.click_ids.fbclid = None;
        o.session_id = None;
        let found = find(&o, &visits, window(MIN), &ScoringConfig::default());
        assert_eq!(found.method, MatchMethod::EmailHash);
    }

    #[test]
    fn hits_after_the_deadline_or_before_the_lookback_are_not_seen() {
        let mut visits = Visits::default();
        visits.add(hit("late", "l1", 11 * MIN));
        let mut o = order(0);
        o.session_id = Some("late".into());
        let w = window(0);
        assert_eq!(
            find(&o, &visits, w, &ScoringConfig::default()).method,
            MatchMethod::Unmatched
        );
        let w = Window {
            deadline: 11 * MIN,
            ..w
        };
        assert_eq!(
            find(&o, &visits, w, &ScoringConfig::default()).method,
            MatchMethod::SessionId
        );
        let w = Window {
            deadline: 20 * MIN,
            oldest: 12 * MIN,
        };
        assert_eq!(
            find(&o, &visits, w, &ScoringConfig::default()).method,
            MatchMethod::Unmatched
        );
    }

    #[test]
    fn scoring_needs_more_than_a_shared_ip() {
        let mut visits = Visits::default();
        let mut same_ip = hit("ip-only", "a", -300 * MIN);
        same_ip.client_ip = Some("198.51.100.7".into());
        let mut ip_and_campaign = hit("ip-campaign", "b", -2 * MIN);
        ip_and_campaign.client_ip = Some("198.51.100.7".into());
        ip_and_campaign.utm.campaign = Some("bf".into());
        visits.add(same_ip);
        let mut o = order(0);
        o.client_ip = Some("198.51.100.7".into());
        o.utm.campaign = Some("bf".into());
        let config = ScoringConfig::default();
        assert_eq!(
            find(&o, &visits, window(0), &config).method,
            MatchMethod::Unmatched,
            "ip alone, five hours earlier: 0.45 + tiny time"
        );
        visits.add(ip_and_campaign);
        let found = find(&o, &visits, window(0), &config);
        assert_eq!(found.method, MatchMethod::Scoring);
        assert_eq!(found.visit.map(|v| v.session_id()), Some("ip-campaign"));
        assert_eq!(found.signals, ["ip", "time", "utm"]);
        // 0.45 + 0.15 × 0.5^(2/60) + 0.10
        assert!((found.score - 0.6966).abs() < 1e-3, "{}", found.score);
    }

    #[test]
    fn ties_go_to_the_visit_seen_last() {
        let mut visits = Visits::default();
        for (session, at) in [("older", -5 * MIN), ("newer", -MIN)] {
            let mut h = hit(session, session, at);
            h.envelope.identity.phone_hash = Some("ph".into());
            visits.add(h);
        }
        let mut o = order(0);
        o.envelope.identity.phone_hash = Some("ph".into());
        let found = find(&o, &visits, window(0), &ScoringConfig::default());
        assert_eq!(found.method, MatchMethod::PhoneHash);
        assert_eq!(found.visit.map(|v| v.session_id()), Some("newer"));
    }
}

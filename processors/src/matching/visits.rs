//! The recent visits of one matcher partition: every tenant's sessions of tracking hits,
//! indexed by the identifiers conversions are matched on, expired by record time.
//!
//! A visit is the *set* of its hits, kept sorted by (`received_at`, `event_id`), so adding
//! hits in any order, or the same hit twice (replay), gives the same visit. What a
//! conversion is compared with is a [`VisitView`]: the visit as of the conversion's
//! decision deadline (its hits received by then), which makes a decision a function of
//! the data, not of when the matcher happened to read it.

use std::collections::VecDeque;
use std::sync::Arc;

use foldhash::{HashMap, HashSet};
use funnelhub_schemas::common::HashedIdentity;
use funnelhub_schemas::events::TrackingHit;

/// Hits kept per visit (the earliest by record time; a visit is a landing session).
const HITS_PER_VISIT: usize = 200;

/// A hit's key in the matcher's state: unique per hit of a visit, as the visit orders them.
pub fn hit_key(hit: &TrackingHit) -> String {
    funnelhub_schemas::catalog::key(&[
        "hit",
        &hit.envelope.tenant_id,
        &hit.session_id,
        &hit.envelope.received_at.to_string(),
        &hit.envelope.event_id,
    ])
}

/// `tenant_id` and `session_id`, the identity of a visit.
pub type VisitKey = (Arc<str>, Arc<str>);

/// The identifiers visits are looked up by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    /// Meta's click id (from `fbclid` or the last part of `fbc`).
    Fbclid,
    /// Meta's browser id (`_fbp`).
    Fbp,
    EmailHash,
    PhoneHash,
    Ip,
    UserAgent,
}

impl Signal {
    /// The name in match records (`signals`).
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Fbclid => "fbclid",
            Signal::Fbp => "fbp",
            Signal::EmailHash => "email_hash",
            Signal::PhoneHash => "phone_hash",
            Signal::Ip => "ip",
            Signal::UserAgent => "user_agent",
        }
    }
}

/// The click id inside an `fbc` (`fb.<index>.<ms>.<fbclid>[.<appendix>]`).
pub fn fbclid_of_fbc(fbc: &str) -> Option<&str> {
    fbc.splitn(4, '.')
        .nth(3)
        .and_then(|rest| rest.split('.').next())
        .filter(|id| !id.is_empty())
}

/// Every (signal, value) of a hit.
fn signals_of(hit: &TrackingHit) -> impl Iterator<Item = (Signal, &str)> {
    let fbclid = hit
        .click_ids
        .fbclid
        .as_deref()
        .or_else(|| hit.click_ids.fbc.as_deref().and_then(fbclid_of_fbc));
    let identity = &hit.envelope.identity;
    [
        (Signal::Fbclid, fbclid),
        (Signal::Fbp, hit.click_ids.fbp.as_deref()),
        (Signal::EmailHash, identity.email_hash.as_deref()),
        (Signal::PhoneHash, identity.phone_hash.as_deref()),
        (Signal::Ip, hit.client_ip.as_deref()),
        (Signal::UserAgent, hit.user_agent.as_deref()),
    ]
    .into_iter()
    .filter_map(|(signal, value)| Some((signal, value?)))
}

/// One session's hits.
#[derive(Debug, Clone)]
pub struct Visit {
    pub key: VisitKey,
    /// Sorted by (`received_at`, `event_id`), unique by `event_id`.
    hits: Vec<TrackingHit>,
}

impl Visit {
    /// Its hits received at or before `deadline`, or `None` if it has none yet.
    pub fn view(&self, deadline: i64) -> Option<VisitView<'_>> {
        let until = self
            .hits
            .partition_point(|h| h.envelope.received_at <= deadline);
        (until > 0).then(|| VisitView {
            key: &self.key,
            hits: &self.hits[..until],
        })
    }

    /// Its hits, by time.
    pub fn hits(&self) -> &[TrackingHit] {
        &self.hits
    }

    /// When its newest hit was received.
    pub fn last_seen(&self) -> i64 {
        self.hits
            .last()
            .map_or(i64::MIN, |h| h.envelope.received_at)
    }

    /// Add `hit`; false if it was already there (or beyond the per-visit limit). A hit
    /// pushed past the limit by an earlier one is appended to `evicted`.
    fn add(&mut self, hit: TrackingHit, evicted: &mut Vec<String>) -> bool {
        fn order(h: &TrackingHit) -> (i64, &str) {
            (h.envelope.received_at, h.envelope.event_id.as_str())
        }
        let position = (hit.envelope.received_at, hit.envelope.event_id.clone());
        let position = (position.0, position.1.as_str());
        match self.hits.binary_search_by(|h| order(h).cmp(&position)) {
            Ok(_) => false,
            Err(at) if at >= HITS_PER_VISIT => false,
            Err(at) => {
                self.hits.insert(at, hit);
                if self.hits.len() > HITS_PER_VISIT {
                    evicted.extend(self.hits.drain(HITS_PER_VISIT..).map(|h| hit_key(&h)));
                }
                true
            }
        }
    }
}

/// A visit as of a decision deadline: what a conversion is compared with.
#[derive(Debug, Clone, Copy)]
pub struct VisitView<'a> {
    pub key: &'a VisitKey,
    /// Non-empty, in record-time order.
    hits: &'a [TrackingHit],
}

impl<'a> VisitView<'a> {
    pub fn session_id(&self) -> &'a str {
        &self.key.1
    }

    /// Record time of its last hit.
    pub fn last_seen(&self) -> i64 {
        self.hits[self.hits.len() - 1].envelope.received_at
    }

    /// The hit a conversion is attributed to: the first carrying a Meta click id (the ad
    /// click), else the first hit (the landing).
    pub fn entry_hit(&self) -> &'a TrackingHit {
        self.hits
            .iter()
            .find(|h| h.click_ids.fbc.is_some() || h.click_ids.fbclid.is_some())
            .unwrap_or(&self.hits[0])
    }

    /// The first hit with `signal` equal to `value`.
    pub fn hit_with(&self, signal: Signal, value: &str) -> Option<&'a TrackingHit> {
        self.hits
            .iter()
            .find(|h| signals_of(h).any(|(s, v)| s == signal && v == value))
    }

    /// Whether some hit has `signal` equal to `value`.
    pub fn has(&self, signal: Signal, value: &str) -> bool {
        self.hit_with(signal, value).is_some()
    }

    /// The first value of a field over the hits.
    pub fn first<T: ?Sized>(
        &self,
        field: impl Fn(&'a TrackingHit) -> Option<&'a T>,
    ) -> Option<&'a T> {
        self.hits.iter().find_map(field)
    }

    /// The latest value of a field over the hits (IP and user agent: the freshest).
    pub fn latest<T: ?Sized>(
        &self,
        field: impl Fn(&'a TrackingHit) -> Option<&'a T>,
    ) -> Option<&'a T> {
        self.hits.iter().rev().find_map(field)
    }

    /// The page the visit landed on: the entry hit's, else the first known.
    pub fn landing_url(&self) -> Option<&'a str> {
        self.entry_hit()
            .page_url
            .as_deref()
            .or_else(|| self.first(|h| h.page_url.as_deref()))
    }

    /// Every hashed identifier any hit carried (the first value of each).
    pub fn identity(&self) -> HashedIdentity {
        let first = |f: fn(&HashedIdentity) -> &Option<String>| {
            self.first(|h| f(&h.envelope.identity).as_deref())
                .map(str::to_owned)
        };
        HashedIdentity {
            email_hash: first(|i| &i.email_hash),
            phone_hash: first(|i| &i.phone_hash),
            first_name_hash: first(|i| &i.first_name_hash),
            last_name_hash: first(|i| &i.last_name_hash),
            city_hash: first(|i| &i.city_hash),
            state_hash: first(|i| &i.state_hash),
            zip_hash: first(|i| &i.zip_hash),
            country_hash: first(|i| &i.country_hash),
            gender_hash: first(|i| &i.gender_hash),
            birth_date_hash: first(|i| &i.birth_date_hash),
            external_id_hash: first(|i| &i.external_id_hash),
        }
    }

    /// May the visit's data go to ad platforms? Only if every hit said so.
    pub fn consent_ads(&self) -> bool {
        self.hits.iter().all(|h| h.envelope.consent.ads)
    }

    /// The campaign the visit came from.
    pub fn utm_campaign(&self) -> Option<&'a str> {
        self.first(|h| h.utm.campaign.as_deref())
    }

    /// Whether a hit showed `product` (initiate_checkout content ids).
    pub fn showed_product(&self, product: &str) -> bool {
        self.hits
            .iter()
            .any(|h| h.content_ids.iter().any(|c| c == product))
    }
}

/// Every visit of one partition.
#[derive(Debug, Default)]
pub struct Visits {
    visits: HashMap<VisitKey, Visit>,
    /// (signal, tenant, value) → visits with a hit carrying it.
    index: HashMap<(Signal, Arc<str>, Box<str>), HashSet<VisitKey>>,
    /// (last seen, visit) as last seen grew, for expiry (stale entries skipped).
    arrivals: VecDeque<(i64, VisitKey)>,
    /// Keys ([`hit_key`]) of the hits that left since the last [`Visits::take_gone`].
    gone: Vec<String>,
}

impl Visits {
    /// Visits held.
    pub fn len(&self) -> usize {
        self.visits.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.visits.is_empty()
    }

    /// Add a hit to its session's visit; false if it was there already.
    pub fn add(&mut self, hit: TrackingHit) -> bool {
        let key: VisitKey = (
            Arc::from(hit.envelope.tenant_id.as_str()),
            Arc::from(hit.session_id.as_str()),
        );
        for (signal, value) in signals_of(&hit) {
            self.index
                .entry((signal, key.0.clone(), Box::from(value)))
                .or_default()
                .insert(key.clone());
        }
        let visit = self.visits.entry(key.clone()).or_insert_with(|| Visit {
            key: key.clone(),
            hits: Vec::new(),
        });
        let before = visit.last_seen();
        let added = visit.add(hit, &mut self.gone);
        let after = visit.last_seen();
        if after > before {
            self.arrivals.push_back((after, key));
        }
        added
    }

    /// Every visit, in no order.
    pub fn all(&self) -> impl Iterator<Item = &Visit> {
        self.visits.values()
    }

    /// The visit of a session.
    pub fn session(&self, tenant_id: &str, session_id: &str) -> Option<&Visit> {
        self.visits
            .get(&(Arc::from(tenant_id), Arc::from(session_id)))
    }

    /// The visits of `tenant_id` with a hit whose `signal` is `value`.
    pub fn with(
        &self,
        signal: Signal,
        tenant_id: &str,
        value: &str,
    ) -> impl Iterator<Item = &Visit> {
        self.index
            .get(&(signal, Arc::from(tenant_id), Box::from(value)))
            .into_iter()
            .flatten()
            .filter_map(|key| self.visits.get(key))
    }

    /// Forget visits last seen before `cutoff`.
    pub fn expire(&mut self, cutoff: i64) {
        while let Some((time, _)) = self.arrivals.front() {
            if *time >= cutoff {
                break;
            }
            let (time, key) = self.arrivals.pop_front().expect("front exists");
            let stale = self.visits.get(&key).is_none_or(|v| v.last_seen() != time);
            if stale {
                continue;
            }
            self.remove(&key);
        }
    }

    /// Forget every visit `drop` names (a purged person's, a tenant's past its retention);
    /// how many.
    pub fn forget(&mut self, drop: impl Fn(&Visit) -> bool) -> usize {
        let keys: Vec<VisitKey> = self
            .visits
            .iter()
            .filter(|(_, visit)| drop(visit))
            .map(|(key, _)| key.clone())
            .collect();
        for key in &keys {
            self.remove(key);
        }
        keys.len()
    }

    /// Keys ([`hit_key`]) of the hits that left (expired, forgotten, pushed past the
    /// per-visit limit) since the last call.
    pub fn take_gone(&mut self) -> Vec<String> {
        std::mem::take(&mut self.gone)
    }

    /// Remove a visit and its index entries (its stale arrivals are skipped by expiry).
    fn remove(&mut self, key: &VisitKey) {
        let Some(visit) = self.visits.remove(key) else {
            return;
        };
        self.gone.extend(visit.hits.iter().map(hit_key));
        for hit in &visit.hits {
            for (signal, value) in signals_of(hit) {
                let entry = (signal, key.0.clone(), Box::from(value));
                if let Some(keys) = self.index.get_mut(&entry) {
                    keys.remove(key);
                    if keys.is_empty() {
                        self.index.remove(&entry);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use funnelhub_schemas::testing::sample_tracking_hit;

    fn hit(session: &str, id: &str, at: i64) -> TrackingHit {
        let mut hit = sample_tracking_hit();
        hit.session_id = session.into();
        hit.envelope.event_id = id.into();
        hit.envelope.received_at = at;
        hit
    }

    #[test]
    fn a_visit_is_the_set_of_its_hits_whatever_the_order() {
        let hits = [hit("s", "a", 30), hit("s", "b", 10), hit("s", "c", 20)];
        let mut forward = Visits::default();
        let mut backward = Visits::default();
        for h in &hits {
            assert!(forward.add(h.clone()));
        }
        for h in hits.iter().rev() {
            backward.add(h.clone());
        }
        assert!(
            !forward.add(hits[0].clone()),
            "the same hit again adds nothing"
        );
        let ids = |v: &Visits| {
            let view = v
                .session("acme", "s")
                .and_then(|v| v.view(i64::MAX))
                .expect("visit");
            view.hits
                .iter()
                .map(|h| h.envelope.event_id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&forward), ["b", "c", "a"]);
        assert_eq!(ids(&forward), ids(&backward));
    }

    #[test]
    fn a_view_holds_the_hits_received_by_its_deadline() {
        let mut visits = Visits::default();
        visits.add(hit("s", "a", 10));
        visits.add(hit("s", "b", 20));
        let visit = visits.session("acme", "s").expect("visit");
        assert!(visit.view(9).is_none());
        assert_eq!(visit.view(15).expect("one hit").last_seen(), 10);
        assert_eq!(visit.view(20).expect("both").last_seen(), 20);
    }

    #[test]
    fn expiry_forgets_the_visit_and_its_index_entries() {
        let mut visits = Visits::default();
        let mut old = hit("old", "a", 10);
        old.client_ip = Some("203.0.113.9".into());
        visits.add(old.clone());
        visits.add(hit("new", "b", 100));
        assert_eq!(visits.with(Signal::Ip, "acme", "203.0.113.9").count(), 1);
        assert!(visits.take_gone().is_empty());
        visits.expire(50);
        assert_eq!(visits.len(), 1);
        assert_eq!(
            visits.take_gone(),
            vec![hit_key(&old)],
            "its hit leaves the state"
        );
        assert_eq!(visits.with(Signal::Ip, "acme", "203.0.113.9").count(), 0);
        assert!(visits.session("acme", "new").is_some());
    }

    #[test]
    fn forgetting_a_person_removes_their_whole_visit_and_its_index_entries() {
        let mut visits = Visits::default();
        let mut theirs = hit("purged", "a", 10);
        theirs.client_ip = Some("203.0.113.9".into());
        visits.add(theirs);
        visits.add(hit("purged", "b", 20));
        visits.add(hit("kept", "c", 30));
        let forgotten = visits.forget(|v| v.hits().iter().any(|h| h.envelope.event_id == "b"));
        assert_eq!(forgotten, 1);
        assert!(visits.session("acme", "purged").is_none());
        assert_eq!(visits.with(Signal::Ip, "acme", "203.0.113.9").count(), 0);
        assert!(visits.session("acme", "kept").is_some());
        visits.expire(100);
        assert!(
            visits.is_empty(),
            "stale arrivals of the forgotten visit are skipped"
        );
    }

    #[test]
    fn fbclid_is_read_from_fbc() {
        assert_eq!(fbclid_of_fbc("fb.1.1554763741205.AbCdEf"), Some("AbCdEf"));
        assert_eq!(
            fbclid_of_fbc("fb.2.1554763741205.AbCdEf.Bq"),
            Some("AbCdEf")
        );
        assert_eq!(fbclid_of_fbc("fb.1.123"), None);
    }
}

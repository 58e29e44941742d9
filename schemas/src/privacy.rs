//! Erasure by identifier (LGPD / GDPR): the suppression record a purge writes, what ties
//! each record of the pipeline to a person ([`Tied`]), and the in-memory list every stage
//! checks ([`SuppressionList`]). A record is suppressed when, for its tenant, it carries a
//! purged identifier hash (email, phone, external id) or belongs to a session or event the
//! purge found tied to one. See `docs/privacy.md`.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::common::HashedIdentity;
use crate::derived::{
    CapiDispatchRequest, DedupedEvent, DispatchAttempt, DlqRecord, FunnelTransition, MatchResult,
    OpsTicket,
};
use crate::events::{EdgeEvent, OnboardingEvent, OrderEvent, TrackingHit};
use crate::state::MatchDecision;

/// `io.funnelhub.privacy.IdentifierKind`: what a purge was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentifierKind {
    Email,
    Phone,
    ExternalId,
}

impl IdentifierKind {
    /// The Avro symbol (also the API's and the CLI's name).
    pub fn as_str(self) -> &'static str {
        match self {
            IdentifierKind::Email => "email",
            IdentifierKind::Phone => "phone",
            IdentifierKind::ExternalId => "external_id",
        }
    }
}

/// `io.funnelhub.privacy.Suppression`: one purge, on topic `privacy.suppressions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suppression {
    pub purge_id: String,
    pub tenant_id: String,
    pub identifier_kind: IdentifierKind,
    /// SHA-256 of the normalized identifier, as the edge hashes it.
    pub identifier_hash: String,
    pub session_ids: Vec<String>,
    pub event_ids: Vec<String>,
    pub requested_at: i64,
}

impl Suppression {
    /// The record key (`tenant_id:purge_id`): purges never overwrite each other.
    pub fn key(&self) -> String {
        crate::catalog::key(&[&self.tenant_id, &self.purge_id])
    }
}

/// What a purge receipt keeps instead of the identifier's hash: a digest of it under a
/// fixed label. Whoever holds the identifier can find its receipt; the hash the pipeline
/// and Meta know is stored nowhere by the receipt.
pub fn receipt_digest(identifier_hash: &str) -> String {
    crate::identity::sha256_hex(&format!("funnelhub purge receipt:{identifier_hash}"))
}

/// What ties one record to people: its tenant, the identifier hashes it carries, and the
/// sessions and events it belongs to.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Ties<'a> {
    pub tenant_id: &'a str,
    pub hashes: Vec<&'a str>,
    pub sessions: Vec<&'a str>,
    pub events: Vec<&'a str>,
}

/// A record that may hold or point at personal data.
pub trait Tied {
    fn ties(&self) -> Ties<'_>;
}

/// The hashes a purge can be asked for (email, phone, external id) found in `identity`.
pub fn identifier_hashes(identity: &HashedIdentity) -> impl Iterator<Item = &str> {
    [
        &identity.email_hash,
        &identity.phone_hash,
        &identity.external_id_hash,
    ]
    .into_iter()
    .flatten()
    .map(String::as_str)
}

fn edge_ties<'a>(envelope: &'a crate::common::Envelope, session: Option<&'a str>) -> Ties<'a> {
    Ties {
        tenant_id: &envelope.tenant_id,
        hashes: identifier_hashes(&envelope.identity).collect(),
        sessions: session.into_iter().collect(),
        events: vec![envelope.event_id.as_str()],
    }
}

impl Tied for TrackingHit {
    fn ties(&self) -> Ties<'_> {
        edge_ties(&self.envelope, Some(&self.session_id))
    }
}

impl Tied for OrderEvent {
    fn ties(&self) -> Ties<'_> {
        edge_ties(&self.envelope, self.session_id.as_deref())
    }
}

impl Tied for OnboardingEvent {
    fn ties(&self) -> Ties<'_> {
        edge_ties(&self.envelope, Some(&self.session_id))
    }
}

impl Tied for EdgeEvent {
    fn ties(&self) -> Ties<'_> {
        match self {
            EdgeEvent::TrackingHit(e) => e.ties(),
            EdgeEvent::OrderEvent(e) => e.ties(),
            EdgeEvent::OnboardingEvent(e) => e.ties(),
        }
    }
}

impl Tied for DedupedEvent {
    fn ties(&self) -> Ties<'_> {
        self.event.ties()
    }
}

impl Tied for FunnelTransition {
    fn ties(&self) -> Ties<'_> {
        Ties {
            tenant_id: &self.tenant_id,
            hashes: Vec::new(),
            sessions: vec![&self.subject_id],
            events: vec![&self.cause_event_id],
        }
    }
}

impl Tied for OpsTicket {
    fn ties(&self) -> Ties<'_> {
        Ties {
            tenant_id: &self.tenant_id,
            hashes: Vec::new(),
            sessions: vec![&self.session_id],
            events: vec![&self.cause_event_id],
        }
    }
}

impl Tied for MatchResult {
    fn ties(&self) -> Ties<'_> {
        Ties {
            tenant_id: &self.tenant_id,
            hashes: Vec::new(),
            sessions: self.matched_session_id.as_deref().into_iter().collect(),
            events: [
                Some(self.conversion_id.as_str()),
                self.matched_event_id.as_deref(),
                self.original_conversion_id.as_deref(),
            ]
            .into_iter()
            .flatten()
            .collect(),
        }
    }
}

impl Tied for CapiDispatchRequest {
    fn ties(&self) -> Ties<'_> {
        Ties {
            tenant_id: &self.tenant_id,
            hashes: identifier_hashes(&self.identity).collect(),
            sessions: Vec::new(),
            events: vec![&self.event_id],
        }
    }
}

impl Tied for MatchDecision {
    fn ties(&self) -> Ties<'_> {
        let mut ties = self.result.ties();
        if let Some(dispatch) = &self.dispatch {
            ties.hashes.extend(identifier_hashes(&dispatch.identity));
        }
        ties
    }
}

/// An attempt is one HTTP request to Meta, shared by everyone whose events it carried:
/// it is never dropped for one person; [`SuppressionList::redact_events`] takes their event
/// ids out of it instead.
impl Tied for DispatchAttempt {
    fn ties(&self) -> Ties<'_> {
        Ties {
            tenant_id: &self.tenant_id,
            ..Ties::default()
        }
    }
}

impl Tied for DlqRecord {
    fn ties(&self) -> Ties<'_> {
        Ties {
            tenant_id: self.tenant_id.as_deref().unwrap_or_default(),
            hashes: Vec::new(),
            sessions: Vec::new(),
            events: self.event_id.as_deref().into_iter().collect(),
        }
    }
}

/// Ties are tied to themselves (a caller that already computed them).
impl Tied for Ties<'_> {
    fn ties(&self) -> Ties<'_> {
        self.clone()
    }
}

/// A funnel session in the funnel's state: its tenant, session and the events applied.
impl Tied for crate::state::FunnelSession {
    fn ties(&self) -> Ties<'_> {
        Ties {
            tenant_id: &self.tenant_id,
            hashes: Vec::new(),
            sessions: vec![&self.subject_id],
            events: self.timeline.iter().map(|e| e.event_id.as_str()).collect(),
        }
    }
}

/// A dedupe key in the dedupe state ([`EdgeEvent::dedupe_key`]), read back: the tenant
/// (tenant ids hold no `:`), the event id of tracking and order keys, the session of
/// onboarding keys (`…:{session}:{domain}`; a domain holding `:` makes the session read
/// wrong, and the key then only leaves with the window).
#[derive(Debug, Clone, Copy)]
pub struct DedupeKey<'a>(pub &'a str);

impl Tied for DedupeKey<'_> {
    fn ties(&self) -> Ties<'_> {
        let mut parts = self.0.splitn(3, ':');
        let (tenant_id, kind, rest) = (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        );
        let mut ties = Ties {
            tenant_id,
            ..Ties::default()
        };
        match kind {
            // track:{type}:{event id}
            "track" => ties.events.extend(rest.split_once(':').map(|(_, e)| e)),
            // order:{event id}
            "order" => ties.events.push(rest),
            // onboarding:{type}:{session}:{domain}
            "onboarding" => ties.sessions.extend(
                rest.split_once(':')
                    .and_then(|(_, session_domain)| session_domain.rsplit_once(':'))
                    .map(|(session, _)| session),
            ),
            _ => {}
        }
        ties
    }
}

#[derive(Debug, Default)]
struct Suppressed {
    hashes: HashSet<String>,
    sessions: HashSet<String>,
    events: HashSet<String>,
}

/// Every suppression read so far, by tenant.
#[derive(Debug, Default)]
pub struct SuppressionList {
    tenants: HashMap<String, Suppressed>,
    purges: usize,
}

impl SuppressionList {
    /// Add one purge's identifier, sessions and events.
    pub fn add(&mut self, suppression: Suppression) {
        let tenant = self.tenants.entry(suppression.tenant_id).or_default();
        tenant.hashes.insert(suppression.identifier_hash);
        tenant.sessions.extend(suppression.session_ids);
        tenant.events.extend(suppression.event_ids);
        self.purges += 1;
    }

    /// Purges read.
    pub fn len(&self) -> usize {
        self.purges
    }

    pub fn is_empty(&self) -> bool {
        self.purges == 0
    }

    /// Remove the suppressed events of `tenant_id` from `events`.
    pub fn redact_events(&self, tenant_id: &str, events: &mut Vec<String>) {
        if let Some(tenant) = self.tenants.get(tenant_id) {
            events.retain(|e| !tenant.events.contains(e));
        }
    }

    /// Whether `ties` meet a suppression of their tenant.
    pub fn covers(&self, ties: &Ties<'_>) -> bool {
        let Some(tenant) = self.tenants.get(ties.tenant_id) else {
            return false;
        };
        ties.hashes.iter().any(|h| tenant.hashes.contains(*h))
            || ties.sessions.iter().any(|s| tenant.sessions.contains(*s))
            || ties.events.iter().any(|e| tenant.events.contains(*e))
    }
}

/// A kept webhook holds no personal value (redacted at the edge) and no session: tied to
/// no person.
impl Tied for crate::events::RawWebhook {
    fn ties(&self) -> Ties<'_> {
        Ties {
            tenant_id: &self.tenant_id,
            ..Ties::default()
        }
    }
}

/// Setup chat messages concern a tenant's configuration, personal data masked at the edge.
impl Tied for crate::setup::SetupMessage {
    fn ties(&self) -> Ties<'_> {
        Ties {
            tenant_id: &self.tenant_id,
            ..Ties::default()
        }
    }
}

/// Setup actions concern a tenant's configuration, not a buyer: tied to no person.
impl Tied for crate::setup::SetupActionLog {
    fn ties(&self) -> Ties<'_> {
        Ties {
            tenant_id: &self.tenant_id,
            ..Ties::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn suppression(tenant: &str, hash: &str, sessions: &[&str], events: &[&str]) -> Suppression {
        Suppression {
            purge_id: format!("p-{hash}"),
            tenant_id: tenant.into(),
            identifier_kind: IdentifierKind::Email,
            identifier_hash: hash.into(),
            session_ids: sessions.iter().map(|s| s.to_string()).collect(),
            event_ids: events.iter().map(|s| s.to_string()).collect(),
            requested_at: 1,
        }
    }

    #[test]
    fn a_record_is_covered_by_its_tenants_hash_session_or_event_only() {
        let mut list = SuppressionList::default();
        assert!(list.is_empty());
        list.add(suppression("acme", "h1", &["s1"], &["e1"]));
        assert_eq!(list.len(), 1);
        let ties = |tenant, hashes: Vec<&'static str>, sessions, events| Ties {
            tenant_id: tenant,
            hashes,
            sessions,
            events,
        };
        assert!(list.covers(&ties("acme", vec!["h1"], vec![], vec![])));
        assert!(list.covers(&ties("acme", vec![], vec!["s1"], vec![])));
        assert!(list.covers(&ties("acme", vec![], vec![], vec!["e1"])));
        assert!(list.covers(&ties("acme", vec!["x", "h1"], vec!["s9"], vec![])));
        assert!(!list.covers(&ties("acme", vec!["h2"], vec!["s2"], vec!["e2"])));
        assert!(
            !list.covers(&ties("loja", vec!["h1"], vec!["s1"], vec!["e1"])),
            "another tenant's person with the same hash is not this purge's"
        );
        let mut events = vec!["e1".to_string(), "e2".to_string()];
        list.redact_events("acme", &mut events);
        assert_eq!(events, ["e2"]);
    }

    #[test]
    fn a_dedupe_key_reads_back_to_its_tenant_event_or_session() {
        use crate::testing::{sample_onboarding_event, sample_order_event, sample_tracking_hit};
        let hit = EdgeEvent::TrackingHit(sample_tracking_hit());
        let order = EdgeEvent::OrderEvent(sample_order_event());
        let mut onboarding = sample_onboarding_event();
        onboarding.session_id = "onb:with:colons".into();
        let onboarding = EdgeEvent::OnboardingEvent(onboarding);
        for event in [&hit, &order] {
            let key = event.dedupe_key();
            let key = DedupeKey(&key);
            let ties = key.ties();
            assert_eq!(ties.tenant_id, event.envelope().tenant_id, "{key:?}");
            assert_eq!(ties.events, [event.envelope().event_id.as_str()], "{key:?}");
            assert!(ties.sessions.is_empty());
        }
        let key = onboarding.dedupe_key();
        let onboarding_key = DedupeKey(&key);
        let ties = onboarding_key.ties();
        assert_eq!(ties.tenant_id, onboarding.envelope().tenant_id);
        assert_eq!(ties.sessions, ["onb:with:colons"]);
        let mut list = SuppressionList::default();
        list.add(suppression(ties.tenant_id, "h", &["onb:with:colons"], &[]));
        assert!(list.covers(&DedupeKey(&key).ties()));
        assert!(!list.covers(&DedupeKey(&hit.dedupe_key()).ties()));
    }

    #[test]
    fn only_purgeable_identifiers_tie_an_identity() {
        let identity = HashedIdentity {
            email_hash: Some("em".into()),
            city_hash: Some("ct".into()),
            external_id_hash: Some("xid".into()),
            ..HashedIdentity::default()
        };
        let hashes: Vec<_> = identifier_hashes(&identity).collect();
        assert_eq!(hashes, ["em", "xid"]);
    }
}

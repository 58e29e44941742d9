//! Purge by identifier (LGPD / GDPR erasure): `POST /api/v1/privacy/purge` and
//! `funnelhub privacy purge` both call [`purge`]. See `docs/privacy.md`.
//!
//! 1. The identifier is normalized and hashed as the edge hashes it (the tenant's phone
//!    rules included), then forgotten.
//! 2. What ClickHouse holds tied to the hash is found (its events, their sessions, the
//!    visits its conversions matched, every event of those sessions).
//! 3. A suppression (hash, sessions, events) is written to `privacy.suppressions` and
//!    acknowledged. Every stage follows that topic: from then on nothing tied to it is
//!    deduplicated, matched, stored in ClickHouse or sent to Meta, replays included, and
//!    the matcher forgets the visits it holds of the person.
//! 4. After [`SETTLE`] (every process has read the suppression; batches in flight are
//!    written), the rows are looked up again, deleted from every table that holds some (a
//!    table without any gets no mutation), and counted once ClickHouse has applied the
//!    deletes.
//! 5. The tenant's guided-setup screenshots are deleted, all of them: an image cannot be
//!    searched for a person, and any may show one (a sale's screen). Counted as
//!    `setup_attachments`.
//! 6. A receipt is stored in `purge_receipts` (counts per table, times, a digest of the
//!    hash that is not the hash) and returned.

use std::collections::BTreeMap;
use std::time::Duration;

use clickhouse::Client;
use funnelhub_clickhouse::purge::{self, ReceiptRow, Subject};
use funnelhub_kafka::{AckedProducer, TopicCodec};
use funnelhub_schemas::identity::{PhoneRules, RawIdentity};
use funnelhub_schemas::ids::{deterministic_id, now_ms};
use funnelhub_schemas::privacy::{receipt_digest, IdentifierKind, Suppression};
use serde::Serialize;

/// How long a purge waits between writing its suppression and deleting rows.
pub const SETTLE: Duration = Duration::from_secs(2);
/// How long a purge waits for ClickHouse to apply its deletes.
const DELETES_APPLIED: Duration = Duration::from_secs(60);

/// What a purge needs.
pub struct Purger<'a> {
    pub clickhouse: &'a Client,
    pub database: &'a str,
    pub producer: &'a AckedProducer,
    pub suppressions: &'a TopicCodec<Suppression>,
    pub settle: Duration,
    /// Where guided-setup screenshots are (`None`: setup is off here).
    pub attachments: Option<&'a funnelhub_setup::attachments::Attachments>,
}

impl std::fmt::Debug for Purger<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Purger")
            .field("database", &self.database)
            .field("settle", &self.settle)
            .finish_non_exhaustive()
    }
}

/// Why a purge did not complete. Any step may be retried: a purge is idempotent.
#[derive(Debug, thiserror::Error)]
pub enum PurgeError {
    #[error("ClickHouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    #[error("writing the suppression: {0}")]
    Kafka(String),
    #[error("deleting setup screenshots: {0}")]
    Attachments(#[from] funnelhub_setup::SetupError),
}

/// The answer of a purge: its receipt, readable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Receipt {
    pub purge_id: String,
    pub tenant_id: String,
    pub identifier_kind: &'static str,
    pub requested_at_ms: i64,
    pub completed_at_ms: i64,
    /// Sessions and events found tied to the identifier.
    pub sessions: usize,
    pub events: usize,
    /// Rows deleted per table.
    pub deleted: BTreeMap<String, u64>,
    /// Rows still found after the deletes (0 when the purge is complete).
    pub left: u64,
}

/// The identifier's hash as the edge computes it, or `None` if it normalizes to nothing.
pub fn identifier_hash(kind: IdentifierKind, value: &str, phone: &PhoneRules) -> Option<String> {
    let raw = RawIdentity {
        email: (kind == IdentifierKind::Email).then(|| value.to_owned()),
        phone: (kind == IdentifierKind::Phone).then(|| value.to_owned()),
        external_id: (kind == IdentifierKind::ExternalId).then(|| value.to_owned()),
        ..RawIdentity::default()
    };
    let hashed = raw.hash(phone);
    hashed
        .email_hash
        .or(hashed.phone_hash)
        .or(hashed.external_id_hash)
}

/// Purge `tenant_id`'s person known by `hash` (see the module's steps).
pub async fn purge(
    purger: &Purger<'_>,
    tenant_id: &str,
    kind: IdentifierKind,
    hash: &str,
) -> Result<Receipt, PurgeError> {
    let (client, db) = (purger.clickhouse, purger.database);
    let requested_at = now_ms();
    let purge_id = deterministic_id("purge", &[tenant_id, hash, &requested_at.to_string()]);
    let mut subject = purge::find(client, db, tenant_id, hash).await?;
    suppress(purger, &purge_id, kind, &subject, requested_at).await?;
    tokio::time::sleep(purger.settle).await;
    // Rows written while the stages had not read the suppression yet.
    let again = purge::find(client, db, tenant_id, hash).await?;
    if !(again.sessions.is_subset(&subject.sessions) && again.events.is_subset(&subject.events)) {
        subject.sessions.extend(again.sessions);
        subject.events.extend(again.events);
        suppress(purger, &purge_id, kind, &subject, requested_at).await?;
    }
    let deleted = purge::count(client, db, &subject).await?;
    purge::delete(client, db, &subject, &deleted, DELETES_APPLIED).await?;
    let remaining = purge::count(client, db, &subject).await?;
    let mut left: u64 = remaining.values().sum();
    if left > 0 {
        // A batch in flight landed between the count and the deletes: once more.
        purge::delete(client, db, &subject, &remaining, DELETES_APPLIED).await?;
        left = purge::count(client, db, &subject).await?.values().sum();
    }
    let mut deleted = deleted;
    if let Some(attachments) = purger.attachments {
        let gone = attachments.delete_tenant(tenant_id).await?;
        deleted.insert("setup_attachments".into(), gone as u64);
    }
    let receipt = Receipt {
        purge_id,
        tenant_id: tenant_id.to_owned(),
        identifier_kind: kind.as_str(),
        requested_at_ms: requested_at,
        completed_at_ms: now_ms(),
        sessions: subject.sessions.len(),
        events: subject.events.len(),
        deleted,
        left,
    };
    purge::record(
        client,
        &ReceiptRow {
            tenant_id: receipt.tenant_id.clone(),
            purge_id: receipt.purge_id.clone(),
            identifier_kind: kind.as_str().to_owned(),
            identifier_digest: receipt_digest(hash),
            requested_at: u32::try_from(requested_at / 1000).unwrap_or(u32::MAX),
            requested_at_ms: requested_at,
            completed_at_ms: receipt.completed_at_ms,
            sessions: receipt.sessions as u32,
            events: receipt.events as u32,
            tables: receipt.deleted.keys().cloned().collect(),
            rows: receipt.deleted.values().copied().collect(),
            left,
        },
    )
    .await?;
    tracing::info!(
        tenant = tenant_id,
        purge_id = %receipt.purge_id,
        kind = kind.as_str(),
        sessions = receipt.sessions,
        events = receipt.events,
        rows = receipt.deleted.values().sum::<u64>(),
        left,
        "purged"
    );
    Ok(receipt)
}

/// Write the suppression of `subject` and wait for the broker's acknowledgement.
async fn suppress(
    purger: &Purger<'_>,
    purge_id: &str,
    kind: IdentifierKind,
    subject: &Subject,
    requested_at: i64,
) -> Result<(), PurgeError> {
    let suppression = Suppression {
        purge_id: purge_id.to_owned(),
        tenant_id: subject.tenant_id.clone(),
        identifier_kind: kind,
        identifier_hash: subject.hash.clone(),
        session_ids: subject.sessions.iter().cloned().collect(),
        event_ids: subject.events.iter().cloned().collect(),
        requested_at,
    };
    let value = purger
        .suppressions
        .encode(&suppression)
        .map_err(|e| PurgeError::Kafka(e.to_string()))?;
    purger
        .producer
        .send(
            purger.suppressions.topic(),
            suppression.key().as_bytes(),
            Some(&value),
        )
        .await
        .map_err(|e| PurgeError::Kafka(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use funnelhub_schemas::identity::sha256_hex;

    #[test]
    fn identifiers_hash_as_the_edge_hashes_them() {
        let rules = PhoneRules {
            default_calling_code: Some("55".into()),
            national_max_digits: 11,
        };
        assert_eq!(
            identifier_hash(IdentifierKind::Email, "  Ana@Example.COM ", &rules),
            Some(sha256_hex("ana@example.com"))
        );
        assert_eq!(
            identifier_hash(IdentifierKind::Phone, "(11) 98765-4321", &rules),
            Some(sha256_hex("5511987654321"))
        );
        assert_eq!(
            identifier_hash(IdentifierKind::ExternalId, "Cust-7", &rules),
            identifier_hash(IdentifierKind::ExternalId, "Cust-7", &PhoneRules::default())
        );
        assert_eq!(identifier_hash(IdentifierKind::Email, "   ", &rules), None);
    }
}

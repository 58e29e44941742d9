//! `POST /api/v1/privacy/purge`: erase one person of the key's tenant
//! ([`crate::privacy::purge`]). Body: exactly one of `{"email": …}`, `{"phone": …}`,
//! `{"external_id": …}`, in clear (hashed here as the edge hashes it, never stored or
//! logged). Answers 200 with the receipt once ClickHouse applied the deletes.

use axum::body::Bytes;
use axum::Json;
use funnelhub_schemas::privacy::IdentifierKind;
use serde::Deserialize;

use super::Reader;
use crate::privacy::{identifier_hash, purge, Purger, Receipt, SETTLE};
use crate::validate::phone_rules;
use funnelhub_runtime::api::parse_json;
use funnelhub_runtime::api::ApiError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeBody {
    email: Option<String>,
    phone: Option<String>,
    external_id: Option<String>,
}

impl std::fmt::Debug for PurgeBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PurgeBody(<redacted>)")
    }
}

pub async fn purge_route(reader: Reader, body: Bytes) -> Result<Json<Receipt>, ApiError> {
    reader.require(funnelhub_tenants::KeyScope::Admin)?;
    let body: PurgeBody = parse_json(&body)?;
    let given: Vec<(IdentifierKind, String)> = [
        (IdentifierKind::Email, body.email),
        (IdentifierKind::Phone, body.phone),
        (IdentifierKind::ExternalId, body.external_id),
    ]
    .into_iter()
    .filter_map(|(kind, value)| Some((kind, value?)))
    .collect();
    let [(kind, value)] = given.as_slice() else {
        return Err(ApiError::field(
            "email",
            "give exactly one of email, phone or external_id",
        ));
    };
    let hash = identifier_hash(*kind, value, &phone_rules(&reader.tenant))
        .ok_or_else(|| ApiError::field(kind.as_str(), "normalizes to nothing"))?;
    let api = reader.api();
    // Each purge issues ClickHouse mutations: a bounded number at once, whoever asks.
    let _slot = api.purges.take()?;
    let purger = Purger {
        clickhouse: api.client().await?,
        database: api.db(),
        producer: &api.producer,
        suppressions: &api.suppressions,
        settle: SETTLE,
        attachments: reader.setup_attachments(),
    };
    purge(&purger, &reader.tenant.id, *kind, &hash)
        .await
        .map(Json)
        .map_err(|e| api.unavailable(e))
}

//! A tenant to and from its control-topic record: settings in clear, secrets sealed.

use funnelhub_schemas::control::TenantRecord;
use serde::{Deserialize, Serialize};

use crate::config::{Secret, TenantConfig};
use crate::sealing::{Keyring, SealError};

/// The secrets of a tenant, in clear: only ever serialized to be sealed.
#[derive(Default, Serialize, Deserialize)]
#[serde(default)]
struct Secrets {
    hotmart_hottok: Option<String>,
    kiwify_token: Option<String>,
    stripe_signing_secrets: Vec<String>,
    onboard_secret: Option<String>,
    meta_access_token: Option<String>,
    api_keys: Vec<String>,
    setup_api_keys: Vec<String>,
    admin_api_keys: Vec<String>,
}

fn expose(secret: &Option<Secret>) -> Option<String> {
    secret.as_ref().map(|s| s.expose().to_owned())
}

fn exposed(secrets: &[Secret]) -> Vec<String> {
    secrets.iter().map(|s| s.expose().to_owned()).collect()
}

fn secret(value: Option<String>) -> Option<Secret> {
    value.as_deref().map(Secret::from)
}

/// Encrypt `tenant`'s secrets and build its record.
pub fn to_record(
    tenant: &TenantConfig,
    revision: i64,
    updated_by: &str,
    keys: &Keyring,
) -> Result<TenantRecord, SealError> {
    let secrets = Secrets {
        hotmart_hottok: expose(&tenant.hotmart_hottok),
        kiwify_token: expose(&tenant.kiwify_token),
        stripe_signing_secrets: exposed(&tenant.stripe_signing_secrets),
        onboard_secret: expose(&tenant.onboard_secret),
        meta_access_token: expose(&tenant.meta_access_token),
        api_keys: exposed(&tenant.api_keys),
        setup_api_keys: exposed(&tenant.setup_api_keys),
        admin_api_keys: exposed(&tenant.admin_api_keys),
    };
    let plaintext = serde_json::to_vec(&secrets).expect("strings serialize");
    Ok(TenantRecord {
        tenant_id: tenant.id.clone(),
        revision,
        updated_at: chrono::Utc::now().timestamp_millis(),
        updated_by: updated_by.to_owned(),
        allowed_origins: tenant.allowed_origins.clone(),
        consent_ads_default: tenant.consent_ads_default,
        consent_analytics_default: tenant.consent_analytics_default,
        phone_calling_code: tenant.phone_calling_code.clone(),
        meta_pixel_id: tenant.meta_pixel_id.clone(),
        meta_test_event_code: tenant.meta_test_event_code.clone(),
        retention_days: tenant.retention_days.map(|d| d as i32),
        meta_abandoned_checkout_event: tenant.meta_abandoned_checkout_event.clone(),
        secrets: keys.seal(&tenant.id, &plaintext)?,
    })
}

/// Open a record's secrets and rebuild the tenant.
pub fn from_record(record: &TenantRecord, keys: &Keyring) -> Result<TenantConfig, SealError> {
    let plaintext = keys.open(&record.tenant_id, &record.secrets)?;
    let secrets: Secrets = serde_json::from_slice(&plaintext).map_err(|_| SealError::Corrupt)?;
    let to_secrets =
        |values: Vec<String>| values.iter().map(|v| Secret::from(v.as_str())).collect();
    Ok(TenantConfig {
        id: record.tenant_id.clone(),
        allowed_origins: record.allowed_origins.clone(),
        consent_ads_default: record.consent_ads_default,
        consent_analytics_default: record.consent_analytics_default,
        phone_calling_code: record.phone_calling_code.clone(),
        hotmart_hottok: secret(secrets.hotmart_hottok),
        kiwify_token: secret(secrets.kiwify_token),
        stripe_signing_secrets: to_secrets(secrets.stripe_signing_secrets),
        onboard_secret: secret(secrets.onboard_secret),
        meta_pixel_id: record.meta_pixel_id.clone(),
        meta_access_token: secret(secrets.meta_access_token),
        meta_test_event_code: record.meta_test_event_code.clone(),
        meta_abandoned_checkout_event: record.meta_abandoned_checkout_event.clone(),
        api_keys: to_secrets(secrets.api_keys),
        setup_api_keys: to_secrets(secrets.setup_api_keys),
        admin_api_keys: to_secrets(secrets.admin_api_keys),
        retention_days: record.retention_days.and_then(|d| u32::try_from(d).ok()),
    })
}

/// A whole tenant with its secrets, sealed for `owner` (a setup session's rollback copy).
pub fn seal_tenant(
    tenant: &TenantConfig,
    owner: &str,
    keys: &Keyring,
) -> Result<funnelhub_schemas::control::Sealed, SealError> {
    let record = to_record(tenant, 0, "", keys)?;
    let json = serde_json::to_vec(&record).expect("records serialize");
    keys.seal(owner, &json)
}

/// What [`seal_tenant`] sealed.
pub fn open_tenant(
    sealed: &funnelhub_schemas::control::Sealed,
    owner: &str,
    keys: &Keyring,
) -> Result<TenantConfig, SealError> {
    let json = keys.open(owner, sealed)?;
    let record: TenantRecord = serde_json::from_slice(&json).map_err(|_| SealError::Corrupt)?;
    from_record(&record, keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_survives_its_record_and_its_secrets_are_not_in_it() {
        let keys = Keyring::parse(&Keyring::generate("k1")).expect("key");
        let mut tenant = TenantConfig::new("acme");
        tenant.meta_pixel_id = Some("1234".into());
        tenant.meta_access_token = Some(Secret::from("EAAB-super-secret-token"));
        tenant.stripe_signing_secrets = vec![Secret::from("whsec_one"), Secret::from("whsec_two")];
        tenant.api_keys = vec![Secret::from("acme-api-key")];
        tenant.retention_days = Some(90);
        let record = to_record(&tenant, 4, "test", &keys).expect("seals");
        let json = serde_json::to_string(&record).expect("json");
        for secret in ["EAAB-super-secret-token", "whsec_one", "acme-api-key"] {
            assert!(!json.contains(secret), "{secret} in {json}");
        }
        assert_eq!(record.meta_pixel_id.as_deref(), Some("1234"));
        assert_eq!(from_record(&record, &keys).expect("opens"), tenant);
        let sealed = seal_tenant(&tenant, "setup-1", &keys).expect("seals");
        assert_eq!(
            open_tenant(&sealed, "setup-1", &keys).expect("opens"),
            tenant
        );
        assert!(open_tenant(&sealed, "setup-2", &keys).is_err());
    }
}

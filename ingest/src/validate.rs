//! Field validation shared by every endpoint: each failure names its field.

use funnelhub_schemas::common::minor_unit_digits;
use funnelhub_schemas::identity::PhoneRules;
use url::Url;

use crate::config::TenantConfig;
use funnelhub_runtime::api::ApiError;

/// A trimmed text field: empty → `None`, longer than `max` characters → error.
pub fn text(field: &str, value: Option<String>, max: usize) -> Result<Option<String>, ApiError> {
    match value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) {
        Some(v) => bounded(field, v, max).map(Some),
        None => Ok(None),
    }
}

/// `value` if at most `max` characters.
pub fn bounded(field: &str, value: String, max: usize) -> Result<String, ApiError> {
    if value.chars().count() > max {
        Err(ApiError::field(
            field,
            format!("longer than {max} characters"),
        ))
    } else {
        Ok(value)
    }
}

/// An absolute http(s) URL.
pub fn url_field(field: &str, value: Option<String>) -> Result<Option<Url>, ApiError> {
    let Some(value) = text(field, value, 2048)? else {
        return Ok(None);
    };
    match Url::parse(&value) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
            Ok(Some(url))
        }
        _ => Err(ApiError::field(field, "must be an absolute http(s) URL")),
    }
}

/// ISO 4217 code, upper case.
pub fn currency(field: &str, value: Option<String>) -> Result<Option<String>, ApiError> {
    match text(field, value, 3)? {
        Some(c) if c.len() == 3 && c.bytes().all(|b| b.is_ascii_alphabetic()) => {
            Ok(Some(c.to_ascii_uppercase()))
        }
        Some(_) => Err(ApiError::field(
            field,
            "must be an ISO 4217 code such as BRL",
        )),
        None => Ok(None),
    }
}

/// How to complete this tenant's phone numbers.
pub fn phone_rules(tenant: &TenantConfig) -> PhoneRules {
    PhoneRules {
        default_calling_code: tenant.phone_calling_code.clone(),
        national_max_digits: 11,
    }
}

/// An amount in major units (197.9 BRL) as minor units (19790).
pub fn major_to_minor(field: &str, amount: f64, currency: &str) -> Result<i64, ApiError> {
    let minor = (amount * 10f64.powi(minor_unit_digits(currency) as i32)).round();
    if amount.is_finite() && amount >= 0.0 && minor < 1e15 {
        Ok(minor as i64)
    } else {
        Err(ApiError::field(field, "must be a non-negative amount"))
    }
}

/// First and last name from a full name ("Ana Maria Souza" → "Ana", "Souza").
pub fn split_name(full: Option<&str>) -> (Option<String>, Option<String>) {
    let parts: Vec<&str> = full.unwrap_or_default().split_whitespace().collect();
    match parts.as_slice() {
        [] => (None, None),
        [only] => (Some((*only).to_owned()), None),
        [first, .., last] => (Some((*first).to_owned()), Some((*last).to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_and_names() {
        assert_eq!(major_to_minor("v", 197.9, "BRL").expect("ok"), 19_790);
        assert_eq!(major_to_minor("v", 0.1 + 0.2, "USD").expect("ok"), 30);
        assert_eq!(major_to_minor("v", 500.0, "JPY").expect("ok"), 500);
        assert!(major_to_minor("v", -1.0, "BRL").is_err());
        assert_eq!(
            split_name(Some("Ana Maria Souza")),
            (Some("Ana".into()), Some("Souza".into()))
        );
        assert_eq!(split_name(Some("  ")), (None, None));
    }
}

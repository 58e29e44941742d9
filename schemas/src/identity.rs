//! Meta's customer-information rules: normalize, then SHA-256 as lowercase hex.
//!
//! One implementation for everything that hashes a person's data (the edge, the privacy
//! purge that must find the same hashes). Values that already look like a SHA-256 hex
//! digest are kept as they are (as Meta's SDKs do), lowercased. A value that normalizes to
//! nothing is dropped (`None`), never hashed as an empty string.

use sha2::{Digest, Sha256};

use crate::common::HashedIdentity;

/// Raw personal data as a source sent it (never stored, never logged).
#[derive(Default, Clone, PartialEq, Eq)]
pub struct RawIdentity {
    pub email: Option<String>,
    pub phone: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub zip: Option<String>,
    pub country: Option<String>,
    pub gender: Option<String>,
    pub birth_date: Option<String>,
    pub external_id: Option<String>,
}

impl std::fmt::Debug for RawIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RawIdentity(<redacted>)")
    }
}

/// How to complete phone numbers given without a country calling code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PhoneRules {
    /// Calling code prepended to numbers of at most `national_max_digits` digits
    /// (Brazil: `55`, national numbers are 10-11 digits with the area code).
    pub default_calling_code: Option<String>,
    pub national_max_digits: usize,
}

impl RawIdentity {
    /// Normalize and hash every present field.
    pub fn hash(&self, phone_rules: &PhoneRules) -> HashedIdentity {
        let h = |value: &Option<String>, normalize: fn(&str) -> Option<String>| {
            value.as_deref().and_then(|v| hash_normalized(v, normalize))
        };
        HashedIdentity {
            email_hash: h(&self.email, normalize_email),
            phone_hash: self
                .phone
                .as_deref()
                .and_then(|p| hash_normalized(p, |v| normalize_phone(v, phone_rules))),
            first_name_hash: h(&self.first_name, normalize_name),
            last_name_hash: h(&self.last_name, normalize_name),
            city_hash: h(&self.city, normalize_city),
            state_hash: h(&self.state, normalize_city),
            zip_hash: h(&self.zip, normalize_zip),
            country_hash: h(&self.country, normalize_country),
            gender_hash: h(&self.gender, normalize_gender),
            birth_date_hash: h(&self.birth_date, normalize_birth_date),
            external_id_hash: h(&self.external_id, normalize_external_id),
        }
    }
}

/// SHA-256 of a normalized value, lowercase hex.
pub fn sha256_hex(normalized: &str) -> String {
    hex::encode(Sha256::digest(normalized.as_bytes()))
}

fn is_sha256_hex(value: &str) -> bool {
    value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit())
}

fn hash_normalized(value: &str, normalize: impl Fn(&str) -> Option<String>) -> Option<String> {
    let trimmed = value.trim();
    if is_sha256_hex(trimmed) {
        return Some(trimmed.to_ascii_lowercase());
    }
    normalize(trimmed).map(|n| sha256_hex(&n))
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// `em`: trim, lowercase.
pub fn normalize_email(value: &str) -> Option<String> {
    let email = value.trim().to_lowercase();
    email.contains('@').then_some(email)
}

/// `ph`: digits only, no leading zeros, with the country calling code.
pub fn normalize_phone(value: &str, rules: &PhoneRules) -> Option<String> {
    // A number written with a leading `+` carries its country code already.
    let international = value.trim_start().starts_with('+');
    let digits: String = value.chars().filter(char::is_ascii_digit).collect();
    let digits = digits.trim_start_matches('0').to_owned();
    match &rules.default_calling_code {
        Some(code)
            if !international
                && !digits.is_empty()
                && digits.len() <= rules.national_max_digits =>
        {
            Some(format!("{code}{digits}"))
        }
        _ => non_empty(digits),
    }
}

/// `fn`, `ln`: lowercase, no punctuation; letters of any script kept (UTF-8).
pub fn normalize_name(value: &str) -> Option<String> {
    non_empty(
        value
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphabetic() || c.is_whitespace())
            .collect::<String>()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// `ct`, `st`: lowercase, no digits, spaces or punctuation.
pub fn normalize_city(value: &str) -> Option<String> {
    non_empty(
        value
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphabetic())
            .collect(),
    )
}

/// `zp`: lowercase, no spaces; the part before `-` (US ZIP+4 → 5 digits).
pub fn normalize_zip(value: &str) -> Option<String> {
    let zip: String = value
        .to_lowercase()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    non_empty(zip.split('-').next().unwrap_or_default().to_owned())
}

/// `country`: lowercase ISO 3166-1 alpha-2.
pub fn normalize_country(value: &str) -> Option<String> {
    let country: String = value
        .to_lowercase()
        .chars()
        .filter(char::is_ascii_alphabetic)
        .collect();
    (country.len() == 2).then_some(country)
}

/// `ge`: `f` or `m`.
pub fn normalize_gender(value: &str) -> Option<String> {
    match value.trim().to_lowercase().chars().next() {
        Some(c @ ('f' | 'm')) => Some(c.to_string()),
        _ => None,
    }
}

/// `db`: `YYYYMMDD` (accepts `YYYY-MM-DD`, `YYYY/MM/DD` or digits).
pub fn normalize_birth_date(value: &str) -> Option<String> {
    let digits: String = value.chars().filter(char::is_ascii_digit).collect();
    (digits.len() == 8).then_some(digits)
}

/// `external_id`: trimmed; hashed like the browser side should.
pub fn normalize_external_id(value: &str) -> Option<String> {
    non_empty(value.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vectors the browser tracker's test checks too (`web/tracker`), so the two
    /// hash byte for byte alike.
    #[test]
    fn shared_vectors_hash_as_the_browser_does() {
        let file: serde_json::Value =
            serde_json::from_str(include_str!("../testdata/identity-vectors.json"))
                .expect("vectors parse");
        let vectors = file["vectors"].as_array().expect("vectors");
        assert!(vectors.len() >= 10);
        for v in vectors {
            let value = v["value"].as_str().map(str::to_owned);
            let rules = PhoneRules {
                default_calling_code: v["calling_code"].as_str().map(str::to_owned),
                national_max_digits: 11,
            };
            let raw = match v["field"].as_str() {
                Some("email") => RawIdentity {
                    email: value,
                    ..RawIdentity::default()
                },
                Some("phone") => RawIdentity {
                    phone: value,
                    ..RawIdentity::default()
                },
                Some("external_id") => RawIdentity {
                    external_id: value,
                    ..RawIdentity::default()
                },
                other => panic!("unknown field {other:?}"),
            };
            let hashed = raw.hash(&rules);
            let got = hashed
                .email_hash
                .or(hashed.phone_hash)
                .or(hashed.external_id_hash);
            assert_eq!(got.as_deref(), v["sha256"].as_str(), "{v}");
        }
    }

    // Test vectors from Meta's customer-information-parameters documentation.
    #[test]
    fn meta_documented_vectors() {
        let none = PhoneRules::default();
        let id = RawIdentity {
            email: Some("  John_Smith@Gmail.com ".into()),
            phone: Some("+1 (650) 555-1212".into()),
            first_name: Some("Mary".into()),
            ..RawIdentity::default()
        }
        .hash(&none);
        assert_eq!(
            id.email_hash.as_deref(),
            Some("62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f")
        );
        assert_eq!(
            id.phone_hash.as_deref(),
            Some("e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176")
        );
        assert_eq!(
            id.first_name_hash.as_deref(),
            Some("6915771be1c5aa0c886870b6951b03d7eafc121fea0e80a5ea83beb7c449f4ec")
        );
    }

    #[test]
    fn normalization_rules() {
        let br = PhoneRules {
            default_calling_code: Some("55".into()),
            national_max_digits: 11,
        };
        assert_eq!(
            normalize_phone("(11) 98765-4321", &br).as_deref(),
            Some("5511987654321")
        );
        assert_eq!(
            normalize_phone("+55 11 98765-4321", &br).as_deref(),
            Some("5511987654321")
        );
        assert_eq!(
            normalize_phone("0055 11 98765-4321", &br).as_deref(),
            Some("5511987654321")
        );
        // A leading + carries the country code: a US number of a Brazilian tenant's buyer
        // is hashed as Meta's SDK hashes it, never with 55 in front.
        assert_eq!(
            normalize_phone("+1 650-555-1212", &br).as_deref(),
            Some("16505551212")
        );
        assert_eq!(normalize_name("Valéry-Ann!").as_deref(), Some("valéryann"));
        assert_eq!(normalize_city("São Paulo 01").as_deref(), Some("sãopaulo"));
        assert_eq!(normalize_zip("94035-1234").as_deref(), Some("94035"));
        assert_eq!(normalize_zip("01310 100").as_deref(), Some("01310100"));
        assert_eq!(normalize_country(" BR ").as_deref(), Some("br"));
        assert_eq!(normalize_country("Brazil"), None);
        assert_eq!(normalize_gender("Female").as_deref(), Some("f"));
        assert_eq!(
            normalize_birth_date("1990-02-28").as_deref(),
            Some("19900228")
        );
        assert_eq!(normalize_email("not-an-email"), None);
        assert_eq!(normalize_name("  !!  "), None);
    }

    #[test]
    fn hashes_are_kept_and_empty_values_dropped() {
        let digest = "62A14E44F765419D10FEA99367361A727C12365E2520F32218D505ED9AA0F62F";
        let id = RawIdentity {
            email: Some(digest.into()),
            last_name: Some("   ".into()),
            ..RawIdentity::default()
        }
        .hash(&PhoneRules::default());
        assert_eq!(id.email_hash, Some(digest.to_lowercase()));
        assert_eq!(id.last_name_hash, None);
        assert_eq!(
            format!(
                "{:?}",
                RawIdentity {
                    email: Some("a@b.c".into()),
                    ..RawIdentity::default()
                }
            ),
            "RawIdentity(<redacted>)"
        );
    }
}

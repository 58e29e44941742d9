//! Envelope encryption of secrets at rest ([`Sealed`]).
//!
//! Each sealed value gets a fresh 256-bit data key; the data key encrypts the plaintext
//! (AES-256-GCM, the owner's id as associated data, so a ciphertext cannot be moved to
//! another tenant or session) and is itself encrypted ("wrapped") by a key-encryption key
//! (KEK) from the environment. The record stores the KEK's id, never the KEK.
//!
//! `FUNNELHUB_TENANT_KEYS="k2:<base64 32 bytes>,k1:<base64 32 bytes>"`: every key the
//! services can open with; the first one seals. Rotation without downtime: put the new key
//! first (keep the old one) on every service, run `funnelhub tenants rotate-key` (re-wraps
//! every data key with the new KEK: the ciphertexts do not change), then drop the old key.

use std::collections::HashMap;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use funnelhub_schemas::control::Sealed;

/// The environment variable holding the key-encryption keys.
pub const KEYS_ENV: &str = "FUNNELHUB_TENANT_KEYS";
const NONCE_LEN: usize = 12;

/// Why sealing or opening failed. Never carries key material or plaintext.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// No key to seal with.
    #[error("no key-encryption key: set {KEYS_ENV} (`funnelhub tenants new-key` makes one)")]
    NoKey,
    /// The record was sealed with a key this process does not have.
    #[error("sealed with key {0:?}, which {KEYS_ENV} does not hold")]
    UnknownKey(String),
    /// `FUNNELHUB_TENANT_KEYS` is malformed.
    #[error("{KEYS_ENV}: {0}")]
    BadKeys(String),
    /// Authentication failed: wrong key, wrong owner, or tampered bytes.
    #[error("sealed value does not open (wrong key, wrong owner or tampered)")]
    Corrupt,
}

/// The key-encryption keys this process holds; the first seals.
#[derive(Clone, Default)]
pub struct Keyring {
    active: Option<String>,
    keys: HashMap<String, Aes256Gcm>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut ids: Vec<&String> = self.keys.keys().collect();
        ids.sort();
        f.debug_struct("Keyring")
            .field("active", &self.active)
            .field("ids", &ids)
            .finish()
    }
}

impl Keyring {
    /// Parse `id:base64,id:base64` (the first key seals). Empty: no key.
    pub fn parse(spec: &str) -> Result<Keyring, SealError> {
        let mut ring = Keyring::default();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (id, key) = entry
                .split_once(':')
                .ok_or_else(|| SealError::BadKeys("each key is `id:base64`".into()))?;
            let bytes = B64
                .decode(key.trim())
                .map_err(|_| SealError::BadKeys(format!("key {id:?} is not base64")))?;
            if bytes.len() != 32 {
                return Err(SealError::BadKeys(format!(
                    "key {id:?} has {} bytes, 32 needed",
                    bytes.len()
                )));
            }
            let id = id.trim().to_owned();
            ring.active.get_or_insert_with(|| id.clone());
            let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&bytes));
            ring.keys.insert(id, cipher);
        }
        Ok(ring)
    }

    /// The keys in [`KEYS_ENV`] (none when unset).
    pub fn from_env() -> Result<Keyring, SealError> {
        Keyring::parse(&std::env::var(KEYS_ENV).unwrap_or_default())
    }

    /// A new random key as `id:base64`, for [`KEYS_ENV`].
    pub fn generate(id: &str) -> String {
        format!("{id}:{}", B64.encode(Aes256Gcm::generate_key(OsRng)))
    }

    /// The id of the key that seals, if any.
    pub fn active(&self) -> Option<&str> {
        self.active.as_deref()
    }

    fn kek(&self, id: &str) -> Result<&Aes256Gcm, SealError> {
        self.keys
            .get(id)
            .ok_or_else(|| SealError::UnknownKey(id.to_owned()))
    }

    /// Encrypt `plaintext` for `owner` (a tenant or session id) under a new data key.
    pub fn seal(&self, owner: &str, plaintext: &[u8]) -> Result<Sealed, SealError> {
        let key_id = self.active.clone().ok_or(SealError::NoKey)?;
        let data_key = Aes256Gcm::generate_key(OsRng);
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ciphertext = Aes256Gcm::new(&data_key)
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: owner.as_bytes(),
                },
            )
            .map_err(|_| SealError::Corrupt)?;
        Ok(Sealed {
            wrapped_key: self.wrap(&key_id, data_key.as_slice())?,
            key_id,
            nonce: B64.encode(nonce),
            ciphertext: B64.encode(ciphertext),
        })
    }

    /// Decrypt what [`Keyring::seal`] sealed for `owner`.
    pub fn open(&self, owner: &str, sealed: &Sealed) -> Result<Vec<u8>, SealError> {
        let data_key = self.unwrap(sealed)?;
        let nonce = B64.decode(&sealed.nonce).map_err(|_| SealError::Corrupt)?;
        let ciphertext = B64
            .decode(&sealed.ciphertext)
            .map_err(|_| SealError::Corrupt)?;
        if nonce.len() != NONCE_LEN {
            return Err(SealError::Corrupt);
        }
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&data_key))
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad: owner.as_bytes(),
                },
            )
            .map_err(|_| SealError::Corrupt)
    }

    /// The same value with its data key wrapped by the active key (key rotation: the
    /// ciphertext is unchanged). `None` when it already is.
    pub fn rewrap(&self, sealed: &Sealed) -> Result<Option<Sealed>, SealError> {
        let active = self.active.as_deref().ok_or(SealError::NoKey)?;
        if sealed.key_id == active {
            return Ok(None);
        }
        let data_key = self.unwrap(sealed)?;
        Ok(Some(Sealed {
            key_id: active.to_owned(),
            wrapped_key: self.wrap(active, &data_key)?,
            ..sealed.clone()
        }))
    }

    fn wrap(&self, key_id: &str, data_key: &[u8]) -> Result<String, SealError> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let wrapped = self
            .kek(key_id)?
            .encrypt(
                &nonce,
                Payload {
                    msg: data_key,
                    aad: key_id.as_bytes(),
                },
            )
            .map_err(|_| SealError::Corrupt)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&wrapped);
        Ok(B64.encode(out))
    }

    fn unwrap(&self, sealed: &Sealed) -> Result<Vec<u8>, SealError> {
        let kek = self.kek(&sealed.key_id)?;
        let bytes = B64
            .decode(&sealed.wrapped_key)
            .map_err(|_| SealError::Corrupt)?;
        if bytes.len() <= NONCE_LEN {
            return Err(SealError::Corrupt);
        }
        let (nonce, wrapped) = bytes.split_at(NONCE_LEN);
        let data_key = kek
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: wrapped,
                    aad: sealed.key_id.as_bytes(),
                },
            )
            .map_err(|_| SealError::Corrupt)?;
        if data_key.len() != 32 {
            return Err(SealError::Corrupt);
        }
        Ok(data_key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(ids: &[&str]) -> (Keyring, Vec<String>) {
        let specs: Vec<String> = ids.iter().map(|id| Keyring::generate(id)).collect();
        (Keyring::parse(&specs.join(",")).expect("parses"), specs)
    }

    #[test]
    fn sealed_values_open_only_for_their_owner_and_key() {
        let (keys, specs) = ring(&["k1"]);
        let sealed = keys.seal("acme", b"whsec_secret").expect("seals");
        assert_eq!(sealed.key_id, "k1");
        assert!(!sealed.ciphertext.contains("whsec"));
        assert_eq!(keys.open("acme", &sealed).expect("opens"), b"whsec_secret");
        assert!(matches!(
            keys.open("other", &sealed),
            Err(SealError::Corrupt)
        ));
        let mut tampered = sealed.clone();
        tampered.ciphertext = B64.encode(b"not the ciphertext at all");
        assert!(keys.open("acme", &tampered).is_err());
        let (stranger, _) = ring(&["k1"]);
        assert!(
            stranger.open("acme", &sealed).is_err(),
            "same id, other key"
        );
        let (missing, _) = ring(&["k9"]);
        assert!(matches!(
            missing.open("acme", &sealed),
            Err(SealError::UnknownKey(id)) if id == "k1"
        ));
        // The spec round-trips: the same key opens it again.
        assert!(Keyring::parse(&specs[0])
            .expect("parses")
            .open("acme", &sealed)
            .is_ok());
    }

    #[test]
    fn rotation_rewraps_the_data_key_and_keeps_the_ciphertext() {
        let old = Keyring::generate("k1");
        let new = Keyring::generate("k2");
        let before = Keyring::parse(&old).expect("parses");
        let sealed = before.seal("acme", b"token").expect("seals");
        let during = Keyring::parse(&format!("{new},{old}")).expect("parses");
        assert_eq!(during.active(), Some("k2"));
        let rotated = during.rewrap(&sealed).expect("rewraps").expect("changed");
        assert_eq!(rotated.key_id, "k2");
        assert_eq!(rotated.ciphertext, sealed.ciphertext);
        assert!(during.rewrap(&rotated).expect("ok").is_none(), "idempotent");
        let after = Keyring::parse(&new).expect("parses");
        assert_eq!(after.open("acme", &rotated).expect("opens"), b"token");
        assert!(after.open("acme", &sealed).is_err(), "old wrap needs k1");
    }

    #[test]
    fn bad_key_specs_are_refused_without_echoing_keys() {
        // Without a colon the entry may be a bare key: it is not echoed.
        let err = Keyring::parse("c2VjcmV0").expect_err("no id").to_string();
        assert!(
            err.contains("id:base64") && !err.contains("c2VjcmV0"),
            "{err}"
        );
        for spec in ["k1:!!!", "k1:c2hvcnQ="] {
            let err = Keyring::parse(spec).expect_err(spec).to_string();
            assert!(err.contains("k1"), "{err}");
            assert!(!err.contains("c2hvcnQ"), "{err}");
        }
        assert!(matches!(
            Keyring::default().seal("a", b"x"),
            Err(SealError::NoKey)
        ));
        let debug = format!("{:?}", ring(&["k1"]).0);
        assert!(debug.contains("k1") && !debug.contains('='), "{debug}");
    }
}

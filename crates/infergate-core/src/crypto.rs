//! Secrets: a redacted, constant-time-compared string; encryption at rest under the master
//! key (AES-256-GCM); password hashing (argon2id).

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, OsRng};
use aes_gcm::{AeadCore, Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// A secret value (AppSecret, AppCode, SK, password). `Debug` never shows it and equality
/// is constant-time.
#[derive(Clone, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The plain value, for the few places that must hand it out or sign with it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len() && bool::from(self.0.as_bytes().ct_eq(other.0.as_bytes()))
    }
}

impl Eq for Secret {}

/// Why a secret could not be decrypted or a key could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("master key must be 32 bytes given as 64 hex characters or base64")]
    BadMasterKey,
    #[error("ciphertext is malformed or was encrypted under another master key")]
    Decrypt,
    #[error("password hashing failed: {0}")]
    Hash(String),
}

/// The key that encrypts recoverable secrets at rest and derives the token-signing key.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(***)")
    }
}

const CIPHERTEXT_PREFIX: &str = "v1:";

impl MasterKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let key = Aes256Gcm::generate_key(OsRng);
        Self(key.into())
    }

    /// Parses 64 hex characters or standard base64 of 32 bytes (surrounding space ignored).
    pub fn parse(text: &str) -> Result<Self, CryptoError> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit()) {
            hex::decode(text).map_err(|_| CryptoError::BadMasterKey)?
        } else {
            B64.decode(text).map_err(|_| CryptoError::BadMasterKey)?
        };
        let key: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::BadMasterKey)?;
        Ok(Self(key))
    }

    /// The key as 64 hex characters, the form written to `master.key`.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Encrypts with a random 96-bit nonce; the result is `v1:` + base64(nonce ‖ ciphertext).
    pub fn encrypt(&self, plain: &Secret) -> String {
        let cipher = Aes256Gcm::new(&self.0.into());
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        // Encryption of an in-memory buffer cannot fail for AES-GCM below its size limits.
        let sealed = cipher
            .encrypt(&nonce, plain.expose().as_bytes())
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("{CIPHERTEXT_PREFIX}{}", B64.encode(out))
    }

    /// Reverses [`MasterKey::encrypt`].
    pub fn decrypt(&self, sealed: &str) -> Result<Secret, CryptoError> {
        let body = sealed
            .strip_prefix(CIPHERTEXT_PREFIX)
            .ok_or(CryptoError::Decrypt)?;
        let bytes = B64.decode(body).map_err(|_| CryptoError::Decrypt)?;
        if bytes.len() < 12 + 16 {
            return Err(CryptoError::Decrypt);
        }
        let (nonce, ciphertext) = bytes.split_at(12);
        let cipher = Aes256Gcm::new(&self.0.into());
        let plain = cipher
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .map_err(|_| CryptoError::Decrypt)?;
        String::from_utf8(plain)
            .map(Secret)
            .map_err(|_| CryptoError::Decrypt)
    }

    /// A subkey for one purpose, so the encryption key itself never signs anything.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

impl MasterKey {
    /// A keyed hash of `value` for equality lookups of sealed secrets (AppCodes): the same
    /// value always gives the same index, and the index reveals nothing without the key.
    pub fn blind_index(&self, purpose: &str, value: &str) -> String {
        let key = self.derive(purpose);
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(value.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// Hashes a password with argon2id and a random salt (PHC string).
pub fn hash_password(password: &Secret) -> Result<String, CryptoError> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::generate(&mut OsRng);
    argon2::Argon2::default()
        .hash_password(password.expose().as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| CryptoError::Hash(e.to_string()))
}

/// Checks a password against a PHC string; a malformed stored hash never verifies.
pub fn verify_password(password: &Secret, phc: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    argon2::Argon2::default()
        .verify_password(password.expose().as_bytes(), &parsed)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypt_round_trip_and_wrong_key() {
        let key = MasterKey::generate();
        let sealed = key.encrypt(&Secret::new("0f1e2d3c4b5a69788796a5b4c3d2e1f0"));
        assert!(!sealed.contains("0f1e2d3c"));
        assert_eq!(
            key.decrypt(&sealed).expect("decrypt").expose(),
            "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
        );
        assert!(MasterKey::generate().decrypt(&sealed).is_err());
        assert!(key.decrypt("v1:AAAA").is_err());
        let again = MasterKey::parse(&key.to_hex()).expect("parse");
        assert!(again.decrypt(&sealed).is_ok());
    }

    #[test]
    fn secret_debug_is_redacted() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(s, Secret::new("hunter2"));
        assert_ne!(s, Secret::new("hunter3"));
    }

    #[test]
    fn password_hashing() {
        let hash = hash_password(&Secret::new("pw-123456")).expect("hash");
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password(&Secret::new("pw-123456"), &hash));
        assert!(!verify_password(&Secret::new("pw-1234567"), &hash));
        assert!(!verify_password(&Secret::new("x"), "not a hash"));
    }
}

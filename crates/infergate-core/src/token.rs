//! IAM tokens: self-contained, MAC-protected by a key derived from the master key.
//!
//! A token carries its user, scope and lifetime, so checking one needs no store read; the
//! caller still checks that the user exists and has not changed password since `issued_at`
//! (that is what kills a token early).

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::crypto::MasterKey;

/// Token lifetime: 24 hours (spec §6.1).
pub const TOKEN_LIFETIME_MS: i64 = 24 * 60 * 60 * 1000;

const TOKEN_PREFIX: &str = "igt1.";
const KEY_PURPOSE: &str = "infergate/iam-token/v1";

/// What a token is scoped to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "lowercase")]
pub enum Scope {
    Project(String),
    Domain(String),
    Unscoped,
}

/// The content of a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenClaims {
    #[serde(rename = "u")]
    pub user_id: String,
    #[serde(rename = "s")]
    pub scope: Scope,
    #[serde(rename = "i")]
    pub issued_at: i64,
    #[serde(rename = "e")]
    pub expires_at: i64,
    /// Random, so two tokens issued in the same millisecond differ.
    #[serde(rename = "n")]
    pub nonce: String,
}

/// Why a presented token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is malformed or its signature does not verify")]
    Invalid,
    #[error("token expired at {expires_at}")]
    Expired { expires_at: i64 },
}

/// Issues and checks tokens with one key.
#[derive(Clone)]
pub struct TokenCodec {
    key: [u8; 32],
}

impl std::fmt::Debug for TokenCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenCodec(***)")
    }
}

impl TokenCodec {
    pub fn new(master: &MasterKey) -> Self {
        Self {
            key: master.derive(KEY_PURPOSE),
        }
    }

    fn mac(&self, payload: &str) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(payload.as_bytes());
        mac
    }

    /// Issues a token for `user_id` at `now` (epoch ms).
    pub fn issue(&self, user_id: &str, scope: Scope, now: i64) -> (String, TokenClaims) {
        let claims = TokenClaims {
            user_id: user_id.to_owned(),
            scope,
            issued_at: now,
            expires_at: now + TOKEN_LIFETIME_MS,
            nonce: crate::ids::random_hex(8),
        };
        let json = serde_json::to_vec(&claims).unwrap_or_default();
        let payload = B64URL.encode(json);
        let tag = B64URL.encode(self.mac(&payload).finalize().into_bytes());
        (format!("{TOKEN_PREFIX}{payload}.{tag}"), claims)
    }

    /// Verifies the MAC and the expiry of a token at `now`.
    pub fn check(&self, token: &str, now: i64) -> Result<TokenClaims, TokenError> {
        let body = token
            .trim()
            .strip_prefix(TOKEN_PREFIX)
            .ok_or(TokenError::Invalid)?;
        let (payload, tag) = body.split_once('.').ok_or(TokenError::Invalid)?;
        let tag = B64URL.decode(tag).map_err(|_| TokenError::Invalid)?;
        self.mac(payload)
            .verify_slice(&tag)
            .map_err(|_| TokenError::Invalid)?;
        let json = B64URL.decode(payload).map_err(|_| TokenError::Invalid)?;
        let claims: TokenClaims = serde_json::from_slice(&json).map_err(|_| TokenError::Invalid)?;
        if now >= claims.expires_at {
            return Err(TokenError::Expired {
                expires_at: claims.expires_at,
            });
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_check_expire_tamper() {
        let codec = TokenCodec::new(&MasterKey::generate());
        let (token, claims) = codec.issue("u1", Scope::Project("p1".into()), 1_000);
        assert_eq!(codec.check(&token, 2_000).expect("valid"), claims);
        assert_eq!(
            codec.check(&token, 1_000 + TOKEN_LIFETIME_MS),
            Err(TokenError::Expired {
                expires_at: 1_000 + TOKEN_LIFETIME_MS
            })
        );
        let mut tampered = token.clone();
        tampered.insert(10, 'x');
        assert_eq!(codec.check(&tampered, 2_000), Err(TokenError::Invalid));
        let other = TokenCodec::new(&MasterKey::generate());
        assert_eq!(other.check(&token, 2_000), Err(TokenError::Invalid));
        assert_eq!(codec.check("garbage", 2_000), Err(TokenError::Invalid));
    }
}

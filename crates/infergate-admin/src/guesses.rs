//! Brakes on guessing credentials at the management plane: password and access-key
//! lockouts (kept in the store, so every node counts the same failures), a bounded number
//! of password hashes at once, and the same cost for a user that does not exist.

use std::sync::Arc;

use infergate_core::crypto::{hash_password, verify_password};
use infergate_core::lockout::{Failures, LockSubject, LockoutPolicy};
use infergate_core::model::User;
use infergate_core::Secret;
use infergate_store::{Store, StoreResult};
use tokio::sync::{OnceCell, Semaphore};

use crate::error::IamError;

/// The lockout policies and the password-hashing budget of one node.
pub struct Guesses {
    pub password: LockoutPolicy,
    pub access_key: LockoutPolicy,
    hashing: Arc<Semaphore>,
    /// A hash of a password nobody knows, verified in place of an unknown user's.
    dummy: OnceCell<String>,
}

/// The lockout subject every unknown or disabled user name counts against: its count
/// means nothing, its write makes such an attempt cost what a known user's does.
const UNKNOWN_USER: &str = "\u{1}unknown";

/// What a password check found, in the words every caller uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordCheck {
    Right,
    /// Wrong, unknown user, or locked: one answer for all three.
    Refused,
}

impl Guesses {
    pub fn new(password: LockoutPolicy, access_key: LockoutPolicy, max_hashes: usize) -> Self {
        Self {
            password,
            access_key,
            hashing: Arc::new(Semaphore::new(max_hashes.max(1))),
            dummy: OnceCell::new(),
        }
    }

    /// Runs one argon2 computation on a blocking thread, if a slot is free now; beyond the
    /// budget the caller is told to come back (429 with `Retry-After`).
    async fn hashing<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, IamError> {
        let permit = self
            .hashing
            .clone()
            .try_acquire_owned()
            .map_err(|_| IamError::Busy)?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await
        .map_err(|_| {
            tracing::error!("password hashing task failed");
            IamError::Internal
        })
    }

    /// Hashes a new password.
    pub async fn hash(&self, password: String) -> Result<String, IamError> {
        self.hashing(move || hash_password(&Secret::new(password)))
            .await?
            .map_err(|e| {
                tracing::error!(error = %e, "password hashing failed");
                IamError::Internal
            })
    }

    async fn dummy_hash(&self) -> Result<String, IamError> {
        self.dummy
            .get_or_try_init(|| async {
                let unknown = infergate_core::ids::random_hex(32);
                self.hash(unknown).await
            })
            .await
            .cloned()
    }

    /// Checks `password` for `user` (absent: no such user, or disabled) under the
    /// password lockout. Each attempt is counted as a failure before the hash is compared
    /// (one write on every path, so parallel guesses cannot pass the limit and no path is
    /// faster than another), and a right password takes the count back. A user locked
    /// before the attempt is refused whatever the password; every path costs one argon2
    /// verification.
    pub async fn check_password(
        &self,
        store: &dyn Store,
        user: Option<&User>,
        password: String,
        now: i64,
    ) -> Result<PasswordCheck, IamError> {
        let subject = LockSubject::Password(user.map_or(UNKNOWN_USER, |u| u.id.as_str()));
        let recorded = store.record_failure(subject, now, self.password).await?;
        let locked = recorded.before.locked(now);
        let hash = match user {
            Some(user) if !locked => user.password_hash.clone(),
            _ => self.dummy_hash().await?,
        };
        let right = self
            .hashing(move || verify_password(&Secret::new(password), &hash))
            .await?;
        let Some(user) = user.filter(|_| right && !locked) else {
            if locked {
                tracing::info!(
                    until = recorded.before.locked_until,
                    "password refused: the user is locked"
                );
            } else if recorded.locked_now(now) && user.is_some() {
                tracing::warn!(user_id = %subject.id(), until = recorded.after.locked_until, "user locked after consecutive password failures");
            }
            return Ok(PasswordCheck::Refused);
        };
        store
            .clear_failures(LockSubject::Password(&user.id), None)
            .await?;
        Ok(PasswordCheck::Right)
    }

    /// The failures recorded against an access key.
    pub async fn key_failures(&self, store: &dyn Store, access: &str) -> StoreResult<Failures> {
        store.failures(LockSubject::AccessKey(access)).await
    }

    /// Records the verdict on a signature made with a known key, whose failures read
    /// `before` (a success clears them, if there were any and no lock holds); returns
    /// whether the key was locked by this failure.
    pub async fn key_verdict(
        &self,
        store: &dyn Store,
        access: &str,
        before: Failures,
        verified: bool,
        now: i64,
    ) -> StoreResult<bool> {
        let subject = LockSubject::AccessKey(access);
        if verified {
            if before.any() {
                store.clear_failures(subject, Some(now)).await?;
            }
        } else if self.access_key.enabled() {
            let recorded = store.record_failure(subject, now, self.access_key).await?;
            if recorded.locked_now(now) {
                tracing::warn!(
                    access,
                    until = recorded.after.locked_until,
                    "access key locked after consecutive signature failures"
                );
                return Ok(true);
            }
        }
        Ok(false)
    }
}

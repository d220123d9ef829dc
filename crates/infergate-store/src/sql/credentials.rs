//! IAM access keys, revoked tokens and lockout counters.

use super::*;

#[async_trait]
impl CredentialStore for This {
    async fn create_credential(
        &self,
        credential: &Credential,
        max_per_user: u32,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query("SELECT COUNT(*) AS n FROM credentials WHERE user_id = $1")
            .bind(&credential.user_id)
            .fetch_one(&mut *tx)
            .await?;
        let held: i64 = row.try_get("n")?;
        if held >= i64::from(max_per_user) {
            return Err(StoreError::Quota(format!(
                "user already holds {held} access keys (limit {max_per_user})"
            )));
        }
        sqlx::query(
            "INSERT INTO credentials (access, user_id, secret_sealed, description, status, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&credential.access)
        .bind(&credential.user_id)
        .bind(&credential.secret_sealed)
        .bind(&credential.description)
        .bind(&credential.status)
        .bind(credential.created_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::from_sqlx(e, "access key already exists"))?;
        bump_revision(&mut tx, &[Changed::User(&credential.user_id)]).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn credential(&self, access: &str) -> StoreResult<Option<Credential>> {
        one_by(
            self.reader(),
            &format!("{CREDENTIALS} WHERE c.access = $1"),
            access,
            credential_from_row,
        )
        .await
    }

    async fn list_credentials(&self, user_id: &str) -> StoreResult<Vec<Credential>> {
        all_by(
            self.reader(),
            &format!("{CREDENTIALS} WHERE c.user_id = $1 ORDER BY c.created_at, c.access"),
            user_id,
            credential_from_row,
        )
        .await
    }

    async fn update_credential(
        &self,
        access: &str,
        status: Option<&str>,
        description: Option<&str>,
    ) -> StoreResult<Credential> {
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query(
            "UPDATE credentials SET status = COALESCE($2, status), description = COALESCE($3, description)
             WHERE access = $1",
        )
        .bind(access)
        .bind(status)
        .bind(description)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound("credential"));
        }
        let credential = one_by(
            &mut *tx,
            &format!("{CREDENTIALS} WHERE c.access = $1"),
            access,
            credential_from_row,
        )
        .await?
        .ok_or(StoreError::NotFound("credential"))?;
        // The gateway's and this plane's view of the key changes with the user's revision.
        bump_revision(&mut tx, &[Changed::User(&credential.user_id)]).await?;
        tx.commit().await?;
        Ok(credential)
    }

    async fn delete_credential(&self, access: &str) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let deleted = sqlx::query("DELETE FROM credentials WHERE access = $1 RETURNING user_id")
            .bind(access)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound("credential"))?;
        let user_id: String = deleted.try_get("user_id")?;
        sqlx::query("DELETE FROM lockouts WHERE kind = 'access_key' AND subject = $1")
            .bind(access)
            .execute(&mut *tx)
            .await?;
        bump_revision(&mut tx, &[Changed::User(&user_id)]).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn revoke_token(&self, token: &RevokedToken, now: i64) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        // Rows past their token's expiry are never needed again.
        sqlx::query("DELETE FROM revoked_tokens WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO revoked_tokens (token_id, user_id, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (token_id) DO NOTHING",
        )
        .bind(&token.token_id)
        .bind(&token.user_id)
        .bind(token.expires_at)
        .execute(&mut *tx)
        .await?;
        bump_revision(&mut tx, &[Changed::User(&token.user_id)]).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn token_revoked(&self, token_id: &str) -> StoreResult<bool> {
        Ok(one_by(
            self.reader(),
            "SELECT * FROM revoked_tokens WHERE token_id = $1",
            token_id,
            revoked_token_from_row,
        )
        .await?
        .is_some())
    }

    async fn failures(&self, subject: LockSubject<'_>) -> StoreResult<Failures> {
        let mut conn = self.reader().acquire().await?;
        failures_in(&mut conn, subject).await
    }

    async fn record_failure(
        &self,
        subject: LockSubject<'_>,
        now: i64,
        policy: LockoutPolicy,
    ) -> StoreResult<Recorded> {
        let mut tx = self.begin_write().await?;
        let before = failures_in(&mut tx, subject).await?;
        let after = before.after_failure(now, policy);
        // Written even when nothing changes (a locked subject): every failure costs the
        // same, so its time tells nothing of the subject.
        sqlx::query(
            "INSERT INTO lockouts (kind, subject, failures, last_failure_at, locked_until)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (kind, subject) DO UPDATE SET failures = $3, last_failure_at = $4,
             locked_until = $5",
        )
        .bind(subject.kind())
        .bind(subject.id())
        .bind(i64::from(after.count))
        .bind(after.last_at)
        .bind(after.locked_until)
        .execute(&mut *tx)
        .await?;
        // A new lock on a key reaches every gateway with its user's revision; counting
        // alone changes nothing they serve.
        if after.locked_until != before.locked_until {
            if let Some(user_id) = key_owner(&mut tx, subject).await? {
                bump_revision(&mut tx, &[Changed::User(&user_id)]).await?;
            }
        }
        tx.commit().await?;
        Ok(Recorded { before, after })
    }

    async fn clear_failures(
        &self,
        subject: LockSubject<'_>,
        keep_lock_at: Option<i64>,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let before = failures_in(&mut tx, subject).await?;
        let keeps = keep_lock_at.is_some_and(|now| before.locked(now));
        if !before.any() || keeps {
            return Ok(false);
        }
        sqlx::query("DELETE FROM lockouts WHERE kind = $1 AND subject = $2")
            .bind(subject.kind())
            .bind(subject.id())
            .execute(&mut *tx)
            .await?;
        if before.locked_until > 0 {
            if let Some(user_id) = key_owner(&mut tx, subject).await? {
                bump_revision(&mut tx, &[Changed::User(&user_id)]).await?;
            }
        }
        tx.commit().await?;
        Ok(true)
    }
}

pub(super) fn credential_from_row(row: &DbRow) -> StoreResult<Credential> {
    Ok(Credential {
        access: row.try_get("access")?,
        user_id: row.try_get("user_id")?,
        secret_sealed: row.try_get("secret_sealed")?,
        description: row.try_get("description")?,
        status: row.try_get("status")?,
        created_at: row.try_get("created_at")?,
        locked_until: row.try_get("locked_until")?,
    })
}

/// Credentials with the lock their failed signatures led to.
pub(super) const CREDENTIALS: &str =
    "SELECT c.*, COALESCE(l.locked_until, 0) AS locked_until FROM credentials c
     LEFT JOIN lockouts l ON l.kind = 'access_key' AND l.subject = c.access";

pub(super) fn failures_from_row(row: &DbRow) -> StoreResult<Failures> {
    let count: i64 = row.try_get("failures")?;
    Ok(Failures {
        count: u32::try_from(count).map_err(|e| corrupt("failures", e))?,
        last_at: row.try_get("last_failure_at")?,
        locked_until: row.try_get("locked_until")?,
    })
}

pub(super) async fn failures_in(
    conn: &mut DbConn,
    subject: LockSubject<'_>,
) -> StoreResult<Failures> {
    Ok(
        sqlx::query("SELECT * FROM lockouts WHERE kind = $1 AND subject = $2")
            .bind(subject.kind())
            .bind(subject.id())
            .fetch_optional(&mut *conn)
            .await?
            .as_ref()
            .map(failures_from_row)
            .transpose()?
            .unwrap_or_default(),
    )
}

/// The user whose access key `access` is, when a lock on it must reach the gateways.
pub(super) async fn key_owner(
    conn: &mut DbConn,
    subject: LockSubject<'_>,
) -> StoreResult<Option<String>> {
    let LockSubject::AccessKey(access) = subject else {
        return Ok(None);
    };
    Ok(
        sqlx::query("SELECT user_id FROM credentials WHERE access = $1")
            .bind(access)
            .fetch_optional(&mut *conn)
            .await?
            .map(|row| row.try_get("user_id"))
            .transpose()?,
    )
}

pub(super) fn revoked_token_from_row(row: &DbRow) -> StoreResult<RevokedToken> {
    Ok(RevokedToken {
        token_id: row.try_get("token_id")?,
        user_id: row.try_get("user_id")?,
        expires_at: row.try_get("expires_at")?,
    })
}

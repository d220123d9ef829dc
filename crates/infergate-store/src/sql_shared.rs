// The SQL shared by the SQLite and PostgreSQL backends, included by each backend module.
// Each includer defines `Db`, `DbRow`, `DbConn`, `ThisStore` (with `reader`, `begin()` and
// `begin_snapshot()`) and `after_bump()`; the statements use `$n` placeholders, which both
// databases accept, and only types both map the same way.

/// Moves the configuration revision on and records what changed at it, so other nodes can
/// apply the change without reloading everything.
async fn bump_revision(tx: &mut Transaction<'static, Db>, changed: &[(&str, &str)]) -> StoreResult<()> {
    let revision: i64 = sqlx::query(
        "UPDATE config_revision SET revision = revision + 1 WHERE id = 1 RETURNING revision",
    )
    .fetch_one(&mut **tx)
    .await?
    .try_get("revision")?;
    for (entity, id) in changed {
        sqlx::query("INSERT INTO config_changes (revision, entity, entity_id) VALUES ($1, $2, $3)")
            .bind(revision)
            .bind(*entity)
            .bind(*id)
            .execute(&mut **tx)
            .await?;
    }
    after_bump(tx, revision).await
}

fn corrupt(what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(format!("stored {what} is unreadable: {detail}"))
}

// === impl rows ===

fn domain_from_row(row: &DbRow) -> StoreResult<Domain> {
    Ok(Domain {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
    })
}

fn project_from_row(row: &DbRow) -> StoreResult<Project> {
    Ok(Project {
        id: row.try_get("id")?,
        domain_id: row.try_get("domain_id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        created_at: row.try_get("created_at")?,
    })
}

fn user_from_row(row: &DbRow) -> StoreResult<User> {
    Ok(User {
        id: row.try_get("id")?,
        domain_id: row.try_get("domain_id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        password_hash: row.try_get("password_hash")?,
        password_changed_at: row.try_get("password_changed_at")?,
        domain_admin: row.try_get("domain_admin")?,
        enabled: row.try_get("enabled")?,
        created_at: row.try_get("created_at")?,
    })
}

fn credential_from_row(row: &DbRow) -> StoreResult<Credential> {
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
const CREDENTIALS: &str = "SELECT c.*, COALESCE(l.locked_until, 0) AS locked_until FROM credentials c
     LEFT JOIN lockouts l ON l.kind = 'access_key' AND l.subject = c.access";

fn failures_from_row(row: &DbRow) -> StoreResult<Failures> {
    let count: i64 = row.try_get("failures")?;
    Ok(Failures {
        count: u32::try_from(count).map_err(|e| corrupt("failures", e))?,
        last_at: row.try_get("last_failure_at")?,
        locked_until: row.try_get("locked_until")?,
    })
}

async fn failures_in(
    conn: &mut DbConn,
    subject: LockSubject<'_>,
) -> StoreResult<Failures> {
    Ok(sqlx::query("SELECT * FROM lockouts WHERE kind = $1 AND subject = $2")
        .bind(subject.kind())
        .bind(subject.id())
        .fetch_optional(&mut *conn)
        .await?
        .as_ref()
        .map(failures_from_row)
        .transpose()?
        .unwrap_or_default())
}

/// The user whose access key `access` is, when a lock on it must reach the gateways.
async fn key_owner(conn: &mut DbConn, subject: LockSubject<'_>) -> StoreResult<Option<String>> {
    let LockSubject::AccessKey(access) = subject else {
        return Ok(None);
    };
    Ok(sqlx::query("SELECT user_id FROM credentials WHERE access = $1")
        .bind(access)
        .fetch_optional(&mut *conn)
        .await?
        .map(|row| row.try_get("user_id"))
        .transpose()?)
}

fn revoked_token_from_row(row: &DbRow) -> StoreResult<RevokedToken> {
    Ok(RevokedToken {
        token_id: row.try_get("token_id")?,
        user_id: row.try_get("user_id")?,
        expires_at: row.try_get("expires_at")?,
    })
}

fn service_from_row(row: &DbRow) -> StoreResult<Service> {
    let upstreams: String = row.try_get("upstreams")?;
    let timeout_ms: i64 = row.try_get("timeout_ms")?;
    Ok(Service {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        upstreams: serde_json::from_str(&upstreams).map_err(|e| corrupt("upstreams", e))?,
        timeout_ms: u64::try_from(timeout_ms).map_err(|e| corrupt("timeout_ms", e))?,
        owner: row.try_get("owner")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn api_from_row(row: &DbRow) -> StoreResult<Api> {
    let auth_type: String = row.try_get("auth_type")?;
    let api_method: String = row.try_get("api_method")?;
    Ok(Api {
        id: row.try_get("id")?,
        service_id: row.try_get("service_id")?,
        project_id: row.try_get("project_id")?,
        name: row.try_get("name")?,
        auth_type: AuthType::from_str(&auth_type).map_err(|_| corrupt("auth_type", &auth_type))?,
        support_app_code: row.try_get("support_app_code")?,
        api_path: row.try_get("api_path")?,
        api_method: ApiMethod::from_str(&api_method)
            .map_err(|_| corrupt("api_method", &api_method))?,
        remark: row.try_get("remark")?,
        owner: row.try_get("owner")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn upstreams_json(upstreams: &[String]) -> String {
    serde_json::to_string(upstreams).unwrap_or_else(|_| "[]".to_owned())
}

// === impl Store ===

#[async_trait]
impl Store for ThisStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn revision(&self) -> StoreResult<i64> {
        let row = sqlx::query("SELECT revision FROM config_revision WHERE id = 1")
            .fetch_one(&self.reader)
            .await?;
        Ok(row.try_get("revision")?)
    }

    async fn bootstrap(&self, plan: &Bootstrap) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let exists = sqlx::query("SELECT id FROM domains WHERE name = $1")
            .bind(&plan.domain.name)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_some() {
            return Ok(false);
        }
        sqlx::query("INSERT INTO domains (id, name) VALUES ($1, $2)")
            .bind(&plan.domain.id)
            .bind(&plan.domain.name)
            .execute(&mut *tx)
            .await?;
        insert_project(&mut tx, &plan.project).await?;
        insert_user(&mut tx, &plan.admin).await?;
        sqlx::query("INSERT INTO role_grants (project_id, user_id, role) VALUES ($1, $2, $3)")
            .bind(&plan.project.id)
            .bind(&plan.admin.id)
            .bind(Role::Admin.name())
            .execute(&mut *tx)
            .await?;
        bump_revision(&mut tx, &[("user", &plan.admin.id)]).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn domain_by_name(&self, name: &str) -> StoreResult<Option<Domain>> {
        one_by(&self.reader, "SELECT * FROM domains WHERE name = $1", name, domain_from_row).await
    }

    async fn domain(&self, id: &str) -> StoreResult<Option<Domain>> {
        one_by(&self.reader, "SELECT * FROM domains WHERE id = $1", id, domain_from_row).await
    }

    async fn create_project(&self, project: &Project) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        insert_project(&mut tx, project).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn project(&self, id: &str) -> StoreResult<Option<Project>> {
        one_by(&self.reader, "SELECT * FROM projects WHERE id = $1", id, project_from_row).await
    }

    async fn project_by_name(&self, domain_id: &str, name: &str) -> StoreResult<Option<Project>> {
        sqlx::query("SELECT * FROM projects WHERE domain_id = $1 AND name = $2")
            .bind(domain_id)
            .bind(name)
            .fetch_optional(&self.reader)
            .await?
            .as_ref()
            .map(project_from_row)
            .transpose()
    }

    async fn list_projects(&self, domain_id: &str) -> StoreResult<Vec<Project>> {
        all_by(&self.reader, "SELECT * FROM projects WHERE domain_id = $1 ORDER BY name", domain_id, project_from_row).await
    }

    async fn create_user(&self, user: &User) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        insert_user(&mut tx, user).await?;
        bump_revision(&mut tx, &[("user", &user.id)]).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn user(&self, id: &str) -> StoreResult<Option<User>> {
        one_by(&self.reader, "SELECT * FROM users WHERE id = $1", id, user_from_row).await
    }

    async fn user_by_name(&self, domain_id: &str, name: &str) -> StoreResult<Option<User>> {
        sqlx::query("SELECT * FROM users WHERE domain_id = $1 AND name = $2")
            .bind(domain_id)
            .bind(name)
            .fetch_optional(&self.reader)
            .await?
            .as_ref()
            .map(user_from_row)
            .transpose()
    }

    async fn list_users(&self, domain_id: &str) -> StoreResult<Vec<User>> {
        all_by(&self.reader, "SELECT * FROM users WHERE domain_id = $1 ORDER BY name", domain_id, user_from_row).await
    }

    async fn delete_user(&self, id: &str) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        for sql in [
            "DELETE FROM role_grants WHERE user_id = $1",
            "DELETE FROM lockouts WHERE kind = 'access_key'
             AND subject IN (SELECT access FROM credentials WHERE user_id = $1)",
            "DELETE FROM lockouts WHERE kind = 'password' AND subject = $1",
            "DELETE FROM credentials WHERE user_id = $1",
            "DELETE FROM revoked_tokens WHERE user_id = $1",
        ] {
            sqlx::query(sql).bind(id).execute(&mut *tx).await?;
        }
        let deleted = sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound("user"));
        }
        bump_revision(&mut tx, &[("user", id)]).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn update_user(
        &self,
        id: &str,
        enabled: Option<bool>,
        description: Option<&str>,
    ) -> StoreResult<User> {
        let mut tx = self.begin().await?;
        let updated = sqlx::query(
            "UPDATE users SET enabled = COALESCE($2, enabled), description = COALESCE($3, description)
             WHERE id = $1",
        )
        .bind(id)
        .bind(enabled)
        .bind(description)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound("user"));
        }
        if enabled == Some(true) {
            // Enabling a user unlocks it (Keystone's way to end a password lockout).
            sqlx::query("DELETE FROM lockouts WHERE kind = 'password' AND subject = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        let user = one_by(&mut *tx, "SELECT * FROM users WHERE id = $1", id, user_from_row)
            .await?
            .ok_or(StoreError::NotFound("user"))?;
        bump_revision(&mut tx, &[("user", id)]).await?;
        tx.commit().await?;
        Ok(user)
    }

    async fn set_password(&self, user_id: &str, hash: &str, changed_at: i64) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let updated = sqlx::query(
            "UPDATE users SET password_hash = $1, password_changed_at = $2 WHERE id = $3",
        )
        .bind(hash)
        .bind(changed_at)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound("user"));
        }
        bump_revision(&mut tx, &[("user", user_id)]).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn grant_role(&self, project_id: &str, user_id: &str, role: Role) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO role_grants (project_id, user_id, role) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
        )
        .bind(project_id)
        .bind(user_id)
        .bind(role.name())
        .execute(&mut *tx)
        .await?;
        bump_revision(&mut tx, &[("user", user_id)]).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn revoke_role(&self, project_id: &str, user_id: &str, role: Role) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let deleted = sqlx::query(
            "DELETE FROM role_grants WHERE project_id = $1 AND user_id = $2 AND role = $3",
        )
        .bind(project_id)
        .bind(user_id)
        .bind(role.name())
        .execute(&mut *tx)
        .await?;
        bump_revision(&mut tx, &[("user", user_id)]).await?;
        tx.commit().await?;
        Ok(deleted.rows_affected() > 0)
    }

    async fn roles(&self, project_id: &str, user_id: &str) -> StoreResult<Vec<Role>> {
        let rows = sqlx::query(
            "SELECT role FROM role_grants WHERE project_id = $1 AND user_id = $2 ORDER BY role",
        )
        .bind(project_id)
        .bind(user_id)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                let name: String = row.try_get("role")?;
                Role::from_str(&name).map_err(|_| corrupt("role", &name))
            })
            .collect()
    }

    async fn create_credential(
        &self,
        credential: &Credential,
        max_per_user: u32,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
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
        bump_revision(&mut tx, &[("user", &credential.user_id)]).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn credential(&self, access: &str) -> StoreResult<Option<Credential>> {
        one_by(&self.reader, &format!("{CREDENTIALS} WHERE c.access = $1"), access, credential_from_row).await
    }

    async fn revoke_token(&self, token: &RevokedToken, now: i64) -> StoreResult<()> {
        let mut tx = self.begin().await?;
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
        bump_revision(&mut tx, &[("user", &token.user_id)]).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn token_revoked(&self, token_id: &str) -> StoreResult<bool> {
        Ok(one_by(&self.reader, "SELECT * FROM revoked_tokens WHERE token_id = $1", token_id, revoked_token_from_row)
            .await?
            .is_some())
    }

    async fn failures(&self, subject: LockSubject<'_>) -> StoreResult<Failures> {
        let mut conn = self.reader.acquire().await?;
        failures_in(&mut conn, subject).await
    }

    async fn record_failure(
        &self,
        subject: LockSubject<'_>,
        now: i64,
        policy: LockoutPolicy,
    ) -> StoreResult<Failures> {
        let mut tx = self.begin().await?;
        let before = failures_in(&mut tx, subject).await?;
        let after = before.after_failure(now, policy);
        if after == before {
            return Ok(after);
        }
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
                bump_revision(&mut tx, &[("user", &user_id)]).await?;
            }
        }
        tx.commit().await?;
        Ok(after)
    }

    async fn clear_failures(&self, subject: LockSubject<'_>) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let before = failures_in(&mut tx, subject).await?;
        if !before.any() {
            return Ok(false);
        }
        sqlx::query("DELETE FROM lockouts WHERE kind = $1 AND subject = $2")
            .bind(subject.kind())
            .bind(subject.id())
            .execute(&mut *tx)
            .await?;
        if before.locked_until > 0 {
            if let Some(user_id) = key_owner(&mut tx, subject).await? {
                bump_revision(&mut tx, &[("user", &user_id)]).await?;
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn list_credentials(&self, user_id: &str) -> StoreResult<Vec<Credential>> {
        all_by(&self.reader, &format!("{CREDENTIALS} WHERE c.user_id = $1 ORDER BY c.created_at, c.access"), user_id, credential_from_row).await
    }

    async fn update_credential(
        &self,
        access: &str,
        status: Option<&str>,
        description: Option<&str>,
    ) -> StoreResult<Credential> {
        let mut tx = self.begin().await?;
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
        let credential = one_by(&mut *tx, &format!("{CREDENTIALS} WHERE c.access = $1"), access, credential_from_row)
            .await?
            .ok_or(StoreError::NotFound("credential"))?;
        // The gateway's and this plane's view of the key changes with the user's revision.
        bump_revision(&mut tx, &[("user", &credential.user_id)]).await?;
        tx.commit().await?;
        Ok(credential)
    }

    async fn delete_credential(&self, access: &str) -> StoreResult<()> {
        let mut tx = self.begin().await?;
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
        bump_revision(&mut tx, &[("user", &user_id)]).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn create_service(&self, service: &Service) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO services (id, project_id, name, description, upstreams, timeout_ms, owner,
                                   created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&service.id)
        .bind(&service.project_id)
        .bind(&service.name)
        .bind(&service.description)
        .bind(upstreams_json(&service.upstreams))
        .bind(service.timeout_ms as i64)
        .bind(&service.owner)
        .bind(service.created_at)
        .bind(service.updated_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            StoreError::from_sqlx(
                e,
                &format!(
                    "service_name {:?} is already used in this project",
                    service.name
                ),
            )
        })?;
        bump_revision(&mut tx, &[("service", &service.id)]).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn service(&self, id: &str) -> StoreResult<Option<Service>> {
        one_by(&self.reader, "SELECT * FROM services WHERE id = $1", id, service_from_row).await
    }

    async fn list_services(&self, project_id: &str) -> StoreResult<Vec<Service>> {
        all_by(&self.reader, "SELECT * FROM services WHERE project_id = $1 ORDER BY created_at, id", project_id, service_from_row).await
    }

    async fn update_service(&self, id: &str, update: &ServiceUpdate) -> StoreResult<Service> {
        let mut tx = self.begin().await?;
        let row = sqlx::query("SELECT * FROM services WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound("service"))?;
        let mut service = service_from_row(&row)?;
        if let Some(description) = &update.description {
            service.description = description.clone();
        }
        if let Some(upstreams) = &update.upstreams {
            service.upstreams = upstreams.clone();
        }
        if let Some(timeout_ms) = update.timeout_ms {
            service.timeout_ms = timeout_ms;
        }
        service.updated_at = update.updated_at;
        sqlx::query(
            "UPDATE services SET description = $1, upstreams = $2, timeout_ms = $3, updated_at = $4
             WHERE id = $5",
        )
        .bind(&service.description)
        .bind(upstreams_json(&service.upstreams))
        .bind(service.timeout_ms as i64)
        .bind(service.updated_at)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        bump_revision(&mut tx, &[("service", id)]).await?;
        tx.commit().await?;
        Ok(service)
    }

    async fn delete_service(&self, id: &str) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "DELETE FROM authorizations WHERE api_id IN (SELECT id FROM apis WHERE service_id = $1)",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM apis WHERE service_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let deleted = sqlx::query("DELETE FROM services WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound("service"));
        }
        bump_revision(&mut tx, &[("service", id)]).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn create_api(&self, api: &Api) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let service = sqlx::query("SELECT id FROM services WHERE id = $1")
            .bind(&api.service_id)
            .fetch_optional(&mut *tx)
            .await?;
        if service.is_none() {
            return Err(StoreError::NotFound("service"));
        }
        // The revision's row lock first: writers of APIs check ownership one at a time.
        bump_revision(&mut tx, &[("api", &api.id)]).await?;
        let others: Vec<(String, String)> =
            // Paths in a service namespace belong to their service, whoever registered them.
            sqlx::query("SELECT project_id, api_path FROM apis WHERE project_id <> $1 AND api_path NOT LIKE '/v1/infers/%'")
                .bind(&api.project_id)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|row| Ok((row.try_get("project_id")?, row.try_get("api_path")?)))
                .collect::<StoreResult<_>>()?;
        infergate_core::paths::check_ownership(
            (&api.project_id, &api.service_id),
            &api.api_path,
            others.iter().map(|(p, a)| (p.as_str(), a.as_str())),
        )
        .map_err(|conflict| StoreError::Conflict(conflict.to_string()))?;
        sqlx::query(
            "INSERT INTO apis (id, service_id, project_id, name, auth_type, support_app_code,
                               api_path, api_method, remark, owner, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&api.id)
        .bind(&api.service_id)
        .bind(&api.project_id)
        .bind(&api.name)
        .bind(api.auth_type.as_str())
        .bind(api.support_app_code)
        .bind(&api.api_path)
        .bind(api.api_method.as_str())
        .bind(&api.remark)
        .bind(&api.owner)
        .bind(api.created_at)
        .bind(api.updated_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            StoreError::from_sqlx(
                e,
                &format!(
                    "an API with api_path {:?} and auth_type {} already exists",
                    api.api_path, api.auth_type
                ),
            )
        })?;
        tx.commit().await?;
        Ok(())
    }

    async fn api(&self, id: &str) -> StoreResult<Option<Api>> {
        one_by(&self.reader, "SELECT * FROM apis WHERE id = $1", id, api_from_row).await
    }

    async fn list_apis(&self, service_id: &str) -> StoreResult<Vec<Api>> {
        all_by(&self.reader, "SELECT * FROM apis WHERE service_id = $1 ORDER BY created_at, id", service_id, api_from_row).await
    }

    async fn delete_api(&self, id: &str) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM authorizations WHERE api_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let deleted = sqlx::query("DELETE FROM apis WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound("api"));
        }
        bump_revision(&mut tx, &[("api", id)]).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn create_app(&self, app: &App, max_per_user: u32) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let row = sqlx::query("SELECT COUNT(*) AS n FROM apps WHERE owner = $1")
            .bind(&app.owner)
            .fetch_one(&mut *tx)
            .await?;
        let held: i64 = row.try_get("n")?;
        if held >= i64::from(max_per_user) {
            return Err(StoreError::Quota(format!(
                "the user already owns {held} apps (quota {max_per_user})"
            )));
        }
        sqlx::query(
            "INSERT INTO apps (id, project_id, name, remark, app_key, secret_sealed, app_type, owner,
                               created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&app.id)
        .bind(&app.project_id)
        .bind(&app.name)
        .bind(&app.remark)
        .bind(&app.app_key)
        .bind(&app.secret_sealed)
        .bind(&app.app_type)
        .bind(&app.owner)
        .bind(app.created_at)
        .bind(app.updated_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            StoreError::from_sqlx(e, &format!("app_name {:?} is already used in this project", app.name))
        })?;
        bump_revision(&mut tx, &[("app", &app.id)]).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn app(&self, id: &str) -> StoreResult<Option<App>> {
        let mut conn = self.reader.acquire().await?;
        Ok(fetch_apps(&mut conn, AppFilter::Id(id))
            .await?
            .into_iter()
            .next())
    }

    async fn app_by_name(&self, project_id: &str, name: &str) -> StoreResult<Option<App>> {
        let mut conn = self.reader.acquire().await?;
        Ok(fetch_apps(&mut conn, AppFilter::Name(project_id, name))
            .await?
            .into_iter()
            .next())
    }

    async fn list_apps(&self, project_id: &str) -> StoreResult<Vec<App>> {
        let mut conn = self.reader.acquire().await?;
        fetch_apps(&mut conn, AppFilter::Project(project_id)).await
    }

    async fn delete_app(&self, id: &str) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let row = sqlx::query("SELECT COUNT(*) AS n FROM authorizations WHERE app_id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        let bound: i64 = row.try_get("n")?;
        if bound > 0 {
            return Err(StoreError::Conflict(format!(
                "app is still bound to {bound} APIs; unauthorize them first"
            )));
        }
        sqlx::query("DELETE FROM app_codes WHERE app_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let deleted = sqlx::query("DELETE FROM apps WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound("app"));
        }
        bump_revision(&mut tx, &[("app", id)]).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_app_secret(
        &self,
        id: &str,
        secret_sealed: &str,
        updated_at: i64,
    ) -> StoreResult<App> {
        let mut tx = self.begin().await?;
        touch_app(&mut tx, id, updated_at).await?;
        sqlx::query("UPDATE apps SET secret_sealed = $1 WHERE id = $2")
            .bind(secret_sealed)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        bump_revision(&mut tx, &[("app", id)]).await?;
        let app = fetch_app(&mut tx, id).await?;
        tx.commit().await?;
        Ok(app)
    }

    async fn add_app_code(
        &self,
        app_id: &str,
        code: &AppCode,
        max_per_app: u32,
    ) -> StoreResult<App> {
        let mut tx = self.begin().await?;
        touch_app(&mut tx, app_id, code.created_at).await?;
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, COALESCE(MAX(position), -1) AS last FROM app_codes WHERE app_id = $1",
        )
        .bind(app_id)
        .fetch_one(&mut *tx)
        .await?;
        let held: i64 = row.try_get("n")?;
        let last: i64 = row.try_get("last")?;
        if held >= i64::from(max_per_app) {
            return Err(StoreError::Quota(format!(
                "the app already has {held} AppCodes (quota {max_per_app})"
            )));
        }
        sqlx::query(
            "INSERT INTO app_codes (app_id, position, code_sealed, code_index, created_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(app_id)
        .bind(last + 1)
        .bind(&code.sealed)
        .bind(&code.index)
        .bind(code.created_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::from_sqlx(e, "AppCode already exists"))?;
        bump_revision(&mut tx, &[("app", app_id)]).await?;
        let app = fetch_app(&mut tx, app_id).await?;
        tx.commit().await?;
        Ok(app)
    }

    async fn replace_app_code(
        &self,
        app_id: &str,
        old_index: &str,
        code: &AppCode,
    ) -> StoreResult<App> {
        let mut tx = self.begin().await?;
        touch_app(&mut tx, app_id, code.created_at).await?;
        let updated = sqlx::query(
            "UPDATE app_codes SET code_sealed = $1, code_index = $2, created_at = $3
             WHERE app_id = $4 AND code_index = $5",
        )
        .bind(&code.sealed)
        .bind(&code.index)
        .bind(code.created_at)
        .bind(app_id)
        .bind(old_index)
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::from_sqlx(e, "AppCode already exists"))?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound("AppCode"));
        }
        bump_revision(&mut tx, &[("app", app_id)]).await?;
        let app = fetch_app(&mut tx, app_id).await?;
        tx.commit().await?;
        Ok(app)
    }

    async fn delete_app_code(
        &self,
        app_id: &str,
        index: &str,
        updated_at: i64,
    ) -> StoreResult<App> {
        let mut tx = self.begin().await?;
        let deleted = sqlx::query("DELETE FROM app_codes WHERE app_id = $1 AND code_index = $2")
            .bind(app_id)
            .bind(index)
            .execute(&mut *tx)
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound("AppCode"));
        }
        touch_app(&mut tx, app_id, updated_at).await?;
        bump_revision(&mut tx, &[("app", app_id)]).await?;
        let app = fetch_app(&mut tx, app_id).await?;
        tx.commit().await?;
        Ok(app)
    }

    async fn authorize(
        &self,
        api_id: &str,
        grants: &[Authorization],
    ) -> StoreResult<Vec<Option<String>>> {
        let mut tx = self.begin().await?;
        require_api(&mut tx, api_id).await?;
        let results = bind_apps(&mut tx, grants).await?;
        bump_revision(&mut tx, &[("api", api_id)]).await?;
        tx.commit().await?;
        Ok(results)
    }

    async fn unauthorize(&self, api_id: &str, app_ids: &[String]) -> StoreResult<Vec<bool>> {
        let mut tx = self.begin().await?;
        require_api(&mut tx, api_id).await?;
        let mut results = Vec::with_capacity(app_ids.len());
        for app_id in app_ids {
            let deleted =
                sqlx::query("DELETE FROM authorizations WHERE api_id = $1 AND app_id = $2")
                    .bind(api_id)
                    .bind(app_id)
                    .execute(&mut *tx)
                    .await?;
            results.push(deleted.rows_affected() > 0);
        }
        bump_revision(&mut tx, &[("api", api_id)]).await?;
        tx.commit().await?;
        Ok(results)
    }

    async fn replace_authorizations(
        &self,
        api_id: &str,
        grants: &[Authorization],
    ) -> StoreResult<Vec<Option<String>>> {
        let mut tx = self.begin().await?;
        require_api(&mut tx, api_id).await?;
        let rows = sqlx::query("SELECT app_id FROM authorizations WHERE api_id = $1")
            .bind(api_id)
            .fetch_all(&mut *tx)
            .await?;
        for row in rows {
            let app_id: String = row.try_get("app_id")?;
            if !grants.iter().any(|g| g.app_id == app_id) {
                sqlx::query("DELETE FROM authorizations WHERE api_id = $1 AND app_id = $2")
                    .bind(api_id)
                    .bind(&app_id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        let results = bind_apps(&mut tx, grants).await?;
        bump_revision(&mut tx, &[("api", api_id)]).await?;
        tx.commit().await?;
        Ok(results)
    }

    async fn authorizations_of_api(&self, api_id: &str) -> StoreResult<Vec<Authorization>> {
        all_by(&self.reader, "SELECT * FROM authorizations WHERE api_id = $1 ORDER BY created_at, auth_id", api_id, authorization_from_row).await
    }

    async fn changes_since(&self, since: i64) -> StoreResult<Option<ConfigDelta>> {
        const MAX_CHANGED: usize = 10_000;
        let mut tx = self.begin_snapshot().await?;
        let revision: i64 = sqlx::query("SELECT revision FROM config_revision WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?
            .try_get("revision")?;
        let mut delta = ConfigDelta {
            revision,
            ..ConfigDelta::default()
        };
        if revision <= since {
            return Ok((revision == since).then_some(delta));
        }
        let logged: i64 = sqlx::query(
            "SELECT COUNT(DISTINCT revision) AS n FROM config_changes WHERE revision > $1 AND revision <= $2",
        )
        .bind(since)
        .bind(revision)
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
        if logged != revision - since {
            return Ok(None);
        }
        let changed = sqlx::query(
            "SELECT DISTINCT entity, entity_id FROM config_changes WHERE revision > $1 AND revision <= $2",
        )
        .bind(since)
        .bind(revision)
        .fetch_all(&mut *tx)
        .await?;
        if changed.len() > MAX_CHANGED {
            return Ok(None);
        }
        for row in changed {
            let entity: String = row.try_get("entity")?;
            let id: String = row.try_get("entity_id")?;
            match entity.as_str() {
                "service" => {
                    let service = one_by(&mut *tx, "SELECT * FROM services WHERE id = $1", &id, service_from_row).await?;
                    let apis: Vec<Api> = all_by(&mut *tx, "SELECT * FROM apis WHERE service_id = $1", &id, api_from_row).await?;
                    for api in &apis {
                        let grants = authorizations_in(&mut tx, &api.id).await?;
                        delta.authorizations_of_apis.push((api.id.clone(), grants));
                    }
                    delta.services.push((id.clone(), service));
                    delta.apis_of_services.push((id, apis));
                }
                "api" => {
                    let api = one_by(&mut *tx, "SELECT * FROM apis WHERE id = $1", &id, api_from_row).await?;
                    let grants = authorizations_in(&mut tx, &id).await?;
                    delta.authorizations_of_apis.push((id.clone(), grants));
                    delta.apis.push((id, api));
                }
                "app" => {
                    let app = fetch_apps(&mut tx, AppFilter::Id(&id)).await?.into_iter().next();
                    delta.apps.push((id, app));
                }
                "user" => {
                    let user = one_by(&mut *tx, "SELECT * FROM users WHERE id = $1", &id, user_from_row).await?;
                    let credentials = all_by(&mut *tx, &format!("{CREDENTIALS} WHERE c.user_id = $1"), &id, credential_from_row).await?;
                    let revoked = all_by(&mut *tx, "SELECT * FROM revoked_tokens WHERE user_id = $1", &id, revoked_token_from_row).await?;
                    delta.revoked_tokens_of_users.push((id.clone(), revoked));
                    let mut grants = Vec::new();
                    for g in sqlx::query("SELECT project_id, role FROM role_grants WHERE user_id = $1")
                        .bind(&id)
                        .fetch_all(&mut *tx)
                        .await?
                    {
                        let role: String = g.try_get("role")?;
                        grants.push((
                            g.try_get("project_id")?,
                            id.clone(),
                            Role::from_str(&role).map_err(|_| corrupt("role", &role))?,
                        ));
                    }
                    delta.users.push((id.clone(), user));
                    delta.credentials_of_users.push((id.clone(), credentials));
                    delta.grants_of_users.push((id, grants));
                }
                other => return Err(corrupt("change entity", other)),
            }
        }
        tx.commit().await?;
        Ok(Some(delta))
    }

    async fn load_config(&self) -> StoreResult<ConfigDump> {
        let mut tx = self.begin_snapshot().await?;
        let revision: i64 = sqlx::query("SELECT revision FROM config_revision WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?
            .try_get("revision")?;
        let services = sqlx::query("SELECT * FROM services")
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(service_from_row)
            .collect::<StoreResult<_>>()?;
        let apis = sqlx::query("SELECT * FROM apis")
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(api_from_row)
            .collect::<StoreResult<_>>()?;
        let authorizations = sqlx::query("SELECT * FROM authorizations")
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(authorization_from_row)
            .collect::<StoreResult<_>>()?;
        let users = sqlx::query("SELECT * FROM users")
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(user_from_row)
            .collect::<StoreResult<_>>()?;
        let credentials = sqlx::query(CREDENTIALS)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(credential_from_row)
            .collect::<StoreResult<_>>()?;
        let revoked_tokens = sqlx::query("SELECT * FROM revoked_tokens")
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(revoked_token_from_row)
            .collect::<StoreResult<_>>()?;
        let mut grants = Vec::new();
        for row in sqlx::query("SELECT project_id, user_id, role FROM role_grants")
            .fetch_all(&mut *tx)
            .await?
        {
            let role: String = row.try_get("role")?;
            grants.push((
                row.try_get("project_id")?,
                row.try_get("user_id")?,
                Role::from_str(&role).map_err(|_| corrupt("role", &role))?,
            ));
        }
        let apps = fetch_all_apps(&mut tx).await?;
        tx.commit().await?;
        Ok(ConfigDump {
            revision,
            services,
            apis,
            apps,
            authorizations,
            users,
            credentials,
            grants,
            revoked_tokens,
        })
    }

    async fn authorizations_of_app(&self, app_id: &str) -> StoreResult<Vec<Authorization>> {
        all_by(&self.reader, "SELECT * FROM authorizations WHERE app_id = $1 ORDER BY created_at, auth_id", app_id, authorization_from_row).await
    }
}

// === impl apps ===

/// Which apps [`fetch_apps`] loads.
enum AppFilter<'a> {
    All,
    Id(&'a str),
    Name(&'a str, &'a str),
    Project(&'a str),
}

const APP_COLUMNS: &str =
    "SELECT a.*, (SELECT COUNT(*) FROM authorizations z WHERE z.app_id = a.id)
     AS bounded_api_count FROM apps a";

/// Loads apps with their AppCodes and bound-API counts.
async fn fetch_apps(conn: &mut DbConn, filter: AppFilter<'_>) -> StoreResult<Vec<App>> {
    let (where_clause, binds): (&str, Vec<&str>) = match filter {
        AppFilter::All => ("1 = 1", vec![]),
        AppFilter::Id(id) => ("a.id = $1", vec![id]),
        AppFilter::Name(project, name) => {
            ("a.project_id = $1 AND a.name = $2", vec![project, name])
        }
        AppFilter::Project(project) => ("a.project_id = $1", vec![project]),
    };
    let sql = format!("{APP_COLUMNS} WHERE {where_clause} ORDER BY a.created_at, a.id");
    let mut query = sqlx::query(&sql);
    for bind in &binds {
        query = query.bind(*bind);
    }
    let rows = query.fetch_all(&mut *conn).await?;
    let mut apps = Vec::with_capacity(rows.len());
    for row in &rows {
        apps.push(App {
            id: row.try_get("id")?,
            project_id: row.try_get("project_id")?,
            name: row.try_get("name")?,
            remark: row.try_get("remark")?,
            app_key: row.try_get("app_key")?,
            secret_sealed: row.try_get("secret_sealed")?,
            app_type: row.try_get("app_type")?,
            owner: row.try_get("owner")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            codes: Vec::new(),
            bounded_api_count: row.try_get("bounded_api_count")?,
        });
    }
    if apps.is_empty() {
        return Ok(apps);
    }
    let code_sql = format!(
        "SELECT c.* FROM app_codes c WHERE c.app_id IN (SELECT a.id FROM apps a WHERE {where_clause})
         ORDER BY c.app_id, c.position"
    );
    let mut code_query = sqlx::query(&code_sql);
    for bind in &binds {
        code_query = code_query.bind(*bind);
    }
    for row in code_query.fetch_all(&mut *conn).await? {
        let app_id: String = row.try_get("app_id")?;
        if let Some(app) = apps.iter_mut().find(|a| a.id == app_id) {
            app.codes.push(AppCode {
                sealed: row.try_get("code_sealed")?,
                index: row.try_get("code_index")?,
                created_at: row.try_get("created_at")?,
            });
        }
    }
    Ok(apps)
}

async fn fetch_all_apps(conn: &mut DbConn) -> StoreResult<Vec<App>> {
    fetch_apps(conn, AppFilter::All).await
}

async fn fetch_app(conn: &mut DbConn, id: &str) -> StoreResult<App> {
    fetch_apps(conn, AppFilter::Id(id))
        .await?
        .into_iter()
        .next()
        .ok_or(StoreError::NotFound("app"))
}

async fn touch_app(
    tx: &mut Transaction<'static, Db>,
    app_id: &str,
    now: i64,
) -> StoreResult<()> {
    let updated = sqlx::query("UPDATE apps SET updated_at = $1 WHERE id = $2")
        .bind(now)
        .bind(app_id)
        .execute(&mut **tx)
        .await?;
    if updated.rows_affected() == 0 {
        return Err(StoreError::NotFound("app"));
    }
    Ok(())
}

fn authorization_from_row(row: &DbRow) -> StoreResult<Authorization> {
    Ok(Authorization {
        auth_id: row.try_get("auth_id")?,
        api_id: row.try_get("api_id")?,
        app_id: row.try_get("app_id")?,
        created_at: row.try_get("created_at")?,
    })
}

/// The row of `sql` (one `$1` parameter) for `id`, mapped.
async fn one_by<'e, T>(
    exec: impl sqlx::Executor<'e, Database = Db>,
    sql: &str,
    id: &str,
    map: fn(&DbRow) -> StoreResult<T>,
) -> StoreResult<Option<T>> {
    sqlx::query(sql)
        .bind(id)
        .fetch_optional(exec)
        .await?
        .as_ref()
        .map(map)
        .transpose()
}

/// The rows of `sql` (one `$1` parameter) for `id`, mapped.
async fn all_by<'e, T>(
    exec: impl sqlx::Executor<'e, Database = Db>,
    sql: &str,
    id: &str,
    map: fn(&DbRow) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    sqlx::query(sql)
        .bind(id)
        .fetch_all(exec)
        .await?
        .iter()
        .map(map)
        .collect()
}

async fn authorizations_in(tx: &mut Transaction<'static, Db>, api_id: &str) -> StoreResult<Vec<Authorization>> {
    all_by(&mut **tx, "SELECT * FROM authorizations WHERE api_id = $1", api_id, authorization_from_row).await
}

async fn require_api(tx: &mut Transaction<'static, Db>, api_id: &str) -> StoreResult<()> {
    let found = sqlx::query("SELECT id FROM apis WHERE id = $1")
        .bind(api_id)
        .fetch_optional(&mut **tx)
        .await?;
    found.map(|_| ()).ok_or(StoreError::NotFound("api"))
}

/// Inserts each grant unless bound already; returns the auth id in force per grant.
async fn bind_apps(
    tx: &mut Transaction<'static, Db>,
    grants: &[Authorization],
) -> StoreResult<Vec<Option<String>>> {
    let mut results = Vec::with_capacity(grants.len());
    for grant in grants {
        let app = sqlx::query("SELECT id FROM apps WHERE id = $1")
            .bind(&grant.app_id)
            .fetch_optional(&mut **tx)
            .await?;
        if app.is_none() {
            results.push(None);
            continue;
        }
        sqlx::query(
            "INSERT INTO authorizations (auth_id, api_id, app_id, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (api_id, app_id) DO NOTHING",
        )
        .bind(&grant.auth_id)
        .bind(&grant.api_id)
        .bind(&grant.app_id)
        .bind(grant.created_at)
        .execute(&mut **tx)
        .await?;
        let row =
            sqlx::query("SELECT auth_id FROM authorizations WHERE api_id = $1 AND app_id = $2")
                .bind(&grant.api_id)
                .bind(&grant.app_id)
                .fetch_one(&mut **tx)
                .await?;
        results.push(Some(row.try_get("auth_id")?));
    }
    Ok(results)
}

async fn insert_project(
    tx: &mut Transaction<'static, Db>,
    project: &Project,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO projects (id, domain_id, name, description, created_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&project.id)
    .bind(&project.domain_id)
    .bind(&project.name)
    .bind(&project.description)
    .bind(project.created_at)
    .execute(&mut **tx)
    .await
    .map_err(|e| {
        StoreError::from_sqlx(
            e,
            &format!("project name {:?} already exists", project.name),
        )
    })?;
    Ok(())
}

async fn insert_user(tx: &mut Transaction<'static, Db>, user: &User) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO users (id, domain_id, name, description, password_hash, password_changed_at,
                            domain_admin, enabled, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&user.id)
    .bind(&user.domain_id)
    .bind(&user.name)
    .bind(&user.description)
    .bind(&user.password_hash)
    .bind(user.password_changed_at)
    .bind(user.domain_admin)
    .bind(user.enabled)
    .bind(user.created_at)
    .execute(&mut **tx)
    .await
    .map_err(|e| StoreError::from_sqlx(e, &format!("user name {:?} already exists", user.name)))?;
    Ok(())
}

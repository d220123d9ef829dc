//! Domains, projects, users and role grants.

use super::*;

#[async_trait]
impl IdentityStore for This {
    async fn domain_by_name(&self, name: &str) -> StoreResult<Option<Domain>> {
        one_by(
            self.reader(),
            "SELECT * FROM domains WHERE name = $1",
            name,
            domain_from_row,
        )
        .await
    }

    async fn domain(&self, id: &str) -> StoreResult<Option<Domain>> {
        one_by(
            self.reader(),
            "SELECT * FROM domains WHERE id = $1",
            id,
            domain_from_row,
        )
        .await
    }

    async fn create_project(&self, project: &Project) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        insert_project(&mut tx, project).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn project(&self, id: &str) -> StoreResult<Option<Project>> {
        one_by(
            self.reader(),
            "SELECT * FROM projects WHERE id = $1",
            id,
            project_from_row,
        )
        .await
    }

    async fn project_by_name(&self, domain_id: &str, name: &str) -> StoreResult<Option<Project>> {
        sqlx::query("SELECT * FROM projects WHERE domain_id = $1 AND name = $2")
            .bind(domain_id)
            .bind(name)
            .fetch_optional(self.reader())
            .await?
            .as_ref()
            .map(project_from_row)
            .transpose()
    }

    async fn list_projects(&self, domain_id: &str) -> StoreResult<Vec<Project>> {
        all_by(
            self.reader(),
            "SELECT * FROM projects WHERE domain_id = $1 ORDER BY name",
            domain_id,
            project_from_row,
        )
        .await
    }

    async fn create_user(&self, user: &User) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        insert_user(&mut tx, user).await?;
        bump_revision(&mut tx, &[Changed::User(&user.id)]).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn user(&self, id: &str) -> StoreResult<Option<User>> {
        one_by(
            self.reader(),
            "SELECT * FROM users WHERE id = $1",
            id,
            user_from_row,
        )
        .await
    }

    async fn user_by_name(&self, domain_id: &str, name: &str) -> StoreResult<Option<User>> {
        sqlx::query("SELECT * FROM users WHERE domain_id = $1 AND name = $2")
            .bind(domain_id)
            .bind(name)
            .fetch_optional(self.reader())
            .await?
            .as_ref()
            .map(user_from_row)
            .transpose()
    }

    async fn list_users(&self, domain_id: &str) -> StoreResult<Vec<User>> {
        all_by(
            self.reader(),
            "SELECT * FROM users WHERE domain_id = $1 ORDER BY name",
            domain_id,
            user_from_row,
        )
        .await
    }

    async fn delete_user(&self, id: &str) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
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
        bump_revision(&mut tx, &[Changed::User(id)]).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn update_user(
        &self,
        id: &str,
        enabled: Option<bool>,
        description: Option<&str>,
    ) -> StoreResult<User> {
        let mut tx = self.begin_write().await?;
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
        let user = one_by(
            &mut *tx,
            "SELECT * FROM users WHERE id = $1",
            id,
            user_from_row,
        )
        .await?
        .ok_or(StoreError::NotFound("user"))?;
        bump_revision(&mut tx, &[Changed::User(id)]).await?;
        tx.commit().await?;
        Ok(user)
    }

    async fn set_password(&self, user_id: &str, hash: &str, changed_at: i64) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
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
        bump_revision(&mut tx, &[Changed::User(user_id)]).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn grant_role(&self, project_id: &str, user_id: &str, role: Role) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO role_grants (project_id, user_id, role) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
        )
        .bind(project_id)
        .bind(user_id)
        .bind(role.name())
        .execute(&mut *tx)
        .await?;
        bump_revision(&mut tx, &[Changed::User(user_id)]).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn revoke_role(&self, project_id: &str, user_id: &str, role: Role) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let deleted = sqlx::query(
            "DELETE FROM role_grants WHERE project_id = $1 AND user_id = $2 AND role = $3",
        )
        .bind(project_id)
        .bind(user_id)
        .bind(role.name())
        .execute(&mut *tx)
        .await?;
        bump_revision(&mut tx, &[Changed::User(user_id)]).await?;
        tx.commit().await?;
        Ok(deleted.rows_affected() > 0)
    }

    async fn roles(&self, project_id: &str, user_id: &str) -> StoreResult<Vec<Role>> {
        let rows = sqlx::query(
            "SELECT role FROM role_grants WHERE project_id = $1 AND user_id = $2 ORDER BY role",
        )
        .bind(project_id)
        .bind(user_id)
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|row| {
                let name: String = row.try_get("role")?;
                Role::from_str(&name).map_err(|_| corrupt("role", &name))
            })
            .collect()
    }
}

pub(super) fn domain_from_row(row: &DbRow) -> StoreResult<Domain> {
    Ok(Domain {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
    })
}

pub(super) fn project_from_row(row: &DbRow) -> StoreResult<Project> {
    Ok(Project {
        id: row.try_get("id")?,
        domain_id: row.try_get("domain_id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        created_at: row.try_get("created_at")?,
    })
}

pub(super) fn user_from_row(row: &DbRow) -> StoreResult<User> {
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

pub(super) async fn insert_project(
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

pub(super) async fn insert_user(tx: &mut Transaction<'static, Db>, user: &User) -> StoreResult<()> {
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

//! The configuration as a whole: readiness, its revision, the first start, and the reads the gateway snapshot is built from.

use super::*;

#[async_trait]
impl Store for This {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(self.reader()).await?;
        Ok(())
    }

    async fn revision(&self) -> StoreResult<i64> {
        let row = sqlx::query("SELECT revision FROM config_revision WHERE id = 1")
            .fetch_one(self.reader())
            .await?;
        Ok(row.try_get("revision")?)
    }

    async fn bootstrap(&self, plan: &Bootstrap) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
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
        bump_revision(&mut tx, &[Changed::User(&plan.admin.id)]).await?;
        tx.commit().await?;
        Ok(true)
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
        let throttles = all_rows(&mut tx, "SELECT * FROM throttles", throttle_from_row).await?;
        let throttle_bindings =
            all_rows(&mut tx, "SELECT * FROM throttle_bindings", binding_from_row).await?;
        let throttle_specials =
            all_rows(&mut tx, "SELECT * FROM throttle_specials", special_from_row).await?;
        tx.commit().await?;
        Ok(ConfigDump {
            throttles,
            throttle_bindings,
            throttle_specials,
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
            let logged: String = row.try_get("entity_id")?;
            let id = logged.clone();
            match Changed::parse(&entity, &logged)? {
                Changed::Service(_) => {
                    let service = one_by(
                        &mut *tx,
                        "SELECT * FROM services WHERE id = $1",
                        &id,
                        service_from_row,
                    )
                    .await?;
                    let apis: Vec<Api> = all_by(
                        &mut *tx,
                        "SELECT * FROM apis WHERE service_id = $1",
                        &id,
                        api_from_row,
                    )
                    .await?;
                    for api in &apis {
                        let grants = authorizations_in(&mut tx, &api.id).await?;
                        delta.authorizations_of_apis.push((api.id.clone(), grants));
                    }
                    delta.services.push((id.clone(), service));
                    delta.apis_of_services.push((id, apis));
                }
                Changed::Api(_) => {
                    let api = one_by(
                        &mut *tx,
                        "SELECT * FROM apis WHERE id = $1",
                        &id,
                        api_from_row,
                    )
                    .await?;
                    let grants = authorizations_in(&mut tx, &id).await?;
                    delta.authorizations_of_apis.push((id.clone(), grants));
                    delta.apis.push((id, api));
                }
                Changed::App(_) => {
                    let app = fetch_apps(&mut tx, AppFilter::Id(&id))
                        .await?
                        .into_iter()
                        .next();
                    delta.apps.push((id, app));
                }
                Changed::User(_) => {
                    let user = one_by(
                        &mut *tx,
                        "SELECT * FROM users WHERE id = $1",
                        &id,
                        user_from_row,
                    )
                    .await?;
                    let credentials = all_by(
                        &mut *tx,
                        &format!("{CREDENTIALS} WHERE c.user_id = $1"),
                        &id,
                        credential_from_row,
                    )
                    .await?;
                    let revoked = all_by(
                        &mut *tx,
                        "SELECT * FROM revoked_tokens WHERE user_id = $1",
                        &id,
                        revoked_token_from_row,
                    )
                    .await?;
                    delta.revoked_tokens_of_users.push((id.clone(), revoked));
                    let mut grants = Vec::new();
                    for g in
                        sqlx::query("SELECT project_id, role FROM role_grants WHERE user_id = $1")
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
                Changed::Throttle(_) => {
                    let throttle = one_by(
                        &mut *tx,
                        "SELECT * FROM throttles WHERE id = $1",
                        &id,
                        throttle_from_row,
                    )
                    .await?;
                    let bindings = all_by(
                        &mut *tx,
                        "SELECT * FROM throttle_bindings WHERE throttle_id = $1",
                        &id,
                        binding_from_row,
                    )
                    .await?;
                    let specials = all_by(
                        &mut *tx,
                        "SELECT * FROM throttle_specials WHERE throttle_id = $1",
                        &id,
                        special_from_row,
                    )
                    .await?;
                    delta.throttles.push((id.clone(), throttle));
                    delta.bindings_of_throttles.push((id.clone(), bindings));
                    delta.specials_of_throttles.push((id, specials));
                }
            }
        }
        tx.commit().await?;
        Ok(Some(delta))
    }
}

/// Every row of a parameterless query, mapped.
async fn all_rows<T>(
    tx: &mut Transaction<'static, Db>,
    sql: &str,
    map: fn(&DbRow) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    sqlx::query(sql)
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(map)
        .collect()
}

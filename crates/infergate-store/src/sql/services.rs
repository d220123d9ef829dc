//! Services and their APIs; an API's path is checked for ownership in the transaction that creates it.

use super::*;

#[async_trait]
impl ServiceStore for This {
    async fn create_service(&self, service: &Service) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO services (id, project_id, name, description, upstreams, timeout_ms, owner,
                                   created_at, updated_at, usage_accounting, load_balancing,
                                   tls_ca_pem, health_check, retry, upstream_weights)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
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
        .bind(service.usage_accounting)
        .bind(service.load_balancing.as_str())
        .bind(&service.tls_ca_pem)
        .bind(json_text(&service.health_check))
        .bind(json_text(&service.retry))
        .bind(weights_json(&service.upstream_weights))
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
        bump_revision(&mut tx, &[Changed::Service(&service.id)]).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn service(&self, id: &str) -> StoreResult<Option<Service>> {
        one_by(
            self.reader(),
            "SELECT * FROM services WHERE id = $1",
            id,
            service_from_row,
        )
        .await
    }

    async fn list_services(&self, project_id: &str) -> StoreResult<Vec<Service>> {
        all_by(
            self.reader(),
            "SELECT * FROM services WHERE project_id = $1 ORDER BY created_at, id",
            project_id,
            service_from_row,
        )
        .await
    }

    async fn update_service(&self, id: &str, update: &ServiceUpdate) -> StoreResult<Service> {
        let mut tx = self.begin_write().await?;
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
            // New upstreams without weights are weighed alike.
            service.upstream_weights.clear();
        }
        if let Some(weights) = &update.upstream_weights {
            service.upstream_weights = weights.clone();
        }
        if let Some(timeout_ms) = update.timeout_ms {
            service.timeout_ms = timeout_ms;
        }
        if let Some(on) = update.usage_accounting {
            service.usage_accounting = on;
        }
        if let Some(balancing) = update.load_balancing {
            service.load_balancing = balancing;
        }
        if let Some(ca) = &update.tls_ca_pem {
            service.tls_ca_pem = ca.clone();
        }
        if let Some(check) = &update.health_check {
            service.health_check = check.clone();
        }
        if let Some(retry) = &update.retry {
            service.retry = retry.clone();
        }
        service.updated_at = update.updated_at;
        sqlx::query(
            "UPDATE services SET description = $1, upstreams = $2, timeout_ms = $3, updated_at = $4,
                                 usage_accounting = $5, load_balancing = $6, tls_ca_pem = $7,
                                 health_check = $8, retry = $9, upstream_weights = $10
             WHERE id = $11",
        )
        .bind(&service.description)
        .bind(upstreams_json(&service.upstreams))
        .bind(service.timeout_ms as i64)
        .bind(service.updated_at)
        .bind(service.usage_accounting)
        .bind(service.load_balancing.as_str())
        .bind(&service.tls_ca_pem)
        .bind(json_text(&service.health_check))
        .bind(json_text(&service.retry))
        .bind(weights_json(&service.upstream_weights))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        bump_revision(&mut tx, &[Changed::Service(id)]).await?;
        tx.commit().await?;
        Ok(service)
    }

    async fn delete_service(&self, id: &str) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "DELETE FROM authorizations WHERE api_id IN (SELECT id FROM apis WHERE service_id = $1)",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let unbound = unbind_apis(&mut tx, "SELECT id FROM apis WHERE service_id = $1", id).await?;
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
        let mut changed = vec![Changed::Service(id)];
        changed.extend(unbound.iter().map(|t| Changed::Throttle(t)));
        bump_revision(&mut tx, &changed).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn create_api(&self, api: &Api) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let service = sqlx::query("SELECT id FROM services WHERE id = $1")
            .bind(&api.service_id)
            .fetch_optional(&mut *tx)
            .await?;
        if service.is_none() {
            return Err(StoreError::NotFound("service"));
        }
        // The revision's row lock first: writers of APIs check ownership one at a time.
        bump_revision(&mut tx, &[Changed::Api(&api.id)]).await?;
        let others: Vec<(String, String)> =
            // Paths in a service namespace belong to their service, whoever registered them.
            // Compared byte for byte, as the router does: SQLite's LIKE ignores ASCII case, and
            // would leave `/v1/Infers/…` (a path like any other) out of the check.
            sqlx::query("SELECT project_id, api_path FROM apis WHERE project_id <> $1 AND substr(api_path, 1, 11) <> '/v1/infers/'")
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
        one_by(
            self.reader(),
            "SELECT * FROM apis WHERE id = $1",
            id,
            api_from_row,
        )
        .await
    }

    async fn list_apis(&self, service_id: &str) -> StoreResult<Vec<Api>> {
        all_by(
            self.reader(),
            "SELECT * FROM apis WHERE service_id = $1 ORDER BY created_at, id",
            service_id,
            api_from_row,
        )
        .await
    }

    async fn delete_api(&self, id: &str) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM authorizations WHERE api_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let unbound = unbind_apis(&mut tx, "SELECT $1", id).await?;
        let deleted = sqlx::query("DELETE FROM apis WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound("api"));
        }
        let mut changed = vec![Changed::Api(id)];
        changed.extend(unbound.iter().map(|t| Changed::Throttle(t)));
        bump_revision(&mut tx, &changed).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// A setting the store keeps as JSON text.
fn json_text<T: serde::Serialize>(setting: &Option<T>) -> Option<String> {
    setting
        .as_ref()
        .and_then(|setting| serde_json::to_string(setting).ok())
}

/// The setting kept as JSON text in `column`.
fn from_json_text<T: serde::de::DeserializeOwned>(
    row: &DbRow,
    column: &str,
) -> StoreResult<Option<T>> {
    row.try_get::<Option<String>, _>(column)?
        .map(|text| serde_json::from_str(&text).map_err(|e| corrupt(column, e)))
        .transpose()
}

pub(super) fn service_from_row(row: &DbRow) -> StoreResult<Service> {
    let upstreams: String = row.try_get("upstreams")?;
    let timeout_ms: i64 = row.try_get("timeout_ms")?;
    Ok(Service {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        upstreams: serde_json::from_str(&upstreams).map_err(|e| corrupt("upstreams", e))?,
        timeout_ms: u64::try_from(timeout_ms).map_err(|e| corrupt("timeout_ms", e))?,
        usage_accounting: row.try_get("usage_accounting")?,
        load_balancing: {
            let text: String = row.try_get("load_balancing")?;
            LoadBalancing::parse(&text)
                .ok_or_else(|| corrupt("load_balancing", format!("unknown {text:?}")))?
        },
        tls_ca_pem: row.try_get("tls_ca_pem")?,
        health_check: from_json_text(row, "health_check")?,
        retry: from_json_text(row, "retry")?,
        upstream_weights: from_json_text(row, "upstream_weights")?.unwrap_or_default(),
        owner: row.try_get("owner")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub(super) fn api_from_row(row: &DbRow) -> StoreResult<Api> {
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

/// A service's weights as stored: none when all are equal.
fn weights_json(weights: &[u32]) -> Option<String> {
    (!weights.is_empty()).then(|| serde_json::to_string(weights).unwrap_or_else(|_| "[]".into()))
}

pub(super) fn upstreams_json(upstreams: &[String]) -> String {
    serde_json::to_string(upstreams).unwrap_or_else(|_| "[]".to_owned())
}

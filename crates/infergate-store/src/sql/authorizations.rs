//! Authorizations: apps bound to APIs.

use super::*;

#[async_trait]
impl AuthorizationStore for This {
    async fn authorize(
        &self,
        api_id: &str,
        grants: &[Authorization],
    ) -> StoreResult<Vec<Option<String>>> {
        let mut tx = self.begin_write().await?;
        require_api(&mut tx, api_id).await?;
        let results = bind_apps(&mut tx, grants).await?;
        bump_revision(&mut tx, &[Changed::Api(api_id)]).await?;
        tx.commit().await?;
        Ok(results)
    }

    async fn unauthorize(&self, api_id: &str, app_ids: &[String]) -> StoreResult<Vec<bool>> {
        let mut tx = self.begin_write().await?;
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
        bump_revision(&mut tx, &[Changed::Api(api_id)]).await?;
        tx.commit().await?;
        Ok(results)
    }

    async fn replace_authorizations(
        &self,
        api_id: &str,
        grants: &[Authorization],
    ) -> StoreResult<Vec<Option<String>>> {
        let mut tx = self.begin_write().await?;
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
        bump_revision(&mut tx, &[Changed::Api(api_id)]).await?;
        tx.commit().await?;
        Ok(results)
    }

    async fn authorizations_of_api(&self, api_id: &str) -> StoreResult<Vec<Authorization>> {
        all_by(
            self.reader(),
            "SELECT * FROM authorizations WHERE api_id = $1 ORDER BY created_at, auth_id",
            api_id,
            authorization_from_row,
        )
        .await
    }

    async fn authorizations_of_app(&self, app_id: &str) -> StoreResult<Vec<Authorization>> {
        all_by(
            self.reader(),
            "SELECT * FROM authorizations WHERE app_id = $1 ORDER BY created_at, auth_id",
            app_id,
            authorization_from_row,
        )
        .await
    }
}

pub(super) fn authorization_from_row(row: &DbRow) -> StoreResult<Authorization> {
    Ok(Authorization {
        auth_id: row.try_get("auth_id")?,
        api_id: row.try_get("api_id")?,
        app_id: row.try_get("app_id")?,
        created_at: row.try_get("created_at")?,
    })
}

pub(super) async fn authorizations_in(
    tx: &mut Transaction<'static, Db>,
    api_id: &str,
) -> StoreResult<Vec<Authorization>> {
    all_by(
        &mut **tx,
        "SELECT * FROM authorizations WHERE api_id = $1",
        api_id,
        authorization_from_row,
    )
    .await
}

pub(super) async fn require_api(
    tx: &mut Transaction<'static, Db>,
    api_id: &str,
) -> StoreResult<()> {
    let found = sqlx::query("SELECT id FROM apis WHERE id = $1")
        .bind(api_id)
        .fetch_optional(&mut **tx)
        .await?;
    found.map(|_| ()).ok_or(StoreError::NotFound("api"))
}

/// Inserts each grant unless bound already; returns the auth id in force per grant.
pub(super) async fn bind_apps(
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

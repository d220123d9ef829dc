//! Apps with their AppCodes and bound-API counts.

use super::*;

#[async_trait]
impl AppStore for This {
    async fn create_app(&self, app: &App, max_per_user: u32) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
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
        bump_revision(&mut tx, &[Changed::App(&app.id)]).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn app(&self, id: &str) -> StoreResult<Option<App>> {
        let mut conn = self.reader().acquire().await?;
        Ok(fetch_apps(&mut conn, AppFilter::Id(id))
            .await?
            .into_iter()
            .next())
    }

    async fn app_by_name(&self, project_id: &str, name: &str) -> StoreResult<Option<App>> {
        let mut conn = self.reader().acquire().await?;
        Ok(fetch_apps(&mut conn, AppFilter::Name(project_id, name))
            .await?
            .into_iter()
            .next())
    }

    async fn list_apps(&self, project_id: &str) -> StoreResult<Vec<App>> {
        let mut conn = self.reader().acquire().await?;
        fetch_apps(&mut conn, AppFilter::Project(project_id)).await
    }

    async fn delete_app(&self, id: &str) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
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
        bump_revision(&mut tx, &[Changed::App(id)]).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_app_secret(
        &self,
        id: &str,
        secret_sealed: &str,
        updated_at: i64,
    ) -> StoreResult<App> {
        let mut tx = self.begin_write().await?;
        touch_app(&mut tx, id, updated_at).await?;
        sqlx::query("UPDATE apps SET secret_sealed = $1 WHERE id = $2")
            .bind(secret_sealed)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        bump_revision(&mut tx, &[Changed::App(id)]).await?;
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
        let mut tx = self.begin_write().await?;
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
        bump_revision(&mut tx, &[Changed::App(app_id)]).await?;
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
        let mut tx = self.begin_write().await?;
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
        bump_revision(&mut tx, &[Changed::App(app_id)]).await?;
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
        let mut tx = self.begin_write().await?;
        let deleted = sqlx::query("DELETE FROM app_codes WHERE app_id = $1 AND code_index = $2")
            .bind(app_id)
            .bind(index)
            .execute(&mut *tx)
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound("AppCode"));
        }
        touch_app(&mut tx, app_id, updated_at).await?;
        bump_revision(&mut tx, &[Changed::App(app_id)]).await?;
        let app = fetch_app(&mut tx, app_id).await?;
        tx.commit().await?;
        Ok(app)
    }
}

/// Which apps [`fetch_apps`] loads.
pub(super) enum AppFilter<'a> {
    All,
    Id(&'a str),
    Name(&'a str, &'a str),
    Project(&'a str),
}

pub(super) const APP_COLUMNS: &str =
    "SELECT a.*, (SELECT COUNT(*) FROM authorizations z WHERE z.app_id = a.id)
     AS bounded_api_count FROM apps a";

/// Loads apps with their AppCodes and bound-API counts.
pub(super) async fn fetch_apps(conn: &mut DbConn, filter: AppFilter<'_>) -> StoreResult<Vec<App>> {
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

pub(super) async fn fetch_all_apps(conn: &mut DbConn) -> StoreResult<Vec<App>> {
    fetch_apps(conn, AppFilter::All).await
}

pub(super) async fn fetch_app(conn: &mut DbConn, id: &str) -> StoreResult<App> {
    fetch_apps(conn, AppFilter::Id(id))
        .await?
        .into_iter()
        .next()
        .ok_or(StoreError::NotFound("app"))
}

pub(super) async fn touch_app(
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

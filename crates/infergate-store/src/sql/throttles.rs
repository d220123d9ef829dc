//! Throttling policies, their bindings to APIs and their special limits. Every write logs
//! the policy as changed, so each gateway rereads the policy with its bindings and specials.

use super::*;

#[async_trait]
impl ThrottleStore for This {
    async fn create_throttle(&self, throttle: &Throttle) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        with_settings(
            sqlx::query(
                "INSERT INTO throttles (id, name, remark, api_call_limits, user_call_limits,
                                        app_call_limits, ip_call_limits, time_interval, time_unit,
                                        kind, updated_at, default_max_tokens, project_id,
                                        owner, created_at, unit)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
                         $16)",
            ),
            throttle,
        )
        .bind(&throttle.project_id)
        .bind(&throttle.owner)
        .bind(throttle.created_at)
        .bind(throttle.unit.as_str())
        .execute(&mut *tx)
        .await
        .map_err(name_taken(throttle))?;
        bump_revision(&mut tx, &[Changed::Throttle(&throttle.id)]).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn throttle(&self, id: &str) -> StoreResult<Option<Throttle>> {
        one_by(
            self.reader(),
            "SELECT * FROM throttles WHERE id = $1",
            id,
            throttle_from_row,
        )
        .await
    }

    async fn list_throttles(&self, project_id: &str) -> StoreResult<Vec<Throttle>> {
        all_by(
            self.reader(),
            "SELECT * FROM throttles WHERE project_id = $1 ORDER BY created_at, id",
            project_id,
            throttle_from_row,
        )
        .await
    }

    async fn update_throttle(&self, throttle: &Throttle) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let updated = with_settings(
            sqlx::query(
                "UPDATE throttles SET name = $2, remark = $3, api_call_limits = $4,
                        user_call_limits = $5, app_call_limits = $6, ip_call_limits = $7,
                        time_interval = $8, time_unit = $9, kind = $10, updated_at = $11,
                        default_max_tokens = $12
                 WHERE id = $1",
                // A policy's unit is the one it was created with: its bindings hold it too.
            ),
            throttle,
        )
        .execute(&mut *tx)
        .await
        .map_err(name_taken(throttle))?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound("throttle"));
        }
        bump_revision(&mut tx, &[Changed::Throttle(&throttle.id)]).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delete_throttle(&self, id: &str) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        for sql in [
            "DELETE FROM throttle_bindings WHERE throttle_id = $1",
            "DELETE FROM throttle_specials WHERE throttle_id = $1",
        ] {
            sqlx::query(sql).bind(id).execute(&mut *tx).await?;
        }
        let deleted = sqlx::query("DELETE FROM throttles WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound("throttle"));
        }
        bump_revision(&mut tx, &[Changed::Throttle(id)]).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn bind_throttle(&self, bindings: &[ThrottleBinding]) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let Some(first) = bindings.first() else {
            return Ok(());
        };
        let unit: Option<String> = sqlx::query_scalar("SELECT unit FROM throttles WHERE id = $1")
            .bind(&first.throttle_id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(unit) = unit else {
            return Err(StoreError::NotFound("throttle"));
        };
        for binding in bindings {
            require_api(&mut tx, &binding.api_id).await?;
            sqlx::query(
                "INSERT INTO throttle_bindings (id, throttle_id, api_id, created_at, unit)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&binding.id)
            .bind(&binding.throttle_id)
            .bind(&binding.api_id)
            .bind(binding.created_at)
            .bind(&unit)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                StoreError::from_sqlx(
                    e,
                    &format!(
                        "API {} is already bound to a throttling policy of unit {unit}",
                        binding.api_id
                    ),
                )
            })?;
        }
        bump_revision(&mut tx, &[Changed::Throttle(&first.throttle_id)]).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn throttle_bindings(&self, throttle_id: &str) -> StoreResult<Vec<ThrottleBinding>> {
        all_by(
            self.reader(),
            "SELECT * FROM throttle_bindings WHERE throttle_id = $1 ORDER BY created_at, id",
            throttle_id,
            binding_from_row,
        )
        .await
    }

    async fn throttle_binding(&self, id: &str) -> StoreResult<Option<ThrottleBinding>> {
        one_by(
            self.reader(),
            "SELECT * FROM throttle_bindings WHERE id = $1",
            id,
            binding_from_row,
        )
        .await
    }

    async fn unbind_throttle(&self, binding_id: &str) -> StoreResult<ThrottleBinding> {
        let mut tx = self.begin_write().await?;
        let binding = one_by(
            &mut *tx,
            "SELECT * FROM throttle_bindings WHERE id = $1",
            binding_id,
            binding_from_row,
        )
        .await?
        .ok_or(StoreError::NotFound("throttle binding"))?;
        sqlx::query("DELETE FROM throttle_bindings WHERE id = $1")
            .bind(binding_id)
            .execute(&mut *tx)
            .await?;
        bump_revision(&mut tx, &[Changed::Throttle(&binding.throttle_id)]).await?;
        tx.commit().await?;
        Ok(binding)
    }

    async fn create_throttle_special(&self, special: &ThrottleSpecial) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO throttle_specials (id, throttle_id, object_type, object_id, call_limits,
                                            created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&special.id)
        .bind(&special.throttle_id)
        .bind(special.object_type.as_str())
        .bind(&special.object_id)
        .bind(special.call_limits as i64)
        .bind(special.created_at)
        .bind(special.updated_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            StoreError::from_sqlx(
                e,
                &format!(
                    "the policy already has a special limit for {} {}",
                    special.object_type.as_str(),
                    special.object_id
                ),
            )
        })?;
        bump_revision(&mut tx, &[Changed::Throttle(&special.throttle_id)]).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn throttle_specials(&self, throttle_id: &str) -> StoreResult<Vec<ThrottleSpecial>> {
        all_by(
            self.reader(),
            "SELECT * FROM throttle_specials WHERE throttle_id = $1 ORDER BY created_at, id",
            throttle_id,
            special_from_row,
        )
        .await
    }

    async fn update_throttle_special(
        &self,
        id: &str,
        call_limits: u64,
        updated_at: i64,
    ) -> StoreResult<ThrottleSpecial> {
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query(
            "UPDATE throttle_specials SET call_limits = $2, updated_at = $3 WHERE id = $1",
        )
        .bind(id)
        .bind(call_limits as i64)
        .bind(updated_at)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound("throttle special"));
        }
        let special = one_by(
            &mut *tx,
            "SELECT * FROM throttle_specials WHERE id = $1",
            id,
            special_from_row,
        )
        .await?
        .ok_or(StoreError::NotFound("throttle special"))?;
        bump_revision(&mut tx, &[Changed::Throttle(&special.throttle_id)]).await?;
        tx.commit().await?;
        Ok(special)
    }

    async fn delete_throttle_special(&self, id: &str) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let special = one_by(
            &mut *tx,
            "SELECT * FROM throttle_specials WHERE id = $1",
            id,
            special_from_row,
        )
        .await?
        .ok_or(StoreError::NotFound("throttle special"))?;
        sqlx::query("DELETE FROM throttle_specials WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        bump_revision(&mut tx, &[Changed::Throttle(&special.throttle_id)]).await?;
        tx.commit().await?;
        Ok(())
    }
}

type Query<'q> = sqlx::query::Query<'q, Db, <Db as sqlx::Database>::Arguments<'q>>;

/// Binds `$1` (the id) to `$12`: the fields a policy's create and update both write.
fn with_settings<'q>(query: Query<'q>, t: &'q Throttle) -> Query<'q> {
    query
        .bind(&t.id)
        .bind(&t.name)
        .bind(&t.remark)
        .bind(t.api_call_limits as i64)
        .bind(t.user_call_limits.map(|n| n as i64))
        .bind(t.app_call_limits.map(|n| n as i64))
        .bind(t.ip_call_limits.map(|n| n as i64))
        .bind(t.time_interval as i64)
        .bind(t.time_unit.as_str())
        .bind(t.kind.code())
        .bind(t.updated_at)
        .bind(t.default_max_tokens as i64)
}

/// A unique-name clash, in words.
fn name_taken(t: &Throttle) -> impl FnOnce(sqlx::Error) -> StoreError + '_ {
    move |e| {
        StoreError::from_sqlx(
            e,
            &format!("a throttling policy named {:?} already exists", t.name),
        )
    }
}

fn limit_of(row: &DbRow, column: &str) -> StoreResult<Option<u64>> {
    let value: Option<i64> = row.try_get(column)?;
    value
        .map(|n| u64::try_from(n).map_err(|e| corrupt(column, e)))
        .transpose()
}

pub(super) fn throttle_from_row(row: &DbRow) -> StoreResult<Throttle> {
    let unit: String = row.try_get("time_unit")?;
    let kind: i64 = row.try_get("kind")?;
    let counts: String = row.try_get("unit")?;
    Ok(Throttle {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        name: row.try_get("name")?,
        remark: row.try_get("remark")?,
        api_call_limits: limit_of(row, "api_call_limits")?
            .ok_or_else(|| corrupt("api_call_limits", "NULL"))?,
        user_call_limits: limit_of(row, "user_call_limits")?,
        app_call_limits: limit_of(row, "app_call_limits")?,
        ip_call_limits: limit_of(row, "ip_call_limits")?,
        time_interval: limit_of(row, "time_interval")?
            .ok_or_else(|| corrupt("time_interval", "NULL"))?,
        time_unit: TimeUnit::from_str(&unit).map_err(|_| corrupt("time_unit", &unit))?,
        kind: ThrottleType::from_code(kind).ok_or_else(|| corrupt("kind", kind))?,
        unit: ThrottleUnit::from_str(&counts).map_err(|_| corrupt("unit", &counts))?,
        default_max_tokens: limit_of(row, "default_max_tokens")?.unwrap_or(0),
        owner: row.try_get("owner")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub(super) fn binding_from_row(row: &DbRow) -> StoreResult<ThrottleBinding> {
    Ok(ThrottleBinding {
        id: row.try_get("id")?,
        throttle_id: row.try_get("throttle_id")?,
        api_id: row.try_get("api_id")?,
        created_at: row.try_get("created_at")?,
    })
}

pub(super) fn special_from_row(row: &DbRow) -> StoreResult<ThrottleSpecial> {
    let kind: String = row.try_get("object_type")?;
    Ok(ThrottleSpecial {
        id: row.try_get("id")?,
        throttle_id: row.try_get("throttle_id")?,
        object_type: SpecialKind::from_str(&kind).map_err(|_| corrupt("object_type", &kind))?,
        object_id: row.try_get("object_id")?,
        call_limits: limit_of(row, "call_limits")?.ok_or_else(|| corrupt("call_limits", "NULL"))?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Unbinds the policies of the APIs `apis_sql` selects (one `$1` parameter) before they
/// are deleted; returns the policies whose bindings changed.
pub(super) async fn unbind_apis(
    tx: &mut Transaction<'static, Db>,
    apis_sql: &str,
    id: &str,
) -> StoreResult<Vec<String>> {
    let throttles: Vec<String> = sqlx::query(&format!(
        "SELECT DISTINCT throttle_id FROM throttle_bindings WHERE api_id IN ({apis_sql})"
    ))
    .bind(id)
    .fetch_all(&mut **tx)
    .await?
    .iter()
    .map(|row| row.try_get("throttle_id"))
    .collect::<Result<_, _>>()?;
    sqlx::query(&format!(
        "DELETE FROM throttle_bindings WHERE api_id IN ({apis_sql})"
    ))
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(throttles)
}

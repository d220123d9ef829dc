//! Calls per minute, app and API, by answer, with model calls' token usage. Nodes add their
//! sums in batches; a row is never rewritten, only added to, so concurrent nodes' batches
//! add up.

use super::*;

/// The key's columns, then the sums' in the order of [`UsageCounts::named`].
fn columns() -> String {
    let mut all = String::from("project_id, app_id, api_id, minute");
    for (column, _) in UsageCounts::default().named() {
        all.push_str(", ");
        all.push_str(column);
    }
    all
}

fn usage_from_row(row: &DbRow) -> StoreResult<UsageRow> {
    let mut counts = UsageCounts::default();
    for (column, value) in counts.named_mut() {
        *value = row.try_get(column)?;
    }
    Ok(UsageRow {
        project_id: row.try_get("project_id")?,
        app_id: row.try_get("app_id")?,
        api_id: row.try_get("api_id")?,
        minute: row.try_get("minute")?,
        counts,
    })
}

#[async_trait]
impl UsageStore for This {
    async fn add_usage(&self, rows: &[UsageRow]) -> StoreResult<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let summed = UsageCounts::default().named();
        let additions = summed
            .iter()
            .map(|(c, _)| format!("{c} = usage_minutes.{c} + excluded.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let places = (1..=4 + summed.len())
            .map(|n| format!("${n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let statement = format!(
            "INSERT INTO usage_minutes ({}) VALUES ({places})
             ON CONFLICT (project_id, app_id, api_id, minute) DO UPDATE SET {additions}",
            columns()
        );
        let mut tx = self.begin_write().await?;
        for row in rows {
            let mut query = sqlx::query(&statement)
                .bind(&row.project_id)
                .bind(&row.app_id)
                .bind(&row.api_id)
                .bind(row.minute);
            for (_, value) in row.counts.named() {
                query = query.bind(value);
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn usage(&self, query: &UsageQuery) -> StoreResult<Vec<UsageRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM usage_minutes
             WHERE project_id = $1 AND minute >= $2 AND minute < $3
               AND ($4 = '' OR app_id = $4) AND ($5 = '' OR api_id = $5)
             ORDER BY minute, app_id, api_id",
            columns()
        ))
        .bind(&query.project_id)
        .bind(query.from)
        .bind(query.to)
        .bind(query.app_id.as_deref().unwrap_or(""))
        .bind(query.api_id.as_deref().unwrap_or(""))
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(usage_from_row).collect()
    }
}

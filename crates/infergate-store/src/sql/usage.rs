//! Calls per minute, app and API, by answer, with model calls' token usage. Nodes add their
//! sums in batches; a row is never rewritten, only added to, so concurrent nodes' batches
//! add up.

use super::*;

/// The key's columns, then the sums' in the order of [`sums`].
fn columns() -> String {
    let mut all = String::from("project_id, app_id, api_id, minute");
    for (column, _) in sums(&UsageCounts::default()) {
        all.push_str(", ");
        all.push_str(column);
    }
    all
}

/// The sums' column names and values.
fn sums(c: &UsageCounts) -> [(&'static str, i64); 11] {
    [
        ("requests", c.requests),
        ("client_errors", c.client_errors),
        ("server_errors", c.server_errors),
        ("throttled", c.throttled),
        ("calls", c.calls),
        ("prompt_tokens", c.prompt_tokens),
        ("completion_tokens", c.completion_tokens),
        ("total_tokens", c.total_tokens),
        ("reasoning_tokens", c.reasoning_tokens),
        ("cached_tokens", c.cached_tokens),
        ("estimated_calls", c.estimated_calls),
    ]
}

fn usage_from_row(row: &DbRow) -> StoreResult<UsageRow> {
    Ok(UsageRow {
        project_id: row.try_get("project_id")?,
        app_id: row.try_get("app_id")?,
        api_id: row.try_get("api_id")?,
        minute: row.try_get("minute")?,
        counts: UsageCounts {
            requests: row.try_get("requests")?,
            client_errors: row.try_get("client_errors")?,
            server_errors: row.try_get("server_errors")?,
            throttled: row.try_get("throttled")?,
            calls: row.try_get("calls")?,
            prompt_tokens: row.try_get("prompt_tokens")?,
            completion_tokens: row.try_get("completion_tokens")?,
            total_tokens: row.try_get("total_tokens")?,
            reasoning_tokens: row.try_get("reasoning_tokens")?,
            cached_tokens: row.try_get("cached_tokens")?,
            estimated_calls: row.try_get("estimated_calls")?,
        },
    })
}

#[async_trait]
impl UsageStore for This {
    async fn add_usage(&self, rows: &[UsageRow]) -> StoreResult<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let summed = sums(&UsageCounts::default());
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
            for (_, value) in sums(&row.counts) {
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

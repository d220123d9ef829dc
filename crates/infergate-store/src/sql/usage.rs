//! Model calls' token usage per minute, app and API. Nodes add their sums in batches; a
//! row is never rewritten, only added to, so concurrent nodes' batches add up.

use super::*;

const COLUMNS: &str = "project_id, app_id, api_id, minute, calls, prompt_tokens, \
    completion_tokens, total_tokens, reasoning_tokens, cached_tokens, estimated_calls";

fn usage_from_row(row: &DbRow) -> StoreResult<UsageRow> {
    Ok(UsageRow {
        project_id: row.try_get("project_id")?,
        app_id: row.try_get("app_id")?,
        api_id: row.try_get("api_id")?,
        minute: row.try_get("minute")?,
        counts: UsageCounts {
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
        let mut tx = self.begin_write().await?;
        for row in rows {
            sqlx::query(&format!(
                "INSERT INTO usage_minutes ({COLUMNS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                 ON CONFLICT (project_id, app_id, api_id, minute) DO UPDATE SET
                   calls = usage_minutes.calls + excluded.calls,
                   prompt_tokens = usage_minutes.prompt_tokens + excluded.prompt_tokens,
                   completion_tokens = usage_minutes.completion_tokens + excluded.completion_tokens,
                   total_tokens = usage_minutes.total_tokens + excluded.total_tokens,
                   reasoning_tokens = usage_minutes.reasoning_tokens + excluded.reasoning_tokens,
                   cached_tokens = usage_minutes.cached_tokens + excluded.cached_tokens,
                   estimated_calls = usage_minutes.estimated_calls + excluded.estimated_calls"
            ))
            .bind(&row.project_id)
            .bind(&row.app_id)
            .bind(&row.api_id)
            .bind(row.minute)
            .bind(row.counts.calls)
            .bind(row.counts.prompt_tokens)
            .bind(row.counts.completion_tokens)
            .bind(row.counts.total_tokens)
            .bind(row.counts.reasoning_tokens)
            .bind(row.counts.cached_tokens)
            .bind(row.counts.estimated_calls)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn usage(&self, query: &UsageQuery) -> StoreResult<Vec<UsageRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM usage_minutes
             WHERE project_id = $1 AND minute >= $2 AND minute < $3
               AND ($4 = '' OR app_id = $4) AND ($5 = '' OR api_id = $5)
             ORDER BY minute, app_id, api_id"
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

//! Usage as the gateways counted it, per app and API, per minute, hour or day: every call
//! by its answer (requests, 4xx, 5xx, 429s), and the token usage of model calls
//! (`…/chat/completions`, `…/completions`, `…/embeddings`, `…/responses`). Everyone with a
//! role in the project reads it.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use infergate_core::access::Action;
use infergate_core::model::{UsageCounts, UsageQuery};
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::ProjectCaller;
use crate::error::ApiError;
use crate::paging::Params;
use crate::{now_ms, AdminState};

/// The longest period one request reads: 31 days (a day at minute granularity).
const MAX_DAYS: i64 = 31;
const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 24 * 60 * MINUTE_MS;

/// Query of `GET /v1/{project_id}/app-auth/usage`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageParams {
    /// Only this app's calls.
    pub app_id: Option<String>,
    /// Only this API's calls.
    pub api_id: Option<String>,
    /// Start, inclusive: epoch milliseconds or RFC 3339 [default: `to` minus a day].
    pub from: Option<String>,
    /// End, exclusive: epoch milliseconds or RFC 3339 [default: now].
    pub to: Option<String>,
    /// `minute`, `hour` (default) or `day` (UTC).
    pub granularity: Option<String>,
}

/// One period of one app's calls to one API.
#[derive(Debug, Default, Clone, Serialize)]
pub struct UsageBucket {
    /// The period's start, epoch milliseconds.
    pub start: i64,
    /// Empty for callers that are not apps (IAM users, anonymous calls).
    pub app_id: String,
    pub api_id: String,
    #[serde(flatten)]
    pub counts: UsageCounts,
}

/// A time parameter: epoch milliseconds or RFC 3339.
fn time(field: &str, value: Option<&str>) -> Result<Option<i64>, ApiError> {
    let Some(text) = value.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    if let Ok(ms) = text.parse::<i64>() {
        if ms >= 0 {
            return Ok(Some(ms));
        }
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| Some(t.timestamp_millis()))
        .map_err(|_| {
            ApiError::BadRequest(format!(
                "invalid {field}: must be epoch milliseconds or an RFC 3339 time"
            ))
        })
}

#[utoipa::path(get, path = "/v1/{project_id}/app-auth/usage", tag = "usage", operation_id = "ShowUsage",
    params(("project_id" = String, Path), UsageParams),
    responses((status = 200, description = "granularity, from, to, usage (buckets by start, app and API), total")))]
async fn usage_show(
    State(state): State<Arc<AdminState>>,
    caller: ProjectCaller,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    caller.require(Action::Read, "read this project")?;
    let granularity = params
        .one_of("granularity", &["minute", "hour", "day"])?
        .unwrap_or("hour");
    let step = match granularity {
        "minute" => MINUTE_MS,
        "hour" => 60 * MINUTE_MS,
        _ => DAY_MS,
    };
    let to = time("to", params.get("to"))?.unwrap_or_else(now_ms);
    let from = time("from", params.get("from"))?.unwrap_or(to - DAY_MS);
    if from >= to {
        return Err(ApiError::BadRequest(
            "invalid from: must be before to".into(),
        ));
    }
    let longest = if granularity == "minute" {
        DAY_MS
    } else {
        MAX_DAYS * DAY_MS
    };
    if to - from > longest {
        return Err(ApiError::BadRequest(format!(
            "invalid from: at most {} days before to at granularity {granularity}",
            longest / DAY_MS
        )));
    }
    let id = |field: &str| -> Result<Option<String>, ApiError> {
        match params.get(field).map(str::trim).filter(|v| !v.is_empty()) {
            Some(v) if v.len() > 64 => Err(ApiError::BadRequest(format!(
                "invalid {field}: must be at most 64 characters"
            ))),
            other => Ok(other.map(str::to_owned)),
        }
    };
    let rows = state
        .store
        .usage(&UsageQuery {
            project_id: caller.project_id.clone(),
            app_id: id("app_id")?,
            api_id: id("api_id")?,
            // Whole minutes that begin in [from, to).
            from: from.div_euclid(MINUTE_MS) + i64::from(from.rem_euclid(MINUTE_MS) != 0),
            to: to.div_euclid(MINUTE_MS) + i64::from(to.rem_euclid(MINUTE_MS) != 0),
        })
        .await?;
    let mut buckets: BTreeMap<(i64, String, String), UsageBucket> = BTreeMap::new();
    let mut total = UsageCounts::default();
    for row in &rows {
        let start = (row.minute * MINUTE_MS).div_euclid(step) * step;
        buckets
            .entry((start, row.app_id.clone(), row.api_id.clone()))
            .or_insert_with(|| UsageBucket {
                start,
                app_id: row.app_id.clone(),
                api_id: row.api_id.clone(),
                ..UsageBucket::default()
            })
            .counts
            .merge(&row.counts);
        total.merge(&row.counts);
    }
    Ok(Json(json!({
        "granularity": granularity,
        "from": from,
        "to": to,
        "usage": buckets.into_values().collect::<Vec<_>>(),
        "total": total,
    })))
}

pub fn router() -> OpenApiRouter<Arc<AdminState>> {
    OpenApiRouter::new().routes(routes!(usage_show))
}

//! The gateway listener. Until the data plane routes inference calls, every call is
//! answered as a call to a path with no API: 404 `APIG.0101` with a request id.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::json;

async fn no_api() -> Response {
    let request_id = infergate_core::ids::new_hex_id();
    let mut response = (
        StatusCode::NOT_FOUND,
        Json(json!({
            "error_code": "APIG.0101",
            "error_msg": "The API does not exist or has not been published in the environment",
            "request_id": request_id,
        })),
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("X-Request-Id", value);
    }
    response
}

pub fn router() -> Router {
    Router::new().fallback(no_api)
}

//! Request extractors whose rejections use each surface's error shape and name the field
//! that failed: `MaJson`/`MaQuery` for the ModelArts API, `IamJson` for the IAM subset.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, IamError};

/// Why a body could not be turned into `T`, in words that name the field.
fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"null"
    } else {
        bytes
    };
    let mut de = serde_json::Deserializer::from_slice(text);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let what = if inner.is_syntax() || inner.is_eof() {
            format!("request body is not valid JSON: {inner}")
        } else if path == "." {
            format!("request body: {inner}")
        } else {
            format!("invalid {path}: {inner}")
        };
        // serde's text ends with " at line L column C"; keep it, it helps find the spot.
        what
    })?;
    de.end()
        .map_err(|e| format!("request body has trailing data: {e}"))?;
    Ok(value)
}

async fn read_body(req: Request) -> Result<Bytes, (bool, String)> {
    Bytes::from_request(req, &()).await.map_err(|rejection| {
        let too_large = rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE;
        (too_large, rejection.body_text())
    })
}

/// A JSON body of the ModelArts API. Use `MaJson<Option<T>>` where the body is optional.
pub struct MaJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for MaJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        let bytes = read_body(req).await.map_err(|(too_large, msg)| {
            if too_large {
                ApiError::PayloadTooLarge(msg)
            } else {
                ApiError::BadRequest(msg)
            }
        })?;
        parse_json(&bytes).map(MaJson).map_err(ApiError::BadRequest)
    }
}

/// Query parameters of the ModelArts API.
pub struct MaQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for MaQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|Query(v)| MaQuery(v))
            .map_err(|rejection| {
                ApiError::BadRequest(format!("invalid query: {}", rejection.body_text()))
            })
    }
}

/// A JSON body of the IAM subset.
pub struct IamJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for IamJson<T> {
    type Rejection = IamError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, IamError> {
        let bytes = read_body(req)
            .await
            .map_err(|(_, msg)| IamError::BadRequest(msg))?;
        parse_json(&bytes)
            .map(IamJson)
            .map_err(IamError::BadRequest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Inner {
        #[allow(dead_code)]
        name: String,
    }

    #[derive(Debug, serde::Deserialize)]
    struct Outer {
        #[allow(dead_code)]
        user: Inner,
    }

    #[test]
    fn errors_name_the_field() {
        let err = parse_json::<Outer>(br#"{"user": {"name": 5}}"#).expect_err("type");
        assert!(
            err.starts_with("invalid user.name: invalid type: integer"),
            "{err}"
        );
        let err = parse_json::<Outer>(br#"{"user": {}}"#).expect_err("missing");
        assert!(
            err.contains("user") && err.contains("missing field `name`"),
            "{err}"
        );
        let err = parse_json::<Outer>(b"{").expect_err("syntax");
        assert!(err.starts_with("request body is not valid JSON"), "{err}");
        assert!(parse_json::<Option<Outer>>(b"  ").expect("empty").is_none());
        assert!(parse_json::<Outer>(b"").is_err());
    }
}

//! `limit`/`offset` of the list operations (spec §2.0, §7 #6): strings on the wire, parsed
//! as integers; `offset` is a page index, so a page starts at `offset * limit`.

use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::ApiError;

pub const DEFAULT_LIMIT: usize = 1000;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page, 1–1000 (default 1000).
    pub limit: Option<String>,
    /// Page index starting at 0 (default 0).
    pub offset: Option<String>,
    pub workspace_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub limit: usize,
    pub offset: usize,
}

fn parse_number(
    field: &str,
    value: Option<&str>,
    default: usize,
    min: usize,
    max: usize,
) -> Result<usize, ApiError> {
    let Some(text) = value.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(default);
    };
    text.parse::<usize>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "invalid {field}: must be an integer between {min} and {max}"
            ))
        })
}

impl Page {
    pub fn new(limit: Option<&str>, offset: Option<&str>) -> Result<Self, ApiError> {
        Ok(Self {
            limit: parse_number("limit", limit, DEFAULT_LIMIT, 1, DEFAULT_LIMIT)?,
            offset: parse_number("offset", offset, 0, 0, 1_000_000)?,
        })
    }

    pub fn from_query(query: &PageQuery) -> Result<Self, ApiError> {
        Self::new(query.limit.as_deref(), query.offset.as_deref())
    }

    /// The items of this page.
    pub fn apply<T>(&self, items: Vec<T>) -> Vec<T> {
        items
            .into_iter()
            .skip(self.offset.saturating_mul(self.limit))
            .take(self.limit)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages() {
        let page = Page::new(Some("2"), Some("1")).expect("page");
        assert_eq!(page.apply(vec![1, 2, 3, 4, 5]), vec![3, 4]);
        assert_eq!(Page::new(None, None).expect("default").limit, 1000);
        assert!(Page::new(Some("0"), None).is_err());
        assert!(Page::new(Some("x"), None).is_err());
        assert!(Page::new(None, Some("-1")).is_err());
    }
}

/// Raw query parameters, for operations whose queries repeat keys (`app_ids`) or need
/// typed checks with field-naming errors.
#[derive(Debug, Default, Clone)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn from_query(query: Option<&str>) -> Self {
        Self(
            url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The last value of `key`, if present and not empty.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, repeated keys and comma-separated lists alike.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key || k == &format!("{key}[]"))
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect()
    }

    pub fn bool(&self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(_) => Err(ApiError::BadRequest(format!(
                "invalid {key}: must be true or false"
            ))),
        }
    }

    /// The value of `key` if it is one of `allowed` (case-insensitive), as spelled there.
    pub fn one_of(
        &self,
        key: &str,
        allowed: &[&'static str],
    ) -> Result<Option<&'static str>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => allowed
                .iter()
                .find(|a| a.eq_ignore_ascii_case(v.trim()))
                .copied()
                .map(Some)
                .ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "invalid {key}: {v:?} is not one of {}",
                        allowed.join(", ")
                    ))
                }),
        }
    }

    /// A string filter of at most `max` characters.
    pub fn text(&self, key: &str, max: usize) -> Result<Option<&str>, ApiError> {
        match self.get(key) {
            Some(v) if v.chars().count() > max => Err(ApiError::BadRequest(format!(
                "invalid {key}: must be at most {max} characters"
            ))),
            other => Ok(other),
        }
    }

    pub fn page(&self) -> Result<Page, ApiError> {
        Page::new(self.get("limit"), self.get("offset"))
    }

    /// `order`: `asc` (default) or `desc`; returns whether descending.
    pub fn descending(&self) -> Result<bool, ApiError> {
        Ok(self.one_of("order", &["asc", "desc"])? == Some("desc"))
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Params {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Params::from_query(parts.uri.query()))
    }
}

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

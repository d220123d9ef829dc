//! Field rules of the management API. Each check names the field and the rule it broke, so
//! the admin plane can answer a 400 that tells the caller exactly what to fix.

use std::fmt;

use url::Url;

/// A request field that broke a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub rule: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, rule: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            rule: rule.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}", self.field, self.rule)
    }
}

impl std::error::Error for FieldError {}

pub type FieldResult<T> = Result<T, FieldError>;

/// Default service timeout: the ModelArts backend limit of 40 s (spec §5.1).
pub const DEFAULT_TIMEOUT_MS: u64 = 40_000;
pub const MAX_TIMEOUT_MS: u64 = 600_000;
pub const MAX_UPSTREAMS: usize = 16;
/// The longest upstream URL: its base path starts every request line sent to it.
pub const MAX_UPSTREAM_URL: usize = 2048;

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic()
}

/// `^[A-Za-z][A-Za-z0-9_]{min_rest,max_rest}$`-shaped names.
fn check_name(
    field: &str,
    value: &str,
    extra: &[char],
    min_len: usize,
    max_len: usize,
    rule: &str,
) -> FieldResult<()> {
    let len = value.chars().count();
    let mut chars = value.chars();
    let ok = (min_len..=max_len).contains(&len)
        && chars.next().is_some_and(is_ident_start)
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || extra.contains(&c));
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(field, rule))
    }
}

/// The rules below as ECMA-262 patterns, for the OpenAPI document (each is tested to
/// accept exactly what its function accepts).
pub const SERVICE_NAME_PATTERN: &str = "^[A-Za-z][A-Za-z0-9_-]{0,63}$";
pub const API_NAME_PATTERN: &str = "^[A-Za-z][A-Za-z0-9_]{2,254}$";
pub const APP_NAME_PATTERN: &str = "^[A-Za-z][A-Za-z0-9_]{2,63}$";
pub const API_PATH_PATTERN: &str = "^([/][A-Za-z0-9_%*.-]+){1,255}$";
/// What [`api_path`] refuses beyond [`API_PATH_PATTERN`] that a pattern can say: a `.` or
/// `..` segment, a `%` not followed by two hex digits. (It also refuses escapes that decode,
/// once or more, to a dot, slash, backslash or control byte: see
/// [`crate::paths::path_problem`].)
pub const API_PATH_REFUSED_PATTERN: &str =
    "(^|/)[.]{1,2}(/|$)|%([^0-9A-Fa-f]|[0-9A-Fa-f][^0-9A-Fa-f]|[0-9A-Fa-f]?$)";
pub const PROJECT_ID_PATTERN: &str = "^[A-Za-z0-9-]{1,64}$";
pub const USER_NAME_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$";
pub const PROJECT_NAME_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$";
pub const PASSWORD_CHARS: (usize, usize) = (8, 128);

/// A string no longer than `max` characters.
pub fn max_chars(field: &str, value: &str, max: usize) -> FieldResult<()> {
    if value.chars().count() > max {
        return Err(FieldError::new(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    Ok(())
}

/// Service names: a letter, then letters, digits, `_` or `-`; 1–64 characters.
pub fn service_name(value: &str) -> FieldResult<()> {
    check_name(
        "service_name",
        value,
        &['-'],
        1,
        64,
        &format!("must match {SERVICE_NAME_PATTERN}"),
    )
}

/// API names (spec §2.11): `^[A-Za-z][A-Za-z0-9_]{2,254}$`.
pub fn api_name(value: &str) -> FieldResult<()> {
    check_name(
        "api_name",
        value,
        &[],
        3,
        255,
        &format!("must match {API_NAME_PATTERN}"),
    )
}

/// App names (spec §2.1, adopted gateway rule): `^[A-Za-z][A-Za-z0-9_]{2,63}$`.
pub fn app_name(value: &str) -> FieldResult<()> {
    check_name(
        "app_name",
        value,
        &[],
        3,
        64,
        &format!("must match {APP_NAME_PATTERN}"),
    )
}

/// API paths (spec §2.11): at most 255 characters, `^([/][A-Za-z0-9_%*.-]+){1,255}$`.
pub fn api_path(field: &str, value: &str) -> FieldResult<()> {
    let rule = "must be at most 255 characters matching ^([/][A-Za-z0-9_%*.-]+){1,255}$";
    if value.is_empty() || value.len() > 255 || !value.starts_with('/') {
        return Err(FieldError::new(field, rule));
    }
    let ok = value[1..].split('/').all(|segment| {
        !segment.is_empty()
            && segment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_%*.-".contains(c))
    });
    if !ok {
        return Err(FieldError::new(field, rule));
    }
    // A path the gateway refuses to route would take no call.
    match crate::paths::path_problem(value) {
        None => Ok(()),
        Some(why) => Err(FieldError::new(
            field,
            format!("{why}: an API path is refused where the gateway would refuse its calls"),
        )),
    }
}

/// `api_url` accepts a path or an absolute http(s) URL whose path becomes the API path
/// (spec §7 #3). Returns the path.
pub fn api_url(value: &str) -> FieldResult<String> {
    if value.starts_with('/') {
        api_path("api_url", value)?;
        return Ok(value.to_owned());
    }
    if value.len() > 255 {
        return Err(FieldError::new("api_url", "must be at most 255 characters"));
    }
    let url = Url::parse(value).map_err(|_| {
        FieldError::new(
            "api_url",
            "must be a path like /v1/infers/x or an absolute http(s) URL",
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(FieldError::new("api_url", "scheme must be http or https"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(FieldError::new(
            "api_url",
            "must not have a query or fragment: the API path is the URL's path",
        ));
    }
    // The path as written, before the URL parser resolves dot segments and backslashes:
    // an API lands at the path its caller wrote or nowhere.
    let written = value
        .split_once("://")
        .map(|(_, rest)| rest)
        .and_then(|rest| rest.find(['/', '\\']).map(|at| &rest[at..]))
        .unwrap_or("");
    let path = url.path().trim_end_matches('/');
    api_path("api_url", written.trim_end_matches('/'))?;
    if path != written.trim_end_matches('/') {
        return Err(FieldError::new(
            "api_url",
            "must give its path in normal form (as the gateway routes it)",
        ));
    }
    Ok(path.to_owned())
}

/// An upstream base URL: http or https, a host, an optional port and base path; no
/// credentials, query or fragment. Returned normalised without a trailing `/`.
pub fn upstream(index: usize, value: &str) -> FieldResult<String> {
    let field = format!("upstreams[{index}]");
    let url = Url::parse(value.trim()).map_err(|e| {
        FieldError::new(
            &field,
            format!("must be an absolute URL like http://host:port/base ({e})"),
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(FieldError::new(&field, "scheme must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(FieldError::new(&field, "must name a host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(FieldError::new(&field, "must not carry credentials"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(FieldError::new(&field, "must not have a query or fragment"));
    }
    let normalised = url.as_str().trim_end_matches('/');
    if normalised.len() > MAX_UPSTREAM_URL {
        return Err(FieldError::new(
            &field,
            format!("must be at most {MAX_UPSTREAM_URL} bytes once normalised (percent-encoded)"),
        ));
    }
    Ok(normalised.to_owned())
}

/// The upstream list: 1 to 16 valid URLs.
pub fn upstreams(values: &[String]) -> FieldResult<Vec<String>> {
    if values.is_empty() || values.len() > MAX_UPSTREAMS {
        return Err(FieldError::new(
            "upstreams",
            format!("must list between 1 and {MAX_UPSTREAMS} URLs"),
        ));
    }
    values
        .iter()
        .enumerate()
        .map(|(i, v)| upstream(i, v))
        .collect()
}

/// The largest weight of an upstream.
pub const MAX_UPSTREAM_WEIGHT: i64 = 100;

/// `upstream_weights` of a service with `upstreams` upstreams: one weight per upstream, in
/// their order, each 1 to [`MAX_UPSTREAM_WEIGHT`].
pub fn upstream_weights(values: &[i64], upstreams: usize) -> FieldResult<Vec<u32>> {
    if values.len() != upstreams {
        return Err(FieldError::new(
            "upstream_weights",
            format!(
                "must give one weight per upstream: {} for {upstreams} upstreams",
                values.len()
            ),
        ));
    }
    values
        .iter()
        .enumerate()
        .map(|(i, &w)| {
            if (1..=MAX_UPSTREAM_WEIGHT).contains(&w) {
                Ok(w as u32)
            } else {
                Err(FieldError::new(
                    format!("upstream_weights[{i}]"),
                    format!("must be between 1 and {MAX_UPSTREAM_WEIGHT}, got {w}"),
                ))
            }
        })
        .collect()
}

/// A service timeout in milliseconds: 1 to 600000.
pub fn timeout_ms(value: i64) -> FieldResult<u64> {
    if value < 1 || value > MAX_TIMEOUT_MS as i64 {
        return Err(FieldError::new(
            "timeout_ms",
            format!("must be between 1 and {MAX_TIMEOUT_MS}"),
        ));
    }
    Ok(value as u64)
}

/// The most bytes of a service's `tls_ca_pem`.
pub const MAX_CA_PEM: usize = 256 * 1024;

/// `tls_ca_pem` of a service: PEM text of at most [`MAX_CA_PEM`] bytes holding one or more
/// `CERTIFICATE` blocks and nothing else.
pub fn tls_ca_pem(value: &str) -> FieldResult<()> {
    use rustls_pki_types::pem::{PemObject, SectionKind};
    let refuse = |rule: String| Err(FieldError::new("tls_ca_pem", rule));
    if value.len() > MAX_CA_PEM {
        return refuse(format!("must be at most {MAX_CA_PEM} bytes"));
    }
    let mut certificates = 0;
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(value.as_bytes()) {
        match section {
            Ok((SectionKind::Certificate, der)) if !der.is_empty() => certificates += 1,
            Ok((kind, _)) => {
                return refuse(format!("must hold CERTIFICATE blocks only, not {kind:?}"))
            }
            Err(e) => return refuse(format!("must be PEM text ({e})")),
        }
    }
    if certificates == 0 {
        return refuse("must hold at least one PEM CERTIFICATE block".into());
    }
    Ok(())
}

/// `health_check` of a service, as the API takes it: an object with `path` (required,
/// starting with `/`, at most 256 characters), `interval_ms` (1000–3600000, default 5000),
/// `timeout_ms` (1–`interval_ms`, default 1000 or the interval if shorter),
/// `healthy_threshold` and `unhealthy_threshold` (1–10, defaults 2 and 3) and
/// `expected_statuses` (1–16 codes from 100 to 599, default [200]).
pub fn health_check(value: &serde_json::Value) -> FieldResult<crate::model::HealthCheck> {
    let field = |name: &str| format!("health_check.{name}");
    let object = value
        .as_object()
        .ok_or_else(|| FieldError::new("health_check", "must be an object (or null)"))?;
    const KNOWN: [&str; 6] = [
        "path",
        "interval_ms",
        "timeout_ms",
        "healthy_threshold",
        "unhealthy_threshold",
        "expected_statuses",
    ];
    if let Some(unknown) = object.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(FieldError::new(
            field(unknown),
            "is not a health check setting",
        ));
    }
    let path = match object.get("path").and_then(|p| p.as_str()) {
        Some(p)
            if p.starts_with('/') && p.len() <= 256 && p.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            p.to_owned()
        }
        _ => {
            return Err(FieldError::new(
                field("path"),
                "must be a path starting with / of at most 256 visible ASCII characters",
            ))
        }
    };
    let number =
        |name: &str, range: std::ops::RangeInclusive<u64>, default: u64| match object.get(name) {
            None => Ok(default),
            Some(v) => v.as_u64().filter(|n| range.contains(n)).ok_or_else(|| {
                FieldError::new(
                    field(name),
                    format!(
                        "must be a whole number from {} to {}",
                        range.start(),
                        range.end()
                    ),
                )
            }),
        };
    let interval_ms = number("interval_ms", 1_000..=3_600_000, 5_000)?;
    let timeout_ms = number("timeout_ms", 1..=interval_ms, 1_000.min(interval_ms))?;
    let healthy_threshold = number("healthy_threshold", 1..=10, 2)? as u32;
    let unhealthy_threshold = number("unhealthy_threshold", 1..=10, 3)? as u32;
    let expected_statuses = match object.get("expected_statuses") {
        None => vec![200],
        Some(v) => {
            let codes: Option<Vec<u16>> = v.as_array().and_then(|list| {
                list.iter()
                    .map(|c| {
                        c.as_u64()
                            .filter(|c| (100..=599).contains(c))
                            .map(|c| c as u16)
                    })
                    .collect()
            });
            match codes {
                Some(codes) if (1..=16).contains(&codes.len()) => codes,
                _ => {
                    return Err(FieldError::new(
                        field("expected_statuses"),
                        "must be a list of 1 to 16 status codes from 100 to 599",
                    ))
                }
            }
        }
    };
    Ok(crate::model::HealthCheck {
        path,
        interval_ms,
        timeout_ms,
        healthy_threshold,
        unhealthy_threshold,
        expected_statuses,
    })
}

/// `retry` of a service: an object with `attempts` (1–16, default 2) and `on` (a list of
/// `connect`, `5xx` and `429`, default [`connect`]).
pub fn retry(value: &serde_json::Value) -> FieldResult<crate::model::Retry> {
    let object = value
        .as_object()
        .ok_or_else(|| FieldError::new("retry", "must be an object (or null)"))?;
    if let Some(unknown) = object
        .keys()
        .find(|k| !["attempts", "on"].contains(&k.as_str()))
    {
        return Err(FieldError::new(
            format!("retry.{unknown}"),
            "is not a retry setting",
        ));
    }
    let attempts = match object.get("attempts") {
        None => 2,
        Some(v) => v.as_u64().filter(|n| (1..=16).contains(n)).ok_or_else(|| {
            FieldError::new("retry.attempts", "must be a whole number from 1 to 16")
        })? as u32,
    };
    let on = match object.get("on") {
        None => vec!["connect".to_owned()],
        Some(v) => {
            let list: Option<Vec<String>> = v.as_array().and_then(|items| {
                items
                    .iter()
                    .map(|i| {
                        i.as_str()
                            .filter(|s| ["connect", "5xx", "429"].contains(s))
                            .map(str::to_owned)
                    })
                    .collect()
            });
            match list {
                Some(mut list) if list.len() <= 3 => {
                    list.sort();
                    list.dedup();
                    list
                }
                _ => {
                    return Err(FieldError::new(
                        "retry.on",
                        "must be a list of connect, 5xx and 429",
                    ))
                }
            }
        }
    };
    Ok(crate::model::Retry { attempts, on })
}

/// `load_balancing` of a service: `least_outstanding` or `round_robin`.
pub fn load_balancing(value: &str) -> FieldResult<crate::model::LoadBalancing> {
    crate::model::LoadBalancing::parse(value).ok_or_else(|| {
        FieldError::new("load_balancing", "must be least_outstanding or round_robin")
    })
}

/// `project_id` in a path (spec §2.0): 1–64 letters, digits and `-`.
pub fn project_id(value: &str) -> FieldResult<()> {
    let ok = (1..=64).contains(&value.len())
        && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(
            "project_id",
            "must be 1-64 letters, digits or '-'",
        ))
    }
}

/// IAM user names: 1–64 characters, letters, digits and `_ - . @`, starting with a letter
/// or digit.
pub fn user_name(value: &str) -> FieldResult<()> {
    let mut chars = value.chars();
    let ok = (1..=64).contains(&value.chars().count())
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_-.@".contains(c));
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(
            "user.name",
            "must be 1-64 letters, digits or _-.@, starting with a letter or digit",
        ))
    }
}

/// IAM project names: 1–64 letters, digits, `_` or `-`, starting with a letter or digit.
pub fn project_name(value: &str) -> FieldResult<()> {
    let mut chars = value.chars();
    let ok = (1..=64).contains(&value.chars().count())
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(
            "project.name",
            "must be 1-64 letters, digits, _ or -, starting with a letter or digit",
        ))
    }
}

/// Passwords: 8–128 characters.
pub fn password(field: &str, value: &str) -> FieldResult<()> {
    if !(8..=128).contains(&value.chars().count()) {
        return Err(FieldError::new(field, "must be 8-128 characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_paths() {
        assert!(api_path(
            "api_path",
            "/v1/infers/6f1c2b3a-4d5e-4f60-8a9b-0c1d2e3f4a5b"
        )
        .is_ok());
        assert!(api_path("api_path", "/a").is_ok());
        for bad in [
            "",
            "/",
            "a/b",
            "/a//b",
            "/a/",
            "/a b",
            "/a?x=1",
            "/v1/infers/s/%2e%2e",
            "/v1/infers/s/..",
            "/a/./b",
            "/a/%2",
            "/a/%2%65%2%65",
            "/a/%252f",
            "/a/%c0%ae",
        ] {
            assert!(api_path("api_path", bad).is_err(), "{bad:?}");
        }
        assert!(api_path("api_path", &format!("/{}", "a".repeat(255))).is_err());
    }

    #[test]
    fn api_urls() {
        assert_eq!(
            api_url("https://x.example.test/v1/infers/abc").expect("url"),
            "/v1/infers/abc"
        );
        assert_eq!(api_url("/v1/x").expect("path"), "/v1/x");
        assert!(api_url("ftp://x/y").is_err());
        assert!(api_url("https://x.example.test/").is_err());
        // What the URL parser would resolve or drop is refused, not rewritten.
        for bad in [
            "http://h/y/%2e%2e/w",
            "http://h/y/../w",
            "http://h/y\\..\\z",
            "http://h/y/z?q=1",
            "http://h/y/z#f",
            "http://h/y/..%3bx",
        ] {
            let err = api_url(bad).expect_err(bad);
            assert_eq!(err.field, "api_url", "{bad}");
        }
        assert_eq!(api_url("http://h:8/y/z/").expect("url"), "/y/z");
    }

    #[test]
    fn names() {
        assert!(api_name("infer_6f1c2b3a4d5e4f608a9b0c1d2e3f4a5b").is_ok());
        assert!(api_name("ab").is_err());
        assert!(api_name("1abc").is_err());
        assert!(app_name("app_demo01").is_ok());
        assert!(app_name("app-demo").is_err());
        assert!(service_name("svc-demo").is_ok());
        assert!(service_name("").is_err());
        assert!(service_name(&"a".repeat(65)).is_err());
    }

    #[test]
    fn upstream_rules() {
        assert_eq!(
            upstream(0, "http://127.0.0.1:8000/v1/").expect("ok"),
            "http://127.0.0.1:8000/v1"
        );
        assert_eq!(upstream(0, "http://h").expect("ok"), "http://h");
        for bad in [
            "h:80",
            "ftp://h/",
            "http://u:p@h/",
            "http://h/?q=1",
            "http://",
            "http://h/#f",
        ] {
            let err = upstream(2, bad).expect_err(bad);
            assert_eq!(err.field, "upstreams[2]");
        }
        assert!(upstreams(&[]).is_err());
        let long = format!("http://h/{}", "a".repeat(MAX_UPSTREAM_URL));
        let err = upstream(0, &long).expect_err("too long");
        assert!(err.rule.contains("at most 2048"), "{}", err.rule);
        // Short as written, long once percent-encoded.
        let encoded = format!("http://h/{}", "\u{e9}".repeat(1000));
        let err = upstream(0, &encoded).expect_err("too long encoded");
        assert!(err.rule.contains("once normalised"), "{}", err.rule);
        let longest = format!("http://h/{}", "a".repeat(MAX_UPSTREAM_URL - 9));
        assert!(upstream(0, &longest).is_ok());
    }
}

//! Calls from web pages of other origins (CORS, the Fetch standard): which origins may read
//! the gateway's answers, the answer to a browser's preflight, and the lines an answer gets.
//!
//! A request with an `Origin` line is always served by the general server (the fast path
//! hands it over), so these rules are applied in one place. The gateway never allows
//! credentials in the browser's sense (cookies): calls are signed or carry a key in a header
//! the page sets, which a page of another origin cannot read. A preflight is answered by the
//! gateway itself and never reaches an upstream; it opens nothing, since the call it
//! announces is authenticated as any other.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::Method;

/// How long a browser may keep a preflight's answer.
const MAX_AGE: &str = "600";
/// The gateway's own lines a page may read of an answer.
const EXPOSED: &str = "x-request-id, ratelimit, ratelimit-policy, retry-after";
/// The most origins one list holds.
pub const MAX_ORIGINS: usize = 64;

/// Origins whose pages may call the gateway and read its answers, each exactly
/// `scheme://host[:port]` as a browser sends it in `Origin`.
#[derive(Debug, Clone, Default)]
pub struct CorsOrigins {
    origins: Vec<HeaderValue>,
}

impl CorsOrigins {
    /// The list, each origin checked: `http` or `https`, a host, an optional port, nothing
    /// else (no path, no user, no `*`, no trailing `/`). Hosts are kept in lowercase.
    pub fn new<S: AsRef<str>>(origins: &[S]) -> Result<Self, String> {
        if origins.len() > MAX_ORIGINS {
            return Err(format!("at most {MAX_ORIGINS} CORS origins"));
        }
        let mut list = Vec::with_capacity(origins.len());
        for origin in origins {
            let origin = origin.as_ref();
            let normal = normal_origin(origin).ok_or_else(|| {
                format!(
                    "CORS origin {origin:?} must be scheme://host[:port] (http or https, \
                     no path, no trailing /)"
                )
            })?;
            let value = HeaderValue::from_str(&normal).map_err(|_| {
                format!("CORS origin {origin:?} has characters a header cannot hold")
            })?;
            if !list.contains(&value) {
                list.push(value);
            }
        }
        Ok(Self { origins: list })
    }

    pub fn is_empty(&self) -> bool {
        self.origins.is_empty()
    }

    /// The origins, as configured.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.origins.iter().filter_map(|o| o.to_str().ok())
    }

    /// The listed origin a request's one `Origin` line names (compared without regard to
    /// the case of scheme and host); none for several lines, `null`, or an unlisted one.
    fn allowed(&self, headers: &HeaderMap) -> Option<HeaderValue> {
        if self.origins.is_empty() {
            return None;
        }
        let mut lines = headers.get_all(header::ORIGIN).iter();
        let origin = lines.next()?;
        if lines.next().is_some() {
            return None;
        }
        let origin = origin.as_bytes();
        self.origins
            .iter()
            .find(|o| o.as_bytes().eq_ignore_ascii_case(origin))
            .cloned()
    }
}

/// `origin` as the browser's serialization of it, when it is `http(s)://host[:port]`.
fn normal_origin(origin: &str) -> Option<String> {
    let (scheme, rest) = origin.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let (host, port) = match rest.strip_prefix('[') {
        Some(v6) => {
            let (address, after) = v6.split_once(']')?;
            address.parse::<std::net::Ipv6Addr>().ok()?;
            (&rest[..address.len() + 2], after)
        }
        None => match rest.split_once(':') {
            Some((host, port)) => (host, &rest[host.len()..][..port.len() + 1]),
            None => (rest, ""),
        },
    };
    let host_ok = !host.is_empty()
        && (host.starts_with('[')
            || host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
    let port_ok = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| !p.is_empty() && p.len() <= 5 && p.parse::<u16>().is_ok());
    (host_ok && port_ok).then(|| format!("{scheme}://{}{port}", host.to_ascii_lowercase()))
}

/// What a request is to the CORS rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cross {
    /// No listed origin: the answer gets no CORS line (the upstream's are removed).
    No,
    /// A call from a page of a listed origin: its answer may be read there.
    Allowed(HeaderValue),
    /// A page asks whether it may make a call (OPTIONS with
    /// `Access-Control-Request-Method`): the gateway answers, allowing a listed origin
    /// (`Some`) and no other. Whatever the origin, a preflight reaches no upstream.
    Preflight(Option<HeaderValue>),
}

/// What the request of `method` with `headers` is to the CORS rules of `origins`.
pub(crate) fn classify(origins: &CorsOrigins, method: &Method, headers: &HeaderMap) -> Cross {
    let origin = origins.allowed(headers);
    let preflight = method == Method::OPTIONS
        && headers.contains_key(header::ORIGIN)
        && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    match (preflight, origin) {
        (true, origin) => Cross::Preflight(origin),
        (false, Some(origin)) => Cross::Allowed(origin),
        (false, None) => Cross::No,
    }
}

/// The CORS lines of an upstream: only the gateway decides who may read an answer.
const UPSTREAM_LINES: [HeaderName; 6] = [
    header::ACCESS_CONTROL_ALLOW_ORIGIN,
    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
    header::ACCESS_CONTROL_EXPOSE_HEADERS,
    header::ACCESS_CONTROL_ALLOW_METHODS,
    header::ACCESS_CONTROL_ALLOW_HEADERS,
    header::ACCESS_CONTROL_MAX_AGE,
];

/// The CORS lines of the answer to a call that was `cross`: a listed origin's get the
/// gateway's; any other's lose the upstream's, so no page of another origin reads an
/// answer (of an open API, say) because its upstream allows everyone. While origins are
/// listed, every answer varies by `Origin`.
pub(crate) fn answer(headers: &mut HeaderMap, cross: Cross, origins: &CorsOrigins) {
    match cross {
        Cross::Allowed(origin) => allow(headers, origin),
        _ => {
            for name in UPSTREAM_LINES {
                headers.remove(name);
            }
            if !origins.is_empty() {
                headers.append(header::VARY, HeaderValue::from_static("origin"));
            }
        }
    }
}

/// The lines of the gateway's answer (204) to a preflight from `origin` (none for an
/// origin not listed, which the browser then refuses): the method and headers it asked
/// for, when they are a method and header names; nothing else is echoed.
pub(crate) fn preflight(origin: Option<HeaderValue>, request: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    out.insert(
        header::VARY,
        HeaderValue::from_static(
            "origin, access-control-request-method, access-control-request-headers",
        ),
    );
    let Some(origin) = origin else {
        return out;
    };
    out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    let method = request
        .get(header::ACCESS_CONTROL_REQUEST_METHOD)
        .filter(|m| Method::from_bytes(m.as_bytes()).is_ok());
    if let Some(method) = method {
        out.insert(header::ACCESS_CONTROL_ALLOW_METHODS, method.clone());
    }
    let mut names = request
        .get_all(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|n| !n.is_empty())
        .peekable();
    if names.peek().is_some() {
        let mut list = Vec::new();
        let mut valid = true;
        for name in names {
            valid &= HeaderName::from_bytes(name).is_ok();
            if !list.is_empty() {
                list.extend_from_slice(b", ");
            }
            list.extend_from_slice(&name.to_ascii_lowercase());
        }
        if let Some(value) = valid.then(|| HeaderValue::from_bytes(&list).ok()).flatten() {
            out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, value);
        }
    }
    out.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static(MAX_AGE),
    );
    out
}

/// Makes an answer to a call from `origin` readable there: the upstream's own CORS lines
/// give way to the gateway's (one `Access-Control-Allow-Origin`, never credentials).
fn allow(headers: &mut HeaderMap, origin: HeaderValue) {
    for name in UPSTREAM_LINES {
        headers.remove(name);
    }
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSED),
    );
    headers.append(header::VARY, HeaderValue::from_static("origin"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn origins(list: &[&str]) -> CorsOrigins {
        CorsOrigins::new(list).expect("valid")
    }

    fn request(lines: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in lines {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_str(value).expect("value"),
            );
        }
        headers
    }

    #[test]
    fn origins_are_checked_and_kept_as_browsers_write_them() {
        let list = origins(&[
            "http://127.0.0.1:8081",
            "HTTPS://Console.Example",
            "http://[::1]:9",
        ]);
        assert_eq!(
            list.iter().collect::<Vec<_>>(),
            [
                "http://127.0.0.1:8081",
                "https://console.example",
                "http://[::1]:9"
            ]
        );
        for bad in [
            "*",
            "null",
            "127.0.0.1:8081",
            "ftp://host",
            "http://",
            "http://host/",
            "http://host/path",
            "http://user@host",
            "http://host:",
            "http://host:99999",
            "http://host:8o",
            "http://[::1",
            "http://[nope]:1",
            "http://ho st",
            "http://host\n",
            "http://*.example",
        ] {
            let err = CorsOrigins::new(&[bad]).expect_err(bad);
            assert!(err.contains("CORS origin"), "{err}");
        }
        let many: Vec<String> = (0..=MAX_ORIGINS).map(|i| format!("http://h{i}")).collect();
        assert!(CorsOrigins::new(&many).is_err());
    }

    #[test]
    fn only_one_listed_origin_is_allowed() {
        let list = origins(&["http://127.0.0.1:8081"]);
        let get = Method::GET;
        let cases = [
            (vec![], Cross::No),
            (vec![("origin", "http://evil.example")], Cross::No),
            (vec![("origin", "null")], Cross::No),
            (vec![("origin", "http://127.0.0.1:8081/")], Cross::No),
            (vec![("origin", "http://127.0.0.1:80811")], Cross::No),
            (
                vec![
                    ("origin", "http://127.0.0.1:8081"),
                    ("origin", "http://127.0.0.1:8081"),
                ],
                Cross::No,
            ),
            (
                vec![("origin", "HTTP://127.0.0.1:8081")],
                Cross::Allowed(HeaderValue::from_static("http://127.0.0.1:8081")),
            ),
        ];
        for (lines, expected) in cases {
            assert_eq!(
                classify(&list, &get, &request(&lines)),
                expected,
                "{lines:?}"
            );
        }
        // Nothing is allowed with no list.
        let none = CorsOrigins::default();
        let from_console = request(&[("origin", "http://127.0.0.1:8081")]);
        assert_eq!(classify(&none, &get, &from_console), Cross::No);
        // OPTIONS is a preflight only when it asks for a method.
        assert!(matches!(
            classify(&list, &Method::OPTIONS, &from_console),
            Cross::Allowed(_)
        ));
        let asking = request(&[
            ("origin", "http://127.0.0.1:8081"),
            ("access-control-request-method", "POST"),
        ]);
        assert!(matches!(
            classify(&list, &Method::OPTIONS, &asking),
            Cross::Preflight(Some(_))
        ));
        // Any origin's preflight is one, answered by the gateway, allowing nothing.
        let stranger = request(&[
            ("origin", "http://evil.example"),
            ("access-control-request-method", "POST"),
        ]);
        let options = Method::OPTIONS;
        assert_eq!(classify(&list, &options, &stranger), Cross::Preflight(None));
        assert_eq!(classify(&none, &options, &asking), Cross::Preflight(None));
    }

    #[test]
    fn preflights_echo_only_methods_and_header_names() {
        let origin = HeaderValue::from_static("http://127.0.0.1:8081");
        let asked = request(&[
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "Authorization, x-sdk-date,content-type",
            ),
        ]);
        let answer = preflight(Some(origin.clone()), &asked);
        assert_eq!(answer[header::ACCESS_CONTROL_ALLOW_ORIGIN], origin);
        assert_eq!(answer[header::ACCESS_CONTROL_ALLOW_METHODS], "POST");
        assert_eq!(
            answer[header::ACCESS_CONTROL_ALLOW_HEADERS],
            "authorization, x-sdk-date, content-type"
        );
        assert!(!answer.contains_key(header::ACCESS_CONTROL_ALLOW_CREDENTIALS));
        let hostile = request(&[
            ("access-control-request-method", "PO ST"),
            ("access-control-request-headers", "ok, bad name"),
        ]);
        let answer = preflight(Some(origin), &hostile);
        assert!(!answer.contains_key(header::ACCESS_CONTROL_ALLOW_METHODS));
        assert!(!answer.contains_key(header::ACCESS_CONTROL_ALLOW_HEADERS));
        // Another origin's preflight allows nothing.
        let answer = preflight(None, &asked);
        assert!(answer
            .keys()
            .all(|name| !name.as_str().starts_with("access-control-")));
    }

    #[test]
    fn an_upstreams_cors_lines_give_way() {
        let upstream = || {
            request(&[
                ("access-control-allow-origin", "*"),
                ("access-control-allow-credentials", "true"),
                ("access-control-expose-headers", "x-secret"),
                ("access-control-allow-methods", "*"),
                ("vary", "accept-encoding"),
            ])
        };
        // Another origin's page reads nothing the upstream allows.
        let list = origins(&["http://127.0.0.1:8081"]);
        for configured in [&list, &CorsOrigins::default()] {
            let mut stranger = upstream();
            answer(&mut stranger, Cross::No, configured);
            assert!(stranger
                .keys()
                .all(|n| !n.as_str().starts_with("access-control-")));
            let varies = stranger.get_all(header::VARY).iter().any(|v| v == "origin");
            assert_eq!(varies, !configured.is_empty());
        }
        let mut answer = upstream();
        let origin = HeaderValue::from_static("http://127.0.0.1:8081");
        super::answer(&mut answer, Cross::Allowed(origin), &list);
        assert!(!answer.contains_key(header::ACCESS_CONTROL_ALLOW_METHODS));
        assert_eq!(
            answer
                .get_all(header::ACCESS_CONTROL_ALLOW_ORIGIN)
                .iter()
                .collect::<Vec<_>>(),
            ["http://127.0.0.1:8081"]
        );
        assert!(!answer.contains_key(header::ACCESS_CONTROL_ALLOW_CREDENTIALS));
        assert_eq!(answer[header::ACCESS_CONTROL_EXPOSE_HEADERS], EXPOSED);
        assert_eq!(
            answer.get_all(header::VARY).iter().collect::<Vec<_>>(),
            ["accept-encoding", "origin"]
        );
    }

    proptest! {
        /// Whatever an `Origin` line holds, only a listed origin is allowed, and reading it
        /// never panics; whatever a configured origin holds, it is refused or kept as a
        /// valid header value.
        #[test]
        fn any_origin_is_read_without_panic(origin in proptest::collection::vec(any::<u8>(), 0..60)) {
            let list = origins(&["http://127.0.0.1:8081"]);
            if let Ok(value) = HeaderValue::from_bytes(&origin) {
                let mut headers = HeaderMap::new();
                headers.insert(header::ORIGIN, value);
                if let Cross::Allowed(allowed) = classify(&list, &Method::GET, &headers) {
                    prop_assert!(allowed.as_bytes().eq_ignore_ascii_case(&origin));
                }
            }
            let text = String::from_utf8_lossy(&origin);
            if let Ok(list) = CorsOrigins::new(&[text.as_ref()]) {
                prop_assert!(list.iter().all(|o| o.starts_with("http")));
            }
        }
    }
}

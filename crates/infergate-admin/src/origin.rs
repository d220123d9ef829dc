//! Where a request to the admin listener comes from, as far as browsers tell: writes sent by
//! pages of other sites are refused (a page may post a "simple" request anywhere, with no
//! preflight: a login with wrong passwords locks the user out), and what needs no credential
//! but is meant for this host only (`/metrics` without a token) is not served under a name
//! a page could have rebound to 127.0.0.1.

use axum::extract::Request;
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, IamError};

/// The authority the client addressed: the URI's (HTTP/2, absolute form) or `Host`.
pub(crate) fn authority(req: &Request) -> Option<&str> {
    req.uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| req.headers().get(header::HOST)?.to_str().ok())
}

/// Why a browser's request is from a page of another origin, if it is one that changes
/// something: by `Sec-Fetch-Site` where the browser sends it, else by an `Origin` other
/// than the addressed authority (the rule of Go's `http.CrossOriginProtection`). Reads
/// (`GET`, `HEAD`, `OPTIONS`) and clients that are no browser (neither header) pass.
pub(crate) fn from_another_site(
    method: &Method,
    headers: &HeaderMap,
    authority: Option<&str>,
) -> Option<String> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return None;
    }
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("");
        return (!(site.eq_ignore_ascii_case("same-origin") || site.eq_ignore_ascii_case("none")))
            .then(|| format!("{method} from a page of another site (Sec-Fetch-Site: {site})"));
    }
    let origin = headers.get(header::ORIGIN)?;
    let text = origin.to_str().unwrap_or("");
    let host = text.split_once("://").map(|(_, host)| host);
    let same = host
        .zip(authority)
        .is_some_and(|(host, authority)| host.eq_ignore_ascii_case(authority));
    (!same).then(|| format!("{method} from a page of another origin (Origin: {text})"))
}

/// Refuses writes that pages of other sites send (403, in the error shape of the API asked).
pub(crate) async fn refuse_other_sites(req: Request, next: Next) -> Response {
    if let Some(why) = from_another_site(req.method(), req.headers(), authority(&req)) {
        if req.uri().path().starts_with("/v3") {
            return IamError::Forbidden(why).into_response();
        }
        return ApiError::Forbidden(why).into_response();
    }
    next.run(req).await
}

/// Whether an addressed authority names this host the way only a local client does:
/// `localhost` or a loopback address, with or without a port; none given (HTTP/1.0) too.
pub(crate) fn names_this_host_locally(authority: Option<&str>) -> bool {
    let Some(authority) = authority else {
        return true;
    };
    let host = match authority.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((ip, _)) => ip,
            None => return false,
        },
        None => authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).expect("value"));
        }
        map
    }

    #[test]
    fn writes_from_other_sites_are_told_apart() {
        let here = Some("127.0.0.1:8081");
        let post = Method::POST;
        for passes in [
            &[][..],
            &[("sec-fetch-site", "same-origin")],
            &[("sec-fetch-site", "none")],
            &[
                ("sec-fetch-site", "same-origin"),
                ("origin", "https://evil.example"),
            ],
            &[("origin", "http://127.0.0.1:8081")],
            &[("origin", "HTTP://127.0.0.1:8081")],
        ] {
            assert_eq!(
                from_another_site(&post, &headers(passes), here),
                None,
                "{passes:?}"
            );
        }
        for refused in [
            &[("sec-fetch-site", "cross-site")][..],
            &[("sec-fetch-site", "same-site")],
            &[("sec-fetch-site", "")],
            &[
                ("sec-fetch-site", "cross-site"),
                ("origin", "http://127.0.0.1:8081"),
            ],
            &[("origin", "https://evil.example")],
            &[("origin", "null")],
            &[("origin", "")],
            &[("origin", "http://127.0.0.1:8082")],
            &[("origin", "http://127.0.0.1")],
            &[("origin", "http://127.0.0.1:8081.evil.example")],
        ] {
            assert!(
                from_another_site(&post, &headers(refused), here).is_some(),
                "{refused:?}"
            );
            for method in [Method::PUT, Method::DELETE, Method::PATCH] {
                assert!(from_another_site(&method, &headers(refused), here).is_some());
            }
            for read in [Method::GET, Method::HEAD, Method::OPTIONS] {
                assert_eq!(from_another_site(&read, &headers(refused), here), None);
            }
        }
        // No authority to compare with: an Origin cannot be shown to be this one.
        let origin = headers(&[("origin", "http://127.0.0.1:8081")]);
        assert!(from_another_site(&post, &origin, None).is_some());
    }

    #[test]
    fn only_loopback_names_are_local() {
        for local in [
            None,
            Some("localhost"),
            Some("LOCALHOST:8081"),
            Some("127.0.0.1"),
            Some("127.0.0.1:8081"),
            Some("127.9.9.9:1"),
            Some("[::1]:8081"),
            Some("[::1]"),
            Some("[::ffff:127.0.0.1]:80"),
        ] {
            assert!(names_this_host_locally(local), "{local:?}");
        }
        for other in [
            Some("evil.example"),
            Some("evil.example:8081"),
            Some("localhost.evil.example"),
            Some("127.0.0.1.nip.io:8081"),
            Some("10.0.0.5:8081"),
            Some("[::1"),
            Some("::1"),
            Some(""),
            Some("0.0.0.0:8081"),
        ] {
            assert!(!names_this_host_locally(other), "{other:?}");
        }
    }
}

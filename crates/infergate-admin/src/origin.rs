//! Where a request to the admin listener comes from, as far as browsers tell: writes sent by
//! pages of other sites are refused (a page may post a "simple" request anywhere, with no
//! preflight: a login with wrong passwords locks the user out), and so are writes of pages
//! under a name this node was not given (a page whose name an attacker's DNS points at
//! 127.0.0.1 is same-origin to itself: only the name tells). What needs no credential but is
//! meant for this host only (`/metrics` without a token) is not served under such a name.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, IamError};
use crate::AdminState;

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

/// Why a browser's write is refused: it is from a page of another site
/// ([`from_another_site`]), or from a page under a host name other than an IP address,
/// `localhost` or one of `names` (the node's own: `admin_hosts`, the machine's name, the
/// public URL's host), as a name rebound to this node would be. Clients that are no browser
/// (neither `Sec-Fetch-Site` nor `Origin`) pass.
pub(crate) fn refused_page_write(
    method: &Method,
    headers: &HeaderMap,
    authority: Option<&str>,
    names: &[String],
) -> Option<String> {
    if let Some(why) = from_another_site(method, headers, authority) {
        return Some(why);
    }
    let browser = headers.contains_key("sec-fetch-site") || headers.contains_key(header::ORIGIN);
    if !browser || matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return None;
    }
    let host = authority.and_then(host_part).unwrap_or("");
    let known = host.parse::<std::net::IpAddr>().is_ok()
        || host.eq_ignore_ascii_case("localhost")
        || names
            .iter()
            .any(|name| name.eq_ignore_ascii_case(host.trim_end_matches('.')));
    (!known).then(|| {
        format!(
            "{method} from a page under the name {host:?}, which is not one of this node's \
             (add it to admin_hosts)"
        )
    })
}

/// The host of an authority (`host[:port]`, `[v6][:port]`), without brackets or port.
fn host_part(authority: &str) -> Option<&str> {
    match authority.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map(|(ip, _)| ip),
        None => Some(
            authority
                .rsplit_once(':')
                .map_or(authority, |(host, _)| host),
        ),
    }
}

/// Refuses writes that pages of other sites, or of names this node was not given, send
/// (403, in the error shape of the API asked).
pub(crate) async fn refuse_other_sites(
    State(state): State<Arc<AdminState>>,
    req: Request,
    next: Next,
) -> Response {
    let names = &state.settings.admin_hosts;
    if let Some(why) = refused_page_write(req.method(), req.headers(), authority(&req), names) {
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
    let Some(host) = host_part(authority) else {
        return false;
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
    fn pages_write_only_under_this_nodes_names() {
        let names = ["console.example".to_owned()];
        let post = Method::POST;
        // A page whose name was rebound to this node: same-origin to itself.
        let rebound = |host: &str| {
            let origin = format!("http://{host}");
            let marks = headers(&[("sec-fetch-site", "same-origin"), ("origin", &origin)]);
            refused_page_write(&post, &marks, Some(host), &names)
        };
        for known in [
            "127.0.0.1:8081",
            "10.0.0.5:8081",
            "[::1]:8081",
            "localhost:8081",
            "console.example",
            "Console.Example:443",
            "console.example.:8081",
        ] {
            assert_eq!(rebound(known), None, "{known}");
        }
        for unknown in [
            "evil.example:8081",
            "127.0.0.1.nip.io:8081",
            "127.1:8081",
            "localhost.evil.example",
        ] {
            assert!(rebound(unknown).is_some(), "{unknown}");
        }
        // Clients that are no browser, and reads, pass under any name.
        assert_eq!(
            refused_page_write(&post, &headers(&[]), Some("evil.example"), &names),
            None
        );
        let marks = headers(&[("sec-fetch-site", "same-origin")]);
        assert_eq!(
            refused_page_write(&Method::GET, &marks, Some("evil.example"), &names),
            None
        );
        // A browser's write with no name to check is not taken for a local one.
        assert!(refused_page_write(&post, &marks, None, &names).is_some());
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

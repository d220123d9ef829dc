//! Where a request to the admin listener comes from, as far as browsers tell: writes sent by
//! pages of other sites are refused (a page may post a "simple" request anywhere, with no
//! preflight: a login with wrong passwords locks the user out), and so are writes of pages
//! under a name this node was not given (a page whose name an attacker's DNS points at
//! 127.0.0.1 is same-origin to itself: only the name tells). What needs no credential but is
//! meant for this host only (`/metrics` without a token) is not served under such a name.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use infergate_core::Secret;

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

/// The address of the client of an admin connection, which the server puts into each
/// request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::SocketAddr);

/// Who may read `/metrics`. The metrics name every project's APIs, apps and upstreams, and
/// the admin listener also serves tenants: with a metrics token, whoever sends it as a bearer
/// token; without one, clients on this host only, that address it as `localhost` or a
/// loopback address (not a name a web page could have pointed at 127.0.0.1).
pub(crate) fn metrics_access(
    token: Option<&Secret>,
    peer: Option<Peer>,
    authority: Option<&str>,
    authorization: Option<&HeaderValue>,
) -> Result<(), ApiError> {
    match token {
        Some(token) => {
            let sent = authorization
                .and_then(|value| value.to_str().ok())
                .and_then(|value| {
                    let (scheme, credentials) = value.split_once(' ')?;
                    scheme
                        .eq_ignore_ascii_case("bearer")
                        .then(|| credentials.trim())
                });
            match sent {
                Some(sent) if Secret::new(sent) == *token => Ok(()),
                Some(_) => Err(ApiError::TokenInvalid(
                    "the bearer token is not the metrics token".into(),
                )),
                None => Err(ApiError::TokenInvalid(
                    "/metrics needs Authorization: Bearer <metrics_token>".into(),
                )),
            }
        }
        None if !peer.is_some_and(|Peer(peer)| peer.ip().to_canonical().is_loopback()) => {
            Err(ApiError::Forbidden(
                "read /metrics from another host: set metrics_token and send it as a bearer token"
                    .into(),
            ))
        }
        None if !names_this_host_locally(authority) => Err(ApiError::Forbidden(
            "read /metrics under a name other than localhost or a loopback address: set \
             metrics_token and send it as a bearer token"
                .into(),
        )),
        None => Ok(()),
    }
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

#[cfg(test)]
mod metrics_access_tests {
    use super::{metrics_access, Peer};
    use crate::error::ApiError;
    use axum::http::HeaderValue;
    use infergate_core::Secret;

    fn peer(addr: &str) -> Option<Peer> {
        Some(Peer(addr.parse().expect("address")))
    }

    #[test]
    fn without_a_token_only_this_host_reads_metrics() {
        for local in [
            "127.0.0.1:5000",
            "127.8.9.10:5000",
            "[::1]:5000",
            "[::ffff:127.0.0.1]:5000",
        ] {
            for named in [
                Some("127.0.0.1:8081"),
                Some("localhost:8081"),
                Some("[::1]:8081"),
                None,
            ] {
                assert!(
                    metrics_access(None, peer(local), named, None).is_ok(),
                    "{local}"
                );
            }
            // A page of another name rebound to 127.0.0.1 reaches it from here too.
            for named in ["evil.example:8081", "evil.example", "127.0.0.1.nip.io:8081"] {
                let refused = metrics_access(None, peer(local), Some(named), None);
                assert!(matches!(refused, Err(ApiError::Forbidden(_))), "{named}");
            }
        }
        for remote in [
            "10.0.0.5:5000",
            "[::ffff:10.0.0.5]:5000",
            "[fe80::1]:5000",
            "0.0.0.0:1",
        ] {
            let refused =
                metrics_access(None, peer(remote), Some("127.0.0.1:8081"), None).expect_err(remote);
            assert!(matches!(refused, ApiError::Forbidden(_)), "{remote}");
        }
        // A request the server did not mark with its peer is not taken for a local one.
        assert!(metrics_access(None, None, None, None).is_err());
    }

    #[test]
    fn with_a_token_every_client_must_send_it() {
        let token = Secret::new("0123456789abcdef");
        let check = |peer_addr: &str, value: Option<&str>| {
            let value = value.map(|v| HeaderValue::from_str(v).expect("value"));
            metrics_access(
                Some(&token),
                peer(peer_addr),
                Some("gw.example"),
                value.as_ref(),
            )
        };
        assert!(check("10.0.0.5:1", Some("Bearer 0123456789abcdef")).is_ok());
        assert!(check("10.0.0.5:1", Some("bearer 0123456789abcdef")).is_ok());
        for refused in [
            None,
            Some("Bearer"),
            Some("Bearer "),
            Some("Bearer 0123456789abcde"),
            Some("Bearer 0123456789abcdef0"),
            Some("Basic 0123456789abcdef"),
            Some("Bearer0123456789abcdef"),
            Some("0123456789abcdef"),
        ] {
            // Loopback clients are asked for it too once it is set.
            let err = check("127.0.0.1:1", refused).expect_err(refused.unwrap_or("none"));
            assert!(matches!(err, ApiError::TokenInvalid(_)), "{refused:?}");
        }
        let odd = HeaderValue::from_bytes(b"Bearer \xff\xfe").expect("opaque bytes");
        assert!(metrics_access(Some(&token), peer("127.0.0.1:1"), None, Some(&odd)).is_err());
    }
}

//! The web console at `/console/`: plain JavaScript modules embedded in the binary (no
//! build step, no framework, nothing fetched from elsewhere; uPlot, vendored, draws the
//! charts). Every action is a call of the
//! public management API with the signed-in user's token, which lives in the page's session
//! storage: the console has no powers of its own and sets no cookie.

use std::sync::Arc;

use axum::extract::Path;
use axum::response::Redirect;
use axum::routing::get;
use axum::Router;

use crate::docs::embedded;

/// (name, content type, bytes) of every file served under `/console/`.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../assets/console/index.html"),
    ),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/console/console.js"),
    ),
    (
        "console.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/console/console.css"),
    ),
    // uPlot 1.6.32 (MIT, `uPlot.LICENSE`), from the npm registry's `uplot` package, as
    // published: the usage page's charts.
    (
        "uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/console/uPlot.iife.min.js"),
    ),
    (
        "uPlot.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/console/uPlot.min.css"),
    ),
];

/// This origin's scripts and styles alone, no inline script or style, calls to this origin
/// and the gateway's (`gateway`, the origin of its public URL: the request tester) alone,
/// never framed, no form posted anywhere.
fn csp(gateway: Option<&str>) -> String {
    let gateway = gateway.map(|g| format!(" {g}")).unwrap_or_default();
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'{gateway}; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'"
    )
}

/// The origin (`scheme://host[:port]`, as a browser writes it) of an absolute http(s) URL,
/// when it has one that a policy may name (nothing that would end or add a directive).
fn origin_of(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return None;
    }
    let origin = parsed.origin().ascii_serialization();
    let safe = origin
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'/' | b'.' | b'-' | b'[' | b']'));
    safe.then_some(origin)
}

/// `/` and `/console` lead to `/console/`, which serves the page; its policy lets it call
/// the gateway at `public_url`.
pub fn routes<S: Clone + Send + Sync + 'static>(public_url: &str) -> Router<S> {
    let policy: Arc<str> = csp(origin_of(public_url).as_deref()).into();
    let page = policy.clone();
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/") }))
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route(
            "/console/",
            get(move || async move { embedded(FILES, &page, "index.html") }),
        )
        .route(
            "/console/{name}",
            get(move |Path(name): Path<String>| async move { embedded(FILES, &policy, &name) }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_files_it_serves_and_no_inline_code() {
        let (_, _, page) = FILES[0];
        let page = std::str::from_utf8(page).expect("utf-8");
        let mut references = 0;
        for attr in ["src=\"", "href=\""] {
            for rest in page.split(attr).skip(1) {
                let name = rest.split('"').next().unwrap_or_default();
                if name.starts_with("data:") {
                    continue;
                }
                assert!(FILES.iter().any(|(n, _, _)| *n == name), "{name}");
                references += 1;
            }
        }
        assert_eq!(references, FILES.len() - 1);
        assert!(!page.contains("<script>") && !page.contains("style="));
        let handler = page.split(" on").skip(1).any(|rest| {
            rest.split_once('=')
                .is_some_and(|(name, _)| name.chars().all(|c| c.is_ascii_lowercase()))
        });
        assert!(!handler, "no inline handler");
    }

    #[test]
    fn the_policy_names_the_gateways_origin_alone() {
        assert_eq!(
            origin_of("http://127.0.0.1:8080").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(
            origin_of("https://models.example/base?x").as_deref(),
            Some("https://models.example")
        );
        assert_eq!(
            origin_of("http://[::1]:8080/").as_deref(),
            Some("http://[::1]:8080")
        );
        for bad in [
            "ftp://x",
            "http://",
            "http://a b",
            "http://a;script-src *",
            "nope",
        ] {
            assert_eq!(origin_of(bad), None, "{bad}");
        }
        let policy = csp(origin_of("https://models.example/v1").as_deref());
        assert!(
            policy.contains("connect-src 'self' https://models.example;"),
            "{policy}"
        );
        assert!(csp(None).contains("connect-src 'self';"));
    }

    #[test]
    fn the_script_never_parses_api_text_as_html() {
        let (_, _, script) = FILES[1];
        let script = std::str::from_utf8(script).expect("utf-8");
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!script.contains(sink), "{sink}");
        }
    }
}

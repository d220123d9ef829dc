//! The web console at `/console/`: plain JavaScript modules embedded in the binary (no
//! build step, no framework, nothing fetched from elsewhere). Every action is a call of the
//! public management API with the signed-in user's token, which lives in the page's session
//! storage: the console has no powers of its own and sets no cookie.

use axum::extract::Path;
use axum::response::{Redirect, Response};
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
];

/// This origin's scripts and styles alone, no inline script or style, calls to this origin
/// alone, never framed, no form posted anywhere.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

fn file(name: &str) -> Response {
    embedded(FILES, CSP, name)
}

/// `/` and `/console` lead to `/console/`, which serves the page.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/") }))
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route("/console/", get(|| async { file("index.html") }))
        .route(
            "/console/{name}",
            get(|Path(name): Path<String>| async move { file(&name) }),
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
        assert_eq!(references, 2);
        assert!(!page.contains("<script>") && !page.contains("style="));
        let handler = page.split(" on").skip(1).any(|rest| {
            rest.split_once('=')
                .is_some_and(|(name, _)| name.chars().all(|c| c.is_ascii_lowercase()))
        });
        assert!(!handler, "no inline handler");
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

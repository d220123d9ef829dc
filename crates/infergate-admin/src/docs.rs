//! The interactive reference of the management API at `/docs/`: Swagger UI (vendored from
//! npm's `swagger-ui-dist`, see `assets/docs/README.md`) embedded in the binary, reading this
//! server's `/openapi.json`. No file is fetched from anywhere else; the page runs under a
//! Content-Security-Policy that allows this origin alone.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

/// (name, content type, bytes) of every file served under `/docs/`.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../assets/docs/index.html"),
    ),
    (
        "init.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/docs/init.js"),
    ),
    (
        "swagger-ui-bundle.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/docs/swagger-ui-bundle.js"),
    ),
    (
        "swagger-ui.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/docs/swagger-ui.css"),
    ),
    (
        "LICENSE",
        "text/plain; charset=utf-8",
        include_bytes!("../assets/docs/LICENSE"),
    ),
];

/// Scripts and styles from this origin only (Swagger UI sets inline styles on elements);
/// requests ("Try it out") to this origin only; never framed.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; font-src 'self' data:; connect-src 'self'; \
                   base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn file(name: &str) -> Response {
    embedded(FILES, CSP, name)
}

/// File `name` of `files` (embedded in the binary), under `csp`, never framed, its type
/// never sniffed; 404 for a name not among them.
pub(crate) fn embedded(
    files: &[(&str, &'static str, &'static [u8])],
    csp: &str,
    name: &str,
) -> Response {
    let Some((_, content_type, bytes)) = files.iter().find(|(n, _, _)| *n == name) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mut response = (*bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // A policy that is no header value falls back to allowing nothing.
    let policy = HeaderValue::from_str(csp)
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"));
    headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    response
}

/// `/docs` leads to `/docs/`, which serves the page.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/docs", get(|| async { Redirect::to("/docs/") }))
        .route("/docs/", get(|| async { file("index.html") }))
        .route(
            "/docs/{name}",
            get(|Path(name): Path<String>| async move { file(&name) }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    /// The vendored files are the npm release's, byte for byte.
    #[test]
    fn vendored_files_are_the_released_ones() {
        let sum = |name: &str| {
            let (_, _, bytes) = FILES.iter().find(|(n, _, _)| *n == name).expect(name);
            hex::encode(Sha256::digest(bytes))
        };
        assert_eq!(
            sum("swagger-ui-bundle.js"),
            "e6a898692f2d768e807c3ba4626068a69a2c5dd960dd6c76f3e4d3a3de180af2"
        );
        assert_eq!(
            sum("swagger-ui.css"),
            "5ed08757e53da3e026d6cbecc61fe5d43585c9560b302d534ad56692519a273d"
        );
    }

    #[test]
    fn the_page_loads_only_files_it_serves() {
        let (_, _, page) = FILES[0];
        let page = std::str::from_utf8(page).expect("utf-8");
        for reference in page.split(['"', '\'']).filter(|s| s.starts_with("./")) {
            let name = reference.trim_start_matches("./");
            assert!(FILES.iter().any(|(n, _, _)| *n == name), "{name}");
        }
        assert!(!page.contains("<script>"), "no inline script");
    }
}

//! The OpenAPI document is generated from the handlers; this checks it against the list of
//! operations the plane must serve, and that every documented route is really routed.

use axum::http::Method;
use serde_json::Value;

use crate::harness::TestApp;

/// (method, path) of every operation this plane serves.
const OPERATIONS: &[(&str, &str)] = &[
    ("post", "/v1/{project_id}/services"),
    ("get", "/v1/{project_id}/services"),
    ("get", "/v1/{project_id}/services/{service_id}"),
    ("put", "/v1/{project_id}/services/{service_id}"),
    ("delete", "/v1/{project_id}/services/{service_id}"),
    ("post", "/v1/{project_id}/app-auth/{service_id}/apis"),
    (
        "get",
        "/v1/{project_id}/app-auth/{service_id}/apis/{api_id}",
    ),
    (
        "get",
        "/v1/{project_id}/services/{service_id}/app-auth-apis",
    ),
    (
        "delete",
        "/v1/{project_id}/services/{service_id}/app-auth-apis/{api_id}",
    ),
    ("post", "/v1/{project_id}/app-auth/apps"),
    ("get", "/v1/{project_id}/app-auth/apps"),
    ("get", "/v1/{project_id}/app-auth/usage"),
    ("get", "/v1/{project_id}/app-auth/apps/{app_id}"),
    ("get", "/v1/{project_id}/app-auth/apps/{app_id}/exists"),
    ("delete", "/v1/{project_id}/app-auth/apps/{app_id}"),
    ("put", "/v1/{project_id}/app-auth/apps/{app_id}/app-secret"),
    ("post", "/v1/{project_id}/app-auth/apps/{app_id}/app-code"),
    (
        "put",
        "/v1/{project_id}/app-auth/apps/{app_id}/app-code/{app_code}",
    ),
    (
        "delete",
        "/v1/{project_id}/app-auth/apps/{app_id}/app-code/{app_code}",
    ),
    ("get", "/v1/{project_id}/app-auth/apps/{app_id}/auth-apis"),
    (
        "post",
        "/v1/{project_id}/services/{service_id}/app-auth-api",
    ),
    (
        "post",
        "/v1/{project_id}/services/{service_id}/app-auth-apis/{api_id}/app-auth-api",
    ),
    (
        "put",
        "/v1/{project_id}/services/{service_id}/app-auth-apis/{api_id}/app-auth-api",
    ),
    (
        "delete",
        "/v1/{project_id}/services/{service_id}/app-auth-apis/{api_id}/app-auth-api",
    ),
    (
        "delete",
        "/v1/{project_id}/app-auth/{service_id}/apis/{api_id}/auths",
    ),
    (
        "get",
        "/v1/{project_id}/services/{service_id}/app-auth-apis/{api_id}/api-auths",
    ),
    ("get", "/v1/{project_id}/services/{service_id}/api-auths"),
    ("post", "/v3/auth/tokens"),
    ("get", "/v3/auth/tokens"),
    ("delete", "/v3/auth/tokens"),
    ("post", "/v3/projects"),
    ("get", "/v3/projects"),
    ("get", "/v3/projects/{project_id}"),
    ("post", "/v3/users"),
    ("get", "/v3/users"),
    ("get", "/v3/users/{user_id}"),
    ("patch", "/v3/users/{user_id}"),
    ("delete", "/v3/users/{user_id}"),
    ("post", "/v3/users/{user_id}/password"),
    ("get", "/v3/roles"),
    (
        "put",
        "/v3/projects/{project_id}/users/{user_id}/roles/{role_id}",
    ),
    (
        "delete",
        "/v3/projects/{project_id}/users/{user_id}/roles/{role_id}",
    ),
    ("get", "/v3/projects/{project_id}/users/{user_id}/roles"),
    ("post", "/v3.0/OS-CREDENTIAL/credentials"),
    ("get", "/v3.0/OS-CREDENTIAL/credentials"),
    ("get", "/v3.0/OS-CREDENTIAL/credentials/{access_key}"),
    ("put", "/v3.0/OS-CREDENTIAL/credentials/{access_key}"),
    ("delete", "/v3.0/OS-CREDENTIAL/credentials/{access_key}"),
    ("post", "/v2/{project_id}/apigw/instances/default/throttles"),
    ("get", "/v2/{project_id}/apigw/instances/default/throttles"),
    ("get", "/v2/{project_id}/apigw/instances/default/throttles/{throttle_id}"),
    ("put", "/v2/{project_id}/apigw/instances/default/throttles/{throttle_id}"),
    ("delete", "/v2/{project_id}/apigw/instances/default/throttles/{throttle_id}"),
    ("post", "/v2/{project_id}/apigw/instances/default/throttle-bindings"),
    ("get", "/v2/{project_id}/apigw/instances/default/throttle-bindings/binded-apis"),
    ("delete", "/v2/{project_id}/apigw/instances/default/throttle-bindings/{throttle_binding_id}"),
    ("post", "/v2/{project_id}/apigw/instances/default/throttles/{throttle_id}/throttle-specials"),
    ("get", "/v2/{project_id}/apigw/instances/default/throttles/{throttle_id}/throttle-specials"),
    ("put", "/v2/{project_id}/apigw/instances/default/throttles/{throttle_id}/throttle-specials/{strategy_id}"),
    ("delete", "/v2/{project_id}/apigw/instances/default/throttles/{throttle_id}/throttle-specials/{strategy_id}"),
    ("get", "/healthz"),
    ("get", "/readyz"),
];

fn documented(doc: &Value) -> Vec<(String, String)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("item").keys() {
            ops.push((method.clone(), path.clone()));
        }
    }
    ops.sort();
    ops
}

#[tokio::test]
async fn document_lists_exactly_the_operations() {
    let t = TestApp::new().await;
    let reply = t.call(Method::GET, "/openapi.json", None, None).await;
    let doc = reply.assert_ok();
    assert!(doc["openapi"].as_str().expect("version").starts_with("3."));
    let mut want: Vec<(String, String)> = OPERATIONS
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    want.sort();
    assert_eq!(documented(doc), want);
}

#[tokio::test]
async fn every_documented_route_is_served() {
    let t = TestApp::new().await;
    let doc = serde_json::to_value(infergate_admin::openapi()).expect("json");
    for (method, path) in documented(&doc) {
        let concrete = path
            .replace("{project_id}", &t.project_id)
            .replace("{service_id}", "s")
            .replace("{api_id}", "a")
            .replace("{app_id}", "x")
            .replace("{app_code}", "c")
            .replace("{user_id}", "u")
            .replace("{role_id}", "r");
        let method: Method = method.to_uppercase().parse().expect("method");
        let reply = t
            .call(method.clone(), &concrete, Some(&t.admin_token), None)
            .await;
        let unrouted = matches!(reply.status.as_u16(), 404 | 405)
            && (reply.code() == "ModelArts.0104"
                || reply.body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("no resource at")));
        assert!(
            !unrouted,
            "{method} {path} is documented but not routed: {}",
            reply.body
        );
    }
}

/// `/` leads to the console and `/docs` to the interactive reference at `/docs/`, whose
/// page and scripts come from this server alone under a strict Content-Security-Policy,
/// and read `/openapi.json`.
#[tokio::test]
async fn the_root_leads_to_a_reference_served_from_the_binary() {
    let t = TestApp::new().await;
    for (path, to) in [
        ("/", "/console/"),
        ("/console", "/console/"),
        ("/docs", "/docs/"),
    ] {
        let reply = t.call(Method::GET, path, None, None).await;
        assert_eq!(reply.status.as_u16(), 303, "{path}");
        assert_eq!(reply.headers["location"], to, "{path}");
    }
    // The console: its page and files from the binary, no inline code allowed, never framed.
    let console = t.call(Method::GET, "/console/", None, None).await;
    assert_eq!(console.status.as_u16(), 200);
    let csp = console.headers["content-security-policy"]
        .to_str()
        .expect("csp");
    assert!(
        csp.contains("script-src 'self';")
            && csp.contains("style-src 'self';")
            && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(console.headers["x-frame-options"], "DENY");
    assert!(console.headers.get("set-cookie").is_none());
    for (file, kind) in [
        ("console.js", "text/javascript"),
        ("console.css", "text/css"),
    ] {
        let served = t
            .call(Method::GET, &format!("/console/{file}"), None, None)
            .await;
        assert_eq!(served.status.as_u16(), 200, "{file}");
        assert!(served.headers["content-type"]
            .to_str()
            .expect("type")
            .starts_with(kind));
    }
    for path in ["/console/../Cargo.toml", "/console/nothing.js"] {
        let missing = t.call(Method::GET, path, None, None).await;
        assert_eq!(missing.status.as_u16(), 404, "{path}");
    }
    let page = t.call(Method::GET, "/docs/", None, None).await;
    assert_eq!(page.status.as_u16(), 200);
    assert!(page.headers["content-type"]
        .to_str()
        .expect("type")
        .starts_with("text/html"));
    let csp = page.headers["content-security-policy"]
        .to_str()
        .expect("csp");
    assert!(
        csp.contains("script-src 'self';") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    assert_eq!(page.headers["x-frame-options"], "DENY");
    let html = page.body.as_str().expect("html");
    for script in ["./swagger-ui-bundle.js", "./init.js"] {
        assert!(html.contains(script), "{html}");
        let served = t
            .call(Method::GET, &format!("/docs/{}", &script[2..]), None, None)
            .await;
        assert_eq!(served.status.as_u16(), 200, "{script}");
        assert!(served.headers["content-type"]
            .to_str()
            .expect("type")
            .starts_with("text/javascript"));
    }
    let init = t.call(Method::GET, "/docs/init.js", None, None).await;
    assert!(init
        .body
        .as_str()
        .expect("js")
        .contains("url: \"/openapi.json\""));
    let missing = t.call(Method::GET, "/docs/../Cargo.toml", None, None).await;
    assert_eq!(missing.status.as_u16(), 404);
    let missing = t.call(Method::GET, "/docs/nothing.js", None, None).await;
    assert_eq!(missing.status.as_u16(), 404);
}

//! Services: create, list, show, update, delete, and their validation.

use axum::http::Method;
use serde_json::json;

use crate::harness::TestApp;

#[tokio::test]
async fn crud() {
    let t = TestApp::new().await;
    let created = t
        .call(
            Method::POST,
            &t.v1("/services"),
            Some(&t.admin_token),
            Some(json!({"service_name": "llama", "description": "chat", "upstreams": ["http://10.0.0.5:8000/v1/", "https://b.example:8443"], "timeout_ms": 5000})),
        )
        .await;
    let svc = created.assert_ok().clone();
    let sid = svc["service_id"].as_str().expect("id");
    assert_eq!(sid.len(), 36);
    assert_eq!(
        svc["upstreams"],
        json!(["http://10.0.0.5:8000/v1", "https://b.example:8443"])
    );
    assert_eq!(svc["status"], "running");
    assert_eq!(svc["timeout_ms"], 5000);
    assert_eq!(svc["created_at"], svc["updated_at"]);
    t.create_service(&t.admin_token, "llama")
        .await
        .assert_error(409, "ModelArts.0104");

    let shown = t
        .call(
            Method::GET,
            &t.v1(&format!("/services/{sid}")),
            Some(&t.admin_token),
            None,
        )
        .await;
    assert_eq!(shown.assert_ok(), &svc);

    let updated = t
        .call(
            Method::PUT,
            &t.v1(&format!("/services/{sid}")),
            Some(&t.admin_token),
            Some(json!({"upstreams": ["http://c:1"]})),
        )
        .await;
    let updated = updated.assert_ok();
    assert_eq!(updated["upstreams"], json!(["http://c:1"]));
    assert_eq!(updated["description"], "chat");
    assert_eq!(updated["timeout_ms"], 5000);

    t.service(&t.admin_token, "second").await;
    let page = t
        .call(
            Method::GET,
            &t.v1("/services?limit=1&offset=1"),
            Some(&t.admin_token),
            None,
        )
        .await;
    let page = page.assert_ok();
    assert_eq!(page["count"], 1);
    assert_eq!(page["total_count"], 2);
    assert_eq!(page["services"][0]["service_name"], "second");
    t.call(
        Method::GET,
        &t.v1("/services?limit=abc"),
        Some(&t.admin_token),
        None,
    )
    .await
    .assert_error(400, "ModelArts.0101");

    let deleted = t
        .call(
            Method::DELETE,
            &t.v1(&format!("/services/{sid}")),
            Some(&t.admin_token),
            None,
        )
        .await;
    assert_eq!(deleted.status.as_u16(), 204);
    t.call(
        Method::GET,
        &t.v1(&format!("/services/{sid}")),
        Some(&t.admin_token),
        None,
    )
    .await
    .assert_error(404, "ModelArts.3502");
}

#[tokio::test]
async fn validation_names_the_field() {
    let t = TestApp::new().await;
    let cases = [
        (json!({"upstreams": ["http://a"]}), "service_name"),
        (
            json!({"service_name": "-bad", "upstreams": ["http://a"]}),
            "service_name",
        ),
        (json!({"service_name": "ok", "upstreams": []}), "upstreams"),
        (
            json!({"service_name": "ok", "upstreams": ["http://a", "ftp://b"]}),
            "upstreams[1]",
        ),
        (
            json!({"service_name": "ok", "upstreams": ["http://a?x=1"]}),
            "upstreams[0]",
        ),
        (
            json!({"service_name": "ok", "upstreams": ["http://a"], "timeout_ms": 0}),
            "timeout_ms",
        ),
        (
            json!({"service_name": "ok", "upstreams": ["http://a"], "timeout_ms": "fast"}),
            "timeout_ms",
        ),
        (
            json!({"service_name": "ok", "upstreams": ["http://a"], "description": "d".repeat(1025)}),
            "description",
        ),
    ];
    for (body, field) in cases {
        let reply = t
            .call(
                Method::POST,
                &t.v1("/services"),
                Some(&t.admin_token),
                Some(body.clone()),
            )
            .await;
        reply.assert_error(400, "ModelArts.0101");
        assert!(
            reply.body["error_msg"]
                .as_str()
                .expect("msg")
                .contains(field),
            "{body}: {}",
            reply.body
        );
    }
    let list = t
        .call(Method::GET, &t.v1("/services"), Some(&t.admin_token), None)
        .await;
    assert_eq!(list.assert_ok()["total_count"], 0);
}

#[tokio::test]
async fn every_response_has_a_request_id_and_unknown_routes_are_json() {
    let t = TestApp::new().await;
    for reply in [
        t.call(Method::GET, &t.v1("/services"), None, None).await,
        t.call(Method::GET, &t.v1("/nowhere"), Some(&t.admin_token), None)
            .await,
        t.call(
            Method::PATCH,
            &t.v1("/services"),
            Some(&t.admin_token),
            None,
        )
        .await,
        t.call(Method::GET, "/healthz", None, None).await,
    ] {
        assert_eq!(reply.headers["x-request-id"].len(), 32, "{}", reply.body);
    }
    t.call(Method::GET, &t.v1("/nowhere"), Some(&t.admin_token), None)
        .await
        .assert_error(404, "ModelArts.0104");
    t.call(
        Method::PATCH,
        &t.v1("/services"),
        Some(&t.admin_token),
        None,
    )
    .await
    .assert_error(405, "ModelArts.0104");
}

#[tokio::test]
async fn readiness_reports_the_revision() {
    let t = TestApp::new().await;
    let before = t.call(Method::GET, "/readyz", None, None).await;
    let rev0 = before.assert_ok()["revision"].as_i64().expect("rev");
    t.service(&t.admin_token, "svc").await;
    let after = t.call(Method::GET, "/readyz", None, None).await;
    assert!(after.assert_ok()["revision"].as_i64().expect("rev") > rev0);
    assert!(after.headers.contains_key("x-config-revision"));
}

/// A service may not point at this node's own listeners (a loop), nor, with
/// `upstream_allow`, outside the listed hosts and networks.
#[tokio::test]
async fn upstreams_may_not_loop_or_leave_the_allowed_hosts() {
    use infergate_core::net::{AllowedHost, UpstreamPolicy};
    let t = TestApp::with_settings(infergate_admin::AdminSettings {
        upstream_policy: UpstreamPolicy {
            allow: [
                "10.0.0.0/8",
                "models.internal",
                "*.gpu.internal",
                "127.0.0.1",
            ]
            .iter()
            .map(|a| AllowedHost::parse(a).expect("entry"))
            .collect(),
            own: vec![
                "0.0.0.0:8080".parse().expect("addr"),
                "127.0.0.1:8081".parse().expect("addr"),
            ],
        },
        ..infergate_admin::AdminSettings::new(crate::harness::PUBLIC_URL, "http://127.0.0.1:8081")
    })
    .await;
    let path = t.v1("/services");
    let create = |upstream: &str| {
        t.call(
            Method::POST,
            &path,
            Some(&t.admin_token),
            Some(json!({"service_name": format!("s{}", upstream.len()), "upstreams": ["http://10.0.0.1", upstream]})),
        )
    };
    for refused in [
        "http://127.0.0.1:8080",
        "http://localhost:8081/v1",
        "http://0.0.0.0:8080",
        "http://192.0.2.1:9000",
        "http://169.254.169.254",
        "https://not-listed.invalid",
    ] {
        let r = create(refused).await;
        r.assert_error(400, "ModelArts.0101");
        assert!(
            r.body["error_msg"]
                .as_str()
                .unwrap_or("")
                .contains("upstreams[1]"),
            "{refused}: {}",
            r.body
        );
    }
    for allowed in [
        "http://127.0.0.1:9000",
        "https://models.internal",
        "http://a.gpu.internal:8000/v1",
    ] {
        let r = create(allowed).await;
        assert!(r.status.is_success(), "{allowed}: {}", r.body);
    }
    // An update is held to the same rules.
    let listed = t
        .call(Method::GET, &t.v1("/services"), Some(&t.admin_token), None)
        .await;
    let sid = listed.body["services"][0]["service_id"]
        .as_str()
        .expect("sid")
        .to_owned();
    let r = t
        .call(
            Method::PUT,
            &t.v1(&format!("/services/{sid}")),
            Some(&t.admin_token),
            Some(json!({"upstreams": ["http://127.0.0.1:8081"]})),
        )
        .await;
    r.assert_error(400, "ModelArts.0101");
    assert!(
        r.body["error_msg"].as_str().unwrap_or("").contains("loop"),
        "{}",
        r.body
    );
}

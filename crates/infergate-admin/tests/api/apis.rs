//! CreateAppAuthApi, GetAppAuthApiInfo, GetAppAuthApisInfo, DeleteAppAuthApi.

use axum::http::Method;
use serde_json::{json, Value};

use crate::definitions::request_example;
use crate::harness::{TestApp, PUBLIC_URL};

const API_FIELDS: [&str; 9] = [
    "api_id",
    "api_name",
    "api_method",
    "api_remark",
    "auth_type",
    "predict_url",
    "service_id",
    "service_name",
    "support_app_code",
];

fn assert_every_field(api: &Value) {
    let object = api.as_object().expect("object");
    for field in API_FIELDS {
        assert!(object.contains_key(field), "{field} missing in {api}");
    }
    assert_eq!(object.len(), API_FIELDS.len(), "{api}");
}

#[tokio::test]
async fn spec_request_example_creates_an_app_api() {
    let t = TestApp::new().await;
    let sid = t.service(&t.admin_token, "svc-demo").await;
    let mut example = request_example("CreateAppAuthApi");
    assert_eq!(example["auth_type"], "APIG");
    // The example's path lies under another service's id: that path is not this service's.
    let refused = t.create_api(&t.admin_token, &sid, example.clone()).await;
    refused.assert_error(409, "ModelArts.3921");
    let theirs = example["api_path"].as_str().expect("path").to_owned();
    assert!(refused.body["error_msg"]
        .as_str()
        .expect("msg")
        .contains(&theirs));
    example["api_path"] = json!(format!("/v1/infers/{sid}"));
    let reply = t.create_api(&t.admin_token, &sid, example.clone()).await;
    let api = &reply.assert_ok()["api"];
    assert_every_field(api);
    assert_eq!(api["auth_type"], "APP");
    assert_eq!(api["api_method"], "ANY");
    assert_eq!(api["api_name"], example["api_name"]);
    assert_eq!(api["api_remark"], "test");
    assert_eq!(api["support_app_code"], true);
    assert_eq!(api["service_id"], sid.as_str());
    assert_eq!(api["service_name"], "svc-demo");
    assert_eq!(
        api["predict_url"].as_str().expect("url"),
        format!(
            "{PUBLIC_URL}{}",
            example["api_path"].as_str().expect("path")
        )
    );
    assert_eq!(api["api_id"].as_str().expect("id").len(), 32);
    assert!(reply.headers.contains_key("x-request-id"));
}

#[tokio::test]
async fn omitted_fields_take_the_defaults() {
    let t = TestApp::new().await;
    for (i, body) in [None, Some(json!({}))].into_iter().enumerate() {
        let sid = t.service(&t.admin_token, &format!("svc{i}")).await;
        let reply = t
            .call(
                Method::POST,
                &t.v1(&format!("/app-auth/{sid}/apis")),
                Some(&t.admin_token),
                body,
            )
            .await;
        let api = &reply.assert_ok()["api"];
        assert_every_field(api);
        assert_eq!(api["auth_type"], "APP");
        assert_eq!(api["support_app_code"], true);
        assert_eq!(api["api_method"], "ANY");
        assert_eq!(api["api_remark"], "");
        assert_eq!(api["api_name"], format!("infer_{}", sid.replace('-', "")));
        assert_eq!(api["predict_url"], format!("{PUBLIC_URL}/v1/infers/{sid}"));
    }
}

#[tokio::test]
async fn path_and_auth_type_pairs_are_unique() {
    let t = TestApp::new().await;
    let sid = t.service(&t.admin_token, "svc").await;
    t.create_api(&t.admin_token, &sid, json!({"auth_type": "APP"}))
        .await
        .assert_ok();
    let clash = t
        .create_api(&t.admin_token, &sid, json!({"auth_type": "app"}))
        .await;
    clash.assert_error(409, "ModelArts.3921");
    let msg = clash.body["error_msg"].as_str().expect("msg");
    assert!(
        msg.contains(&format!("/v1/infers/{sid}")) && msg.contains("APP"),
        "{msg}"
    );
    for other in ["IAM", "NONE"] {
        let reply = t
            .create_api(&t.admin_token, &sid, json!({"auth_type": other}))
            .await;
        assert_eq!(reply.assert_ok()["api"]["auth_type"], other);
    }
    let list = t
        .call(
            Method::GET,
            &t.v1(&format!("/services/{sid}/app-auth-apis")),
            Some(&t.admin_token),
            None,
        )
        .await;
    let body = list.assert_ok();
    assert_eq!(body["count"], 3);
    assert_eq!(body["total_count"], 3);
    for api in body["apis"].as_array().expect("apis") {
        assert_every_field(api);
    }
}

#[tokio::test]
async fn api_url_and_enum_spellings() {
    let t = TestApp::new().await;
    let sid = t.service(&t.admin_token, "svc").await;
    let reply = t
        .create_api(
            &t.admin_token,
            &sid,
            json!({"api_url": "https://x.example.test/custom/path", "api_method": " POST", "auth_type": " iam "}),
        )
        .await;
    let api = &reply.assert_ok()["api"];
    assert_eq!(api["predict_url"], format!("{PUBLIC_URL}/custom/path"));
    assert_eq!(api["auth_type"], "IAM");
    assert_eq!(api["api_method"], "ANY");
}

#[tokio::test]
async fn bad_fields_are_named() {
    let t = TestApp::new().await;
    let sid = t.service(&t.admin_token, "svc").await;
    let cases = [
        (json!({"auth_type": "BASIC"}), "auth_type"),
        (json!({"auth_type": 1}), "auth_type"),
        (json!({"api_method": "FETCH"}), "api_method"),
        (json!({"api_name": "1bad"}), "api_name"),
        (json!({"api_path": "no-slash"}), "api_path"),
        (json!({"api_path": "/a b"}), "api_path"),
        (json!({"api_url": "ftp://x/y"}), "api_url"),
        (json!({"api_remark": "r".repeat(256)}), "api_remark"),
        (json!({"support_app_code": "yes"}), "support_app_code"),
    ];
    for (body, field) in cases {
        let reply = t.create_api(&t.admin_token, &sid, body.clone()).await;
        reply.assert_error(400, "ModelArts.0101");
        let msg = reply.body["error_msg"].as_str().expect("msg");
        assert!(msg.contains(field), "{body} -> {msg}");
    }
    let reply = t
        .raw(
            Method::POST,
            &t.v1(&format!("/app-auth/{sid}/apis")),
            &t.admin_token,
            "{\"auth_type\":",
        )
        .await;
    reply.assert_error(400, "ModelArts.0101");
    let list = t
        .call(
            Method::GET,
            &t.v1(&format!("/services/{sid}/app-auth-apis")),
            Some(&t.admin_token),
            None,
        )
        .await;
    assert_eq!(list.assert_ok()["count"], 0, "no half-applied write");
}

#[tokio::test]
async fn lookups_and_their_errors() {
    let t = TestApp::new().await;
    let s1 = t.service(&t.admin_token, "svc1").await;
    let s2 = t.service(&t.admin_token, "svc2").await;
    let api1 = t
        .create_api(&t.admin_token, &s1, json!({}))
        .await
        .assert_ok()["api"]
        .clone();
    let id1 = api1["api_id"].as_str().expect("id");
    let got = t
        .call(
            Method::GET,
            &t.v1(&format!("/app-auth/{s1}/apis/{id1}")),
            Some(&t.admin_token),
            None,
        )
        .await;
    assert_eq!(got.assert_ok()["api"], api1);
    // Duplicate slashes are normalised (spec §7 #10).
    let doubled = t
        .call(
            Method::GET,
            &format!("//v1/{}/app-auth/{s1}/apis/{id1}", t.project_id),
            Some(&t.admin_token),
            None,
        )
        .await;
    assert_eq!(doubled.assert_ok()["api"], api1);
    t.call(
        Method::GET,
        &t.v1(&format!("/app-auth/{s1}/apis/nope")),
        Some(&t.admin_token),
        None,
    )
    .await
    .assert_error(404, "ModelArts.3935");
    t.call(
        Method::GET,
        &t.v1(&format!("/app-auth/{s2}/apis/{id1}")),
        Some(&t.admin_token),
        None,
    )
    .await
    .assert_error(403, "ModelArts.3936");
    t.call(
        Method::GET,
        &t.v1(&format!("/app-auth/nope/apis/{id1}")),
        Some(&t.admin_token),
        None,
    )
    .await
    .assert_error(404, "ModelArts.3502");
    t.create_api(&t.admin_token, "missing-service", json!({}))
        .await
        .assert_error(404, "ModelArts.3502");
    t.call(
        Method::GET,
        &t.v1("/services/nope/app-auth-apis"),
        Some(&t.admin_token),
        None,
    )
    .await
    .assert_error(404, "ModelArts.3502");
    t.call(
        Method::DELETE,
        &t.v1(&format!("/services/{s2}/app-auth-apis/{id1}")),
        Some(&t.admin_token),
        None,
    )
    .await
    .assert_error(403, "ModelArts.3936");
}

#[tokio::test]
async fn delete_api_then_service_cascade() {
    let t = TestApp::new().await;
    let sid = t.service(&t.admin_token, "svc").await;
    let a = t
        .create_api(&t.admin_token, &sid, json!({"auth_type": "APP"}))
        .await;
    let b = t
        .create_api(&t.admin_token, &sid, json!({"auth_type": "IAM"}))
        .await;
    let a_id = a.assert_ok()["api"]["api_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let b_id = b.assert_ok()["api"]["api_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let deleted = t
        .call(
            Method::DELETE,
            &t.v1(&format!("/services/{sid}/app-auth-apis/{a_id}")),
            Some(&t.admin_token),
            None,
        )
        .await;
    assert_eq!(deleted.status.as_u16(), 204);
    assert!(deleted.body.is_null(), "204 has no body");
    assert!(deleted.headers.contains_key("x-request-id"));
    t.call(
        Method::DELETE,
        &t.v1(&format!("/services/{sid}/app-auth-apis/{a_id}")),
        Some(&t.admin_token),
        None,
    )
    .await
    .assert_error(404, "ModelArts.3935");
    // The freed (path, APP) pair can be used again.
    t.create_api(&t.admin_token, &sid, json!({"auth_type": "APP"}))
        .await
        .assert_ok();
    let gone = t
        .call(
            Method::DELETE,
            &t.v1(&format!("/services/{sid}")),
            Some(&t.admin_token),
            None,
        )
        .await;
    assert_eq!(gone.status.as_u16(), 204);
    assert!(t.state.store.api(&b_id).await.expect("q").is_none());
    // A deleted service's namespace is still named by its id: no other service takes it.
    let sid2 = t.service(&t.admin_token, "svc").await;
    t.create_api(
        &t.admin_token,
        &sid2,
        json!({"auth_type": "IAM", "api_path": format!("/v1/infers/{sid}")}),
    )
    .await
    .assert_error(409, "ModelArts.3921");
}

/// A project's paths are its own: no API of another project may be registered at, above or
/// below them, and a service's `/v1/infers/{id}` namespace is that service's alone.
#[tokio::test]
async fn api_paths_belong_to_their_owners() {
    let t = TestApp::new().await;
    let mine = t.service(&t.admin_token, "mine").await;
    let project_b = t.create_project("team-b").await;
    let bob = t.create_user("bob").await;
    t.grant(&project_b, &bob, "admin").await;
    let bob_token = t.token("bob", "bob-password", "team-b").await;
    let service_b = t
        .call(
            Method::POST,
            &format!("/v1/{project_b}/services"),
            Some(&bob_token),
            Some(json!({"service_name": "theirs", "upstreams": ["http://127.0.0.1:9/v1"]})),
        )
        .await
        .assert_ok()["service_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let create_b = |body: Value| {
        let path = format!("/v1/{project_b}/app-auth/{service_b}/apis");
        let token = bob_token.clone();
        let t = &t;
        async move { t.call(Method::POST, &path, Some(&token), Some(body)).await }
    };
    t.create_api(&t.admin_token, &mine, json!({"auth_type": "APP"}))
        .await
        .assert_ok();
    t.create_api(
        &t.admin_token,
        &mine,
        json!({"auth_type": "NONE", "api_path": "/models/chat"}),
    )
    .await
    .assert_ok();
    // Not a namespace (those are `/v1/infers/…` exactly): a path like any other.
    t.create_api(
        &t.admin_token,
        &mine,
        json!({"auth_type": "APP", "api_path": "/v1/Infers/chat"}),
    )
    .await
    .assert_ok();
    // Another project: at, below and above a path of this one, under this service's
    // namespace, for every auth type.
    for auth_type in ["NONE", "APP", "IAM"] {
        for path in [
            format!("/v1/infers/{mine}"),
            format!("/v1/infers/{mine}/predict"),
            "/models/chat".to_owned(),
            "/models/chat/v2".to_owned(),
            "/models".to_owned(),
            "/v1/Infers/chat".to_owned(),
            "/v1/Infers/chat/completions".to_owned(),
        ] {
            let reply = create_b(json!({"auth_type": auth_type, "api_path": path})).await;
            reply.assert_error(409, "ModelArts.3921");
            assert!(
                reply.body["error_msg"]
                    .as_str()
                    .expect("msg")
                    .contains(&path),
                "{}",
                reply.body
            );
        }
    }
    // Beside them, and in its own namespace, it registers freely.
    create_b(json!({"auth_type": "NONE", "api_path": "/models-b"}))
        .await
        .assert_ok();
    create_b(json!({"auth_type": "APP", "api_path": format!("/v1/infers/{service_b}/x")}))
        .await
        .assert_ok();
    // And what it took first is its own in turn.
    t.create_api(
        &t.admin_token,
        &mine,
        json!({"auth_type": "NONE", "api_path": "/models-b/deeper"}),
    )
    .await
    .assert_error(409, "ModelArts.3921");
    // The same project may nest its own paths.
    t.create_api(
        &t.admin_token,
        &mine,
        json!({"auth_type": "IAM", "api_path": "/models/chat/v2"}),
    )
    .await
    .assert_ok();
}

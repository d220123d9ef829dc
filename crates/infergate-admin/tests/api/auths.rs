//! Authorizations: authorize, replace, unauthorize (both paths), register-and-authorize,
//! the two read views, cascades, and counts under concurrency.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::Method;
use serde_json::{json, Value};

use crate::harness::TestApp;

fn id(v: &Value) -> String {
    v["app_id"].as_str().expect("app id").to_owned()
}

async fn bound_count(t: &TestApp, token: &str, app_id: &str) -> i64 {
    let reply = t
        .call(
            Method::GET,
            &t.v1(&format!("/app-auth/apps/{app_id}")),
            Some(token),
            None,
        )
        .await;
    reply.assert_ok()["app"]["bounded_api_count"]
        .as_i64()
        .expect("count")
}

#[tokio::test]
async fn authorize_is_per_app_and_idempotent() {
    let t = TestApp::new().await;
    let (_, owner) = t.user_with_role("owner", "member").await;
    let (_, other) = t.user_with_role("other", "member").await;
    let sid = t.service(&owner, "svc").await;
    let api = t.app_api(&owner, &sid).await;
    let mine = id(&t.app(&owner, "app_mine").await);
    let foreign = id(&t.app(&other, "app_foreign").await);
    let rev0 = t.call(Method::GET, "/readyz", None, None).await.body["revision"]
        .as_i64()
        .expect("rev");

    let reply = t
        .batch(
            Method::POST,
            &t.auth_path(&sid, &api),
            &owner,
            &[&mine, "missing", &foreign],
        )
        .await;
    let results = reply.assert_ok()["auth_result"]
        .as_array()
        .expect("results")
        .clone();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["success"], true);
    assert_eq!(results[0]["reason"], "");
    assert_eq!(results[0]["api_id"], api.as_str());
    let auth_id = results[0]["auth_id"].as_str().expect("auth id").to_owned();
    assert_eq!(auth_id.len(), 32);
    assert_eq!(results[1]["success"], false);
    assert!(results[1]["reason"]
        .as_str()
        .expect("reason")
        .contains("missing"));
    assert_eq!(results[1]["auth_id"], "");
    assert_eq!(
        results[2]["success"], false,
        "R8: the app's creator must be the service's creator"
    );
    assert!(
        t.call(Method::GET, "/readyz", None, None).await.body["revision"]
            .as_i64()
            .expect("rev")
            > rev0
    );

    let again = t
        .batch(Method::POST, &t.auth_path(&sid, &api), &owner, &[&mine])
        .await;
    assert_eq!(
        again.assert_ok()["auth_result"][0]["auth_id"],
        auth_id.as_str()
    );
    assert_eq!(bound_count(&t, &owner, &mine).await, 1);

    // Malformed batches fail whole.
    t.call(
        Method::POST,
        &t.auth_path(&sid, &api),
        Some(&owner),
        Some(json!({"apps": [{}]})),
    )
    .await
    .assert_error(400, "ModelArts.0101");
    let no_apps = t
        .call(
            Method::POST,
            &t.auth_path(&sid, &api),
            Some(&owner),
            Some(json!({})),
        )
        .await;
    no_apps.assert_error(400, "ModelArts.0101");
    assert!(no_apps.body["error_msg"]
        .as_str()
        .expect("msg")
        .contains("apps"));
    // Only APP APIs can be authorized.
    let iam = t
        .create_api(&owner, &sid, json!({"auth_type": "IAM"}))
        .await;
    let iam_id = iam.assert_ok()["api"]["api_id"]
        .as_str()
        .expect("id")
        .to_owned();
    t.batch(Method::POST, &t.auth_path(&sid, &iam_id), &owner, &[&mine])
        .await
        .assert_error(400, "ModelArts.0101");
    t.batch(Method::POST, &t.auth_path(&sid, "nope"), &owner, &[&mine])
        .await
        .assert_error(404, "ModelArts.3935");
}

#[tokio::test]
async fn replace_and_unauthorize_on_both_paths() {
    let t = TestApp::new().await;
    let sid = t.service(&t.admin_token, "svc").await;
    let api = t.app_api(&t.admin_token, &sid).await;
    let a = id(&t.app(&t.admin_token, "app_a").await);
    let b = id(&t.app(&t.admin_token, "app_b").await);
    let c = id(&t.app(&t.admin_token, "app_c").await);
    t.batch(
        Method::POST,
        &t.auth_path(&sid, &api),
        &t.admin_token,
        &[&a, &b],
    )
    .await
    .assert_ok();

    let replaced = t
        .batch(
            Method::PUT,
            &t.auth_path(&sid, &api),
            &t.admin_token,
            &[&b, &c],
        )
        .await;
    let results = replaced.assert_ok()["auth_result"]
        .as_array()
        .expect("results")
        .clone();
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(|r| r["success"] == true));
    assert_eq!(
        [
            bound_count(&t, &t.admin_token, &a).await,
            bound_count(&t, &t.admin_token, &b).await,
            bound_count(&t, &t.admin_token, &c).await
        ],
        [0, 1, 1]
    );

    let unbound = t
        .batch(
            Method::DELETE,
            &t.auth_path(&sid, &api),
            &t.admin_token,
            &[&b, &a],
        )
        .await;
    let results = unbound.assert_ok()["unauth_result"]
        .as_array()
        .expect("results")
        .clone();
    assert_eq!(results[0]["success"], true);
    assert_eq!(results[0]["auth_id"], "");
    assert_eq!(results[0]["reason"], "");
    assert_eq!(results[1]["success"], false);
    assert!(results[1]["reason"].as_str().expect("reason").contains(&a));
    let alias = t.v1(&format!("/app-auth/{sid}/apis/{api}/auths?workspace_id=0"));
    let via_alias = t.batch(Method::DELETE, &alias, &t.admin_token, &[&c]).await;
    assert_eq!(via_alias.assert_ok()["unauth_result"][0]["success"], true);
    assert_eq!(bound_count(&t, &t.admin_token, &c).await, 0);
    let empty = t
        .batch(Method::PUT, &t.auth_path(&sid, &api), &t.admin_token, &[])
        .await;
    assert_eq!(empty.assert_ok()["auth_result"], json!([]));
}

#[tokio::test]
async fn register_and_authorize_reuses_the_app_api() {
    let t = TestApp::new().await;
    let sid = t.service(&t.admin_token, "svc").await;
    let app = id(&t.app(&t.admin_token, "app_a").await);
    let path = t.v1(&format!("/services/{sid}/app-auth-api"));
    let first = t.batch(Method::POST, &path, &t.admin_token, &[&app]).await;
    let body = first.assert_ok().clone();
    assert_eq!(body["api"]["auth_type"], "APP");
    assert_eq!(body["api"]["api_method"], "ANY");
    assert_eq!(body["api"]["api_remark"], "");
    assert_eq!(
        body["api"]["predict_url"].as_str().expect("url"),
        format!("https://infer.example.test/v1/infers/{sid}")
    );
    assert_eq!(body["auth_result"][0]["success"], true);
    assert_eq!(body["auth_result"][0]["api_id"], body["api"]["api_id"]);
    let second = t.batch(Method::POST, &path, &t.admin_token, &[&app]).await;
    assert_eq!(
        second.assert_ok()["api"]["api_id"],
        body["api"]["api_id"],
        "R13: one app-auth API per service"
    );
    let list = t
        .call(
            Method::GET,
            &t.v1(&format!("/services/{sid}/app-auth-apis")),
            Some(&t.admin_token),
            None,
        )
        .await;
    assert_eq!(list.body["count"], 1);
    t.batch(
        Method::POST,
        &t.v1("/services/nope/app-auth-api"),
        &t.admin_token,
        &[&app],
    )
    .await
    .assert_error(404, "ModelArts.3502");
}

#[tokio::test]
async fn read_views() {
    let t = TestApp::new().await;
    let sid = t.service(&t.admin_token, "llama-svc").await;
    let info = t
        .call(
            Method::GET,
            &t.v1(&format!("/services/{sid}/api-auths")),
            Some(&t.admin_token),
            None,
        )
        .await;
    assert_eq!(
        info.assert_ok(),
        &json!({"enable_app_auth": false, "app_auth_api": {"api_id": "", "authed_apps": []}})
    );

    let api = t.app_api(&t.admin_token, &sid).await;
    let a = t.app(&t.admin_token, "app_alpha").await;
    let b = t.app(&t.admin_token, "app_beta").await;
    t.batch(
        Method::POST,
        &t.auth_path(&sid, &api),
        &t.admin_token,
        &[&id(&a)],
    )
    .await
    .assert_ok();

    let info = t
        .call(
            Method::GET,
            &t.v1(&format!("/services/{sid}/api-auths")),
            Some(&t.admin_token),
            None,
        )
        .await;
    let info = info.assert_ok();
    assert_eq!(info["enable_app_auth"], true);
    assert_eq!(info["app_auth_api"]["api_id"], api.as_str());
    assert_eq!(
        info["app_auth_api"]["authed_apps"][0]["app_id"],
        a["app_id"]
    );
    assert_eq!(
        info["app_auth_api"]["authed_apps"][0]["bounded_api_count"],
        1
    );

    let auths_path = t.v1(&format!("/services/{sid}/app-auth-apis/{api}/api-auths"));
    let all = t
        .call(Method::GET, &auths_path, Some(&t.admin_token), None)
        .await;
    let all = all.assert_ok();
    assert_eq!(all["total_count"], 2);
    assert_eq!(all["auths"][0]["app"]["app_name"], "app_alpha");
    assert_eq!(all["auths"][0]["authed"], true);
    assert_eq!(all["auths"][1]["authed"], false);
    let unauth = t
        .call(
            Method::GET,
            &format!("{auths_path}?show_only=UNAUTH"),
            Some(&t.admin_token),
            None,
        )
        .await;
    assert_eq!(unauth.body["auths"][0]["app"]["app_id"], b["app_id"]);
    assert_eq!(unauth.body["count"], 1);
    let fuzzy = t
        .call(
            Method::GET,
            &format!("{auths_path}?app_name=ALP&show_only=auth"),
            Some(&t.admin_token),
            None,
        )
        .await;
    assert_eq!(fuzzy.body["count"], 1);
    t.call(
        Method::GET,
        &format!("{auths_path}?show_only=SOME"),
        Some(&t.admin_token),
        None,
    )
    .await
    .assert_error(400, "ModelArts.0101");
    let iam = t
        .create_api(&t.admin_token, &sid, json!({"auth_type": "IAM"}))
        .await;
    let iam_id = iam.assert_ok()["api"]["api_id"]
        .as_str()
        .expect("id")
        .to_owned();
    t.call(
        Method::GET,
        &t.v1(&format!("/services/{sid}/app-auth-apis/{iam_id}/api-auths")),
        Some(&t.admin_token),
        None,
    )
    .await
    .assert_error(400, "ModelArts.0101");

    let bound = t
        .call(
            Method::GET,
            &t.v1(&format!(
                "/app-auth/apps/{}/auth-apis?service_name=LLAMA",
                id(&a)
            )),
            Some(&t.admin_token),
            None,
        )
        .await;
    let bound = bound.assert_ok();
    assert_eq!(bound["count"], 1);
    assert_eq!(bound["total_count"], 1);
    assert_eq!(bound["apis"][0]["api_id"], api.as_str());
    assert_eq!(bound["apis"][0]["service_name"], "llama-svc");
    let none = t
        .call(
            Method::GET,
            &t.v1(&format!(
                "/app-auth/apps/{}/auth-apis?service_name=other",
                id(&a)
            )),
            Some(&t.admin_token),
            None,
        )
        .await;
    assert_eq!(none.body["total_count"], 0);
}

#[tokio::test]
async fn deletes_cascade_and_fix_counts() {
    let t = TestApp::new().await;
    let s1 = t.service(&t.admin_token, "svc1").await;
    let s2 = t.service(&t.admin_token, "svc2").await;
    let api1 = t.app_api(&t.admin_token, &s1).await;
    let api2 = t.app_api(&t.admin_token, &s2).await;
    let app = id(&t.app(&t.admin_token, "app_a").await);
    t.batch(
        Method::POST,
        &t.auth_path(&s1, &api1),
        &t.admin_token,
        &[&app],
    )
    .await
    .assert_ok();
    t.batch(
        Method::POST,
        &t.auth_path(&s2, &api2),
        &t.admin_token,
        &[&app],
    )
    .await
    .assert_ok();
    assert_eq!(bound_count(&t, &t.admin_token, &app).await, 2);
    let refused = t
        .call(
            Method::DELETE,
            &t.v1(&format!("/app-auth/apps/{app}")),
            Some(&t.admin_token),
            None,
        )
        .await;
    refused.assert_error(400, "ModelArts.3933");
    assert!(refused.body["error_msg"]
        .as_str()
        .expect("msg")
        .contains('2'));

    t.call(
        Method::DELETE,
        &t.v1(&format!("/services/{s1}/app-auth-apis/{api1}")),
        Some(&t.admin_token),
        None,
    )
    .await;
    assert_eq!(bound_count(&t, &t.admin_token, &app).await, 1, "R15");
    t.call(
        Method::DELETE,
        &t.v1(&format!("/services/{s2}")),
        Some(&t.admin_token),
        None,
    )
    .await;
    assert_eq!(bound_count(&t, &t.admin_token, &app).await, 0, "R16");
    let deleted = t
        .call(
            Method::DELETE,
            &t.v1(&format!("/app-auth/apps/{app}")),
            Some(&t.admin_token),
            None,
        )
        .await;
    assert_eq!(deleted.status.as_u16(), 200);
    assert!(
        deleted.body.is_null(),
        "DeleteApigApp answers an empty body"
    );
    t.call(
        Method::GET,
        &t.v1(&format!("/app-auth/apps/{app}")),
        Some(&t.admin_token),
        None,
    )
    .await
    .assert_error(404, "ModelArts.3923");
}

#[tokio::test]
async fn counts_stay_exact_under_concurrent_batches() {
    let t = Arc::new(TestApp::new().await);
    let sid = t.service(&t.admin_token, "svc").await;
    let mut apis = Vec::new();
    for i in 0..3 {
        let reply = t
            .create_api(
                &t.admin_token,
                &sid,
                json!({"auth_type": "APP", "api_path": format!("/v1/infers/{sid}/m{i}")}),
            )
            .await;
        apis.push(
            reply.assert_ok()["api"]["api_id"]
                .as_str()
                .expect("id")
                .to_owned(),
        );
    }
    let mut apps = Vec::new();
    for i in 0..4 {
        apps.push(id(&t.app(&t.admin_token, &format!("app_{i}")).await));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut clients = Vec::new();
    for client in 0..8usize {
        let (t, sid, apis, apps) = (t.clone(), sid.clone(), apis.clone(), apps.clone());
        clients.push(tokio::spawn(async move {
            let mut calls = 0usize;
            while Instant::now() < deadline {
                let api = &apis[(client + calls) % apis.len()];
                let pick: Vec<&str> = apps
                    .iter()
                    .skip((client + calls) % 3)
                    .step_by(2)
                    .map(String::as_str)
                    .collect();
                let method = match (client + calls) % 3 {
                    0 => Method::POST,
                    1 => Method::DELETE,
                    _ => Method::PUT,
                };
                let reply = t
                    .batch(method, &t.auth_path(&sid, api), &t.admin_token, &pick)
                    .await;
                assert!(reply.status.is_success(), "{}", reply.body);
                calls += 1;
            }
            calls
        }));
    }
    let mut total = 0;
    for client in clients {
        total += client.await.expect("client");
    }
    assert!(total > 8, "the clients made calls ({total})");
    for app in &apps {
        let in_store = t
            .state
            .store
            .authorizations_of_app(app)
            .await
            .expect("q")
            .len() as i64;
        assert_eq!(
            bound_count(&t, &t.admin_token, app).await,
            in_store,
            "app {app}"
        );
    }
}

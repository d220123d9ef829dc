//! Throttling policies in APIG's shape: validation, bindings, special limits, roles.

use axum::http::Method;
use serde_json::{json, Value};

use crate::harness::TestApp;

fn base(t: &TestApp) -> String {
    format!("/v2/{}/apigw/instances/default", t.project_id)
}

fn policy(name: &str) -> Value {
    json!({"name": name, "api_call_limits": 100, "user_call_limits": 50, "app_call_limits": 20,
           "ip_call_limits": 100, "time_interval": 1, "time_unit": "MINUTE", "remark": "r"})
}

#[tokio::test]
async fn policies_are_validated_created_listed_changed_and_deleted() {
    let t = TestApp::new().await;
    let throttles = format!("{}/throttles", base(&t));
    let token = Some(t.admin_token.as_str());
    for (change, field) in [
        (json!({"name": "ab"}), "name"),
        (json!({"api_call_limits": 0}), "api_call_limits"),
        (json!({"api_call_limits": null}), "api_call_limits"),
        (json!({"user_call_limits": 101}), "user_call_limits"),
        (json!({"app_call_limits": 51}), "app_call_limits"),
        (json!({"ip_call_limits": 101}), "ip_call_limits"),
        (json!({"time_interval": 0}), "time_interval"),
        (json!({"time_unit": "WEEK"}), "time_unit"),
        (json!({"time_unit": null}), "time_unit"),
        (json!({"type": 3}), "type"),
        (json!({"api_call_limits": "many"}), "api_call_limits"),
        (json!({"remark": "x".repeat(256)}), "remark"),
        (json!({"unit": "TOKENS"}), "unit"),
        (json!({"unit": 1}), "unit"),
        (json!({"default_max_tokens": 100}), "default_max_tokens"),
        (
            json!({"unit": "TOKEN", "default_max_tokens": 0}),
            "default_max_tokens",
        ),
    ] {
        let mut body = policy("per_minute");
        for (k, v) in change.as_object().expect("object") {
            body[k] = v.clone();
        }
        let r = t.call(Method::POST, &throttles, token, Some(body)).await;
        r.assert_error(400, "ModelArts.0101");
        assert!(
            r.body["error_msg"].as_str().unwrap_or("").contains(field),
            "{field}: {}",
            r.body
        );
    }
    let created = t
        .call(Method::POST, &throttles, token, Some(policy("per_minute")))
        .await;
    assert_eq!(created.status.as_u16(), 201, "{}", created.body);
    let id = created.body["id"].as_str().expect("id").to_owned();
    assert_eq!(created.body["type"], 1);
    assert_eq!(created.body["bind_num"], 0);
    assert_eq!(created.body["is_inclu_special_throttle"], 2);
    let again = t
        .call(Method::POST, &throttles, token, Some(policy("per_minute")))
        .await;
    assert_eq!(again.status.as_u16(), 409, "{}", again.body);
    let listed = t.call(Method::GET, &throttles, token, None).await;
    assert_eq!(listed.body["total"], 1);
    assert_eq!(listed.body["throttles"][0]["name"], "per_minute");
    let one = format!("{throttles}/{id}");
    let mut changed = policy("per_minute");
    changed["api_call_limits"] = json!(10);
    changed["user_call_limits"] = json!(null);
    changed["app_call_limits"] = json!(5);
    changed["ip_call_limits"] = json!(null);
    changed["type"] = json!(2);
    let updated = t.call(Method::PUT, &one, token, Some(changed)).await;
    assert_eq!(updated.status.as_u16(), 200, "{}", updated.body);
    assert_eq!(updated.body["api_call_limits"], 10);
    assert_eq!(updated.body["user_call_limits"], Value::Null);
    assert_eq!(updated.body["type"], 2);
    let shown = t.call(Method::GET, &one, token, None).await;
    assert_eq!(shown.body["app_call_limits"], 5);
    // A viewer reads but changes nothing; a member cannot change the admin's policy.
    let (_, viewer) = t.user_with_role("vic", "viewer").await;
    let (_, member) = t.user_with_role("meg", "member").await;
    assert_eq!(
        t.call(Method::GET, &one, Some(&viewer), None).await.status,
        200
    );
    for who in [&viewer, &member] {
        let r = t.call(Method::DELETE, &one, Some(who), None).await;
        r.assert_error(403, "ModelArts.0108");
    }
    let r = t
        .call(
            Method::POST,
            &throttles,
            Some(&viewer),
            Some(policy("viewers_own")),
        )
        .await;
    r.assert_error(403, "ModelArts.0108");
    // Another project sees nothing.
    let other = t.create_project("elsewhere").await;
    let r = t
        .call(
            Method::GET,
            &format!("/v2/{other}/apigw/instances/default/throttles/{id}"),
            token,
            None,
        )
        .await;
    assert!(r.status.is_client_error(), "{}", r.body);
    assert_eq!(t.call(Method::DELETE, &one, token, None).await.status, 204);
    let gone = t.call(Method::GET, &one, token, None).await;
    gone.assert_error(404, "APIG.3005");
}

/// A TOKEN policy shows its unit and default reservation, binds beside a REQUEST policy
/// (one of each unit per API), and keeps its unit for good.
#[tokio::test]
async fn token_policies_bind_beside_call_policies_and_keep_their_unit() {
    let t = TestApp::new().await;
    let token = Some(t.admin_token.as_str());
    let throttles = format!("{}/throttles", base(&t));
    let sid = t.service(&t.admin_token, "svc_tokens").await;
    let api_id = t.app_api(&t.admin_token, &sid).await;
    let mut ids = Vec::new();
    for (name, unit) in [
        ("calls", "REQUEST"),
        ("tokens", "TOKEN"),
        ("tokens_too", "TOKEN"),
    ] {
        let mut body = policy(name);
        body["unit"] = json!(unit);
        let created = t.call(Method::POST, &throttles, token, Some(body)).await;
        assert_eq!(created.status.as_u16(), 201, "{}", created.body);
        assert_eq!(created.body["unit"], unit);
        let reserve = if unit == "TOKEN" {
            json!(1024)
        } else {
            Value::Null
        };
        assert_eq!(created.body["default_max_tokens"], reserve);
        ids.push(created.body["id"].as_str().expect("id").to_owned());
    }
    let bind = |policy: &str| json!({"policy_id": policy, "publish_ids": [api_id.clone()]});
    let bindings = format!("{}/throttle-bindings", base(&t));
    for id in &ids[..2] {
        let r = t.call(Method::POST, &bindings, token, Some(bind(id))).await;
        assert_eq!(r.status.as_u16(), 201, "{}", r.body);
    }
    let r = t
        .call(Method::POST, &bindings, token, Some(bind(&ids[2])))
        .await;
    assert_eq!(r.status.as_u16(), 409, "{}", r.body);
    assert!(
        r.body["error_msg"]
            .as_str()
            .unwrap_or("")
            .contains("unit TOKEN"),
        "{}",
        r.body
    );
    // The unit stays; the default reservation changes.
    let one = format!("{throttles}/{}", ids[1]);
    let mut changed = policy("tokens");
    changed["unit"] = json!("REQUEST");
    let r = t
        .call(Method::PUT, &one, token, Some(changed.clone()))
        .await;
    r.assert_error(400, "ModelArts.0101");
    assert!(r.body["error_msg"].as_str().unwrap_or("").contains("unit"));
    changed["unit"] = json!("TOKEN");
    changed["default_max_tokens"] = json!(64);
    let r = t.call(Method::PUT, &one, token, Some(changed)).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.body);
    assert_eq!(
        (r.body["unit"].clone(), r.body["default_max_tokens"].clone()),
        (json!("TOKEN"), json!(64))
    );
    // A PUT that leaves both out keeps them.
    let r = t
        .call(Method::PUT, &one, token, Some(policy("tokens")))
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.body);
    assert_eq!(
        (r.body["unit"].clone(), r.body["default_max_tokens"].clone()),
        (json!("TOKEN"), json!(64))
    );
}

#[tokio::test]
async fn policies_bind_to_apis_once_and_take_special_limits() {
    let t = TestApp::new().await;
    let token = Some(t.admin_token.as_str());
    let sid = t.service(&t.admin_token, "throttled").await;
    let api = t.app_api(&t.admin_token, &sid).await;
    let throttles = format!("{}/throttles", base(&t));
    let mk = |name: &str| t.call(Method::POST, &throttles, token, Some(policy(name)));
    let first = mk("first_policy").await.body["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let second = mk("second_policy").await.body["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let bindings = format!("{}/throttle-bindings", base(&t));
    let bind = |policy: &str, apis: Value| {
        t.call(
            Method::POST,
            &bindings,
            token,
            Some(json!({"policy_id": policy, "publish_ids": apis})),
        )
    };
    let bound = bind(&first, json!([api])).await;
    assert_eq!(bound.status.as_u16(), 201, "{}", bound.body);
    let binding_id = bound.body["throttle_applys"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(bound.body["throttle_applys"][0]["publish_id"], api.as_str());
    // An API has at most one policy.
    let twice = bind(&second, json!([api])).await;
    assert_eq!(twice.status.as_u16(), 409, "{}", twice.body);
    for (apis, status) in [
        (json!([]), 400),
        (json!(["nope"]), 404),
        (json!([api, api]), 400),
    ] {
        let r = bind(&second, apis.clone()).await;
        assert_eq!(r.status.as_u16(), status, "{apis}: {}", r.body);
    }
    let r = bind("missing", json!([api])).await;
    r.assert_error(404, "APIG.3005");
    let listed = t
        .call(
            Method::GET,
            &format!("{bindings}/binded-apis?throttle_id={first}"),
            token,
            None,
        )
        .await;
    assert_eq!(listed.body["total"], 1, "{}", listed.body);
    assert_eq!(
        listed.body["apis"][0]["throttle_apply_id"],
        binding_id.as_str()
    );
    let shown = t
        .call(Method::GET, &format!("{throttles}/{first}"), token, None)
        .await;
    assert_eq!(shown.body["bind_num"], 1);

    // Special limits: for an app of the project or a member; one per object.
    let app = t.app(&t.admin_token, "special_app").await;
    let app_id = app["app_id"].as_str().expect("id").to_owned();
    let specials = format!("{throttles}/{first}/throttle-specials");
    let special = |body: Value| t.call(Method::POST, &specials, token, Some(body));
    let made = special(json!({"call_limits": 7, "object_id": app_id, "object_type": "APP"})).await;
    assert_eq!(made.status.as_u16(), 201, "{}", made.body);
    assert_eq!(made.body["object_name"], "special_app");
    let special_id = made.body["id"].as_str().expect("id").to_owned();
    let dup = special(json!({"call_limits": 8, "object_id": app_id, "object_type": "APP"})).await;
    assert_eq!(dup.status.as_u16(), 409, "{}", dup.body);
    for (body, field) in [
        (
            json!({"call_limits": 0, "object_id": app_id, "object_type": "APP"}),
            "call_limits",
        ),
        (
            json!({"call_limits": 1, "object_id": app_id, "object_type": "TEAM"}),
            "object_type",
        ),
        (
            json!({"call_limits": 1, "object_id": "ghost", "object_type": "USER"}),
            "object_id",
        ),
    ] {
        let r = special(body).await;
        r.assert_error(400, "ModelArts.0101");
        assert!(
            r.body["error_msg"].as_str().unwrap_or("").contains(field),
            "{}",
            r.body
        );
    }
    let (uid, _) = t.user_with_role("sue", "member").await;
    let user_special =
        special(json!({"call_limits": 3, "object_id": uid, "object_type": "USER"})).await;
    assert_eq!(user_special.status.as_u16(), 201, "{}", user_special.body);
    let listed = t.call(Method::GET, &specials, token, None).await;
    assert_eq!(listed.body["total"], 2);
    let one = format!("{specials}/{special_id}");
    let put = t
        .call(Method::PUT, &one, token, Some(json!({"call_limits": 9})))
        .await;
    assert_eq!(put.body["call_limits"], 9, "{}", put.body);
    assert_eq!(t.call(Method::DELETE, &one, token, None).await.status, 204);
    let again = t.call(Method::DELETE, &one, token, None).await;
    again.assert_error(404, "APIG.3005");
    let shown = t
        .call(Method::GET, &format!("{throttles}/{first}"), token, None)
        .await;
    assert_eq!(shown.body["is_inclu_special_throttle"], 1);

    // Unbinding frees the API for another policy; deleting the API drops its binding.
    let unbound = t
        .call(
            Method::DELETE,
            &format!("{bindings}/{binding_id}"),
            token,
            None,
        )
        .await;
    assert_eq!(unbound.status.as_u16(), 204, "{}", unbound.body);
    assert_eq!(bind(&second, json!([api])).await.status.as_u16(), 201);
    let deleted = t
        .call(
            Method::DELETE,
            &t.v1(&format!("/services/{sid}/app-auth-apis/{api}")),
            token,
            None,
        )
        .await;
    assert!(deleted.status.is_success(), "{}", deleted.body);
    let shown = t
        .call(Method::GET, &format!("{throttles}/{second}"), token, None)
        .await;
    assert_eq!(shown.body["bind_num"], 0, "{}", shown.body);
}

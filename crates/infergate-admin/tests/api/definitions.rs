//! Responses checked against the official API-explorer definitions (`tests/definitions`).
//!
//! Each definition's response schemas are made strict before use: every property the
//! definition lists must be present (spec §7 #17) and no other property may appear.

use std::path::PathBuf;

use axum::http::Method;
use serde_json::{json, Value};

use crate::harness::{Reply, TestApp};

fn load(operation: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/definitions")
        .join(format!("{operation}.json"));
    let text = std::fs::read_to_string(&path).expect("definition file");
    serde_json::from_str(&text).expect("definition JSON")
}

fn operation_object(doc: &Value) -> &Value {
    let paths = doc["paths"].as_object().expect("paths");
    let (_, methods) = paths.iter().next().expect("one path");
    let (_, op) = methods
        .as_object()
        .expect("methods")
        .iter()
        .next()
        .expect("one method");
    op
}

/// The request example of an operation's definition.
pub fn request_example(operation: &str) -> Value {
    operation_object(&load(operation))["x-request-examples-1"].clone()
}

fn strict(mut definitions: Value) -> Value {
    if let Some(map) = definitions.as_object_mut() {
        for schema in map.values_mut() {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                let keys: Vec<Value> = props.keys().map(|k| json!(k)).collect();
                schema["required"] = Value::Array(keys);
                schema["additionalProperties"] = json!(false);
            }
        }
    }
    definitions
}

/// Asserts that `reply` is a response the definition of `operation` allows.
#[track_caller]
pub fn assert_conforms(operation: &str, reply: &Reply) {
    let doc = load(operation);
    let op = operation_object(&doc);
    let status = reply.status.as_u16().to_string();
    assert!(
        reply.headers.contains_key("x-request-id"),
        "{operation}: X-Request-Id missing"
    );
    let schema = match op["responses"].get(&status) {
        Some(response) => response.get("schema").cloned(),
        None if reply.status.is_client_error() || reply.status.is_server_error() => {
            Some(json!({"$ref": "#/definitions/ErrorResponse"}))
        }
        None => panic!("{operation}: status {status} is not a documented success"),
    };
    let Some(schema) = schema else {
        assert!(
            reply.body.is_null(),
            "{operation} {status}: no body expected, got {}",
            reply.body
        );
        return;
    };
    let root = json!({
        "definitions": strict(doc["definitions"].clone()),
        "allOf": [schema],
    });
    let validator = jsonschema::validator_for(&root).expect("schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(&reply.body)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "{operation} {status} does not conform: {errors:?}\nbody: {}",
        reply.body
    );
}

#[tokio::test]
async fn implemented_operations_conform() {
    let t = TestApp::new().await;
    let sid = t.service(&t.admin_token, "svc").await;
    let other = t.service(&t.admin_token, "other").await;

    // The example's path names another service; this service's own is used instead.
    let mut example = request_example("CreateAppAuthApi");
    example["api_path"] = json!(format!("/v1/infers/{sid}"));
    let created = t.create_api(&t.admin_token, &sid, example).await;
    assert_conforms("CreateAppAuthApi", &created);
    let api_id = created.body["api"]["api_id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_conforms(
        "CreateAppAuthApi",
        &t.create_api(&t.admin_token, &sid, json!({})).await,
    );
    assert_conforms(
        "CreateAppAuthApi",
        &t.create_api(&t.admin_token, "nope", json!({})).await,
    );
    assert_conforms(
        "CreateAppAuthApi",
        &t.create_api("bad-token", &sid, json!({})).await,
    );
    assert_conforms(
        "CreateAppAuthApi",
        &t.create_api(&t.admin_token, &sid, json!({"auth_type": "X"}))
            .await,
    );

    let get = |s: String, a: String| {
        let t = &t;
        async move {
            t.call(
                Method::GET,
                &t.v1(&format!("/app-auth/{s}/apis/{a}")),
                Some(&t.admin_token),
                None,
            )
            .await
        }
    };
    assert_conforms("GetAppAuthApiInfo", &get(sid.clone(), api_id.clone()).await);
    assert_conforms("GetAppAuthApiInfo", &get(sid.clone(), "nope".into()).await);
    assert_conforms(
        "GetAppAuthApiInfo",
        &get(other.clone(), api_id.clone()).await,
    );

    let list = t
        .call(
            Method::GET,
            &t.v1(&format!("/services/{sid}/app-auth-apis")),
            Some(&t.admin_token),
            None,
        )
        .await;
    assert_conforms("GetAppAuthApisInfo", &list);
    let empty = t
        .call(
            Method::GET,
            &t.v1(&format!("/services/{other}/app-auth-apis")),
            Some(&t.admin_token),
            None,
        )
        .await;
    assert_conforms("GetAppAuthApisInfo", &empty);

    let delete = t
        .call(
            Method::DELETE,
            &t.v1(&format!("/services/{sid}/app-auth-apis/{api_id}")),
            Some(&t.admin_token),
            None,
        )
        .await;
    assert_eq!(delete.status.as_u16(), 204);
    assert_conforms("DeleteAppAuthApi", &delete);
    let again = t
        .call(
            Method::DELETE,
            &t.v1(&format!("/services/{sid}/app-auth-apis/{api_id}")),
            Some(&t.admin_token),
            None,
        )
        .await;
    assert_conforms("DeleteAppAuthApi", &again);
}

#[test]
fn strictness_catches_a_missing_field() {
    // The check itself must be able to fail: a response lacking a field is refused.
    let reply = Reply {
        status: axum::http::StatusCode::OK,
        headers: {
            let mut h = axum::http::HeaderMap::new();
            h.insert("x-request-id", "x".parse().expect("value"));
            h
        },
        body: json!({"api": {"api_id": "x", "support_app_code": true}}),
    };
    let result = std::panic::catch_unwind(|| assert_conforms("GetAppAuthApiInfo", &reply));
    assert!(result.is_err());
}

#[tokio::test]
async fn app_and_authorization_operations_conform() {
    let t = TestApp::new().await;
    let sid = t.service(&t.admin_token, "svc").await;
    let created = t.create_app(&t.admin_token, "app_demo01").await;
    assert_conforms("CreateApigApp", &created);
    assert_conforms(
        "CreateApigApp",
        &t.create_app(&t.admin_token, "app_demo01").await,
    );
    assert_conforms("CreateApigApp", &t.create_app(&t.admin_token, "x").await);
    let app_id = created.body["app"]["app_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let app = |rest: &str| t.v1(&format!("/app-auth/apps/{app_id}{rest}"));
    let get = |path: String| {
        let t = &t;
        async move { t.call(Method::GET, &path, Some(&t.admin_token), None).await }
    };

    assert_conforms(
        "ListApigApps",
        &get(t.v1("/app-auth/apps?limit=10&offset=0&sort_by=created_at&order=desc")).await,
    );
    assert_conforms("ShowApigApp", &get(app("")).await);
    assert_conforms("ShowApigApp", &get(t.v1("/app-auth/apps/missing")).await);
    assert_conforms(
        "ApigAppExists",
        &get(t.v1("/app-auth/apps/app_demo01/exists")).await,
    );
    assert_conforms(
        "ApigAppExists",
        &get(t.v1("/app-auth/apps/nothing/exists")).await,
    );
    let secret = t
        .call(Method::PUT, &app("/app-secret"), Some(&t.admin_token), None)
        .await;
    assert_conforms("ResetApigAppSecret", &secret);
    let code = t
        .call(Method::POST, &app("/app-code"), Some(&t.admin_token), None)
        .await;
    assert_conforms("CreateApigAppCode", &code);
    let value = code.body["app"]["app_codes"][0]
        .as_str()
        .expect("code")
        .to_owned();
    let reset = t
        .call(
            Method::PUT,
            &app(&format!("/app-code/{value}")),
            Some(&t.admin_token),
            None,
        )
        .await;
    assert_conforms("ResetApigAppCode", &reset);
    assert_conforms(
        "ResetApigAppCode",
        &t.call(
            Method::PUT,
            &app(&format!("/app-code/{value}")),
            Some(&t.admin_token),
            None,
        )
        .await,
    );
    let value = reset.body["app"]["app_codes"][0]
        .as_str()
        .expect("code")
        .to_owned();
    let deleted = t
        .call(
            Method::DELETE,
            &app(&format!("/app-code/{value}")),
            Some(&t.admin_token),
            None,
        )
        .await;
    assert_conforms("DeleteApigAppCode", &deleted);

    let registered = t
        .batch(
            Method::POST,
            &t.v1(&format!("/services/{sid}/app-auth-api")),
            &t.admin_token,
            &[&app_id, "missing"],
        )
        .await;
    assert_conforms("CreateAndAuthAppAuthApi", &registered);
    let api_id = registered.body["api"]["api_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let path = t.auth_path(&sid, &api_id);
    assert_conforms(
        "AuthorizeApiToApigApps",
        &t.batch(Method::POST, &path, &t.admin_token, &[&app_id])
            .await,
    );
    assert_conforms(
        "AuthorizeApiToApigApps",
        &t.batch(
            Method::POST,
            &t.auth_path(&sid, "nope"),
            &t.admin_token,
            &[&app_id],
        )
        .await,
    );
    assert_conforms("ShowApisBindToApp", &get(app("/auth-apis")).await);
    assert_conforms(
        "ShowApiAuthInfos",
        &get(t.v1(&format!(
            "/services/{sid}/app-auth-apis/{api_id}/api-auths?show_only=AUTH"
        )))
        .await,
    );
    assert_conforms(
        "GetServiceAppAuthApiAuthInfo",
        &get(t.v1(&format!("/services/{sid}/api-auths"))).await,
    );
    let bare = t.service(&t.admin_token, "bare").await;
    assert_conforms(
        "GetServiceAppAuthApiAuthInfo",
        &get(t.v1(&format!("/services/{bare}/api-auths"))).await,
    );
    let refused = t
        .call(Method::DELETE, &app(""), Some(&t.admin_token), None)
        .await;
    assert_conforms("DeleteApigApp", &refused);
    let unbound = t
        .batch(Method::DELETE, &path, &t.admin_token, &[&app_id, "missing"])
        .await;
    assert_conforms("DeleteApiAppAuth", &unbound);
    let gone = t
        .call(Method::DELETE, &app(""), Some(&t.admin_token), None)
        .await;
    assert_eq!(gone.status.as_u16(), 200);
    assert_conforms("DeleteApigApp", &gone);
}

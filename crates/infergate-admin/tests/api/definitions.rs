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

    let created = t
        .create_api(&t.admin_token, &sid, request_example("CreateAppAuthApi"))
        .await;
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

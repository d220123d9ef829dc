//! The role matrix: every operation of this plane × {project admin, creator (member),
//! other member, viewer, no role, other project}, each cell asserting status and code.

use axum::http::Method;
use serde_json::{json, Value};

use infergate_admin::AdminSettings;

use crate::harness::{TestApp, PUBLIC_URL};

pub(crate) struct Callers {
    /// (label, token) in the column order of the expectations.
    columns: Vec<(&'static str, String)>,
    owner: String,
}

pub(crate) async fn callers(t: &TestApp) -> Callers {
    let (_, owner) = t.user_with_role("owner", "member").await;
    let (_, member) = t.user_with_role("member2", "member").await;
    let (_, viewer) = t.user_with_role("viewer", "viewer").await;
    // A token issued while the user held a role, which was then revoked.
    let (norole_id, norole) = t.user_with_role("norole", "member").await;
    let revoked = t
        .call(
            Method::DELETE,
            &format!(
                "/v3/projects/{}/users/{norole_id}/roles/member",
                t.project_id
            ),
            Some(&t.admin_token),
            None,
        )
        .await;
    assert_eq!(revoked.status.as_u16(), 204);
    // A member of another project, with a token scoped to that project.
    let other_project = t.create_project("team-b").await;
    let other_id = t.create_user("outsider").await;
    t.grant(&other_project, &other_id, "admin").await;
    let other = t.token("outsider", "outsider-password", "team-b").await;
    Callers {
        columns: vec![
            ("admin", t.admin_token.clone()),
            ("owner", owner.clone()),
            ("member", member),
            ("viewer", viewer),
            ("norole", norole),
            ("other-project", other),
        ],
        owner,
    }
}

const OK: (u16, &str) = (200, "");
const NO_CONTENT: (u16, &str) = (204, "");
const DENIED: (u16, &str) = (403, "ModelArts.0108");
const WRONG_PROJECT: (u16, &str) = (403, "ModelArts.0210");
const READ: [(u16, &str); 6] = [OK, OK, OK, OK, DENIED, WRONG_PROJECT];
const CREATE: [(u16, &str); 6] = [OK, OK, OK, DENIED, DENIED, WRONG_PROJECT];
const WRITE_OWNED: [(u16, &str); 6] = [OK, OK, DENIED, DENIED, DENIED, WRONG_PROJECT];
const DELETE_OWNED: [(u16, &str); 6] = [
    NO_CONTENT,
    NO_CONTENT,
    DENIED,
    DENIED,
    DENIED,
    WRONG_PROJECT,
];

fn api_id(reply: &Value) -> String {
    reply["api"]["api_id"].as_str().expect("api id").to_owned()
}

#[tokio::test]
async fn matrix() {
    let t = TestApp::new().await;
    let c = callers(&t).await;
    let shared = t.service(&c.owner, "shared").await;
    let shared_api = api_id(t.create_api(&c.owner, &shared, json!({})).await.assert_ok());
    let mut failures = Vec::new();
    let operations = [
        "services_create",
        "services_list",
        "services_show",
        "services_update",
        "services_delete",
        "CreateAppAuthApi",
        "GetAppAuthApiInfo",
        "GetAppAuthApisInfo",
        "DeleteAppAuthApi",
    ];
    for operation in operations {
        let expected = match operation {
            "services_create" => CREATE,
            "services_list" | "services_show" | "GetAppAuthApiInfo" | "GetAppAuthApisInfo" => READ,
            "services_update" | "CreateAppAuthApi" => WRITE_OWNED,
            _ => DELETE_OWNED,
        };
        for (i, (label, token)) in c.columns.iter().enumerate() {
            // Fresh objects of the owner for every cell that changes something.
            let fresh = t
                .service(&c.owner, &format!("s-{operation}-{i}").replace('_', "-"))
                .await;
            let reply = match operation {
                "services_create" => t.create_service(token, &format!("new-{i}")).await,
                "services_list" => {
                    t.call(Method::GET, &t.v1("/services"), Some(token), None)
                        .await
                }
                "services_show" => {
                    t.call(
                        Method::GET,
                        &t.v1(&format!("/services/{shared}")),
                        Some(token),
                        None,
                    )
                    .await
                }
                "services_update" => {
                    t.call(
                        Method::PUT,
                        &t.v1(&format!("/services/{fresh}")),
                        Some(token),
                        Some(json!({"description": "changed"})),
                    )
                    .await
                }
                "services_delete" => {
                    t.call(
                        Method::DELETE,
                        &t.v1(&format!("/services/{fresh}")),
                        Some(token),
                        None,
                    )
                    .await
                }
                "CreateAppAuthApi" => t.create_api(token, &fresh, json!({})).await,
                "GetAppAuthApiInfo" => {
                    t.call(
                        Method::GET,
                        &t.v1(&format!("/app-auth/{shared}/apis/{shared_api}")),
                        Some(token),
                        None,
                    )
                    .await
                }
                "GetAppAuthApisInfo" => {
                    t.call(
                        Method::GET,
                        &t.v1(&format!("/services/{shared}/app-auth-apis")),
                        Some(token),
                        None,
                    )
                    .await
                }
                _ => {
                    let api = api_id(t.create_api(&c.owner, &fresh, json!({})).await.assert_ok());
                    t.call(
                        Method::DELETE,
                        &t.v1(&format!("/services/{fresh}/app-auth-apis/{api}")),
                        Some(token),
                        None,
                    )
                    .await
                }
            };
            let got = (reply.status.as_u16(), reply.code().to_owned());
            let want = (expected[i].0, expected[i].1.to_owned());
            if got != want {
                failures.push(format!(
                    "{operation} as {label}: got {got:?}, want {want:?} ({})",
                    reply.body
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn token_scope_rules() {
    let t = TestApp::new().await;
    // Domain-scoped and unscoped tokens cannot call project operations.
    for scope in [json!({"domain": {"name": "default"}}), Value::Null] {
        let reply = t
            .issue("admin", crate::harness::ADMIN_PASSWORD, scope)
            .await;
        let token = reply.headers["x-subject-token"]
            .to_str()
            .expect("ascii")
            .to_owned();
        t.call(Method::GET, &t.v1("/services"), Some(&token), None)
            .await
            .assert_error(401, "ModelArts.0212");
    }
    t.call(Method::GET, &t.v1("/services"), None, None)
        .await
        .assert_error(401, "ModelArts.0201");
    t.call(
        Method::GET,
        &t.v1("/services"),
        Some("igt1.garbage.x"),
        None,
    )
    .await
    .assert_error(401, "ModelArts.0203");
    t.call(
        Method::GET,
        "/v1/not_valid!/services",
        Some(&t.admin_token),
        None,
    )
    .await
    .assert_error(400, "ModelArts.0101");
}

const APP_NOT_FOUND: (u16, &str) = (404, "ModelArts.3923");
const READ_APP: [(u16, &str); 6] = [OK, OK, APP_NOT_FOUND, APP_NOT_FOUND, DENIED, WRONG_PROJECT];
const CHANGE_APP: [(u16, &str); 6] = [
    DENIED,
    OK,
    APP_NOT_FOUND,
    APP_NOT_FOUND,
    DENIED,
    WRONG_PROJECT,
];

#[tokio::test]
async fn app_and_authorization_matrix() {
    let t = TestApp::with_settings(AdminSettings {
        max_apps_per_user: 1000,
        ..AdminSettings::new(PUBLIC_URL, "http://a")
    })
    .await;
    let c = callers(&t).await;
    let shared = t.service(&c.owner, "shared").await;
    let shared_api = api_id(t.create_api(&c.owner, &shared, json!({})).await.assert_ok());
    let shared_app = t.app(&c.owner, "shared_app").await["app_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let operations: [(&str, [(u16, &str); 6]); 17] = [
        ("CreateApigApp", CREATE),
        ("ListApigApps", READ),
        ("ApigAppExists", READ),
        ("ShowApigApp", READ_APP),
        ("ShowApisBindToApp", READ_APP),
        ("DeleteApigApp", CHANGE_APP),
        ("ResetApigAppSecret", CHANGE_APP),
        ("CreateApigAppCode", CHANGE_APP),
        ("ResetApigAppCode", CHANGE_APP),
        ("DeleteApigAppCode", CHANGE_APP),
        ("CreateAndAuthAppAuthApi", WRITE_OWNED),
        ("AuthorizeApiToApigApps", WRITE_OWNED),
        ("UpdateAuthApiToApigApps", WRITE_OWNED),
        ("DeleteApiAppAuth", WRITE_OWNED),
        ("DeleteApiAppAuthAlias", WRITE_OWNED),
        ("ShowApiAuthInfos", READ),
        ("GetServiceAppAuthApiAuthInfo", READ),
    ];
    let mut failures = Vec::new();
    for (n, (operation, expected)) in operations.into_iter().enumerate() {
        for (i, (label, token)) in c.columns.iter().enumerate() {
            let fresh_service = t.service(&c.owner, &format!("m{n}-{i}")).await;
            let fresh_api = api_id(
                t.create_api(&c.owner, &fresh_service, json!({}))
                    .await
                    .assert_ok(),
            );
            let fresh_app = t.app(&c.owner, &format!("app_{n}_{i}")).await;
            let app_id = fresh_app["app_id"].as_str().expect("id").to_owned();
            let app_path = t.v1(&format!("/app-auth/apps/{app_id}"));
            let code = t
                .call(
                    Method::POST,
                    &format!("{app_path}/app-code"),
                    Some(&c.owner),
                    None,
                )
                .await
                .assert_ok()["app"]["app_codes"][0]
                .as_str()
                .expect("code")
                .to_owned();
            let auth_path = t.auth_path(&fresh_service, &fresh_api);
            if operation.starts_with("DeleteApiAppAuth") {
                t.batch(Method::POST, &auth_path, &c.owner, &[&app_id])
                    .await
                    .assert_ok();
            }
            let bare = token.as_str();
            let token = Some(bare);
            let reply = match operation {
                "CreateApigApp" => t.create_app(bare, &format!("new_{n}_{i}")).await,
                "ListApigApps" => {
                    t.call(Method::GET, &t.v1("/app-auth/apps"), token, None)
                        .await
                }
                "ApigAppExists" => {
                    t.call(
                        Method::GET,
                        &t.v1("/app-auth/apps/shared_app/exists"),
                        token,
                        None,
                    )
                    .await
                }
                "ShowApigApp" => {
                    t.call(
                        Method::GET,
                        &t.v1(&format!("/app-auth/apps/{shared_app}")),
                        token,
                        None,
                    )
                    .await
                }
                "ShowApisBindToApp" => {
                    t.call(
                        Method::GET,
                        &t.v1(&format!("/app-auth/apps/{shared_app}/auth-apis")),
                        token,
                        None,
                    )
                    .await
                }
                "DeleteApigApp" => t.call(Method::DELETE, &app_path, token, None).await,
                "ResetApigAppSecret" => {
                    t.call(Method::PUT, &format!("{app_path}/app-secret"), token, None)
                        .await
                }
                "CreateApigAppCode" => {
                    t.call(Method::POST, &format!("{app_path}/app-code"), token, None)
                        .await
                }
                "ResetApigAppCode" => {
                    t.call(
                        Method::PUT,
                        &format!("{app_path}/app-code/{code}"),
                        token,
                        None,
                    )
                    .await
                }
                "DeleteApigAppCode" => {
                    t.call(
                        Method::DELETE,
                        &format!("{app_path}/app-code/{code}"),
                        token,
                        None,
                    )
                    .await
                }
                "CreateAndAuthAppAuthApi" => {
                    let path = t.v1(&format!("/services/{fresh_service}/app-auth-api"));
                    t.batch(Method::POST, &path, bare, &[&app_id]).await
                }
                "AuthorizeApiToApigApps" => {
                    t.batch(Method::POST, &auth_path, bare, &[&app_id]).await
                }
                "UpdateAuthApiToApigApps" => {
                    t.batch(Method::PUT, &auth_path, bare, &[&app_id]).await
                }
                "DeleteApiAppAuth" => t.batch(Method::DELETE, &auth_path, bare, &[&app_id]).await,
                "DeleteApiAppAuthAlias" => {
                    let alias = t.v1(&format!("/app-auth/{fresh_service}/apis/{fresh_api}/auths"));
                    t.batch(Method::DELETE, &alias, bare, &[&app_id]).await
                }
                "ShowApiAuthInfos" => {
                    let path = t.v1(&format!(
                        "/services/{shared}/app-auth-apis/{shared_api}/api-auths"
                    ));
                    t.call(Method::GET, &path, token, None).await
                }
                _ => {
                    t.call(
                        Method::GET,
                        &t.v1(&format!("/services/{shared}/api-auths")),
                        token,
                        None,
                    )
                    .await
                }
            };
            let got = (reply.status.as_u16(), reply.code().to_owned());
            let want = (expected[i].0, expected[i].1.to_owned());
            if got != want {
                failures.push(format!(
                    "{operation} as {label}: got {got:?}, want {want:?} ({})",
                    reply.body
                ));
            }
            // A successful batch must have succeeded for the app too (R8 holds: owner's app).
            if got.0 == 200 {
                for key in ["auth_result", "unauth_result"] {
                    if let Some(results) = reply.body[key].as_array() {
                        if results.iter().any(|r| r["success"] != true) {
                            failures.push(format!("{operation} as {label}: {}", reply.body));
                        }
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// An app's AppKey, AppSecret and AppCodes appear in full only in answers to its creator
/// and to project admins: every read operation that shows the app masks them for other
/// members, viewers and other projects.
#[tokio::test]
async fn credentials_are_shown_to_the_creator_and_project_admins_only() {
    let t = TestApp::new().await;
    let c = callers(&t).await;
    let service = t.service(&c.owner, "svc").await;
    let api = api_id(
        t.create_api(&c.owner, &service, json!({}))
            .await
            .assert_ok(),
    );
    let app = t.app(&c.owner, "the_app").await;
    let app_id = app["app_id"].as_str().expect("id").to_owned();
    let app_path = t.v1(&format!("/app-auth/apps/{app_id}"));
    let code = t
        .call(
            Method::POST,
            &format!("{app_path}/app-code"),
            Some(&c.owner),
            None,
        )
        .await
        .assert_ok()["app"]["app_codes"][0]
        .as_str()
        .expect("code")
        .to_owned();
    t.batch(
        Method::POST,
        &t.auth_path(&service, &api),
        &c.owner,
        &[&app_id],
    )
    .await
    .assert_ok();
    let key = app["app_key"].as_str().expect("key").to_owned();
    let secret = app["app_secret"].as_str().expect("secret").to_owned();
    let reads = [
        ("ListApigApps", t.v1("/app-auth/apps")),
        ("ShowApigApp", app_path.clone()),
        ("ShowApisBindToApp", format!("{app_path}/auth-apis")),
        (
            "ShowApiAuthInfos",
            t.v1(&format!(
                "/services/{service}/app-auth-apis/{api}/api-auths"
            )),
        ),
        (
            "GetServiceAppAuthApiAuthInfo",
            t.v1(&format!("/services/{service}/api-auths")),
        ),
    ];
    let mut shown = Vec::new();
    for (label, token) in &c.columns {
        let trusted = matches!(*label, "admin" | "owner");
        for (operation, path) in &reads {
            let reply = t.call(Method::GET, path, Some(token), None).await;
            let text = reply.body.to_string();
            for (what, value) in [("AppKey", &key), ("AppSecret", &secret), ("AppCode", &code)] {
                if text.contains(value.as_str()) {
                    shown.push(format!("{operation} as {label}: {what}"));
                }
            }
            if trusted && reply.status.as_u16() == 200 && text.contains(&app_id) {
                assert!(text.contains(&key), "{operation} as {label}: {text}");
            }
            if !trusted && reply.status.as_u16() == 200 && text.contains(&app_id) {
                assert!(text.contains("******"), "{operation} as {label}: {text}");
            }
        }
    }
    let shown: Vec<_> = shown
        .into_iter()
        .filter(|line| !line.contains(" as admin:") && !line.contains(" as owner:"))
        .collect();
    assert!(shown.is_empty(), "credentials shown: {shown:#?}");
}

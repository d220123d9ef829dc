//! The IAM subset: tokens, users, projects, roles, grants, AK/SK, in Keystone shapes.

use axum::body::Body;
use axum::http::{Method, Request};
use infergate_core::token::Scope;
use serde_json::{json, Value};

use crate::harness::{TestApp, ADMIN_PASSWORD};

fn assert_keystone_error(body: &Value, code: u16) {
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(body["error"]["title"].is_string(), "{body}");
}

#[tokio::test]
async fn password_token_shapes() {
    let t = TestApp::new().await;
    let reply = t
        .issue(
            "admin",
            ADMIN_PASSWORD,
            json!({"project": {"name": "default"}}),
        )
        .await;
    assert_eq!(reply.status.as_u16(), 201);
    let token = &reply.body["token"];
    assert_eq!(token["methods"], json!(["password"]));
    assert_eq!(token["project"]["id"], t.project_id.as_str());
    assert_eq!(token["project"]["name"], "default");
    assert_eq!(token["user"]["name"], "admin");
    assert_eq!(token["user"]["domain"]["name"], "default");
    assert_eq!(token["roles"], json!([{"id": "admin", "name": "admin"}]));
    assert!(!token["catalog"].as_array().expect("catalog").is_empty());
    let issued = token["issued_at"].as_str().expect("issued");
    let expires = token["expires_at"].as_str().expect("expires");
    assert_eq!(
        issued.len(),
        "2024-01-02T03:04:05.000000Z".len(),
        "{issued}"
    );
    let parse = |s: &str| chrono::DateTime::parse_from_rfc3339(s).expect("time");
    assert_eq!((parse(expires) - parse(issued)).num_hours(), 24);
    assert!(reply.body.get("X-Subject-Token").is_none());

    // Scope by project id, and nocatalog.
    let mut by_id = t
        .call(
            Method::POST,
            "/v3/auth/tokens?nocatalog=true",
            None,
            Some(
                json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
                "name": "admin", "password": ADMIN_PASSWORD, "domain": {"name": "default"}}}},
                "scope": {"project": {"id": t.project_id}}}}),
            ),
        )
        .await;
    assert_eq!(by_id.status.as_u16(), 201);
    assert_eq!(by_id.body["token"]["catalog"], json!([]));
    let domain_scoped = t
        .issue(
            "admin",
            ADMIN_PASSWORD,
            json!({"domain": {"name": "default"}}),
        )
        .await;
    assert_eq!(domain_scoped.status.as_u16(), 201);
    assert_eq!(domain_scoped.body["token"]["domain"]["name"], "default");
    assert!(domain_scoped.body["token"].get("project").is_none());

    // Validate: the caller's token plus X-Subject-Token.
    let subject = by_id.headers.remove("x-subject-token").expect("token");
    let req = Request::builder()
        .method(Method::GET)
        .uri("/v3/auth/tokens")
        .header("X-Auth-Token", &t.admin_token)
        .header("X-Subject-Token", subject.clone())
        .body(Body::empty())
        .expect("req");
    let validated = t.send(req).await;
    assert_eq!(validated.status.as_u16(), 200, "{}", validated.body);
    assert_eq!(
        validated.body["token"]["project"]["id"],
        t.project_id.as_str()
    );
    let req = Request::builder()
        .method(Method::GET)
        .uri("/v3/auth/tokens")
        .header("X-Auth-Token", &t.admin_token)
        .header("X-Subject-Token", "igt1.bad.token")
        .body(Body::empty())
        .expect("req");
    let invalid = t.send(req).await;
    assert_eq!(invalid.status.as_u16(), 404);
    assert_keystone_error(&invalid.body, 404);
}

/// Another tenant's project and tokens answer a user as ones that do not exist: showing the
/// project, scoping a token to it, and reading another user's token all answer as for a
/// made-up id.
#[tokio::test]
async fn another_tenants_project_and_tokens_are_not_confirmed() {
    let t = TestApp::new().await;
    let team_b = t.create_project("team-b").await;
    let bob = t.create_user("bob").await;
    t.grant(&team_b, &bob, "member").await;
    let bob_token = t.token("bob", "bob-password", "team-b").await;
    let (_, alice_token) = t.user_with_role("alice", "member").await;
    let made_up = "0123456789abcdef0123456789abcdef";
    // The default project exists and bob has no role in it.
    let shown = |id: String| {
        let token = bob_token.clone();
        let t = &t;
        async move {
            let reply = t
                .call(
                    Method::GET,
                    &format!("/v3/projects/{id}"),
                    Some(&token),
                    None,
                )
                .await;
            (
                reply.status.as_u16(),
                reply.body["error"]["message"].clone(),
            )
        }
    };
    let (status, message) = shown(t.project_id.clone()).await;
    assert_eq!(status, 404);
    assert_eq!(
        message.as_str().map(|m| m.replace(&t.project_id, "ID")),
        shown(made_up.to_owned())
            .await
            .1
            .as_str()
            .map(|m| m.replace(made_up, "ID"))
    );
    assert_eq!(shown(team_b.clone()).await.0, 200);
    let scoped = |id: String| {
        let t = &t;
        async move {
            let reply = t
                .issue("bob", "bob-password", json!({"project": {"id": id}}))
                .await;
            (reply.status.as_u16(), reply.body)
        }
    };
    assert_eq!(
        scoped(t.project_id.clone()).await,
        scoped(made_up.to_owned()).await
    );
    assert_eq!(scoped(team_b).await.0, 201);
    let validated = |caller: String, subject: String| {
        let t = &t;
        async move {
            let req = Request::builder()
                .method(Method::GET)
                .uri("/v3/auth/tokens")
                .header("X-Auth-Token", caller)
                .header("X-Subject-Token", subject)
                .body(Body::empty())
                .expect("req");
            let reply = t.send(req).await;
            (reply.status.as_u16(), reply.body)
        }
    };
    assert_eq!(
        validated(bob_token.clone(), alice_token.clone()).await,
        validated(bob_token.clone(), "igt1.bad.token".to_owned()).await
    );
    assert_eq!(
        validated(bob_token.clone(), alice_token.clone()).await.0,
        404
    );
    assert_eq!(validated(bob_token.clone(), bob_token.clone()).await.0, 200);
    assert_eq!(validated(t.admin_token.clone(), alice_token).await.0, 200);
}

#[tokio::test]
async fn refusals_in_keystone_shape() {
    let t = TestApp::new().await;
    let wrong = t.issue("admin", "wrong-password", Value::Null).await;
    assert_eq!(wrong.status.as_u16(), 401);
    assert_keystone_error(&wrong.body, 401);
    let unknown = t.issue("nobody", ADMIN_PASSWORD, Value::Null).await;
    assert_eq!(unknown.status.as_u16(), 401);
    let not_member = t
        .issue(
            "admin",
            ADMIN_PASSWORD,
            json!({"project": {"name": "missing"}}),
        )
        .await;
    assert_eq!(not_member.status.as_u16(), 401);
    let bad = t
        .call(
            Method::POST,
            "/v3/auth/tokens",
            None,
            Some(json!({"auth": {"identity": {"methods": "password"}}})),
        )
        .await;
    assert_eq!(bad.status.as_u16(), 400);
    assert!(
        bad.body["error"]["message"]
            .as_str()
            .expect("msg")
            .contains("auth.identity.methods"),
        "{}",
        bad.body
    );
    let no_token = t.call(Method::GET, "/v3/users", None, None).await;
    assert_eq!(no_token.status.as_u16(), 401);
    assert_keystone_error(&no_token.body, 401);

    // A project member is not a domain administrator.
    let (_, member) = t.user_with_role("alice", "member").await;
    for (method, path, body) in [
        (
            Method::POST,
            "/v3/users",
            Some(json!({"user": {"name": "x", "password": "password-1"}})),
        ),
        (Method::GET, "/v3/users", None),
        (
            Method::POST,
            "/v3/projects",
            Some(json!({"project": {"name": "p"}})),
        ),
    ] {
        let reply = t.call(method, path, Some(&member), body).await;
        assert_eq!(reply.status.as_u16(), 403, "{path}");
        assert_keystone_error(&reply.body, 403);
    }
    let short = t
        .call(
            Method::POST,
            "/v3/users",
            Some(&t.admin_token),
            Some(json!({"user": {"name": "bob", "password": "short"}})),
        )
        .await;
    assert_eq!(short.status.as_u16(), 400);
    assert!(short.body["error"]["message"]
        .as_str()
        .expect("msg")
        .contains("user.password"));
    let dup = t
        .call(
            Method::POST,
            "/v3/users",
            Some(&t.admin_token),
            Some(json!({"user": {"name": "alice", "password": "password-1"}})),
        )
        .await;
    assert_eq!(dup.status.as_u16(), 409);
}

#[tokio::test]
async fn tokens_expire_and_die_with_their_user() {
    let t = TestApp::new().await;
    let (user_id, token) = t.user_with_role("carol", "member").await;
    t.call(Method::GET, &t.v1("/services"), Some(&token), None)
        .await
        .assert_ok();

    let day_ago = infergate_admin::now_ms() - 25 * 3600 * 1000;
    let (expired, _) =
        t.state
            .tokens
            .issue(&user_id, Scope::Project(t.project_id.clone()), day_ago);
    t.call(Method::GET, &t.v1("/services"), Some(&expired), None)
        .await
        .assert_error(401, "ModelArts.0202");

    // A password change kills earlier tokens; a new one works.
    let changed = t
        .call(
            Method::POST,
            &format!("/v3/users/{user_id}/password"),
            Some(&token),
            Some(json!({"user": {"password": "carol-new-password", "original_password": "carol-password"}})),
        )
        .await;
    assert_eq!(changed.status.as_u16(), 204, "{}", changed.body);
    t.call(Method::GET, &t.v1("/services"), Some(&token), None)
        .await
        .assert_error(401, "ModelArts.0203");
    let fresh = t.token("carol", "carol-new-password", "default").await;
    t.call(Method::GET, &t.v1("/services"), Some(&fresh), None)
        .await
        .assert_ok();

    let deleted = t
        .call(
            Method::DELETE,
            &format!("/v3/users/{user_id}"),
            Some(&t.admin_token),
            None,
        )
        .await;
    assert_eq!(deleted.status.as_u16(), 204);
    t.call(Method::GET, &t.v1("/services"), Some(&fresh), None)
        .await
        .assert_error(401, "ModelArts.0203");
}

#[tokio::test]
async fn users_projects_roles_listing() {
    let t = TestApp::new().await;
    let roles = t
        .call(Method::GET, "/v3/roles", Some(&t.admin_token), None)
        .await;
    let names: Vec<&str> = roles.body["roles"]
        .as_array()
        .expect("roles")
        .iter()
        .map(|r| r["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["admin", "member", "viewer"]);
    let uid = t.create_user("dave").await;
    let users = t
        .call(
            Method::GET,
            "/v3/users?name=dave",
            Some(&t.admin_token),
            None,
        )
        .await;
    assert_eq!(users.body["users"][0]["id"], uid.as_str());
    let pid = t.create_project("research").await;
    t.grant(&pid, &uid, "viewer").await;
    let listed = t
        .call(
            Method::GET,
            &format!("/v3/projects/{pid}/users/{uid}/roles"),
            Some(&t.admin_token),
            None,
        )
        .await;
    assert_eq!(listed.body["roles"][0]["id"], "viewer");
    let dave = t.token("dave", "dave-password", "research").await;
    let projects = t.call(Method::GET, "/v3/projects", Some(&dave), None).await;
    let visible: Vec<&str> = projects.body["projects"]
        .as_array()
        .expect("projects")
        .iter()
        .map(|p| p["name"].as_str().expect("name"))
        .collect();
    assert_eq!(visible, ["research"]);
    let missing = t
        .call(
            Method::PUT,
            &format!("/v3/projects/{pid}/users/{uid}/roles/owner"),
            Some(&t.admin_token),
            None,
        )
        .await;
    assert_eq!(missing.status.as_u16(), 404);
    let revoke_absent = t
        .call(
            Method::DELETE,
            &format!("/v3/projects/{pid}/users/{uid}/roles/admin"),
            Some(&t.admin_token),
            None,
        )
        .await;
    assert_eq!(revoke_absent.status.as_u16(), 404);
}

pub(crate) fn signed_request(
    method: &str,
    path: &str,
    ak: &str,
    sk: &str,
    body: &str,
    project: Option<&str>,
) -> Request<Body> {
    let project: Vec<(&str, &str)> = project.map(|p| ("X-Project-Id", p)).into_iter().collect();
    replayed(method, (path, ak, sk), (body, &project), (body, &[]))
}

#[tokio::test]
async fn aksk_signed_management_calls() {
    let t = TestApp::new().await;
    let (uid, token) = t.user_with_role("erin", "member").await;
    let created = t
        .call(
            Method::POST,
            "/v3.0/OS-CREDENTIAL/credentials",
            Some(&token),
            Some(json!({"credential": {"user_id": uid, "description": "ci"}})),
        )
        .await;
    assert_eq!(created.status.as_u16(), 201, "{}", created.body);
    let cred = &created.body["credential"];
    let ak = cred["access"].as_str().expect("ak").to_owned();
    let sk = cred["secret"].as_str().expect("sk").to_owned();
    assert_eq!(ak.len(), 20);
    assert_eq!(sk.len(), 40);
    assert_eq!(cred["status"], "active");
    let stored = t
        .state
        .store
        .credential(&ak)
        .await
        .expect("q")
        .expect("stored");
    assert!(
        !stored.secret_sealed.contains(&sk),
        "SK is encrypted at rest"
    );

    let body = json!({"service_name": "signed", "upstreams": ["http://127.0.0.1:9"]}).to_string();
    let path = t.v1("/services");
    let ok = t
        .send(signed_request("POST", &path, &ak, &sk, &body, None))
        .await;
    assert_eq!(ok.status.as_u16(), 200, "{}", ok.body);
    assert_eq!(ok.body["owner"], uid.as_str());
    let with_project = t
        .send(signed_request(
            "GET",
            &path,
            &ak,
            &sk,
            "",
            Some(&t.project_id),
        ))
        .await;
    assert_eq!(with_project.status.as_u16(), 200, "{}", with_project.body);
    t.send(signed_request(
        "GET",
        &path,
        &ak,
        &sk,
        "",
        Some("another-project"),
    ))
    .await
    .assert_error(403, "ModelArts.0210");

    // Body changed after signing, wrong secret, unknown key.
    let mut tampered = signed_request("POST", &path, &ak, &sk, &body, None);
    *tampered.body_mut() = Body::from(body.replace("signed", "signex"));
    let reply = t.send(tampered).await;
    reply.assert_error(401, "ModelArts.0206");
    assert!(reply.body["error_msg"]
        .as_str()
        .expect("msg")
        .contains("canonicalRequest:POST|"));
    t.send(signed_request(
        "GET",
        &path,
        &ak,
        "not-the-secret",
        "",
        None,
    ))
    .await
    .assert_error(401, "ModelArts.0206");
    t.send(signed_request("GET", &path, "UNKNOWNAK", &sk, "", None))
        .await
        .assert_error(401, "ModelArts.0206");

    // At most two keys per user; a member cannot create keys for others.
    let second = t
        .call(
            Method::POST,
            "/v3.0/OS-CREDENTIAL/credentials",
            Some(&token),
            Some(json!({"credential": {"user_id": uid}})),
        )
        .await;
    assert_eq!(second.status.as_u16(), 201);
    let third = t
        .call(
            Method::POST,
            "/v3.0/OS-CREDENTIAL/credentials",
            Some(&token),
            Some(json!({"credential": {"user_id": uid}})),
        )
        .await;
    assert_eq!(third.status.as_u16(), 400);
    assert_eq!(third.body["error"]["message"], "akSkNumExceed");
    let admin_id = t
        .state
        .store
        .user_by_name(
            &t.state
                .store
                .domain_by_name("default")
                .await
                .expect("q")
                .expect("d")
                .id,
            "admin",
        )
        .await
        .expect("q")
        .expect("admin")
        .id;
    let foreign = t
        .call(
            Method::POST,
            "/v3.0/OS-CREDENTIAL/credentials",
            Some(&token),
            Some(json!({"credential": {"user_id": admin_id}})),
        )
        .await;
    assert_eq!(foreign.status.as_u16(), 403);

    // Deleting the user kills the key.
    t.call(
        Method::DELETE,
        &format!("/v3/users/{uid}"),
        Some(&t.admin_token),
        None,
    )
    .await;
    t.send(signed_request("GET", &path, &ak, &sk, "", None))
        .await
        .assert_error(401, "ModelArts.0206");
}

/// A signed request as an attacker may replay it: signed over `signed_body` with `extra`
/// headers signed too, then sent with `sent_body` and `added` headers.
fn replayed(
    method: &str,
    (path, ak, sk): (&str, &str, &str),
    (signed_body, extra): (&str, &[(&str, &str)]),
    (sent_body, added): (&str, &[(&str, &str)]),
) -> Request<Body> {
    let date = infergate_sign::format_sdk_date(chrono::Utc::now());
    let mut headers = vec![
        ("Host".to_string(), "admin.example.test".to_string()),
        ("X-Sdk-Date".to_string(), date),
        ("Content-Type".to_string(), "application/json".to_string()),
    ];
    headers.extend(extra.iter().map(|(n, v)| (n.to_string(), v.to_string())));
    let (raw_path, raw_query) = path.split_once('?').unwrap_or((path, ""));
    let signed = infergate_sign::sign(
        ak,
        sk.as_bytes(),
        method,
        raw_path,
        raw_query,
        &headers,
        signed_body.as_bytes(),
    );
    let mut req = Request::builder().method(method).uri(path);
    for (n, v) in headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .chain(added.iter().copied())
    {
        req = req.header(n, v);
    }
    req.header("Authorization", signed.authorization.header_value())
        .body(Body::from(sent_body.to_owned()))
        .expect("req")
}

/// A signed management call replayed with another body is refused, whether the attacker
/// adds its own `X-Sdk-Content-Sha256` or the original one was signed; a body is never
/// accepted as `UNSIGNED-PAYLOAD`.
#[tokio::test]
async fn a_signed_management_body_cannot_be_swapped() {
    let t = TestApp::new().await;
    let (uid, token) = t.user_with_role("mallory", "member").await;
    let created = t
        .call(
            Method::POST,
            "/v3.0/OS-CREDENTIAL/credentials",
            Some(&token),
            Some(json!({"credential": {"user_id": uid, "description": "ci"}})),
        )
        .await;
    let ak = created.body["credential"]["access"]
        .as_str()
        .expect("ak")
        .to_owned();
    let sk = created.body["credential"]["secret"]
        .as_str()
        .expect("sk")
        .to_owned();
    let path = t.v1("/services");
    let original =
        json!({"service_name": "meant", "upstreams": ["http://127.0.0.1:9"]}).to_string();
    let swapped =
        json!({"service_name": "swapped", "upstreams": ["http://10.9.9.9:9"]}).to_string();
    let hash = infergate_sign::sha256_hex(original.as_bytes());
    let key = (path.as_str(), ak.as_str(), sk.as_str());
    let cases = [
        (
            "a client-added hash",
            (original.as_str(), &[][..]),
            (
                swapped.as_str(),
                &[("X-Sdk-Content-Sha256", hash.as_str())][..],
            ),
        ),
        (
            "a signed hash",
            (
                original.as_str(),
                &[("X-Sdk-Content-Sha256", hash.as_str())][..],
            ),
            (swapped.as_str(), &[][..]),
        ),
        (
            "UNSIGNED-PAYLOAD",
            (
                swapped.as_str(),
                &[("X-Sdk-Content-Sha256", "UNSIGNED-PAYLOAD")][..],
            ),
            (swapped.as_str(), &[][..]),
        ),
    ];
    for (label, signed, sent) in cases {
        let reply = t.send(replayed("POST", key, signed, sent)).await;
        assert_eq!(reply.status.as_u16(), 401, "{label}: {}", reply.body);
    }
    let listed = t.call(Method::GET, &path, Some(&token), None).await;
    assert!(
        !listed.body.to_string().contains("swapped"),
        "{}",
        listed.body
    );
    // The untouched call, with its hash signed, goes through.
    let reply = t
        .send(replayed(
            "POST",
            key,
            (
                original.as_str(),
                &[("X-Sdk-Content-Sha256", hash.as_str())],
            ),
            (original.as_str(), &[]),
        ))
        .await;
    assert_eq!(reply.status.as_u16(), 200, "{}", reply.body);
}

/// A user lists, shows, disables, enables and deletes their own access keys (never seeing a
/// secret again); another member sees none of them; a domain admin manages them all; an
/// inactive or deleted key signs nothing.
#[tokio::test]
async fn access_keys_are_listed_disabled_and_deleted() {
    let t = TestApp::new().await;
    let (uid, token) = t.user_with_role("kim", "member").await;
    let (_, other) = t.user_with_role("lee", "member").await;
    let mut keys = Vec::new();
    for description in ["ci", "laptop"] {
        let created = t
            .call(
                Method::POST,
                "/v3.0/OS-CREDENTIAL/credentials",
                Some(&token),
                Some(json!({"credential": {"user_id": uid, "description": description}})),
            )
            .await;
        assert_eq!(created.status.as_u16(), 201, "{}", created.body);
        let cred = &created.body["credential"];
        keys.push((
            cred["access"].as_str().expect("ak").to_owned(),
            cred["secret"].as_str().expect("sk").to_owned(),
        ));
    }
    let (ak, sk) = keys[0].clone();
    let listed = t
        .call(
            Method::GET,
            "/v3.0/OS-CREDENTIAL/credentials",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(listed.status.as_u16(), 200, "{}", listed.body);
    let accesses: Vec<&str> = listed.body["credentials"]
        .as_array()
        .expect("list")
        .iter()
        .map(|c| c["access"].as_str().expect("ak"))
        .collect();
    assert_eq!(accesses, [keys[0].0.as_str(), keys[1].0.as_str()]);
    for (_, secret) in &keys {
        assert!(!listed.body.to_string().contains(secret.as_str()));
    }
    let key_path = format!("/v3.0/OS-CREDENTIAL/credentials/{ak}");
    let shown = t.call(Method::GET, &key_path, Some(&token), None).await;
    assert_eq!(shown.body["credential"]["description"], "ci");
    assert!(shown.body["credential"].get("secret").is_none());
    // Another member: not theirs, not there; nor may they list them.
    for (method, body) in [
        (Method::GET, None),
        (
            Method::PUT,
            Some(json!({"credential": {"status": "inactive"}})),
        ),
        (Method::DELETE, None),
    ] {
        let reply = t.call(method, &key_path, Some(&other), body).await;
        assert_eq!(reply.status.as_u16(), 404, "{}", reply.body);
    }
    let theirs = t
        .call(
            Method::GET,
            &format!("/v3.0/OS-CREDENTIAL/credentials?user_id={uid}"),
            Some(&other),
            None,
        )
        .await;
    assert_eq!(theirs.status.as_u16(), 403, "{}", theirs.body);
    let path = t.v1("/services");
    let signed_call = || t.send(signed_request("GET", &path, &ak, &sk, "", None));
    assert_eq!(signed_call().await.status.as_u16(), 200);
    // Bad changes name the field.
    for body in [
        json!({"credential": {"status": "paused"}}),
        json!({"credential": {}}),
    ] {
        let reply = t
            .call(Method::PUT, &key_path, Some(&token), Some(body))
            .await;
        assert_eq!(reply.status.as_u16(), 400, "{}", reply.body);
    }
    let disabled = t
        .call(
            Method::PUT,
            &key_path,
            Some(&token),
            Some(json!({"credential": {"status": "inactive", "description": "leaked"}})),
        )
        .await;
    assert_eq!(disabled.status.as_u16(), 200, "{}", disabled.body);
    assert_eq!(disabled.body["credential"]["status"], "inactive");
    assert_eq!(disabled.body["credential"]["description"], "leaked");
    signed_call().await.assert_error(401, "ModelArts.0206");
    // The domain admin enables it again, then the user deletes it.
    let enabled = t
        .call(
            Method::PUT,
            &key_path,
            Some(&t.admin_token),
            Some(json!({"credential": {"status": "active"}})),
        )
        .await;
    assert_eq!(enabled.status.as_u16(), 200, "{}", enabled.body);
    assert_eq!(signed_call().await.status.as_u16(), 200);
    let deleted = t.call(Method::DELETE, &key_path, Some(&token), None).await;
    assert_eq!(deleted.status.as_u16(), 204, "{}", deleted.body);
    signed_call().await.assert_error(401, "ModelArts.0206");
    assert_eq!(
        t.call(Method::GET, &key_path, Some(&token), None)
            .await
            .status
            .as_u16(),
        404
    );
}

/// `DELETE /v3/auth/tokens` revokes the token in `X-Subject-Token`: it no longer validates
/// nor authenticates anything, the user's other tokens still do; only its user or a domain
/// admin may revoke it.
#[tokio::test]
async fn tokens_are_revoked() {
    let t = TestApp::new().await;
    let (_, first) = t.user_with_role("rae", "member").await;
    let second = t.token("rae", "rae-password", "default").await;
    let (_, stranger) = t.user_with_role("sam", "member").await;
    let revoke = |caller: &str, subject: &str| {
        let req = Request::builder()
            .method("DELETE")
            .uri("/v3/auth/tokens")
            .header("X-Auth-Token", caller)
            .header("X-Subject-Token", subject)
            .body(Body::empty())
            .expect("req");
        t.send(req)
    };
    let validate = |subject: &str| {
        let req = Request::builder()
            .method("GET")
            .uri("/v3/auth/tokens")
            .header("X-Auth-Token", t.admin_token.as_str())
            .header("X-Subject-Token", subject)
            .body(Body::empty())
            .expect("req");
        t.send(req)
    };
    assert_eq!(validate(&first).await.status.as_u16(), 200);
    assert_eq!(revoke(&stranger, &first).await.status.as_u16(), 403);
    assert_eq!(
        revoke(&first, "igt1.not.a.token").await.status.as_u16(),
        404
    );
    assert_eq!(revoke(&second, &first).await.status.as_u16(), 204);
    assert_eq!(validate(&first).await.status.as_u16(), 404);
    let refused = t
        .call(Method::GET, &t.v1("/services"), Some(&first), None)
        .await;
    assert_eq!(refused.status.as_u16(), 401, "{}", refused.body);
    let still = t
        .call(Method::GET, &t.v1("/services"), Some(&second), None)
        .await;
    assert_eq!(still.status.as_u16(), 200, "{}", still.body);
    // A domain admin revokes anyone's.
    assert_eq!(revoke(&t.admin_token, &second).await.status.as_u16(), 204);
    assert_eq!(validate(&second).await.status.as_u16(), 404);
}

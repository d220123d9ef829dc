//! Apps, AppSecrets and AppCodes.

use axum::http::Method;
use infergate_admin::AdminSettings;
use serde_json::{json, Value};

use crate::harness::{TestApp, PUBLIC_URL};

const APP_FIELDS: [&str; 12] = [
    "app_id",
    "app_name",
    "app_remark",
    "app_key",
    "app_secret",
    "app_type",
    "app_codes",
    "bounded_api_count",
    "created_at",
    "updated_at",
    "project_id",
    "user_id",
];

fn is_hex(s: &Value, len: usize) -> bool {
    s.as_str().is_some_and(|s| {
        s.len() == len
            && s.chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    })
}

#[tokio::test]
async fn create_shows_every_field_once_with_the_secret() {
    let t = TestApp::new().await;
    let (uid, token) = t.user_with_role("alice", "member").await;
    let app = t.app(&token, "app_demo01").await;
    let object = app.as_object().expect("object");
    assert_eq!(object.len(), APP_FIELDS.len(), "{app}");
    for field in APP_FIELDS {
        assert!(object.contains_key(field), "{field}");
    }
    assert!(
        is_hex(&app["app_id"], 32) && is_hex(&app["app_key"], 32) && is_hex(&app["app_secret"], 32),
        "{app}"
    );
    assert_ne!(app["app_key"], app["app_secret"]);
    assert_eq!(app["app_type"], "APIG");
    assert_eq!(app["app_codes"], json!([]));
    assert_eq!(app["bounded_api_count"], 0);
    assert_eq!(app["created_at"], app["updated_at"]);
    assert_eq!(app["user_id"], uid.as_str());
    assert_eq!(app["project_id"], t.project_id.as_str());
    assert_eq!(app["app_remark"], "test app");
}

#[tokio::test]
async fn names_remarks_uniqueness_and_quota() {
    let t = TestApp::with_settings(AdminSettings {
        max_apps_per_user: 2,
        ..AdminSettings::new(PUBLIC_URL, "http://a")
    })
    .await;
    for (body, field) in [
        (json!({"app_name": "ab"}), "app_name"),
        (json!({"app_name": "app-dash"}), "app_name"),
        (json!({}), "app_name"),
        (
            json!({"app_name": "app_ok", "app_remark": "r".repeat(201)}),
            "app_remark",
        ),
    ] {
        let reply = t
            .call(
                Method::POST,
                &t.v1("/app-auth/apps"),
                Some(&t.admin_token),
                Some(body),
            )
            .await;
        reply.assert_error(400, "ModelArts.0101");
        assert!(
            reply.body["error_msg"]
                .as_str()
                .expect("msg")
                .contains(field),
            "{}",
            reply.body
        );
    }
    t.app(&t.admin_token, "app_one").await;
    let dup = t.create_app(&t.admin_token, "app_one").await;
    dup.assert_error(409, "ModelArts.3929");
    assert!(dup.body["error_msg"]
        .as_str()
        .expect("msg")
        .contains("app_one"));
    t.app(&t.admin_token, "app_two").await;
    t.create_app(&t.admin_token, "app_three")
        .await
        .assert_error(400, "ModelArts.0118");
    // The quota is per user.
    let (_, bob) = t.user_with_role("bob", "member").await;
    t.app(&bob, "app_three").await;
}

#[tokio::test]
async fn default_quota_is_five_apps() {
    let t = TestApp::new().await;
    for i in 0..5 {
        t.app(&t.admin_token, &format!("app_{i}")).await;
    }
    t.create_app(&t.admin_token, "app_5")
        .await
        .assert_error(400, "ModelArts.0118");
}

#[tokio::test]
async fn list_show_exists_visibility() {
    let t = TestApp::new().await;
    let (_, alice) = t.user_with_role("alice", "member").await;
    let (_, bob) = t.user_with_role("bob", "member").await;
    let a1 = t.app(&alice, "alpha_one").await;
    let a2 = t.app(&alice, "alpha_two").await;
    let b1 = t.app(&bob, "beta_one").await;
    let names = |reply: &crate::harness::Reply| -> Vec<String> {
        reply.body["apps"]
            .as_array()
            .expect("apps")
            .iter()
            .map(|a| a["app_name"].as_str().expect("name").to_owned())
            .collect()
    };
    let mine = t
        .call(Method::GET, &t.v1("/app-auth/apps"), Some(&alice), None)
        .await;
    assert_eq!(names(&mine), ["alpha_one", "alpha_two"]);
    assert_eq!(
        (mine.body["count"].clone(), mine.body["total_count"].clone()),
        (json!(2), json!(2))
    );
    let all = t
        .call(
            Method::GET,
            &t.v1("/app-auth/apps?sort_by=created_at&order=desc"),
            Some(&t.admin_token),
            None,
        )
        .await;
    assert_eq!(names(&all), ["beta_one", "alpha_two", "alpha_one"]);
    let filtered = t
        .call(
            Method::GET,
            &t.v1("/app-auth/apps?app_name=TWO"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(names(&filtered), ["alpha_two"]);
    let page = t
        .call(
            Method::GET,
            &t.v1("/app-auth/apps?limit=1&offset=1&sort_by=name"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(names(&page), ["alpha_two"]);
    assert_eq!(page.body["total_count"], 2);
    t.call(
        Method::GET,
        &t.v1("/app-auth/apps?order=sideways"),
        Some(&alice),
        None,
    )
    .await
    .assert_error(400, "ModelArts.0101");
    t.call(
        Method::GET,
        &t.v1("/app-auth/apps?sort_by=size"),
        Some(&alice),
        None,
    )
    .await
    .assert_error(400, "ModelArts.0101");

    let show = |token: String, app: Value| {
        let t = &t;
        async move {
            t.call(
                Method::GET,
                &t.v1(&format!(
                    "/app-auth/apps/{}",
                    app["app_id"].as_str().expect("id")
                )),
                Some(&token),
                None,
            )
            .await
        }
    };
    assert_eq!(show(alice.clone(), a1.clone()).await.assert_ok()["app"], a1);
    show(bob.clone(), a1.clone())
        .await
        .assert_error(404, "ModelArts.3923");
    assert_eq!(
        show(t.admin_token.clone(), b1.clone()).await.assert_ok()["app"]["app_name"],
        "beta_one"
    );
    let _ = a2;

    for (name, exists) in [("alpha_one", true), ("beta_one", true), ("gamma", false)] {
        let reply = t
            .call(
                Method::GET,
                &t.v1(&format!("/app-auth/apps/{name}/exists?workspace_id=0")),
                Some(&bob),
                None,
            )
            .await;
        assert_eq!(reply.assert_ok(), &json!({"exists": exists}));
    }
}

#[tokio::test]
async fn secret_reset_and_app_codes() {
    let t = TestApp::new().await;
    let app = t.app(&t.admin_token, "app_codes").await;
    let id = app["app_id"].as_str().expect("id").to_owned();
    let base = t.v1(&format!("/app-auth/apps/{id}"));

    let reset = t
        .call(
            Method::PUT,
            &format!("{base}/app-secret"),
            Some(&t.admin_token),
            None,
        )
        .await;
    let reset = reset.assert_ok()["app"].clone();
    assert_eq!(reset["app_key"], app["app_key"]);
    assert_ne!(reset["app_secret"], app["app_secret"]);
    assert!(is_hex(&reset["app_secret"], 32));
    assert!(reset["updated_at"].as_i64() >= app["updated_at"].as_i64());
    // The create-body shape is accepted and ignored (spec §7 #5).
    t.call(
        Method::PUT,
        &format!("{base}/app-secret"),
        Some(&t.admin_token),
        Some(json!({"workspace_id": "0"})),
    )
    .await
    .assert_ok();

    let mut codes = Vec::new();
    for i in 0..5 {
        let reply = t
            .call(
                Method::POST,
                &format!("{base}/app-code"),
                Some(&t.admin_token),
                None,
            )
            .await;
        let app = &reply.assert_ok()["app"];
        assert_eq!(app["app_codes"].as_array().expect("codes").len(), i + 1);
        let code = app["app_codes"][i].clone();
        assert!(is_hex(&code, 64), "{code}");
        codes.push(code.as_str().expect("code").to_owned());
    }
    t.call(
        Method::POST,
        &format!("{base}/app-code"),
        Some(&t.admin_token),
        None,
    )
    .await
    .assert_error(400, "ModelArts.0118");

    let reset_code = t
        .call(
            Method::PUT,
            &format!("{base}/app-code/{}", codes[2]),
            Some(&t.admin_token),
            None,
        )
        .await;
    let after: Vec<String> =
        serde_json::from_value(reset_code.assert_ok()["app"]["app_codes"].clone()).expect("codes");
    assert_eq!(after.len(), 5);
    assert_ne!(after[2], codes[2], "replaced in place");
    assert_eq!((&after[..2], &after[3..]), (&codes[..2], &codes[3..]));

    let deleted = t
        .call(
            Method::DELETE,
            &format!("{base}/app-code/{}", codes[0]),
            Some(&t.admin_token),
            None,
        )
        .await;
    let remaining: Vec<String> =
        serde_json::from_value(deleted.assert_ok()["app"]["app_codes"].clone()).expect("codes");
    assert!(!remaining.contains(&codes[0]) && remaining.len() == 4);
    let unknown = t
        .call(
            Method::DELETE,
            &format!("{base}/app-code/{}", codes[0]),
            Some(&t.admin_token),
            None,
        )
        .await;
    unknown.assert_error(404, "ModelArts.3923");
    assert!(unknown.body["error_msg"]
        .as_str()
        .expect("msg")
        .contains(&codes[0]));
    t.call(
        Method::DELETE,
        &format!("{base}/app-code/short"),
        Some(&t.admin_token),
        None,
    )
    .await
    .assert_error(400, "ModelArts.0101");
    t.call(
        Method::PUT,
        &t.v1(&format!("/app-auth/apps/nope/app-code/{}", codes[1])),
        Some(&t.admin_token),
        None,
    )
    .await
    .assert_error(404, "ModelArts.3923");
}

#[tokio::test]
async fn masking_and_asking_for_the_secret() {
    let t = TestApp::with_settings(AdminSettings {
        mask_app_secrets: true,
        ..AdminSettings::new(PUBLIC_URL, "http://a")
    })
    .await;
    let created = t.app(&t.admin_token, "app_masked").await;
    assert!(
        is_hex(&created["app_secret"], 32),
        "creation shows the secret once"
    );
    let id = created["app_id"].as_str().expect("id");
    let list = t
        .call(
            Method::GET,
            &t.v1("/app-auth/apps"),
            Some(&t.admin_token),
            None,
        )
        .await;
    assert_eq!(list.body["apps"][0]["app_secret"], "******");
    let asked = t
        .call(
            Method::GET,
            &t.v1(&format!(
                "/app-auth/apps?iphertext_enabled=true&app_ids={id}&app_ids=other"
            )),
            Some(&t.admin_token),
            None,
        )
        .await;
    assert_eq!(asked.body["apps"][0]["app_secret"], created["app_secret"]);
    let without_ids = t
        .call(
            Method::GET,
            &t.v1("/app-auth/apps?iphertext_enabled=true"),
            Some(&t.admin_token),
            None,
        )
        .await;
    assert_eq!(without_ids.body["apps"][0]["app_secret"], "******");
    let show = t
        .call(
            Method::GET,
            &t.v1(&format!("/app-auth/apps/{id}?iphertext_enabled=true")),
            Some(&t.admin_token),
            None,
        )
        .await;
    assert_eq!(show.body["app"]["app_secret"], created["app_secret"]);
    t.call(
        Method::GET,
        &t.v1(&format!("/app-auth/apps/{id}?iphertext_enabled=maybe")),
        Some(&t.admin_token),
        None,
    )
    .await
    .assert_error(400, "ModelArts.0101");
}

#[tokio::test]
async fn no_secret_is_stored_in_plain_text() {
    let t = TestApp::new().await;
    let app = t.app(&t.admin_token, "app_secretive").await;
    let id = app["app_id"].as_str().expect("id");
    let with_code = t
        .call(
            Method::POST,
            &t.v1(&format!("/app-auth/apps/{id}/app-code")),
            Some(&t.admin_token),
            None,
        )
        .await;
    let code = with_code.assert_ok()["app"]["app_codes"][0]
        .as_str()
        .expect("code")
        .to_owned();
    let secret = app["app_secret"].as_str().expect("secret").to_owned();
    let key = app["app_key"].as_str().expect("key").to_owned();
    let bytes = t.stored_bytes().await;
    let contains = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(
        contains(&key),
        "the database files were read (the AppKey is stored in clear)"
    );
    assert!(!contains(&secret), "AppSecret found in the database");
    assert!(!contains(&code), "AppCode found in the database");
}

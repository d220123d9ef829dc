//! Guessing is braked: consecutive wrong passwords lock a user, consecutive bad signatures
//! lock an access key, and password hashing is bounded (unknown users included).

use axum::http::Method;
use infergate_admin::AdminSettings;
use infergate_core::lockout::LockoutPolicy;
use serde_json::json;

use crate::harness::{TestApp, PUBLIC_URL};
use crate::iam::signed_request;

fn assert_refused_login(status: u16, body: &serde_json::Value) {
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        body["error"]["message"], "The request you have made requires authentication.",
        "one answer for a wrong password, an unknown user and a locked one"
    );
}

#[tokio::test]
async fn five_wrong_passwords_lock_the_user_until_an_admin_enables_it() {
    let t = TestApp::new().await;
    let uid = t.create_user("mallory-target").await;
    t.grant(&t.project_id, &uid, "member").await;
    let right = "mallory-target-password";
    // Failures that are not consecutive do not lock: a success clears the count.
    for _ in 0..4 {
        let r = t
            .issue("mallory-target", "wrong-password-1", json!(null))
            .await;
        assert_refused_login(r.status.as_u16(), &r.body);
    }
    assert_eq!(
        t.issue("mallory-target", right, json!(null)).await.status,
        201
    );
    for _ in 0..4 {
        t.issue("mallory-target", "wrong-password-2", json!(null))
            .await;
    }
    assert_eq!(
        t.issue("mallory-target", right, json!(null)).await.status,
        201
    );

    for _ in 0..5 {
        let r = t
            .issue("mallory-target", "wrong-password-3", json!(null))
            .await;
        assert_refused_login(r.status.as_u16(), &r.body);
    }
    // Locked: the right password is refused in the same words as a wrong one.
    let locked = t.issue("mallory-target", right, json!(null)).await;
    assert_refused_login(locked.status.as_u16(), &locked.body);
    let failures = t
        .state
        .store
        .failures(infergate_core::lockout::LockSubject::Password(&uid))
        .await
        .expect("q");
    assert!(failures.locked(chrono::Utc::now().timestamp_millis()));

    // Only a domain admin unlocks, by enabling the user (Keystone's way).
    let (_, member) = t.user_with_role("bystander", "member").await;
    let path = format!("/v3/users/{uid}");
    let enable = json!({"user": {"enabled": true}});
    let refused = t
        .call(Method::PATCH, &path, Some(&member), Some(enable.clone()))
        .await;
    assert_eq!(refused.status.as_u16(), 403, "{}", refused.body);
    let unlocked = t
        .call(Method::PATCH, &path, Some(&t.admin_token), Some(enable))
        .await;
    assert_eq!(unlocked.status.as_u16(), 200, "{}", unlocked.body);
    assert_eq!(unlocked.body["user"]["enabled"], true);
    assert_eq!(
        t.issue("mallory-target", right, json!(null)).await.status,
        201
    );

    // Disabling refuses logins; an unknown field is named.
    let disabled = t
        .call(
            Method::PATCH,
            &path,
            Some(&t.admin_token),
            Some(json!({"user": {"enabled": false, "description": "on leave"}})),
        )
        .await;
    assert_eq!(disabled.body["user"]["description"], "on leave");
    let r = t.issue("mallory-target", right, json!(null)).await;
    assert_refused_login(r.status.as_u16(), &r.body);
    let bad = t
        .call(
            Method::PATCH,
            &path,
            Some(&t.admin_token),
            Some(json!({"user": {"enabled": true, "password": "x"}})),
        )
        .await;
    assert_eq!(bad.status.as_u16(), 400, "{}", bad.body);
    assert!(bad.body.to_string().contains("password"), "{}", bad.body);
}

#[tokio::test]
async fn a_wrong_original_password_counts_toward_the_lock() {
    let t = TestApp::new().await;
    let (uid, token) = t.user_with_role("pat", "member").await;
    let path = format!("/v3/users/{uid}/password");
    for _ in 0..5 {
        let r = t
            .call(
                Method::POST,
                &path,
                Some(&token),
                Some(json!({"user": {"password": "new-password-9", "original_password": "guess-guess"}})),
            )
            .await;
        assert_eq!(r.status.as_u16(), 401, "{}", r.body);
    }
    let r = t.issue("pat", "pat-password", json!(null)).await;
    assert_refused_login(r.status.as_u16(), &r.body);
}

#[tokio::test]
async fn lockouts_follow_their_settings() {
    let t = TestApp::with_settings(AdminSettings {
        password_lockout: LockoutPolicy {
            attempts: 0,
            duration_ms: 1000,
        },
        ..AdminSettings::new(PUBLIC_URL, "http://127.0.0.1:8081")
    })
    .await;
    t.create_user("quinn").await;
    for _ in 0..8 {
        t.issue("quinn", "wrong-password", json!(null)).await;
    }
    assert_eq!(
        t.issue("quinn", "quinn-password", json!(null)).await.status,
        201
    );

    let short = TestApp::with_settings(AdminSettings {
        password_lockout: LockoutPolicy {
            attempts: 2,
            duration_ms: 3000,
        },
        ..AdminSettings::new(PUBLIC_URL, "http://127.0.0.1:8081")
    })
    .await;
    short.create_user("rae").await;
    for _ in 0..2 {
        short.issue("rae", "wrong-password", json!(null)).await;
    }
    assert_eq!(
        short.issue("rae", "rae-password", json!(null)).await.status,
        401
    );
    tokio::time::sleep(std::time::Duration::from_millis(3200)).await;
    assert_eq!(
        short.issue("rae", "rae-password", json!(null)).await.status,
        201
    );
}

/// Beyond the hashing budget, logins are told to come back; unknown users cost a hash too.
#[tokio::test]
async fn password_hashing_is_bounded_for_known_and_unknown_users() {
    let t = TestApp::with_settings(AdminSettings {
        max_password_hashes: 1,
        ..AdminSettings::new(PUBLIC_URL, "http://127.0.0.1:8081")
    })
    .await;
    for user in ["admin", "nobody-at-all"] {
        let attempts = (0..8).map(|_| t.issue(user, "some-password", json!(null)));
        let replies = futures_util::future::join_all(attempts).await;
        let busy: Vec<_> = replies
            .iter()
            .filter(|r| r.status.as_u16() == 429)
            .collect();
        assert!(
            !busy.is_empty(),
            "{user}: 8 logins at once on one hashing slot"
        );
        for r in &busy {
            assert_eq!(r.headers["retry-after"], "1");
            assert_eq!(r.body["error"]["code"], 429);
        }
        assert!(replies
            .iter()
            .all(|r| matches!(r.status.as_u16(), 401 | 429)));
    }
}

#[tokio::test]
async fn five_bad_signatures_lock_the_access_key() {
    let t = TestApp::new().await;
    let (uid, token) = t.user_with_role("sam", "member").await;
    let created = t
        .call(
            Method::POST,
            "/v3.0/OS-CREDENTIAL/credentials",
            Some(&token),
            Some(json!({"credential": {"user_id": uid}})),
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
    let wrong = "0".repeat(40);
    for _ in 0..4 {
        let r = t
            .send(signed_request("GET", &path, &ak, &wrong, "", None))
            .await;
        r.assert_error(401, "ModelArts.0206");
    }
    // A success between failures clears them.
    let ok = t
        .send(signed_request("GET", &path, &ak, &sk, "", None))
        .await;
    assert_eq!(ok.status.as_u16(), 200, "{}", ok.body);
    for _ in 0..5 {
        t.send(signed_request("GET", &path, &ak, &wrong, "", None))
            .await;
    }
    let locked = t
        .send(signed_request("GET", &path, &ak, &sk, "", None))
        .await;
    assert_eq!(locked.status.as_u16(), 401, "{}", locked.body);
    assert!(
        locked
            .body
            .to_string()
            .contains("AK access failed to reach the limit,forbidden"),
        "{}",
        locked.body
    );
    let on_iam = t
        .send(signed_request("GET", "/v3/roles", &ak, &sk, "", None))
        .await;
    assert_eq!(on_iam.status.as_u16(), 401, "{}", on_iam.body);
    // The lock is the key's, not the user's: a token still works.
    let listed = t.call(Method::GET, &path, Some(&token), None).await;
    assert_eq!(listed.status.as_u16(), 200, "{}", listed.body);
    // Deleting the key forgets its lock.
    let del = t
        .call(
            Method::DELETE,
            &format!("/v3.0/OS-CREDENTIAL/credentials/{ak}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(del.status.as_u16(), 204);
    assert!(!t
        .state
        .store
        .failures(infergate_core::lockout::LockSubject::AccessKey(&ak))
        .await
        .expect("q")
        .any());
}

/// Guesses sent all at once count one by one: no more than the limit are compared with
/// the real hash, so the right password sent right after is refused.
#[tokio::test]
async fn parallel_guesses_cannot_pass_the_limit() {
    let t = TestApp::with_settings(AdminSettings {
        max_password_hashes: 64,
        ..AdminSettings::new(PUBLIC_URL, "http://127.0.0.1:8081")
    })
    .await;
    t.create_user("target").await;
    let guesses = (0..30).map(|i| {
        t.issue(
            "target",
            if i == 29 {
                "target-password"
            } else {
                "wrong-guess-1"
            },
            json!(null),
        )
    });
    let replies = futures_util::future::join_all(guesses).await;
    // The right password came last of thirty at once: by then the user was locked.
    assert_eq!(replies[29].status.as_u16(), 401, "{}", replies[29].body);
    let after = t.issue("target", "target-password", json!(null)).await;
    assert_refused_login(after.status.as_u16(), &after.body);
}

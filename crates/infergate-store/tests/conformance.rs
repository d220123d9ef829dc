//! The store conformance suite: every backend must pass every case. Each case takes a
//! fresh, empty store; `backend_suite!` instantiates the cases for one backend.

use infergate_core::model::{
    Api, ApiMethod, App, AppCode, AuthType, Authorization, Credential, Domain, Project,
    RevokedToken, Role, Service, UsageCounts, UsageQuery, UsageRow, User,
};
use infergate_store::{
    Bootstrap, PgStore, ServiceStore, ServiceUpdate, SqliteStore, Store, StoreError,
};

fn plan() -> Bootstrap {
    Bootstrap {
        domain: Domain {
            id: "d1".into(),
            name: "default".into(),
        },
        project: Project {
            id: "p1".into(),
            domain_id: "d1".into(),
            name: "default".into(),
            description: String::new(),
            created_at: 1,
        },
        admin: user("u-admin", "admin", true),
    }
}

fn user(id: &str, name: &str, domain_admin: bool) -> User {
    User {
        id: id.into(),
        domain_id: "d1".into(),
        name: name.into(),
        description: String::new(),
        password_hash: "$argon2id$x".into(),
        password_changed_at: 1,
        domain_admin,
        enabled: true,
        created_at: 1,
    }
}

fn service(id: &str, name: &str) -> Service {
    Service {
        id: id.into(),
        project_id: "p1".into(),
        name: name.into(),
        description: "d".into(),
        upstreams: vec!["http://127.0.0.1:9000/v1".into()],
        upstream_weights: vec![],
        timeout_ms: 40_000,
        usage_accounting: true,
        load_balancing: infergate_core::model::LoadBalancing::RoundRobin,
        tls_ca_pem: None,
        health_check: None,
        retry: None,
        owner: "u-admin".into(),
        created_at: 10,
        updated_at: 10,
    }
}

fn api(id: &str, service_id: &str, path: &str, auth_type: AuthType) -> Api {
    Api {
        id: id.into(),
        service_id: service_id.into(),
        project_id: "p1".into(),
        name: format!("api_{id}"),
        auth_type,
        support_app_code: true,
        api_path: path.into(),
        api_method: ApiMethod::Get,
        remark: String::new(),
        owner: "u-admin".into(),
        created_at: 20,
        updated_at: 20,
    }
}

pub async fn bootstrap_is_idempotent(store: &dyn Store) {
    assert!(store.bootstrap(&plan()).await.expect("first"));
    assert!(!store.bootstrap(&plan()).await.expect("second"));
    let domain = store
        .domain_by_name("default")
        .await
        .expect("q")
        .expect("domain");
    assert_eq!(domain.id, "d1");
    assert_eq!(store.list_users("d1").await.expect("users").len(), 1);
    assert_eq!(
        store.roles("p1", "u-admin").await.expect("roles"),
        vec![Role::Admin]
    );
}

pub async fn services_crud_and_names(store: &dyn Store) {
    store.bootstrap(&plan()).await.expect("bootstrap");
    let before = store.revision().await.expect("rev");
    store
        .create_service(&service("s1", "svc"))
        .await
        .expect("create");
    assert!(store.revision().await.expect("rev") > before);
    let err = store
        .create_service(&service("s2", "svc"))
        .await
        .expect_err("dup");
    assert!(
        matches!(err, StoreError::Conflict(ref m) if m.contains("svc")),
        "{err:?}"
    );
    assert_eq!(
        store.service("s1").await.expect("q"),
        Some(service("s1", "svc"))
    );
    let updated = store
        .update_service(
            "s1",
            &ServiceUpdate {
                description: None,
                upstreams: Some(vec!["http://a".into(), "http://b".into()]),
                upstream_weights: Some(vec![3, 1]),
                timeout_ms: Some(5),
                usage_accounting: Some(false),
                load_balancing: Some(infergate_core::model::LoadBalancing::LeastOutstanding),
                tls_ca_pem: Some(Some("-----BEGIN CERTIFICATE-----".into())),
                health_check: Some(Some(infergate_core::model::HealthCheck {
                    path: "/health".into(),
                    interval_ms: 100,
                    timeout_ms: 50,
                    healthy_threshold: 1,
                    unhealthy_threshold: 2,
                    expected_statuses: vec![200, 204],
                })),
                retry: Some(Some(infergate_core::model::Retry {
                    attempts: 3,
                    on: vec!["5xx".into()],
                })),
                updated_at: 99,
            },
        )
        .await
        .expect("update");
    assert_eq!(updated.upstreams.len(), 2);
    assert_eq!(updated.upstream_weights, [3, 1]);
    assert_eq!(updated.description, "d");
    assert!(!updated.usage_accounting);
    assert_eq!(
        updated.load_balancing,
        infergate_core::model::LoadBalancing::LeastOutstanding
    );
    assert_eq!(
        updated.tls_ca_pem.as_deref(),
        Some("-----BEGIN CERTIFICATE-----")
    );
    assert_eq!(
        updated
            .health_check
            .as_ref()
            .map(|c| c.expected_statuses.clone()),
        Some(vec![200, 204])
    );
    assert_eq!(updated.retry.as_ref().map(|r| r.attempts), Some(3));
    assert_eq!(store.service("s1").await.expect("q"), Some(updated));
    // New upstreams without weights are weighed alike again.
    let reweighed = store
        .update_service(
            "s1",
            &ServiceUpdate {
                upstreams: Some(vec!["http://c".into(), "http://d".into()]),
                updated_at: 100,
                ..Default::default()
            },
        )
        .await
        .expect("update");
    assert!(reweighed.upstream_weights.is_empty());
    assert_eq!(store.service("s1").await.expect("q"), Some(reweighed));
    assert!(matches!(
        store
            .update_service(
                "nope",
                &ServiceUpdate {
                    updated_at: 1,
                    ..Default::default()
                }
            )
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.list_services("p1").await.expect("list").len(), 1);
}

pub async fn apis_unique_path_per_auth_type_and_cascade(store: &dyn Store) {
    store.bootstrap(&plan()).await.expect("bootstrap");
    store
        .create_service(&service("s1", "svc"))
        .await
        .expect("svc");
    store
        .create_api(&api("a1", "s1", "/v1/x", AuthType::App))
        .await
        .expect("a1");
    store
        .create_api(&api("a2", "s1", "/v1/x", AuthType::Iam))
        .await
        .expect("same path, other type");
    let err = store
        .create_api(&api("a3", "s1", "/v1/x", AuthType::App))
        .await
        .expect_err("dup");
    assert!(
        matches!(err, StoreError::Conflict(ref m) if m.contains("/v1/x") && m.contains("APP")),
        "{err:?}"
    );
    assert!(matches!(
        store
            .create_api(&api("a4", "missing", "/v1/y", AuthType::App))
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        store.api("a1").await.expect("q"),
        Some(api("a1", "s1", "/v1/x", AuthType::App))
    );
    assert_eq!(store.list_apis("s1").await.expect("list").len(), 2);
    store.delete_api("a1").await.expect("delete");
    assert!(matches!(
        store.delete_api("a1").await,
        Err(StoreError::NotFound(_))
    ));
    store.delete_service("s1").await.expect("delete service");
    assert_eq!(store.api("a2").await.expect("q"), None);
    assert_eq!(store.service("s1").await.expect("q"), None);
}

/// A path outside the service namespaces belongs to the project that took it first, in
/// whatever case it is written: `/v1/Infers/…` is such a path (the namespaces are
/// `/v1/infers/…` exactly), and no other project's API may sit at, above or below it.
pub async fn paths_of_other_projects_are_theirs_in_any_case(store: &dyn Store) {
    store.bootstrap(&plan()).await.expect("bootstrap");
    store
        .create_project(&Project {
            id: "p2".into(),
            domain_id: "d1".into(),
            name: "team-b".into(),
            description: String::new(),
            created_at: 3,
        })
        .await
        .expect("project");
    store
        .create_service(&service("s1", "svc"))
        .await
        .expect("svc");
    let theirs = Service {
        project_id: "p2".into(),
        ..service("s2", "svc-b")
    };
    store.create_service(&theirs).await.expect("svc-b");
    let of_b = |id: &str, path: &str| Api {
        project_id: "p2".into(),
        ..api(id, "s2", path, AuthType::None)
    };
    for path in ["/v1/Infers/chat", "/V1/INFERS/llm", "/models/chat"] {
        store
            .create_api(&api(&format!("a{}", path.len()), "s1", path, AuthType::App))
            .await
            .expect(path);
    }
    for path in [
        "/v1/Infers/chat",
        "/v1/Infers/chat/completions",
        "/v1/Infers",
        "/V1/INFERS/llm",
        "/models/chat/x",
    ] {
        let taken = store
            .create_api(&of_b(&format!("b{}", path.len()), path))
            .await;
        assert!(
            matches!(taken, Err(StoreError::Conflict(ref m)) if m.contains("another project")),
            "{path}: {taken:?}"
        );
    }
    // Each service's own namespace stays its own; paths of other cases are free.
    store
        .create_api(&of_b("b-ns", "/v1/infers/s2/chat"))
        .await
        .expect("own namespace");
    store
        .create_api(&of_b("b-case", "/v1/infers-chat"))
        .await
        .expect("a path of its own");
}

pub async fn users_roles_and_credentials(store: &dyn Store) {
    store.bootstrap(&plan()).await.expect("bootstrap");
    store
        .create_user(&user("u2", "alice", false))
        .await
        .expect("user");
    assert!(matches!(
        store.create_user(&user("u3", "alice", false)).await,
        Err(StoreError::Conflict(_))
    ));
    store
        .grant_role("p1", "u2", Role::Viewer)
        .await
        .expect("grant");
    store
        .grant_role("p1", "u2", Role::Viewer)
        .await
        .expect("grant twice is fine");
    store
        .grant_role("p1", "u2", Role::Member)
        .await
        .expect("grant");
    assert_eq!(
        store.roles("p1", "u2").await.expect("roles"),
        vec![Role::Member, Role::Viewer]
    );
    assert!(store
        .revoke_role("p1", "u2", Role::Viewer)
        .await
        .expect("revoke"));
    assert!(!store
        .revoke_role("p1", "u2", Role::Viewer)
        .await
        .expect("revoke again"));
    let cred = |access: &str| Credential {
        access: access.into(),
        user_id: "u2".into(),
        secret_sealed: "v1:x".into(),
        description: String::new(),
        status: "active".into(),
        created_at: 1,
        locked_until: 0,
    };
    store.create_credential(&cred("AK1"), 2).await.expect("1");
    store.create_credential(&cred("AK2"), 2).await.expect("2");
    assert!(matches!(
        store.create_credential(&cred("AK3"), 2).await,
        Err(StoreError::Quota(_))
    ));
    assert_eq!(
        store.credential("AK1").await.expect("q").map(|c| c.user_id),
        Some("u2".into())
    );
    let revision = store.revision().await.expect("revision");
    let listed: Vec<String> = store
        .list_credentials("u2")
        .await
        .expect("list")
        .into_iter()
        .map(|c| c.access)
        .collect();
    assert_eq!(listed, ["AK1", "AK2"]);
    let disabled = store
        .update_credential("AK1", Some("inactive"), None)
        .await
        .expect("update");
    assert_eq!(
        (disabled.status.as_str(), disabled.description.as_str()),
        ("inactive", "")
    );
    let described = store
        .update_credential("AK1", None, Some("ci"))
        .await
        .expect("update");
    assert_eq!(
        (described.status.as_str(), described.description.as_str()),
        ("inactive", "ci")
    );
    store.delete_credential("AK2").await.expect("delete");
    assert_eq!(store.credential("AK2").await.expect("q"), None);
    assert!(matches!(
        store.delete_credential("AK2").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.update_credential("AK2", Some("active"), None).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.revision().await.expect("revision"), revision + 3);
    store
        .set_password("u2", "$argon2id$y", 50)
        .await
        .expect("pw");
    assert_eq!(
        store
            .user("u2")
            .await
            .expect("q")
            .map(|u| u.password_changed_at),
        Some(50)
    );
    store.delete_user("u2").await.expect("delete");
    assert_eq!(store.user("u2").await.expect("q"), None);
    assert_eq!(store.credential("AK1").await.expect("q"), None);
    assert!(store.roles("p1", "u2").await.expect("roles").is_empty());
    assert!(matches!(
        store.delete_user("u2").await,
        Err(StoreError::NotFound(_))
    ));
}

/// Failures counted per subject; a lock on a key travels with the key (and its user's
/// revision), a user's password lock ends when the user is enabled, and both go with
/// their owner.
pub async fn lockouts(store: &dyn Store) {
    use infergate_core::lockout::{LockSubject, LockoutPolicy};
    store.bootstrap(&plan()).await.expect("bootstrap");
    store
        .create_user(&user("u2", "alice", false))
        .await
        .expect("user");
    store
        .create_credential(
            &Credential {
                access: "AK1".into(),
                user_id: "u2".into(),
                secret_sealed: "v1:x".into(),
                description: String::new(),
                status: "active".into(),
                created_at: 1,
                locked_until: 0,
            },
            2,
        )
        .await
        .expect("key");
    let policy = LockoutPolicy {
        attempts: 3,
        duration_ms: 1000,
    };
    let key = LockSubject::AccessKey("AK1");
    let password = LockSubject::Password("u2");
    assert!(!store.failures(key).await.expect("q").any());
    let revision = store.revision().await.expect("revision");
    for n in 1..=2 {
        let after = store
            .record_failure(key, 100, policy)
            .await
            .expect("fail")
            .after;
        assert_eq!((after.count, after.locked_until), (n, 0));
    }
    // Counting alone moves nothing the gateways serve.
    assert_eq!(store.revision().await.expect("revision"), revision);
    // Another subject's count is its own.
    store
        .record_failure(password, 100, policy)
        .await
        .expect("fail");
    assert_eq!(store.failures(password).await.expect("q").count, 1);
    let recorded = store.record_failure(key, 150, policy).await.expect("lock");
    assert!(recorded.locked_now(150));
    let locked = recorded.after;
    assert_eq!(locked.locked_until, 1150);
    assert_eq!(store.revision().await.expect("revision"), revision + 1);
    assert_eq!(
        store
            .credential("AK1")
            .await
            .expect("q")
            .map(|c| c.locked_until),
        Some(1150)
    );
    let listed = store.list_credentials("u2").await.expect("list");
    assert_eq!(listed[0].locked_until, 1150);
    let dump = store.load_config().await.expect("dump");
    assert_eq!(dump.credentials[0].locked_until, 1150);
    let delta = store
        .changes_since(revision)
        .await
        .expect("delta")
        .expect("covered");
    assert_eq!(delta.credentials_of_users[0].1[0].locked_until, 1150);
    // While locked nothing more is counted; after the lock, counting starts again.
    let again = store.record_failure(key, 500, policy).await.expect("q");
    assert_eq!((again.before, again.after), (locked, locked));
    assert!(!again.locked_now(500));
    // A success keeps a lock that holds, and forgets one that ended.
    assert!(!store.clear_failures(key, Some(900)).await.expect("keep"));
    let after = store
        .record_failure(key, 1200, policy)
        .await
        .expect("q")
        .after;
    assert_eq!((after.count, after.locked_until), (1, 1150));
    assert!(store.clear_failures(key, Some(1200)).await.expect("clear"));
    assert!(!store.clear_failures(key, None).await.expect("clear again"));
    assert_eq!(
        store
            .credential("AK1")
            .await
            .expect("q")
            .map(|c| c.locked_until),
        Some(0)
    );

    // Enabling the user ends its password lock.
    for _ in 0..3 {
        store
            .record_failure(password, 2000, policy)
            .await
            .expect("fail");
    }
    assert!(store.failures(password).await.expect("q").locked(2001));
    let user = store
        .update_user("u2", Some(true), Some("back"))
        .await
        .expect("enable");
    assert_eq!((user.enabled, user.description.as_str()), (true, "back"));
    assert!(!store.failures(password).await.expect("q").any());
    let disabled = store
        .update_user("u2", Some(false), None)
        .await
        .expect("disable");
    assert_eq!(
        (disabled.enabled, disabled.description.as_str()),
        (false, "back")
    );
    assert!(matches!(
        store.update_user("nobody", Some(true), None).await,
        Err(StoreError::NotFound(_))
    ));

    // A deleted key or user takes its counts along.
    store.record_failure(key, 3000, policy).await.expect("fail");
    store
        .record_failure(password, 3000, policy)
        .await
        .expect("fail");
    store.delete_user("u2").await.expect("delete");
    assert!(!store.failures(key).await.expect("q").any());
    assert!(!store.failures(password).await.expect("q").any());
}

/// Policies, bindings (one per API) and specials; every write reaches the change log, and
/// deleting an API drops its binding.
pub async fn throttles(store: &dyn Store) {
    use infergate_core::throttle::{
        SpecialKind, Throttle, ThrottleBinding, ThrottleSpecial, ThrottleType, ThrottleUnit,
        TimeUnit,
    };
    store.bootstrap(&plan()).await.expect("bootstrap");
    store
        .create_service(&service("s1", "svc"))
        .await
        .expect("svc");
    store
        .create_api(&api("a1", "s1", "/v1/infers/s1", AuthType::App))
        .await
        .expect("api");
    let policy = Throttle {
        id: "t1".into(),
        project_id: "p1".into(),
        name: "hourly".into(),
        remark: String::new(),
        api_call_limits: 10,
        user_call_limits: None,
        app_call_limits: Some(5),
        ip_call_limits: None,
        time_interval: 1,
        time_unit: TimeUnit::Hour,
        kind: ThrottleType::PerApi,
        unit: ThrottleUnit::Request,
        default_max_tokens: 0,
        owner: "u1".into(),
        created_at: 1,
        updated_at: 1,
    };
    let revision = store.revision().await.expect("revision");
    store.create_throttle(&policy).await.expect("create");
    assert!(matches!(
        store
            .create_throttle(&Throttle {
                id: "t2".into(),
                ..policy.clone()
            })
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.throttle("t1").await.expect("q"), Some(policy.clone()));
    let changed = Throttle {
        api_call_limits: 20,
        ip_call_limits: Some(3),
        kind: ThrottleType::Shared,
        ..policy.clone()
    };
    store.update_throttle(&changed).await.expect("update");
    assert_eq!(
        store.list_throttles("p1").await.expect("list"),
        vec![changed.clone()]
    );
    let binding = ThrottleBinding {
        id: "b1".into(),
        throttle_id: "t1".into(),
        api_id: "a1".into(),
        created_at: 2,
    };
    store
        .bind_throttle(std::slice::from_ref(&binding))
        .await
        .expect("bind");
    assert!(matches!(
        store
            .bind_throttle(&[ThrottleBinding {
                id: "b2".into(),
                ..binding.clone()
            }])
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store
            .bind_throttle(&[ThrottleBinding {
                id: "b3".into(),
                api_id: "nope".into(),
                ..binding.clone()
            }])
            .await,
        Err(StoreError::NotFound(_))
    ));
    let special = ThrottleSpecial {
        id: "sp1".into(),
        throttle_id: "t1".into(),
        object_type: SpecialKind::App,
        object_id: "app1".into(),
        call_limits: 2,
        created_at: 3,
        updated_at: 3,
    };
    store
        .create_throttle_special(&special)
        .await
        .expect("special");
    let updated = store
        .update_throttle_special("sp1", 4, 5)
        .await
        .expect("update special");
    assert_eq!((updated.call_limits, updated.updated_at), (4, 5));
    let dump = store.load_config().await.expect("dump");
    assert_eq!(dump.throttles, vec![changed.clone()]);
    assert_eq!(dump.throttle_bindings, vec![binding.clone()]);
    assert_eq!(dump.throttle_specials, vec![updated.clone()]);
    let delta = store
        .changes_since(revision)
        .await
        .expect("delta")
        .expect("covered");
    assert_eq!(delta.throttles, vec![("t1".into(), Some(changed.clone()))]);
    assert_eq!(
        delta.bindings_of_throttles,
        vec![("t1".into(), vec![binding.clone()])]
    );
    // An API takes one policy of each unit: a TOKEN policy binds beside the REQUEST one,
    // a second TOKEN policy does not.
    for (id, name) in [("tk1", "tokens_a"), ("tk2", "tokens_b")] {
        let tokens = Throttle {
            id: id.into(),
            name: name.into(),
            unit: ThrottleUnit::Token,
            default_max_tokens: 256,
            ..policy.clone()
        };
        store.create_throttle(&tokens).await.expect("token policy");
        assert_eq!(store.throttle(id).await.expect("q"), Some(tokens));
    }
    let token_binding = ThrottleBinding {
        id: "bt1".into(),
        throttle_id: "tk1".into(),
        ..binding.clone()
    };
    store
        .bind_throttle(std::slice::from_ref(&token_binding))
        .await
        .expect("bind tokens beside calls");
    assert!(matches!(
        store
            .bind_throttle(&[ThrottleBinding {
                id: "bt2".into(),
                throttle_id: "tk2".into(),
                ..binding.clone()
            }])
            .await,
        Err(StoreError::Conflict(_))
    ));
    let dump = store.load_config().await.expect("dump");
    assert_eq!(dump.throttle_bindings.len(), 2);
    assert_eq!(dump.throttles.len(), 3);
    store.unbind_throttle("bt1").await.expect("unbind tokens");
    for id in ["tk1", "tk2"] {
        store
            .delete_throttle(id)
            .await
            .expect("delete token policy");
    }
    // Deleting the API drops its binding and logs the policy as changed.
    let before = store.revision().await.expect("revision");
    store.delete_api("a1").await.expect("delete api");
    assert!(store.throttle_bindings("t1").await.expect("q").is_empty());
    let delta = store
        .changes_since(before)
        .await
        .expect("delta")
        .expect("covered");
    assert_eq!(delta.bindings_of_throttles, vec![("t1".into(), vec![])]);
    store
        .delete_throttle_special("sp1")
        .await
        .expect("delete special");
    assert!(matches!(
        store.delete_throttle_special("sp1").await,
        Err(StoreError::NotFound(_))
    ));
    store.delete_throttle("t1").await.expect("delete");
    assert_eq!(store.throttle("t1").await.expect("q"), None);
    assert!(matches!(
        store.delete_throttle("t1").await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn projects(store: &dyn Store) {
    store.bootstrap(&plan()).await.expect("bootstrap");
    let p = Project {
        id: "p2".into(),
        domain_id: "d1".into(),
        name: "team-b".into(),
        description: "b".into(),
        created_at: 3,
    };
    store.create_project(&p).await.expect("create");
    assert!(matches!(
        store
            .create_project(&Project {
                id: "p3".into(),
                ..p.clone()
            })
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.project_by_name("d1", "team-b").await.expect("q"),
        Some(p.clone())
    );
    assert_eq!(store.list_projects("d1").await.expect("list").len(), 2);
}

fn app(id: &str, name: &str, owner: &str) -> App {
    App {
        id: id.into(),
        project_id: "p1".into(),
        name: name.into(),
        remark: String::new(),
        app_key: format!("key-{id}"),
        secret_sealed: "v1:sealed".into(),
        app_type: "APIG".into(),
        owner: owner.into(),
        created_at: 30,
        updated_at: 30,
        codes: Vec::new(),
        bounded_api_count: 0,
    }
}

fn code(index: &str, at: i64) -> AppCode {
    AppCode {
        sealed: format!("v1:{index}"),
        index: index.into(),
        created_at: at,
    }
}

fn grant(api_id: &str, app_id: &str) -> Authorization {
    Authorization {
        auth_id: format!("auth-{api_id}-{app_id}"),
        api_id: api_id.into(),
        app_id: app_id.into(),
        created_at: 40,
    }
}

pub async fn apps_quota_names_and_codes(store: &dyn Store) {
    store.bootstrap(&plan()).await.expect("bootstrap");
    store
        .create_app(&app("x1", "app_one", "u-admin"), 2)
        .await
        .expect("1");
    assert!(matches!(
        store.create_app(&app("x2", "app_one", "u-admin"), 2).await,
        Err(StoreError::Conflict(ref m)) if m.contains("app_one")
    ));
    store
        .create_app(&app("x2", "app_two", "u-admin"), 2)
        .await
        .expect("2");
    assert!(matches!(
        store
            .create_app(&app("x3", "app_three", "u-admin"), 2)
            .await,
        Err(StoreError::Quota(_))
    ));
    store
        .create_app(&app("x3", "app_three", "someone"), 2)
        .await
        .expect("other owner");
    assert_eq!(store.list_apps("p1").await.expect("list").len(), 3);
    assert_eq!(
        store
            .app_by_name("p1", "app_two")
            .await
            .expect("q")
            .map(|a| a.id),
        Some("x2".into())
    );

    store
        .add_app_code("x1", &code("c1", 50), 2)
        .await
        .expect("c1");
    let with_two = store
        .add_app_code("x1", &code("c2", 51), 2)
        .await
        .expect("c2");
    assert_eq!(
        with_two
            .codes
            .iter()
            .map(|c| c.index.as_str())
            .collect::<Vec<_>>(),
        ["c1", "c2"]
    );
    assert_eq!(with_two.updated_at, 51);
    assert!(matches!(
        store.add_app_code("x1", &code("c3", 52), 2).await,
        Err(StoreError::Quota(_))
    ));
    assert!(matches!(
        store.add_app_code("x2", &code("c1", 52), 2).await,
        Err(StoreError::Conflict(_))
    ));
    let replaced = store
        .replace_app_code("x1", "c1", &code("c9", 53))
        .await
        .expect("replace");
    assert_eq!(
        replaced
            .codes
            .iter()
            .map(|c| c.index.as_str())
            .collect::<Vec<_>>(),
        ["c9", "c2"]
    );
    assert!(matches!(
        store.replace_app_code("x1", "c1", &code("c8", 54)).await,
        Err(StoreError::NotFound(_))
    ));
    let deleted = store.delete_app_code("x1", "c9", 55).await.expect("delete");
    assert_eq!(deleted.codes.len(), 1);
    assert!(matches!(
        store.delete_app_code("x1", "c9", 56).await,
        Err(StoreError::NotFound(_))
    ));
    let reset = store
        .set_app_secret("x1", "v1:new", 60)
        .await
        .expect("secret");
    assert_eq!(
        (reset.secret_sealed.as_str(), reset.updated_at),
        ("v1:new", 60)
    );
    store.delete_app("x1").await.expect("delete app");
    assert_eq!(store.app("x1").await.expect("q"), None);
    assert!(matches!(
        store.delete_app("x1").await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn authorizations_and_counts(store: &dyn Store) {
    store.bootstrap(&plan()).await.expect("bootstrap");
    store
        .create_service(&service("s1", "svc"))
        .await
        .expect("svc");
    store
        .create_api(&api("a1", "s1", "/v1/x", AuthType::App))
        .await
        .expect("a1");
    store
        .create_api(&api("a2", "s1", "/v1/y", AuthType::App))
        .await
        .expect("a2");
    store
        .create_app(&app("x1", "app_one", "u-admin"), 5)
        .await
        .expect("x1");
    store
        .create_app(&app("x2", "app_two", "u-admin"), 5)
        .await
        .expect("x2");

    let first = store
        .authorize("a1", &[grant("a1", "x1"), grant("a1", "gone")])
        .await
        .expect("auth");
    assert_eq!(first, vec![Some("auth-a1-x1".to_string()), None]);
    let again = store
        .authorize(
            "a1",
            &[Authorization {
                auth_id: "other".into(),
                ..grant("a1", "x1")
            }],
        )
        .await
        .expect("idempotent");
    assert_eq!(
        again,
        vec![Some("auth-a1-x1".to_string())],
        "the first auth id stays"
    );
    store
        .authorize("a2", &[grant("a2", "x1"), grant("a2", "x2")])
        .await
        .expect("a2");
    assert_eq!(
        store
            .app("x1")
            .await
            .expect("q")
            .expect("x1")
            .bounded_api_count,
        2
    );
    assert!(matches!(
        store.authorize("missing", &[grant("missing", "x1")]).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(
        matches!(store.delete_app("x1").await, Err(StoreError::Conflict(ref m)) if m.contains('2'))
    );

    assert_eq!(
        store
            .unauthorize("a2", &["x1".into(), "x1".into()])
            .await
            .expect("unauth"),
        vec![true, false]
    );
    let replaced = store
        .replace_authorizations("a2", &[grant("a2", "x1")])
        .await
        .expect("replace");
    assert_eq!(replaced, vec![Some("auth-a2-x1".to_string())]);
    let bound: Vec<String> = store
        .authorizations_of_api("a2")
        .await
        .expect("q")
        .into_iter()
        .map(|a| a.app_id)
        .collect();
    assert_eq!(bound, ["x1"]);
    assert_eq!(
        store
            .app("x2")
            .await
            .expect("q")
            .expect("x2")
            .bounded_api_count,
        0
    );
    assert_eq!(store.authorizations_of_app("x1").await.expect("q").len(), 2);

    store.delete_api("a1").await.expect("delete api");
    assert_eq!(
        store
            .app("x1")
            .await
            .expect("q")
            .expect("x1")
            .bounded_api_count,
        1
    );
    store.delete_service("s1").await.expect("delete service");
    assert_eq!(
        store
            .app("x1")
            .await
            .expect("q")
            .expect("x1")
            .bounded_api_count,
        0
    );
    store.delete_app("x1").await.expect("now deletable");
}

fn normalized(mut dump: infergate_core::snapshot::ConfigDump) -> String {
    dump.services.sort_by(|a, b| a.id.cmp(&b.id));
    dump.apis.sort_by(|a, b| a.id.cmp(&b.id));
    dump.apps.sort_by(|a, b| a.id.cmp(&b.id));
    // Authorizations print sorted by auth_id.
    dump.users.sort_by(|a, b| a.id.cmp(&b.id));
    dump.credentials.sort_by(|a, b| a.access.cmp(&b.access));
    dump.grants.sort();
    dump.revoked_tokens
        .sort_by(|a, b| a.token_id.cmp(&b.token_id));
    format!("{dump:?}")
}

pub async fn change_log_replays_to_a_full_read(store: &dyn Store) {
    store.bootstrap(&plan()).await.expect("bootstrap");
    let before = store.load_config().await.expect("load");
    assert_eq!(
        store
            .changes_since(before.revision)
            .await
            .expect("q")
            .map(|d| d.revision),
        Some(before.revision)
    );
    store
        .create_service(&service("s1", "svc"))
        .await
        .expect("svc");
    store
        .create_service(&service("s2", "svc2"))
        .await
        .expect("svc2");
    store
        .create_api(&api("a1", "s1", "/v1/x", AuthType::App))
        .await
        .expect("a1");
    store
        .create_api(&api("a2", "s2", "/v1/y", AuthType::App))
        .await
        .expect("a2");
    store
        .create_api(&api("a3", "s1", "/v1/z", AuthType::Iam))
        .await
        .expect("a3");
    store
        .create_app(&app("x1", "app_one", "u-admin"), 5)
        .await
        .expect("x1");
    store
        .create_app(&app("x2", "app_two", "u-admin"), 5)
        .await
        .expect("x2");
    store
        .add_app_code("x1", &code("c1", 50), 5)
        .await
        .expect("code");
    store
        .authorize("a1", &[grant("a1", "x1"), grant("a1", "x2")])
        .await
        .expect("auth");
    store
        .authorize("a2", &[grant("a2", "x2")])
        .await
        .expect("auth");
    store
        .unauthorize("a1", &["x2".into()])
        .await
        .expect("unauth");
    store
        .set_app_secret("x2", "v1:other", 70)
        .await
        .expect("secret");
    store
        .create_user(&user("u2", "alice", false))
        .await
        .expect("user");
    store
        .grant_role("p1", "u2", Role::Member)
        .await
        .expect("grant");
    store
        .create_credential(
            &Credential {
                access: "AK1".into(),
                user_id: "u2".into(),
                secret_sealed: "v1:x".into(),
                description: String::new(),
                status: "active".into(),
                created_at: 1,
                locked_until: 0,
            },
            2,
        )
        .await
        .expect("credential");
    store
        .update_credential("AK1", Some("inactive"), Some("leaked"))
        .await
        .expect("disable");
    for (token_id, expires_at) in [("t-old", 5), ("t1", i64::MAX), ("t1", i64::MAX)] {
        store
            .revoke_token(
                &RevokedToken {
                    token_id: token_id.into(),
                    user_id: "u2".into(),
                    expires_at,
                },
                10,
            )
            .await
            .expect("revoke");
    }
    assert!(store.token_revoked("t1").await.expect("q"));
    assert!(!store.token_revoked("t2").await.expect("q"));
    store
        .update_service(
            "s1",
            &ServiceUpdate {
                description: Some("new".into()),
                updated_at: 80,
                ..Default::default()
            },
        )
        .await
        .expect("update");
    store.delete_api("a3").await.expect("delete api");
    store.delete_service("s2").await.expect("delete service");
    store
        .create_user(&user("u3", "bob", false))
        .await
        .expect("user");
    store.delete_user("u3").await.expect("delete user");
    let delta = store
        .changes_since(before.revision)
        .await
        .expect("q")
        .expect("covered");
    let master = infergate_core::MasterKey::generate();
    let (old_snapshot, _) = infergate_core::snapshot::Snapshot::build(&before, &master);
    let mut patched = before;
    patched.apply(&delta);
    let full = store.load_config().await.expect("load");
    assert_eq!(patched.revision, full.revision);
    // The snapshot patched with the delta holds what one built from a full read holds.
    let (patched_snapshot, _) = old_snapshot.patch(&delta, &patched, &master);
    let (full_snapshot, _) = infergate_core::snapshot::Snapshot::build(&full, &master);
    assert_eq!(patched_snapshot.describe(), full_snapshot.describe());
    assert_eq!(normalized(patched), normalized(full));
}

pub async fn publisher_applies_changes_incrementally(store: std::sync::Arc<dyn Store>) {
    use infergate_store::{ConfigPublisher, Refresh};
    store.bootstrap(&plan()).await.expect("bootstrap");
    let publisher = ConfigPublisher::start(store.clone(), infergate_core::MasterKey::generate())
        .await
        .expect("start");
    assert_eq!(
        publisher.refresh_with().await.expect("refresh"),
        Refresh::Unchanged
    );
    store
        .create_service(&service("s1", "svc"))
        .await
        .expect("svc");
    store
        .create_api(&api("a1", "s1", "/v1/x", AuthType::None))
        .await
        .expect("api");
    assert_eq!(
        publisher.refresh_with().await.expect("refresh"),
        Refresh::Incremental
    );
    let snapshot = publisher.snapshots().load_full();
    assert_eq!(snapshot.revision, store.revision().await.expect("rev"));
    assert!(snapshot.route("/v1/x/y").is_some());
    store.delete_service("s1").await.expect("delete");
    publisher.refresh().await.expect("refresh");
    assert!(publisher.snapshots().load_full().route("/v1/x/y").is_none());
}

pub async fn usage_adds_up_per_minute(store: &dyn Store) {
    let row = |app: &str, api: &str, minute: i64, calls: i64| UsageRow {
        project_id: "p1".into(),
        app_id: app.into(),
        api_id: api.into(),
        minute,
        counts: UsageCounts {
            requests: 100 * calls,
            client_errors: 40 * calls,
            server_errors: 7 * calls,
            throttled: 3 * calls,
            calls,
            prompt_tokens: 10 * calls,
            completion_tokens: 20 * calls,
            total_tokens: 30 * calls,
            reasoning_tokens: calls,
            cached_tokens: 2 * calls,
            estimated_calls: 0,
        },
    };
    store.add_usage(&[]).await.expect("nothing to add");
    store
        .add_usage(&[
            row("a1", "x", 100, 1),
            row("a2", "x", 100, 2),
            row("a1", "y", 101, 3),
        ])
        .await
        .expect("first batch");
    // Another node's batch for the same minute adds to it.
    let mut late = row("a1", "x", 100, 4);
    late.counts.estimated_calls = 1;
    store.add_usage(&[late]).await.expect("second batch");
    let mut other = row("a1", "x", 100, 9);
    other.project_id = "p2".into();
    store.add_usage(&[other]).await.expect("another project");

    let query = |app: Option<&str>, api: Option<&str>, from: i64, to: i64| UsageQuery {
        project_id: "p1".into(),
        app_id: app.map(Into::into),
        api_id: api.map(Into::into),
        from,
        to,
    };
    let all = store
        .usage(&query(None, None, 0, 1000))
        .await
        .expect("read");
    assert_eq!(all.len(), 3, "{all:?}");
    assert_eq!(
        (
            all[0].app_id.as_str(),
            all[0].counts.calls,
            all[0].counts.total_tokens,
            all[0].counts.estimated_calls
        ),
        ("a1", 5, 150, 1)
    );
    // Every sum lands in its own column.
    let c = all[0].counts;
    assert_eq!(
        [
            c.requests,
            c.client_errors,
            c.server_errors,
            c.throttled,
            c.calls,
            c.prompt_tokens,
            c.completion_tokens,
            c.total_tokens,
            c.reasoning_tokens,
            c.cached_tokens,
            c.estimated_calls
        ],
        [500, 200, 35, 15, 5, 50, 100, 150, 5, 10, 1]
    );
    assert_eq!((all[1].app_id.as_str(), all[1].counts.calls), ("a2", 2));
    assert_eq!((all[2].api_id.as_str(), all[2].minute), ("y", 101));
    let one_app = store
        .usage(&query(Some("a1"), None, 0, 1000))
        .await
        .expect("read");
    assert_eq!(one_app.len(), 2);
    let one_api = store
        .usage(&query(None, Some("y"), 0, 1000))
        .await
        .expect("read");
    assert_eq!(one_api.len(), 1);
    // `to` is exclusive.
    let first_minute = store
        .usage(&query(None, None, 100, 101))
        .await
        .expect("read");
    assert_eq!(first_minute.len(), 2);
}

macro_rules! backend_suite {
    ($backend:ident, $open:expr) => {
        mod $backend {
            use super::*;
            macro_rules! case {
                ($name:ident) => {
                    #[tokio::test]
                    async fn $name() {
                        let (store, guard) = $open.await;
                        super::$name(&*store).await;
                        drop(store);
                        guard.finish().await;
                    }
                };
            }
            case!(bootstrap_is_idempotent);
            case!(services_crud_and_names);
            case!(apis_unique_path_per_auth_type_and_cascade);
            case!(paths_of_other_projects_are_theirs_in_any_case);
            case!(users_roles_and_credentials);
            case!(projects);
            case!(lockouts);
            case!(throttles);
            case!(apps_quota_names_and_codes);
            case!(authorizations_and_counts);
            case!(change_log_replays_to_a_full_read);
            case!(usage_adds_up_per_minute);

            #[tokio::test]
            async fn publisher_applies_changes_incrementally() {
                let (store, guard) = $open.await;
                let store: std::sync::Arc<dyn Store> = std::sync::Arc::from(store);
                super::publisher_applies_changes_incrementally(store.clone()).await;
                drop(store);
                guard.finish().await;
            }
        }
    };
}

async fn open_sqlite() -> (Box<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("test.db"))
        .await
        .expect("open");
    (Box::new(store), dir)
}

backend_suite!(sqlite, open_sqlite());

/// What a test's store lives in, removed once the test is done with it.
trait Scratch {
    async fn finish(self);
}

impl Scratch for tempfile::TempDir {
    async fn finish(self) {}
}

/// A test's PostgreSQL schema.
struct PgSchema {
    admin_url: String,
    schema: String,
}

impl Scratch for PgSchema {
    async fn finish(self) {
        // Let released connections finish their rollbacks before dropping the schema.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        if let Ok(pool) = sqlx::PgPool::connect(&self.admin_url).await {
            let drop = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema);
            let _ = sqlx::query(&drop).execute(&pool).await;
            pool.close().await;
        }
    }
}

/// A store on its own schema of the database in `INFERGATE_TEST_DATABASE_URL`.
async fn open_pg() -> (Box<dyn Store>, PgSchema) {
    let url = std::env::var("INFERGATE_TEST_DATABASE_URL").expect(
        "INFERGATE_TEST_DATABASE_URL must name a PostgreSQL database (scripts/test.sh sets it)",
    );
    let schema = format!("t_{}", uuid_like());
    let pool = sqlx::PgPool::connect(&url).await.expect("connect");
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&pool)
        .await
        .expect("schema");
    pool.close().await;
    let sep = if url.contains('?') { '&' } else { '?' };
    let store = PgStore::connect(&format!("{url}{sep}options=-c%20search_path%3D{schema}"))
        .await
        .expect("open");
    (
        Box::new(store),
        PgSchema {
            admin_url: url,
            schema,
        },
    )
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    format!(
        "{:x}{}_{}",
        nanos,
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

backend_suite!(postgres, open_pg());

#[tokio::test]
async fn postgres_writes_race_safely() {
    let (store, schema) = open_pg().await;
    store.bootstrap(&plan()).await.expect("bootstrap");
    let store: std::sync::Arc<dyn Store> = std::sync::Arc::from(store);
    // Twenty concurrent creates against a quota of five: exactly five succeed.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .create_app(&app(&format!("r{i}"), &format!("app_r{i}"), "u-admin"), 5)
                .await
        }));
    }
    let mut created = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(()) => created += 1,
            Err(StoreError::Quota(_)) => {}
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(created, 5);
    drop(store);
    schema.finish().await;
}

#[tokio::test]
async fn sqlite_data_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("test.db");
    {
        let store = SqliteStore::open(&path).await.expect("open");
        store.bootstrap(&plan()).await.expect("bootstrap");
        store
            .create_service(&service("s1", "svc"))
            .await
            .expect("svc");
    }
    let store = SqliteStore::open(&path).await.expect("reopen");
    assert!(!store.bootstrap(&plan()).await.expect("bootstrap"));
    assert!(store.service("s1").await.expect("q").is_some());
}

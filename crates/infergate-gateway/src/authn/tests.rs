//! Authentication decisions against a snapshot built from the spec's §5.4 keys.

use super::*;
use http::{HeaderMap, HeaderName, HeaderValue};
use infergate_core::model::{Api, ApiMethod, App, AppCode, Authorization, Role, Service, User};
use infergate_core::snapshot::ConfigDump;
use infergate_core::{MasterKey, Secret};

const KEY: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90";
const SECRET: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";
pub(crate) const SID: &str = "6f1c2b3a-4d5e-4f60-8a9b-0c1d2e3f4a5b";
const DATE: &str = "20240102T030405Z";

fn code() -> String {
    "c0de".repeat(16)
}

/// A snapshot of one service (one unreachable upstream) with an APP and an IAM API.
pub(crate) fn fixture(support_app_code: bool) -> (Snapshot, MasterKey) {
    let master = MasterKey::generate();
    let api = |id: &str, auth_type| Api {
        id: id.into(),
        service_id: SID.into(),
        project_id: "p".into(),
        name: id.into(),
        auth_type,
        support_app_code,
        api_path: format!("/v1/infers/{SID}"),
        api_method: ApiMethod::Any,
        remark: String::new(),
        owner: "u".into(),
        created_at: 0,
        updated_at: 0,
    };
    let dump = ConfigDump {
        services: vec![Service {
            id: SID.into(),
            project_id: "p".into(),
            name: "svc".into(),
            description: String::new(),
            upstreams: vec!["http://127.0.0.1:1".into()],
            upstream_weights: vec![],
            timeout_ms: 1000,
            usage_accounting: true,
            load_balancing: infergate_core::model::LoadBalancing::RoundRobin,
            tls_ca_pem: None,
            health_check: None,
            retry: None,
            owner: "u".into(),
            created_at: 0,
            updated_at: 0,
        }],
        apis: vec![api("app-api", AuthType::App), api("iam-api", AuthType::Iam)],
        apps: vec![App {
            id: "app1".into(),
            project_id: "p".into(),
            name: "app".into(),
            remark: String::new(),
            app_key: KEY.into(),
            secret_sealed: master.encrypt(&Secret::new(SECRET)),
            app_type: "APIG".into(),
            owner: "u".into(),
            created_at: 0,
            updated_at: 0,
            codes: vec![AppCode {
                sealed: master.encrypt(&Secret::new(code())),
                index: "i".into(),
                created_at: 0,
            }],
            bounded_api_count: 1,
        }],
        authorizations: [Authorization {
            auth_id: "a".into(),
            api_id: "app-api".into(),
            app_id: "app1".into(),
            created_at: 0,
        }]
        .into_iter()
        .collect(),
        users: vec![User {
            id: "user1".into(),
            domain_id: "d".into(),
            name: "user".into(),
            description: String::new(),
            password_hash: String::new(),
            password_changed_at: 0,
            domain_admin: false,
            enabled: true,
            created_at: 0,
        }],
        grants: vec![("p".into(), "user1".into(), Role::Member)],
        ..ConfigDump::default()
    };
    (Snapshot::build(&dump, &master).0, master)
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (n, v) in pairs {
        map.append(
            HeaderName::from_bytes(n.as_bytes()).expect("name"),
            HeaderValue::from_str(v).expect("value"),
        );
    }
    map
}

fn at(date: &str) -> DateTime<Utc> {
    infergate_sign::parse_sdk_date(date).expect("date")
}

fn signed_v1() -> (String, String, HeaderMap) {
    let path = format!("/v1/infers/{SID}/health");
    let query = "limit=10&b=2&a=1&a=0&name=hello%20world&flag".to_string();
    let h = headers(&[
        ("host", "infer.example.test"),
        ("x-sdk-date", DATE),
        ("authorization", "SDK-HMAC-SHA256 Access=a1b2c3d4e5f60718293a4b5c6d7e8f90, SignedHeaders=host;x-sdk-date, Signature=c6236d0ed81a7fc36c8c5e36fa766dcdf22f8bbe10dbe4b9435c26dad2285db7"),
    ]);
    (path, query, h)
}

fn run(
    snapshot: &Snapshot,
    path: &str,
    query: &str,
    h: &HeaderMap,
    now: DateTime<Utc>,
) -> Result<Caller, GatewayError> {
    let presented = Presented::classify(h, snapshot);
    let apis = snapshot.route(path).expect("route");
    let refs: Vec<&Arc<ApiRoute>> = apis.iter().collect();
    let api = select(&refs, &presented)?;
    authenticate(
        snapshot,
        &api,
        &presented,
        &CallRequest {
            method: "GET",
            raw_path: path,
            raw_query: query,
            headers: h,
            body_sha256: Some(infergate_sign::EMPTY_BODY_SHA256),
            body_is_empty: true,
        },
        now,
    )
}

#[test]
fn spec_vector_v1_authenticates_the_app() {
    let (snap, _) = fixture(true);
    let (path, query, h) = signed_v1();
    assert_eq!(
        run(&snap, &path, &query, &h, at(DATE)),
        Ok(Caller::App {
            app_id: "app1".into()
        })
    );
    // 15 minutes either way is fine; 16 is not.
    assert!(run(&snap, &path, &query, &h, at("20240102T031905Z")).is_ok());
    let late = run(&snap, &path, &query, &h, at("20240102T032006Z")).expect_err("expired");
    assert!(
        matches!(late, GatewayError::AppAuth(ref m) if m.reason == AuthReason::ExpiredDate && m.message.starts_with("signature expired, signature time:20240102T030405Z")),
        "{late:?}"
    );
    let early = run(&snap, &path, &query, &h, at("20240102T024804Z"));
    assert!(early.is_err());
}

#[test]
fn one_changed_byte_fails_with_the_canonical_request() {
    let (snap, _) = fixture(true);
    let (path, query, h) = signed_v1();
    let err =
        run(&snap, &path, &query.replace("b=2", "b=3"), &h, at(DATE)).expect_err("query changed");
    let GatewayError::AppAuth(failure) = err else {
        panic!("{err:?}")
    };
    assert_eq!(failure.reason, AuthReason::BadSignature);
    let msg = failure.message;
    assert!(
        msg.starts_with("verify signature fail, canonicalRequest:GET|/v1/infers/"),
        "{msg}"
    );
    assert!(!msg.contains(SECRET));
    assert!(run(&snap, &format!("{path}x"), &query, &h, at(DATE)).is_err());
    let mut other_host = h.clone();
    other_host.insert("host", HeaderValue::from_static("evil.example.test"));
    assert!(run(&snap, &path, &query, &other_host, at(DATE)).is_err());
}

#[test]
fn app_codes_and_apikeys_only_with_support_app_code() {
    let (snap, _) = fixture(true);
    let path = format!("/v1/infers/{SID}");
    let ok = headers(&[(HEADER_APP_CODE, &code())]);
    assert_eq!(
        run(&snap, &path, "", &ok, at(DATE)),
        Ok(Caller::App {
            app_id: "app1".into()
        })
    );
    let key = headers(&[(HEADER_API_KEY, KEY)]);
    assert_eq!(
        run(&snap, &path, "", &key, at(DATE)),
        Ok(Caller::App {
            app_id: "app1".into()
        })
    );
    let bad = headers(&[(HEADER_APP_CODE, "nope")]);
    assert_eq!(
        run(&snap, &path, "", &bad, at(DATE)),
        Err(GatewayError::AppAuth(AuthFailure::new(
            AuthReason::UnknownAppCode,
            "app not found with specified appCode"
        )))
    );
    let (strict, _) = fixture(false);
    assert!(matches!(
        run(&strict, &path, "", &ok, at(DATE)),
        Err(GatewayError::AppAuth(AuthFailure {
            reason: AuthReason::AppCodeNotAllowed,
            ..
        }))
    ));
    assert!(matches!(
        run(&strict, &path, "", &key, at(DATE)),
        Err(GatewayError::AppAuth(_))
    ));
}

#[test]
fn tokens_select_the_iam_api_and_must_be_scoped_to_its_project() {
    let (snap, master) = fixture(true);
    let codec = infergate_core::token::TokenCodec::new(&master);
    let now = at(DATE);
    let path = format!("/v1/infers/{SID}");
    let (token, _) = codec.issue("user1", Scope::Project("p".into()), now.timestamp_millis());
    let h = headers(&[(HEADER_AUTH_TOKEN, &token)]);
    assert_eq!(
        run(&snap, &path, "", &h, now),
        Ok(Caller::User {
            user_id: "user1".into()
        })
    );
    let (other, _) = codec.issue("user1", Scope::Project("q".into()), now.timestamp_millis());
    assert!(matches!(
        run(
            &snap,
            &path,
            "",
            &headers(&[(HEADER_AUTH_TOKEN, &other)]),
            now
        ),
        Err(GatewayError::IamAuth(_))
    ));
    let (domain, _) = codec.issue("user1", Scope::Domain("d".into()), now.timestamp_millis());
    assert!(matches!(
        run(
            &snap,
            &path,
            "",
            &headers(&[(HEADER_AUTH_TOKEN, &domain)]),
            now
        ),
        Err(GatewayError::IamAuth(_))
    ));
    let later = now + chrono::Duration::hours(25);
    let expired = run(&snap, &path, "", &h, later).expect_err("expired");
    assert!(
        matches!(expired, GatewayError::IamAuth(ref m) if m.reason == AuthReason::BadToken && m.message.starts_with("token expires"))
    );
    assert_eq!(
        run(
            &snap,
            &path,
            "",
            &headers(&[(HEADER_AUTH_TOKEN, "garbage")]),
            now
        ),
        Err(GatewayError::IamAuth(AuthFailure::new(
            AuthReason::BadToken,
            "decrypt token fail"
        )))
    );
}

#[test]
fn no_credential_gets_the_error_of_the_api_there() {
    let (snap, _) = fixture(true);
    let path = format!("/v1/infers/{SID}");
    assert_eq!(
        run(&snap, &path, "", &HeaderMap::new(), at(DATE)),
        Err(GatewayError::AppAuth(AuthFailure::new(
            AuthReason::MissingCredential,
            "Authorization not found"
        )))
    );
}

//! Throttling through the running binary, on both of the gateway's servers: each limit
//! refuses at its count with APIG.0308 and the rate-limit fields, refused calls never reach
//! the upstream nor count, shared policies count their APIs together, windows roll over.

use crate::common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use common::upstream::start_mock;
use common::{start_with, Admin};

async fn special(admin: &Admin, policy: &str, app_id: &str, limit: u64) {
    let (status, body) = admin
        .apigw(
            Method::POST,
            &format!("/throttles/{policy}/throttle-specials"),
            Some(json!({"call_limits": limit, "object_id": app_id, "object_type": "APP"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

async fn get(client: &reqwest::Client, url: &str, code: Option<&str>) -> Answer {
    let mut req = client.get(url);
    if let Some(code) = code {
        req = req.header("X-Apig-AppCode", code);
    }
    let reply = req.send().await.expect("call");
    let status = reply.status().as_u16();
    let headers = reply.headers().clone();
    let body = reply.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
    }
}

fn header<'a>(a: &'a Answer, name: &str) -> &'a str {
    a.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Sleeps until just after the start of a window of `window_ms`.
async fn window_start(window_ms: u64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let left = window_ms - now % window_ms;
    tokio::time::sleep(Duration::from_millis(left + 20)).await;
}

async fn limits_hold(fast_path: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = common::start_on(dir.path(), fast_path).await;
    let admin = Admin::login(&server).await;
    let mock = start_mock().await;
    let client = reqwest::Client::new();

    // An APP API: the API allows 5 calls an hour, an app 2, the special app 3.
    let (sid, api, _, code) = admin.app_code_setup(&mock.url, "plain").await;
    let vip = admin.app("vip").await;
    let vip_id = vip["app_id"].as_str().expect("id").to_owned();
    admin.authorize(&sid, &api, &vip_id).await;
    let vip_code = admin.app_code(&vip_id).await;
    let hourly = admin
        .throttle(
            json!({"name": "hourly", "api_call_limits": 5, "app_call_limits": 2,
               "time_interval": 1, "time_unit": "HOUR"}),
            &[&api],
        )
        .await;
    special(&admin, &hourly, &vip_id, 3).await;
    let url = format!("{}/v1/infers/{sid}/x", server.gateway);
    let before = mock.recorder.calls.load(Ordering::SeqCst);
    for n in 0..2 {
        let ok = get(&client, &url, Some(&code)).await;
        assert_eq!(ok.status, 200, "call {n}: {}", ok.body);
        assert!(header(&ok, "ratelimit-policy").contains("\"app\";q=2;w=3600"));
        assert!(header(&ok, "ratelimit").contains(&format!("\"app\";r={}", 1 - n)));
    }
    for _ in 0..3 {
        let refused = get(&client, &url, Some(&code)).await;
        assert_eq!(refused.status, 429, "{}", refused.body);
        assert_eq!(refused.body["error_code"], "APIG.0308");
        assert_eq!(
            refused.body["error_msg"],
            "The throttling threshold has been reached: policy app over ratelimit, limit:2, time:1 hour"
        );
        assert!(refused.body["request_id"].is_string());
        let retry: u64 = header(&refused, "retry-after")
            .parse()
            .expect("Retry-After");
        assert!((1..=3600).contains(&retry), "{retry}");
        assert!(header(&refused, "ratelimit").contains("\"app\";r=0"));
    }
    for _ in 0..3 {
        assert_eq!(get(&client, &url, Some(&vip_code)).await.status, 200);
    }
    // Five calls counted: the API's limit refuses everyone now, and nothing refused was
    // forwarded.
    let refused = get(&client, &url, Some(&vip_code)).await;
    assert_eq!(refused.status, 429);
    assert!(refused.body["error_msg"]
        .as_str()
        .unwrap_or("")
        .contains("policy api over ratelimit, limit:5"));
    assert_eq!(mock.recorder.calls.load(Ordering::SeqCst) - before, 5);

    // Two open APIs sharing one count of 3 a minute (type 2), and 2 per source IP; the
    // window rolls over.
    let (open_a, api_a) = admin
        .service_with_api("open-a", &mock.url, json!({"auth_type": "NONE"}))
        .await;
    let (open_b, api_b) = admin
        .service_with_api("open-b", &mock.url, json!({"auth_type": "NONE"}))
        .await;
    admin
        .throttle(
            json!({"name": "shared", "api_call_limits": 3, "ip_call_limits": 2,
               "time_interval": 2, "time_unit": "SECOND", "type": 2}),
            &[&api_a, &api_b],
        )
        .await;
    let url_a = format!("{}/v1/infers/{open_a}", server.gateway);
    let url_b = format!("{}/v1/infers/{open_b}", server.gateway);
    window_start(2000).await;
    assert_eq!(get(&client, &url_a, None).await.status, 200);
    assert_eq!(get(&client, &url_b, None).await.status, 200);
    let refused = get(&client, &url_a, None).await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert!(refused.body["error_msg"]
        .as_str()
        .unwrap_or("")
        .contains("policy ip over ratelimit, limit:2, time:2 second"));
    let retry: u64 = header(&refused, "retry-after")
        .parse()
        .expect("Retry-After");
    assert!((1..=2).contains(&retry), "{retry}");
    window_start(2000).await;
    assert_eq!(get(&client, &url_b, None).await.status, 200);
    drop(server);
}

#[tokio::test]
async fn limits_hold_on_the_fast_path() {
    limits_hold(true).await;
}

#[tokio::test]
async fn limits_hold_on_the_general_server() {
    limits_hold(false).await;
}

/// An unbound API carries no rate-limit fields; deleting a policy lifts its limits.
#[tokio::test]
async fn unthrottled_apis_answer_as_before() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_with(dir.path(), Some(common::PASSWORD), &[]).await;
    let admin = Admin::login(&server).await;
    let mock = start_mock().await;
    let client = reqwest::Client::new();
    let (sid, api) = admin
        .service_with_api("plain", &mock.url, json!({"auth_type": "NONE"}))
        .await;
    let url = format!("{}/v1/infers/{sid}", server.gateway);
    let ok = get(&client, &url, None).await;
    assert_eq!(ok.status, 200);
    assert!(ok.headers.get("ratelimit").is_none());
    let once = admin
        .throttle(
            json!({"name": "once", "api_call_limits": 1, "time_interval": 1, "time_unit": "DAY"}),
            &[&api],
        )
        .await;
    assert_eq!(get(&client, &url, None).await.status, 200);
    assert_eq!(get(&client, &url, None).await.status, 429);
    let (status, _) = admin
        .apigw(Method::DELETE, &format!("/throttles/{once}"), None)
        .await;
    assert_eq!(status, 204);
    let ok = get(&client, &url, None).await;
    assert_eq!(ok.status, 200);
    assert!(ok.headers.get("ratelimit").is_none());
    drop(server);
}

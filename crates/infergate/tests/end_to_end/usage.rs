//! Usage end to end. Token usage of model calls: the stand-in OpenAI-compatible model server
//! of the examples (`examples/model-server.py`) behind the real binary; JSON and streamed
//! answers through both servers (the fast path, and the general server that a request
//! expecting `100 Continue` goes to); the counts in the access log, the metrics and the
//! usage API equal what the model server reported. Calls by answer: every call to an API
//! counted under its app and API as a request, a 4xx, a 5xx or a 429.

use crate::common;

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use common::{start_with, Admin, PASSWORD};

/// The access log's call lines, once there are `at_least` of them (or after 5 s).
async fn call_lines(path: &std::path::Path, at_least: usize) -> Vec<Value> {
    let mut lines = Vec::new();
    for _ in 0..50 {
        lines = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|l| l["kind"] == "call")
            .collect();
        if lines.len() >= at_least {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(lines.len() >= at_least, "{lines:#?}");
    lines
}

fn chat(words: &str, stream: bool, include_usage: bool) -> Value {
    let mut body = json!({"model": "demo", "stream": stream,
        "messages": [{"role": "user", "content": words}]});
    if include_usage {
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

#[tokio::test]
async fn tokens_are_counted_as_the_model_server_reports_them() {
    let (_model, model_url) = common::upstream::model_server().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let access_log = dir.path().join("access.log");
    let server = start_with(
        &dir.path().join("data"),
        Some(PASSWORD),
        &[
            "--usage-flush-ms",
            "200",
            "--access-log",
            access_log.to_str().expect("path"),
        ],
    )
    .await;
    let admin = Admin::login(&server).await;
    let (sid, api_id, app_id, code) = admin
        .app_code_setup(&format!("{model_url}/v1"), "usage_app")
        .await;
    let base = format!("{}/v1/infers/{sid}", server.gateway);
    let http = reqwest::Client::new();
    let call = |path: &str, body: Value| {
        http.post(format!("{base}{path}"))
            .header("X-Apig-AppCode", &code)
            .json(&body)
    };

    // The model server echoes the user's words: one token per word, prompt and completion.
    let answer: Value = call("/chat/completions", chat("one two three", false, false))
        .send()
        .await
        .expect("json call")
        .json()
        .await
        .expect("json");
    assert_eq!(answer["usage"]["total_tokens"], 6);
    // Streamed with usage asked for: the last chunk carries it.
    let streamed = call("/chat/completions", chat("a b c d", true, true))
        .send()
        .await
        .expect("stream")
        .text()
        .await
        .expect("events");
    assert!(streamed.contains("\"usage\""), "{streamed}");
    // Streamed without usage: the gateway asks the model server for it and drops the chunk
    // that brings, so the client gets exactly what the model server sends such a request.
    let unasked = call("/chat/completions", chat("a b", true, false))
        .send()
        .await
        .expect("stream")
        .text()
        .await
        .expect("events");
    let direct = http
        .post(format!("{model_url}/v1/chat/completions"))
        .json(&chat("a b", true, false))
        .send()
        .await
        .expect("direct")
        .text()
        .await
        .expect("events");
    assert!(!unasked.contains("\"usage\""), "{unasked}");
    assert_eq!(unasked, direct);
    // `Expect: 100-continue` takes the call to the general server; a completion there.
    let general: Value = http
        .post(format!("{base}/completions"))
        .header("X-Apig-AppCode", &code)
        .header("Expect", "100-continue")
        .json(&json!({"model": "demo", "prompt": "five six seven eight nine"}))
        .send()
        .await
        .expect("general server call")
        .json()
        .await
        .expect("json");
    assert_eq!(general["usage"]["total_tokens"], 10);
    // The same filter on the general server.
    let general_stream = http
        .post(format!("{base}/chat/completions"))
        .header("X-Apig-AppCode", &code)
        .header("Expect", "100-continue")
        .json(&chat("c d e", true, false))
        .send()
        .await
        .expect("general stream")
        .text()
        .await
        .expect("events");
    let direct = http
        .post(format!("{model_url}/v1/chat/completions"))
        .json(&chat("c d e", true, false))
        .send()
        .await
        .expect("direct")
        .text()
        .await
        .expect("events");
    assert_eq!(general_stream, direct);
    // Not a model path: nothing is counted.
    http.get(format!("{base}/models"))
        .header("X-Apig-AppCode", &code)
        .send()
        .await
        .expect("models");

    // The access log: one tokens object per model call, as reported (or estimated).
    let lines = call_lines(&access_log, 6).await;
    let tokens: Vec<Value> = lines.iter().map(|l| l["tokens"].clone()).collect();
    assert_eq!(tokens.len(), 6, "{lines:#?}");
    assert_eq!(
        tokens[0],
        json!({"prompt": 3, "completion": 3, "total": 6, "reasoning": 0, "cached": 0, "estimated": false})
    );
    assert_eq!(tokens[1]["total"], 8);
    assert_eq!(tokens[1]["estimated"], false);
    assert_eq!(tokens[2]["estimated"], false, "{:?}", tokens[2]);
    assert_eq!(tokens[2]["total"], 4);
    assert_eq!(tokens[3]["total"], 10, "{:?}", tokens[3]);
    assert_eq!(tokens[4]["total"], 6, "{:?}", tokens[4]);
    assert_eq!(tokens[4]["estimated"], false);
    assert_eq!(tokens[5], Value::Null);

    // The metrics.
    let metrics = server.scrape().await;
    let sample = |kind: &str| -> f64 {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("infergate_gateway_tokens_total{")
                    && l.contains(&format!("kind=\"{kind}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    assert_eq!(sample("prompt"), 3.0 + 4.0 + 2.0 + 5.0 + 3.0, "{metrics}");
    assert_eq!(sample("completion"), 3.0 + 4.0 + 2.0 + 5.0 + 3.0);
    assert_eq!(sample("estimated"), 0.0);

    // The usage API, once the node has stored its sums.
    let mut usage = Value::Null;
    for _ in 0..50 {
        usage = admin
            .ok(
                Method::GET,
                &format!("/app-auth/usage?app_id={app_id}&granularity=day"),
                None,
            )
            .await;
        if usage["total"]["calls"] == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(usage["total"]["calls"], 5, "{usage}");
    assert_eq!(
        usage["total"]["total_tokens"],
        6 + 8 + 4 + 10 + 6,
        "{usage}"
    );
    assert_eq!(usage["total"]["estimated_calls"], 0);
    assert_eq!(usage["usage"][0]["api_id"], api_id.as_str());
    assert_eq!(usage["granularity"], "day");
    // Bad input names the field and the rule.
    let (status, refused) = admin
        .send(Method::GET, "/app-auth/usage?granularity=week", None)
        .await;
    assert_eq!(status.as_u16(), 400);
    assert!(
        refused["error_msg"]
            .as_str()
            .expect("msg")
            .contains("granularity"),
        "{refused}"
    );
    let (status, refused) = admin
        .send(Method::GET, "/app-auth/usage?from=yesterday", None)
        .await;
    assert_eq!(status.as_u16(), 400);
    assert!(
        refused["error_msg"].as_str().expect("msg").contains("from"),
        "{refused}"
    );
}

/// Event streams that end with the connection, or are framed by their length: the gateway
/// sends them chunked, without the usage chunk it asked for, and counts that chunk's usage.
#[tokio::test]
async fn streams_of_every_framing_are_filtered() {
    let raw = common::upstream::start_raw().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, access_log) = common::start_with_access_log(dir.path()).await;
    let admin = Admin::login(&server).await;
    let (sid, _api, _app, code) = admin.app_code_setup(&raw.url, "raw_app").await;
    let http = reqwest::Client::new();
    for (i, path) in [
        "/raw/sse/chat/completions",
        "/raw/sse-length/chat/completions",
    ]
    .into_iter()
    .enumerate()
    {
        let answer = http
            .post(format!("{}/v1/infers/{sid}{path}", server.gateway))
            .header("X-Apig-AppCode", &code)
            .json(&json!({"model": "m", "stream": true, "messages": []}))
            .send()
            .await
            .expect("call");
        assert_eq!(answer.status().as_u16(), 200);
        assert_eq!(
            answer.text().await.expect("events"),
            "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n",
            "{path}"
        );
        let tokens = call_lines(&access_log, i + 1).await[i]["tokens"].clone();
        assert_eq!(tokens["total"], 3, "{path}: {tokens}");
        assert_eq!(tokens["estimated"], false);
    }
}

/// A service with `usage_accounting: false`: the request reaches the model server as the
/// client sent it (no usage asked for), and nothing is counted.
#[tokio::test]
async fn a_service_can_switch_accounting_off() {
    let (_model, model_url) = common::upstream::model_server().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let access_log = dir.path().join("access.log");
    let server = start_with(
        &dir.path().join("data"),
        Some(PASSWORD),
        &["--access-log", access_log.to_str().expect("path")],
    )
    .await;
    let admin = Admin::login(&server).await;
    let (sid, _api, _app, code) = admin
        .app_code_setup(&format!("{model_url}/v1"), "quiet_app")
        .await;
    let service = admin
        .ok(
            Method::PUT,
            &format!("/services/{sid}"),
            Some(json!({"usage_accounting": false})),
        )
        .await;
    assert_eq!(service["usage_accounting"], false);
    let answer = reqwest::Client::new()
        .post(format!(
            "{}/v1/infers/{sid}/chat/completions",
            server.gateway
        ))
        .header("X-Apig-AppCode", &code)
        .json(&chat("x y", true, false))
        .send()
        .await
        .expect("call")
        .text()
        .await
        .expect("events");
    // Not asked for usage: the model server sent none.
    assert!(!answer.contains("usage"), "{answer}");
    let line = call_lines(&access_log, 1).await[0].clone();
    assert_eq!(line["status"], 200, "{line}");
    assert_eq!(line["tokens"], Value::Null, "{line}");
}

/// Every call to an API is counted by its answer, whoever made it and whatever it was:
/// calls that succeed, a limit's 429s and a wrong AppCode's 401 (4xx), an upstream that is
/// down (5xx), each under its app (no app for the refused caller).
#[tokio::test]
async fn every_call_is_counted_by_its_answer() {
    let mock = common::upstream::start_mock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = common::start_counting(dir.path()).await;
    let admin = Admin::login(&server).await;
    let (sid, api, app_id, code) = admin.app_code_setup(&mock.url, "counted").await;
    admin
        .throttle(
            json!({"name": "daily", "api_call_limits": 100, "app_call_limits": 3,
               "time_interval": 1, "time_unit": "DAY"}),
            &[&api],
        )
        .await;
    let down = common::upstream::closed_port_url().await;
    let (down_sid, down_api) = admin
        .service_with_api("down", &down, json!({"auth_type": "NONE"}))
        .await;
    let http = reqwest::Client::new();
    let get = |url: String, code: &str| {
        let http = http.clone();
        let code = code.to_owned();
        async move {
            http.get(url)
                .header("X-Apig-AppCode", code)
                .send()
                .await
                .expect("call")
                .status()
                .as_u16()
        }
    };
    let url = format!("{}/v1/infers/{sid}/x", server.gateway);
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(get(url.clone(), &code).await);
    }
    statuses.push(get(url.clone(), "not-a-code").await);
    let down_url = format!("{}/v1/infers/{down_sid}", server.gateway);
    statuses.push(get(down_url, "").await);
    assert_eq!(statuses, [200, 200, 200, 429, 401, 502]);

    let sums = |usage: &Value, app: &str, api: &str| -> [i64; 5] {
        let bucket = usage["usage"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|b| b["app_id"] == app && b["api_id"] == api)
            .cloned()
            .unwrap_or(Value::Null);
        [
            "requests",
            "client_errors",
            "server_errors",
            "throttled",
            "calls",
        ]
        .map(|field| bucket[field].as_i64().unwrap_or(0))
    };
    let mut usage = Value::Null;
    for _ in 0..50 {
        usage = admin
            .ok(Method::GET, "/app-auth/usage?granularity=day", None)
            .await;
        if usage["total"]["requests"] == 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(usage["total"]["requests"], 6, "{usage}");
    assert_eq!(sums(&usage, &app_id, &api), [4, 1, 0, 1, 0], "{usage}");
    assert_eq!(sums(&usage, "", &api), [1, 1, 0, 0, 0], "{usage}");
    assert_eq!(sums(&usage, "", &down_api), [1, 0, 1, 0, 0], "{usage}");
    // One API's, at minute granularity.
    let one = admin
        .ok(
            Method::GET,
            &format!("/app-auth/usage?api_id={down_api}&granularity=minute"),
            None,
        )
        .await;
    assert_eq!(one["total"]["server_errors"], 1, "{one}");
    assert_eq!(one["total"]["requests"], 1, "{one}");
}

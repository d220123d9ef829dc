//! Token limits through the running binary: a TOKEN policy reserves each model call's
//! `max_tokens` plus its body's bytes / 4 at admission, refuses a call whose reservation
//! does not fit with 429 APIG.0308 before it reaches the model server, and settles every
//! reservation with the usage the answer reports (streamed answers included, where the
//! gateway asked for the usage itself). Concurrent first calls and 200 concurrent streams
//! never take more tokens than the limit.

use crate::common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{json, Value};

use common::upstream::{model_stub, ModelStub};
use common::{start_with, Admin, Server};

/// Words in the prompt of [`chat`].
const PROMPT_WORDS: u64 = 3;
/// The completion tokens the policies of these tests reserve for a call that names none.
const DEFAULT_MAX_TOKENS: u64 = 8;

fn chat(max_tokens: u64, stream: bool) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"model": "stub", "stream": stream, "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": "one two three"}]}),
    )
    .expect("json")
}

/// What a call with `body` reserves: its `max_tokens` and a token per 4 bytes of body.
fn reserved(body: &[u8], max_tokens: u64) -> u64 {
    (body.len() as u64).div_ceil(4) + max_tokens
}

struct Answer {
    status: u16,
    rate_limit: String,
    policy: String,
    retry_after: String,
    body: String,
}

/// The app's tokens left, from an answer's `RateLimit` field.
fn left(answer: &Answer) -> u64 {
    let at = answer
        .rate_limit
        .find("\"app_tokens\";r=")
        .unwrap_or_else(|| panic!("no app_tokens in {:?}: {}", answer.rate_limit, answer.body));
    answer.rate_limit[at + 15..]
        .split(';')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("r=")
}

async fn post(client: &reqwest::Client, url: &str, code: &str, body: Vec<u8>) -> Answer {
    let reply = client
        .post(url)
        .header("X-Apig-AppCode", code)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("call");
    let header = |name: &str| {
        reply
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let (rate_limit, policy) = (header("ratelimit"), header("ratelimit-policy"));
    let retry_after = header("retry-after");
    Answer {
        status: reply.status().as_u16(),
        rate_limit,
        policy,
        retry_after,
        body: reply.text().await.unwrap_or_default(),
    }
}

/// Sends `n` calls at once; their answers in order.
async fn all_at_once(
    client: &reqwest::Client,
    urls: &[String],
    code: &str,
    n: usize,
    body: &[u8],
) -> Vec<Answer> {
    let calls = (0..n).map(|i| post(client, &urls[i % urls.len()], code, body.to_vec()));
    futures_util::future::join_all(calls).await
}

/// Every answer is 200 or a token-limit 429; the number admitted.
fn admitted(answers: &[Answer], reserve: u64) -> u64 {
    for a in answers {
        if a.status != 200 {
            assert_eq!(a.status, 429, "{}", a.body);
            let refusal: Value = serde_json::from_str(&a.body).expect("error body");
            assert_eq!(refusal["error_code"], "APIG.0308");
            let message = refusal["error_msg"].as_str().unwrap_or("");
            assert!(
                message.contains("over token ratelimit")
                    && message.contains(&format!("the call reserves {reserve} tokens")),
                "{message}"
            );
        }
    }
    answers.iter().filter(|a| a.status == 200).count() as u64
}

/// Sleeps past the next minute's start when less than `margin` of this one is left, so
/// a test's calls count in one window.
async fn minute_with(margin: Duration) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let left = 60_000 - now % 60_000;
    if left < margin.as_millis() as u64 {
        tokio::time::sleep(Duration::from_millis(left + 50)).await;
    }
}

/// An app's API on `stub`, with a TOKEN policy of `limit` tokens a minute for the app
/// bound to it (and a call limit beside it, when `calls` is set).
async fn setup(
    server: &Server,
    stub: &ModelStub,
    name: &str,
    limit: u64,
    calls: Option<u64>,
) -> (String, String, String) {
    let admin = Admin::login(server).await;
    let (sid, api, _, code) = admin.app_code_setup(&stub.url, name).await;
    admin
        .throttle(
            json!({"name": format!("{name}_tpm"), "unit": "TOKEN",
                   "default_max_tokens": DEFAULT_MAX_TOKENS,
                   "api_call_limits": 100_000_000, "app_call_limits": limit,
                   "time_interval": 1, "time_unit": "MINUTE"}),
            &[&api],
        )
        .await;
    if let Some(calls) = calls {
        admin
            .throttle(
                json!({"name": format!("{name}_rpm"), "api_call_limits": calls,
                       "time_interval": 1, "time_unit": "MINUTE"}),
                &[&api],
            )
            .await;
    }
    let url = format!("{}/v1/infers/{sid}/chat/completions", server.gateway);
    (sid, url, code)
}

async fn first_calls_and_settlement(fast_path: bool) {
    const LIMIT: u64 = 1_000;
    const WORDS: u64 = 40;
    let stub = model_stub(WORDS, Duration::from_millis(5)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = common::start_on(dir.path(), fast_path).await;
    let (_, url, code) = setup(&server, &stub, "first_calls", LIMIT, Some(1_000)).await;
    let client = reqwest::Client::new();
    minute_with(Duration::from_secs(20)).await;

    // Eight concurrent first calls: exactly as many as their reservations fit are
    // admitted, the others never reach the model server.
    let body = chat(200, false);
    let reserve = reserved(&body, 200);
    let answers = all_at_once(&client, std::slice::from_ref(&url), &code, 8, &body).await;
    let n = admitted(&answers, reserve);
    assert_eq!(n, LIMIT / reserve, "admitted {n} of 8 reserving {reserve}");
    assert_eq!(stub.calls.load(Ordering::SeqCst) as u64, n);
    let ok = answers
        .iter()
        .find(|a| a.status == 200)
        .expect("one admitted");
    assert!(
        ok.policy
            .contains(&format!("\"app_tokens\";q={LIMIT};w=60"))
            && ok.policy.contains("\"api\";q=1000;w=60"),
        "{}",
        ok.policy
    );

    // Once they ended, each counts what the model server reported, not what it reserved.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let spent = n * (PROMPT_WORDS + WORDS);
    let small = chat(5, true);
    let next = post(&client, &url, &code, small.clone()).await;
    assert_eq!(next.status, 200, "{}", next.body);
    let left = LIMIT - spent - reserved(&small, 5);
    assert!(
        next.rate_limit
            .contains(&format!("\"app_tokens\";r={left};")),
        "{left}: {}",
        next.rate_limit
    );
    // A stream that did not ask for usage: the gateway asked, the client sees no usage
    // chunk, and the call settles with the reported count.
    assert!(next.body.contains("data: [DONE]") && !next.body.contains("\"usage\""));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let spent = spent + PROMPT_WORDS + 5;
    let again = post(&client, &url, &code, small.clone()).await;
    let left = LIMIT - spent - reserved(&small, 5);
    assert!(
        again
            .rate_limit
            .contains(&format!("\"app_tokens\";r={left};")),
        "{left}: {}",
        again.rate_limit
    );

    // A call whose reservation alone is over the limit can never be admitted: 400 before
    // the upstream, without a Retry-After.
    let calls = stub.calls.load(Ordering::SeqCst);
    let huge = chat(LIMIT, false);
    let refused = post(&client, &url, &code, huge.clone()).await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(
        refused.body.contains(&format!(
            "the call reserves {} tokens",
            reserved(&huge, LIMIT)
        )) && refused.body.contains("lower max_tokens"),
        "{}",
        refused.body
    );
    assert_eq!(refused.retry_after, "");
    assert_eq!(stub.calls.load(Ordering::SeqCst), calls);
}

/// What a TOKEN policy cannot be got around by: a call that names no cap takes no more
/// than the policy's default (the gateway adds the cap); a percent-encoded model path is
/// read as the model server reads it; turning the service's usage accounting off does not
/// stop the policy reading usage; an answer without a usage report keeps its whole
/// reservation; another path with a body is refused; bodies the gateway cannot read the
/// caps of are refused before the upstream.
async fn no_way_around(fast_path: bool) {
    const LIMIT: u64 = 100_000;
    let stub = model_stub(40, Duration::from_millis(1)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = common::start_on(dir.path(), fast_path).await;
    let (sid, url, code) = setup(&server, &stub, "around", LIMIT, None).await;
    let base = format!("{}/v1/infers/{sid}", server.gateway);
    let client = reqwest::Client::new();
    minute_with(Duration::from_secs(20)).await;
    let settle = || tokio::time::sleep(Duration::from_millis(150));
    // Tokens counted for calls that ended.
    let mut counted = 0;

    // No cap: the model server is asked for the policy's default and takes no more.
    let uncapped = serde_json::to_vec(
        &json!({"model": "stub", "messages": [{"role": "user", "content": "one two three"}]}),
    )
    .expect("json");
    let first = post(&client, &url, &code, uncapped.clone()).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let answer: Value = serde_json::from_str(&first.body).expect("json");
    assert_eq!(answer["usage"]["completion_tokens"], DEFAULT_MAX_TOKENS);
    assert_eq!(
        left(&first),
        LIMIT - reserved(&uncapped, DEFAULT_MAX_TOKENS)
    );
    counted += PROMPT_WORDS + DEFAULT_MAX_TOKENS;
    settle().await;

    // A percent-encoded model path: its answer is read and the call settles with it.
    let body = chat(10, false);
    let escaped = post(
        &client,
        &format!("{base}/chat/complet%69ons"),
        &code,
        body.clone(),
    )
    .await;
    assert_eq!(escaped.status, 200, "{}", escaped.body);
    assert_eq!(left(&escaped), LIMIT - counted - reserved(&body, 10));
    counted += PROMPT_WORDS + 10;
    settle().await;

    // Usage accounting off: the policy still reads the usage of the calls it limits.
    let admin = Admin::login(&server).await;
    admin
        .ok(
            reqwest::Method::PUT,
            &format!("/services/{sid}"),
            Some(json!({"usage_accounting": false})),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let off = post(&client, &url, &code, body.clone()).await;
    assert_eq!(off.status, 200, "{}", off.body);
    assert_eq!(left(&off), LIMIT - counted - reserved(&body, 10));
    counted += PROMPT_WORDS + 10;
    settle().await;

    // A stream that will not report usage (the client said so): it keeps its whole
    // reservation, since what was generated and not relayed cannot be known.
    let silent = serde_json::to_vec(&json!({"model": "stub", "stream": true, "max_tokens": 10,
        "stream_options": {"include_usage": false},
        "messages": [{"role": "user", "content": "one two three"}]}))
    .expect("json");
    let quiet = post(&client, &url, &code, silent.clone()).await;
    assert_eq!(quiet.status, 200, "{}", quiet.body);
    assert!(!quiet.body.contains("\"usage\""));
    assert_eq!(left(&quiet), LIMIT - counted - reserved(&silent, 10));
    counted += reserved(&silent, 10);
    settle().await;

    // Another path with a body is refused before the upstream: its answer cannot be
    // counted (a server's native `/generate`, say).
    let before = stub.calls.load(Ordering::SeqCst);
    let native = br#"{"inputs": "one two", "parameters": {"max_new_tokens": 5}}"#.to_vec();
    let generate = post(&client, &format!("{base}/generate"), &code, native.clone()).await;
    assert_eq!(generate.status, 400, "{}", generate.body);
    assert!(generate.body.contains("path:"), "{}", generate.body);
    assert_eq!(stub.calls.load(Ordering::SeqCst), before);
    // Without a body, nothing is generated and no tokens are counted.
    let listing = client
        .get(format!("{base}/models"))
        .header("X-Apig-AppCode", &code)
        .send()
        .await
        .expect("GET");
    assert!(listing.headers().get("ratelimit").is_none());
    // An upgraded connection (a realtime WebSocket, say) could not be counted: refused.
    let upgrade = client
        .get(format!("{base}/realtime"))
        .header("X-Apig-AppCode", &code)
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .send()
        .await
        .expect("GET");
    assert_eq!(upgrade.status(), 400);
    assert!(upgrade.text().await.expect("body").contains("upgrade:"));
    // (The stub answers only JSON bodies: it was reached.)
    assert_eq!(listing.text().await.expect("body"), "body is not JSON");
    settle().await;

    // What the gateway cannot read the caps of is refused, naming the member, before the
    // upstream; it counts nothing.
    let calls = stub.calls.load(Ordering::SeqCst);
    for (bad, named) in [
        (
            &br#"{"messages": [], "max_tokens": null}"#[..],
            "max_tokens:",
        ),
        (br#"{"messages": [], "max_tokens": NaN}"#, "body:"),
        (b"\xef\xbb\xbf{\"max_tokens\": 5}", "body:"),
        (br#"{"max_tokens": 5} {"max_tokens": 50000}"#, "body:"),
        (br#"{"max_tokens": 5, "n": 1000}"#, "n:"),
        (br#"{"max_tokens": 5, "MAX_TOKENS": 50000}"#, "MAX_TOKENS:"),
        (br#"{"max_completion_tokens": 200000}"#, "lower max_tokens"),
    ] {
        let refused = post(&client, &url, &code, bad.to_vec()).await;
        assert_eq!(
            refused.status,
            400,
            "{}: {}",
            String::from_utf8_lossy(bad),
            refused.body
        );
        assert!(refused.body.contains(named), "{named}: {}", refused.body);
        assert_eq!(refused.retry_after, "");
    }
    assert_eq!(stub.calls.load(Ordering::SeqCst), calls);
    let last = post(&client, &url, &code, body.clone()).await;
    assert_eq!(left(&last), LIMIT - counted - reserved(&body, 10));
}

#[tokio::test]
async fn token_limits_leave_no_way_around_on_the_fast_path() {
    no_way_around(true).await;
}

#[tokio::test]
async fn token_limits_leave_no_way_around_on_the_general_server() {
    no_way_around(false).await;
}

#[tokio::test]
async fn token_limits_reserve_and_settle_on_the_fast_path() {
    first_calls_and_settlement(true).await;
}

#[tokio::test]
async fn token_limits_reserve_and_settle_on_the_general_server() {
    first_calls_and_settlement(false).await;
}

/// 200 streams at once against a limit of 20,000 tokens a minute: the tokens the model
/// server reports for the admitted calls stay within it, every refused call is refused
/// before the upstream, and no fewer calls are admitted than the reservations fit.
#[tokio::test]
async fn two_hundred_concurrent_streams_stay_within_a_tpm_limit() {
    const LIMIT: u64 = 20_000;
    const MAX_TOKENS: u64 = 400;
    // Each answer takes all its max_tokens: what is reported is close to what is reserved.
    const WORDS: u64 = MAX_TOKENS;
    let stub = model_stub(WORDS, Duration::from_millis(5)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_with(dir.path(), Some(common::PASSWORD), &[]).await;
    let (_, url, code) = setup(&server, &stub, "streams", LIMIT, None).await;
    let client = reqwest::Client::new();
    minute_with(Duration::from_secs(30)).await;
    let body = chat(MAX_TOKENS, true);
    let reserve = reserved(&body, MAX_TOKENS);
    let answers = all_at_once(&client, std::slice::from_ref(&url), &code, 200, &body).await;
    let n = admitted(&answers, reserve);
    let served = stub.calls.load(Ordering::SeqCst) as u64;
    assert_eq!(served, n, "refused calls reached the model server");
    let reported = stub.reported.load(Ordering::SeqCst);
    assert_eq!(reported, n * (PROMPT_WORDS + WORDS));
    assert!(reported <= LIMIT, "{reported} tokens served");
    assert!(
        n >= LIMIT / reserve,
        "only {n} admitted; {} fit",
        LIMIT / reserve
    );
    assert!(n < 200, "the limit refused nothing");
    for a in answers.iter().filter(|a| a.status == 200) {
        assert_eq!(a.body.matches("data: ").count() as u64, WORDS + 1);
        assert!(!a.body.contains("\"usage\""));
    }
}

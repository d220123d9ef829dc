//! The command-line client driven as a user would: the real binary against a real server
//! and a mock model server.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::{json, Value};

use common::upstream::start_mock;
use common::PASSWORD;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn cli(config: &Path, args: &[&str]) -> Run {
    cli_env(config, args, &[]).await
}

async fn cli_env(config: &Path, args: &[&str], envs: &[(&str, &str)]) -> Run {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_infergate"))
        .args(args)
        .envs(envs.iter().copied())
        .env("INFERGATE_CONFIG_DIR", config)
        .env("INFERGATE_PASSWORD", PASSWORD)
        .env_remove("INFERGATE_URL")
        .env_remove("INFERGATE_TOKEN")
        .env_remove("INFERGATE_PROJECT")
        .env_remove("INFERGATE_GATEWAY_URL")
        .output()
        .await
        .expect("run infergate");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

async fn ok(config: &Path, args: &[&str]) -> String {
    let run = cli(config, args).await;
    assert_eq!(
        run.code, 0,
        "{args:?}\nstdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    run.stdout
}

#[tokio::test]
async fn a_whole_workflow_from_the_terminal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config");
    let server = common::start_counting(dir.path()).await;
    let mock = start_mock().await;

    let login = ok(
        &config,
        &["login", "--url", &server.admin, "--user", "admin"],
    )
    .await;
    assert!(login.contains("Logged in as admin"), "{login}");
    let saved = config.join("credentials.json");
    assert_eq!(
        std::fs::metadata(&saved)
            .expect("saved")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    let created = ok(
        &config,
        &[
            "service",
            "create",
            "--name",
            "llama",
            "--upstream",
            &mock.url,
        ],
    )
    .await;
    assert!(
        created.starts_with("FIELD") && created.contains("llama"),
        "{created}"
    );
    let table = ok(&config, &["service", "list"]).await;
    assert!(
        table.starts_with("ID") && table.contains("llama"),
        "{table}"
    );
    let listed: Value =
        serde_json::from_str(&ok(&config, &["-o", "json", "service", "list"]).await).expect("json");
    let sid = listed["services"][0]["service_id"]
        .as_str()
        .expect("id")
        .to_owned();
    // `--field` prints one field for scripts; a field the answer lacks fails.
    let field = ok(
        &config,
        &["service", "show", "llama", "--field", "service_id"],
    )
    .await;
    assert_eq!(field, format!("{sid}\n"));
    let lacking = cli(&config, &["service", "show", "llama", "--field", "nothing"]).await;
    assert_eq!(lacking.code, 1, "{}", lacking.stderr);
    assert!(lacking.stdout.is_empty() && lacking.stderr.contains("\"nothing\""));

    ok(
        &config,
        &[
            "api",
            "create",
            "--service",
            "llama",
            "--auth-type",
            "APP",
            "--app-code",
        ],
    )
    .await;
    let app_out = cli(
        &config,
        &["-o", "json", "app", "create", "--name", "mobile"],
    )
    .await;
    assert_eq!(app_out.code, 0, "{}", app_out.stderr);
    assert!(
        app_out.stderr.contains("Store the AppSecret"),
        "{}",
        app_out.stderr
    );
    let app: Value = serde_json::from_str(&app_out.stdout).expect("json");
    let authorized = ok(
        &config,
        &["app", "authorize", "--app", "mobile", "--service", "llama"],
    )
    .await;
    assert!(authorized.contains("true"), "{authorized}");

    // Shell completion asks the server for names (fish's protocol: one candidate per line).
    let complete = |line: &'static [&'static str]| {
        let config = config.clone();
        async move {
            let mut args = vec!["--", "infergate"];
            args.extend_from_slice(line);
            cli_env(&config, &args, &[("COMPLETE", "fish")]).await
        }
    };
    let services = complete(&["service", "show", ""]).await;
    assert_eq!(services.code, 0, "{}", services.stderr);
    let names: Vec<&str> = services
        .stdout
        .lines()
        .filter(|l| !l.starts_with('-'))
        .collect();
    assert_eq!(names, ["llama"], "{}", services.stdout);
    let apps = complete(&["app", "authorize", "--app", "mo"]).await;
    assert_eq!(apps.stdout.lines().collect::<Vec<_>>(), ["mobile"]);
    let script = ok(&config, &["completions", "bash"]).await;
    assert!(
        script.contains("COMPLETE=\"bash\"") || script.contains("COMPLETE=bash"),
        "{script}"
    );

    // `call` signs with the app's credentials and prints the model's answer.
    let path = format!("/v1/infers/{sid}/chat/completions");
    let answer = ok(
        &config,
        &[
            "call",
            "--app",
            "mobile",
            "-X",
            "POST",
            &path,
            "-d",
            "{\"prompt\":\"hi\"}",
        ],
    )
    .await;
    let echoed: Value = serde_json::from_str(&answer).expect("the mock's JSON");
    assert_eq!(echoed["body"], "{\"prompt\":\"hi\"}");
    assert_eq!(echoed["headers"]["x-app-id"], app["app"]["app_id"]);

    // `--service NAME` makes the target a sub-path of the service's APIs.
    let by_name = ok(
        &config,
        &[
            "call",
            "--app",
            "mobile",
            "--service",
            "llama",
            "-X",
            "POST",
            "/chat/completions",
            "-d",
            "{\"prompt\":\"hi\"}",
        ],
    )
    .await;
    let by_name: Value = serde_json::from_str(&by_name).expect("the mock's JSON");
    assert_eq!(by_name["path"], echoed["path"]);
    assert_eq!(by_name["headers"]["x-app-id"], app["app"]["app_id"]);
    // `--dry-run` shows what would be signed and sent, and sends nothing: a gateway that
    // cannot be reached does not matter.
    let dry = cli(
        &config,
        &[
            "--gateway",
            "http://127.0.0.1:1",
            "call",
            "--app",
            "mobile",
            "--service",
            "llama",
            "--dry-run",
            "/models",
        ],
    )
    .await;
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert!(dry.stdout.is_empty(), "{}", dry.stdout);
    for part in [
        "--- canonical request\nGET\n",
        "> Authorization: SDK-HMAC-SHA256 Access=",
        "nothing sent",
    ] {
        assert!(dry.stderr.contains(part), "{part:?} in {}", dry.stderr);
    }
    // A wrong AppSecret: the canonical requests match, so the client says the secret is wrong.
    let key = app["app"]["app_key"].as_str().expect("key");
    let wrong = cli(
        &config,
        &[
            "call",
            "--app-key",
            key,
            "--app-secret",
            "not-the-secret",
            &path,
        ],
    )
    .await;
    assert_eq!(wrong.code, 1, "{}", wrong.stderr);
    assert!(
        wrong.stderr.contains("the AppSecret is wrong"),
        "{}",
        wrong.stderr
    );

    // `sign --curl` produces a command curl runs against the gateway.
    let url = format!("{}{path}?q=1", server.gateway);
    let secret = app["app"]["app_secret"].as_str().expect("secret");
    let curl_line = ok(
        &config,
        &[
            "sign",
            "--app-key",
            key,
            "--app-secret",
            secret,
            "--curl",
            "-X",
            "PUT",
            "-d",
            "{}",
            &url,
        ],
    )
    .await;
    let curl = tokio::process::Command::new("bash")
        .args([
            "-c",
            &format!("{} -o /dev/null -w '%{{http_code}}'", curl_line.trim()),
        ])
        .output()
        .await
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&curl.stdout), "200", "{curl_line}");
    assert!(curl_line.starts_with("curl -sS -X PUT "), "{curl_line}");

    // Revoked: `call` exits 1 with the server's error on one line.
    ok(
        &config,
        &[
            "app",
            "unauthorize",
            "--app",
            "mobile",
            "--service",
            "llama",
        ],
    )
    .await;
    let refused = cli(&config, &["call", "--app", "mobile", &path]).await;
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused.stderr.starts_with("error: APIG.0304 (403)"),
        "{}",
        refused.stderr
    );
    assert!(refused.stderr.contains("[request "), "{}", refused.stderr);
    // `usage` counts the app's calls by answer, the refusal among the 4xx.
    let mut usage = Value::Null;
    for _ in 0..50 {
        let json = ok(&config, &["-o", "json", "usage", "--app", "mobile"]).await;
        usage = serde_json::from_str(&json).expect("json");
        if usage["total"]["client_errors"].as_i64() >= Some(1) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(usage["total"]["client_errors"], 1, "{usage}");
    assert!(usage["total"]["requests"].as_i64() > Some(1), "{usage}");
    let table = ok(&config, &["usage", "--app", "mobile"]).await;
    assert!(
        table.starts_with("START") && table.contains("REQUESTS") && table.contains("4XX"),
        "{table}"
    );

    let codes = ok(&config, &["app", "code", "add", "mobile"]).await;
    assert!(codes.starts_with("APP_CODES"), "{codes}");
    let missing = cli(&config, &["app", "delete", "nobody"]).await;
    assert_eq!(missing.code, 2, "{}", missing.stderr);
    let deleted = cli(&config, &["app", "delete", "mobile"]).await;
    assert_eq!(deleted.code, 0, "{}", deleted.stderr);

    // Throttling: a policy bound to a service's APIs, with a special limit for one user.
    let created = ok(
        &config,
        &[
            "throttle",
            "create",
            "--name",
            "per_app",
            "--api-limit",
            "100",
            "--app-limit",
            "10",
        ],
    )
    .await;
    assert!(created.contains("per_app"), "{created}");
    let listed = ok(&config, &["throttle", "list"]).await;
    assert!(
        listed.starts_with("ID") && listed.contains("per_app"),
        "{listed}"
    );
    let bound = ok(
        &config,
        &["throttle", "bind", "per_app", "--service", "llama"],
    )
    .await;
    assert!(bound.starts_with("BINDING"), "{bound}");
    let shown = ok(&config, &["throttle", "bound", "per_app"]).await;
    assert!(shown.contains("/v1/infers/"), "{shown}");
    let special = ok(
        &config,
        &[
            "throttle", "special", "per_app", "--user", "admin", "--limit", "5",
        ],
    )
    .await;
    assert!(
        special.contains("USER") && special.contains('5'),
        "{special}"
    );
    let bad = cli(
        &config,
        &["throttle", "create", "--name", "x", "--api-limit", "1"],
    )
    .await;
    assert_ne!(bad.code, 0);
    assert!(bad.stderr.contains("name"), "{}", bad.stderr);
    ok(&config, &["throttle", "delete", "per_app"]).await;
    assert!(!ok(&config, &["throttle", "list"]).await.contains("per_app"));

    // Access keys: created, listed without their secret, disabled, enabled, deleted.
    let created: Value = serde_json::from_str(
        &ok(
            &config,
            &["-o", "json", "key", "create", "--description", "ci"],
        )
        .await,
    )
    .expect("json");
    let access = created["credential"]["access"]
        .as_str()
        .expect("ak")
        .to_owned();
    let secret = created["credential"]["secret"]
        .as_str()
        .expect("sk")
        .to_owned();
    let listed = ok(&config, &["key", "list"]).await;
    assert!(
        listed.starts_with("ACCESS") && listed.contains(&access) && !listed.contains(&secret),
        "{listed}"
    );
    let disabled = ok(&config, &["key", "disable", &access]).await;
    assert!(disabled.contains("inactive"), "{disabled}");
    let enabled = ok(&config, &["key", "enable", &access]).await;
    assert!(
        enabled.contains("active") && !enabled.contains("inactive"),
        "{enabled}"
    );
    ok(&config, &["key", "delete", &access]).await;
    let listed = ok(&config, &["key", "list"]).await;
    assert!(!listed.contains(&access), "{listed}");
    let gone = cli(&config, &["key", "delete", &access]).await;
    assert_eq!(gone.code, 1, "{}", gone.stderr);

    let token = serde_json::from_str::<Value>(
        &std::fs::read_to_string(config.join("credentials.json")).expect("saved"),
    )
    .expect("json")["token"]
        .as_str()
        .expect("token")
        .to_owned();

    // A user locked out by wrong passwords is unlocked from the CLI.
    let http = reqwest::Client::new();
    let created = http
        .post(format!("{}/v3/users", server.admin))
        .header("X-Auth-Token", &token)
        .json(&json!({"user": {"name": "locked-out", "password": "locked-out-pw1"}}))
        .send()
        .await
        .expect("create user");
    assert_eq!(created.status().as_u16(), 201);
    let login = |password: &'static str| {
        http.post(format!("{}/v3/auth/tokens", server.admin))
            .json(
                &json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
                "name": "locked-out", "password": password, "domain": {"name": "default"}}}}}}),
            )
            .send()
    };
    for _ in 0..5 {
        assert_eq!(
            login("wrong-pw-123")
                .await
                .expect("login")
                .status()
                .as_u16(),
            401
        );
    }
    assert_eq!(
        login("locked-out-pw1")
            .await
            .expect("login")
            .status()
            .as_u16(),
        401
    );
    ok(&config, &["user", "unlock", "locked-out"]).await;
    assert_eq!(
        login("locked-out-pw1")
            .await
            .expect("login")
            .status()
            .as_u16(),
        201
    );
    ok(&config, &["user", "disable", "locked-out"]).await;
    assert_eq!(
        login("locked-out-pw1")
            .await
            .expect("login")
            .status()
            .as_u16(),
        401
    );
    // Offline, on the store itself: for when no admin can log in.
    for _ in 0..5 {
        login("wrong-pw-456").await.expect("login");
    }
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8");
    let unlocked = ok(
        &config,
        &["unlock", "--user", "locked-out", "--data-dir", data],
    )
    .await;
    assert!(unlocked.contains("unlocked"), "{unlocked}");
    let status = login("locked-out-pw1").await.expect("login").status();
    assert_eq!(status.as_u16(), 201);
    let unknown = cli(&config, &["unlock", "--user", "nobody", "--data-dir", data]).await;
    assert_ne!(unknown.code, 0);
    assert!(unknown.stderr.contains("nobody"), "{}", unknown.stderr);

    // Logging out revokes the saved token: kept aside, it no longer opens anything.
    ok(&config, &["logout"]).await;
    assert!(!config.join("credentials.json").exists());
    let after = reqwest::Client::new()
        .get(format!("{}/v3/projects", server.admin))
        .header("X-Auth-Token", &token)
        .send()
        .await
        .expect("request");
    assert_eq!(after.status().as_u16(), 401);
}

#[tokio::test]
async fn exit_codes_and_spec_vectors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config");
    let unreachable = cli(
        &config,
        &[
            "--url",
            "http://127.0.0.1:1",
            "--token",
            "t",
            "--project",
            "p",
            "service",
            "list",
        ],
    )
    .await;
    assert_eq!(unreachable.code, 3, "{}", unreachable.stderr);
    let not_logged_in = cli(&config, &["service", "list"]).await;
    assert_eq!(not_logged_in.code, 2, "{}", not_logged_in.stderr);
    assert_eq!(cli(&config, &["service", "create"]).await.code, 2);

    let v1 = ok(
        &config,
        &[
            "sign",
            "--app-key",
            "a1b2c3d4e5f60718293a4b5c6d7e8f90",
            "--app-secret",
            "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
            "--date",
            "20240102T030405Z",
            "https://infer.example.test/v1/infers/6f1c2b3a-4d5e-4f60-8a9b-0c1d2e3f4a5b/health?limit=10&b=2&a=1&a=0&name=hello%20world&flag",
        ],
    )
    .await;
    assert!(
        v1.contains("Signature=c6236d0ed81a7fc36c8c5e36fa766dcdf22f8bbe10dbe4b9435c26dad2285db7"),
        "{v1}"
    );
    let v3 = ok(
        &config,
        &[
            "sign",
            "--app-key",
            "a1b2c3d4e5f60718293a4b5c6d7e8f90",
            "--app-secret",
            "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
            "--date",
            "20240102T030405Z",
            "-X",
            "PUT",
            "-H",
            "Content-Type: text/plain",
            "--data-binary",
            "hello",
            "--explain",
            "https://infer.example.test/v1/infers/6f1c2b3a-4d5e-4f60-8a9b-0c1d2e3f4a5b/files/a%20b+c/%C3%BC~*?q=x/y&z=%2A&empty=",
        ],
    )
    .await;
    assert!(
        v3.contains("Signature=24a7ee5891f3a39b0c532d652556879a9b2c80aa2b5d9ca2c8d6a17caaa5a7fe"),
        "{v3}"
    );

    let completions = ok(&config, &["completions", "bash"]).await;
    assert!(completions.contains("infergate"));
}

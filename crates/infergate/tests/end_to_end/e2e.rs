//! End-to-end tests of the real binary: `infergate serve` on port 0 over a temporary data
//! directory, driven over loopback HTTP.

use std::os::unix::fs::PermissionsExt;

use serde_json::{json, Value};
use tokio::process::Command;

use common::{start, Server, PASSWORD};

use crate::common;

async fn token(client: &reqwest::Client, server: &Server, password: &str) -> String {
    common::issue_token(client, &server.admin, "admin", password).await
}

#[tokio::test]
async fn first_start_bootstraps_and_second_start_keeps_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut server = start(&data, Some(PASSWORD)).await;
    assert!(!server
        .stdout
        .iter()
        .any(|l| l.contains("Generated password")));
    assert_eq!(server.project_id.len(), 32);
    let client = reqwest::Client::new();
    let health = client
        .get(format!("{}/healthz", server.admin))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status().as_u16(), 200);
    let ready = client
        .get(format!("{}/readyz", server.admin))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status().as_u16(), 200);
    let key_mode = std::fs::metadata(data.join("master.key"))
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
    assert!(!data.join("initial-admin-password").exists());

    // The gateway listener answers JSON with a request id.
    let gw = client
        .get(format!("{}/v1/infers/x", server.gateway))
        .send()
        .await
        .expect("gateway");
    assert_eq!(gw.status().as_u16(), 404);
    assert!(gw.headers().contains_key("x-request-id"));
    let body: Value = gw.json().await.expect("json");
    assert_eq!(body["error_code"], "APIG.0101");

    let project = server.project_id.clone();
    server.child.kill().await.expect("kill");
    let second = start(&data, None).await;
    assert_eq!(second.project_id, project, "nothing is created twice");
    assert!(!second
        .stdout
        .iter()
        .any(|l| l.contains("Generated password")));
    token(&client, &second, PASSWORD).await;
}

#[tokio::test]
async fn generated_password_is_printed_once_and_saved_privately() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = start(&data, None).await;
    let line = server
        .stdout
        .iter()
        .find(|l| l.starts_with("Generated password of user admin:"))
        .expect("password line");
    let printed = line.rsplit(' ').next().expect("password").to_owned();
    let file = data.join("initial-admin-password");
    assert_eq!(
        std::fs::read_to_string(&file).expect("file").trim(),
        printed
    );
    assert_eq!(
        std::fs::metadata(&file).expect("meta").permissions().mode() & 0o777,
        0o600
    );
    token(&reqwest::Client::new(), &server, &printed).await;
}

#[tokio::test]
async fn a_create_acknowledged_before_kill_9_survives() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut server = start(&data, Some(PASSWORD)).await;
    let client = reqwest::Client::new();
    let token = token(&client, &server, PASSWORD).await;
    let created = client
        .post(format!(
            "{}/v1/{}/services",
            server.admin, server.project_id
        ))
        .header("X-Auth-Token", &token)
        .json(&json!({"service_name": "durable", "upstreams": ["http://127.0.0.1:9/v1"]}))
        .send()
        .await
        .expect("create");
    assert_eq!(created.status().as_u16(), 200);
    let service: Value = created.json().await.expect("json");
    // SIGKILL right after the 200: no shutdown hook runs.
    server.child.start_kill().expect("kill -9");
    server.child.wait().await.expect("reaped");

    let restarted = start(&data, None).await;
    let shown = client
        .get(format!(
            "{}/v1/{}/services/{}",
            restarted.admin,
            restarted.project_id,
            service["service_id"].as_str().expect("id")
        ))
        .header("X-Auth-Token", &token)
        .send()
        .await
        .expect("show");
    assert_eq!(shown.status().as_u16(), 200);
    let again: Value = shown.json().await.expect("json");
    assert_eq!(again, service);
}

#[tokio::test]
async fn a_missing_master_key_is_refused_not_regenerated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut server = start(&data, Some(PASSWORD)).await;
    server.child.kill().await.expect("kill");
    std::fs::remove_file(data.join("master.key")).expect("remove key");
    let output = Command::new(env!("CARGO_BIN_EXE_infergate"))
        .args([
            "serve",
            "--admin-listen",
            "127.0.0.1:0",
            "--gateway-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(&data)
        .env_remove("INFERGATE_MASTER_KEY")
        .output()
        .await
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("master.key is missing"), "{stderr}");
}

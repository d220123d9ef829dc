//! Dynamic shell completion: the names of services, apps, throttling policies, users and
//! projects, asked of the management API with the saved login. Nothing is offered when
//! there is no login or the server does not answer within two seconds: a completion never
//! hangs the shell.

use std::time::Duration;

use clap_complete::CompletionCandidate;
use reqwest::Method;

use super::Client;
use crate::cli::Global;

/// The `field` of every item of the `list` answered at `path`.
fn names(path: fn(&Client) -> String, list: &str, field: &str) -> Vec<CompletionCandidate> {
    let Ok(client) = Client::from_global(&Global::default()) else {
        return Vec::new();
    };
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return Vec::new();
    };
    let url = path(&client);
    let answer = runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(2), client.send(Method::GET, &url, None)).await
    });
    let Ok(Ok(answer)) = answer else {
        return Vec::new();
    };
    answer[list]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item[field].as_str())
        .map(CompletionCandidate::new)
        .collect()
}

pub fn services() -> Vec<CompletionCandidate> {
    names(|c| c.v1("/services"), "services", "service_name")
}

pub fn apps() -> Vec<CompletionCandidate> {
    names(|c| c.v1("/app-auth/apps"), "apps", "app_name")
}

pub fn throttles() -> Vec<CompletionCandidate> {
    names(|c| c.apigw("/throttles"), "throttles", "name")
}

pub fn users() -> Vec<CompletionCandidate> {
    names(|_| "/v3/users".to_owned(), "users", "name")
}

pub fn projects() -> Vec<CompletionCandidate> {
    names(|_| "/v3/projects".to_owned(), "projects", "name")
}

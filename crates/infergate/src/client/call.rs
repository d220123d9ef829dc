//! `infergate call` (curl-like, signs like the official SDKs, streams the answer) and
//! `infergate sign` (prints the signature headers, or a curl command).

use std::io::Write;

use reqwest::Method;
use url::Url;

use super::{refused, CliError, CliResult, Client, Profile};
use crate::cli::{CallArgs, Global, RequestArgs, SignArgs};

/// A request as given on the command line, resolved.
struct Prepared {
    method: String,
    url: Url,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn read_body(args: &RequestArgs) -> CliResult<Vec<u8>> {
    let Some(data) = args.data.as_ref().or(args.data_binary.as_ref()) else {
        return Ok(Vec::new());
    };
    match data.strip_prefix('@') {
        Some(path) => {
            std::fs::read(path).map_err(|e| CliError::Usage(format!("reading {path}: {e}")))
        }
        None => Ok(data.as_bytes().to_vec()),
    }
}

fn prepare(args: &RequestArgs, gateway: Option<&str>) -> CliResult<Prepared> {
    let target = if args.target.starts_with("http://") || args.target.starts_with("https://") {
        args.target.clone()
    } else {
        let base = gateway.ok_or_else(|| {
            CliError::Usage("a path needs the gateway URL: pass --gateway or a full URL".into())
        })?;
        format!("{}{}", base.trim_end_matches('/'), args.target)
    };
    let url =
        Url::parse(&target).map_err(|e| CliError::Usage(format!("bad URL {target:?}: {e}")))?;
    let mut headers = Vec::new();
    for h in &args.headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| CliError::Usage(format!("header {h:?} is not `Name: value`")))?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let body = read_body(args)?;
    if args.data.is_some()
        && !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
    {
        headers.push(("Content-Type".into(), "application/json".into()));
    }
    Ok(Prepared {
        method: args.method.to_ascii_uppercase(),
        url,
        headers,
        body,
    })
}

fn host_of(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        _ => String::new(),
    }
}

/// Adds `Host`, `X-Sdk-Date` and `Authorization` as the standalone APIG signer does.
fn sign(
    prepared: &mut Prepared,
    key: &str,
    secret: &str,
    date: Option<&str>,
    explain: bool,
) -> CliResult<()> {
    let date = match date {
        Some(d) => {
            infergate_sign::parse_sdk_date(d).map_err(|e| CliError::Usage(e.to_string()))?;
            d.to_owned()
        }
        None => infergate_sign::format_sdk_date(chrono::Utc::now()),
    };
    prepared
        .headers
        .retain(|(n, _)| !n.eq_ignore_ascii_case("x-sdk-date") && !n.eq_ignore_ascii_case("host"));
    prepared
        .headers
        .push(("Host".into(), host_of(&prepared.url)));
    prepared.headers.push(("X-Sdk-Date".into(), date));
    let signed = infergate_sign::sign(
        key,
        secret.as_bytes(),
        &prepared.method,
        prepared.url.path(),
        prepared.url.query().unwrap_or(""),
        &prepared.headers,
        &prepared.body,
    );
    if explain {
        eprintln!(
            "--- canonical request\n{}\n--- string to sign\n{}\n---",
            signed.canonical_request, signed.string_to_sign
        );
    }
    prepared
        .headers
        .push(("Authorization".into(), signed.authorization.header_value()));
    Ok(())
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// `infergate sign`.
pub fn sign_command(args: SignArgs) -> CliResult<()> {
    let mut prepared = prepare(&args.request, None)?;
    sign(
        &mut prepared,
        &args.app_key,
        &args.app_secret,
        args.date.as_deref(),
        args.explain,
    )?;
    if args.curl {
        let mut line = format!("curl -X {}", prepared.method);
        for (n, v) in &prepared.headers {
            line.push_str(&format!(" -H {}", shell_quote(&format!("{n}: {v}"))));
        }
        if !prepared.body.is_empty() {
            line.push_str(&format!(
                " --data-binary {}",
                shell_quote(&String::from_utf8_lossy(&prepared.body))
            ));
        }
        line.push_str(&format!(" {}", shell_quote(prepared.url.as_str())));
        println!("{line}");
    } else {
        for (n, v) in &prepared.headers {
            println!("{n}: {v}");
        }
    }
    Ok(())
}

/// `infergate call`.
pub async fn call_command(global: &Global, args: CallArgs) -> CliResult<()> {
    let saved = Profile::load().unwrap_or_default();
    let gateway = global.gateway.clone().or(saved.gateway.clone());
    let mut prepared = prepare(&args.request, gateway.as_deref())?;
    if let Some(app) = &args.app {
        let client = Client::from_global(global)?;
        let found = client.app(app).await?;
        let id = found["app_id"].as_str().unwrap_or_default();
        let shown = client
            .send(
                Method::GET,
                &client.v1(&format!("/app-auth/apps/{id}?iphertext_enabled=true")),
                None,
            )
            .await?;
        let key = shown["app"]["app_key"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let secret = shown["app"]["app_secret"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if key.is_empty() || key.bytes().all(|b| b == b'*') || secret.bytes().all(|b| b == b'*') {
            return Err(CliError::Other(format!(
                "app {app}'s AppKey and AppSecret are shown only to its creator and to admins of its project; \
                 pass --app-key and --app-secret, or ask one of them"
            )));
        }
        sign(&mut prepared, &key, &secret, None, args.explain)?;
    } else if let (Some(key), Some(secret)) = (&args.app_key, &args.app_secret) {
        sign(&mut prepared, key, secret, None, args.explain)?;
    } else if let Some(code) = &args.app_code {
        prepared
            .headers
            .push(("X-Apig-AppCode".into(), code.clone()));
    } else if args.iam {
        let token = global.token.clone().unwrap_or(saved.token);
        if token.is_empty() {
            return Err(CliError::Usage(
                "--iam needs a token: log in or pass --token".into(),
            ));
        }
        prepared.headers.push(("X-Auth-Token".into(), token));
    }
    let method = Method::from_bytes(prepared.method.as_bytes())
        .map_err(|_| CliError::Usage(format!("bad method {:?}", prepared.method)))?;
    let mut request = reqwest::Client::new().request(method, prepared.url.clone());
    for (n, v) in &prepared.headers {
        if !n.eq_ignore_ascii_case("host") {
            request = request.header(n, v);
        }
    }
    if args.verbose {
        eprintln!("> {} {}", prepared.method, prepared.url);
        for (n, v) in &prepared.headers {
            eprintln!("> {n}: {v}");
        }
    }
    let mut response = request
        .body(prepared.body.clone())
        .send()
        .await
        .map_err(|e| CliError::Connect(format!("{}: {e}", prepared.url)))?;
    let status = response.status();
    if args.include || args.verbose {
        let mut head = format!("{:?} {}\n", response.version(), status);
        for (n, v) in response.headers() {
            head.push_str(&format!("{n}: {}\n", v.to_str().unwrap_or("")));
        }
        if args.verbose {
            eprint!("{head}");
        } else {
            println!("{head}");
        }
    }
    if !status.is_success() {
        let request_id = response
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        return Err(refused(status.as_u16(), &body, &request_id));
    }
    let mut stdout = std::io::stdout();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| CliError::Connect(format!("reading the answer: {e}")))?
    {
        stdout
            .write_all(&chunk)
            .and_then(|()| stdout.flush())
            .map_err(|e| CliError::Other(format!("writing the answer: {e}")))?;
    }
    Ok(())
}

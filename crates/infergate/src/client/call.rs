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

/// Adds `Host`, `X-Sdk-Date` and `Authorization` as the standalone APIG signer does; the
/// canonical request signed.
fn sign(
    prepared: &mut Prepared,
    key: &str,
    secret: &str,
    date: Option<&str>,
    explain: bool,
) -> CliResult<String> {
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
    Ok(signed.canonical_request)
}

/// The name of each line of a canonical request (`METHOD`, path, query, one line per
/// signed header, an empty line, the signed header names, the body hash) with its text.
fn canonical_lines(lines: &[&str]) -> Vec<(String, String)> {
    let n = lines.len();
    lines
        .iter()
        .enumerate()
        .filter(|(i, line)| !(line.is_empty() && *i + 3 == n))
        .map(|(i, line)| {
            let name = match i {
                0 => "method".to_owned(),
                1 => "path".to_owned(),
                2 => "query".to_owned(),
                _ if i + 1 == n => "body hash".to_owned(),
                _ if i + 2 == n => "signed header names".to_owned(),
                _ => match line.split_once(':') {
                    Some((header, _)) => format!("header {header}"),
                    None => format!("line {}", i + 1),
                },
            };
            let text = match line.split_once(':') {
                Some((_, value)) if name.starts_with("header ") => value.to_owned(),
                _ => (*line).to_owned(),
            };
            (name, text)
        })
        .collect()
}

/// What a 401 for a signature that does not match says about why: the gateway's message
/// carries the canonical request it built (lines joined by `|`); compared with the one
/// signed here, either the parts that differ or, when none does, that the secret is wrong.
pub fn explain_mismatch(signed_here: &str, message: &str) -> Option<String> {
    let theirs = message.split_once("canonicalRequest:")?.1;
    if theirs == signed_here.replace('\n', "|") {
        return Some(
            "hint: the gateway built the same canonical request as this client, so the \
             signature itself differs: the AppSecret is wrong (or belongs to another AppKey)"
                .to_owned(),
        );
    }
    let here = canonical_lines(&signed_here.split('\n').collect::<Vec<_>>());
    let there = canonical_lines(&theirs.split('|').collect::<Vec<_>>());
    let mut out = vec![
        "hint: the canonical requests differ (something between this client and the gateway \
         changed the request, or the gateway reads it differently):"
            .to_owned(),
    ];
    for (name, text) in &here {
        match there.iter().find(|(n, _)| n == name) {
            Some((_, other)) if other == text => {}
            Some((_, other)) => {
                out.push(format!("  {name}: signed here {text:?}, gateway {other:?}"))
            }
            None => out.push(format!("  {name}: signed here {text:?}, gateway has none")),
        }
    }
    for (name, text) in &there {
        if !here.iter().any(|(n, _)| n == name) {
            out.push(format!("  {name}: not signed here, gateway {text:?}"));
        }
    }
    Some(out.join("\n"))
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// `infergate sign`.
pub fn sign_command(args: SignArgs) -> CliResult<()> {
    let mut prepared = prepare(&args.request, None)?;
    let _ = sign(
        &mut prepared,
        &args.app_key,
        &args.app_secret,
        args.date.as_deref(),
        args.explain,
    )?;
    if args.curl {
        let mut line = format!("curl -sS -X {}", prepared.method);
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
    let mut request_args = args.request.clone();
    if let Some(service) = &args.service {
        if request_args.target.contains("://") {
            return Err(CliError::Usage(
                "with --service the target is a sub-path of the service's APIs, not a URL".into(),
            ));
        }
        let id = Client::from_global(global)?.service_id(service).await?;
        let sub = request_args.target.trim_start_matches('/');
        request_args.target = match sub {
            "" => format!("/v1/infers/{id}"),
            _ => format!("/v1/infers/{id}/{sub}"),
        };
    }
    let mut prepared = prepare(&request_args, gateway.as_deref())?;
    let explain = args.explain || args.dry_run;
    let mut signed_here = None;
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
        signed_here = Some(sign(&mut prepared, &key, &secret, None, explain)?);
    } else if let (Some(key), Some(secret)) = (&args.app_key, &args.app_secret) {
        signed_here = Some(sign(&mut prepared, key, secret, None, explain)?);
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
    if args.verbose || args.dry_run {
        eprintln!("> {} {}", prepared.method, prepared.url);
        for (n, v) in &prepared.headers {
            eprintln!("> {n}: {v}");
        }
    }
    if args.dry_run {
        eprintln!("(--dry-run: nothing sent)");
        return Ok(());
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
        let error = refused(status.as_u16(), &body, &request_id);
        if let (CliError::Refused { message, .. }, Some(ours)) = (&error, &signed_here) {
            if let Some(hint) = explain_mismatch(ours, message) {
                eprintln!("{hint}");
            }
        }
        return Err(error);
    }
    let mut stdout = std::io::stdout();
    let mut ends_line = true;
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| CliError::Connect(format!("reading the answer: {e}")))?
    {
        if let Some(last) = chunk.last() {
            ends_line = *last == b'\n';
        }
        stdout
            .write_all(&chunk)
            .and_then(|()| stdout.flush())
            .map_err(|e| CliError::Other(format!("writing the answer: {e}")))?;
    }
    // On a terminal the prompt starts on a line of its own; a pipe or file gets the body's
    // bytes unchanged.
    if !ends_line && std::io::IsTerminal::is_terminal(&stdout) {
        println!();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::explain_mismatch;

    const SIGNED: &str = "POST\n/v1/infers/s1/chat/\nq=1\ncontent-type:application/json\nhost:127.0.0.1:8080\nx-sdk-date:20261205T120000Z\n\ncontent-type;host;x-sdk-date\nabc123";

    fn gateway_saw(canonical: &str) -> String {
        format!(
            "Verify authroization failed., canonicalRequest:{}",
            canonical.replace('\n', "|")
        )
    }

    #[test]
    fn the_same_canonical_request_means_the_secret_is_wrong() {
        let hint = explain_mismatch(SIGNED, &gateway_saw(SIGNED)).expect("a hint");
        assert!(hint.contains("the AppSecret is wrong"), "{hint}");
    }

    #[test]
    fn differing_parts_are_named() {
        let theirs = SIGNED
            .replace("/chat/", "/chat")
            .replace("host:127.0.0.1:8080", "host:gateway.internal");
        let hint = explain_mismatch(SIGNED, &gateway_saw(&theirs)).expect("a hint");
        assert!(
            hint.contains(
                "path: signed here \"/v1/infers/s1/chat/\", gateway \"/v1/infers/s1/chat\""
            ),
            "{hint}"
        );
        assert!(
            hint.contains(
                "header host: signed here \"127.0.0.1:8080\", gateway \"gateway.internal\""
            ),
            "{hint}"
        );
        assert!(!hint.contains("query"), "{hint}");
        assert!(!hint.contains("content-type:"), "{hint}");
        // A header only one side signed.
        let extra = SIGNED.replace("x-sdk-date:", "x-extra:1\nx-sdk-date:");
        let hint = explain_mismatch(SIGNED, &gateway_saw(&extra)).expect("a hint");
        assert!(
            hint.contains("header x-extra: not signed here, gateway \"1\""),
            "{hint}"
        );
    }

    #[test]
    fn other_refusals_get_no_hint() {
        assert!(explain_mismatch(SIGNED, "Incorrect app authentication information").is_none());
    }
}

//! The management subcommands: each is one or two API calls and a table.

use reqwest::Method;
use serde_json::{json, Value};

use super::output::{list_table, object_table, Table};
use super::{refused, CliError, CliResult, Client, Profile};
use crate::cli::{
    ApiCmd, AppCmd, AuthCmd, CodeCmd, Global, KeyCmd, LoginArgs, ProjectCmd, RoleCmd, ServiceCmd,
    ServiceSettings, ThrottleCmd, UsageArgs, UserCmd,
};

const SERVICE_FIELDS: [&str; 9] = [
    "service_id",
    "service_name",
    "upstreams",
    "timeout_ms",
    "usage_accounting",
    "load_balancing",
    "status",
    "owner",
    "description",
];
const API_FIELDS: [&str; 7] = [
    "api_id",
    "api_name",
    "auth_type",
    "support_app_code",
    "predict_url",
    "service_name",
    "api_remark",
];
const APP_FIELDS: [&str; 9] = [
    "app_id",
    "app_name",
    "app_key",
    "app_secret",
    "app_codes",
    "bounded_api_count",
    "app_remark",
    "user_id",
    "created_at",
];

fn read_password(env: &str, prompt: &str) -> CliResult<String> {
    if let Ok(pw) = std::env::var(env) {
        return Ok(pw);
    }
    rpassword::prompt_password(prompt)
        .map_err(|e| CliError::Usage(format!("cannot read the password ({e}); set {env}")))
}

/// `infergate login`: issues a project-scoped token and saves it with the URLs.
/// Revokes the saved token (`DELETE /v3/auth/tokens`) and removes the saved login. A token
/// the server no longer knows is forgotten all the same.
pub async fn logout(global: &Global) -> CliResult<()> {
    let Some(saved) = Profile::load().filter(|p| !p.token.is_empty()) else {
        eprintln!("Not logged in.");
        return Ok(());
    };
    let url = global.url.clone().unwrap_or_else(|| saved.url.clone());
    let response = reqwest::Client::new()
        .delete(format!("{}/v3/auth/tokens", url.trim_end_matches('/')))
        .header("X-Auth-Token", &saved.token)
        .header("X-Subject-Token", &saved.token)
        .send()
        .await
        .map_err(|e| CliError::Connect(format!("{url}: {e}")))?;
    let status = response.status().as_u16();
    if !matches!(status, 204 | 401 | 404) {
        let reply: Value = response.json().await.unwrap_or(Value::Null);
        return Err(refused(status, &reply, ""));
    }
    let path = Profile::path();
    std::fs::remove_file(&path)
        .map_err(|e| CliError::Other(format!("removing {}: {e}", path.display())))?;
    eprintln!(
        "Logged out: the token is revoked and {} removed.",
        path.display()
    );
    Ok(())
}

pub async fn login(global: &Global, args: LoginArgs) -> CliResult<()> {
    let saved = Profile::load().unwrap_or_default();
    let url = global
        .url
        .clone()
        .or_else(|| (!saved.url.is_empty()).then(|| saved.url.clone()))
        .ok_or_else(|| {
            CliError::Usage("give --url (the management API, e.g. http://127.0.0.1:8081)".into())
        })?;
    let url = url.trim_end_matches('/').to_owned();
    let password = read_password(
        "INFERGATE_PASSWORD",
        &format!("Password of {}: ", args.user),
    )?;
    let body = json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": args.user, "password": password, "domain": {"name": args.domain}}}},
        "scope": {"project": {"name": args.project_name, "domain": {"name": args.domain}}}}});
    let response = reqwest::Client::new()
        .post(format!("{url}/v3/auth/tokens"))
        .json(&body)
        .send()
        .await
        .map_err(|e| CliError::Connect(format!("{url}: {e}")))?;
    let status = response.status().as_u16();
    let token = response
        .headers()
        .get("x-subject-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let reply: Value = response.json().await.unwrap_or(Value::Null);
    let Some(token) = token.filter(|_| status == 201) else {
        return Err(refused(status, &reply, ""));
    };
    let gateway = global.gateway.clone().or_else(|| {
        reply["token"]["catalog"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["type"] == "inference")
            .and_then(|e| e["endpoints"][0]["url"].as_str().map(str::to_owned))
    });
    let profile = Profile {
        url,
        gateway,
        project_id: reply["token"]["project"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        token,
        user: args.user,
        expires_at: reply["token"]["expires_at"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    };
    let path = profile.save()?;
    println!(
        "Logged in as {} to project {} ({}); token saved to {} until {}",
        profile.user,
        args.project_name,
        profile.project_id,
        path.display(),
        profile.expires_at
    );
    Ok(())
}

fn secret_note(app: &Value) {
    if app["app_secret"]
        .as_str()
        .is_some_and(|s| !s.starts_with('*'))
    {
        eprintln!("Store the AppSecret now: it is the credential of this app.");
    }
}

pub async fn service(c: &Client, cmd: ServiceCmd) -> CliResult<()> {
    let one = |v: &Value| object_table(v, &SERVICE_FIELDS);
    match cmd {
        ServiceCmd::Create {
            name,
            upstreams,
            settings,
        } => {
            let mut body = json!({"service_name": name, "upstreams": upstreams});
            put_settings(&mut body, settings)?;
            let created = c.send(Method::POST, &c.v1("/services"), Some(body)).await?;
            c.print(&created, one);
        }
        ServiceCmd::List => {
            let list = c.send(Method::GET, &c.v1("/services"), None).await?;
            c.print(&list, |v| {
                list_table(
                    &v["services"],
                    vec!["ID", "NAME", "UPSTREAMS", "TIMEOUT_MS"],
                    &["service_id", "service_name", "upstreams", "timeout_ms"],
                )
            });
        }
        ServiceCmd::Show { service } => {
            let id = c.service_id(&service).await?;
            let shown = c
                .send(Method::GET, &c.v1(&format!("/services/{id}")), None)
                .await?;
            c.print(&shown, one);
        }
        ServiceCmd::Update {
            service,
            upstreams,
            settings,
        } => {
            let id = c.service_id(&service).await?;
            let mut body = json!({});
            if !upstreams.is_empty() {
                body["upstreams"] = json!(upstreams);
            }
            put_settings(&mut body, settings)?;
            let updated = c
                .send(Method::PUT, &c.v1(&format!("/services/{id}")), Some(body))
                .await?;
            c.print(&updated, one);
        }
        ServiceCmd::Delete { service } => {
            let id = c.service_id(&service).await?;
            c.send(Method::DELETE, &c.v1(&format!("/services/{id}")), None)
                .await?;
            eprintln!("Deleted service {id}.");
        }
    }
    Ok(())
}

pub async fn api(c: &Client, cmd: ApiCmd) -> CliResult<()> {
    let one = |v: &Value| object_table(&v["api"], &API_FIELDS);
    match cmd {
        ApiCmd::Create {
            service,
            auth_type,
            app_code,
            no_app_code,
            name,
            path,
            remark,
        } => {
            let id = c.service_id(&service).await?;
            let mut body = json!({"auth_type": auth_type});
            if app_code || no_app_code {
                body["support_app_code"] = json!(app_code);
            }
            for (field, value) in [
                ("api_name", name),
                ("api_path", path),
                ("api_remark", remark),
            ] {
                if let Some(v) = value {
                    body[field] = json!(v);
                }
            }
            let created = c
                .send(
                    Method::POST,
                    &c.v1(&format!("/app-auth/{id}/apis")),
                    Some(body),
                )
                .await?;
            c.print(&created, one);
        }
        ApiCmd::List { service } => {
            let id = c.service_id(&service).await?;
            let list = c
                .send(
                    Method::GET,
                    &c.v1(&format!("/services/{id}/app-auth-apis")),
                    None,
                )
                .await?;
            c.print(&list, |v| {
                list_table(
                    &v["apis"],
                    vec!["ID", "AUTH", "APP_CODE", "PREDICT_URL"],
                    &["api_id", "auth_type", "support_app_code", "predict_url"],
                )
            });
        }
        ApiCmd::Show { service, api } => {
            let id = c.service_id(&service).await?;
            let shown = c
                .send(
                    Method::GET,
                    &c.v1(&format!("/app-auth/{id}/apis/{api}")),
                    None,
                )
                .await?;
            c.print(&shown, one);
        }
        ApiCmd::Delete { service, api } => {
            let id = c.service_id(&service).await?;
            c.send(
                Method::DELETE,
                &c.v1(&format!("/services/{id}/app-auth-apis/{api}")),
                None,
            )
            .await?;
            eprintln!("Deleted API {api}.");
        }
    }
    Ok(())
}

fn results_table(v: &Value, key: &str) -> Table {
    list_table(
        &v[key],
        vec!["APP", "API", "SUCCESS", "AUTH_ID", "REASON"],
        &["app_id", "api_id", "success", "auth_id", "reason"],
    )
}

/// Fails with exit 1 when any app of a batch failed, after printing the results.
fn batch_outcome(v: &Value, key: &str) -> CliResult<()> {
    let failed: Vec<String> = v[key]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["success"] != true)
        .map(|r| {
            format!(
                "{}: {}",
                r["app_id"].as_str().unwrap_or(""),
                r["reason"].as_str().unwrap_or("")
            )
        })
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(CliError::Other(failed.join("; ")))
    }
}

pub async fn app(c: &Client, cmd: AppCmd) -> CliResult<()> {
    let one = |v: &Value| object_table(&v["app"], &APP_FIELDS);
    match cmd {
        AppCmd::Create { name, remark } => {
            let mut body = json!({"app_name": name});
            if let Some(r) = remark {
                body["app_remark"] = json!(r);
            }
            let created = c
                .send(Method::POST, &c.v1("/app-auth/apps"), Some(body))
                .await?;
            c.print(&created, one);
            secret_note(&created["app"]);
        }
        AppCmd::List { name } => {
            let path = match name {
                Some(n) => c.v1(&format!("/app-auth/apps?app_name={}", url_escape(&n))),
                None => c.v1("/app-auth/apps"),
            };
            let list = c.send(Method::GET, &path, None).await?;
            c.print(&list, |v| {
                list_table(
                    &v["apps"],
                    vec!["ID", "NAME", "APP_KEY", "APIS", "CODES"],
                    &[
                        "app_id",
                        "app_name",
                        "app_key",
                        "bounded_api_count",
                        "app_codes",
                    ],
                )
            });
        }
        AppCmd::Show { app } => {
            let id = c.app_id(&app).await?;
            let shown = c
                .send(Method::GET, &c.v1(&format!("/app-auth/apps/{id}")), None)
                .await?;
            c.print(&shown, one);
        }
        AppCmd::Exists { name } => {
            let found = c
                .send(
                    Method::GET,
                    &c.v1(&format!("/app-auth/apps/{}/exists", url_escape(&name))),
                    None,
                )
                .await?;
            c.print(&found, |v| object_table(v, &["exists"]));
        }
        AppCmd::Delete { app } => {
            let id = c.app_id(&app).await?;
            c.send(Method::DELETE, &c.v1(&format!("/app-auth/apps/{id}")), None)
                .await?;
            eprintln!("Deleted app {id}.");
        }
        AppCmd::ResetSecret { app } => {
            let id = c.app_id(&app).await?;
            let reset = c
                .send(
                    Method::PUT,
                    &c.v1(&format!("/app-auth/apps/{id}/app-secret")),
                    None,
                )
                .await?;
            c.print(&reset, one);
            secret_note(&reset["app"]);
        }
        AppCmd::Apis { app } => {
            let id = c.app_id(&app).await?;
            let list = c
                .send(
                    Method::GET,
                    &c.v1(&format!("/app-auth/apps/{id}/auth-apis")),
                    None,
                )
                .await?;
            c.print(&list, |v| {
                list_table(
                    &v["apis"],
                    vec!["API", "SERVICE", "AUTH", "PREDICT_URL"],
                    &["api_id", "service_name", "auth_type", "predict_url"],
                )
            });
        }
        AppCmd::Code(code) => {
            let (app, method, suffix) = match code {
                CodeCmd::Add { app } => (app, Method::POST, String::new()),
                CodeCmd::Reset { app, code } => (app, Method::PUT, format!("/{code}")),
                CodeCmd::Delete { app, code } => (app, Method::DELETE, format!("/{code}")),
            };
            let id = c.app_id(&app).await?;
            let changed = c
                .send(
                    method,
                    &c.v1(&format!("/app-auth/apps/{id}/app-code{suffix}")),
                    None,
                )
                .await?;
            c.print(&changed, |v| {
                list_table(
                    &json!(v["app"]["app_codes"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                        .iter()
                        .map(|c| json!({"code": c}))
                        .collect::<Vec<_>>()),
                    vec!["APP_CODES"],
                    &["code"],
                )
            });
        }
        AppCmd::Authorize { app, service, api } => {
            let app_id = c.app_id(&app).await?;
            let sid = c.service_id(&service).await?;
            let body = json!({"apps": [{"app_id": app_id}]});
            let (result, key) = match api {
                Some(api) => (
                    c.send(
                        Method::POST,
                        &c.v1(&format!("/services/{sid}/app-auth-apis/{api}/app-auth-api")),
                        Some(body),
                    )
                    .await?,
                    "auth_result",
                ),
                None => (
                    c.send(
                        Method::POST,
                        &c.v1(&format!("/services/{sid}/app-auth-api")),
                        Some(body),
                    )
                    .await?,
                    "auth_result",
                ),
            };
            c.print(&result, |v| results_table(v, key));
            batch_outcome(&result, key)?;
        }
        AppCmd::Unauthorize { app, service, api } => {
            let app_id = c.app_id(&app).await?;
            let sid = c.service_id(&service).await?;
            let api = match api {
                Some(api) => api,
                None => c.app_api_id(&sid).await?,
            };
            let result = c
                .send(
                    Method::DELETE,
                    &c.v1(&format!("/services/{sid}/app-auth-apis/{api}/app-auth-api")),
                    Some(json!({"apps": [{"app_id": app_id}]})),
                )
                .await?;
            c.print(&result, |v| results_table(v, "unauth_result"));
            batch_outcome(&result, "unauth_result")?;
        }
    }
    Ok(())
}

pub async fn auth(c: &Client, cmd: AuthCmd) -> CliResult<()> {
    let AuthCmd::List { service, api } = cmd;
    let sid = c.service_id(&service).await?;
    let api = match api {
        Some(api) => api,
        None => c.app_api_id(&sid).await?,
    };
    let list = c
        .send(
            Method::GET,
            &c.v1(&format!("/services/{sid}/app-auth-apis/{api}/api-auths")),
            None,
        )
        .await?;
    c.print(&list, |v| {
        let mut table = Table::new(vec!["APP", "NAME", "AUTHORIZED"]);
        for item in v["auths"].as_array().into_iter().flatten() {
            table.rows.push(vec![
                super::output::cell(&item["app"]["app_id"]),
                super::output::cell(&item["app"]["app_name"]),
                super::output::cell(&item["authed"]),
            ]);
        }
        table
    });
    Ok(())
}

/// Enables (which also ends a password lockout) or disables a user; returns its id.
async fn set_enabled(c: &Client, user: &str, enabled: bool) -> CliResult<String> {
    let id = c.user_id(user).await?;
    c.send(
        Method::PATCH,
        &format!("/v3/users/{id}"),
        Some(json!({"user": {"enabled": enabled}})),
    )
    .await?;
    Ok(id)
}

pub async fn user(c: &Client, cmd: UserCmd) -> CliResult<()> {
    match cmd {
        UserCmd::Create { name } => {
            let password =
                read_password("INFERGATE_NEW_PASSWORD", &format!("Password for {name}: "))?;
            let created = c
                .send(
                    Method::POST,
                    "/v3/users",
                    Some(json!({"user": {"name": name, "password": password}})),
                )
                .await?;
            c.print(&created, |v| {
                object_table(&v["user"], &["id", "name", "domain_id", "enabled"])
            });
        }
        UserCmd::List => {
            let list = c.send(Method::GET, "/v3/users", None).await?;
            c.print(&list, |v| {
                list_table(
                    &v["users"],
                    vec!["ID", "NAME", "ENABLED"],
                    &["id", "name", "enabled"],
                )
            });
        }
        UserCmd::Delete { user } => {
            let id = c.user_id(&user).await?;
            c.send(Method::DELETE, &format!("/v3/users/{id}"), None)
                .await?;
            eprintln!("Deleted user {id}.");
        }
        UserCmd::Unlock { user } => {
            let id = set_enabled(c, &user, true).await?;
            eprintln!("Unlocked and enabled user {id}.");
        }
        UserCmd::Disable { user } => {
            let id = set_enabled(c, &user, false).await?;
            eprintln!("Disabled user {id}.");
        }
    }
    Ok(())
}

pub async fn project(c: &Client, cmd: ProjectCmd) -> CliResult<()> {
    match cmd {
        ProjectCmd::Create { name, description } => {
            let mut project = json!({"name": name});
            if let Some(d) = description {
                project["description"] = json!(d);
            }
            let created = c
                .send(
                    Method::POST,
                    "/v3/projects",
                    Some(json!({"project": project})),
                )
                .await?;
            c.print(&created, |v| {
                object_table(&v["project"], &["id", "name", "description"])
            });
        }
        ProjectCmd::List => {
            let list = c.send(Method::GET, "/v3/projects", None).await?;
            c.print(&list, |v| {
                list_table(
                    &v["projects"],
                    vec!["ID", "NAME", "DESCRIPTION"],
                    &["id", "name", "description"],
                )
            });
        }
    }
    Ok(())
}

pub async fn role(c: &Client, cmd: RoleCmd) -> CliResult<()> {
    let (user, project, role, method) = match cmd {
        RoleCmd::List => {
            let list = c.send(Method::GET, "/v3/roles", None).await?;
            c.print(&list, |v| {
                list_table(&v["roles"], vec!["ID", "NAME"], &["id", "name"])
            });
            return Ok(());
        }
        RoleCmd::Grant {
            user,
            project,
            role,
        } => (user, project, role, Method::PUT),
        RoleCmd::Revoke {
            user,
            project,
            role,
        } => (user, project, role, Method::DELETE),
    };
    let uid = c.user_id(&user).await?;
    let pid = c.project_id(&project).await?;
    c.send(
        method.clone(),
        &format!("/v3/projects/{pid}/users/{uid}/roles/{role}"),
        None,
    )
    .await?;
    let verb = if method == Method::PUT {
        "Granted"
    } else {
        "Revoked"
    };
    eprintln!("{verb} role {role} of user {user} in project {project}.");
    Ok(())
}

pub async fn key(c: &Client, cmd: KeyCmd) -> CliResult<()> {
    let key_path = |access: &str| format!("/v3.0/OS-CREDENTIAL/credentials/{}", url_escape(access));
    let set_status = |access: String, status: &'static str| async move {
        let changed = c
            .send(
                Method::PUT,
                &key_path(&access),
                Some(json!({"credential": {"status": status}})),
            )
            .await?;
        c.print(&changed, |v| {
            object_table(
                &v["credential"],
                &["access", "user_id", "status", "description"],
            )
        });
        CliResult::Ok(())
    };
    match cmd {
        KeyCmd::Create { user, description } => {
            let uid = match user {
                Some(u) => c.user_id(&u).await?,
                None => c.my_user_id().await?,
            };
            let mut credential = json!({"user_id": uid});
            if let Some(d) = description {
                credential["description"] = json!(d);
            }
            let created = c
                .send(
                    Method::POST,
                    "/v3.0/OS-CREDENTIAL/credentials",
                    Some(json!({"credential": credential})),
                )
                .await?;
            c.print(&created, |v| {
                object_table(
                    &v["credential"],
                    &["access", "secret", "user_id", "status", "create_time"],
                )
            });
            eprintln!("Store the secret key now: it is shown only this once.");
        }
        KeyCmd::List { user } => {
            let uid = match user {
                Some(u) => c.user_id(&u).await?,
                None => c.my_user_id().await?,
            };
            let listed = c
                .send(
                    Method::GET,
                    &format!(
                        "/v3.0/OS-CREDENTIAL/credentials?user_id={}",
                        url_escape(&uid)
                    ),
                    None,
                )
                .await?;
            c.print(&listed, |v| {
                list_table(
                    &v["credentials"],
                    vec!["ACCESS", "STATUS", "DESCRIPTION", "CREATED"],
                    &["access", "status", "description", "create_time"],
                )
            });
        }
        KeyCmd::Disable { access_key } => set_status(access_key, "inactive").await?,
        KeyCmd::Enable { access_key } => set_status(access_key, "active").await?,
        KeyCmd::Delete { access_key } => {
            c.send(Method::DELETE, &key_path(&access_key), None).await?;
            eprintln!("Deleted access key {access_key}.");
        }
    }
    Ok(())
}

fn url_escape(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

pub async fn throttle(c: &Client, cmd: ThrottleCmd) -> CliResult<()> {
    const COLUMNS: [&str; 9] = [
        "id",
        "name",
        "unit",
        "api_call_limits",
        "user_call_limits",
        "app_call_limits",
        "ip_call_limits",
        "time_interval",
        "time_unit",
    ];
    match cmd {
        ThrottleCmd::Create {
            name,
            api_limit,
            user_limit,
            app_limit,
            ip_limit,
            interval,
            unit,
            tokens,
            default_max_tokens,
            shared,
            remark,
        } => {
            let body = json!({
                "name": name, "api_call_limits": api_limit, "user_call_limits": user_limit,
                "app_call_limits": app_limit, "ip_call_limits": ip_limit,
                "time_interval": interval, "time_unit": unit.to_ascii_uppercase(),
                "type": if shared { 2 } else { 1 }, "remark": remark,
                "unit": if tokens { "TOKEN" } else { "REQUEST" },
                "default_max_tokens": default_max_tokens,
            });
            let created = c
                .send(Method::POST, &c.apigw("/throttles"), Some(body))
                .await?;
            c.print(&created, |v| object_table(v, &COLUMNS));
        }
        ThrottleCmd::List => {
            let listed = c.send(Method::GET, &c.apigw("/throttles"), None).await?;
            c.print(&listed, |v| {
                list_table(
                    &v["throttles"],
                    vec![
                        "ID", "NAME", "COUNTS", "API", "USER", "APP", "IP", "EVERY", "UNIT",
                    ],
                    &COLUMNS,
                )
            });
        }
        ThrottleCmd::Delete { policy } => {
            let id = c.throttle_id(&policy).await?;
            c.send(Method::DELETE, &c.apigw(&format!("/throttles/{id}")), None)
                .await?;
            eprintln!("Deleted throttling policy {id}.");
        }
        ThrottleCmd::Bind {
            policy,
            services,
            apis,
        } => {
            let id = c.throttle_id(&policy).await?;
            let mut api_ids = apis;
            for service in services {
                let sid = c.service_id(&service).await?;
                let listed = c
                    .send(
                        Method::GET,
                        &c.v1(&format!("/services/{sid}/app-auth-apis")),
                        None,
                    )
                    .await?;
                for api in listed["apis"].as_array().into_iter().flatten() {
                    if let Some(api_id) = api["api_id"].as_str() {
                        api_ids.push(api_id.to_owned());
                    }
                }
            }
            if api_ids.is_empty() {
                return Err(CliError::Usage(
                    "name the APIs to bind: --service NAME or --api ID".into(),
                ));
            }
            let bound = c
                .send(
                    Method::POST,
                    &c.apigw("/throttle-bindings"),
                    Some(json!({"policy_id": id, "publish_ids": api_ids})),
                )
                .await?;
            c.print(&bound, |v| {
                list_table(
                    &v["throttle_applys"],
                    vec!["BINDING", "API"],
                    &["id", "publish_id"],
                )
            });
        }
        ThrottleCmd::Bound { policy } => {
            let id = c.throttle_id(&policy).await?;
            let listed = c
                .send(
                    Method::GET,
                    &c.apigw(&format!("/throttle-bindings/binded-apis?throttle_id={id}")),
                    None,
                )
                .await?;
            c.print(&listed, |v| {
                list_table(
                    &v["apis"],
                    vec!["BINDING", "API", "NAME", "PATH"],
                    &["throttle_apply_id", "id", "name", "req_uri"],
                )
            });
        }
        ThrottleCmd::Unbind { binding } => {
            c.send(
                Method::DELETE,
                &c.apigw(&format!("/throttle-bindings/{}", url_escape(&binding))),
                None,
            )
            .await?;
            eprintln!("Removed binding {binding}.");
        }
        ThrottleCmd::Special {
            policy,
            app,
            user,
            limit,
        } => {
            let id = c.throttle_id(&policy).await?;
            let (object_type, object_id) = match (app, user) {
                (Some(app), None) => ("APP", c.app_id(&app).await?),
                (None, Some(user)) => ("USER", c.user_id(&user).await?),
                _ => return Err(CliError::Usage("name one --app or one --user".into())),
            };
            let made = c
                .send(
                    Method::POST,
                    &c.apigw(&format!("/throttles/{id}/throttle-specials")),
                    Some(json!({"call_limits": limit, "object_id": object_id, "object_type": object_type})),
                )
                .await?;
            c.print(&made, |v| {
                object_table(
                    v,
                    &[
                        "id",
                        "object_type",
                        "object_id",
                        "object_name",
                        "call_limits",
                    ],
                )
            });
        }
    }
    Ok(())
}

/// `infergate usage`: the usage API's buckets, one row per period, app and API.
pub async fn usage(c: &Client, args: UsageArgs) -> CliResult<()> {
    let mut query = vec![("granularity", args.granularity.clone())];
    if let Some(app) = &args.app {
        query.push(("app_id", c.app_id(app).await?));
    }
    if let Some(from) = &args.from {
        query.push(("from", from.clone()));
    }
    if let Some(to) = &args.to {
        query.push(("to", to.clone()));
    }
    let encoded: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&query)
        .finish();
    let mut answer = c
        .send(
            Method::GET,
            &c.v1(&format!("/app-auth/usage?{encoded}")),
            None,
        )
        .await?;
    if let Some(service) = &args.service {
        let id = c.service_id(service).await?;
        let apis = c
            .send(
                Method::GET,
                &c.v1(&format!("/services/{id}/app-auth-apis")),
                None,
            )
            .await?;
        let ids: Vec<&str> = apis["apis"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["api_id"].as_str())
            .collect();
        let kept: Vec<Value> = answer["usage"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|b| b["api_id"].as_str().is_some_and(|api| ids.contains(&api)))
            .cloned()
            .collect();
        answer["usage"] = Value::Array(kept);
    }
    c.print(&answer, |v| {
        // (heading, field) of each column after the start.
        const COLUMNS: [(&str, &str); 11] = [
            ("APP", "app_id"),
            ("API", "api_id"),
            ("REQUESTS", "requests"),
            ("4XX", "client_errors"),
            ("5XX", "server_errors"),
            ("429", "throttled"),
            ("MODEL CALLS", "calls"),
            ("PROMPT", "prompt_tokens"),
            ("COMPLETION", "completion_tokens"),
            ("TOTAL", "total_tokens"),
            ("ESTIMATED", "estimated_calls"),
        ];
        let mut table = Table::new(
            std::iter::once("START")
                .chain(COLUMNS.iter().map(|(heading, _)| *heading))
                .collect(),
        );
        for b in v["usage"].as_array().into_iter().flatten() {
            let start = b["start"]
                .as_i64()
                .and_then(chrono::DateTime::<chrono::Utc>::from_timestamp_millis)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default();
            let mut row = vec![start];
            for (_, field) in COLUMNS {
                row.push(super::output::cell(&b[field]));
            }
            table.rows.push(row);
        }
        table
    });
    Ok(())
}

/// The text of a file a flag names.
fn read_text_file(path: &std::path::Path) -> CliResult<String> {
    std::fs::read_to_string(path)
        .map_err(|e| CliError::Usage(format!("reading {}: {e}", path.display())))
}

/// The JSON value a flag gives.
fn json_flag(flag: &str, text: &str) -> CliResult<Value> {
    serde_json::from_str(text).map_err(|e| CliError::Usage(format!("{flag} is not JSON: {e}")))
}

/// The members of a service's body the flags set.
fn put_settings(body: &mut Value, settings: ServiceSettings) -> CliResult<()> {
    let ServiceSettings {
        description,
        timeout_ms,
        usage_accounting,
        load_balancing,
        upstream_weights,
        tls_ca_file,
        health_check,
        retry,
    } = settings;
    if let Some(d) = description {
        body["description"] = json!(d);
    }
    if let Some(t) = timeout_ms {
        body["timeout_ms"] = json!(t);
    }
    if let Some(on) = usage_accounting {
        body["usage_accounting"] = json!(on);
    }
    if let Some(balancing) = load_balancing {
        body["load_balancing"] = json!(balancing);
    }
    if let Some(weights) = upstream_weights {
        body["upstream_weights"] = json!(weights);
    }
    if let Some(path) = tls_ca_file {
        body["tls_ca_pem"] = json!(read_text_file(&path)?);
    }
    if let Some(check) = health_check {
        body["health_check"] = json_flag("--health-check", &check)?;
    }
    if let Some(retry) = retry {
        body["retry"] = json_flag("--retry", &retry)?;
    }
    Ok(())
}

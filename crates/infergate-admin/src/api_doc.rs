//! The OpenAPI document as clients and fuzzers read it. The routes' annotations give each
//! operation's success and the refusals particular to it; this module adds, in one place,
//! what every operation of a surface can answer (invalid input, authentication, the body
//! limit, the store being away) with the error body of its surface, and declares the rules
//! the validation enforces on path parameters and body fields (patterns from
//! `infergate_core::validate`, each tested to accept what its check accepts).

use infergate_core::throttle::MAX_LIMIT;
use infergate_core::validate as rules;
use serde_json::{json, Map, Value};

/// The error body of `/v1` and `/v2` (ModelArts and APIG shapes).
fn modelarts_error() -> Value {
    json!({
        "type": "object",
        "description": "A refusal: a `ModelArts.xxxx` (or `APIG.xxxx`) code and a message naming the field and rule.",
        "required": ["error_code", "error_msg"],
        "properties": {
            "error_code": {"type": "string"},
            "error_msg": {"type": "string"},
            "request_id": {"type": "string"}
        }
    })
}

/// The error body of `/v3` and `/v3.0` (Keystone's shape).
fn keystone_error() -> Value {
    json!({
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "title"],
                "properties": {
                    "code": {"type": "integer"},
                    "message": {"type": "string"},
                    "title": {"type": "string"}
                }
            }
        }
    })
}

/// What each added status means.
fn meaning(status: &str) -> &'static str {
    match status {
        "400" => "Invalid input: a path parameter, query parameter, header or body field breaks its rule (the message names it)",
        "401" => "No valid credential (token, or AK/SK signature)",
        "403" => "The caller's role does not allow it, or the project is not the token's",
        "404" => "Nothing with that id is visible to the caller",
        "413" => "The body exceeds the size limit",
        "429" => "Too many password checks at once; retry after `Retry-After` seconds",
        "500" => "Internal error",
        "503" => "The store is unreachable; nothing was changed",
        _ => "Refused",
    }
}

/// Operations that check a password, bounded by `max_password_hashes`.
const PASSWORD_CHECKS: &[(&str, &str)] = &[
    ("post", "/v3/auth/tokens"),
    ("post", "/v3/users/{user_id}/password"),
];

/// The statuses an operation can answer besides its own: invalid input and the store's
/// absence anywhere; authentication and roles wherever a caller is identified; 404 where
/// the path names something; 413 where a body is read.
fn common_statuses(method: &str, path: &str, op: &Value) -> Vec<&'static str> {
    let mut statuses = vec!["400", "401", "500", "503"];
    let issues_tokens = method == "post" && path == "/v3/auth/tokens";
    if !issues_tokens {
        statuses.push("403");
    }
    if path.contains('{') {
        statuses.push("404");
    }
    if op.get("requestBody").is_some() {
        statuses.push("413");
    }
    if PASSWORD_CHECKS.contains(&(method, path)) {
        statuses.push("429");
    }
    statuses
}

/// Path parameters' rules, by name.
fn path_parameter(name: &str) -> Option<Value> {
    match name {
        "project_id" => Some(json!({"type": "string", "pattern": rules::PROJECT_ID_PATTERN})),
        // A custom AppCode (spec §2.7), as `check_code_param` reads it.
        "app_code" => Some(json!({"type": "string",
            "pattern": "^[A-Za-z0-9+/][A-Za-z0-9+_!@#$%/=-]{63,179}$"})),
        _ => None,
    }
}

/// Query parameters' rules (schema, and whether required), by name and path: `limit` and
/// `offset` are integers written as strings (spec §2.0), as [`crate::paging`] reads them.
fn query_parameter(path: &str, name: &str) -> Option<(Value, bool)> {
    match name {
        "limit" => Some((
            json!({"type": "string", "pattern": "^(1000|[1-9][0-9]{0,2})$"}),
            false,
        )),
        "offset" => Some((
            json!({"type": "string", "pattern": "^(1000000|[0-9]{1,6})$"}),
            false,
        )),
        "order" => Some((json!({"type": "string", "enum": ["asc", "desc"]}), false)),
        "granularity" => Some((
            json!({"type": "string", "enum": ["minute", "hour", "day"]}),
            false,
        )),
        // Epoch milliseconds (RFC 3339 is accepted too).
        "from" | "to" if path.ends_with("/usage") => {
            Some((json!({"type": "string", "pattern": "^[0-9]{1,15}$"}), false))
        }
        "throttle_id" if path.ends_with("/binded-apis") => Some((json!({"type": "string"}), true)),
        _ => None,
    }
}

/// Header parameters an operation cannot do without, by method and path.
fn required_headers(method: &str, path: &str) -> &'static [&'static str] {
    match (method, path) {
        ("get" | "delete" | "head", "/v3/auth/tokens") => &["X-Subject-Token"],
        _ => &[],
    }
}

/// Fields a body must have beyond those its type requires (checked by the handler).
const REQUIRED: &[(&str, &[&str])] = &[("ThrottleBody", &["api_call_limits", "time_interval"])];

/// Upstream URLs the validation accepts (it also parses them, refuses credentials, and
/// checks the allow-list and this node's own listeners, which no pattern can say).
const UPSTREAM_PATTERN: &str =
    "^[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*(:[1-9][0-9]{0,3})?(/[A-Za-z0-9._~-]+)*/?$";

/// An `api_path`'s constraints: the spec's pattern, less what the gateway would refuse to
/// route.
fn api_path_schema() -> Value {
    json!({"pattern": rules::API_PATH_PATTERN, "maxLength": 255,
           "not": {"pattern": rules::API_PATH_REFUSED_PATTERN}})
}

/// Body fields' rules: (schema, property, constraints merged into the property).
fn field_rules() -> Vec<(&'static str, &'static str, Value)> {
    let limit = json!({"minimum": 1, "maximum": MAX_LIMIT});
    let password =
        json!({"minLength": rules::PASSWORD_CHARS.0, "maxLength": rules::PASSWORD_CHARS.1});
    let upstream = json!({"items": {"type": "string", "pattern": UPSTREAM_PATTERN,
                                    "maxLength": rules::MAX_UPSTREAM_URL},
                          "minItems": 1, "maxItems": rules::MAX_UPSTREAMS});
    let timeout = json!({"minimum": 1, "maximum": rules::MAX_TIMEOUT_MS});
    let api_path = api_path_schema();
    vec![
        (
            "CreateAppRequest",
            "app_name",
            json!({"pattern": rules::APP_NAME_PATTERN}),
        ),
        (
            "CreateAppRequest",
            "app_remark",
            json!({"maxLength": crate::apps::MAX_REMARK}),
        ),
        (
            "ServiceCreate",
            "service_name",
            json!({"pattern": rules::SERVICE_NAME_PATTERN}),
        ),
        (
            "ServiceCreate",
            "description",
            json!({"maxLength": crate::services::MAX_DESCRIPTION}),
        ),
        ("ServiceCreate", "timeout_ms", timeout.clone()),
        ("ServiceCreate", "upstreams", upstream.clone()),
        (
            "ServiceModify",
            "description",
            json!({"maxLength": crate::services::MAX_DESCRIPTION}),
        ),
        ("ServiceModify", "timeout_ms", timeout),
        ("ServiceModify", "upstreams", upstream),
        (
            "CreateApiRequest",
            "api_name",
            json!({"pattern": rules::API_NAME_PATTERN}),
        ),
        ("CreateApiRequest", "api_path", api_path),
        (
            "CreateApiRequest",
            "api_remark",
            json!({"maxLength": crate::apis::MAX_REMARK}),
        ),
        (
            "CreateApiRequest",
            "api_method",
            json!({"enum": ["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS", "ANY", null]}),
        ),
        (
            "CreateApiRequest",
            "auth_type",
            json!({"enum": ["NONE", "APP", "IAM", "APIG", null]}),
        ),
        ("CreateApiRequest", "workspace_id", json!({"maxLength": 64})),
        (
            "AppsBody",
            "apps",
            json!({"minItems": 1, "maxItems": crate::auths::MAX_APPS_PER_REQUEST}),
        ),
        (
            "ThrottleBody",
            "name",
            json!({"pattern": infergate_core::throttle::NAME_PATTERN}),
        ),
        ("ThrottleBody", "api_call_limits", limit.clone()),
        ("ThrottleBody", "user_call_limits", limit.clone()),
        ("ThrottleBody", "app_call_limits", limit.clone()),
        ("ThrottleBody", "ip_call_limits", limit.clone()),
        ("ThrottleBody", "time_interval", limit.clone()),
        (
            "ThrottleBody",
            "time_unit",
            json!({"enum": ["SECOND", "MINUTE", "HOUR", "DAY", null]}),
        ),
        ("ThrottleBody", "type", json!({"enum": [1, 2, null]})),
        ("ThrottleBody", "remark", json!({"maxLength": 255})),
        ("SpecialBody", "call_limits", limit.clone()),
        (
            "SpecialBody",
            "object_type",
            json!({"enum": ["APP", "USER"]}),
        ),
        ("SpecialUpdate", "call_limits", limit),
        (
            "BindingBody",
            "publish_ids",
            json!({"minItems": 1, "maxItems": 100}),
        ),
        (
            "NewUser",
            "name",
            json!({"pattern": rules::USER_NAME_PATTERN}),
        ),
        ("NewUser", "password", password.clone()),
        ("NewUser", "description", json!({"maxLength": 255})),
        ("UserChange", "description", json!({"maxLength": 255})),
        (
            "NewProject",
            "name",
            json!({"pattern": rules::PROJECT_NAME_PATTERN}),
        ),
        ("NewProject", "description", json!({"maxLength": 255})),
        ("PasswordChange", "password", password),
        ("NewCredential", "description", json!({"maxLength": 255})),
        ("CredentialChange", "description", json!({"maxLength": 255})),
        (
            "CredentialChange",
            "status",
            json!({"enum": ["active", "inactive", null]}),
        ),
        ("AppRef", "app_id", json!({"minLength": 1, "maxLength": 64})),
        (
            "Identity",
            "methods",
            json!({"items": {"type": "string", "enum": ["password"]}, "minItems": 1, "maxItems": 1}),
        ),
    ]
}

fn merge(target: &mut Value, extra: &Value) {
    if let (Some(target), Some(extra)) = (target.as_object_mut(), extra.as_object()) {
        for (key, value) in extra {
            target.insert(key.clone(), value.clone());
        }
    }
}

/// The document of `doc` with every operation's common statuses (with their error bodies)
/// and the validation's rules added.
pub fn complete(doc: utoipa::openapi::OpenApi) -> Value {
    let mut doc = serde_json::to_value(doc).unwrap_or_default();
    let schemas = &mut doc["components"]["schemas"];
    if !schemas.is_object() {
        *schemas = Value::Object(Map::new());
    }
    schemas["ModelArtsError"] = modelarts_error();
    schemas["KeystoneError"] = keystone_error();
    for (schema, property, extra) in field_rules() {
        let target = schemas
            .get_mut(schema)
            .and_then(|s| s.get_mut("properties"))
            .and_then(|p| p.get_mut(property));
        if let Some(target) = target {
            merge(target, &extra);
        }
    }
    for (schema, fields) in REQUIRED {
        if let Some(required) = schemas.get_mut(*schema).map(|s| &mut s["required"]) {
            let mut list: Vec<Value> = required.as_array().cloned().unwrap_or_default();
            list.extend(fields.iter().map(|f| json!(f)));
            *required = Value::Array(list);
        }
    }
    // A credential change needs one of its fields.
    if let Some(change) = schemas.get_mut("CredentialChange") {
        change["anyOf"] = json!([
            {"required": ["status"], "properties": {"status": {"type": "string"}}},
            {"required": ["description"], "properties": {"description": {"type": "string"}}}
        ]);
    }
    let Some(paths) = doc["paths"].as_object_mut() else {
        return doc;
    };
    for (path, item) in paths.iter_mut() {
        let error = if path.starts_with("/v3") {
            "#/components/schemas/KeystoneError"
        } else if path.starts_with("/v1/") || path.starts_with("/v2/") {
            "#/components/schemas/ModelArtsError"
        } else {
            continue;
        };
        let Some(operations) = item.as_object_mut() else {
            continue;
        };
        for (method, op) in operations.iter_mut() {
            for status in common_statuses(method, path, op) {
                let responses = &mut op["responses"];
                if responses.get(status).is_none() {
                    responses[status] = json!({"description": meaning(status)});
                }
            }
            if let Some(responses) = op["responses"].as_object_mut() {
                for (status, response) in responses.iter_mut() {
                    if status.starts_with('4') || status.starts_with('5') {
                        if response.get("content").is_none() {
                            response["content"] =
                                json!({"application/json": {"schema": {"$ref": error}}});
                        }
                        if response["description"].as_str().is_none_or(str::is_empty) {
                            response["description"] = json!(meaning(status));
                        }
                    }
                }
            }
            let headers = required_headers(method, path);
            if !headers.is_empty() {
                let params = &mut op["parameters"];
                if !params.is_array() {
                    *params = json!([]);
                }
                if let Some(params) = params.as_array_mut() {
                    for name in headers {
                        if !params
                            .iter()
                            .any(|p| p["in"] == "header" && p["name"] == *name)
                        {
                            params.push(json!({"in": "header", "name": name, "required": true,
                                "schema": {"type": "string", "minLength": 1}}));
                        }
                    }
                }
            }
            if let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) {
                for param in params {
                    let name = param["name"].as_str().unwrap_or_default().to_owned();
                    if param["in"] == "path" {
                        if let Some(rule) = path_parameter(&name) {
                            param["schema"] = rule;
                        }
                    } else if param["in"] == "query" {
                        if let Some((rule, required)) = query_parameter(path, &name) {
                            param["schema"] = rule;
                            param["required"] = json!(required);
                        }
                    }
                }
            }
        }
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each declared pattern accepts exactly what its check accepts, over a corpus of
    /// edge cases and generated strings.
    #[test]
    fn declared_patterns_agree_with_the_validation() {
        type Check = fn(&str) -> bool;
        let pattern = |p: &str| json!({"type": "string", "pattern": p});
        let cases: [(Value, Check); 8] = [
            (pattern(rules::SERVICE_NAME_PATTERN), |s| {
                rules::service_name(s).is_ok()
            }),
            (pattern(rules::API_NAME_PATTERN), |s| {
                rules::api_name(s).is_ok()
            }),
            (pattern(rules::APP_NAME_PATTERN), |s| {
                rules::app_name(s).is_ok()
            }),
            (
                {
                    let mut schema = api_path_schema();
                    schema["type"] = json!("string");
                    schema
                },
                |s| rules::api_path("api_path", s).is_ok(),
            ),
            (pattern(rules::PROJECT_ID_PATTERN), |s| {
                rules::project_id(s).is_ok()
            }),
            (pattern(rules::USER_NAME_PATTERN), |s| {
                rules::user_name(s).is_ok()
            }),
            (pattern(rules::PROJECT_NAME_PATTERN), |s| {
                rules::project_name(s).is_ok()
            }),
            (pattern(infergate_core::throttle::NAME_PATTERN), |s| {
                infergate_core::throttle::name(s).is_ok()
            }),
        ];
        let alphabet: Vec<char> = "aZ09_-.@/%*é €\n".chars().collect();
        let mut corpus: Vec<String> = vec![String::new()];
        // Every string of up to 3 characters of the alphabet, and long runs around each
        // length bound.
        for len in 1..=3 {
            let mut next = Vec::new();
            for prefix in corpus.iter().filter(|s| s.chars().count() == len - 1) {
                for c in &alphabet {
                    next.push(format!("{prefix}{c}"));
                }
            }
            corpus.extend(next);
        }
        for len in [62, 63, 64, 65, 253, 254, 255, 256] {
            corpus.push(format!("a{}", "b".repeat(len - 1)));
            corpus.push(format!("/{}", "b".repeat(len - 1)));
            corpus.push(format!("a{}-", "1".repeat(len - 2)));
        }
        corpus.extend(["/v1/infers/x", "/a//b", "/a/", "ab_c", "1abc", "a@b.c"].map(String::from));
        for (schema, check) in cases {
            let validator = jsonschema::validator_for(&schema).expect("pattern compiles");
            for s in &corpus {
                assert_eq!(
                    validator.is_valid(&json!(s)),
                    check(s),
                    "{schema} vs the check on {s:?}"
                );
            }
        }
    }

    #[test]
    fn upstreams_the_pattern_allows_pass_the_validation() {
        let schema = json!({"type": "string", "pattern": UPSTREAM_PATTERN});
        let validator = jsonschema::validator_for(&schema).expect("pattern compiles");
        let hosts = [
            "a",
            "a-b.c",
            "1.2.3.4",
            "x9.internal",
            "Model-1.gpu.example",
        ];
        let tails = [
            "",
            ":8",
            ":9000",
            ":9999",
            "/",
            "/v1",
            "/v1/x.y_z~",
            ":80/a/b/",
        ];
        for scheme in ["http", "https", "HTTP", "Https"] {
            for host in hosts {
                for tail in tails {
                    let url = format!("{scheme}://{host}{tail}");
                    assert!(validator.is_valid(&json!(url)), "{url}");
                    assert!(rules::upstream(0, &url).is_ok(), "{url}");
                }
            }
        }
        for refused in [
            "http://",
            "ftp://a",
            "http://-a",
            "http://a:0",
            "http://u@a",
            "http://a?q",
        ] {
            assert!(!validator.is_valid(&json!(refused)), "{refused}");
        }
    }

    #[test]
    fn every_rule_names_a_field_of_the_document() {
        let doc = serde_json::to_value(crate::openapi()).expect("json");
        for (schema, property, _) in field_rules() {
            assert!(
                doc["components"]["schemas"][schema]["properties"][property].is_object(),
                "{schema}.{property}"
            );
        }
    }
}

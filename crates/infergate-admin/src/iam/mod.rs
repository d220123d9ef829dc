//! The embedded IAM subset (spec §6) in Keystone v3 shapes: password tokens, users,
//! projects, roles and their grants, and permanent AK/SK credentials.

use std::str::FromStr;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use infergate_core::model::{Domain, Project, RevokedToken, Role, User};
use infergate_core::token::{Scope, TokenClaims};
use infergate_core::{ids, validate};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{check_token, Authenticated};
use crate::error::IamError;
use crate::extract::IamJson;
use crate::guesses::PasswordCheck;
use crate::{now_ms, AdminState};

mod credentials;
mod projects;
mod roles;
mod tokens;
mod users;

use projects::*;
use roles::*;
use tokens::*;
use users::*;

fn keystone_time(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

fn require_domain_admin(caller: &Authenticated) -> Result<(), IamError> {
    if caller.user.domain_admin {
        Ok(())
    } else {
        Err(IamError::not_authorized())
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct NameQuery {
    pub name: Option<String>,
}

fn list_links(path: &str) -> Value {
    json!({"self": path, "next": null, "previous": null})
}

fn caller_domain(caller: &Authenticated, requested: Option<&str>) -> Result<String, IamError> {
    match requested {
        Some(domain) if domain != caller.user.domain_id => Err(IamError::not_authorized()),
        _ => Ok(caller.user.domain_id.clone()),
    }
}

/// Routes that need no caller.
pub fn public_router() -> OpenApiRouter<Arc<AdminState>> {
    OpenApiRouter::new().routes(routes!(tokens_create))
}

/// Routes behind the IAM authentication middleware.
pub fn router() -> OpenApiRouter<Arc<AdminState>> {
    OpenApiRouter::new()
        .routes(routes!(tokens_validate, tokens_revoke))
        .routes(routes!(projects_create, projects_list))
        .routes(routes!(projects_show))
        .routes(routes!(users_create, users_list))
        .routes(routes!(users_show, users_update, users_delete))
        .routes(routes!(users_password))
        .routes(routes!(roles_list))
        .routes(routes!(grants_put, grants_delete))
        .routes(routes!(grants_list))
        .merge(credentials::router())
}

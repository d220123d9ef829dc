//! Who is calling: an IAM token (`X-Auth-Token`) or an SDK-HMAC-SHA256 signature made with
//! an IAM AK/SK (spec §2.0, §5.6). Middleware resolves the caller once per request; the
//! [`ProjectCaller`] extractor then applies the project rules of `/v1/{project_id}/…`.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, RawPathParams, Request, State};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use infergate_core::access::{self, Action};
use infergate_core::model::{Role, User};
use infergate_core::token::{Scope, TokenClaims, TokenError};
use infergate_core::validate;
use infergate_sign::{PreparedVerification, ReceivedRequest, Verdict};
use infergate_store::StoreError;

use crate::error::{ApiError, IamError};
use crate::{now_ms, AdminState};

/// Largest body a signed management call may carry (it is hashed before handling).
const MAX_SIGNED_BODY: usize = 2 * 1024 * 1024;

/// How the caller proved who they are.
#[derive(Debug, Clone)]
pub enum Via {
    Token(TokenClaims),
    AkSk { access: String },
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub user: User,
    pub scope: Scope,
    pub via: Via,
}

/// Why authentication failed, before it is put in a surface's words.
#[derive(Debug)]
pub enum AuthFailure {
    Missing,
    Expired { expires_at: i64 },
    Invalid(String),
    AkSk(String),
    Store(StoreError),
}

impl From<AuthFailure> for ApiError {
    fn from(f: AuthFailure) -> Self {
        match f {
            AuthFailure::Missing => ApiError::MissingToken,
            AuthFailure::Expired { expires_at } => ApiError::TokenExpired { expires_at },
            AuthFailure::Invalid(why) => ApiError::TokenInvalid(why),
            AuthFailure::AkSk(why) => ApiError::AkSkInvalid(why),
            AuthFailure::Store(err) => ApiError::from_store(err),
        }
    }
}

impl From<AuthFailure> for IamError {
    fn from(f: AuthFailure) -> Self {
        match f {
            AuthFailure::Missing => IamError::Unauthorized(
                "The request you have made requires authentication: X-Auth-Token not found".into(),
            ),
            AuthFailure::Expired { expires_at } => {
                IamError::Unauthorized(format!("The token expired at {expires_at}"))
            }
            AuthFailure::Invalid(why) => {
                IamError::Unauthorized(format!("The token is invalid: {why}"))
            }
            AuthFailure::AkSk(why) => IamError::Unauthorized(format!("AK/SK check failed: {why}")),
            AuthFailure::Store(err) => err.into(),
        }
    }
}

/// Checks a token and that its user still exists, is enabled and has not changed password
/// since the token was issued.
pub async fn check_token(
    state: &AdminState,
    token: &str,
) -> Result<(User, TokenClaims), AuthFailure> {
    let claims = state
        .tokens
        .check(token, now_ms())
        .map_err(|err| match err {
            TokenError::Expired { expires_at } => AuthFailure::Expired { expires_at },
            TokenError::Invalid => {
                AuthFailure::Invalid("it could not be decoded or verified".into())
            }
        })?;
    let user = state
        .store
        .user(&claims.user_id)
        .await
        .map_err(AuthFailure::Store)?
        .ok_or_else(|| AuthFailure::Invalid("its user no longer exists".into()))?;
    if !user.enabled {
        return Err(AuthFailure::Invalid("its user is disabled".into()));
    }
    if user.password_changed_at > claims.issued_at {
        return Err(AuthFailure::Invalid(
            "its user changed password after it was issued".into(),
        ));
    }
    if state
        .store
        .token_revoked(&claims.nonce)
        .await
        .map_err(AuthFailure::Store)?
    {
        return Err(AuthFailure::Invalid("it was revoked".into()));
    }
    Ok((user, claims))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn verify_aksk(
    state: &AdminState,
    authorization: &str,
    parts: &Parts,
    body: &[u8],
) -> Result<Authenticated, AuthFailure> {
    // A management body is always signed: its hash, never `UNSIGNED-PAYLOAD`.
    let unsigned = header(&parts.headers, infergate_sign::HEADER_CONTENT_SHA256)
        .is_some_and(|v| v.trim() == infergate_sign::UNSIGNED_PAYLOAD);
    if unsigned && !body.is_empty() {
        return Err(AuthFailure::AkSk(
            "a management request's body must be signed: X-Sdk-Content-Sha256 may not be UNSIGNED-PAYLOAD".into(),
        ));
    }
    let body_hash = infergate_sign::sha256_hex(body);
    let prepared = PreparedVerification::prepare(
        authorization,
        ReceivedRequest {
            method: parts.method.as_str(),
            raw_path: parts.uri.path(),
            raw_query: parts.uri.query().unwrap_or(""),
            headers: &parts.headers,
            body_sha256: Some(&body_hash),
            body_is_empty: body.is_empty(),
        },
    )
    .map_err(|e| AuthFailure::AkSk(e.to_string()))?;
    let now = chrono::Utc::now();
    if !infergate_sign::date_within_skew(prepared.signed_at, now) {
        return Err(AuthFailure::AkSk(format!(
            "signature expired, signature time:{},server time:{}",
            prepared.sdk_date,
            infergate_sign::format_sdk_date(now)
        )));
    }
    let access = prepared.access.to_owned();
    let credential = state
        .store
        .credential(&access)
        .await
        .map_err(AuthFailure::Store)?
        .filter(|c| c.status == "active")
        .ok_or_else(|| AuthFailure::AkSk(format!("ak {access} does not exist")))?;
    let secret = state
        .master
        .decrypt(&credential.secret_sealed)
        .map_err(|e| {
            tracing::error!(error = %e, "stored SK cannot be decrypted");
            AuthFailure::Store(StoreError::Internal("undecryptable credential".into()))
        })?;
    // Consecutive failures lock the key on every node (spec §5.6).
    let now_ms = now.timestamp_millis();
    let store = state.store.as_ref();
    let failures = state
        .guesses
        .key_failures(store, &access)
        .await
        .map_err(AuthFailure::Store)?;
    if state.guesses.access_key.enabled() && failures.locked(now_ms) {
        return Err(AuthFailure::AkSk(
            "AK access failed to reach the limit,forbidden".into(),
        ));
    }
    let verdict = prepared.verify(secret.expose().as_bytes());
    let locked = state
        .guesses
        .key_verdict(store, &access, failures, verdict == Verdict::Valid, now_ms)
        .await
        .map_err(AuthFailure::Store)?;
    if locked {
        // This node's gateway serves the lock before the refusal is answered.
        if let Some(publisher) = &state.publisher {
            if let Err(err) = publisher.refresh().await {
                tracing::warn!(error = %err, "publishing an access-key lock failed");
            }
        }
    }
    if let Verdict::Mismatch { canonical_request } = verdict {
        return Err(AuthFailure::AkSk(format!(
            "verify aksk signature fail, canonicalRequest:{}",
            canonical_request.replace('\n', "|")
        )));
    }
    let user = state
        .store
        .user(&credential.user_id)
        .await
        .map_err(AuthFailure::Store)?
        .filter(|u| u.enabled)
        .ok_or_else(|| AuthFailure::AkSk("the key's user no longer exists".into()))?;
    let scope = match header(&parts.headers, "x-project-id") {
        Some(project) => Scope::Project(project.to_owned()),
        None => Scope::Unscoped,
    };
    Ok(Authenticated {
        user,
        scope,
        via: Via::AkSk { access },
    })
}

/// Resolves the caller of `req`, buffering the body only for signed requests.
async fn authenticate(state: &AdminState, req: Request) -> Result<Request, AuthFailure> {
    let authorization = header(req.headers(), "authorization")
        .filter(|v| v.trim_start().starts_with(infergate_sign::ALGORITHM))
        .map(str::to_owned);
    if let Some(authorization) = authorization {
        let (parts, body) = req.into_parts();
        let limited = http_body_util::Limited::new(body, MAX_SIGNED_BODY);
        let bytes: Bytes = limited
            .collect()
            .await
            .map_err(|_| AuthFailure::AkSk("signed request body is too large or broken".into()))?
            .to_bytes();
        let caller = verify_aksk(state, &authorization, &parts, &bytes).await?;
        let mut req = Request::from_parts(parts, Body::from(bytes));
        req.extensions_mut().insert(caller);
        return Ok(req);
    }
    let Some(token) = header(req.headers(), "x-auth-token").map(str::to_owned) else {
        return Err(AuthFailure::Missing);
    };
    let (user, claims) = check_token(state, &token).await?;
    let mut req = req;
    req.extensions_mut().insert(Authenticated {
        user,
        scope: claims.scope.clone(),
        via: Via::Token(claims),
    });
    Ok(req)
}

/// Runs the handler and marks the response with the acting user, for the access log.
async fn run_as(req: Request, next: Next) -> Response {
    let user = req
        .extensions()
        .get::<Authenticated>()
        .map(|a| crate::ActingUser(a.user.id.clone()));
    let mut response = next.run(req).await;
    if let Some(user) = user {
        response.extensions_mut().insert(user);
    }
    response
}

/// Middleware of the ModelArts surface.
pub async fn require_modelarts_caller(
    State(state): State<Arc<AdminState>>,
    req: Request,
    next: Next,
) -> Response {
    match authenticate(&state, req).await {
        Ok(req) => run_as(req, next).await,
        Err(failure) => ApiError::from(failure).into_response(),
    }
}

/// Middleware of the IAM surface.
pub async fn require_iam_caller(
    State(state): State<Arc<AdminState>>,
    req: Request,
    next: Next,
) -> Response {
    match authenticate(&state, req).await {
        Ok(req) => run_as(req, next).await,
        Err(failure) => IamError::from(failure).into_response(),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Authenticated {
    type Rejection = IamError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, IamError> {
        parts
            .extensions
            .get::<Authenticated>()
            .cloned()
            .ok_or_else(|| {
                tracing::error!("IAM route reached without the authentication middleware");
                IamError::Internal
            })
    }
}

/// The caller of a `/v1/{project_id}/…` operation, with their strongest role there.
#[derive(Debug, Clone)]
pub struct ProjectCaller {
    pub user_id: String,
    pub project_id: String,
    pub role: Role,
}

impl ProjectCaller {
    /// Refuses with 403 `ModelArts.0108` unless the caller may perform `action`.
    pub fn require(&self, action: Action<'_>, what: &str) -> Result<(), ApiError> {
        if access::allowed(Some(self.role), &self.user_id, action) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(what.to_owned()))
        }
    }
}

impl FromRequestParts<Arc<AdminState>> for ProjectCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AdminState>,
    ) -> Result<Self, ApiError> {
        let caller = parts
            .extensions
            .get::<Authenticated>()
            .cloned()
            .ok_or_else(|| {
                tracing::error!("project route reached without the authentication middleware");
                ApiError::Internal
            })?;
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::BadRequest(e.body_text()))?;
        let project_id = params
            .iter()
            .find(|(name, _)| *name == "project_id")
            .map(|(_, value)| value.to_owned())
            .ok_or(ApiError::Internal)?;
        validate::project_id(&project_id)?;
        match (&caller.scope, &caller.via) {
            (Scope::Project(scoped), _) if *scoped != project_id => {
                return Err(ApiError::ProjectMismatch)
            }
            (Scope::Project(_), _) | (Scope::Unscoped, Via::AkSk { .. }) => {}
            (_, Via::Token(_)) | (Scope::Domain(_), Via::AkSk { .. }) => {
                return Err(ApiError::NotProjectScoped)
            }
        }
        let roles = state.store.roles(&project_id, &caller.user.id).await?;
        let role = access::strongest(roles)
            .ok_or_else(|| ApiError::Forbidden(format!("access project {project_id}")))?;
        Ok(ProjectCaller {
            user_id: caller.user.id,
            project_id,
            role,
        })
    }
}

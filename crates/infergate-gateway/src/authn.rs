//! Call-time authentication (spec §5): which credential a request presents, which of the
//! APIs on the matched path it selects, and whether it is valid. Pure: the snapshot and
//! `now` come in as arguments.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use infergate_core::model::AuthType;
use infergate_core::snapshot::{ApiRoute, AppCredential, IamKey, Snapshot};
use infergate_core::token::{Scope, TokenError};
use infergate_sign::{
    AuthorizationParts, HeaderSource, PreparedVerification, SignError, SigningKey, Verdict,
};

use crate::error::{AuthFailure, AuthReason, GatewayError};

pub const HEADER_APP_CODE: &str = "x-apig-appcode";
pub const HEADER_API_KEY: &str = "apikey";
pub const HEADER_AUTH_TOKEN: &str = "x-auth-token";

/// The credential a request presents, in the spec's order of precedence, read from its
/// headers.
#[derive(Debug, Clone)]
pub enum Presented<'h> {
    /// `Authorization: SDK-HMAC-SHA256 …` whose `Access` is this app's AppKey.
    AppSignature(AuthorizationParts<'h>, &'h AppCredential),
    /// The same, with this IAM access key.
    IamSignature(AuthorizationParts<'h>, &'h IamKey),
    /// A signature whose `Access` is neither, or that cannot be read.
    UnknownSignature(Result<AuthorizationParts<'h>, SignError>),
    AppCode(&'h str),
    ApiKey(&'h str),
    Token(&'h str),
    Nothing,
}

impl<'h> Presented<'h> {
    pub fn classify<H: HeaderSource + ?Sized>(headers: &'h H, snapshot: &'h Snapshot) -> Self {
        let text = |name: &str| headers.text(name);
        if let Some(auth) =
            text("authorization").filter(|v| v.starts_with(infergate_sign::ALGORITHM))
        {
            // Read once here; verified whole later.
            let parts = match AuthorizationParts::parse(auth) {
                Ok(parts) => parts,
                unread => return Presented::UnknownSignature(unread),
            };
            if let Some(app) = snapshot.app_by_key(parts.access) {
                return Presented::AppSignature(parts, app);
            }
            if let Some(key) = snapshot.iam_key(parts.access) {
                return Presented::IamSignature(parts, key);
            }
            return Presented::UnknownSignature(Ok(parts));
        }
        if let Some(code) = text(HEADER_APP_CODE) {
            return Presented::AppCode(code);
        }
        if let Some(key) = text(HEADER_API_KEY) {
            return Presented::ApiKey(key);
        }
        if let Some(token) = text(HEADER_AUTH_TOKEN) {
            return Presented::Token(token);
        }
        Presented::Nothing
    }

    /// Whether verifying this credential needs the body hash.
    pub fn is_signature(&self) -> bool {
        self.signature().is_some()
    }

    /// The signature's `Authorization` items (or why they cannot be read).
    fn signature(&self) -> Option<Result<AuthorizationParts<'h>, SignError>> {
        match self {
            Presented::AppSignature(parts, _) | Presented::IamSignature(parts, _) => {
                Some(Ok(*parts))
            }
            Presented::UnknownSignature(read) => Some(read.clone()),
            _ => None,
        }
    }
}

/// Picks the API among those on the matched path (already filtered by method): the
/// presented credential chooses APP, IAM or NONE; an open (NONE) API serves any caller;
/// otherwise the authentication error of the API that is there.
pub fn select(
    apis: &[&Arc<ApiRoute>],
    presented: &Presented,
) -> Result<Arc<ApiRoute>, GatewayError> {
    let find = |t: AuthType| {
        apis.iter()
            .find(|a| a.auth_type == t)
            .map(|a| Arc::clone(a))
    };
    let wanted = match presented {
        Presented::AppSignature(..) | Presented::AppCode(_) | Presented::ApiKey(_) => {
            Some(AuthType::App)
        }
        Presented::IamSignature(..) | Presented::Token(_) => Some(AuthType::Iam),
        Presented::UnknownSignature(_) => Some(if find(AuthType::App).is_some() {
            AuthType::App
        } else {
            AuthType::Iam
        }),
        Presented::Nothing => None,
    };
    if let Some(api) = wanted.and_then(find) {
        return Ok(api);
    }
    if let Some(api) = find(AuthType::None) {
        return Ok(api);
    }
    if find(AuthType::App).is_some() {
        return Err(GatewayError::AppAuth(AuthFailure::new(
            AuthReason::MissingCredential,
            "Authorization not found",
        )));
    }
    Err(GatewayError::IamAuth(AuthFailure::new(
        AuthReason::MissingCredential,
        "x-auth-token not found",
    )))
}

/// Who is calling, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Anonymous,
    App { app_id: Arc<str> },
    User { user_id: Arc<str> },
}

/// The parts of a request the verification reads: the signer crate's own view of a
/// received request.
pub use infergate_sign::ReceivedRequest as CallRequest;

fn check_skew(prepared: &PreparedVerification, now: DateTime<Utc>) -> Result<(), AuthFailure> {
    if infergate_sign::date_within_skew(prepared.signed_at, now) {
        return Ok(());
    }
    Err(AuthFailure::new(
        AuthReason::ExpiredDate,
        format!(
            "signature expired, signature time:{},server time:{}",
            prepared.sdk_date,
            infergate_sign::format_sdk_date(now)
        ),
    ))
}

fn mismatch_message(prefix: &str, canonical_request: &str) -> String {
    format!(
        "{prefix}, canonicalRequest:{}",
        canonical_request.replace('\n', "|")
    )
}

/// Verifies the SDK-HMAC-SHA256 signature presented: the header, the date window, the key
/// named by `Access` (found by `lookup`, which also gives its secret), then the signature
/// itself.
fn verify_signature<'s, K, H: HeaderSource + ?Sized>(
    request: &CallRequest<'_, H>,
    presented: &Presented<'_>,
    now: DateTime<Utc>,
    refuse: fn(AuthFailure) -> GatewayError,
    mismatch: &str,
    lookup: impl FnOnce(&str) -> Result<(&'s K, &'s SigningKey), AuthFailure>,
) -> Result<&'s K, GatewayError> {
    // Only signatures come here; anything else reads as a header of another scheme.
    let authorization = presented
        .signature()
        .unwrap_or(Err(SignError::WrongAlgorithm));
    let prepared = authorization
        .and_then(|parts| PreparedVerification::prepare_parts(parts, *request))
        .map_err(|e| {
            let reason = match e {
                SignError::BodyHashMismatch => AuthReason::BadSignature,
                _ => AuthReason::MalformedSignature,
            };
            refuse(AuthFailure::new(reason, e.to_string()))
        })?;
    check_skew(&prepared, now).map_err(refuse)?;
    let (key, signing_key) = lookup(prepared.access).map_err(refuse)?;
    if let Verdict::Mismatch { canonical_request } = prepared.verify_with(signing_key) {
        return Err(refuse(AuthFailure::new(
            AuthReason::BadSignature,
            mismatch_message(mismatch, &canonical_request),
        )));
    }
    Ok(key)
}

/// Authenticates the caller of `api`.
pub fn authenticate<H: HeaderSource + ?Sized>(
    snapshot: &Snapshot,
    api: &ApiRoute,
    presented: &Presented,
    request: &CallRequest<'_, H>,
    now: DateTime<Utc>,
) -> Result<Caller, GatewayError> {
    match api.auth_type {
        AuthType::None => Ok(Caller::Anonymous),
        AuthType::App => authenticate_app(snapshot, api, presented, request, now),
        AuthType::Iam => authenticate_iam(snapshot, api, presented, request, now),
    }
}

fn authenticate_app<H: HeaderSource + ?Sized>(
    snapshot: &Snapshot,
    api: &ApiRoute,
    presented: &Presented,
    request: &CallRequest<'_, H>,
    now: DateTime<Utc>,
) -> Result<Caller, GatewayError> {
    let app = match presented {
        Presented::AppSignature(..) | Presented::UnknownSignature(_) => verify_signature(
            request,
            presented,
            now,
            GatewayError::AppAuth,
            "verify signature fail",
            // The app was found when the credential was read, from the same snapshot.
            |access| match presented {
                Presented::AppSignature(_, app) => Ok((*app, &app.signing_key)),
                _ => Err(AuthFailure::new(
                    AuthReason::UnknownKey,
                    format!("app not found, appkey {access}"),
                )),
            },
        )?,
        &Presented::AppCode(code) => {
            simple_credential(api, "AppCode", "appCode", snapshot.app_by_code(code))?
        }
        &Presented::ApiKey(key) => {
            simple_credential(api, "apikey", "apikey", snapshot.app_by_key(key))?
        }
        _ => {
            return Err(GatewayError::AppAuth(AuthFailure::new(
                AuthReason::MissingCredential,
                "Authorization not found",
            )))
        }
    };
    Ok(Caller::App {
        app_id: app.app_id.clone(),
    })
}

/// An AppCode or `apikey` credential: allowed only where the API enables AppCodes.
fn simple_credential<'s>(
    api: &ApiRoute,
    kind: &str,
    named: &str,
    found: Option<&'s Arc<AppCredential>>,
) -> Result<&'s Arc<AppCredential>, GatewayError> {
    if !api.support_app_code {
        return Err(GatewayError::AppAuth(AuthFailure::new(
            AuthReason::AppCodeNotAllowed,
            format!("{kind} authentication is not enabled for this API"),
        )));
    }
    found.ok_or_else(|| {
        GatewayError::AppAuth(AuthFailure::new(
            AuthReason::UnknownAppCode,
            format!("app not found with specified {named}"),
        ))
    })
}

fn authenticate_iam<H: HeaderSource + ?Sized>(
    snapshot: &Snapshot,
    api: &ApiRoute,
    presented: &Presented,
    request: &CallRequest<'_, H>,
    now: DateTime<Utc>,
) -> Result<Caller, GatewayError> {
    let project: &str = &api.service.project_id;
    let user_id = match presented {
        Presented::Token(token) => {
            let codec = snapshot
                .tokens()
                .ok_or_else(|| bad_token("decrypt token fail"))?;
            let claims = codec
                .check(token, now.timestamp_millis())
                .map_err(|e| match e {
                    TokenError::Expired { expires_at } => {
                        bad_token(&format!("token expires, expires_at: {expires_at}"))
                    }
                    TokenError::Invalid => bad_token("decrypt token fail"),
                })?;
            let Scope::Project(scoped) = &claims.scope else {
                return Err(bad_token("token is not scoped to a project"));
            };
            if scoped != project {
                return Err(bad_token("token is scoped to another project"));
            }
            snapshot
                .user(&claims.user_id)
                .filter(|u| u.accepts_token(claims.issued_at, &claims.nonce))
                .ok_or_else(|| bad_token("token is no longer valid"))?;
            claims.user_id.into()
        }
        Presented::IamSignature(..) | Presented::UnknownSignature(_) => {
            let key = verify_signature(
                request,
                presented,
                now,
                GatewayError::IamAuth,
                "verify aksk signature fail",
                // As for apps: the key was found when the credential was read.
                |access| match presented {
                    // A locked key is refused before its signature is looked at.
                    Presented::IamSignature(_, key)
                        if key.locked_until > now.timestamp_millis() =>
                    {
                        Err(AuthFailure::new(
                            AuthReason::LockedKey,
                            "AK access failed to reach the limit,forbidden",
                        ))
                    }
                    Presented::IamSignature(_, key) => Ok((*key, &key.signing_key)),
                    _ => Err(AuthFailure::new(
                        AuthReason::UnknownKey,
                        format!("Get secretKey failed,ak:{access},err:ak not exist"),
                    )),
                },
            )?;
            snapshot
                .user(&key.user_id)
                .filter(|u| u.enabled)
                .ok_or_else(|| {
                    GatewayError::IamAuth(AuthFailure::new(
                        AuthReason::UnknownKey,
                        "the key's user no longer exists",
                    ))
                })?;
            key.user_id.clone()
        }
        _ => {
            return Err(GatewayError::IamAuth(AuthFailure::new(
                AuthReason::MissingCredential,
                "x-auth-token not found",
            )))
        }
    };
    let member = snapshot
        .user(&user_id)
        .is_some_and(|u| u.projects.contains(project));
    if !member {
        return Err(GatewayError::IamAuth(AuthFailure::new(
            AuthReason::NoRole,
            "the user has no role in the service's project",
        )));
    }
    Ok(Caller::User { user_id })
}

fn bad_token(why: &str) -> GatewayError {
    GatewayError::IamAuth(AuthFailure::new(AuthReason::BadToken, why))
}

#[cfg(test)]
pub(crate) mod tests;

//! Who may call an admin endpoint, as extractors: a handler's signature says it.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use flowlytix_aggregates::Role;

use super::error::ApiError;
use crate::app::SharedApp;
use crate::auth::{AdminSession, AuthError};

/// Any signed-in admin user, `admin` or `auditor`: for reads.
pub struct RequireReader(pub AdminSession);

/// A signed-in user with the `admin` role: for writes. Auditors get 403.
pub struct RequireAdmin(pub AdminSession);

/// The session an access token opens; also how `idempotency` names an admin caller.
pub(super) async fn session(parts: &Parts, app: &SharedApp) -> Result<AdminSession, ApiError> {
    let bearer = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        // The scheme name is case-insensitive (RFC 9110).
        .and_then(|v| {
            v.split_once(' ')
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        })
        .map(|(_, token)| token)
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::unauthorized(
                "UNAUTHENTICATED",
                "send an access token: Authorization: Bearer <token>",
            )
        })?;
    app.admin_auth
        .authenticate(bearer)
        .await
        .map_err(|error| match error {
            AuthError::Database(_) | AuthError::Store(_) => {
                ApiError::unavailable(crate::telemetry::error_chain(&error))
            }
            AuthError::Verification(_) | AuthError::Signing(_) => {
                ApiError::internal(crate::telemetry::error_chain(&error))
            }
            _ => ApiError::unauthorized(
                "INVALID_ACCESS_TOKEN",
                "the access token is invalid, expired or revoked",
            ),
        })
}

impl FromRequestParts<SharedApp> for RequireReader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &SharedApp) -> Result<Self, ApiError> {
        session(parts, app).await.map(Self)
    }
}

impl FromRequestParts<SharedApp> for RequireAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &SharedApp) -> Result<Self, ApiError> {
        let session = session(parts, app).await?;
        if session.role != Role::Admin {
            return Err(ApiError::forbidden(
                "this action needs the admin role; auditors may only read",
            ));
        }
        Ok(Self(session))
    }
}

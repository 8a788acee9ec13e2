//! `/api/v1/auth`: login, refresh, logout.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::access::RequireReader;
use super::error::{ApiError, Problem};
use super::extract::ApiJson;
use super::limits;
use crate::app::SharedApp;
use crate::auth::{AuthError, RefreshError, TokenPair};

pub fn router() -> OpenApiRouter<SharedApp> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

impl From<TokenPair> for TokenResponse {
    fn from(pair: TokenPair) -> Self {
        Self {
            access_token: pair.access_token,
            refresh_token: pair.refresh_token,
            token_type: "Bearer",
            expires_in: pair.expires_in,
        }
    }
}

fn auth_error(error: AuthError) -> ApiError {
    match error {
        AuthError::InvalidCredentials => {
            ApiError::unauthorized("INVALID_CREDENTIALS", "invalid email or password")
        }
        // Answered by `login` itself, with Retry-After; refresh never throttles.
        AuthError::Throttled { .. } => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED",
            "too many sign-in attempts for this account",
        ),
        AuthError::InvalidAccessToken => {
            ApiError::unauthorized("INVALID_ACCESS_TOKEN", error.to_string())
        }
        AuthError::Refresh(RefreshError::Invalid) => {
            ApiError::unauthorized("INVALID_REFRESH_TOKEN", error.to_string())
        }
        AuthError::Refresh(RefreshError::Reused) => {
            ApiError::unauthorized("REFRESH_TOKEN_REUSED", error.to_string())
        }
        AuthError::Database(_) | AuthError::Store(_) => {
            ApiError::unavailable(crate::telemetry::error_chain(&error))
        }
        AuthError::Verification(_) | AuthError::Signing(_) => {
            ApiError::internal(crate::telemetry::error_chain(&error))
        }
    }
}

/// Sign in with email and password.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = TokenResponse), (status = 401, body = Problem, description = "INVALID_CREDENTIALS")))]
async fn login(
    State(app): State<SharedApp>,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<Json<TokenResponse>, Response> {
    if body.password.len() > 1024 || body.email.len() > 254 {
        return Err(auth_error(AuthError::InvalidCredentials).into_response());
    }
    let pair = app
        .admin_auth
        .login(&app.admins, &body.email, &body.password)
        .await
        .map_err(|error| match error {
            AuthError::Throttled { wait } => limits::too_many_requests(
                "sign_in_account",
                wait,
                "too many sign-in attempts for this account",
            ),
            other => auth_error(other).into_response(),
        })?;
    Ok(Json(pair.into()))
}

/// Exchange a refresh token for a new token pair. Each refresh token works once; reusing
/// one revokes its whole session.
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = TokenResponse), (status = 401, body = Problem, description = "INVALID_REFRESH_TOKEN or REFRESH_TOKEN_REUSED")))]
async fn refresh(
    State(app): State<SharedApp>,
    ApiJson(body): ApiJson<RefreshRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let pair = app
        .admin_auth
        .refresh(&app.admins, &body.refresh_token)
        .await
        .map_err(auth_error)?;
    Ok(Json(pair.into()))
}

/// End the caller's session: its access and refresh tokens stop working.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = Problem)))]
async fn logout(
    State(app): State<SharedApp>,
    RequireReader(session): RequireReader,
) -> Result<StatusCode, ApiError> {
    app.admin_auth
        .sessions()
        .revoke(session.session_id, "logout")
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

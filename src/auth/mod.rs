//! Admin authentication: argon2id passwords, short-lived EdDSA access tokens and rotating
//! refresh tokens grouped in sessions (families).

pub mod accounts;
pub mod browser_sessions;
mod sessions;
mod throttle;

use std::time::Duration;

use chrono::Utc;
use flowlytix_aggregates::admin::AdminState;
use flowlytix_aggregates::{AdminId, AdminUser, Email, Role};
use flowlytix_projections::Db;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use sessions::{RefreshError, Sessions};
pub use throttle::SignInThrottle;

use crate::crypto;
use crate::keys::JwtKeys;
use crate::licensing::token::{verify_jwt, TokenError};
use crate::store::{ExecuteError, Executor};

pub const ADMIN_AUDIENCE: &str = "flowlytix-admin";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    /// The admin id.
    pub sub: Uuid,
    /// The session (refresh-token family) the token belongs to; revoking it ends the token.
    pub sid: Uuid,
    pub role: Role,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub jti: Uuid,
}

/// The authenticated caller of an admin endpoint.
#[derive(Debug, Clone)]
pub struct AdminSession {
    pub admin_id: AdminId,
    pub session_id: Uuid,
    pub role: Role,
}

#[derive(Debug)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("invalid email or password")]
    InvalidCredentials,
    /// Too many sign-in attempts on this account (from anywhere): wait this long.
    #[error("too many sign-in attempts for this account")]
    Throttled { wait: Duration },
    #[error("the access token is missing, invalid or expired")]
    InvalidAccessToken,
    #[error(transparent)]
    Refresh(#[from] RefreshError),
    #[error("the session store failed")]
    Database(#[from] sqlx::Error),
    #[error("the admin store failed")]
    Store(#[source] ExecuteError<flowlytix_aggregates::AdminError>),
    #[error("password verification did not finish")]
    Verification(#[from] tokio::task::JoinError),
    #[error("cannot sign the access token")]
    Signing(#[from] serde_json::Error),
}

impl From<ExecuteError<flowlytix_aggregates::AdminError>> for AuthError {
    fn from(error: ExecuteError<flowlytix_aggregates::AdminError>) -> Self {
        Self::Store(error)
    }
}

pub struct AdminAuth {
    keys: JwtKeys,
    issuer: String,
    access_ttl: Duration,
    sessions: Sessions,
    /// Verified against when the email is unknown, so that both failures cost the same.
    decoy_hash: String,
    throttle: SignInThrottle,
}

impl AdminAuth {
    pub fn new(
        keys: JwtKeys,
        issuer: String,
        access_ttl: Duration,
        refresh_ttl: Duration,
        db: Db,
        throttle: SignInThrottle,
    ) -> Self {
        #[allow(clippy::expect_used)]
        let decoy_hash = crypto::hash_password(&crypto::random_token())
            .expect("argon2 hashes a random password");
        Self {
            keys,
            issuer,
            access_ttl,
            sessions: Sessions::new(db, refresh_ttl),
            decoy_hash,
            throttle,
        }
    }

    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// Unknown email, disabled admin and wrong password give the same error after the same
    /// argon2 work. Every front end signs in here, so the per-account throttle holds for
    /// all of them.
    pub async fn login(
        &self,
        admins: &Executor<AdminUser>,
        email: &str,
        password: &str,
    ) -> Result<TokenPair, AuthError> {
        self.throttle
            .attempt(email)
            .map_err(|wait| AuthError::Throttled { wait })?;
        let admin = match Email::parse(email) {
            Ok(email) => {
                admins
                    .load(&AdminId::for_email(&email).to_string())
                    .await?
                    .0
            }
            Err(_) => AdminUser::default(),
        };
        let candidate = admin.state().filter(|a| !a.disabled).cloned();
        let hash = candidate
            .as_ref()
            .map_or(self.decoy_hash.clone(), |a| a.password_hash.clone());
        let password = password.to_owned();
        let matches =
            tokio::task::spawn_blocking(move || crypto::verify_password(&password, &hash)).await?;
        match candidate {
            Some(admin) if matches => {
                let (session_id, refresh_token) = self.sessions.start(admin.id).await?;
                self.token_pair(&admin, session_id, refresh_token)
            }
            _ => Err(AuthError::InvalidCredentials),
        }
    }

    /// Rotates the refresh token. The admin is reloaded so that a role change or a disabled
    /// account takes effect at the next refresh at the latest.
    pub async fn refresh(
        &self,
        admins: &Executor<AdminUser>,
        refresh_token: &str,
    ) -> Result<TokenPair, AuthError> {
        let rotated = self.sessions.rotate(refresh_token).await?;
        let (admin, _) = admins.load(&rotated.admin_id.to_string()).await?;
        match admin.state().filter(|a| !a.disabled) {
            Some(admin) => self.token_pair(admin, rotated.session_id, rotated.refresh_token),
            None => {
                self.sessions
                    .revoke(rotated.session_id, "admin_disabled")
                    .await?;
                Err(AuthError::InvalidCredentials)
            }
        }
    }

    /// Checks an access token and that its session is still open.
    pub async fn authenticate(&self, bearer: &str) -> Result<AdminSession, AuthError> {
        let claims: AccessClaims = verify_jwt(bearer, &self.keys, ADMIN_AUDIENCE, &self.issuer)
            .map_err(|_: TokenError| AuthError::InvalidAccessToken)?;
        if !self.sessions.is_open(claims.sid).await? {
            return Err(AuthError::InvalidAccessToken);
        }
        Ok(AdminSession {
            admin_id: AdminId(claims.sub),
            session_id: claims.sid,
            role: claims.role,
        })
    }

    fn token_pair(
        &self,
        admin: &AdminState,
        session_id: Uuid,
        refresh_token: String,
    ) -> Result<TokenPair, AuthError> {
        let now = Utc::now().timestamp();
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            aud: ADMIN_AUDIENCE.into(),
            sub: admin.id.as_uuid(),
            sid: session_id,
            role: admin.role,
            iat: now,
            nbf: now,
            exp: now + self.access_ttl.as_secs() as i64,
            jti: Uuid::new_v4(),
        };
        let access_token = self.keys.sign(&claims)?;
        Ok(TokenPair {
            access_token,
            refresh_token,
            expires_in: self.access_ttl.as_secs(),
        })
    }
}

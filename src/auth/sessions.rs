use std::time::Duration;

use chrono::Utc;
use flowlytix_aggregates::AdminId;
use flowlytix_projections::{with_conn, with_db, Db};
use uuid::Uuid;

use crate::crypto::{random_token, sha256_hex};

#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("the refresh token is unknown or expired")]
    Invalid,
    #[error("the refresh token was already used; its session has been revoked")]
    Reused,
}

pub struct Rotated {
    pub admin_id: AdminId,
    pub session_id: Uuid,
    pub refresh_token: String,
}

/// Refresh-token families in `admin_sessions` / `admin_refresh_tokens`. Only SHA-256 hashes
/// of the tokens are stored.
pub struct Sessions {
    db: Db,
    ttl: Duration,
}

impl Sessions {
    pub fn new(db: Db, ttl: Duration) -> Self {
        Self { db, ttl }
    }

    /// Opens a session and returns its id and first refresh token.
    pub async fn start(&self, admin_id: AdminId) -> Result<(Uuid, String), sqlx::Error> {
        let session_id = Uuid::new_v4();
        let token = random_token();
        let now = Utc::now();
        let expires_at =
            now + chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::days(7));
        let mut tx = self.db.begin().await?;
        with_conn!(tx.conn(), c => {
            sqlx::query("insert into admin_sessions (id, admin_id, created_at, expires_at) values ($1, $2, $3, $4)")
                .bind(session_id)
                .bind(admin_id.as_uuid())
                .bind(now)
                .bind(expires_at)
                .execute(&mut *c)
                .await?;
            sqlx::query("insert into admin_refresh_tokens (token_hash, session_id, issued_at) values ($1, $2, $3)")
                .bind(sha256_hex(&token).as_str())
                .bind(session_id)
                .bind(now)
                .execute(&mut *c)
                .await?;
        });
        tx.commit().await?;
        Ok((session_id, token))
    }

    /// Exchanges a refresh token for a new one in the same session. A token presented a
    /// second time means it leaked: the whole session is revoked.
    pub async fn rotate(&self, token: &str) -> Result<Rotated, super::AuthError> {
        let hash = sha256_hex(token);
        let now = Utc::now();
        let refresh_token = random_token();
        let mut tx = self.db.begin().await?;
        // Marking the token used and checking its session happen in one statement, so two
        // concurrent refreshes with one token cannot both succeed.
        let outcome: Result<(Uuid, Uuid), Option<Uuid>> = with_conn!(tx.conn(), c => {
            let claimed: Option<Uuid> = sqlx::query_scalar(
                "update admin_refresh_tokens as t set used_at = $2
                 from admin_sessions as s
                 where t.token_hash = $1 and t.used_at is null and s.id = t.session_id
                   and s.revoked_at is null and s.expires_at > $2
                 returning session_id",
            )
            .bind(hash.as_str())
            .bind(now)
            .fetch_optional(&mut *c)
            .await?;
            match claimed {
                Some(session_id) => {
                    let admin_id: Uuid = sqlx::query_scalar("select admin_id from admin_sessions where id = $1")
                        .bind(session_id)
                        .fetch_one(&mut *c)
                        .await?;
                    sqlx::query("insert into admin_refresh_tokens (token_hash, session_id, issued_at) values ($1, $2, $3)")
                        .bind(sha256_hex(&refresh_token).as_str())
                        .bind(session_id)
                        .bind(now)
                        .execute(&mut *c)
                        .await?;
                    Ok((session_id, admin_id))
                }
                None => Err(sqlx::query_scalar(
                    "select session_id from admin_refresh_tokens where token_hash = $1 and used_at is not null",
                )
                .bind(hash.as_str())
                .fetch_optional(&mut *c)
                .await?),
            }
        });
        tx.commit().await?;
        match outcome {
            Ok((session_id, admin_id)) => Ok(Rotated {
                admin_id: AdminId(admin_id),
                session_id,
                refresh_token,
            }),
            Err(Some(session_id)) => {
                self.revoke(session_id, "refresh_token_reused").await?;
                tracing::warn!(%session_id, "refresh token reuse: session revoked");
                Err(RefreshError::Reused.into())
            }
            Err(None) => Err(RefreshError::Invalid.into()),
        }
    }

    pub async fn revoke(&self, session_id: Uuid, reason: &str) -> Result<(), sqlx::Error> {
        with_db!(&self.db, pool => {
            sqlx::query(
                "update admin_sessions set revoked_at = $3, revoked_reason = $2
                 where id = $1 and revoked_at is null",
            )
            .bind(session_id)
            .bind(reason)
            .bind(Utc::now())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Ends every session of an admin (after a password or role change, or disabling).
    pub async fn revoke_all(&self, admin_id: AdminId, reason: &str) -> Result<(), sqlx::Error> {
        with_db!(&self.db, pool => {
            sqlx::query(
                "update admin_sessions set revoked_at = $3, revoked_reason = $2
                 where admin_id = $1 and revoked_at is null",
            )
            .bind(admin_id.as_uuid())
            .bind(reason)
            .bind(Utc::now())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    pub async fn is_open(&self, session_id: Uuid) -> Result<bool, sqlx::Error> {
        let open: Option<bool> = with_db!(&self.db, pool => {
            sqlx::query_scalar(
                "select revoked_at is null and expires_at > $2 from admin_sessions where id = $1",
            )
            .bind(session_id)
            .bind(Utc::now())
            .fetch_optional(pool)
            .await?
        });
        Ok(open.unwrap_or(false))
    }
}

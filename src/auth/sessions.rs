use std::time::Duration;

use flowlytix_aggregates::AdminId;
use sqlx::PgPool;
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
    pool: PgPool,
    ttl: Duration,
}

impl Sessions {
    pub fn new(pool: PgPool, ttl: Duration) -> Self {
        Self { pool, ttl }
    }

    /// Opens a session and returns its id and first refresh token.
    pub async fn start(&self, admin_id: AdminId) -> Result<(Uuid, String), sqlx::Error> {
        let session_id = Uuid::new_v4();
        let token = random_token();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "insert into admin_sessions (id, admin_id, expires_at)
             values ($1, $2, now() + make_interval(secs => $3))",
        )
        .bind(session_id)
        .bind(admin_id.as_uuid())
        .bind(self.ttl.as_secs() as f64)
        .execute(&mut *tx)
        .await?;
        insert_token(&mut tx, session_id, &token).await?;
        tx.commit().await?;
        Ok((session_id, token))
    }

    /// Exchanges a refresh token for a new one in the same session. A token presented a
    /// second time means it leaked: the whole session is revoked.
    pub async fn rotate(&self, token: &str) -> Result<Rotated, super::AuthError> {
        let hash = sha256_hex(token);
        let mut tx = self.pool.begin().await?;
        // Marking the token used and reading its session happen in one statement, so two
        // concurrent refreshes with one token cannot both succeed.
        let claimed: Option<(Uuid, Uuid)> = sqlx::query_as(
            "update admin_refresh_tokens t set used_at = now()
             from admin_sessions s
             where t.token_hash = $1 and t.used_at is null and s.id = t.session_id
               and s.revoked_at is null and s.expires_at > now()
             returning s.id, s.admin_id",
        )
        .bind(hash.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some((session_id, admin_id)) = claimed else {
            let reused: Option<Uuid> = sqlx::query_scalar(
                "select session_id from admin_refresh_tokens where token_hash = $1 and used_at is not null",
            )
            .bind(hash.as_str())
            .fetch_optional(&mut *tx)
            .await?;
            tx.rollback().await?;
            return match reused {
                Some(session_id) => {
                    self.revoke(session_id, "refresh_token_reused").await?;
                    tracing::warn!(%session_id, "refresh token reuse: session revoked");
                    Err(RefreshError::Reused.into())
                }
                None => Err(RefreshError::Invalid.into()),
            };
        };
        let refresh_token = random_token();
        insert_token(&mut tx, session_id, &refresh_token).await?;
        tx.commit().await?;
        Ok(Rotated {
            admin_id: AdminId(admin_id),
            session_id,
            refresh_token,
        })
    }

    pub async fn revoke(&self, session_id: Uuid, reason: &str) -> Result<(), sqlx::Error> {
        sqlx::query(
            "update admin_sessions set revoked_at = now(), revoked_reason = $2
             where id = $1 and revoked_at is null",
        )
        .bind(session_id)
        .bind(reason)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Ends every session of an admin (after a password or role change, or disabling).
    pub async fn revoke_all(&self, admin_id: AdminId, reason: &str) -> Result<(), sqlx::Error> {
        sqlx::query(
            "update admin_sessions set revoked_at = now(), revoked_reason = $2
             where admin_id = $1 and revoked_at is null",
        )
        .bind(admin_id.as_uuid())
        .bind(reason)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn is_open(&self, session_id: Uuid) -> Result<bool, sqlx::Error> {
        let open: Option<bool> = sqlx::query_scalar(
            "select revoked_at is null and expires_at > now() from admin_sessions where id = $1",
        )
        .bind(session_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(open.unwrap_or(false))
    }
}

async fn insert_token(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    session_id: Uuid,
    token: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("insert into admin_refresh_tokens (token_hash, session_id) values ($1, $2)")
        .bind(sha256_hex(token).as_str())
        .bind(session_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

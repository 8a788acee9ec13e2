//! Sessions of the admin panel in a browser, kept in `panel_sessions`. A browser session
//! rides on an admin session (`admin_sessions`, opened by the same sign-in as the JSON
//! API's): that row's expiry is the absolute lifetime (REFRESH_TOKEN_EXPIRE_DAYS), its
//! revocation ends the browser session, and `last_seen_at` gives the idle lifetime
//! (ACCESS_TOKEN_EXPIRE_MINUTES). The cookie holds a random session id; only its SHA-256
//! hash is stored, and the form token is derived from it, so neither can be read back
//! from the database.

use std::time::Duration;

use chrono::{DateTime, Utc};
use flowlytix_aggregates::{AdminId, Role};
use flowlytix_projections::{with_db, Db};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::AdminSession;
use crate::crypto::{random_token, sha256_hex};

/// How often `last_seen_at` is written at most: every request would be a write.
const TOUCH_EVERY: chrono::Duration = chrono::Duration::seconds(30);

/// A signed-in browser: who, and the secret that proves it.
#[derive(Debug, Clone)]
pub struct BrowserSession {
    pub admin: AdminSession,
    /// The cookie's value: never stored, never logged.
    token: String,
}

impl BrowserSession {
    pub fn cookie_value(&self) -> &str {
        &self.token
    }

    /// The per-session token every panel form carries (a hash of the session id under a
    /// label of its own, so it is neither the id nor the stored hash).
    pub fn form_token(&self) -> String {
        form_token_for(&self.token)
    }

    /// Constant-time: the comparison does not tell how much of a guess was right.
    pub fn accepts_form_token(&self, candidate: &str) -> bool {
        let expected = self.form_token();
        expected.as_bytes().ct_eq(candidate.as_bytes()).into()
    }
}

fn form_token_for(session_token: &str) -> String {
    sha256_hex(format!("flowlytix panel form token v1:{session_token}"))
        .as_str()
        .to_owned()
}

pub struct BrowserSessions {
    db: Db,
    idle: Duration,
}

impl BrowserSessions {
    pub fn new(db: Db, idle: Duration) -> Self {
        Self { db, idle }
    }

    /// Starts a browser session on a freshly opened admin session: a new id every sign-in.
    pub async fn start(&self, admin: AdminSession) -> Result<BrowserSession, sqlx::Error> {
        let token = random_token();
        let now = Utc::now();
        with_db!(&self.db, pool => {
            sqlx::query(
                "insert into panel_sessions (token_hash, admin_session_id, role, created_at, last_seen_at)
                 values ($1, $2, $3, $4, $4)",
            )
            .bind(sha256_hex(&token).as_str())
            .bind(admin.session_id)
            .bind(admin.role.as_str())
            .bind(now)
            .execute(pool)
            .await?;
        });
        Ok(BrowserSession { admin, token })
    }

    /// The open session the cookie names, or none (unknown, idle too long, past its
    /// absolute lifetime, or its admin session revoked).
    pub async fn find(&self, token: &str) -> Result<Option<BrowserSession>, sqlx::Error> {
        let now = Utc::now();
        let idle = chrono::Duration::from_std(self.idle).unwrap_or(chrono::Duration::minutes(30));
        let hash = sha256_hex(token);
        let row: Option<(Uuid, Uuid, String, DateTime<Utc>)> = with_db!(&self.db, pool => {
            sqlx::query_as(
                "select p.admin_session_id, s.admin_id, p.role, p.last_seen_at
                 from panel_sessions as p join admin_sessions as s on s.id = p.admin_session_id
                 where p.token_hash = $1 and s.revoked_at is null and s.expires_at > $2
                   and p.last_seen_at > $3",
            )
            .bind(hash.as_str())
            .bind(now)
            .bind(now - idle)
            .fetch_optional(pool)
            .await?
        });
        let Some((session_id, admin_id, role, last_seen_at)) = row else {
            return Ok(None);
        };
        let Ok(role) = Role::parse(&role) else {
            return Ok(None);
        };
        if now - last_seen_at > TOUCH_EVERY {
            with_db!(&self.db, pool => {
                sqlx::query("update panel_sessions set last_seen_at = $2 where token_hash = $1")
                    .bind(hash.as_str())
                    .bind(now)
                    .execute(pool)
                    .await?;
            });
        }
        Ok(Some(BrowserSession {
            admin: AdminSession {
                admin_id: AdminId(admin_id),
                session_id,
                role,
            },
            token: token.to_owned(),
        }))
    }

    /// Forgets the browser session (its admin session is revoked by the caller).
    pub async fn end(&self, session: &BrowserSession) -> Result<(), sqlx::Error> {
        with_db!(&self.db, pool => {
            sqlx::query("delete from panel_sessions where token_hash = $1")
                .bind(sha256_hex(&session.token).as_str())
                .execute(pool)
                .await?;
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(token: &str) -> BrowserSession {
        BrowserSession {
            admin: AdminSession {
                admin_id: AdminId(Uuid::nil()),
                session_id: Uuid::nil(),
                role: Role::Admin,
            },
            token: token.to_owned(),
        }
    }

    #[test]
    fn the_form_token_is_accepted_only_for_its_own_session() {
        let mine = session("one");
        let other = session("two");
        assert!(mine.accepts_form_token(&mine.form_token()));
        assert!(!mine.accepts_form_token(&other.form_token()));
        assert!(!mine.accepts_form_token(""));
    }

    #[test]
    fn the_form_token_is_neither_the_session_id_nor_its_stored_hash() {
        let mine = session("secret-session-id");
        assert_ne!(mine.form_token(), "secret-session-id");
        assert_ne!(mine.form_token(), sha256_hex("secret-session-id").as_str());
    }
}

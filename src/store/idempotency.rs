//! The `idempotency_keys` table: claiming a key for one request, remembering its answer,
//! releasing it, purging what expired. What the rows mean is `crate::idempotency`'s
//! business; times are milliseconds since the Unix epoch, from the caller's clock.

use flowlytix_eventstore::{with_db, Db};

/// What a claim found.
#[derive(Debug, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// The key is this attempt's: run the request, then `complete` or `release`. The key
    /// was first claimed at `first_claimed_ms` (kept when a retry takes over a crashed
    /// attempt's claim, so that both derive the same ids from it).
    Claimed { first_claimed_ms: i64 },
    /// Another attempt holds the key and its lease has not run out.
    InFlight { request_hash: String },
    /// The key was answered: its sealed first response.
    Answered {
        request_hash: String,
        status: u16,
        nonce: Vec<u8>,
        sealed: Vec<u8>,
    },
}

/// One claim attempt, as the table should record it.
pub struct Claim<'a> {
    pub key_hash: &'a str,
    pub request_hash: &'a str,
    pub claim_id: &'a str,
    pub now_ms: i64,
    pub lease_until_ms: i64,
    pub expires_at_ms: i64,
}

type Row = (
    String,
    Option<String>,
    Option<i32>,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
);

/// Takes the key for this attempt when it is new, expired, released, or held by an attempt
/// whose lease ran out on the same request (a crash; a different request never takes it
/// over: the crashed one may have committed). Otherwise says who has it. Taking over a
/// released or crashed claim keeps the key's first claim time and expiry.
pub async fn claim(db: &Db, claim: &Claim<'_>) -> Result<ClaimOutcome, sqlx::Error> {
    // A row can vanish between the insert and the read (released or purged meanwhile):
    // then the next round claims it.
    for _ in 0..3 {
        let taken: Option<i64> = with_db!(db, pool => {
            sqlx::query_scalar(
                "insert into idempotency_keys
                     (key_hash, request_hash, claim_id, lease_until, created_at, expires_at)
                 values ($1, $2, $3, $4, $5, $6)
                 on conflict (key_hash) do update set
                     request_hash = excluded.request_hash,
                     claim_id = excluded.claim_id,
                     lease_until = excluded.lease_until,
                     response_status = null,
                     response_nonce = null,
                     response_sealed = null,
                     created_at = case when idempotency_keys.expires_at <= excluded.created_at
                         then excluded.created_at else idempotency_keys.created_at end,
                     expires_at = case when idempotency_keys.expires_at <= excluded.created_at
                         then excluded.expires_at else idempotency_keys.expires_at end
                 where idempotency_keys.expires_at <= excluded.created_at
                    or (idempotency_keys.response_status is null
                        and idempotency_keys.claim_id is null)
                    or (idempotency_keys.response_status is null
                        and idempotency_keys.lease_until <= excluded.created_at
                        and idempotency_keys.request_hash = excluded.request_hash)
                 returning created_at",
            )
            .bind(claim.key_hash)
            .bind(claim.request_hash)
            .bind(claim.claim_id)
            .bind(claim.lease_until_ms)
            .bind(claim.now_ms)
            .bind(claim.expires_at_ms)
            .fetch_optional(pool)
            .await?
        });
        if let Some(first_claimed_ms) = taken {
            return Ok(ClaimOutcome::Claimed { first_claimed_ms });
        }
        let row: Option<Row> = with_db!(db, pool => {
            sqlx::query_as(
                "select request_hash, claim_id, response_status, response_nonce, response_sealed
                 from idempotency_keys where key_hash = $1",
            )
            .bind(claim.key_hash)
            .fetch_optional(pool)
            .await?
        });
        match row {
            // Gone, or released meanwhile: the next round claims it.
            None | Some((_, None, None, ..)) => continue,
            Some((request_hash, _, Some(status), Some(nonce), Some(sealed))) => {
                return Ok(ClaimOutcome::Answered {
                    request_hash,
                    status: u16::try_from(status).unwrap_or(500),
                    nonce,
                    sealed,
                })
            }
            Some((request_hash, ..)) => return Ok(ClaimOutcome::InFlight { request_hash }),
        }
    }
    // Three rounds of the row vanishing under us: as good as busy.
    Ok(ClaimOutcome::InFlight {
        request_hash: claim.request_hash.to_owned(),
    })
}

/// Records the answer of the attempt that holds the key. False when it no longer holds it
/// (its lease ran out and a retry took over): the retry's answer counts.
pub async fn complete(
    db: &Db,
    key_hash: &str,
    claim_id: &str,
    status: u16,
    nonce: &[u8],
    sealed: &[u8],
) -> Result<bool, sqlx::Error> {
    let done = with_db!(db, pool => {
        sqlx::query(
            "update idempotency_keys
             set response_status = $3, response_nonce = $4, response_sealed = $5,
                 claim_id = null, lease_until = null
             where key_hash = $1 and claim_id = $2",
        )
        .bind(key_hash)
        .bind(claim_id)
        .bind(i32::from(status))
        .bind(nonce)
        .bind(sealed)
        .execute(pool)
        .await?
        .rows_affected()
    });
    Ok(done == 1)
}

/// Lets go of a key whose request wrote nothing, so that a retry runs. The row stays (free,
/// with its first claim time) until it expires, so that the retry derives the same ids.
pub async fn release(db: &Db, key_hash: &str, claim_id: &str) -> Result<(), sqlx::Error> {
    with_db!(db, pool => {
        sqlx::query(
            "update idempotency_keys set claim_id = null, lease_until = null
             where key_hash = $1 and claim_id = $2",
        )
        .bind(key_hash)
        .bind(claim_id)
        .execute(pool)
        .await?
        .rows_affected()
    });
    Ok(())
}

/// Deletes every key past its expiry; returns how many.
pub async fn purge_expired(db: &Db, now_ms: i64) -> Result<u64, sqlx::Error> {
    Ok(with_db!(db, pool => {
        sqlx::query("delete from idempotency_keys where expires_at <= $1")
            .bind(now_ms)
            .execute(pool)
            .await?
            .rows_affected()
    }))
}

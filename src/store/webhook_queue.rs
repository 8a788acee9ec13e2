//! The webhook delivery queue (`webhook_deliveries`, filled by the `webhooks` projector):
//! claiming what is due, recording each attempt, and what the API changes in it.
//!
//! A delivery is claimed with a lease (`claimed_until_ms`) in one statement, and only when
//! it is the oldest pending delivery of its aggregate for its endpoint, so every endpoint
//! receives each subscription's events in order, whichever instance sends them. On
//! PostgreSQL concurrent claims skip each other's rows (`for update skip locked`) and
//! re-check the lease of what they update.

use chrono::{DateTime, Utc};
use flowlytix_eventstore::{with_db, Db};
use uuid::Uuid;

/// A delivery this instance holds the lease of.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    pub id: Uuid,
    pub endpoint_id: Uuid,
    pub body: String,
    /// Attempts made before this one.
    pub attempts: i32,
    pub schedule_start: i32,
}

/// What became of one attempt.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub status_code: Option<u16>,
    pub latency_ms: i64,
    pub error: Option<String>,
    pub at: DateTime<Utc>,
}

/// What the queue does with a delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Delivered,
    RetryAt {
        ms: i64,
    },
    /// The retry schedule ran out.
    GiveUp,
}

/// Endpoints (enabled, not deleted, as the read model has them) with a delivery due.
pub async fn endpoints_with_due_deliveries(db: &Db, now_ms: i64) -> Result<Vec<Uuid>, sqlx::Error> {
    with_db!(db, pool => {
        sqlx::query_scalar(
            "select distinct d.endpoint_id from webhook_deliveries d
             join rm_webhook_endpoints w on w.id = d.endpoint_id
             where d.status = 'pending' and d.next_attempt_ms <= $1 and d.claimed_until_ms <= $1
               and w.enabled and not w.deleted",
        )
        .bind(now_ms)
        .fetch_all(pool)
        .await
    })
}

/// Leases up to `limit` due deliveries of one endpoint until `lease_until_ms`, each the
/// oldest pending one of its aggregate.
pub async fn claim(
    db: &Db,
    endpoint_id: Uuid,
    limit: i64,
    now_ms: i64,
    lease_until_ms: i64,
) -> Result<Vec<Claimed>, sqlx::Error> {
    let lock = db.dialect().pick("for update skip locked", "");
    let sql = format!(
        "update webhook_deliveries set claimed_until_ms = $4, redeliver_requested = false
         where status = 'pending' and claimed_until_ms <= $3 and id in (
             select d.id from webhook_deliveries d
             where d.endpoint_id = $1 and d.status = 'pending' and d.next_attempt_ms <= $3
               and d.claimed_until_ms <= $3
               and not exists (
                   select 1 from webhook_deliveries e
                   where e.endpoint_id = d.endpoint_id and e.aggregate_type = d.aggregate_type
                     and e.aggregate_id = d.aggregate_id and e.status = 'pending'
                     and e.sequence < d.sequence)
             order by d.position limit $2 {lock})
         returning id, endpoint_id, body, attempts, schedule_start"
    );
    with_db!(db, pool => {
        sqlx::query_as(&sql)
            .bind(endpoint_id)
            .bind(limit)
            .bind(now_ms)
            .bind(lease_until_ms)
            .fetch_all(pool)
            .await
    })
}

/// Gives a lease back without an attempt (the endpoint turned out to be disabled).
pub async fn release(db: &Db, delivery_id: Uuid) -> Result<(), sqlx::Error> {
    with_db!(db, pool => {
        sqlx::query("update webhook_deliveries set claimed_until_ms = 0 where id = $1")
            .bind(delivery_id)
            .execute(pool)
            .await?;
    });
    Ok(())
}

/// Cancels what is still pending for deleted endpoints. The projector cancels an endpoint's
/// queue with its deletion; this catches a delivery that another instance's projector
/// queued from a batch it read before the deletion committed (batches run in parallel on
/// NATS), which would otherwise stay pending for ever.
pub async fn cancel_for_deleted_endpoints(db: &Db) -> Result<u64, sqlx::Error> {
    with_db!(db, pool => {
        let canceled = sqlx::query(
            "update webhook_deliveries set status = 'canceled'
             where status = 'pending'
               and endpoint_id in (select id from rm_webhook_endpoints where deleted)",
        )
        .execute(pool)
        .await?;
        Ok(canceled.rows_affected())
    })
}

/// Drops a delivery whose endpoint was deleted.
pub async fn cancel(db: &Db, delivery_id: Uuid) -> Result<(), sqlx::Error> {
    with_db!(db, pool => {
        sqlx::query(
            "update webhook_deliveries set status = 'canceled', claimed_until_ms = 0 where id = $1",
        )
        .bind(delivery_id)
        .execute(pool)
        .await?;
    });
    Ok(())
}

/// Logs an attempt and moves the delivery on, in one transaction; keeps the endpoint's
/// failing streak. Returns since when the endpoint has been failing (`None` after a
/// success).
///
/// Two things may have happened to the delivery while the attempt was in flight, and both
/// win over its outcome: its endpoint was deleted (the projector canceled it: it stays
/// canceled), or an admin asked for a redeliver (it is due again now, on a fresh schedule).
pub async fn record(
    db: &Db,
    claimed: &Claimed,
    attempt: &Attempt,
    next: Next,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    let (status, next_ms) = match next {
        Next::Delivered => ("delivered", 0),
        Next::RetryAt { ms } => ("pending", ms),
        Next::GiveUp => ("failed", 0),
    };
    let delivered_at = (next == Next::Delivered).then_some(attempt.at);
    let health = if next == Next::Delivered {
        "insert into webhook_endpoint_health (endpoint_id, failing_since, last_success)
         values ($1, null, $2)
         on conflict (endpoint_id) do update set failing_since = null, last_success = excluded.last_success
         returning failing_since"
    } else {
        "insert into webhook_endpoint_health (endpoint_id, failing_since, last_success)
         values ($1, $2, null)
         on conflict (endpoint_id) do update set
             failing_since = coalesce(webhook_endpoint_health.failing_since, excluded.failing_since)
         returning failing_since"
    };
    with_db!(db, pool => {
        let mut tx = pool.begin().await?;
        sqlx::query(
            "insert into webhook_attempts (delivery_id, endpoint_id, attempt, status_code,
                 latency_ms, error, at)
             values ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(claimed.id)
        .bind(claimed.endpoint_id)
        .bind(claimed.attempts + 1)
        .bind(attempt.status_code.map(i32::from))
        .bind(attempt.latency_ms)
        .bind(&attempt.error)
        .bind(attempt.at)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "update webhook_deliveries set
                 status = case when status = 'canceled' then status
                               when redeliver_requested then 'pending' else $2 end,
                 attempts = attempts + 1,
                 schedule_start = case when redeliver_requested then attempts + 1
                                       else schedule_start end,
                 next_attempt_ms = case when redeliver_requested then $6
                                        when $3 > 0 then $3 else next_attempt_ms end,
                 claimed_until_ms = 0, redeliver_requested = false, last_error = $4,
                 delivered_at = coalesce($5, delivered_at)
             where id = $1",
        )
        .bind(claimed.id)
        .bind(status)
        .bind(next_ms)
        .bind(&attempt.error)
        .bind(delivered_at)
        .bind(Utc::now().timestamp_millis())
        .execute(&mut *tx)
        .await?;
        let failing_since: Option<DateTime<Utc>> = sqlx::query_scalar(health)
            .bind(claimed.endpoint_id)
            .bind(attempt.at)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(failing_since)
    })
}

/// Queues a delivery of this endpoint again, now, with a fresh retry schedule. False when
/// the endpoint has no such delivery. When an attempt of it is in flight (its lease has not
/// run out), the request is remembered for `record` to honour when that attempt ends.
pub async fn redeliver(
    db: &Db,
    endpoint_id: Uuid,
    delivery_id: Uuid,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
    with_db!(db, pool => {
        let updated = sqlx::query(
            "update webhook_deliveries set status = 'pending', next_attempt_ms = $3,
                 schedule_start = attempts, redeliver_requested = claimed_until_ms > $3
             where id = $1 and endpoint_id = $2 and status <> 'canceled'",
        )
        .bind(delivery_id)
        .bind(endpoint_id)
        .bind(now_ms)
        .execute(pool)
        .await?;
        Ok(updated.rows_affected() == 1)
    })
}

/// Forgets an endpoint's failing streak (it was enabled again by an admin).
pub async fn reset_failing(db: &Db, endpoint_id: Uuid) -> Result<(), sqlx::Error> {
    with_db!(db, pool => {
        sqlx::query("update webhook_endpoint_health set failing_since = null where endpoint_id = $1")
            .bind(endpoint_id)
            .execute(pool)
            .await?;
    });
    Ok(())
}

//! Webhook endpoints as listed (from `rm_webhook_endpoints`) and the delivery log.

use chrono::{DateTime, Utc};
use flowlytix_projections::{with_db, Db};
use serde::Deserialize;
use sqlx::FromRow;
use utoipa::IntoParams;
use uuid::Uuid;

use super::Paging;

/// A row of `rm_webhook_endpoints`.
#[derive(Debug, Clone, FromRow)]
pub struct EndpointRow {
    pub id: Uuid,
    pub url: String,
    /// JSON array, or null for every type.
    pub event_types: Option<String>,
    pub description: Option<String>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

/// Endpoints that are not deleted, oldest first, and how many there are.
pub async fn list_endpoints(
    db: &Db,
    paging: &Paging,
) -> Result<(Vec<EndpointRow>, i64), sqlx::Error> {
    with_db!(db, pool => {
        let total: i64 = sqlx::query_scalar("select count(*) from rm_webhook_endpoints where not deleted")
            .fetch_one(pool)
            .await?;
        let rows = sqlx::query_as(
            "select id, url, event_types, description, enabled, disabled_reason, created_at,
                 updated_at, version
             from rm_webhook_endpoints where not deleted
             order by created_at, id limit $1 offset $2",
        )
        .bind(i64::from(paging.per_page()))
        .bind(paging.offset())
        .fetch_all(pool)
        .await?;
        Ok((rows, total))
    })
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AttemptQuery {
    /// The `next_after` of the previous page; omit to start at the first attempt.
    pub after: Option<i64>,
    /// 1 to 500; default 100.
    pub limit: Option<i64>,
}

/// One attempt of the delivery log, with the cursor it sits at.
#[derive(Debug, Clone, FromRow)]
pub struct AttemptRow {
    pub cursor: i64,
    pub delivery_id: Uuid,
    pub event_id: String,
    pub event_type: String,
    pub attempt: i32,
    pub status_code: Option<i32>,
    pub latency_ms: i64,
    pub error: Option<String>,
    pub at: DateTime<Utc>,
}

/// An endpoint's delivery attempts, oldest first, after the cursor.
pub async fn attempts(
    db: &Db,
    endpoint_id: Uuid,
    query: &AttemptQuery,
) -> Result<Vec<AttemptRow>, sqlx::Error> {
    let limit = query.limit.unwrap_or(100).clamp(1, 500);
    with_db!(db, pool => {
        sqlx::query_as(
            "select a.id as cursor, a.delivery_id, d.event_id, d.event_type, a.attempt,
                 a.status_code, a.latency_ms, a.error, a.at
             from webhook_attempts a join webhook_deliveries d on d.id = a.delivery_id
             where a.endpoint_id = $1 and a.id > $2
             order by a.id limit $3",
        )
        .bind(endpoint_id)
        .bind(query.after.unwrap_or(0))
        .bind(limit)
        .fetch_all(pool)
        .await
    })
}

/// Where the delivery queue stands, for `/health` and the metrics.
#[derive(Debug, Clone, Copy, Default, FromRow)]
pub struct QueueStats {
    /// Deliveries waiting for an attempt (due or not; of disabled endpoints too).
    pub pending: i64,
    /// Pending deliveries of enabled endpoints whose time has come: what the dispatchers
    /// should be sending right now. A number that stays high means they cannot keep up.
    pub due: i64,
    /// Live endpoints whose deliveries have failed since their last success.
    pub failing_endpoints: i64,
    /// Endpoints the server disabled because their deliveries kept failing.
    pub auto_disabled_endpoints: i64,
}

pub async fn queue_stats(db: &Db, now_ms: i64) -> Result<QueueStats, sqlx::Error> {
    with_db!(db, pool => {
        sqlx::query_as(
            "select
                 (select count(*) from webhook_deliveries where status = 'pending') as pending,
                 (select count(*) from webhook_deliveries d
                  join rm_webhook_endpoints w on w.id = d.endpoint_id
                  where d.status = 'pending' and d.next_attempt_ms <= $1
                    and w.enabled and not w.deleted) as due,
                 (select count(*) from webhook_endpoint_health h
                  join rm_webhook_endpoints w on w.id = h.endpoint_id
                  where h.failing_since is not null and not w.deleted) as failing_endpoints,
                 (select count(*) from rm_webhook_endpoints
                  where not enabled and not deleted and disabled_reason = 'failing')
                     as auto_disabled_endpoints",
        )
        .bind(now_ms)
        .fetch_one(pool)
        .await
    })
}

//! `device_leases` (migration 0018): each leased device's deadline. Two writers share it,
//! and the rule that keeps them apart is the lease's `taken_at`:
//! - the `subscriptions` projector copies what the events say (a lease taken at an instant,
//!   a lease ended), and a taking only replaces an older lease, an ending only ends a lease
//!   taken before it, so a late or replayed event changes nothing newer;
//! - heartbeats renew a live lease in place ([`renew`]), never one whose deadline has passed:
//!   only a command (through the aggregate) brings a dead lease back, so a heartbeat and the
//!   culler never both win.

use chrono::{DateTime, Utc};
use flowlytix_eventstore::{with_conn, Conn};
use sqlx::FromRow;
use uuid::Uuid;

/// What the events say about a lease, in log order.
#[derive(Debug, Clone, PartialEq)]
pub enum LeaseChange {
    Taken {
        device_id: Uuid,
        subscription_id: Uuid,
        taken_at: DateTime<Utc>,
        expires_at: Option<DateTime<Utc>>,
    },
    /// Expired or released (the device deactivated) at `at`.
    Ended { device_id: Uuid, at: DateTime<Utc> },
    /// The subscription was deleted.
    SubscriptionGone { subscription_id: Uuid },
}

/// A row of `device_leases`.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct LeaseRow {
    pub device_id: Uuid,
    pub subscription_id: Uuid,
    pub taken_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    pub borrowed_until: Option<DateTime<Utc>>,
    pub live: bool,
}

const LEASE_COLUMNS: &str =
    "device_id, subscription_id, taken_at, expires_at, last_heartbeat_at, borrowed_until, live";

/// Writes the changes, in order.
pub async fn save_changes(mut db: Conn<'_>, changes: &[LeaseChange]) -> Result<(), sqlx::Error> {
    for change in changes {
        match change {
            LeaseChange::Taken {
                device_id,
                subscription_id,
                taken_at,
                expires_at,
            } => {
                take(
                    db.reborrow(),
                    *device_id,
                    *subscription_id,
                    *taken_at,
                    *expires_at,
                )
                .await?
            }
            LeaseChange::Ended { device_id, at } => {
                with_conn!(db.reborrow(), c => {
                    sqlx::query(
                        "update device_leases set live = false \
                         where device_id = $1 and taken_at <= $2 and live",
                    )
                    .bind(device_id)
                    .bind(at)
                    .execute(&mut *c)
                    .await?;
                });
            }
            LeaseChange::SubscriptionGone { subscription_id } => {
                with_conn!(db.reborrow(), c => {
                    sqlx::query("update device_leases set live = false where subscription_id = $1")
                        .bind(subscription_id)
                        .execute(&mut *c)
                        .await?;
                });
            }
        }
    }
    Ok(())
}

/// Records a lease taken at `taken_at`, unless the row already holds that lease or a newer one.
pub async fn take(
    db: Conn<'_>,
    device_id: Uuid,
    subscription_id: Uuid,
    taken_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
) -> Result<(), sqlx::Error> {
    with_conn!(db, c => {
        sqlx::query(
            "insert into device_leases (device_id, subscription_id, taken_at, expires_at, live) \
             values ($1, $2, $3, $4, true) \
             on conflict (device_id) do update set taken_at = excluded.taken_at, \
                 expires_at = excluded.expires_at, last_heartbeat_at = null, \
                 borrowed_until = null, live = true \
             where device_leases.taken_at < excluded.taken_at",
        )
        .bind(device_id)
        .bind(subscription_id)
        .bind(taken_at)
        .bind(expires_at)
        .execute(&mut *c)
        .await?;
    });
    Ok(())
}

/// A heartbeat at `now`: moves a live lease whose deadline has not passed to `deadline`
/// (with `borrowed_until`, a borrow to that instant). A plain heartbeat never shortens a
/// borrow. `None` when there is no such lease: it is dead, or not here yet.
pub async fn renew(
    db: Conn<'_>,
    device_id: Uuid,
    now: DateTime<Utc>,
    deadline: DateTime<Utc>,
    borrowed_until: Option<DateTime<Utc>>,
) -> Result<Option<LeaseRow>, sqlx::Error> {
    with_conn!(db, c => {
        sqlx::query_as::<_, LeaseRow>(&format!(
            "update device_leases set last_heartbeat_at = $2, \
                 expires_at = case when $4 is null and borrowed_until > $3 \
                     then borrowed_until else $3 end, \
                 borrowed_until = case when $4 is not null then $4 \
                     when borrowed_until > $2 then borrowed_until end \
             where device_id = $1 and live and expires_at > $2 \
             returning {LEASE_COLUMNS}"
        ))
        .bind(device_id)
        .bind(now)
        .bind(deadline)
        .bind(borrowed_until)
        .fetch_optional(&mut *c)
        .await
    })
}

/// The row of one device's lease, live or not.
pub async fn lease_of(db: Conn<'_>, device_id: Uuid) -> Result<Option<LeaseRow>, sqlx::Error> {
    with_conn!(db, c => {
        sqlx::query_as::<_, LeaseRow>(&format!(
            "select {LEASE_COLUMNS} from device_leases where device_id = $1"
        ))
        .bind(device_id)
        .fetch_optional(&mut *c)
        .await
    })
}

/// The live leases of one subscription that a heartbeat renewed since they were taken.
pub async fn renewed(db: Conn<'_>, subscription_id: Uuid) -> Result<Vec<LeaseRow>, sqlx::Error> {
    with_conn!(db, c => {
        sqlx::query_as::<_, LeaseRow>(&format!(
            "select {LEASE_COLUMNS} from device_leases \
             where subscription_id = $1 and live and last_heartbeat_at is not null"
        ))
        .bind(subscription_id)
        .fetch_all(&mut *c)
        .await
    })
}

/// The leases of these devices (for the device views).
pub async fn leases_of(db: Conn<'_>, device_ids: &[Uuid]) -> Result<Vec<LeaseRow>, sqlx::Error> {
    if device_ids.is_empty() {
        return Ok(Vec::new());
    }
    with_conn!(db, c => {
        let mut query = sqlx::QueryBuilder::new(format!(
            "select {LEASE_COLUMNS} from device_leases where device_id in ("
        ));
        let mut list = query.separated(", ");
        for id in device_ids {
            list.push_bind(*id);
        }
        query.push(")");
        query.build_query_as::<LeaseRow>().fetch_all(&mut *c).await
    })
}

/// The live leases whose deadline is at or before `now`, soonest first, at most `limit`
/// (through the partial index on the deadline): `(device, subscription)`.
pub async fn due(
    db: Conn<'_>,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<(Uuid, Uuid)>, sqlx::Error> {
    with_conn!(db, c => {
        sqlx::query_as(
            "select device_id, subscription_id from device_leases \
             where live and expires_at <= $1 order by expires_at limit $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&mut *c)
        .await
    })
}

/// Live leases now (whether their deadline passed or not): the metric's figure.
pub async fn live_count(db: Conn<'_>) -> Result<i64, sqlx::Error> {
    with_conn!(db, c => {
        sqlx::query_scalar("select count(*) from device_leases where live")
            .fetch_one(&mut *c)
            .await
    })
}

//! What `flowlytix policies adopt-plans` reads: the live subscriptions that follow no policy.

use flowlytix_projections::{with_db, Db};
use sqlx::types::Json;
use uuid::Uuid;

/// A live subscription of its own (following no policy), as the read model has it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CustomSubscription {
    pub id: Uuid,
    pub plan: String,
    pub max_devices: i32,
    pub features: Json<Vec<String>>,
    /// Its version when read: adopting it is refused if it changed since.
    pub version: i64,
}

pub async fn custom_subscriptions(db: &Db) -> Result<Vec<CustomSubscription>, sqlx::Error> {
    with_db!(db, pool => {
        sqlx::query_as(
            "select id, plan, max_devices, features, version from rm_subscriptions
             where deleted_at is null and policy_id is null
             order by plan, created_at, id",
        )
        .fetch_all(pool)
        .await
    })
}

//! Licenses by key in the read model. Validation itself reads the write side (see
//! `licensing::cache`); the bench measures this point select as its read-model baseline.

use flowlytix_aggregates::{Sha256Hex, SubscriptionId};
use flowlytix_projections::{with_db, Db};
use uuid::Uuid;

/// The subscription whose current license key has this hash, as far as the read model
/// knows (a regenerated key's old hash no longer matches).
pub async fn subscription_id_by_key_hash(
    db: &Db,
    key_hash: &Sha256Hex,
) -> Result<Option<SubscriptionId>, sqlx::Error> {
    let id: Option<Uuid> = with_db!(db, pool => {
        sqlx::query_scalar("select id from rm_subscriptions where license_key_hash = $1")
            .bind(key_hash.as_str())
            .fetch_optional(pool)
            .await?
    });
    Ok(id.map(SubscriptionId))
}

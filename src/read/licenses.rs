//! What validation reads: a license (subscription row + its active devices) from the
//! `rm_subscriptions` and `rm_devices` read models.

use flowlytix_aggregates::{DeviceId, Sha256Hex, Status, SubscriptionId};
use flowlytix_projections::{with_db, Db};
use uuid::Uuid;

use super::devices::DeviceRow;
use super::subscriptions::SubscriptionRow;
use crate::licensing::{ActiveDevice, LicenseSnapshot};

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

/// The license as the read model has it, or `None` when it has not been projected (yet).
pub async fn license(db: &Db, id: SubscriptionId) -> Result<Option<LicenseSnapshot>, sqlx::Error> {
    let (row, devices): (Option<SubscriptionRow>, Vec<DeviceRow>) = with_db!(db, pool => {
        let row = sqlx::query_as(&format!(
            "select {} from rm_subscriptions where id = $1",
            *super::subscriptions::COLUMNS
        ))
        .bind(id.as_uuid())
        .fetch_optional(pool)
        .await?;
        let devices = sqlx::query_as(&format!(
            "select {} from rm_devices where subscription_id = $1 and status = 'active'",
            super::devices::COLUMNS
        ))
        .bind(id.as_uuid())
        .fetch_all(pool)
        .await?;
        (row, devices)
    });
    Ok(row.map(|row| snapshot(row, devices)))
}

fn snapshot(row: SubscriptionRow, devices: Vec<DeviceRow>) -> LicenseSnapshot {
    // A status the server does not know cannot be trusted to be usable.
    let status =
        serde_json::from_value(serde_json::Value::String(row.status)).unwrap_or(Status::Suspended);
    LicenseSnapshot {
        subscription_id: SubscriptionId(row.id),
        version: row.version,
        key_hash: row.license_key_hash.and_then(|h| Sha256Hex::parse(&h).ok()),
        status,
        plan: row.plan,
        features: row.features.0,
        max_devices: row.max_devices.max(0) as u32,
        expires_at: row.expires_at,
        trial_ends_at: row.trial_ends_at,
        deleted: row.deleted_at.is_some(),
        active_devices: devices
            .into_iter()
            .filter_map(|d| {
                Some(ActiveDevice {
                    id: DeviceId(d.id),
                    fingerprint_hash: Sha256Hex::parse(&d.fingerprint_hash).ok()?,
                    name: d.name,
                    platform: d.platform,
                    activated_at: d.activated_at,
                    last_seen_at: d.last_seen_at,
                })
            })
            .collect(),
    }
}

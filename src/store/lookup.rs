use flowlytix_aggregates::{DeviceId, Sha256Hex, SubscriptionId};
use flowlytix_eventstore::{with_db, Db};
use uuid::Uuid;

/// Key hashes remembered by [`Lookup::subscription_by_key_hash`]; an entry is a 64-character
/// hash and an id, a few hundred bytes with the cache's bookkeeping.
pub const KEY_HASH_CACHE_CAPACITY: u64 = 50_000;

/// Finds the subscription behind a license key hash or a device id, straight from the event
/// log (through expression indexes), so it is right the moment a command commits. The
/// caller still checks the loaded aggregate: a regenerated key's old hash stays in the log.
#[derive(Clone)]
pub struct Lookup {
    db: Db,
    /// Key hash → subscription, for found keys only. Kept without expiry because the answer
    /// never changes: a key is 128 random bits, so its hash names one subscription forever,
    /// and a superseded or deleted one still names it (the activation's `VerifyLicenseKey`
    /// is what refuses it, on the aggregate). An unknown hash is not kept: any instance may
    /// issue that key the next moment.
    by_key_hash: moka::sync::Cache<Sha256Hex, SubscriptionId>,
}

impl Lookup {
    pub fn new(db: Db) -> Self {
        Self {
            db,
            by_key_hash: moka::sync::Cache::new(KEY_HASH_CACHE_CAPACITY),
        }
    }

    pub async fn subscription_by_key_hash(
        &self,
        hash: &Sha256Hex,
    ) -> Result<Option<SubscriptionId>, sqlx::Error> {
        if let Some(id) = self.by_key_hash.get(hash) {
            return Ok(Some(id));
        }
        let id: Option<String> = with_db!(&self.db, pool => {
            sqlx::query_scalar(
                "select aggregate_id from events
                 where event_type in ('LicenseKeyIssued', 'LicenseKeyRegenerated')
                   and (payload -> event_type ->> 'key_hash') = $1
                 order by global_position desc limit 1",
            )
            .bind(hash.as_str())
            .fetch_optional(pool)
            .await?
        });
        let id = id
            .and_then(|id| Uuid::parse_str(&id).ok())
            .map(SubscriptionId);
        if let Some(id) = id {
            self.by_key_hash.insert(hash.clone(), id);
        }
        Ok(id)
    }

    /// The ids of every aggregate of one type that has events (a catalogue's, which are few).
    pub async fn aggregate_ids(&self, aggregate_type: &str) -> Result<Vec<Uuid>, sqlx::Error> {
        let ids: Vec<String> = with_db!(&self.db, pool => {
            sqlx::query_scalar(
                "select distinct aggregate_id from events where aggregate_type = $1",
            )
            .bind(aggregate_type)
            .fetch_all(pool)
            .await?
        });
        Ok(ids
            .iter()
            .filter_map(|id| Uuid::parse_str(id).ok())
            .collect())
    }

    /// Whether any admin account was ever created.
    pub async fn any_admin_exists(&self) -> Result<bool, sqlx::Error> {
        with_db!(&self.db, pool => {
            sqlx::query_scalar(
                "select exists (select 1 from events
                 where aggregate_type = 'AdminUser' and event_type = 'AdminCreated')",
            )
            .fetch_one(pool)
            .await
        })
    }

    pub async fn subscription_by_device(
        &self,
        device: DeviceId,
    ) -> Result<Option<SubscriptionId>, sqlx::Error> {
        let id: Option<String> = with_db!(&self.db, pool => {
            sqlx::query_scalar(
                "select aggregate_id from events
                 where event_type = 'DeviceActivated'
                   and (payload -> event_type ->> 'device_id') = $1
                 limit 1",
            )
            .bind(device.to_string())
            .fetch_optional(pool)
            .await?
        });
        Ok(id
            .and_then(|id| Uuid::parse_str(&id).ok())
            .map(SubscriptionId))
    }
}

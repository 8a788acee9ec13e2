//! What `validate` reads: a small in-memory cache of licenses, filled from the license read
//! model and, right after this instance changes a subscription, from the aggregate itself
//! (so a client that activates and then validates is never told its device is unknown).
//! Entries live a short while, so a change made through another instance shows within
//! about a second.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use flowlytix_aggregates::subscription::{effective_status, SubscriptionState};
use flowlytix_aggregates::{DeviceId, Sha256Hex, Status, SubscriptionId};
use flowlytix_projections::{with_db, Db};
use sqlx::types::Json;
use sqlx::FromRow;
use uuid::Uuid;

/// How long a cached license is trusted without looking at the read model again.
const FRESH_FOR: Duration = Duration::from_millis(500);
/// Beyond this many entries the cache starts over rather than growing without bound.
const MAX_ENTRIES: usize = 100_000;

/// The parts of a subscription that validation needs.
#[derive(Debug, Clone)]
pub struct LicenseSnapshot {
    pub subscription_id: SubscriptionId,
    pub version: i64,
    pub key_hash: Option<Sha256Hex>,
    pub status: Status,
    pub plan: String,
    pub features: Vec<String>,
    pub max_devices: u32,
    pub expires_at: Option<DateTime<Utc>>,
    pub trial_ends_at: Option<DateTime<Utc>>,
    pub deleted: bool,
    pub active_devices: Vec<ActiveDevice>,
}

#[derive(Debug, Clone)]
pub struct ActiveDevice {
    pub id: DeviceId,
    pub fingerprint_hash: Sha256Hex,
    pub name: Option<String>,
    pub platform: Option<String>,
    pub activated_at: DateTime<Utc>,
    pub last_seen_at: Option<DateTime<Utc>>,
}

impl LicenseSnapshot {
    pub fn from_state(state: &SubscriptionState, version: u64) -> Self {
        Self {
            subscription_id: state.id,
            version: version as i64,
            key_hash: state.license_key.as_ref().map(|k| k.key_hash.clone()),
            status: state.status,
            plan: state.plan.as_str().to_owned(),
            features: state.features.clone(),
            max_devices: state.max_devices,
            expires_at: state.expires_at,
            trial_ends_at: state.trial_ends_at,
            deleted: state.deleted_at.is_some(),
            active_devices: state
                .active_devices()
                .map(|d| ActiveDevice {
                    id: d.id,
                    fingerprint_hash: d.fingerprint_hash.clone(),
                    name: d.name.clone(),
                    platform: d.platform.clone(),
                    activated_at: d.activated_at,
                    last_seen_at: d.last_seen_at,
                })
                .collect(),
        }
    }

    pub fn status_at(&self, now: DateTime<Utc>) -> Status {
        effective_status(self.status, self.expires_at, self.trial_ends_at, now)
    }
}

struct Cached {
    snapshot: Option<Arc<LicenseSnapshot>>,
    fetched: Instant,
}

pub struct LicenseCache {
    db: Db,
    by_subscription: RwLock<HashMap<SubscriptionId, Cached>>,
    by_key: RwLock<HashMap<Sha256Hex, SubscriptionId>>,
}

impl LicenseCache {
    pub fn new(db: Db) -> Self {
        Self {
            db,
            by_subscription: RwLock::default(),
            by_key: RwLock::default(),
        }
    }

    /// Records what this instance just committed. An older snapshot never replaces a newer.
    pub fn remember(&self, snapshot: LicenseSnapshot) {
        let snapshot = Arc::new(snapshot);
        if let Some(key) = &snapshot.key_hash {
            if let Ok(mut by_key) = self.by_key.write() {
                if by_key.len() >= MAX_ENTRIES {
                    by_key.clear();
                }
                by_key.insert(key.clone(), snapshot.subscription_id);
            }
        }
        if let Ok(mut by_subscription) = self.by_subscription.write() {
            if by_subscription.len() >= MAX_ENTRIES {
                by_subscription.clear();
            }
            let newer = by_subscription
                .get(&snapshot.subscription_id)
                .and_then(|c| c.snapshot.as_ref())
                .is_none_or(|old| old.version <= snapshot.version);
            if newer {
                by_subscription.insert(
                    snapshot.subscription_id,
                    Cached {
                        snapshot: Some(snapshot),
                        fetched: Instant::now(),
                    },
                );
            }
        }
    }

    fn fresh(&self, id: SubscriptionId) -> Option<Arc<LicenseSnapshot>> {
        let by_subscription = self.by_subscription.read().ok()?;
        let cached = by_subscription.get(&id)?;
        (cached.fetched.elapsed() < FRESH_FOR)
            .then(|| cached.snapshot.clone())
            .flatten()
    }

    /// The license a key names, if it is the subscription's current key.
    pub async fn by_key(
        &self,
        key_hash: &Sha256Hex,
    ) -> Result<Option<Arc<LicenseSnapshot>>, sqlx::Error> {
        let known = self
            .by_key
            .read()
            .ok()
            .and_then(|m| m.get(key_hash).copied());
        if let Some(id) = known {
            let snapshot = match self.fresh(id) {
                Some(snapshot) => Some(snapshot),
                // Stale: we already know which subscription the key named, so reload that
                // one by id rather than looking the key up again first.
                None => self.load(id).await?,
            };
            if let Some(snapshot) = snapshot.filter(|s| s.key_hash.as_ref() == Some(key_hash)) {
                return Ok(Some(snapshot));
            }
            // The key was replaced (or the subscription is gone): forget the mapping so that
            // the next request with this key asks the read model directly.
            if let Ok(mut by_key) = self.by_key.write() {
                if by_key.get(key_hash) == Some(&id) {
                    by_key.remove(key_hash);
                }
            }
        }
        let id: Option<Uuid> = with_db!(&self.db, pool => {
            sqlx::query_scalar("select id from rm_subscriptions where license_key_hash = $1")
                .bind(key_hash.as_str())
                .fetch_optional(pool)
                .await?
        });
        match id {
            Some(id) => Ok(self
                .load(SubscriptionId(id))
                .await?
                .filter(|s| s.key_hash.as_ref() == Some(key_hash))),
            None => Ok(None),
        }
    }

    pub async fn by_subscription(
        &self,
        id: SubscriptionId,
    ) -> Result<Option<Arc<LicenseSnapshot>>, sqlx::Error> {
        if let Some(snapshot) = self.fresh(id) {
            return Ok(Some(snapshot));
        }
        self.load(id).await
    }

    /// Reads the license read model, keeping a newer snapshot this instance already has.
    async fn load(&self, id: SubscriptionId) -> Result<Option<Arc<LicenseSnapshot>>, sqlx::Error> {
        let Some(snapshot) = read_snapshot(&self.db, id).await? else {
            // Not projected yet: what this instance itself committed is the best there is.
            let by_subscription = self
                .by_subscription
                .read()
                .unwrap_or_else(|e| e.into_inner());
            return Ok(by_subscription.get(&id).and_then(|c| c.snapshot.clone()));
        };
        let version = snapshot.version;
        self.remember(snapshot);
        let mut by_subscription = self
            .by_subscription
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let cached = by_subscription.get_mut(&id);
        Ok(cached.and_then(|c| {
            // Our own newer write stays; either way it counts as freshly confirmed.
            if c.snapshot.as_ref().is_some_and(|s| s.version >= version) {
                c.fetched = Instant::now();
            }
            c.snapshot.clone()
        }))
    }
}

#[derive(FromRow)]
struct SubscriptionRow {
    id: Uuid,
    version: i64,
    license_key_hash: Option<String>,
    status: String,
    plan: String,
    features: Json<Vec<String>>,
    max_devices: i32,
    expires_at: Option<DateTime<Utc>>,
    trial_ends_at: Option<DateTime<Utc>>,
    deleted_at: Option<DateTime<Utc>>,
}

#[derive(FromRow)]
struct DeviceRow {
    id: Uuid,
    fingerprint_hash: String,
    name: Option<String>,
    platform: Option<String>,
    activated_at: DateTime<Utc>,
    last_seen_at: Option<DateTime<Utc>>,
}

async fn read_snapshot(
    db: &Db,
    id: SubscriptionId,
) -> Result<Option<LicenseSnapshot>, sqlx::Error> {
    let (row, devices): (Option<SubscriptionRow>, Vec<DeviceRow>) = with_db!(db, pool => {
        let row = sqlx::query_as(
            "select id, version, license_key_hash, status, plan, features, max_devices, expires_at,
                    trial_ends_at, deleted_at
             from rm_subscriptions where id = $1",
        )
        .bind(id.as_uuid())
        .fetch_optional(pool)
        .await?;
        let devices = sqlx::query_as(
            "select id, fingerprint_hash, name, platform, activated_at, last_seen_at
             from rm_devices where subscription_id = $1 and status = 'active'",
        )
        .bind(id.as_uuid())
        .fetch_all(pool)
        .await?;
        (row, devices)
    });
    let Some(row) = row else {
        return Ok(None);
    };
    let status =
        serde_json::from_value(serde_json::Value::String(row.status)).unwrap_or(Status::Suspended);
    Ok(Some(LicenseSnapshot {
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
    }))
}

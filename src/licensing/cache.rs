//! What `validate` reads: a small in-memory cache of licenses, filled from the license read
//! model and, right after this instance changes a subscription, from the aggregate itself
//! (so a client that activates and then validates is never told its device is unknown).
//! Entries live a short while, so a change made through another instance shows within
//! about a second.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use flowlytix_aggregates::{Sha256Hex, SubscriptionId};
use flowlytix_projections::Db;

use super::LicenseSnapshot;
use crate::monitoring::record;
use crate::read;

/// How long a cached license is trusted without looking at the read model again.
const FRESH_FOR: Duration = Duration::from_millis(500);
/// Beyond this many entries the cache starts over rather than growing without bound.
const MAX_ENTRIES: usize = 100_000;

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

    /// Drops what is cached about one subscription.
    pub fn forget(&self, id: SubscriptionId) {
        if let Ok(mut by_subscription) = self.by_subscription.write() {
            by_subscription.remove(&id);
        }
    }

    /// Drops everything cached (after missing change notices).
    pub fn forget_all(&self) {
        if let Ok(mut by_subscription) = self.by_subscription.write() {
            by_subscription.clear();
        }
        if let Ok(mut by_key) = self.by_key.write() {
            by_key.clear();
        }
    }

    fn fresh(&self, id: SubscriptionId) -> Option<Arc<LicenseSnapshot>> {
        let by_subscription = self.by_subscription.read().ok()?;
        let cached = by_subscription.get(&id)?;
        let fresh = (cached.fetched.elapsed() < FRESH_FOR)
            .then(|| cached.snapshot.clone())
            .flatten();
        if fresh.is_some() {
            record::license_cache(true);
        }
        fresh
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
        match read::licenses::subscription_id_by_key_hash(&self.db, key_hash).await? {
            Some(id) => Ok(self
                .load(id)
                .await?
                .filter(|s| s.key_hash.as_ref() == Some(key_hash))),
            None => {
                // An unknown key is a miss too: it cost a read of the read model.
                record::license_cache(false);
                Ok(None)
            }
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
        record::license_cache(false);
        let Some(snapshot) = read::licenses::license(&self.db, id).await? else {
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

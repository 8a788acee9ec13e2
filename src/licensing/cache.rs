//! What `validate` reads: a bounded in-memory cache of licenses, each the subscription as
//! the write side had it when it was put here (so it is never behind a lagging read model).
//!
//! An entry stays trusted for as long as this instance hears of every change: its own
//! commands write through (`remember`), and on PostgreSQL every instance follows the store's
//! license notices (every change to a license that has a key, but activations and token
//! issues: migration 0014) and reloads the subscription. A refusal is re-checked against
//! the store once its entry is half a second old, for the activations made elsewhere. Entries put here while notices were not followed (the listener
//! was connecting, or lost its connection) are trusted for half a second only: a change made
//! elsewhere meanwhile was announced to nobody.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flowlytix_aggregates::SubscriptionId;
use moka::ops::compute::Op;

use super::LicenseSnapshot;
use crate::monitoring::record;

/// How long an entry is trusted while every change reaches this instance. Not forever: a
/// safety net for a change that reached the store some other way (a second embedded server
/// on the same file, a restored backup).
const FRESH_WHILE_TOLD: Duration = Duration::from_secs(60);
/// How long an entry is trusted when a change made elsewhere may have gone unheard.
const FRESH_OTHERWISE: Duration = Duration::from_millis(500);
/// Beyond this many licenses the least valuable are evicted (moka's TinyLFU).
const MAX_ENTRIES: u64 = 100_000;

/// Which stretch of "are changes heard?" a read began in: odd while they are heard, even
/// while they are not. Each start or loss of the notices moves it on, so a read that began
/// before a loss (or before the notices were followed) cannot count as told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Era(u64);

impl Era {
    fn told(self) -> bool {
        self.0 % 2 == 1
    }
}

struct Cached {
    snapshot: Arc<LicenseSnapshot>,
    fetched: Instant,
    era: Era,
}

pub struct LicenseCache {
    entries: moka::sync::Cache<SubscriptionId, Arc<Cached>>,
    era: AtomicU64,
}

impl LicenseCache {
    /// `told`: whether every change is heard from the start (the embedded server is the
    /// only writer of its database); on PostgreSQL it is false until the notices are
    /// followed.
    pub fn new(told: bool) -> Self {
        Self {
            entries: moka::sync::Cache::new(MAX_ENTRIES),
            era: AtomicU64::new(u64::from(told)),
        }
    }

    /// Taken before reading the write side; given back to `remember` with what was read.
    pub fn era(&self) -> Era {
        Era(self.era.load(Ordering::SeqCst))
    }

    /// Notices are followed from now on (`true`) or may be missed from now on (`false`).
    pub fn told_of_changes(&self, told: bool) {
        let _ = self
            .era
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |era| {
                (Era(era).told() != told).then_some(era + 1)
            });
    }

    /// Records the subscription as the write side had it when `era` was taken. An older
    /// snapshot never replaces a newer; the same version read again counts as confirmed.
    /// Gives back the snapshot as shared (whether or not a newer one was held).
    pub fn remember(&self, snapshot: LicenseSnapshot, era: Era) -> Arc<LicenseSnapshot> {
        let snapshot = Arc::new(snapshot);
        self.entries
            .entry(snapshot.subscription_id)
            .and_compute_with(|held| match held {
                Some(held) if held.value().snapshot.version > snapshot.version => Op::Nop,
                _ => Op::Put(Arc::new(Cached {
                    snapshot: snapshot.clone(),
                    fetched: Instant::now(),
                    era,
                })),
            });
        snapshot
    }

    /// Drops what is cached about one subscription.
    pub fn forget(&self, id: SubscriptionId) {
        self.entries.invalidate(&id);
    }

    /// The cached license, if it can still be trusted. To refuse (`refusing`) it must be
    /// recent: activations are not announced, so a device activated through another
    /// instance would otherwise stay refused here for long.
    pub fn fresh(&self, id: SubscriptionId, refusing: bool) -> Option<Arc<LicenseSnapshot>> {
        let fresh = self.entries.get(&id).filter(|cached| {
            let told = cached.era.told() && cached.era == self.era();
            let trusted_for = if told && !refusing {
                FRESH_WHILE_TOLD
            } else {
                FRESH_OTHERWISE
            };
            cached.fetched.elapsed() < trusted_for
        });
        record::license_cache(fresh.is_some());
        fresh.map(|cached| cached.snapshot.clone())
    }

    /// The newest license held, trusted or not (a reload can lose to a newer write-through).
    pub fn newest(&self, id: SubscriptionId) -> Option<Arc<LicenseSnapshot>> {
        self.entries.get(&id).map(|cached| cached.snapshot.clone())
    }
}

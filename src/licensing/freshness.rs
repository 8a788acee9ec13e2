//! Validation stays fresh on every instance, with or without the bus: a change that can
//! stop a license validating (suspension, cancellation, deletion, a new key, a deactivated
//! device, a new period or device limit) is announced by the store as it commits, and each
//! instance then reads that subscription from the write side into its validation cache,
//! not waiting for its read model (which lags while NATS or the publisher is down).

use std::sync::Arc;
use std::time::Duration;

use flowlytix_aggregates::SubscriptionId;
use sqlx::postgres::PgPool;
use tokio::sync::watch;

use super::Licensing;
use crate::store::notices::LicenseChanges;

/// Follows the store's license notices until `shutdown` flips, reconnecting when the
/// connection drops.
pub async fn follow_license_changes(
    licensing: Arc<Licensing>,
    pool: PgPool,
    mut shutdown: watch::Receiver<bool>,
) {
    while !*shutdown.borrow() {
        let followed = tokio::select! {
            result = follow(&licensing, &pool) => result,
            _ = shutdown.changed() => return,
        };
        // Whatever is cached from now on may miss a change made elsewhere.
        licensing.cache().told_of_changes(false);
        if let Err(error) = followed {
            tracing::warn!(%error, "lost the license change notices; reconnecting");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn follow(licensing: &Licensing, pool: &PgPool) -> Result<(), sqlx::Error> {
    let mut changes = LicenseChanges::listen(pool).await?;
    // Notices sent while this instance was not listening are lost: what it cached before
    // stays trusted for half a second only (the cache's eras), what it reads from now on
    // for long.
    licensing.cache().told_of_changes(true);
    loop {
        let id = changes.next().await?;
        refresh(licensing, id).await;
    }
}

/// Reads the subscription from the write side into the cache, or drops it from there.
async fn refresh(licensing: &Licensing, id: SubscriptionId) {
    if let Err(error) = licensing.reload(id).await {
        tracing::warn!(subscription = %id, %error, "cannot refresh a changed license; dropping it from the cache");
        licensing.cache().forget(id);
    }
}

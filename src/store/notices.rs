//! What the event store says about itself: its identity, and notices of changes that can
//! make a license stop validating (PostgreSQL `NOTIFY`, sent by a trigger as the change
//! commits; see migration 0008).

use flowlytix_aggregates::SubscriptionId;
pub use flowlytix_eventstore::store_identity;
use sqlx::postgres::{PgListener, PgPool};
use uuid::Uuid;

const LICENSE_CHANGED: &str = "flowlytix_license_changed";
const POLICY_CHANGED: &str = "flowlytix_policy_changed";

/// Notices of license changes, as they commit anywhere.
pub struct LicenseChanges {
    listener: PgListener,
}

impl LicenseChanges {
    pub async fn listen(pool: &PgPool) -> Result<Self, sqlx::Error> {
        let mut listener = PgListener::connect_with(pool).await?;
        listener.listen(LICENSE_CHANGED).await?;
        Ok(Self { listener })
    }

    /// The next subscription whose license changed. An error means the connection was
    /// lost: notices sent meanwhile are gone.
    pub async fn next(&mut self) -> Result<SubscriptionId, sqlx::Error> {
        loop {
            let notification = self
                .listener
                .try_recv()
                .await?
                .ok_or(sqlx::Error::PoolClosed)?;
            if let Ok(id) = Uuid::parse_str(notification.payload()) {
                return Ok(SubscriptionId(id));
            }
        }
    }
}

/// Notices of policy changes, as they commit anywhere (migration 0016).
pub struct PolicyChanges {
    listener: PgListener,
}

impl PolicyChanges {
    pub async fn listen(pool: &PgPool) -> Result<Self, sqlx::Error> {
        let mut listener = PgListener::connect_with(pool).await?;
        listener.listen(POLICY_CHANGED).await?;
        Ok(Self { listener })
    }

    /// The next policy that changed. An error means the connection was lost.
    pub async fn next(&mut self) -> Result<Uuid, sqlx::Error> {
        loop {
            let notification = self
                .listener
                .try_recv()
                .await?
                .ok_or(sqlx::Error::PoolClosed)?;
            if let Ok(id) = Uuid::parse_str(notification.payload()) {
                return Ok(id);
            }
        }
    }
}

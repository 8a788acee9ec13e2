//! Device leases outside the event log: the renewals heartbeats write (`LeaseClock`) and the
//! culler that records expiries as their deadlines pass (`Culler`).
//!
//! **Why a table and not memory with a write-behind.** A heartbeat is one `UPDATE` of one row
//! by its primary key, conditional on the lease being live and not yet past its deadline.
//! That condition is what makes a heartbeat and the culler agree without a lock: once the
//! deadline has passed, no heartbeat can renew the lease in place, only a command through
//! the aggregate (a revival), so the culler never expires a lease that a heartbeat just
//! renewed. Every instance sees every renewal at once, a crash loses none, and a restart
//! needs no warm-up. A write-behind buffer would save that `UPDATE` but could lose up to a
//! flush interval of renewals in a crash (and have the culler expire leases that were in
//! fact renewed), and it would need the same row in the end. What memory does hold is each
//! instance's last known deadline per device, so that `validate` of a live lease reads
//! nothing.

mod culler;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use flowlytix_aggregates::subscription::{Lease, LeaseRenewals, Renewal};
use flowlytix_aggregates::{DeviceId, SubscriptionId};
use flowlytix_projections::leases::{self, LeaseRow};
use flowlytix_projections::Db;

pub use culler::Culler;

/// Deadlines remembered per instance: beyond this many devices the least used are evicted
/// (and read again when needed).
const REMEMBERED_DEADLINES: u64 = 200_000;

/// The lease table, and the deadlines this instance last saw in it.
pub struct LeaseClock {
    db: Db,
    /// Device → the latest deadline seen for it. Deadlines only move forward while a lease
    /// lives; an expiry or a release reaches validation through the events instead.
    deadlines: moka::sync::Cache<DeviceId, DateTime<Utc>>,
}

impl LeaseClock {
    pub fn new(db: Db) -> Self {
        Self {
            db,
            deadlines: moka::sync::Cache::new(REMEMBERED_DEADLINES),
        }
    }

    /// The renewals of one subscription's leases, for a command to decide with.
    pub async fn renewals(&self, id: SubscriptionId) -> Result<LeaseRenewals, sqlx::Error> {
        let mut connection = self.db.acquire().await?;
        let rows = leases::renewed(connection.conn(), id.as_uuid()).await?;
        let renewals: BTreeMap<DeviceId, Renewal> = rows
            .into_iter()
            .filter_map(|row| {
                Some((
                    DeviceId(row.device_id),
                    Renewal {
                        last_heartbeat_at: row.last_heartbeat_at?,
                        expires_at: row.expires_at?,
                    },
                ))
            })
            .collect();
        Ok(LeaseRenewals::new(renewals))
    }

    /// A heartbeat: renews the device's live lease to `deadline` (see `leases::renew`).
    pub async fn renew(
        &self,
        device: DeviceId,
        now: DateTime<Utc>,
        deadline: DateTime<Utc>,
        borrowed_until: Option<DateTime<Utc>>,
    ) -> Result<Option<LeaseRow>, sqlx::Error> {
        // On SQLite, in turn with this process's other writers, rather than in SQLite's busy
        // handler (see `Db::writer_turn`).
        let _turn = self.db.writer_turn().await;
        let mut connection = self.db.acquire().await?;
        let row = leases::renew(
            connection.conn(),
            device.as_uuid(),
            now,
            deadline,
            borrowed_until,
        )
        .await?;
        if let Some(expires_at) = row.as_ref().and_then(|r| r.expires_at) {
            self.deadlines.insert(device, expires_at);
        }
        Ok(row)
    }

    /// Writes the lease the events gave the device, when the projector has not yet.
    pub async fn take(
        &self,
        device: DeviceId,
        subscription: SubscriptionId,
        lease: &Lease,
    ) -> Result<(), sqlx::Error> {
        let _turn = self.db.writer_turn().await;
        let mut connection = self.db.acquire().await?;
        leases::take(
            connection.conn(),
            device.as_uuid(),
            subscription.as_uuid(),
            lease.taken_at,
            lease.expires_at,
        )
        .await
    }

    /// Whether a lease the events say is live, with the deadline they gave it, still is at
    /// `now`: its last deadline (from memory, else from the table) is ahead.
    pub async fn alive(
        &self,
        device: DeviceId,
        recorded_deadline: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, sqlx::Error> {
        if recorded_deadline > now {
            return Ok(true);
        }
        if self.deadlines.get(&device).is_some_and(|end| end > now) {
            return Ok(true);
        }
        let mut connection = self.db.acquire().await?;
        let row = leases::lease_of(connection.conn(), device.as_uuid()).await?;
        let deadline = row.filter(|r| r.live).and_then(|r| r.expires_at);
        if let Some(deadline) = deadline {
            self.deadlines.insert(device, deadline);
        }
        Ok(deadline.is_some_and(|end| end > now))
    }
}

//! The culler: records the expiry of every lease whose deadline has passed, even when nobody
//! calls. Every `LEASE_SCAN_INTERVAL` the leader (`crate::leader`) reads the live leases past
//! their deadline, soonest first, through the partial index on the deadline (not every
//! lease), and runs `ExpireLeases` on each of their subscriptions. The aggregate decides:
//! it expires what is past its deadline with the renewals read at that moment, records each
//! expiry once (a second run finds it recorded, and the store's optimistic lock settles
//! concurrent ones) and, under `heartbeat_cull: deactivate`, frees the seat.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use flowlytix_aggregates::subscription::watches_deadlines;
use flowlytix_aggregates::{
    DeviceId, PolicyBook, Subscription, SubscriptionAction, SubscriptionEvent, SubscriptionId,
};
use flowlytix_projections::leases::{self, LeaseChange};
use flowlytix_projections::{Conn, Db};
use tokio::sync::watch;
use uuid::Uuid;

use crate::leader::{self, Duty, PassFuture};
use crate::monitoring::record;
use crate::store::{EventMetadata, ExecuteError};
use crate::subscriptions::SubscriptionCommands;

/// Any fixed number, distinct from the other duties': the lock that elects the culler.
const CULLER_LOCK: i64 = 0x0066_6c6f_776c_6561;
/// Leases looked at per pass at most; the rest wait for the next pass, soonest first.
const LEASES_PER_PASS: i64 = 2_000;

pub struct Culler {
    commands: Arc<SubscriptionCommands>,
    interval: Duration,
}

impl Culler {
    pub fn new(commands: Arc<SubscriptionCommands>, interval: Duration) -> Self {
        Self { commands, interval }
    }

    /// Leads when elected, until `shutdown` flips.
    pub async fn run(self, db: Db, shutdown: watch::Receiver<bool>) {
        leader::run(self, db, shutdown).await
    }

    /// Expires the leases past their deadline at `now`; returns how many expiries it
    /// recorded.
    pub async fn cull(
        &self,
        mut db: Conn<'_>,
        now: DateTime<Utc>,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<usize, sqlx::Error> {
        let due = leases::due(db.reborrow(), now, LEASES_PER_PASS).await?;
        let mut by_subscription: BTreeMap<Uuid, Vec<Uuid>> = BTreeMap::new();
        for (device, subscription) in due {
            by_subscription
                .entry(subscription)
                .or_default()
                .push(device);
        }
        let mut expired = 0;
        let mut settled = Vec::new();
        for (id, devices) in by_subscription {
            if *shutdown.borrow() {
                break;
            }
            let id = SubscriptionId(id);
            let action = SubscriptionAction::ExpireLeases;
            match self
                .commands
                .run(id, vec![action], EventMetadata::system(now), None)
                .await
            {
                Ok(committed) => {
                    for envelope in &committed.events {
                        if let SubscriptionEvent::DeviceLeaseExpired { device_id, .. } =
                            &envelope.payload
                        {
                            tracing::info!(subscription = %id, device = %device_id, "lease expired");
                            record::lease_expired();
                            expired += 1;
                        }
                    }
                    let book = self.commands.policies().book();
                    settled.extend(not_watched(&committed.aggregate, &book, &devices));
                }
                // Deleted since (the projector ends its leases), or a policy this instance
                // does not know: found again next pass, never blocking the others.
                Err(ExecuteError::Domain(error)) => {
                    tracing::debug!(subscription = %id, %error, "no lease expired");
                }
                Err(error) => {
                    tracing::warn!(subscription = %id, error = %crate::telemetry::error_chain(&error), "culling failed; trying again next pass");
                }
            }
        }
        // Rows the events already ended, which the projector may not have reached: ended here
        // too, so that the next pass does not read them again (the same change the projector
        // makes, so whichever comes second changes nothing).
        // Rare (rows the projector has not reached yet): SQLite's busy handler will do.
        leases::save_changes(db, &settled).await?;
        Ok(expired)
    }
}

/// The lease rows among `devices` the culler need not read again: the subscription no
/// longer holds their lease live, or its policy no longer watches deadlines (the leases then
/// live on, and the rows would be found due at every pass).
fn not_watched(
    subscription: &Subscription,
    book: &PolicyBook,
    devices: &[Uuid],
) -> Vec<LeaseChange> {
    let Some(state) = subscription.state() else {
        return Vec::new();
    };
    let policy = state.policy_terms(book).ok().flatten();
    let watched = watches_deadlines(policy);
    devices
        .iter()
        .filter_map(|id| {
            let device = state.device(DeviceId(*id))?;
            let lease = device.lease.as_ref()?;
            let ended = lease.expired || !device.active || !watched;
            ended.then_some(LeaseChange::Ended {
                device_id: *id,
                at: lease.taken_at,
            })
        })
        .collect()
}

impl Duty for Culler {
    fn name(&self) -> &'static str {
        "lease culler"
    }

    fn lock(&self) -> i64 {
        CULLER_LOCK
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn pass<'a>(
        &'a mut self,
        db: Conn<'a>,
        now: DateTime<Utc>,
        shutdown: &'a watch::Receiver<bool>,
    ) -> PassFuture<'a> {
        Box::pin(async move {
            self.cull(db, now, shutdown).await?;
            Ok(())
        })
    }
}

//! What the device views show of a lease: its deadline, last heartbeat and borrow from
//! `device_leases` (heartbeats are no events, so only that table knows them), and the
//! device's state judged from them.

use std::collections::HashMap;

use chrono::{DateTime, SubsecRound, Utc};
use flowlytix_aggregates::subscription::{Lease, SubscriptionState};
use flowlytix_projections::leases::{leases_of, LeaseRow};
use flowlytix_projections::Db;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// A device's state as its lease makes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeviceState {
    /// Active, and its lease (if it has one) is ahead of its deadline.
    Live,
    /// Its lease ran out: active but past its deadline, or culled (`heartbeat_expired`).
    Dead,
    /// Active on a borrowed lease: it may stay offline until `borrowed_until`.
    Borrowed,
}

impl DeviceState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Dead => "dead",
            Self::Borrowed => "borrowed",
        }
    }
}

/// The lease fields of a device view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LeaseShown {
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub borrowed_until: Option<DateTime<Utc>>,
    /// `None` for a device deactivated otherwise than by its lease running out.
    pub state: Option<DeviceState>,
}

/// What a view knows of a device besides its lease row.
pub struct DeviceFacts<'a> {
    pub active: bool,
    /// As the events name it (`heartbeat_expired`, ...).
    pub deactivation_reason: Option<&'a str>,
    /// The lease as the events record it, when the view is built from them (a read-model
    /// row has none: its lease row is written in the same transaction, so it never lags).
    pub recorded: Option<&'a Lease>,
}

/// The lease rows of some devices, by device.
#[derive(Debug, Default)]
pub struct DeviceLeases(HashMap<Uuid, LeaseRow>);

impl DeviceLeases {
    /// No rows: for a state as of a past instant, which the table (holding only the present)
    /// cannot describe; the events' own deadlines judge it.
    pub fn none() -> Self {
        Self::default()
    }

    /// The rows of these devices.
    pub async fn of(db: &Db, devices: &[Uuid]) -> Result<Self, sqlx::Error> {
        if devices.is_empty() {
            return Ok(Self::none());
        }
        let mut connection = db.acquire().await?;
        let rows = leases_of(connection.conn(), devices).await?;
        Ok(Self(rows.into_iter().map(|r| (r.device_id, r)).collect()))
    }

    /// The rows of a subscription's devices.
    pub async fn of_subscription(db: &Db, state: &SubscriptionState) -> Result<Self, sqlx::Error> {
        let devices: Vec<Uuid> = state.devices.iter().map(|d| d.id.as_uuid()).collect();
        Self::of(db, &devices).await
    }

    /// The lease fields of `device` at `now`.
    pub fn shown(&self, device: Uuid, facts: DeviceFacts<'_>, now: DateTime<Utc>) -> LeaseShown {
        shown(self.0.get(&device), facts, now)
    }
}

/// See [`DeviceState`]. A row older than the lease the events record is not yet the
/// projector's copy of it: the events' deadline judges then.
fn shown(row: Option<&LeaseRow>, facts: DeviceFacts<'_>, now: DateTime<Utc>) -> LeaseShown {
    let recorded = facts.recorded;
    // PostgreSQL keeps microseconds: the row's copy of an instant may have lost the rest.
    let taken_at = |lease: &Lease| lease.taken_at.trunc_subsecs(6);
    let row = row.filter(|r| recorded.is_none_or(|lease| r.taken_at >= taken_at(lease)));
    let recorded_dead = recorded.is_some_and(|lease| {
        let same_lease = row.is_none_or(|r| r.taken_at.trunc_subsecs(6) == taken_at(lease));
        same_lease && lease.expired
    });
    let past = |deadline: Option<DateTime<Utc>>| deadline.is_some_and(|end| end <= now);
    let state = if !facts.active {
        (facts.deactivation_reason == Some("heartbeat_expired")).then_some(DeviceState::Dead)
    } else if let Some(row) = row {
        if recorded_dead || !row.live || past(row.expires_at) {
            Some(DeviceState::Dead)
        } else if row.borrowed_until.is_some_and(|until| until > now) {
            Some(DeviceState::Borrowed)
        } else {
            Some(DeviceState::Live)
        }
    } else if recorded_dead || past(recorded.and_then(|lease| lease.expires_at)) {
        Some(DeviceState::Dead)
    } else {
        Some(DeviceState::Live)
    };
    LeaseShown {
        last_heartbeat_at: row.and_then(|r| r.last_heartbeat_at),
        lease_expires_at: row
            .map(|r| r.expires_at)
            .unwrap_or_else(|| recorded.and_then(|lease| lease.expires_at)),
        borrowed_until: row.and_then(|r| r.borrowed_until),
        state,
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-12-07T12:00:00Z".parse().unwrap()
    }

    fn row(taken_at: DateTime<Utc>, expires_at: DateTime<Utc>) -> LeaseRow {
        LeaseRow {
            device_id: Uuid::nil(),
            subscription_id: Uuid::nil(),
            taken_at,
            expires_at: Some(expires_at),
            last_heartbeat_at: None,
            borrowed_until: None,
            live: true,
        }
    }

    fn active(recorded: Option<&Lease>) -> DeviceFacts<'_> {
        DeviceFacts {
            active: true,
            deactivation_reason: None,
            recorded,
        }
    }

    fn state(row: Option<&LeaseRow>, facts: DeviceFacts<'_>) -> Option<DeviceState> {
        shown(row, facts, now()).state
    }

    #[test]
    fn a_device_without_a_lease_is_live_while_active_and_has_no_state_once_deactivated() {
        assert_eq!(state(None, active(None)), Some(DeviceState::Live));
        let deactivated = DeviceFacts {
            active: false,
            deactivation_reason: Some("admin"),
            recorded: None,
        };
        assert_eq!(state(None, deactivated), None);
        let culled = DeviceFacts {
            active: false,
            deactivation_reason: Some("heartbeat_expired"),
            recorded: None,
        };
        assert_eq!(state(None, culled), Some(DeviceState::Dead));
    }

    #[test]
    fn the_row_decides_live_borrowed_and_dead() {
        let taken = now() - Duration::minutes(10);
        let live = row(taken, now() + Duration::minutes(1));
        assert_eq!(state(Some(&live), active(None)), Some(DeviceState::Live));
        let borrowed = LeaseRow {
            borrowed_until: Some(now() + Duration::days(2)),
            expires_at: Some(now() + Duration::days(2)),
            ..live.clone()
        };
        let judged = shown(Some(&borrowed), active(None), now());
        assert_eq!(judged.state, Some(DeviceState::Borrowed));
        assert_eq!(judged.borrowed_until, borrowed.borrowed_until);
        let past = row(taken, now() - Duration::seconds(1));
        assert_eq!(state(Some(&past), active(None)), Some(DeviceState::Dead));
        let ended = LeaseRow {
            live: false,
            ..live.clone()
        };
        assert_eq!(state(Some(&ended), active(None)), Some(DeviceState::Dead));
    }

    #[test]
    fn the_events_judge_while_the_row_lags_behind_them() {
        let revived_at = now() - Duration::seconds(5);
        let revived = Lease {
            expires_at: Some(now() + Duration::minutes(1)),
            taken_at: revived_at,
            expired: false,
        };
        // The row still holds the lease that died before the revival.
        let old = LeaseRow {
            live: false,
            ..row(
                revived_at - Duration::hours(1),
                revived_at - Duration::minutes(1),
            )
        };
        let judged = shown(Some(&old), active(Some(&revived)), now());
        assert_eq!(judged.state, Some(DeviceState::Live));
        assert_eq!(judged.lease_expires_at, revived.expires_at);
        // No row yet: the events' deadline judges.
        assert_eq!(state(None, active(Some(&revived))), Some(DeviceState::Live));
        // The row's copy of the instant, to PostgreSQL's microseconds, is the same lease.
        let precise = Lease {
            taken_at: "2026-12-07T11:59:55.123456789Z".parse().unwrap(),
            ..revived.clone()
        };
        let beaten = LeaseRow {
            last_heartbeat_at: Some(now()),
            ..row(
                precise.taken_at.trunc_subsecs(6),
                now() + Duration::minutes(1),
            )
        };
        let judged = shown(Some(&beaten), active(Some(&precise)), now());
        assert_eq!(judged.last_heartbeat_at, Some(now()));
        let expired = Lease {
            expired: true,
            ..revived.clone()
        };
        let current = row(revived_at, now() + Duration::minutes(1));
        assert_eq!(
            state(Some(&current), active(Some(&expired))),
            Some(DeviceState::Dead)
        );
    }
}

//! Leases: a device under a policy that requires heartbeats (or counts floating seats) holds a
//! lease. Heartbeats renew it outside the event log (a lease table the application keeps), so
//! commands carry the renewals as the application read them ([`LeaseRenewals`]), as they carry
//! the policies' terms. The events record only what changes who holds a seat: a lease taken
//! (`DeviceActivated`, `DeviceLeaseTaken`), expired (`DeviceLeaseExpired`), revived
//! (`DeviceRevived`) and released (`DeviceDeactivated`, reason `checked_in`).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::commands::PresentedToken;
use super::{
    DeactivationReason, Device, Subscription, SubscriptionError, SubscriptionEvent,
    SubscriptionState,
};
use crate::policy::{HeartbeatCull, LicenseModel, PolicyTerms};
use crate::values::DeviceId;

/// A device's lease as the events know it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The deadline as of the last event; heartbeats move it on in the lease table. `None`:
    /// a floating seat without heartbeats, held until checked in.
    pub expires_at: Option<DateTime<Utc>>,
    /// When the lease was last taken (activation, first heartbeat, revival): it tells one
    /// lease of a device from the next in the lease table.
    pub taken_at: DateTime<Utc>,
    /// Its deadline passed and was recorded (`DeviceLeaseExpired`).
    pub expired: bool,
}

/// What a lease event says about the lease it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseGrant {
    pub expires_at: Option<DateTime<Utc>>,
    /// Seats held on the subscription right after (a floating pool counts live leases).
    pub seats_in_use: u32,
}

/// A lease's renewal as the lease table has it: heartbeats since the last event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Renewal {
    pub last_heartbeat_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// The renewals of a subscription's leases, by device, as the application read them for a
/// command. Missing ones mean no heartbeat since the last event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LeaseRenewals(Arc<BTreeMap<DeviceId, Renewal>>);

impl LeaseRenewals {
    pub fn new(renewals: BTreeMap<DeviceId, Renewal>) -> Self {
        Self(Arc::new(renewals))
    }

    pub fn get(&self, device: DeviceId) -> Option<&Renewal> {
        self.0.get(&device)
    }
}

/// Whether `policy` watches leases' deadlines: only one that requires heartbeats does. A
/// policy that stops requiring them lets every lease live on, rather than have them all die
/// at their last deadline.
pub fn watches_deadlines(policy: Option<&PolicyTerms>) -> bool {
    policy.is_some_and(|terms| terms.settings.lease_duration().is_some())
}

impl Device {
    /// The lease's deadline in force under `policy`: the later of the last event's and the
    /// last heartbeat's; none when the policy does not watch deadlines.
    pub fn lease_deadline(
        &self,
        policy: Option<&PolicyTerms>,
        renewals: &LeaseRenewals,
    ) -> Option<DateTime<Utc>> {
        let lease = self.lease.as_ref().filter(|_| watches_deadlines(policy))?;
        let renewed = renewals.get(self.id).map(|r| r.expires_at);
        lease
            .expires_at
            .max(renewed)
            .filter(|_| lease.expires_at.is_some())
    }

    /// Whether the device's lease is dead at `at` under `policy`: recorded as expired, or
    /// past its deadline.
    pub fn lease_dead_at(
        &self,
        policy: Option<&PolicyTerms>,
        renewals: &LeaseRenewals,
        at: DateTime<Utc>,
    ) -> bool {
        match &self.lease {
            None => false,
            Some(_) if !watches_deadlines(policy) => false,
            Some(lease) if lease.expired => true,
            Some(_) => self
                .lease_deadline(policy, renewals)
                .is_some_and(|end| end <= at),
        }
    }

    /// Whether it holds a seat, as the events say: an active device does, unless its lease
    /// expired on a floating pool.
    fn holds_seat(&self, model: LicenseModel) -> bool {
        let expired = self.lease.as_ref().is_some_and(|l| l.expired);
        self.active && !(expired && model == LicenseModel::Floating)
    }
}

/// The license model in force: a subscription of its own is node-locked.
pub fn license_model(policy: Option<&PolicyTerms>) -> LicenseModel {
    policy.map_or(LicenseModel::NodeLocked, |p| p.settings.license_model)
}

impl SubscriptionState {
    /// Seats held now, as the events say.
    pub fn seats_in_use(&self, model: LicenseModel) -> u32 {
        self.devices.iter().filter(|d| d.holds_seat(model)).count() as u32
    }
}

/// Events decided one after another, each applied to a copy of the state so that the next
/// decision (and the seat count each event records) sees the ones before it.
pub(super) struct Draft {
    aggregate: Subscription,
    pub events: Vec<SubscriptionEvent>,
}

impl Draft {
    pub fn new(state: &SubscriptionState) -> Self {
        Self {
            aggregate: Subscription::of(state.clone()),
            events: Vec::new(),
        }
    }

    pub fn state(&self) -> &SubscriptionState {
        self.aggregate.state().expect("a draft starts from a state")
    }

    /// Records the event `make` builds from the seats held once it applies.
    pub fn push(&mut self, model: LicenseModel, make: impl Fn(u32) -> SubscriptionEvent) {
        self.aggregate.apply(make(0));
        let seats = self.state().seats_in_use(model);
        let event = make(seats);
        self.events.push(event);
    }

    /// Whether `device` holds a seat as the draft stands: a dead node-locked device kept
    /// under `heartbeat_cull: keep` does, so reviving it takes no other.
    pub fn holds_seat(&self, device: DeviceId, model: LicenseModel) -> bool {
        self.state()
            .device(device)
            .is_some_and(|d| d.holds_seat(model))
    }

    /// The active devices once `device` holds a live lease again (a culled one counts anew).
    pub fn active_after_reviving(&self, device: DeviceId) -> u32 {
        let culled = self.state().device(device).is_some_and(|d| !d.active);
        self.state().active_device_count() + u32::from(culled)
    }

    /// Records a plain event (one that records no seat count).
    pub fn push_event(&mut self, event: SubscriptionEvent) {
        self.aggregate.apply(event.clone());
        self.events.push(event);
    }
}

/// Records the expiry of every live lease whose deadline has passed at `at` and, under
/// `heartbeat_cull: deactivate`, deactivates those devices (reason `heartbeat_expired`).
/// Expiries already recorded are not recorded again, so this is safe to run anywhere, by any
/// number of instances.
pub(super) fn expire_dead_leases(
    draft: &mut Draft,
    policy: Option<&PolicyTerms>,
    renewals: &LeaseRenewals,
    at: DateTime<Utc>,
) {
    let model = license_model(policy);
    let cull = policy.map_or(HeartbeatCull::Keep, |p| p.settings.heartbeat_cull);
    let dead: Vec<(DeviceId, DateTime<Utc>, Option<DateTime<Utc>>)> = draft
        .state()
        .active_devices()
        .filter(|d| d.lease.as_ref().is_some_and(|l| !l.expired))
        .filter_map(|d| {
            let deadline = d
                .lease_deadline(policy, renewals)
                .filter(|end| *end <= at)?;
            let beat = renewals.get(d.id).map(|r| r.last_heartbeat_at);
            Some((d.id, deadline, beat))
        })
        .collect();
    for (device_id, lease_expires_at, last_heartbeat_at) in dead {
        draft.push(model, |seats_in_use| {
            SubscriptionEvent::DeviceLeaseExpired {
                device_id,
                lease_expires_at,
                last_heartbeat_at,
                seats_in_use,
                at,
            }
        });
        if cull == HeartbeatCull::Deactivate {
            let active_devices = draft.state().active_device_count() - 1;
            draft.push_event(SubscriptionEvent::DeviceDeactivated {
                device_id,
                reason: DeactivationReason::HeartbeatExpired,
                active_devices,
                at,
            });
        }
    }
}

/// Refuses unless a seat is free once dead leases are expired (recording those expiries in
/// `draft`: a dead seat never blocks a live activation).
pub(super) fn ensure_seat_free(
    draft: &mut Draft,
    policy: Option<&PolicyTerms>,
    renewals: &LeaseRenewals,
    max_devices: u32,
    at: DateTime<Utc>,
) -> Result<(), SubscriptionError> {
    let model = license_model(policy);
    if draft.state().seats_in_use(model) >= max_devices {
        expire_dead_leases(draft, policy, renewals, at);
    }
    let in_use = draft.state().seats_in_use(model);
    if in_use >= max_devices {
        return Err(SubscriptionError::DeviceLimitReached {
            max_devices,
            in_use,
        });
    }
    Ok(())
}

/// A heartbeat the lease table could not take (no live row for the device): the device's
/// first lease under a policy that began requiring heartbeats after it was activated, a
/// revival within the resurrection window, or nothing when the lease is in fact live (the
/// caller then writes the renewal). A dead device past the window is refused.
pub(super) fn heartbeat(
    state: &SubscriptionState,
    policy: Option<&PolicyTerms>,
    renewals: &LeaseRenewals,
    presented: &PresentedToken,
    borrow_until: Option<DateTime<Utc>>,
    at: DateTime<Utc>,
) -> Result<Vec<SubscriptionEvent>, SubscriptionError> {
    super::state::ensure_key_admits(state, presented)?;
    let device = state
        .device(presented.device_id)
        .ok_or(SubscriptionError::DeviceNotActivated)?;
    let terms = policy.ok_or(SubscriptionError::HeartbeatNotRequired)?;
    let duration = terms
        .settings
        .lease_duration()
        .ok_or(SubscriptionError::HeartbeatNotRequired)?;
    let deadline = lease_end(terms, borrow_until, duration.after(at), at)?;
    let model = terms.settings.license_model;
    let device_id = device.id;
    let Some(lease) = device.lease.as_ref() else {
        if !device.active {
            return Err(SubscriptionError::DeviceNotActivated);
        }
        return Ok(vec![SubscriptionEvent::DeviceLeaseTaken {
            device_id,
            lease: LeaseGrant {
                expires_at: Some(deadline),
                seats_in_use: state.seats_in_use(model),
            },
            at,
        }]);
    };
    let culled = !device.active
        && device.deactivation_reason == Some(DeactivationReason::HeartbeatExpired)
        && lease.expired;
    if !device.active && !culled {
        return Err(SubscriptionError::DeviceNotActivated);
    }
    if !device.lease_dead_at(policy, renewals, at) {
        return Ok(vec![]);
    }
    // Dead: revived only within the resurrection window after its deadline.
    let died_at = device
        .lease_deadline(policy, renewals)
        .or(lease.expires_at)
        .unwrap_or(lease.taken_at);
    let revivable = terms
        .settings
        .resurrection_window
        .as_ref()
        .and_then(|window| window.after(died_at))
        .is_some_and(|until| at < until);
    if !revivable {
        return Err(SubscriptionError::HeartbeatDead);
    }
    // A fingerprint activated again since it died is another device now.
    if culled
        && state
            .active_device_with_fingerprint(&device.fingerprint_hash)
            .is_some()
    {
        return Err(SubscriptionError::HeartbeatDead);
    }
    let mut draft = Draft::new(state);
    expire_dead_leases(&mut draft, policy, renewals, at);
    if !draft.holds_seat(device_id, model) {
        let max_devices = state.max_devices_under(policy);
        ensure_seat_free(&mut draft, policy, renewals, max_devices, at)?;
    }
    let active_devices = draft.active_after_reviving(device_id);
    draft.push(model, |seats_in_use| SubscriptionEvent::DeviceRevived {
        device_id,
        lease: LeaseGrant {
            expires_at: Some(deadline),
            seats_in_use,
        },
        active_devices,
        at,
    });
    Ok(draft.events)
}

/// The deadline a heartbeat at `at` gives: `renewed` (the heartbeat duration from now), or
/// with `borrow_until` that instant, within the policy's `max_borrow`.
pub fn lease_end(
    terms: &PolicyTerms,
    borrow_until: Option<DateTime<Utc>>,
    renewed: Option<DateTime<Utc>>,
    at: DateTime<Utc>,
) -> Result<DateTime<Utc>, SubscriptionError> {
    let renewed = renewed.ok_or(SubscriptionError::InstantOutOfRange)?;
    let Some(until) = borrow_until else {
        return Ok(renewed);
    };
    let longest = terms
        .settings
        .max_borrow
        .as_ref()
        .and_then(|max| max.after(at))
        .ok_or(SubscriptionError::BorrowNotAllowed)?;
    if until <= at || until > longest {
        return Err(SubscriptionError::InvalidBorrow { until: longest });
    }
    Ok(until.max(renewed))
}

/// Refuses a client's deactivation past the policy's churn limit: `max_deactivations` client
/// deactivations within the last `deactivation_window`. Admins, check-ins of floating seats
/// and culling are not counted.
pub(super) fn ensure_churn_allowed(
    state: &SubscriptionState,
    policy: Option<&PolicyTerms>,
    at: DateTime<Utc>,
) -> Result<(), SubscriptionError> {
    let Some(settings) = policy.map(|p| &p.settings) else {
        return Ok(());
    };
    let (Some(max), Some(window)) = (settings.max_deactivations, &settings.deactivation_window)
    else {
        return Ok(());
    };
    let mut recent: Vec<DateTime<Utc>> = state
        .devices
        .iter()
        .filter(|d| d.deactivation_reason == Some(DeactivationReason::Client))
        .filter_map(|d| d.deactivated_at)
        .filter(|when| window.after(*when).is_some_and(|until| until > at))
        .collect();
    if (recent.len() as u32) < max {
        return Ok(());
    }
    // A slot comes back when the oldest deactivation still counted leaves the window.
    recent.sort();
    let oldest_counted = recent[recent.len() - max as usize];
    let retry_at = window.after(oldest_counted).unwrap_or(at);
    Err(SubscriptionError::DeactivationLimitReached { retry_at })
}

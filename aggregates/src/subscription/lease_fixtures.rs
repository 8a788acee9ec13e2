//! Fixtures of the lease tests (`lease_tests`, `churn_tests`): a subscription that follows
//! the policy "seats" (2 devices, perpetual), whose settings each test picks, and the lease
//! events in the shape the aggregate records them. Times are minutes after `t0()`; leases
//! under heartbeats last ten minutes, dead devices may be revived for an hour.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use cqrs_es::test::{AggregateTestExecutor, TestFramework};
use cqrs_es::Aggregate;
use serde_json::Map;
use uuid::Uuid;

use super::{
    DeactivationReason, DeviceDetails, DeviceInfo, LeaseGrant, LeaseRenewals, PresentedToken,
    Renewal, Status, Subscription, SubscriptionAction, SubscriptionCommand, SubscriptionEvent,
    SubscriptionState,
};
use crate::duration::IsoDuration;
use crate::policy::{HeartbeatCull, LicenseModel, PolicyBook, PolicySettings, PolicyTerms};
use crate::values::{Code, DeviceId, Email, Plan, PolicyId, ProductId, Sha256Hex, SubscriptionId};

use SubscriptionAction as A;
use SubscriptionEvent as E;

// ---------------------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------------------

/// Creation time of the subscription.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()
}

/// `n` minutes after `t0()`.
pub fn min(n: i64) -> DateTime<Utc> {
    t0() + Duration::minutes(n)
}

/// `n` hours after `t0()`.
pub fn hour(n: i64) -> DateTime<Utc> {
    t0() + Duration::hours(n)
}

pub fn iso(raw: &str) -> IsoDuration {
    IsoDuration::parse(raw).unwrap()
}

// ---------------------------------------------------------------------------------------
// The policy
// ---------------------------------------------------------------------------------------

fn code(raw: &str) -> Code {
    Code::parse(raw).unwrap()
}

fn product_id() -> ProductId {
    ProductId::for_code(&code("desktop-app"))
}

pub fn seats_policy() -> PolicyId {
    PolicyId::for_code(product_id(), &code("seats"))
}

/// "seats": node-locked, 2 devices, perpetual, no heartbeats, no churn limit.
pub fn node_locked() -> PolicySettings {
    PolicySettings {
        name: "Seats".to_owned(),
        max_devices: 2,
        ..PolicySettings::default()
    }
}

/// Floating seats, without heartbeats: a seat is held until checked in.
pub fn floating() -> PolicySettings {
    PolicySettings {
        license_model: LicenseModel::Floating,
        ..node_locked()
    }
}

/// Heartbeats every ten minutes, revival within an hour, culling as given.
pub fn beating(model: LicenseModel, cull: HeartbeatCull) -> PolicySettings {
    PolicySettings {
        license_model: model,
        require_heartbeat: true,
        heartbeat_duration: Some(iso("PT10M")),
        heartbeat_cull: cull,
        resurrection_window: Some(iso("PT1H")),
        ..node_locked()
    }
}

pub fn floating_deactivate() -> PolicySettings {
    beating(LicenseModel::Floating, HeartbeatCull::Deactivate)
}

pub fn floating_keep() -> PolicySettings {
    beating(LicenseModel::Floating, HeartbeatCull::Keep)
}

pub fn locked_deactivate() -> PolicySettings {
    beating(LicenseModel::NodeLocked, HeartbeatCull::Deactivate)
}

pub fn locked_keep() -> PolicySettings {
    beating(LicenseModel::NodeLocked, HeartbeatCull::Keep)
}

/// These settings with room for `max_devices`.
pub fn with_room(max_devices: u32, settings: PolicySettings) -> PolicySettings {
    PolicySettings {
        max_devices,
        ..settings
    }
}

/// The book with "seats" (version 1) under these settings.
pub fn book_of(settings: PolicySettings) -> PolicyBook {
    PolicyBook::default().with(Arc::new(PolicyTerms {
        policy_id: seats_policy(),
        version: 1,
        product_id: product_id(),
        product_code: code("desktop-app"),
        code: code("seats"),
        archived: false,
        settings,
    }))
}

// ---------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------

/// A command handled at `at`, "seats" having these settings, without renewals.
pub fn cmd(settings: PolicySettings, at: DateTime<Utc>, action: A) -> SubscriptionCommand {
    SubscriptionCommand::new(at, action).with_policies(book_of(settings))
}

/// A command handled at `at` with these renewals: `(device, last heartbeat, deadline)`.
pub fn cmd_renewed(
    settings: PolicySettings,
    renewals: &[(u128, DateTime<Utc>, DateTime<Utc>)],
    at: DateTime<Utc>,
    action: A,
) -> SubscriptionCommand {
    let renewals: BTreeMap<DeviceId, Renewal> = renewals
        .iter()
        .map(|(n, last_heartbeat_at, expires_at)| {
            let renewal = Renewal {
                last_heartbeat_at: *last_heartbeat_at,
                expires_at: *expires_at,
            };
            (device_id(*n), renewal)
        })
        .collect();
    cmd(settings, at, action).with_leases(LeaseRenewals::new(renewals))
}

pub const LAPTOP: u128 = 1;
pub const DESKTOP: u128 = 2;
pub const PHONE: u128 = 3;
pub const TABLET: u128 = 4;
pub const WATCH: u128 = 5;
/// The id the laptop's fingerprint comes back under once its device was deactivated.
pub const LAPTOP_AGAIN: u128 = 11;

pub fn device_id(n: u128) -> DeviceId {
    DeviceId(Uuid::from_u128(0xd0_0000 + n))
}

/// The fingerprint of the device numbered `n` (`LAPTOP_AGAIN` is the laptop's).
pub fn fingerprint(n: u128) -> Sha256Hex {
    let n = if n == LAPTOP_AGAIN { LAPTOP } else { n };
    Sha256Hex::parse(&format!("{:064x}", 0xf0_0000 + n)).unwrap()
}

/// The key numbered `n`; its first 16 digits (a token's `license_key_ref`) tell it apart.
pub fn key_hash(n: u128) -> Sha256Hex {
    Sha256Hex::parse(&format!("{:016x}{:048x}", 0xa0_0000 + n, 0xa0_0000 + n)).unwrap()
}

/// The device numbered `n` activating under its own id.
pub fn activate(n: u128) -> A {
    A::ActivateDevice(DeviceDetails {
        device_id: device_id(n),
        fingerprint_hash: fingerprint(n),
        info: DeviceInfo::default(),
    })
}

/// A token issued at `t0()` to the device numbered `n`, under the key numbered `key`.
pub fn token_under(n: u128, key: u128) -> PresentedToken {
    PresentedToken {
        device_id: device_id(n),
        license_key_ref: Some(key_hash(key).as_str()[..16].to_owned()),
        issued_at: t0(),
    }
}

/// A heartbeat from the device numbered `n` with a token under the current key.
pub fn heartbeat(n: u128) -> A {
    A::Heartbeat {
        presented: token_under(n, 1),
        borrow_until: None,
    }
}

pub fn borrow(n: u128, until: DateTime<Utc>) -> A {
    A::Heartbeat {
        presented: token_under(n, 1),
        borrow_until: Some(until),
    }
}

pub fn check_in(n: u128) -> A {
    A::CheckIn {
        presented: token_under(n, 1),
    }
}

pub fn deactivate(n: u128, reason: DeactivationReason) -> A {
    A::DeactivateDevice {
        device_id: device_id(n),
        reason,
    }
}

pub fn issue_token_until(n: u128, expires_at: DateTime<Utc>) -> A {
    A::IssueLicenseToken {
        fingerprint_hash: fingerprint(n),
        token_id: Uuid::from_u128(0x70c3),
        expires_at,
    }
}

// ---------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------

fn creation(policy: Option<PolicyId>) -> Vec<SubscriptionEvent> {
    vec![
        E::SubscriptionCreated {
            subscription_id: SubscriptionId(Uuid::from_u128(1)),
            customer_email: Email::parse("ann@example.com").unwrap(),
            customer_name: "Ann Example".to_owned(),
            organization: None,
            plan: Plan::parse(if policy.is_some() { "seats" } else { "custom" }).unwrap(),
            status: Status::Active,
            starts_at: t0(),
            expires_at: None,
            trial_ends_at: None,
            max_devices: 2,
            features: vec![],
            metadata: Map::new(),
            at: t0(),
            policy_id: policy,
            policy_version: policy.map(|_| 1),
            overrides: vec![],
        },
        E::LicenseKeyIssued {
            key_hash: key_hash(1),
            key_prefix: "FLX-00001".to_owned(),
            at: t0(),
        },
    ]
}

/// Created at `t0()` to follow "seats", perpetual, without devices.
pub fn created() -> Vec<SubscriptionEvent> {
    creation(Some(seats_policy()))
}

/// Created at `t0()` with its own plan and 2 devices: no policy.
pub fn created_of_its_own() -> Vec<SubscriptionEvent> {
    creation(None)
}

pub fn grant(expires_at: Option<DateTime<Utc>>, seats_in_use: u32) -> LeaseGrant {
    LeaseGrant {
        expires_at,
        seats_in_use,
    }
}

/// The device numbered `n` activated at `at` (a new device under the id `n`).
pub fn activated(
    n: u128,
    active_devices: u32,
    at: DateTime<Utc>,
    lease: Option<LeaseGrant>,
) -> SubscriptionEvent {
    E::DeviceActivated {
        device_id: device_id(n),
        fingerprint_hash: fingerprint(n),
        info: DeviceInfo::default(),
        active_devices,
        at,
        policy_version: Some(1),
        lease,
    }
}

/// Activated at `at` under heartbeats: its lease ends ten minutes later.
pub fn activated_beating(
    n: u128,
    active_devices: u32,
    at: DateTime<Utc>,
    seats_in_use: u32,
) -> SubscriptionEvent {
    let lease = grant(Some(at + Duration::minutes(10)), seats_in_use);
    activated(n, active_devices, at, Some(lease))
}

/// "seats" with the laptop activated at `min(0)` (lease until `min(10)`) and the desktop
/// at `min(5)` (until `min(15)`): two of two seats taken.
pub fn two_beating() -> Vec<SubscriptionEvent> {
    and(
        created(),
        vec![
            activated_beating(LAPTOP, 1, min(0), 1),
            activated_beating(DESKTOP, 2, min(5), 2),
        ],
    )
}

pub fn lease_expired(
    n: u128,
    lease_expires_at: DateTime<Utc>,
    last_heartbeat_at: Option<DateTime<Utc>>,
    seats_in_use: u32,
    at: DateTime<Utc>,
) -> SubscriptionEvent {
    E::DeviceLeaseExpired {
        device_id: device_id(n),
        lease_expires_at,
        last_heartbeat_at,
        seats_in_use,
        at,
    }
}

pub fn deactivated(
    n: u128,
    reason: DeactivationReason,
    active_devices: u32,
    at: DateTime<Utc>,
) -> SubscriptionEvent {
    E::DeviceDeactivated {
        device_id: device_id(n),
        reason,
        active_devices,
        at,
    }
}

/// Deactivated because its heartbeat stopped.
pub fn culled(n: u128, active_devices: u32, at: DateTime<Utc>) -> SubscriptionEvent {
    deactivated(n, DeactivationReason::HeartbeatExpired, active_devices, at)
}

pub fn revived(
    n: u128,
    lease: LeaseGrant,
    active_devices: u32,
    at: DateTime<Utc>,
) -> SubscriptionEvent {
    E::DeviceRevived {
        device_id: device_id(n),
        lease,
        active_devices,
        at,
    }
}

/// `two_beating()` with the laptop's lease expired at `min(11)` and, with `cull`, the
/// laptop deactivated: what the culler records under `deactivate`.
pub fn laptop_dead(cull: bool, seats_in_use: u32) -> Vec<SubscriptionEvent> {
    let mut events = two_beating();
    events.push(lease_expired(LAPTOP, min(10), None, seats_in_use, min(11)));
    if cull {
        events.push(culled(LAPTOP, 1, min(11)));
    }
    events
}

pub fn and(
    mut events: Vec<SubscriptionEvent>,
    more: Vec<SubscriptionEvent>,
) -> Vec<SubscriptionEvent> {
    events.extend(more);
    events
}

pub fn given(events: Vec<SubscriptionEvent>) -> AggregateTestExecutor<Subscription> {
    TestFramework::<Subscription>::with(()).given(events)
}

pub fn aggregate(events: Vec<SubscriptionEvent>) -> Subscription {
    let mut subscription = Subscription::default();
    for event in events {
        subscription.apply(event);
    }
    subscription
}

/// The state once these events apply.
pub fn state_after(events: Vec<SubscriptionEvent>) -> SubscriptionState {
    aggregate(events).state().unwrap().clone()
}

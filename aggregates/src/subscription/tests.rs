//! Given/when/then tests of the `Subscription` aggregate: one test per rule, and one table of
//! what each status allows (`status_transitions`): to add a case, add a row.
#![allow(clippy::unwrap_used)]

use chrono::{DateTime, Duration, TimeZone, Utc};
use cqrs_es::test::{AggregateTestExecutor, TestFramework};
use cqrs_es::Aggregate;
use serde_json::{json, Map};
use uuid::Uuid;

use super::aggregate::{MAX_DEVICE_LIMIT, MAX_TEXT_LEN};
use super::{
    DeactivationReason, DetailsChange, DeviceDetails, DeviceInfo, NewSubscription, PeriodChange,
    PresentedToken, Status, Subscription, SubscriptionAction, SubscriptionCommand,
    SubscriptionError, SubscriptionEvent,
};
use crate::values::{DeviceId, Email, Plan, Sha256Hex, SubscriptionId};

use SubscriptionAction as A;
use SubscriptionError as Error;
use SubscriptionEvent as E;

// ---------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------

/// Creation time of every fixture subscription.
fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()
}

/// `n` days after `t0()`.
fn day(n: i64) -> DateTime<Utc> {
    t0() + Duration::days(n)
}

/// When commands are handled unless a test says otherwise: within the period and the trial.
fn now() -> DateTime<Utc> {
    day(1)
}

/// End of the fixture subscription's period.
fn period_end() -> DateTime<Utc> {
    day(365)
}

/// End of the fixture trial.
fn trial_end() -> DateTime<Utc> {
    day(14)
}

const LAPTOP: u128 = 1;
const DESKTOP: u128 = 2;
const PHONE: u128 = 3;
const UNKNOWN: u128 = 99;

fn device_id(n: u128) -> DeviceId {
    DeviceId(Uuid::from_u128(0xd0_0000 + n))
}

fn fingerprint(n: u128) -> Sha256Hex {
    Sha256Hex::parse(&format!("{:064x}", 0xf0_0000 + n)).unwrap()
}

/// Differs from the others in its first digits too, which tokens carry as the key's ref.
fn key_hash(n: u128) -> Sha256Hex {
    Sha256Hex::parse(&format!("{:016x}{:048x}", 0xa0_0000 + n, 0xa0_0000 + n)).unwrap()
}

fn plan(slug: &str) -> Plan {
    Plan::parse(slug).unwrap()
}

fn email(raw: &str) -> Email {
    Email::parse(raw).unwrap()
}

fn new_subscription() -> NewSubscription {
    NewSubscription {
        subscription_id: SubscriptionId(Uuid::from_u128(1)),
        customer_email: email("ann@example.com"),
        customer_name: "Ann Example".to_owned(),
        organization: Some("Example Ltd".to_owned()),
        plan: plan("pro"),
        starts_at: t0(),
        expires_at: Some(period_end()),
        trial_ends_at: None,
        max_devices: 2,
        features: vec!["reports".to_owned()],
        metadata: Map::new(),
        key_hash: key_hash(1),
        key_prefix: "FLX-AB12C".to_owned(),
        policy_id: None,
        overrides: vec![],
    }
}

/// The events `create` must emit for `new` at `t0()`.
fn creation_events(new: NewSubscription, status: Status) -> Vec<SubscriptionEvent> {
    vec![
        E::SubscriptionCreated {
            subscription_id: new.subscription_id,
            customer_email: new.customer_email,
            customer_name: new.customer_name,
            organization: new.organization,
            plan: new.plan,
            status,
            starts_at: new.starts_at,
            expires_at: new.expires_at,
            trial_ends_at: new.trial_ends_at,
            max_devices: new.max_devices,
            features: new.features,
            metadata: new.metadata,
            at: t0(),
            policy_id: None,
            policy_version: None,
            overrides: vec![],
        },
        E::LicenseKeyIssued {
            key_hash: new.key_hash,
            key_prefix: new.key_prefix,
            at: t0(),
        },
    ]
}

/// An active subscription (2 devices, period ending `period_end()`) with its key issued.
fn created() -> Vec<SubscriptionEvent> {
    creation_events(new_subscription(), Status::Active)
}

/// A trialing subscription whose trial ends at `trial_end()`.
fn created_trialing() -> Vec<SubscriptionEvent> {
    let new = NewSubscription {
        trial_ends_at: Some(trial_end()),
        ..new_subscription()
    };
    creation_events(new, Status::Trialing)
}

/// `created()` plus more events.
fn created_and(more: Vec<SubscriptionEvent>) -> Vec<SubscriptionEvent> {
    let mut events = created();
    events.extend(more);
    events
}

/// A device (id and fingerprint numbered `n`) activated at `t0()`, leaving `active_devices`.
fn activated(n: u128, active_devices: u32) -> SubscriptionEvent {
    activated_at(n, active_devices, t0())
}

fn activated_at(n: u128, active_devices: u32, at: DateTime<Utc>) -> SubscriptionEvent {
    E::DeviceActivated {
        device_id: device_id(n),
        fingerprint_hash: fingerprint(n),
        info: DeviceInfo::default(),
        active_devices,
        at,
        policy_version: None,
        lease: None,
    }
}

fn deactivated(n: u128, reason: DeactivationReason, active_devices: u32) -> SubscriptionEvent {
    E::DeviceDeactivated {
        device_id: device_id(n),
        reason,
        active_devices,
        at: t0(),
    }
}

fn suspended() -> SubscriptionEvent {
    E::SubscriptionSuspended {
        previous_status: Status::Active,
        reason: None,
        at: t0(),
    }
}

fn past_due() -> SubscriptionEvent {
    E::SubscriptionMarkedPastDue {
        previous_status: Status::Active,
        at: t0(),
    }
}

fn canceled() -> SubscriptionEvent {
    E::SubscriptionCanceled {
        previous_status: Status::Active,
        reason: None,
        at: t0(),
    }
}

fn deleted() -> SubscriptionEvent {
    E::SubscriptionDeleted { at: t0() }
}

/// The test framework given these past events.
fn given(events: Vec<SubscriptionEvent>) -> AggregateTestExecutor<Subscription> {
    TestFramework::<Subscription>::with(()).given(events)
}

/// A command handled at `now()`.
fn cmd(action: SubscriptionAction) -> SubscriptionCommand {
    SubscriptionCommand::new(now(), action)
}

/// A command handled at `at`.
fn cmd_at(at: DateTime<Utc>, action: SubscriptionAction) -> SubscriptionCommand {
    SubscriptionCommand::new(at, action)
}

fn create(new: NewSubscription) -> SubscriptionCommand {
    cmd_at(t0(), A::CreateSubscription(new))
}

/// Activation of the device numbered `n`, proposing id `n` and fingerprint `n`.
fn activate(n: u128) -> SubscriptionAction {
    activate_as(n, n)
}

/// Activation of the device with fingerprint `fp`, proposing the id numbered `id`.
fn activate_as(id: u128, fp: u128) -> SubscriptionAction {
    A::ActivateDevice(device(id, fp))
}

/// The device of an activation, with id `id`, fingerprint `fp` and no description: the one
/// place that builds the command's device.
fn device(id: u128, fp: u128) -> DeviceDetails {
    DeviceDetails {
        device_id: device_id(id),
        fingerprint_hash: fingerprint(fp),
        info: DeviceInfo::default(),
    }
}

fn change_limit(max_devices: u32, deactivate: &[u128]) -> SubscriptionAction {
    A::ChangeDeviceLimit {
        max_devices: Some(max_devices),
        deactivate_device_ids: deactivate.iter().map(|n| device_id(*n)).collect(),
    }
}

fn change_period(
    starts_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    trial_ends_at: Option<DateTime<Utc>>,
) -> SubscriptionAction {
    A::ChangePeriod(PeriodChange {
        starts_at: Some(starts_at),
        expires_at: Some(expires_at),
        trial_ends_at: Some(trial_ends_at),
    })
}

/// A token request from the device with fingerprint `fp`, for a week from `now()`.
fn issue_token(fp: u128) -> SubscriptionAction {
    issue_token_until(fp, now() + Duration::days(7))
}

fn issue_token_until(fp: u128, expires_at: DateTime<Utc>) -> SubscriptionAction {
    A::IssueLicenseToken {
        fingerprint_hash: fingerprint(fp),
        token_id: Uuid::from_u128(0x70c3),
        expires_at,
    }
}

/// The token issued to the device numbered `n`.
fn token_issued(n: u128, expires_at: DateTime<Utc>, at: DateTime<Utc>) -> SubscriptionEvent {
    E::LicenseTokenIssued {
        device_id: device_id(n),
        token_id: Uuid::from_u128(0x70c3),
        expires_at,
        at,
    }
}

/// One of every command kind but `CreateSubscription`.
fn every_non_create_action() -> Vec<SubscriptionAction> {
    vec![
        A::ChangePlan {
            plan: plan("enterprise"),
        },
        change_limit(5, &[]),
        change_period(t0(), Some(day(730)), None),
        A::UpdateDetails(DetailsChange {
            customer_name: Some("Bob".to_owned()),
            ..DetailsChange::default()
        }),
        A::SuspendSubscription { reason: None },
        A::ResumeSubscription,
        A::MarkPastDue,
        A::CancelSubscription { reason: None },
        A::DeleteSubscription,
        regenerate_key(2, false),
        activate(LAPTOP),
        A::DeactivateDevice {
            device_id: device_id(LAPTOP),
            reason: DeactivationReason::Admin,
        },
        A::DeactivateDeviceByFingerprint {
            fingerprint_hash: fingerprint(LAPTOP),
            reason: DeactivationReason::Client,
        },
        A::UpdateDevice {
            device_id: device_id(LAPTOP),
            name: Some("Work".to_owned()),
            notes: None,
        },
        issue_token(LAPTOP),
        verify_token(LAPTOP, Some(key_hash(1)), t0()),
    ]
}

/// A new key numbered `n`, deactivating every device or none.
fn regenerate_key(n: u128, deactivate_devices: bool) -> SubscriptionAction {
    A::RegenerateLicenseKey {
        key_hash: key_hash(n),
        key_prefix: format!("FLX-{n:05}"),
        deactivate_devices,
    }
}

fn key_regenerated(from: u128, to: u128, at: DateTime<Utc>) -> SubscriptionEvent {
    E::LicenseKeyRegenerated {
        previous_key_hash: Some(key_hash(from)),
        key_hash: key_hash(to),
        key_prefix: format!("FLX-{to:05}"),
        at,
    }
}

/// The token issued at `issued_at` to the device numbered `n`, under the key with this hash
/// (`None`: a token from before tokens named their key), presented for checking.
fn verify_token(
    n: u128,
    issued_under: Option<Sha256Hex>,
    issued_at: DateTime<Utc>,
) -> SubscriptionAction {
    A::VerifyLicenseToken {
        presented: PresentedToken {
            device_id: device_id(n),
            license_key_ref: issued_under.map(|hash| hash.as_str()[..16].to_owned()),
            issued_at,
        },
    }
}

/// An aggregate rebuilt from events, for `status_at` checks.
fn aggregate(events: Vec<SubscriptionEvent>) -> Subscription {
    let mut subscription = Subscription::default();
    for event in events {
        subscription.apply(event);
    }
    subscription
}

fn too_long_text() -> String {
    "x".repeat(MAX_TEXT_LEN + 1)
}

// ---------------------------------------------------------------------------------------
// Create
// ---------------------------------------------------------------------------------------

#[test]
fn create_emits_subscription_created_active_and_license_key_issued() {
    TestFramework::<Subscription>::with(())
        .given_no_previous_events()
        .when(create(new_subscription()))
        .then_expect_events(vec![
            E::SubscriptionCreated {
                subscription_id: SubscriptionId(Uuid::from_u128(1)),
                customer_email: email("ann@example.com"),
                customer_name: "Ann Example".to_owned(),
                organization: Some("Example Ltd".to_owned()),
                plan: plan("pro"),
                status: Status::Active,
                starts_at: t0(),
                expires_at: Some(period_end()),
                trial_ends_at: None,
                max_devices: 2,
                features: vec!["reports".to_owned()],
                metadata: Map::new(),
                at: t0(),
                policy_id: None,
                policy_version: None,
                overrides: vec![],
            },
            E::LicenseKeyIssued {
                key_hash: key_hash(1),
                key_prefix: "FLX-AB12C".to_owned(),
                at: t0(),
            },
        ]);
}

#[test]
fn create_with_a_trial_starts_trialing() {
    let new = NewSubscription {
        trial_ends_at: Some(trial_end()),
        ..new_subscription()
    };
    given(vec![])
        .when(create(new.clone()))
        .then_expect_events(creation_events(new, Status::Trialing));
}

#[test]
fn create_a_perpetual_license_without_expiry() {
    let new = NewSubscription {
        expires_at: None,
        ..new_subscription()
    };
    given(vec![])
        .when(create(new.clone()))
        .then_expect_events(creation_events(new, Status::Active));
}

#[test]
fn create_with_zero_devices_is_invalid_device_limit() {
    let new = NewSubscription {
        max_devices: 0,
        ..new_subscription()
    };
    given(vec![])
        .when(create(new))
        .then_expect_error(Error::InvalidDeviceLimit {
            max: MAX_DEVICE_LIMIT,
        });
}

#[test]
fn create_above_max_device_limit_is_invalid_device_limit() {
    let new = NewSubscription {
        max_devices: MAX_DEVICE_LIMIT + 1,
        ..new_subscription()
    };
    given(vec![])
        .when(create(new))
        .then_expect_error(Error::InvalidDeviceLimit {
            max: MAX_DEVICE_LIMIT,
        });
}

#[test]
fn create_accepts_device_limits_from_one_to_max() {
    for max_devices in [1, MAX_DEVICE_LIMIT] {
        let new = NewSubscription {
            max_devices,
            ..new_subscription()
        };
        given(vec![])
            .when(create(new.clone()))
            .then_expect_events(creation_events(new, Status::Active));
    }
}

#[test]
fn create_expiring_at_or_before_start_is_invalid_period() {
    for expires_at in [t0(), day(-1)] {
        let new = NewSubscription {
            expires_at: Some(expires_at),
            ..new_subscription()
        };
        given(vec![])
            .when(create(new))
            .then_expect_error(Error::InvalidPeriod);
    }
}

#[test]
fn create_with_trial_ending_at_or_before_start_is_invalid_period() {
    for trial_ends_at in [t0(), day(-1)] {
        let new = NewSubscription {
            trial_ends_at: Some(trial_ends_at),
            ..new_subscription()
        };
        given(vec![])
            .when(create(new))
            .then_expect_error(Error::InvalidPeriod);
    }
}

#[test]
fn create_with_empty_customer_name_is_invalid_text() {
    for name in ["", "   "] {
        let new = NewSubscription {
            customer_name: name.to_owned(),
            ..new_subscription()
        };
        given(vec![])
            .when(create(new))
            .then_expect_error(Error::InvalidText);
    }
}

#[test]
fn create_with_too_long_customer_name_is_invalid_text() {
    let new = NewSubscription {
        customer_name: too_long_text(),
        ..new_subscription()
    };
    given(vec![])
        .when(create(new))
        .then_expect_error(Error::InvalidText);
}

#[test]
fn create_accepts_a_customer_name_of_max_length() {
    let new = NewSubscription {
        customer_name: "x".repeat(MAX_TEXT_LEN),
        ..new_subscription()
    };
    given(vec![])
        .when(create(new.clone()))
        .then_expect_events(creation_events(new, Status::Active));
}

#[test]
fn create_with_empty_organization_is_invalid_text() {
    let new = NewSubscription {
        organization: Some(String::new()),
        ..new_subscription()
    };
    given(vec![])
        .when(create(new))
        .then_expect_error(Error::InvalidText);
}

// ---------------------------------------------------------------------------------------
// Device activation
// ---------------------------------------------------------------------------------------

#[test]
fn activation_counts_the_active_devices() {
    given(created_and(vec![activated(LAPTOP, 1)]))
        .when(cmd(activate(DESKTOP)))
        .then_expect_events(vec![activated_at(DESKTOP, 2, now())]);
}

#[test]
fn activation_beyond_max_devices_is_device_limit_reached() {
    given(created_and(vec![
        activated(LAPTOP, 1),
        activated(DESKTOP, 2),
    ]))
    .when(cmd(activate(PHONE)))
    .then_expect_error(Error::DeviceLimitReached {
        max_devices: 2,
        in_use: 2,
    });
}

#[test]
fn reactivating_an_active_fingerprint_emits_no_events() {
    given(created_and(vec![activated(LAPTOP, 1)]))
        .when(cmd(activate_as(UNKNOWN, LAPTOP)))
        .then_expect_events(vec![]);
}

#[test]
fn reactivating_an_active_fingerprint_at_the_device_limit_emits_no_events() {
    given(created_and(vec![
        activated(LAPTOP, 1),
        activated(DESKTOP, 2),
    ]))
    .when(cmd(activate(LAPTOP)))
    .then_expect_events(vec![]);
}

#[test]
fn a_deactivated_fingerprint_reactivates_as_a_new_device() {
    given(created_and(vec![
        activated(LAPTOP, 1),
        deactivated(LAPTOP, DeactivationReason::Client, 0),
    ]))
    .when(cmd(activate_as(UNKNOWN, LAPTOP)))
    .then_expect_events(vec![E::DeviceActivated {
        device_id: device_id(UNKNOWN),
        fingerprint_hash: fingerprint(LAPTOP),
        info: DeviceInfo::default(),
        active_devices: 1,
        at: now(),
        policy_version: None,
        lease: None,
    }]);
}

#[test]
fn a_deactivated_device_frees_its_slot() {
    given(created_and(vec![
        activated(LAPTOP, 1),
        activated(DESKTOP, 2),
        deactivated(LAPTOP, DeactivationReason::Admin, 1),
    ]))
    .when(cmd(activate(PHONE)))
    .then_expect_events(vec![activated_at(PHONE, 2, now())]);
}

#[test]
fn activation_with_a_too_long_device_name_is_invalid_text() {
    let action = A::ActivateDevice(DeviceDetails {
        info: DeviceInfo {
            name: Some(too_long_text()),
            ..DeviceInfo::default()
        },
        ..device(LAPTOP, LAPTOP)
    });
    given(created())
        .when(cmd(action))
        .then_expect_error(Error::InvalidText);
}

#[test]
fn activation_carries_the_device_details() {
    let details = DeviceDetails {
        info: DeviceInfo {
            name: Some("Ann's laptop".to_owned()),
            platform: Some("linux".to_owned()),
            os_version: Some("6.8".to_owned()),
            app_version: Some("2.1.0".to_owned()),
            hostname: Some("ann-laptop".to_owned()),
        },
        ..device(LAPTOP, LAPTOP)
    };
    given(created())
        .when(cmd(A::ActivateDevice(details.clone())))
        .then_expect_events(vec![E::DeviceActivated {
            device_id: details.device_id,
            fingerprint_hash: details.fingerprint_hash,
            info: details.info,
            active_devices: 1,
            at: now(),
            policy_version: None,
            lease: None,
        }]);
}

// ---------------------------------------------------------------------------------------
// Device limit
// ---------------------------------------------------------------------------------------

#[test]
fn raising_the_device_limit_emits_limit_changed() {
    given(created_and(vec![activated(LAPTOP, 1)]))
        .when(cmd(change_limit(5, &[])))
        .then_expect_events(vec![E::SubscriptionDeviceLimitChanged {
            previous_max_devices: 2,
            max_devices: 5,
            at: now(),
        }]);
}

#[test]
fn lowering_the_device_limit_down_to_the_active_count_is_allowed() {
    given(created_and(vec![activated(LAPTOP, 1)]))
        .when(cmd(change_limit(1, &[])))
        .then_expect_events(vec![E::SubscriptionDeviceLimitChanged {
            previous_max_devices: 2,
            max_devices: 1,
            at: now(),
        }]);
}

#[test]
fn lowering_the_device_limit_below_the_active_count_is_refused() {
    given(created_and(vec![
        activated(LAPTOP, 1),
        activated(DESKTOP, 2),
    ]))
    .when(cmd(change_limit(1, &[])))
    .then_expect_error(Error::DeviceLimitBelowActiveCount {
        active: 2,
        requested: 1,
        must_deactivate: 1,
    });
}

#[test]
fn lowering_the_device_limit_naming_too_few_devices_is_refused() {
    let events = created_and(vec![
        E::SubscriptionDeviceLimitChanged {
            previous_max_devices: 2,
            max_devices: 3,
            at: t0(),
        },
        activated(LAPTOP, 1),
        activated(DESKTOP, 2),
        activated(PHONE, 3),
    ]);
    given(events)
        .when(cmd(change_limit(1, &[LAPTOP])))
        .then_expect_error(Error::DeviceLimitBelowActiveCount {
            active: 3,
            requested: 1,
            must_deactivate: 2,
        });
}

#[test]
fn lowering_the_device_limit_naming_enough_devices_deactivates_them_first() {
    let events = created_and(vec![
        E::SubscriptionDeviceLimitChanged {
            previous_max_devices: 2,
            max_devices: 3,
            at: t0(),
        },
        activated(LAPTOP, 1),
        activated(DESKTOP, 2),
        activated(PHONE, 3),
    ]);
    given(events)
        .when(cmd(change_limit(1, &[LAPTOP, DESKTOP])))
        .then_expect_events(vec![
            E::DeviceDeactivated {
                device_id: device_id(LAPTOP),
                reason: DeactivationReason::LimitReduced,
                active_devices: 2,
                at: now(),
            },
            E::DeviceDeactivated {
                device_id: device_id(DESKTOP),
                reason: DeactivationReason::LimitReduced,
                active_devices: 1,
                at: now(),
            },
            E::SubscriptionDeviceLimitChanged {
                previous_max_devices: 3,
                max_devices: 1,
                at: now(),
            },
        ]);
}

#[test]
fn naming_a_device_twice_when_lowering_the_limit_deactivates_it_once() {
    given(created_and(vec![
        activated(LAPTOP, 1),
        activated(DESKTOP, 2),
    ]))
    .when(cmd(change_limit(1, &[LAPTOP, LAPTOP])))
    .then_expect_events(vec![
        E::DeviceDeactivated {
            device_id: device_id(LAPTOP),
            reason: DeactivationReason::LimitReduced,
            active_devices: 1,
            at: now(),
        },
        E::SubscriptionDeviceLimitChanged {
            previous_max_devices: 2,
            max_devices: 1,
            at: now(),
        },
    ]);
}

#[test]
fn changing_the_device_limit_naming_an_unknown_device_is_device_not_found() {
    given(created_and(vec![
        activated(LAPTOP, 1),
        activated(DESKTOP, 2),
    ]))
    .when(cmd(change_limit(1, &[UNKNOWN])))
    .then_expect_error(Error::DeviceNotFound(device_id(UNKNOWN)));
}

#[test]
fn changing_the_device_limit_naming_an_inactive_device_is_device_not_active() {
    let events = created_and(vec![
        activated(LAPTOP, 1),
        activated(DESKTOP, 2),
        deactivated(LAPTOP, DeactivationReason::Client, 1),
    ]);
    given(events)
        .when(cmd(change_limit(1, &[LAPTOP])))
        .then_expect_error(Error::DeviceNotActive(device_id(LAPTOP)));
}

#[test]
fn the_same_device_limit_without_devices_emits_no_events() {
    given(created_and(vec![activated(LAPTOP, 1)]))
        .when(cmd(change_limit(2, &[])))
        .then_expect_events(vec![]);
}

#[test]
fn an_out_of_range_device_limit_is_invalid_device_limit() {
    for max_devices in [0, MAX_DEVICE_LIMIT + 1] {
        given(created())
            .when(cmd(change_limit(max_devices, &[])))
            .then_expect_error(Error::InvalidDeviceLimit {
                max: MAX_DEVICE_LIMIT,
            });
    }
}

// ---------------------------------------------------------------------------------------
// Plan, period and details
// ---------------------------------------------------------------------------------------

#[test]
fn change_plan_emits_plan_changed() {
    given(created())
        .when(cmd(A::ChangePlan {
            plan: plan("enterprise"),
        }))
        .then_expect_events(vec![E::SubscriptionPlanChanged {
            previous_plan: plan("pro"),
            plan: plan("enterprise"),
            at: now(),
        }]);
}

#[test]
fn change_to_the_same_plan_emits_no_events() {
    given(created())
        .when(cmd(A::ChangePlan { plan: plan("pro") }))
        .then_expect_events(vec![]);
}

#[test]
fn change_period_emits_period_changed() {
    given(created())
        .when(cmd(change_period(t0(), Some(day(730)), None)))
        .then_expect_events(vec![E::SubscriptionPeriodChanged {
            starts_at: t0(),
            expires_at: Some(day(730)),
            trial_ends_at: None,
            at: now(),
        }]);
}

#[test]
fn an_unchanged_period_emits_no_events() {
    given(created())
        .when(cmd(change_period(t0(), Some(period_end()), None)))
        .then_expect_events(vec![]);
}

#[test]
fn a_period_expiring_at_or_before_its_start_is_invalid_period() {
    for expires_at in [t0(), day(-1)] {
        given(created())
            .when(cmd(change_period(t0(), Some(expires_at), None)))
            .then_expect_error(Error::InvalidPeriod);
    }
}

#[test]
fn a_period_whose_trial_ends_at_or_before_its_start_is_invalid_period() {
    given(created_trialing())
        .when(cmd(change_period(t0(), Some(period_end()), Some(t0()))))
        .then_expect_error(Error::InvalidPeriod);
}

#[test]
fn create_with_an_instant_outside_1970_to_9999_is_instant_out_of_range() {
    let before_1970 = Utc.with_ymd_and_hms(1969, 12, 31, 23, 59, 59).unwrap();
    let after_9999 = Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap();
    for new in [
        NewSubscription {
            starts_at: before_1970,
            ..new_subscription()
        },
        NewSubscription {
            expires_at: Some(after_9999),
            ..new_subscription()
        },
        NewSubscription {
            trial_ends_at: Some(after_9999),
            ..new_subscription()
        },
    ] {
        given(vec![])
            .when(create(new))
            .then_expect_error(Error::InstantOutOfRange);
    }
}

#[test]
fn a_period_set_outside_1970_to_9999_is_instant_out_of_range() {
    let after_9999 = Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap();
    given(created())
        .when(cmd(change_period(t0(), Some(after_9999), None)))
        .then_expect_error(Error::InstantOutOfRange);
}

#[test]
fn the_last_supported_instant_is_a_valid_period_end() {
    let last = Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap();
    given(created())
        .when(cmd(change_period(t0(), Some(last), None)))
        .then_expect_events(vec![E::SubscriptionPeriodChanged {
            starts_at: t0(),
            expires_at: Some(last),
            trial_ends_at: None,
            at: now(),
        }]);
}

#[test]
fn renewing_an_expired_subscription_makes_activation_work_again() {
    let at = day(400);
    given(created())
        .when(cmd_at(at, activate(LAPTOP)))
        .then_expect_error(Error::LicenseExpired);
    let renewal = E::SubscriptionPeriodChanged {
        starts_at: t0(),
        expires_at: Some(day(730)),
        trial_ends_at: None,
        at,
    };
    given(created_and(vec![renewal]))
        .when(cmd_at(at, activate(LAPTOP)))
        .then_expect_events(vec![activated_at(LAPTOP, 1, at)]);
}

#[test]
fn update_details_emits_only_the_changed_fields() {
    let change = DetailsChange {
        customer_email: Some(email("ann@example.com")), // unchanged
        customer_name: Some("Ann Other".to_owned()),
        organization: Some(Some("Example Ltd".to_owned())), // unchanged
        features: Some(vec!["reports".to_owned(), "export".to_owned()]),
        metadata: None,
    };
    given(created())
        .when(cmd(A::UpdateDetails(change)))
        .then_expect_events(vec![E::SubscriptionDetailsUpdated {
            customer_email: None,
            customer_name: Some("Ann Other".to_owned()),
            organization: None,
            features: Some(vec!["reports".to_owned(), "export".to_owned()]),
            metadata: None,
            at: now(),
        }]);
}

#[test]
fn update_details_can_clear_the_organization_and_set_metadata() {
    let mut metadata = Map::new();
    metadata.insert("crm_id".to_owned(), json!("C-42"));
    let change = DetailsChange {
        organization: Some(None),
        metadata: Some(metadata.clone()),
        ..DetailsChange::default()
    };
    given(created())
        .when(cmd(A::UpdateDetails(change)))
        .then_expect_events(vec![E::SubscriptionDetailsUpdated {
            customer_email: None,
            customer_name: None,
            organization: Some(None),
            features: None,
            metadata: Some(metadata),
            at: now(),
        }]);
}

#[test]
fn details_updated_round_trips_through_json_telling_cleared_from_unchanged() {
    // Events are stored as JSON and re-read on every load: a cleared organization must not
    // come back as "unchanged".
    for organization in [None, Some(None), Some(Some("New Org".to_owned()))] {
        let event = E::SubscriptionDetailsUpdated {
            customer_email: None,
            customer_name: Some("Ann".to_owned()),
            organization,
            features: None,
            metadata: None,
            at: now(),
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(serde_json::from_value::<E>(json).unwrap(), event);
    }
}

#[test]
fn update_details_with_nothing_changed_emits_no_events() {
    for change in [
        DetailsChange::default(),
        DetailsChange {
            customer_email: Some(email("ann@example.com")),
            customer_name: Some("Ann Example".to_owned()),
            organization: Some(Some("Example Ltd".to_owned())),
            features: Some(vec!["reports".to_owned()]),
            metadata: Some(Map::new()),
        },
    ] {
        given(created())
            .when(cmd(A::UpdateDetails(change)))
            .then_expect_events(vec![]);
    }
}

#[test]
fn update_details_with_an_empty_or_too_long_name_is_invalid_text() {
    for name in [String::new(), too_long_text()] {
        let change = DetailsChange {
            customer_name: Some(name),
            ..DetailsChange::default()
        };
        given(created())
            .when(cmd(A::UpdateDetails(change)))
            .then_expect_error(Error::InvalidText);
    }
}

#[test]
fn update_details_with_an_empty_organization_is_invalid_text() {
    let change = DetailsChange {
        organization: Some(Some(" ".to_owned())),
        ..DetailsChange::default()
    };
    given(created())
        .when(cmd(A::UpdateDetails(change)))
        .then_expect_error(Error::InvalidText);
}

// ---------------------------------------------------------------------------------------
// Status transitions: what each status allows, one row per (start, command, outcome)
// ---------------------------------------------------------------------------------------

/// Where a row of the table starts.
#[derive(Clone, Copy, Debug)]
enum Start {
    NeverCreated,
    Trialing,
    Active,
    PastDue,
    Suspended,
    Canceled,
    Deleted,
}

type Outcome = Result<Vec<SubscriptionEvent>, SubscriptionError>;

/// From `start`, `action` handled at `at` emits the events of `expect` or is refused with
/// its error. With `laptop`, the laptop was activated before the subscription got to `start`.
struct Row {
    start: Start,
    laptop: bool,
    at: DateTime<Utc>,
    action: SubscriptionAction,
    expect: Outcome,
}

/// A row without devices, its command handled at `now()`.
fn row(start: Start, action: SubscriptionAction, expect: Outcome) -> Row {
    Row {
        start,
        laptop: false,
        at: now(),
        action,
        expect,
    }
}

impl Row {
    fn with_laptop(self) -> Self {
        Self {
            laptop: true,
            ..self
        }
    }

    fn at(self, at: DateTime<Utc>) -> Self {
        Self { at, ..self }
    }

    fn history(&self) -> Vec<SubscriptionEvent> {
        let mut events = match self.start {
            Start::NeverCreated => return vec![],
            Start::Trialing => created_trialing(),
            _ => created(),
        };
        if self.laptop {
            events.push(activated(LAPTOP, 1));
        }
        events.extend(match self.start {
            Start::PastDue => Some(past_due()),
            Start::Suspended => Some(suspended()),
            Start::Canceled => Some(canceled()),
            Start::Deleted => Some(deleted()),
            _ => None,
        });
        events
    }

    /// e.g. `Suspended, laptop active, IssueLicenseToken at 2025-01-02 00:00:00 UTC`
    fn name(&self) -> String {
        let action = format!("{:?}", self.action);
        let command: String = action
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect();
        let laptop = if self.laptop { ", laptop active" } else { "" };
        format!("{:?}{laptop}, {command} at {}", self.start, self.at)
    }
}

fn refused(from: Status, to: Status) -> Outcome {
    Err(Error::InvalidStatusTransition { from, to })
}

fn status_transitions() -> Vec<Row> {
    use Start::*;
    let mut rows = vec![
        // Suspend
        row(
            Active,
            A::SuspendSubscription {
                reason: Some("chargeback".to_owned()),
            },
            Ok(vec![E::SubscriptionSuspended {
                previous_status: Status::Active,
                reason: Some("chargeback".to_owned()),
                at: now(),
            }]),
        ),
        row(
            Trialing,
            A::SuspendSubscription { reason: None },
            Ok(vec![E::SubscriptionSuspended {
                previous_status: Status::Trialing,
                reason: None,
                at: now(),
            }]),
        ),
        row(
            PastDue,
            A::SuspendSubscription { reason: None },
            Ok(vec![E::SubscriptionSuspended {
                previous_status: Status::PastDue,
                reason: None,
                at: now(),
            }]),
        ),
        row(
            Suspended,
            A::SuspendSubscription { reason: None },
            refused(Status::Suspended, Status::Suspended),
        ),
        row(
            Canceled,
            A::SuspendSubscription { reason: None },
            refused(Status::Canceled, Status::Suspended),
        ),
        row(
            Active,
            A::SuspendSubscription {
                reason: Some(too_long_text()),
            },
            Err(Error::InvalidText),
        ),
        // Resume
        row(
            Suspended,
            A::ResumeSubscription,
            Ok(vec![E::SubscriptionResumed {
                previous_status: Status::Suspended,
                at: now(),
            }]),
        ),
        row(
            PastDue,
            A::ResumeSubscription,
            Ok(vec![E::SubscriptionResumed {
                previous_status: Status::PastDue,
                at: now(),
            }]),
        ),
        // Resuming a trial converts it.
        row(
            Trialing,
            A::ResumeSubscription,
            Ok(vec![E::SubscriptionResumed {
                previous_status: Status::Trialing,
                at: now(),
            }]),
        ),
        row(
            Active,
            A::ResumeSubscription,
            refused(Status::Active, Status::Active),
        ),
        row(
            Canceled,
            A::ResumeSubscription,
            refused(Status::Canceled, Status::Active),
        ),
        // Mark past due
        row(
            Active,
            A::MarkPastDue,
            Ok(vec![E::SubscriptionMarkedPastDue {
                previous_status: Status::Active,
                at: now(),
            }]),
        ),
        row(
            Trialing,
            A::MarkPastDue,
            Ok(vec![E::SubscriptionMarkedPastDue {
                previous_status: Status::Trialing,
                at: now(),
            }]),
        ),
        row(
            PastDue,
            A::MarkPastDue,
            refused(Status::PastDue, Status::PastDue),
        ),
        row(
            Suspended,
            A::MarkPastDue,
            refused(Status::Suspended, Status::PastDue),
        ),
        row(
            Canceled,
            A::MarkPastDue,
            refused(Status::Canceled, Status::PastDue),
        ),
        // Cancel
        row(
            Active,
            A::CancelSubscription {
                reason: Some("customer request".to_owned()),
            },
            Ok(vec![E::SubscriptionCanceled {
                previous_status: Status::Active,
                reason: Some("customer request".to_owned()),
                at: now(),
            }]),
        ),
        row(
            Suspended,
            A::CancelSubscription { reason: None },
            Ok(vec![E::SubscriptionCanceled {
                previous_status: Status::Suspended,
                reason: None,
                at: now(),
            }]),
        ),
        row(
            Canceled,
            A::CancelSubscription { reason: None },
            refused(Status::Canceled, Status::Canceled),
        ),
        row(
            Active,
            A::CancelSubscription {
                reason: Some(String::new()),
            },
            Err(Error::InvalidText),
        ),
        // Delete: also a canceled subscription.
        row(
            Active,
            A::DeleteSubscription,
            Ok(vec![E::SubscriptionDeleted { at: now() }]),
        ),
        row(
            Canceled,
            A::DeleteSubscription,
            Ok(vec![E::SubscriptionDeleted { at: now() }]),
        ),
        // Create: never over an existing or a deleted subscription.
        row(
            Active,
            A::CreateSubscription(new_subscription()),
            Err(Error::AlreadyExists),
        )
        .at(t0()),
        row(
            Deleted,
            A::CreateSubscription(new_subscription()),
            Err(Error::AlreadyExists),
        )
        .at(t0()),
        // Activation: past due is a grace period; expiry is reached at `expires_at` or at
        // the end of the trial.
        row(
            Trialing,
            activate(LAPTOP),
            Ok(vec![activated_at(LAPTOP, 1, now())]),
        ),
        row(
            Active,
            activate(LAPTOP),
            Ok(vec![activated_at(LAPTOP, 1, now())]),
        ),
        row(
            PastDue,
            activate(LAPTOP),
            Ok(vec![activated_at(LAPTOP, 1, now())]),
        ),
        row(Suspended, activate(LAPTOP), Err(Error::LicenseSuspended)),
        row(Canceled, activate(LAPTOP), Err(Error::LicenseCanceled)),
        row(Active, activate(LAPTOP), Err(Error::LicenseExpired)).at(period_end()),
        row(Active, activate(LAPTOP), Err(Error::LicenseExpired))
            .at(period_end() + Duration::days(30)),
        row(
            Active,
            activate(LAPTOP),
            Ok(vec![activated_at(
                LAPTOP,
                1,
                period_end() - Duration::seconds(1),
            )]),
        )
        .at(period_end() - Duration::seconds(1)),
        row(Trialing, activate(LAPTOP), Err(Error::LicenseExpired)).at(trial_end()),
        row(PastDue, activate(LAPTOP), Err(Error::LicenseExpired)).at(period_end()),
        // License tokens: the same rules for a device already active.
        row(
            Active,
            issue_token(LAPTOP),
            Ok(vec![token_issued(LAPTOP, now() + Duration::days(7), now())]),
        )
        .with_laptop(),
        row(
            Trialing,
            issue_token(LAPTOP),
            Ok(vec![token_issued(LAPTOP, now() + Duration::days(7), now())]),
        )
        .with_laptop(),
        row(
            PastDue,
            issue_token(LAPTOP),
            Ok(vec![token_issued(LAPTOP, now() + Duration::days(7), now())]),
        )
        .with_laptop(),
        row(Suspended, issue_token(LAPTOP), Err(Error::LicenseSuspended)).with_laptop(),
        row(Canceled, issue_token(LAPTOP), Err(Error::LicenseCanceled)).with_laptop(),
        row(Active, issue_token(LAPTOP), Err(Error::LicenseExpired))
            .with_laptop()
            .at(period_end()),
        row(Trialing, issue_token(LAPTOP), Err(Error::LicenseExpired))
            .with_laptop()
            .at(trial_end()),
        // Canceled is final: nothing about the license changes any more.
        row(Canceled, change_limit(5, &[]), Err(Error::Canceled)),
        row(
            Canceled,
            A::ChangePlan {
                plan: plan("enterprise"),
            },
            Err(Error::Canceled),
        ),
        row(
            Canceled,
            change_period(t0(), Some(day(730)), None),
            Err(Error::Canceled),
        ),
        // An expired subscription can be renewed.
        row(
            Active,
            change_period(t0(), Some(day(730)), None),
            Ok(vec![E::SubscriptionPeriodChanged {
                starts_at: t0(),
                expires_at: Some(day(730)),
                trial_ends_at: None,
                at: day(400),
            }]),
        )
        .at(day(400)),
    ];
    // Every command but create, on a subscription never created or deleted.
    for action in every_non_create_action() {
        rows.push(row(NeverCreated, action.clone(), Err(Error::NotFound)));
        rows.push(row(Deleted, action, Err(Error::Deleted)).with_laptop());
    }
    rows
}

#[test]
fn each_status_allows_or_refuses_each_command_as_its_row_says() {
    let failures: Vec<String> = status_transitions()
        .into_iter()
        .enumerate()
        .filter_map(|(i, row)| {
            let outcome = given(row.history())
                .when(cmd_at(row.at, row.action.clone()))
                .inspect_result();
            (outcome != row.expect).then(|| {
                format!(
                    "row {i} ({}):\n  expected {:?}\n  got      {outcome:?}",
                    row.name(),
                    row.expect
                )
            })
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------
// License key
// ---------------------------------------------------------------------------------------

#[test]
fn regenerate_license_key_carries_the_previous_and_the_new_hash_and_keeps_the_devices() {
    given(created_and(vec![activated(LAPTOP, 1)]))
        .when(cmd(regenerate_key(2, false)))
        .then_expect_events(vec![key_regenerated(1, 2, now())]);
}

#[test]
fn regenerating_again_replaces_the_regenerated_key() {
    given(created_and(vec![key_regenerated(1, 2, t0())]))
        .when(cmd(regenerate_key(3, false)))
        .then_expect_events(vec![key_regenerated(2, 3, now())]);
}

#[test]
fn regenerating_with_deactivate_devices_deactivates_every_active_device() {
    let at = |n, active| E::DeviceDeactivated {
        device_id: device_id(n),
        reason: DeactivationReason::Admin,
        active_devices: active,
        at: now(),
    };
    given(created_and(vec![
        activated(LAPTOP, 1),
        activated(DESKTOP, 2),
        deactivated(LAPTOP, DeactivationReason::Client, 1),
        activated(PHONE, 2),
    ]))
    .when(cmd(regenerate_key(2, true)))
    .then_expect_events(vec![
        key_regenerated(1, 2, now()),
        at(DESKTOP, 1),
        at(PHONE, 0),
    ]);
}

#[test]
fn a_token_under_the_current_key_for_an_active_device_stands() {
    given(created_and(vec![activated(LAPTOP, 1)]))
        .when(cmd(verify_token(LAPTOP, Some(key_hash(1)), t0())))
        .then_expect_events(vec![]);
}

#[test]
fn a_token_issued_under_a_regenerated_key_is_revoked() {
    given(created_and(vec![
        activated(LAPTOP, 1),
        key_regenerated(1, 2, t0() + Duration::hours(1)),
    ]))
    .when(cmd(verify_token(LAPTOP, Some(key_hash(1)), day(2))))
    .then_expect_error(Error::TokenRevoked);
}

#[test]
fn a_token_issued_under_the_regenerated_key_stands() {
    given(created_and(vec![
        activated(LAPTOP, 1),
        key_regenerated(1, 2, t0() + Duration::hours(1)),
    ]))
    .when(cmd(verify_token(LAPTOP, Some(key_hash(2)), t0())))
    .then_expect_events(vec![]);
}

#[test]
fn a_revoked_token_is_refused_as_revoked_even_when_its_device_is_gone() {
    given(created_and(vec![
        activated(LAPTOP, 1),
        deactivated(LAPTOP, DeactivationReason::Admin, 0),
        key_regenerated(1, 2, t0()),
    ]))
    .when(cmd(verify_token(LAPTOP, Some(key_hash(1)), t0())))
    .then_expect_error(Error::TokenRevoked);
}

#[test]
fn a_token_naming_no_key_stands_only_when_issued_from_the_current_key_s_second_on() {
    let regenerated_at = t0() + Duration::milliseconds(10_500);
    let events = || {
        created_and(vec![
            activated(LAPTOP, 1),
            key_regenerated(1, 2, regenerated_at),
        ])
    };
    given(events())
        .when(cmd(verify_token(LAPTOP, None, t0() + Duration::seconds(9))))
        .then_expect_error(Error::TokenRevoked);
    given(events())
        .when(cmd(verify_token(
            LAPTOP,
            None,
            t0() + Duration::seconds(10),
        )))
        .then_expect_events(vec![]);
}

#[test]
fn a_token_of_a_deactivated_device_is_dead_after_its_fingerprint_returned() {
    // The laptop came back as a new device: the old device's token names the old id.
    given(created_and(vec![
        activated(LAPTOP, 1),
        deactivated(LAPTOP, DeactivationReason::Client, 0),
        E::DeviceActivated {
            device_id: device_id(UNKNOWN),
            fingerprint_hash: fingerprint(LAPTOP),
            info: DeviceInfo::default(),
            active_devices: 1,
            at: t0(),
            policy_version: None,
            lease: None,
        },
    ]))
    .when(cmd(verify_token(LAPTOP, Some(key_hash(1)), t0())))
    .then_expect_error(Error::DeviceNotActivated);
}

#[test]
fn a_token_of_a_deactivated_device_is_dead() {
    given(created_and(vec![
        activated(LAPTOP, 1),
        deactivated(LAPTOP, DeactivationReason::Admin, 0),
    ]))
    .when(cmd(verify_token(LAPTOP, Some(key_hash(1)), t0())))
    .then_expect_error(Error::DeviceNotActivated);
}

// ---------------------------------------------------------------------------------------
// Device deactivation, update and license tokens
// ---------------------------------------------------------------------------------------

#[test]
fn deactivate_an_active_device_emits_deactivated_with_the_remaining_count() {
    given(created_and(vec![
        activated(LAPTOP, 1),
        activated(DESKTOP, 2),
    ]))
    .when(cmd(A::DeactivateDevice {
        device_id: device_id(LAPTOP),
        reason: DeactivationReason::Client,
    }))
    .then_expect_events(vec![E::DeviceDeactivated {
        device_id: device_id(LAPTOP),
        reason: DeactivationReason::Client,
        active_devices: 1,
        at: now(),
    }]);
}

#[test]
fn deactivate_an_unknown_device_is_device_not_found() {
    given(created_and(vec![activated(LAPTOP, 1)]))
        .when(cmd(A::DeactivateDevice {
            device_id: device_id(UNKNOWN),
            reason: DeactivationReason::Admin,
        }))
        .then_expect_error(Error::DeviceNotFound(device_id(UNKNOWN)));
}

#[test]
fn deactivate_an_inactive_device_is_device_not_active() {
    given(created_and(vec![
        activated(LAPTOP, 1),
        deactivated(LAPTOP, DeactivationReason::Client, 0),
    ]))
    .when(cmd(A::DeactivateDevice {
        device_id: device_id(LAPTOP),
        reason: DeactivationReason::Admin,
    }))
    .then_expect_error(Error::DeviceNotActive(device_id(LAPTOP)));
}

#[test]
fn deactivate_by_fingerprint_deactivates_the_active_device_with_it() {
    given(created_and(vec![
        activated(LAPTOP, 1),
        activated(DESKTOP, 2),
    ]))
    .when(cmd(A::DeactivateDeviceByFingerprint {
        fingerprint_hash: fingerprint(DESKTOP),
        reason: DeactivationReason::Client,
    }))
    .then_expect_events(vec![E::DeviceDeactivated {
        device_id: device_id(DESKTOP),
        reason: DeactivationReason::Client,
        active_devices: 1,
        at: now(),
    }]);
}

#[test]
fn deactivate_by_an_unknown_fingerprint_is_device_not_activated() {
    given(created_and(vec![activated(LAPTOP, 1)]))
        .when(cmd(A::DeactivateDeviceByFingerprint {
            fingerprint_hash: fingerprint(UNKNOWN),
            reason: DeactivationReason::Client,
        }))
        .then_expect_error(Error::DeviceNotActivated);
}

#[test]
fn deactivate_by_the_fingerprint_of_an_inactive_device_is_device_not_activated() {
    given(created_and(vec![
        activated(LAPTOP, 1),
        deactivated(LAPTOP, DeactivationReason::Admin, 0),
    ]))
    .when(cmd(A::DeactivateDeviceByFingerprint {
        fingerprint_hash: fingerprint(LAPTOP),
        reason: DeactivationReason::Client,
    }))
    .then_expect_error(Error::DeviceNotActivated);
}

#[test]
fn a_superseded_key_is_refused_before_anything_is_said_about_devices() {
    let regenerated = E::LicenseKeyRegenerated {
        previous_key_hash: Some(key_hash(1)),
        key_hash: key_hash(2),
        key_prefix: "FLX-ZZ99Z".to_owned(),
        at: t0(),
    };
    let subscription = aggregate(created_and(vec![activated(LAPTOP, 1), regenerated]));
    let at = now();
    let verify_then_deactivate = [
        A::VerifyLicenseKey {
            key_hash: key_hash(1),
        },
        A::DeactivateDeviceByFingerprint {
            fingerprint_hash: fingerprint(UNKNOWN),
            reason: DeactivationReason::Client,
        },
    ];
    let first_refusal = verify_then_deactivate.into_iter().find_map(|action| {
        subscription
            .decide(SubscriptionCommand::new(at, action))
            .err()
    });
    assert_eq!(first_refusal, Some(Error::LicenseKeyMismatch));
}

#[test]
fn update_device_emits_only_the_changed_fields() {
    let named = E::DeviceUpdated {
        device_id: device_id(LAPTOP),
        name: Some("Work".to_owned()),
        notes: None,
        at: t0(),
    };
    given(created_and(vec![activated(LAPTOP, 1), named]))
        .when(cmd(A::UpdateDevice {
            device_id: device_id(LAPTOP),
            name: Some("Work".to_owned()),
            notes: Some("replaced in March".to_owned()),
        }))
        .then_expect_events(vec![E::DeviceUpdated {
            device_id: device_id(LAPTOP),
            name: None,
            notes: Some("replaced in March".to_owned()),
            at: now(),
        }]);
}

#[test]
fn update_device_without_changes_emits_no_events() {
    let named = E::DeviceUpdated {
        device_id: device_id(LAPTOP),
        name: Some("Work".to_owned()),
        notes: Some("desk 4".to_owned()),
        at: t0(),
    };
    for (name, notes) in [(None, None), (Some("Work"), Some("desk 4"))] {
        given(created_and(vec![activated(LAPTOP, 1), named.clone()]))
            .when(cmd(A::UpdateDevice {
                device_id: device_id(LAPTOP),
                name: name.map(str::to_owned),
                notes: notes.map(str::to_owned),
            }))
            .then_expect_events(vec![]);
    }
}

#[test]
fn update_an_inactive_device_is_allowed() {
    given(created_and(vec![
        activated(LAPTOP, 1),
        deactivated(LAPTOP, DeactivationReason::Client, 0),
    ]))
    .when(cmd(A::UpdateDevice {
        device_id: device_id(LAPTOP),
        name: None,
        notes: Some("returned".to_owned()),
    }))
    .then_expect_events(vec![E::DeviceUpdated {
        device_id: device_id(LAPTOP),
        name: None,
        notes: Some("returned".to_owned()),
        at: now(),
    }]);
}

#[test]
fn update_an_unknown_device_is_device_not_found() {
    given(created())
        .when(cmd(A::UpdateDevice {
            device_id: device_id(UNKNOWN),
            name: Some("Work".to_owned()),
            notes: None,
        }))
        .then_expect_error(Error::DeviceNotFound(device_id(UNKNOWN)));
}

#[test]
fn update_device_with_an_empty_or_too_long_text_is_invalid_text() {
    for (name, notes) in [(Some(String::new()), None), (None, Some(too_long_text()))] {
        given(created_and(vec![activated(LAPTOP, 1)]))
            .when(cmd(A::UpdateDevice {
                device_id: device_id(LAPTOP),
                name,
                notes,
            }))
            .then_expect_error(Error::InvalidText);
    }
}

#[test]
fn issue_license_token_names_the_device_its_fingerprint_activated() {
    // The laptop came back as a new device: the token names the active one.
    given(created_and(vec![
        activated(DESKTOP, 1),
        deactivated(DESKTOP, DeactivationReason::Client, 0),
        E::DeviceActivated {
            device_id: device_id(LAPTOP),
            fingerprint_hash: fingerprint(DESKTOP),
            info: DeviceInfo::default(),
            active_devices: 1,
            at: t0(),
            policy_version: None,
            lease: None,
        },
    ]))
    .when(cmd(issue_token(DESKTOP)))
    .then_expect_events(vec![token_issued(LAPTOP, now() + Duration::days(7), now())]);
}

#[test]
fn a_license_token_never_outlives_the_license() {
    given(created_and(vec![activated(LAPTOP, 1)]))
        .when(cmd(issue_token_until(
            LAPTOP,
            period_end() + Duration::days(30),
        )))
        .then_expect_events(vec![token_issued(LAPTOP, period_end(), now())]);
}

#[test]
fn a_license_token_issued_during_a_trial_never_outlives_the_trial() {
    let mut events = created_trialing();
    events.push(activated(LAPTOP, 1));
    given(events)
        .when(cmd(issue_token_until(
            LAPTOP,
            trial_end() + Duration::days(7),
        )))
        .then_expect_events(vec![token_issued(LAPTOP, trial_end(), now())]);
}

#[test]
fn a_license_token_of_a_converted_trial_is_not_capped_by_the_trial() {
    let mut events = created_trialing();
    events.push(activated(LAPTOP, 1));
    events.push(E::SubscriptionResumed {
        previous_status: Status::Trialing,
        at: t0(),
    });
    given(events)
        .when(cmd(issue_token_until(
            LAPTOP,
            trial_end() + Duration::days(7),
        )))
        .then_expect_events(vec![token_issued(
            LAPTOP,
            trial_end() + Duration::days(7),
            now(),
        )]);
}

#[test]
fn a_license_token_of_a_perpetual_license_keeps_its_requested_expiry() {
    let new = NewSubscription {
        expires_at: None,
        ..new_subscription()
    };
    let mut events = creation_events(new, Status::Active);
    events.push(activated(LAPTOP, 1));
    given(events)
        .when(cmd(issue_token_until(LAPTOP, day(1000))))
        .then_expect_events(vec![token_issued(LAPTOP, day(1000), now())]);
}

#[test]
fn issue_license_token_for_a_deactivated_fingerprint_is_device_not_activated() {
    given(created_and(vec![
        activated(LAPTOP, 1),
        deactivated(LAPTOP, DeactivationReason::Client, 0),
    ]))
    .when(cmd(issue_token(LAPTOP)))
    .then_expect_error(Error::DeviceNotActivated);
}

#[test]
fn issue_license_token_for_an_unknown_fingerprint_is_device_not_activated() {
    given(created_and(vec![activated(LAPTOP, 1)]))
        .when(cmd(issue_token(UNKNOWN)))
        .then_expect_error(Error::DeviceNotActivated);
}

// ---------------------------------------------------------------------------------------
// Derived status
// ---------------------------------------------------------------------------------------

#[test]
fn status_at_is_none_before_creation() {
    assert_eq!(Subscription::default().status_at(t0()), None);
}

#[test]
fn status_at_is_expired_once_expires_at_is_reached() {
    let subscription = aggregate(created());
    assert_eq!(
        subscription.status_at(period_end() - Duration::seconds(1)),
        Some(Status::Active)
    );
    assert_eq!(subscription.status_at(period_end()), Some(Status::Expired));
}

#[test]
fn status_at_is_expired_once_the_trial_ends() {
    let subscription = aggregate(created_trialing());
    assert_eq!(
        subscription.status_at(trial_end() - Duration::seconds(1)),
        Some(Status::Trialing)
    );
    assert_eq!(subscription.status_at(trial_end()), Some(Status::Expired));
}

#[test]
fn status_at_of_a_past_due_subscription_is_expired_after_its_period() {
    let subscription = aggregate(created_and(vec![past_due()]));
    assert_eq!(subscription.status_at(now()), Some(Status::PastDue));
    assert_eq!(subscription.status_at(period_end()), Some(Status::Expired));
}

#[test]
fn status_at_of_a_converted_trial_ignores_the_trial_end() {
    let resumed = E::SubscriptionResumed {
        previous_status: Status::Trialing,
        at: t0(),
    };
    let mut events = created_trialing();
    events.push(resumed);
    assert_eq!(
        aggregate(events).status_at(trial_end()),
        Some(Status::Active)
    );
}

#[test]
fn status_at_keeps_suspended_and_canceled_after_expiry() {
    assert_eq!(
        aggregate(created_and(vec![suspended()])).status_at(day(400)),
        Some(Status::Suspended)
    );
    assert_eq!(
        aggregate(created_and(vec![canceled()])).status_at(day(400)),
        Some(Status::Canceled)
    );
}

#[test]
fn status_at_of_a_perpetual_license_never_expires() {
    let new = NewSubscription {
        expires_at: None,
        ..new_subscription()
    };
    let subscription = aggregate(creation_events(new, Status::Active));
    assert_eq!(subscription.status_at(day(100_000)), Some(Status::Active));
}

#[test]
fn status_at_after_a_renewal_follows_the_new_period() {
    let renewal = E::SubscriptionPeriodChanged {
        starts_at: t0(),
        expires_at: Some(day(730)),
        trial_ends_at: None,
        at: day(400),
    };
    let subscription = aggregate(created_and(vec![renewal]));
    assert_eq!(subscription.status_at(day(400)), Some(Status::Active));
    assert_eq!(subscription.status_at(day(730)), Some(Status::Expired));
}

#[test]
fn a_period_change_keeps_the_fields_it_does_not_name() {
    given(created())
        .when(cmd(A::ChangePeriod(PeriodChange {
            expires_at: Some(Some(day(400))),
            ..PeriodChange::default()
        })))
        .then_expect_events(vec![E::SubscriptionPeriodChanged {
            starts_at: t0(),
            expires_at: Some(day(400)),
            trial_ends_at: None,
            at: now(),
        }]);
}

#[test]
fn a_device_limit_change_without_a_limit_keeps_it_and_only_deactivates() {
    given(created_and(vec![activated(1, 1)]))
        .when(cmd(A::ChangeDeviceLimit {
            max_devices: None,
            deactivate_device_ids: vec![device_id(1)],
        }))
        .then_expect_events(vec![E::DeviceDeactivated {
            device_id: device_id(1),
            reason: DeactivationReason::LimitReduced,
            active_devices: 0,
            at: now(),
        }]);
}

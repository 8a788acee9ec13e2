//! Given/when/then tests of giving seats back: check-ins, the churn limit on client
//! deactivations; of tokens under a lease; and of lease events as they are stored.
#![allow(clippy::unwrap_used)]

use chrono::Duration;
use cqrs_es::DomainEvent;
use serde_json::json;
use uuid::Uuid;

use super::lease_fixtures::*;
use super::{DeactivationReason, DeviceInfo, SubscriptionError, SubscriptionEvent};
use crate::policy::PolicySettings;

use super::SubscriptionAction as A;
use DeactivationReason as Reason;
use SubscriptionError as Error;
use SubscriptionEvent as E;

// ---------------------------------------------------------------------------------------
// Check-in
// ---------------------------------------------------------------------------------------

/// These settings with at most `max` client deactivations a day (and room for 5 devices).
fn churn(max: u32, settings: PolicySettings) -> PolicySettings {
    PolicySettings {
        max_devices: 5,
        max_deactivations: Some(max),
        deactivation_window: Some(iso("P1D")),
        ..settings
    }
}

/// "seats" with five devices activated at `t0()`, without leases.
fn five_devices() -> Vec<SubscriptionEvent> {
    let devices = [LAPTOP, DESKTOP, PHONE, TABLET, WATCH];
    let activations = devices
        .iter()
        .zip(1..)
        .map(|(n, active)| activated(*n, active, t0(), None))
        .collect();
    and(created(), activations)
}

/// `five_devices()` under floating seats without heartbeats (each holds a lease).
fn five_floating() -> Vec<SubscriptionEvent> {
    let devices = [LAPTOP, DESKTOP, PHONE, TABLET, WATCH];
    let activations = devices
        .iter()
        .zip(1..)
        .map(|(n, seats)| activated(*n, seats, t0(), Some(grant(None, seats))))
        .collect();
    and(created(), activations)
}

#[test]
fn checking_in_a_floating_seat_releases_it_as_checked_in() {
    given(two_beating())
        .when(cmd(floating_deactivate(), min(5), check_in(LAPTOP)))
        .then_expect_events(vec![deactivated(LAPTOP, Reason::CheckedIn, 1, min(5))]);
    given(five_floating())
        .when(cmd(churn(1, floating()), min(5), check_in(PHONE)))
        .then_expect_events(vec![deactivated(PHONE, Reason::CheckedIn, 4, min(5))]);
}

#[test]
fn floating_check_ins_are_never_refused_nor_counted_by_the_churn_limit() {
    let checked_in = and(
        five_floating(),
        vec![
            deactivated(LAPTOP, Reason::CheckedIn, 4, hour(1)),
            deactivated(DESKTOP, Reason::CheckedIn, 3, hour(2)),
        ],
    );
    given(checked_in.clone())
        .when(cmd(churn(1, floating()), hour(3), check_in(PHONE)))
        .then_expect_events(vec![deactivated(PHONE, Reason::CheckedIn, 2, hour(3))]);
    given(checked_in)
        .when(cmd(
            churn(1, floating()),
            hour(3),
            deactivate(PHONE, Reason::Client),
        ))
        .then_expect_events(vec![deactivated(PHONE, Reason::Client, 2, hour(3))]);
}

#[test]
fn checking_in_a_node_locked_device_is_a_client_deactivation() {
    given(five_devices())
        .when(cmd(churn(1, node_locked()), hour(1), check_in(LAPTOP)))
        .then_expect_events(vec![deactivated(LAPTOP, Reason::Client, 4, hour(1))]);
}

#[test]
fn checking_in_a_node_locked_device_past_the_churn_limit_is_refused() {
    given(and(
        five_devices(),
        vec![deactivated(DESKTOP, Reason::Client, 4, hour(1))],
    ))
    .when(cmd(churn(1, node_locked()), hour(2), check_in(LAPTOP)))
    .then_expect_error(Error::DeactivationLimitReached { retry_at: hour(25) });
}

#[test]
fn checking_in_a_device_no_longer_active_records_nothing() {
    for settings in [floating_deactivate(), locked_deactivate()] {
        given(and(
            two_beating(),
            vec![deactivated(LAPTOP, Reason::Admin, 1, min(2))],
        ))
        .when(cmd(settings, min(5), check_in(LAPTOP)))
        .then_expect_events(vec![]);
    }
    // Nor one that never was.
    given(two_beating())
        .when(cmd(floating_deactivate(), min(5), check_in(PHONE)))
        .then_expect_events(vec![]);
}

#[test]
fn checking_in_a_dead_floating_lease_records_nothing() {
    // Its seat is free already.
    given(laptop_dead(false, 1))
        .when(cmd(floating_keep(), min(12), check_in(LAPTOP)))
        .then_expect_events(vec![]);
}

#[test]
fn checking_in_with_a_token_under_a_regenerated_key_is_revoked() {
    let regenerated = E::LicenseKeyRegenerated {
        previous_key_hash: Some(key_hash(1)),
        key_hash: key_hash(2),
        key_prefix: "FLX-00002".to_owned(),
        at: min(3),
    };
    given(and(two_beating(), vec![regenerated]))
        .when(cmd(floating_deactivate(), min(5), check_in(LAPTOP)))
        .then_expect_error(Error::TokenRevoked);
}

// ---------------------------------------------------------------------------------------
// The churn limit: `max_deactivations` client deactivations per `deactivation_window`
// ---------------------------------------------------------------------------------------

/// `five_devices()` with the laptop (at `hour(1)`) and the desktop (at `hour(2)`)
/// deactivated by their clients.
fn two_client_deactivations() -> Vec<SubscriptionEvent> {
    and(
        five_devices(),
        vec![
            deactivated(LAPTOP, Reason::Client, 4, hour(1)),
            deactivated(DESKTOP, Reason::Client, 3, hour(2)),
        ],
    )
}

#[test]
fn client_deactivations_within_the_limit_are_allowed() {
    given(and(
        five_devices(),
        vec![deactivated(LAPTOP, Reason::Client, 4, hour(1))],
    ))
    .when(cmd(
        churn(2, node_locked()),
        hour(2),
        deactivate(DESKTOP, Reason::Client),
    ))
    .then_expect_events(vec![deactivated(DESKTOP, Reason::Client, 3, hour(2))]);
}

#[test]
fn the_client_deactivation_past_the_limit_waits_for_the_oldest_counted_to_leave_the_window() {
    let refused = Error::DeactivationLimitReached { retry_at: hour(25) };
    given(two_client_deactivations())
        .when(cmd(
            churn(2, node_locked()),
            hour(3),
            deactivate(PHONE, Reason::Client),
        ))
        .then_expect_error(refused.clone());
    given(two_client_deactivations())
        .when(cmd(
            churn(2, node_locked()),
            hour(3),
            A::DeactivateDeviceByFingerprint {
                fingerprint_hash: fingerprint(PHONE),
                reason: Reason::Client,
            },
        ))
        .then_expect_error(refused);
}

#[test]
fn a_deactivation_is_counted_for_exactly_one_window() {
    let just_before = hour(25) - Duration::seconds(1);
    given(two_client_deactivations())
        .when(cmd(
            churn(2, node_locked()),
            just_before,
            deactivate(PHONE, Reason::Client),
        ))
        .then_expect_error(Error::DeactivationLimitReached { retry_at: hour(25) });
    given(two_client_deactivations())
        .when(cmd(
            churn(2, node_locked()),
            hour(25),
            deactivate(PHONE, Reason::Client),
        ))
        .then_expect_events(vec![deactivated(PHONE, Reason::Client, 2, hour(25))]);
}

#[test]
fn when_more_than_the_limit_are_counted_a_slot_returns_once_enough_have_left() {
    // The policy went down to one a day after the two: the second must leave as well.
    given(two_client_deactivations())
        .when(cmd(
            churn(1, node_locked()),
            hour(3),
            deactivate(PHONE, Reason::Client),
        ))
        .then_expect_error(Error::DeactivationLimitReached { retry_at: hour(26) });
}

#[test]
fn admin_limit_reduced_culled_and_checked_in_deactivations_are_not_counted() {
    let others = and(
        five_devices(),
        vec![
            deactivated(LAPTOP, Reason::Admin, 4, hour(1)),
            deactivated(DESKTOP, Reason::LimitReduced, 3, hour(1)),
            deactivated(PHONE, Reason::HeartbeatExpired, 2, hour(1)),
            deactivated(TABLET, Reason::CheckedIn, 1, hour(1)),
        ],
    );
    given(others)
        .when(cmd(
            churn(1, node_locked()),
            hour(2),
            deactivate(WATCH, Reason::Client),
        ))
        .then_expect_events(vec![deactivated(WATCH, Reason::Client, 0, hour(2))]);
}

#[test]
fn admins_are_not_limited_by_the_churn_limit() {
    given(two_client_deactivations())
        .when(cmd(
            churn(2, node_locked()),
            hour(3),
            deactivate(PHONE, Reason::Admin),
        ))
        .then_expect_events(vec![deactivated(PHONE, Reason::Admin, 2, hour(3))]);
    given(two_client_deactivations())
        .when(cmd(
            churn(2, node_locked()),
            hour(3),
            A::ChangeDeviceLimit {
                max_devices: Some(2),
                deactivate_device_ids: vec![device_id(PHONE)],
            },
        ))
        .then_expect_events(vec![
            deactivated(PHONE, Reason::LimitReduced, 2, hour(3)),
            E::SubscriptionDeviceLimitChanged {
                previous_max_devices: 5,
                max_devices: 2,
                at: hour(3),
            },
        ]);
}

#[test]
fn without_a_churn_limit_client_deactivations_are_not_limited() {
    given(two_client_deactivations())
        .when(cmd(
            with_room(5, node_locked()),
            hour(3),
            deactivate(PHONE, Reason::Client),
        ))
        .then_expect_events(vec![deactivated(PHONE, Reason::Client, 2, hour(3))]);
}

// ---------------------------------------------------------------------------------------
// Tokens under a lease
// ---------------------------------------------------------------------------------------

#[test]
fn a_token_never_outlives_the_lease_deadline() {
    given(two_beating())
        .when(cmd(
            locked_deactivate(),
            min(2),
            issue_token_until(LAPTOP, hour(24)),
        ))
        .then_expect_events(vec![token_issued(LAPTOP, min(10), min(2))]);
}

#[test]
fn a_token_lasts_to_the_renewed_deadline_at_most() {
    let renewals = [(LAPTOP, min(8), min(18))];
    given(two_beating())
        .when(cmd_renewed(
            floating_deactivate(),
            &renewals,
            min(12),
            issue_token_until(LAPTOP, hour(24)),
        ))
        .then_expect_events(vec![token_issued(LAPTOP, min(18), min(12))]);
    // One asked for shorter than the lease keeps its own expiry.
    given(two_beating())
        .when(cmd_renewed(
            floating_deactivate(),
            &renewals,
            min(12),
            issue_token_until(LAPTOP, min(14)),
        ))
        .then_expect_events(vec![token_issued(LAPTOP, min(14), min(12))]);
}

#[test]
fn a_token_for_a_dead_lease_is_refused() {
    // Past its deadline, recorded or not.
    given(two_beating())
        .when(cmd(
            locked_keep(),
            min(12),
            issue_token_until(LAPTOP, hour(24)),
        ))
        .then_expect_error(Error::HeartbeatDead);
    given(laptop_dead(false, 1))
        .when(cmd(
            floating_keep(),
            min(11),
            issue_token_until(LAPTOP, hour(24)),
        ))
        .then_expect_error(Error::HeartbeatDead);
}

#[test]
fn a_floating_seat_without_heartbeats_does_not_shorten_tokens() {
    given(five_floating())
        .when(cmd(
            with_room(5, floating()),
            min(2),
            issue_token_until(LAPTOP, hour(24)),
        ))
        .then_expect_events(vec![token_issued(LAPTOP, hour(24), min(2))]);
}

fn token_issued(
    n: u128,
    expires_at: chrono::DateTime<chrono::Utc>,
    at: chrono::DateTime<chrono::Utc>,
) -> SubscriptionEvent {
    E::LicenseTokenIssued {
        device_id: device_id(n),
        token_id: Uuid::from_u128(0x70c3),
        expires_at,
        at,
    }
}

// ---------------------------------------------------------------------------------------
// Stored events
// ---------------------------------------------------------------------------------------

#[test]
fn a_device_activation_from_before_leases_reads_back_without_a_lease() {
    let stored = json!({"DeviceActivated": {"device_id": device_id(LAPTOP),
        "fingerprint_hash": fingerprint(LAPTOP), "name": null, "platform": null,
        "os_version": null, "app_version": null, "hostname": null, "active_devices": 1,
        "at": t0()}});
    let event: SubscriptionEvent = serde_json::from_value(stored.clone()).unwrap();
    assert_eq!(
        event,
        E::DeviceActivated {
            device_id: device_id(LAPTOP),
            fingerprint_hash: fingerprint(LAPTOP),
            info: DeviceInfo::default(),
            active_devices: 1,
            at: t0(),
            policy_version: None,
            lease: None,
        }
    );
    // Written back, it is what was stored: no `lease` key.
    assert_eq!(serde_json::to_value(&event).unwrap(), stored);
    let state = state_after(and(created_of_its_own(), vec![event]));
    assert_eq!(state.device(device_id(LAPTOP)).unwrap().lease, None);
}

#[test]
fn an_activation_with_a_lease_stores_its_deadline_and_seats() {
    let event = activated(LAPTOP, 1, min(0), Some(grant(Some(min(10)), 1)));
    let json = serde_json::to_value(&event).unwrap();
    assert_eq!(
        json["DeviceActivated"]["lease"],
        json!({"expires_at": min(10), "seats_in_use": 1})
    );
    assert_eq!(
        serde_json::from_value::<SubscriptionEvent>(json).unwrap(),
        event
    );
}

#[test]
fn lease_events_round_trip_and_report_their_type_and_time() {
    for (event, name) in [
        (
            E::DeviceLeaseTaken {
                device_id: device_id(LAPTOP),
                lease: grant(Some(min(10)), 1),
                at: min(1),
            },
            "DeviceLeaseTaken",
        ),
        (
            lease_expired(LAPTOP, min(0), Some(min(-5)), 0, min(1)),
            "DeviceLeaseExpired",
        ),
        (
            lease_expired(LAPTOP, min(0), None, 0, min(1)),
            "DeviceLeaseExpired",
        ),
        (
            revived(LAPTOP, grant(Some(min(10)), 2), 2, min(1)),
            "DeviceRevived",
        ),
        (
            deactivated(LAPTOP, Reason::CheckedIn, 0, min(1)),
            "DeviceDeactivated",
        ),
    ] {
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(
            serde_json::from_value::<SubscriptionEvent>(json).unwrap(),
            event
        );
        assert_eq!(event.event_type(), name);
        assert_eq!(event.at(), min(1));
    }
    let checked_in = serde_json::to_value(deactivated(LAPTOP, Reason::CheckedIn, 0, min(1)));
    assert_eq!(
        checked_in.unwrap()["DeviceDeactivated"]["reason"],
        json!("checked_in")
    );
    let heartbeat_expired = serde_json::to_value(culled(LAPTOP, 0, min(1)));
    assert_eq!(
        heartbeat_expired.unwrap()["DeviceDeactivated"]["reason"],
        json!("heartbeat_expired")
    );
}

//! Given/when/then tests of leases: floating seats, the lease an activation takes, the
//! expiry of dead leases (`ExpireLeases`), and heartbeats (taking, reviving, borrowing).
//! Check-ins, churn limits, tokens and stored events are in `churn_tests`.
#![allow(clippy::unwrap_used)]

use chrono::Duration;

use super::lease_fixtures::*;
use super::{DeactivationReason, DeviceDetails, DeviceInfo, SubscriptionError, SubscriptionEvent};
use crate::policy::{LicenseModel, PolicySettings};

use super::SubscriptionAction as A;
use SubscriptionError as Error;
use SubscriptionEvent as E;

// ---------------------------------------------------------------------------------------
// Floating seats: `max_devices` counts live leases
// ---------------------------------------------------------------------------------------

#[test]
fn a_full_pool_is_refused_with_the_limit_and_the_seats_in_use() {
    for settings in [
        floating(),
        floating_deactivate(),
        node_locked(),
        locked_keep(),
    ] {
        given(two_beating())
            .when(cmd(settings, min(6), activate(PHONE)))
            .then_expect_error(Error::DeviceLimitReached {
                max_devices: 2,
                in_use: 2,
            });
    }
}

#[test]
fn a_recorded_expired_lease_holds_no_seat_on_a_floating_pool() {
    // The laptop is kept active under `keep`, but its seat is free: the phone takes it.
    given(laptop_dead(false, 1))
        .when(cmd(floating_keep(), min(12), activate(PHONE)))
        .then_expect_events(vec![activated_beating(PHONE, 3, min(12), 2)]);
}

#[test]
fn a_recorded_expired_lease_keeps_its_seat_on_a_node_locked_pool_under_keep() {
    given(laptop_dead(false, 2))
        .when(cmd(locked_keep(), min(12), activate(PHONE)))
        .then_expect_error(Error::DeviceLimitReached {
            max_devices: 2,
            in_use: 2,
        });
}

#[test]
fn a_full_floating_pool_first_expires_and_culls_its_dead_leases_under_deactivate() {
    given(two_beating())
        .when(cmd(floating_deactivate(), min(12), activate(PHONE)))
        .then_expect_events(vec![
            lease_expired(LAPTOP, min(10), None, 1, min(12)),
            culled(LAPTOP, 1, min(12)),
            activated_beating(PHONE, 2, min(12), 2),
        ]);
}

#[test]
fn a_full_floating_pool_first_expires_its_dead_leases_and_keeps_their_devices_under_keep() {
    given(two_beating())
        .when(cmd(floating_keep(), min(12), activate(PHONE)))
        .then_expect_events(vec![
            lease_expired(LAPTOP, min(10), None, 1, min(12)),
            activated_beating(PHONE, 3, min(12), 2),
        ]);
}

#[test]
fn a_full_node_locked_pool_culls_its_dead_devices_to_free_their_seats_under_deactivate() {
    // The expiry's seat count is taken before the cull: the device still holds it then.
    given(two_beating())
        .when(cmd(locked_deactivate(), min(12), activate(PHONE)))
        .then_expect_events(vec![
            lease_expired(LAPTOP, min(10), None, 2, min(12)),
            culled(LAPTOP, 1, min(12)),
            activated_beating(PHONE, 2, min(12), 2),
        ]);
}

#[test]
fn a_dead_node_locked_device_kept_under_keep_still_blocks_its_seat() {
    given(two_beating())
        .when(cmd(locked_keep(), min(12), activate(PHONE)))
        .then_expect_error(Error::DeviceLimitReached {
            max_devices: 2,
            in_use: 2,
        });
}

#[test]
fn a_renewal_past_the_instant_keeps_a_lease_alive_and_its_seat_taken() {
    let renewals = [(LAPTOP, min(8), min(18))];
    given(two_beating())
        .when(cmd_renewed(
            floating_deactivate(),
            &renewals,
            min(12),
            activate(PHONE),
        ))
        .then_expect_error(Error::DeviceLimitReached {
            max_devices: 2,
            in_use: 2,
        });
}

#[test]
fn the_expiry_an_activation_records_takes_the_deadline_and_last_heartbeat_from_the_renewals() {
    let renewals = [(LAPTOP, min(3), min(11))];
    given(two_beating())
        .when(cmd_renewed(
            floating_deactivate(),
            &renewals,
            min(12),
            activate(PHONE),
        ))
        .then_expect_events(vec![
            lease_expired(LAPTOP, min(11), Some(min(3)), 1, min(12)),
            culled(LAPTOP, 1, min(12)),
            activated_beating(PHONE, 2, min(12), 2),
        ]);
}

#[test]
fn a_pool_with_room_takes_a_device_without_recording_any_expiry() {
    // The laptop's dead lease is not recorded yet, so it still counts.
    given(two_beating())
        .when(cmd(
            with_room(3, floating_deactivate()),
            min(12),
            activate(PHONE),
        ))
        .then_expect_events(vec![activated_beating(PHONE, 3, min(12), 3)]);
}

// ---------------------------------------------------------------------------------------
// The lease an activation takes
// ---------------------------------------------------------------------------------------

#[test]
fn an_activation_under_heartbeats_takes_a_lease_until_a_heartbeat_duration_later() {
    for settings in [floating_deactivate(), locked_keep()] {
        given(created())
            .when(cmd(settings, min(2), activate(LAPTOP)))
            .then_expect_events(vec![activated(
                LAPTOP,
                1,
                min(2),
                Some(grant(Some(min(12)), 1)),
            )]);
    }
}

#[test]
fn an_activation_records_the_seats_in_use_after_it() {
    given(and(
        created(),
        vec![activated_beating(LAPTOP, 1, min(0), 1)],
    ))
    .when(cmd(floating_deactivate(), min(2), activate(DESKTOP)))
    .then_expect_events(vec![activated_beating(DESKTOP, 2, min(2), 2)]);
}

#[test]
fn a_floating_seat_without_heartbeats_takes_a_lease_without_deadline() {
    given(created())
        .when(cmd(floating(), min(2), activate(LAPTOP)))
        .then_expect_events(vec![activated(LAPTOP, 1, min(2), Some(grant(None, 1)))]);
}

#[test]
fn a_node_locked_device_without_heartbeats_takes_no_lease() {
    given(created())
        .when(cmd(node_locked(), min(2), activate(LAPTOP)))
        .then_expect_events(vec![activated(LAPTOP, 1, min(2), None)]);
    // Nor does one of a subscription that follows no policy.
    given(created_of_its_own())
        .when(super::SubscriptionCommand::new(min(2), activate(LAPTOP)))
        .then_expect_events(vec![E::DeviceActivated {
            device_id: device_id(LAPTOP),
            fingerprint_hash: fingerprint(LAPTOP),
            info: DeviceInfo::default(),
            active_devices: 1,
            at: min(2),
            policy_version: None,
            lease: None,
        }]);
}

#[test]
fn activating_a_device_whose_lease_lives_changes_nothing() {
    given(two_beating())
        .when(cmd(floating_deactivate(), min(6), activate(LAPTOP)))
        .then_expect_events(vec![]);
}

#[test]
fn activating_a_device_kept_dead_revives_it_under_the_same_id() {
    given(laptop_dead(false, 1))
        .when(cmd(floating_keep(), min(12), activate(LAPTOP)))
        .then_expect_events(vec![revived(LAPTOP, grant(Some(min(22)), 2), 2, min(12))]);
}

#[test]
fn activating_a_device_whose_unrecorded_lease_died_under_keep_records_the_expiry_first() {
    given(two_beating())
        .when(cmd(floating_keep(), min(12), activate(LAPTOP)))
        .then_expect_events(vec![
            lease_expired(LAPTOP, min(10), None, 1, min(12)),
            revived(LAPTOP, grant(Some(min(22)), 2), 2, min(12)),
        ]);
}

#[test]
fn a_node_locked_device_kept_dead_revives_into_its_own_seat_on_activation() {
    // Its seat stayed taken while it was dead: reviving needs no other.
    given(laptop_dead(false, 2))
        .when(cmd(locked_keep(), min(12), activate(LAPTOP)))
        .then_expect_events(vec![revived(LAPTOP, grant(Some(min(22)), 2), 2, min(12))]);
    given(two_beating())
        .when(cmd(locked_keep(), min(12), activate(LAPTOP)))
        .then_expect_events(vec![
            lease_expired(LAPTOP, min(10), None, 2, min(12)),
            revived(LAPTOP, grant(Some(min(22)), 2), 2, min(12)),
        ]);
}

#[test]
fn a_device_culled_by_its_own_activation_comes_back_as_a_new_device() {
    let again = A::ActivateDevice(DeviceDetails {
        device_id: device_id(LAPTOP_AGAIN),
        fingerprint_hash: fingerprint(LAPTOP),
        info: DeviceInfo::default(),
    });
    given(two_beating())
        .when(cmd(floating_deactivate(), min(12), again))
        .then_expect_events(vec![
            lease_expired(LAPTOP, min(10), None, 1, min(12)),
            culled(LAPTOP, 1, min(12)),
            activated_beating(LAPTOP_AGAIN, 2, min(12), 2),
        ]);
}

// ---------------------------------------------------------------------------------------
// ExpireLeases
// ---------------------------------------------------------------------------------------

#[test]
fn expire_leases_records_exactly_the_live_leases_past_their_deadline() {
    // At min(12) only the laptop's lease (until min(10)) is dead.
    given(two_beating())
        .when(cmd(floating_keep(), min(12), A::ExpireLeases))
        .then_expect_events(vec![lease_expired(LAPTOP, min(10), None, 1, min(12))]);
    // One already recorded is not recorded again.
    given(laptop_dead(false, 1))
        .when(cmd(floating_keep(), min(20), A::ExpireLeases))
        .then_expect_events(vec![lease_expired(DESKTOP, min(15), None, 0, min(20))]);
}

#[test]
fn a_policy_that_stops_requiring_heartbeats_lets_every_lease_live_on() {
    // The leases were taken under heartbeats; the policy no longer asks for them.
    given(two_beating())
        .when(cmd(floating(), hour(5), A::ExpireLeases))
        .then_expect_events(vec![]);
    given(two_beating())
        .when(cmd(floating(), hour(5), issue_token_until(LAPTOP, hour(6))))
        .then_expect_events(vec![E::LicenseTokenIssued {
            device_id: device_id(LAPTOP),
            token_id: uuid::Uuid::from_u128(0x70c3),
            expires_at: hour(6),
            at: hour(5),
        }]);
}

#[test]
fn a_lease_is_dead_from_its_deadline_on() {
    given(two_beating())
        .when(cmd(
            floating_keep(),
            min(10) - Duration::seconds(1),
            A::ExpireLeases,
        ))
        .then_expect_events(vec![]);
    given(two_beating())
        .when(cmd(floating_keep(), min(10), A::ExpireLeases))
        .then_expect_events(vec![lease_expired(LAPTOP, min(10), None, 1, min(10))]);
}

#[test]
fn expire_leases_records_the_renewed_deadline_and_the_last_heartbeat() {
    let renewals = [(LAPTOP, min(4), min(14)), (DESKTOP, min(9), min(19))];
    given(two_beating())
        .when(cmd_renewed(
            floating_keep(),
            &renewals,
            min(16),
            A::ExpireLeases,
        ))
        .then_expect_events(vec![lease_expired(
            LAPTOP,
            min(14),
            Some(min(4)),
            1,
            min(16),
        )]);
}

#[test]
fn expire_leases_deactivates_the_dead_devices_under_deactivate() {
    given(two_beating())
        .when(cmd(floating_deactivate(), min(20), A::ExpireLeases))
        .then_expect_events(vec![
            lease_expired(LAPTOP, min(10), None, 1, min(20)),
            culled(LAPTOP, 1, min(20)),
            lease_expired(DESKTOP, min(15), None, 0, min(20)),
            culled(DESKTOP, 0, min(20)),
        ]);
}

#[test]
fn expire_leases_keeps_the_dead_devices_active_under_keep() {
    given(two_beating())
        .when(cmd(locked_keep(), min(20), A::ExpireLeases))
        .then_expect_events(vec![
            lease_expired(LAPTOP, min(10), None, 2, min(20)),
            lease_expired(DESKTOP, min(15), None, 2, min(20)),
        ]);
    let state = state_after(and(
        two_beating(),
        vec![lease_expired(LAPTOP, min(10), None, 1, min(20))],
    ));
    let laptop = state.device(device_id(LAPTOP)).unwrap();
    assert!(laptop.active);
    assert!(laptop.lease.as_ref().unwrap().expired);
    assert_eq!(state.active_device_count(), 2);
    assert_eq!(state.seats_in_use(LicenseModel::Floating), 1);
    assert_eq!(state.seats_in_use(LicenseModel::NodeLocked), 2);
}

#[test]
fn expire_leases_records_each_expiry_exactly_once() {
    for settings in [
        floating_keep(),
        floating_deactivate(),
        locked_keep(),
        locked_deactivate(),
    ] {
        let first = aggregate(two_beating())
            .decide(cmd(settings.clone(), min(20), A::ExpireLeases))
            .unwrap();
        assert_eq!(first.len() % 2, 0, "{first:?}");
        assert!(!first.is_empty());
        given(and(two_beating(), first))
            .when(cmd(settings, min(30), A::ExpireLeases))
            .then_expect_events(vec![]);
    }
}

#[test]
fn floating_seats_without_heartbeats_never_expire() {
    let events = and(
        created(),
        vec![activated(LAPTOP, 1, min(0), Some(grant(None, 1)))],
    );
    given(events)
        .when(cmd(floating(), hour(24 * 400), A::ExpireLeases))
        .then_expect_events(vec![]);
}

#[test]
fn expire_leases_leaves_devices_without_a_lease_alone() {
    let events = and(created(), vec![activated(LAPTOP, 1, min(0), None)]);
    given(events)
        .when(cmd(locked_deactivate(), hour(5), A::ExpireLeases))
        .then_expect_events(vec![]);
}

// ---------------------------------------------------------------------------------------
// Heartbeat
// ---------------------------------------------------------------------------------------

#[test]
fn a_heartbeat_for_a_live_lease_records_nothing() {
    given(two_beating())
        .when(cmd(floating_deactivate(), min(5), heartbeat(LAPTOP)))
        .then_expect_events(vec![]);
    // Live by a renewal the events have not seen.
    let renewals = [(LAPTOP, min(8), min(18))];
    given(two_beating())
        .when(cmd_renewed(
            floating_deactivate(),
            &renewals,
            min(12),
            heartbeat(LAPTOP),
        ))
        .then_expect_events(vec![]);
}

#[test]
fn a_heartbeat_is_not_required_without_a_policy() {
    let events = and(
        created_of_its_own(),
        vec![E::DeviceActivated {
            device_id: device_id(LAPTOP),
            fingerprint_hash: fingerprint(LAPTOP),
            info: DeviceInfo::default(),
            active_devices: 1,
            at: min(0),
            policy_version: None,
            lease: None,
        }],
    );
    given(events)
        .when(super::SubscriptionCommand::new(min(2), heartbeat(LAPTOP)))
        .then_expect_error(Error::HeartbeatNotRequired);
}

#[test]
fn a_heartbeat_is_not_required_by_a_policy_without_heartbeats() {
    for (settings, lease) in [(node_locked(), None), (floating(), Some(grant(None, 1)))] {
        given(and(created(), vec![activated(LAPTOP, 1, min(0), lease)]))
            .when(cmd(settings, min(2), heartbeat(LAPTOP)))
            .then_expect_error(Error::HeartbeatNotRequired);
    }
}

#[test]
fn a_heartbeat_with_a_token_under_a_regenerated_key_is_revoked() {
    let regenerated = E::LicenseKeyRegenerated {
        previous_key_hash: Some(key_hash(1)),
        key_hash: key_hash(2),
        key_prefix: "FLX-00002".to_owned(),
        at: min(3),
    };
    given(and(two_beating(), vec![regenerated]))
        .when(cmd(floating_deactivate(), min(5), heartbeat(LAPTOP)))
        .then_expect_error(Error::TokenRevoked);
}

#[test]
fn the_first_heartbeat_of_an_active_device_without_a_lease_takes_one() {
    // Activated before the policy required heartbeats.
    given(and(created(), vec![activated(LAPTOP, 1, min(0), None)]))
        .when(cmd(locked_deactivate(), min(3), heartbeat(LAPTOP)))
        .then_expect_events(vec![E::DeviceLeaseTaken {
            device_id: device_id(LAPTOP),
            lease: grant(Some(min(13)), 1),
            at: min(3),
        }]);
}

#[test]
fn a_heartbeat_within_the_window_revives_a_culled_device_under_the_same_id() {
    let dead = laptop_dead(true, 1);
    let events = vec![revived(LAPTOP, grant(Some(min(24)), 2), 2, min(14))];
    given(dead.clone())
        .when(cmd(floating_deactivate(), min(14), heartbeat(LAPTOP)))
        .then_expect_events(events.clone());
    let state = state_after(and(dead, events));
    let laptop = state.device(device_id(LAPTOP)).unwrap();
    assert!(laptop.active);
    assert_eq!(laptop.deactivation_reason, None);
    let lease = laptop.lease.as_ref().unwrap();
    assert!(!lease.expired);
    assert_eq!(lease.expires_at, Some(min(24)));
    assert_eq!(lease.taken_at, min(14));
    assert_eq!(state.active_device_count(), 2);
    assert_eq!(state.seats_in_use(LicenseModel::Floating), 2);
}

#[test]
fn a_heartbeat_within_the_window_records_an_unrecorded_expiry_before_the_revival() {
    given(two_beating())
        .when(cmd(floating_deactivate(), min(14), heartbeat(LAPTOP)))
        .then_expect_events(vec![
            lease_expired(LAPTOP, min(10), None, 1, min(14)),
            culled(LAPTOP, 1, min(14)),
            revived(LAPTOP, grant(Some(min(24)), 2), 2, min(14)),
        ]);
    given(two_beating())
        .when(cmd(floating_keep(), min(14), heartbeat(LAPTOP)))
        .then_expect_events(vec![
            lease_expired(LAPTOP, min(10), None, 1, min(14)),
            revived(LAPTOP, grant(Some(min(24)), 2), 2, min(14)),
        ]);
}

#[test]
fn a_device_kept_dead_is_revived_by_a_heartbeat_within_the_window() {
    given(laptop_dead(false, 1))
        .when(cmd(floating_keep(), min(14), heartbeat(LAPTOP)))
        .then_expect_events(vec![revived(LAPTOP, grant(Some(min(24)), 2), 2, min(14))]);
}

#[test]
fn a_node_locked_device_kept_dead_revives_into_its_own_seat_on_a_heartbeat() {
    given(laptop_dead(false, 2))
        .when(cmd(locked_keep(), min(14), heartbeat(LAPTOP)))
        .then_expect_events(vec![revived(LAPTOP, grant(Some(min(24)), 2), 2, min(14))]);
}

#[test]
fn the_resurrection_window_runs_from_the_renewed_deadline() {
    // Renewed until min(20): at min(75) it died 55 minutes ago, within the hour.
    let renewals = [(LAPTOP, min(10), min(20)), (DESKTOP, min(70), min(80))];
    given(two_beating())
        .when(cmd_renewed(
            floating_deactivate(),
            &renewals,
            min(75),
            heartbeat(LAPTOP),
        ))
        .then_expect_events(vec![
            lease_expired(LAPTOP, min(20), Some(min(10)), 1, min(75)),
            culled(LAPTOP, 1, min(75)),
            revived(LAPTOP, grant(Some(min(85)), 2), 2, min(75)),
        ]);
}

#[test]
fn a_heartbeat_after_the_resurrection_window_is_dead() {
    // The laptop died at min(10): the window closes at min(70).
    given(laptop_dead(true, 1))
        .when(cmd(floating_deactivate(), min(70), heartbeat(LAPTOP)))
        .then_expect_error(Error::HeartbeatDead);
    given(two_beating())
        .when(cmd(floating_keep(), min(70), heartbeat(LAPTOP)))
        .then_expect_error(Error::HeartbeatDead);
}

#[test]
fn without_a_resurrection_window_a_dead_lease_stays_dead() {
    let no_window = PolicySettings {
        resurrection_window: None,
        ..floating_deactivate()
    };
    given(laptop_dead(true, 1))
        .when(cmd(no_window.clone(), min(11), heartbeat(LAPTOP)))
        .then_expect_error(Error::HeartbeatDead);
    given(two_beating())
        .when(cmd(no_window, min(11), heartbeat(LAPTOP)))
        .then_expect_error(Error::HeartbeatDead);
}

#[test]
fn a_revival_needs_a_free_seat() {
    // The phone took the laptop's seat meanwhile.
    let events = and(
        laptop_dead(true, 1),
        vec![activated_beating(PHONE, 2, min(12), 2)],
    );
    given(events)
        .when(cmd(floating_deactivate(), min(14), heartbeat(LAPTOP)))
        .then_expect_error(Error::DeviceLimitReached {
            max_devices: 2,
            in_use: 2,
        });
}

#[test]
fn a_culled_device_whose_fingerprint_was_activated_again_is_dead() {
    let events = and(
        laptop_dead(true, 1),
        vec![activated_beating(LAPTOP_AGAIN, 2, min(12), 2)],
    );
    // Room for it, so that only the new device stands in its way.
    given(events)
        .when(cmd(
            with_room(3, floating_deactivate()),
            min(14),
            heartbeat(LAPTOP),
        ))
        .then_expect_error(Error::HeartbeatDead);
}

#[test]
fn a_heartbeat_from_a_device_deactivated_for_another_reason_is_not_activated() {
    for reason in [
        DeactivationReason::Admin,
        DeactivationReason::Client,
        DeactivationReason::CheckedIn,
    ] {
        given(and(
            two_beating(),
            vec![deactivated(LAPTOP, reason, 1, min(6))],
        ))
        .when(cmd(floating_deactivate(), min(8), heartbeat(LAPTOP)))
        .then_expect_error(Error::DeviceNotActivated);
    }
    given(two_beating())
        .when(cmd(floating_deactivate(), min(8), heartbeat(PHONE)))
        .then_expect_error(Error::DeviceNotActivated);
}

// ---------------------------------------------------------------------------------------
// Borrowing
// ---------------------------------------------------------------------------------------

/// Floating seats with heartbeats that may be borrowed for up to a week.
fn borrowing() -> PolicySettings {
    PolicySettings {
        max_borrow: Some(iso("P7D")),
        ..floating_deactivate()
    }
}

#[test]
fn borrowing_without_max_borrow_is_not_allowed() {
    given(two_beating())
        .when(cmd(floating_deactivate(), min(5), borrow(LAPTOP, hour(24))))
        .then_expect_error(Error::BorrowNotAllowed);
}

#[test]
fn a_borrow_in_the_past_or_past_max_borrow_is_invalid() {
    let longest = min(5) + Duration::days(7);
    for until in [min(4), min(5), longest + Duration::seconds(1)] {
        given(two_beating())
            .when(cmd(borrowing(), min(5), borrow(LAPTOP, until)))
            .then_expect_error(Error::InvalidBorrow { until: longest });
    }
}

#[test]
fn a_borrow_within_max_borrow_is_accepted() {
    let longest = min(5) + Duration::days(7);
    // A live lease: the lease table takes the borrow, no event.
    for until in [min(6), longest] {
        given(two_beating())
            .when(cmd(borrowing(), min(5), borrow(LAPTOP, until)))
            .then_expect_events(vec![]);
    }
    // A lease taken by a borrow lasts until it ends.
    given(and(created(), vec![activated(LAPTOP, 1, min(0), None)]))
        .when(cmd(borrowing(), min(5), borrow(LAPTOP, longest)))
        .then_expect_events(vec![E::DeviceLeaseTaken {
            device_id: device_id(LAPTOP),
            lease: grant(Some(longest), 1),
            at: min(5),
        }]);
    // A borrow shorter than a heartbeat's lease gives the heartbeat's.
    given(and(created(), vec![activated(LAPTOP, 1, min(0), None)]))
        .when(cmd(borrowing(), min(5), borrow(LAPTOP, min(6))))
        .then_expect_events(vec![E::DeviceLeaseTaken {
            device_id: device_id(LAPTOP),
            lease: grant(Some(min(15)), 1),
            at: min(5),
        }]);
}

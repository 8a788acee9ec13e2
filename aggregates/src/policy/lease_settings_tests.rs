//! Given/when/then tests of a policy's lease settings: heartbeats, churn limits, borrowing,
//! and how policies from before them are stored and read.
#![allow(clippy::unwrap_used)]

use serde_json::json;

use super::tests::{
    create, created, created_with, given, iso, now, policy_id, product_id, settings, t0, update,
};
use super::*;

// ---------------------------------------------------------------------------------------
// Lease settings: heartbeats, churn limits, borrowing
// ---------------------------------------------------------------------------------------

/// Pro as floating seats that beat every ten minutes, kept an hour after they die, three
/// client deactivations a month, borrowed for up to a week.
fn floating_heartbeats() -> PolicySettings {
    PolicySettings {
        license_model: LicenseModel::Floating,
        require_heartbeat: true,
        heartbeat_duration: Some(iso("PT10M")),
        heartbeat_cull: HeartbeatCull::Keep,
        resurrection_window: Some(iso("PT1H")),
        max_deactivations: Some(3),
        deactivation_window: Some(iso("P30D")),
        max_borrow: Some(iso("P7D")),
        ..settings()
    }
}

/// The change that turns `settings()` into `floating_heartbeats()`.
fn to_floating_heartbeats() -> PolicyChange {
    PolicyChange {
        license_model: Some(LicenseModel::Floating),
        require_heartbeat: Some(true),
        heartbeat_duration: Some(Some(iso("PT10M"))),
        heartbeat_cull: Some(HeartbeatCull::Keep),
        resurrection_window: Some(Some(iso("PT1H"))),
        max_deactivations: Some(Some(3)),
        deactivation_window: Some(Some(iso("P30D"))),
        max_borrow: Some(Some(iso("P7D"))),
        ..PolicyChange::default()
    }
}

/// Each of `refusals` refused with `error`, on creation (settings on top of `settings()`)
/// and on an update of `settings()`.
fn refused_on_create_and_update(
    refusals: Vec<(PolicySettings, PolicyChange)>,
    error: CatalogueError,
) {
    for (settings, change) in refusals {
        given(vec![])
            .when(create(settings.clone()))
            .then_expect_error(error.clone());
        given(created())
            .when(update(change))
            .then_expect_error(error.clone());
    }
}

#[test]
fn a_floating_policy_with_heartbeats_a_churn_limit_and_borrowing_is_accepted() {
    given(vec![])
        .when(create(floating_heartbeats()))
        .then_expect_events(vec![created_with(floating_heartbeats())]);
    given(created())
        .when(update(to_floating_heartbeats()))
        .then_expect_events(vec![PolicyEvent::PolicyUpdated {
            settings: floating_heartbeats(),
            at: now(),
        }]);
}

#[test]
fn heartbeats_need_a_duration_and_a_duration_needs_heartbeats() {
    refused_on_create_and_update(
        vec![
            (
                PolicySettings {
                    require_heartbeat: true,
                    ..settings()
                },
                PolicyChange {
                    require_heartbeat: Some(true),
                    ..PolicyChange::default()
                },
            ),
            (
                PolicySettings {
                    heartbeat_duration: Some(iso("PT10M")),
                    ..settings()
                },
                PolicyChange {
                    heartbeat_duration: Some(Some(iso("PT10M"))),
                    ..PolicyChange::default()
                },
            ),
        ],
        CatalogueError::InvalidHeartbeat,
    );
}

#[test]
fn a_resurrection_window_and_keep_need_heartbeats() {
    refused_on_create_and_update(
        vec![
            (
                PolicySettings {
                    resurrection_window: Some(iso("PT1H")),
                    ..settings()
                },
                PolicyChange {
                    resurrection_window: Some(Some(iso("PT1H"))),
                    ..PolicyChange::default()
                },
            ),
            (
                PolicySettings {
                    heartbeat_cull: HeartbeatCull::Keep,
                    ..settings()
                },
                PolicyChange {
                    heartbeat_cull: Some(HeartbeatCull::Keep),
                    ..PolicyChange::default()
                },
            ),
        ],
        CatalogueError::InvalidHeartbeat,
    );
}

#[test]
fn heartbeats_are_turned_off_with_every_setting_that_needs_them() {
    let beating = vec![created_with(PolicySettings {
        require_heartbeat: true,
        heartbeat_duration: Some(iso("PT10M")),
        resurrection_window: Some(iso("PT1H")),
        ..settings()
    })];
    given(beating.clone())
        .when(update(PolicyChange {
            require_heartbeat: Some(false),
            heartbeat_duration: Some(None),
            ..PolicyChange::default()
        }))
        .then_expect_error(CatalogueError::InvalidHeartbeat);
    given(beating)
        .when(update(PolicyChange {
            require_heartbeat: Some(false),
            heartbeat_duration: Some(None),
            resurrection_window: Some(None),
            ..PolicyChange::default()
        }))
        .then_expect_events(vec![PolicyEvent::PolicyUpdated {
            settings: settings(),
            at: now(),
        }]);
}

#[test]
fn a_churn_limit_is_a_count_and_a_window_together() {
    refused_on_create_and_update(
        vec![
            (
                PolicySettings {
                    max_deactivations: Some(3),
                    ..settings()
                },
                PolicyChange {
                    max_deactivations: Some(Some(3)),
                    ..PolicyChange::default()
                },
            ),
            (
                PolicySettings {
                    deactivation_window: Some(iso("P30D")),
                    ..settings()
                },
                PolicyChange {
                    deactivation_window: Some(Some(iso("P30D"))),
                    ..PolicyChange::default()
                },
            ),
        ],
        CatalogueError::InvalidDeactivationLimit,
    );
}

#[test]
fn the_churn_limit_is_one_to_the_maximum() {
    let limited = |max| PolicySettings {
        max_deactivations: Some(max),
        deactivation_window: Some(iso("P30D")),
        ..settings()
    };
    let change = |max| PolicyChange {
        max_deactivations: Some(Some(max)),
        deactivation_window: Some(Some(iso("P30D"))),
        ..PolicyChange::default()
    };
    let too_many = crate::subscription::MAX_DEVICE_LIMIT + 1;
    refused_on_create_and_update(
        vec![
            (limited(0), change(0)),
            (limited(too_many), change(too_many)),
        ],
        CatalogueError::InvalidDeactivationLimit,
    );
    for max in [1, crate::subscription::MAX_DEVICE_LIMIT] {
        given(vec![])
            .when(create(limited(max)))
            .then_expect_events(vec![created_with(limited(max))]);
    }
}

#[test]
fn borrowing_is_only_for_floating_seats_with_heartbeats() {
    let node_locked_beating = PolicySettings {
        require_heartbeat: true,
        heartbeat_duration: Some(iso("PT10M")),
        max_borrow: Some(iso("P7D")),
        ..settings()
    };
    let floating_silent = PolicySettings {
        license_model: LicenseModel::Floating,
        max_borrow: Some(iso("P7D")),
        ..settings()
    };
    refused_on_create_and_update(
        vec![
            (
                node_locked_beating,
                PolicyChange {
                    require_heartbeat: Some(true),
                    heartbeat_duration: Some(Some(iso("PT10M"))),
                    max_borrow: Some(Some(iso("P7D"))),
                    ..PolicyChange::default()
                },
            ),
            (
                floating_silent,
                PolicyChange {
                    license_model: Some(LicenseModel::Floating),
                    max_borrow: Some(Some(iso("P7D"))),
                    ..PolicyChange::default()
                },
            ),
        ],
        CatalogueError::InvalidBorrow,
    );
    // Nor may a borrowing policy become node-locked while it allows borrowing.
    given(vec![created_with(floating_heartbeats())])
        .when(update(PolicyChange {
            license_model: Some(LicenseModel::NodeLocked),
            ..PolicyChange::default()
        }))
        .then_expect_error(CatalogueError::InvalidBorrow);
}

#[test]
fn a_policy_from_before_leases_reads_back_with_the_lease_defaults() {
    let stored = json!({"PolicyCreated": {"policy_id": policy_id(), "product_id": product_id(),
        "product_code": "desktop-app", "code": "pro", "name": "Pro", "max_devices": 3,
        "duration": "P1Y", "trial_duration": null, "expiration_basis": "from_creation",
        "expiration_strategy": "allow_grace", "grace_period": "P14D", "token_ttl": "PT1H",
        "entitlements": ["export", "sync"], "metadata": {}, "at": t0()}});
    let event: PolicyEvent = serde_json::from_value(stored.clone()).unwrap();
    assert_eq!(event, created_with(settings()));
    let PolicyEvent::PolicyCreated { settings: read, .. } = &event else {
        unreachable!()
    };
    assert_eq!(read.license_model, LicenseModel::NodeLocked);
    assert!(!read.require_heartbeat);
    assert_eq!(read.heartbeat_duration, None);
    assert_eq!(read.heartbeat_cull, HeartbeatCull::Deactivate);
    assert_eq!(read.resurrection_window, None);
    assert_eq!(read.max_deactivations, None);
    assert_eq!(read.deactivation_window, None);
    assert_eq!(read.max_borrow, None);
    assert!(!read.leases());
    assert_eq!(read.lease_duration(), None);
    // A policy that uses none of them is written as it was before they existed.
    assert_eq!(serde_json::to_value(&event).unwrap(), stored);
}

#[test]
fn a_policy_using_the_lease_settings_stores_them_and_reads_them_back() {
    let event = created_with(floating_heartbeats());
    let json = serde_json::to_value(&event).unwrap();
    let fields = json["PolicyCreated"].as_object().unwrap();
    assert_eq!(fields["license_model"], json!("floating"));
    assert_eq!(fields["require_heartbeat"], json!(true));
    assert_eq!(fields["heartbeat_duration"], json!("PT10M"));
    assert_eq!(fields["heartbeat_cull"], json!("keep"));
    assert_eq!(fields["resurrection_window"], json!("PT1H"));
    assert_eq!(fields["max_deactivations"], json!(3));
    assert_eq!(fields["deactivation_window"], json!("P30D"));
    assert_eq!(fields["max_borrow"], json!("P7D"));
    assert_eq!(serde_json::from_value::<PolicyEvent>(json).unwrap(), event);
}

#[test]
fn leases_are_held_under_heartbeats_or_floating_seats() {
    let beating = PolicySettings {
        require_heartbeat: true,
        heartbeat_duration: Some(iso("PT10M")),
        ..settings()
    };
    assert!(beating.leases());
    assert_eq!(beating.lease_duration(), Some(&iso("PT10M")));
    let floating = PolicySettings {
        license_model: LicenseModel::Floating,
        ..settings()
    };
    assert!(floating.leases());
    assert_eq!(floating.lease_duration(), None);
    assert!(!settings().leases());
}

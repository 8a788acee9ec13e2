//! Given/when/then tests of the `Policy` aggregate: one test per rule and error.
#![allow(clippy::unwrap_used)]

use chrono::{DateTime, Duration, TimeZone, Utc};
use cqrs_es::test::{AggregateTestExecutor, TestFramework};
use serde_json::{json, Map};

use super::*;
use crate::catalogue::{MAX_ENTITLEMENTS, MAX_METADATA_BYTES};
use crate::duration::IsoDuration;

pub(super) fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()
}

pub(super) fn now() -> DateTime<Utc> {
    t0() + Duration::days(1)
}

fn code(raw: &str) -> Code {
    Code::parse(raw).unwrap()
}

fn codes(raw: &[&str]) -> Vec<Code> {
    raw.iter().map(|c| code(c)).collect()
}

pub(super) fn iso(raw: &str) -> IsoDuration {
    IsoDuration::parse(raw).unwrap()
}

pub(super) fn product_id() -> ProductId {
    ProductId::for_code(&code("desktop-app"))
}

pub(super) fn policy_id() -> PolicyId {
    PolicyId::for_code(product_id(), &code("pro"))
}

/// "Pro": 3 devices, a year from creation, 14 days of grace, export and sync.
pub(super) fn settings() -> PolicySettings {
    PolicySettings {
        name: "Pro".to_owned(),
        max_devices: 3,
        duration: Some(iso("P1Y")),
        trial_duration: None,
        expiration_basis: ExpirationBasis::FromCreation,
        expiration_strategy: ExpirationStrategy::AllowGrace,
        grace_period: Some(iso("P14D")),
        token_ttl: Some(iso("PT1H")),
        entitlements: codes(&["export", "sync"]),
        metadata: Map::new(),
        ..PolicySettings::default()
    }
}

pub(super) fn create(settings: PolicySettings) -> PolicyCommand {
    PolicyCommand::Create {
        product_id: product_id(),
        product_code: code("desktop-app"),
        code: code("pro"),
        settings,
        at: t0(),
    }
}

pub(super) fn created_with(settings: PolicySettings) -> PolicyEvent {
    PolicyEvent::PolicyCreated {
        policy_id: policy_id(),
        product_id: product_id(),
        product_code: code("desktop-app"),
        code: code("pro"),
        settings,
        at: t0(),
    }
}

pub(super) fn created() -> Vec<PolicyEvent> {
    vec![created_with(settings())]
}

fn archived() -> Vec<PolicyEvent> {
    vec![
        created_with(settings()),
        PolicyEvent::PolicyArchived { at: t0() },
    ]
}

pub(super) fn given(events: Vec<PolicyEvent>) -> AggregateTestExecutor<Policy> {
    TestFramework::<Policy>::with(()).given(events)
}

pub(super) fn update(change: PolicyChange) -> PolicyCommand {
    PolicyCommand::Update { change, at: now() }
}

fn attach(raw: &[&str]) -> PolicyCommand {
    PolicyCommand::AttachEntitlements {
        codes: codes(raw),
        at: now(),
    }
}

fn detach(raw: &[&str]) -> PolicyCommand {
    PolicyCommand::DetachEntitlements {
        codes: codes(raw),
        at: now(),
    }
}

fn every_non_create_command() -> Vec<PolicyCommand> {
    vec![
        update(PolicyChange {
            max_devices: Some(5),
            ..PolicyChange::default()
        }),
        attach(&["reports"]),
        detach(&["export"]),
        PolicyCommand::Archive { at: now() },
        PolicyCommand::Unarchive { at: now() },
    ]
}

/// `n` distinct entitlement codes.
fn many_codes(n: usize) -> Vec<Code> {
    (0..n).map(|i| code(&format!("e{i:03}"))).collect()
}

fn aggregate(events: Vec<PolicyEvent>) -> Policy {
    let mut policy = Policy::default();
    for event in events {
        cqrs_es::Aggregate::apply(&mut policy, event);
    }
    policy
}

// ---------------------------------------------------------------------------------------
// Create
// ---------------------------------------------------------------------------------------

#[test]
fn creating_records_the_settings_under_the_id_its_product_and_code_derive() {
    given(vec![])
        .when(create(settings()))
        .then_expect_events(created());
}

#[test]
fn the_id_depends_on_both_the_product_and_the_code() {
    let other_product = ProductId::for_code(&code("mobile-app"));
    assert_eq!(
        PolicyId::for_code(product_id(), &code("pro")),
        PolicyId::for_code(product_id(), &code("pro"))
    );
    assert_ne!(
        PolicyId::for_code(product_id(), &code("pro")),
        PolicyId::for_code(other_product, &code("pro"))
    );
    assert_ne!(
        PolicyId::for_code(product_id(), &code("pro")),
        PolicyId::for_code(product_id(), &code("team"))
    );
}

#[test]
fn creating_sorts_the_entitlements_and_names_each_once() {
    given(vec![])
        .when(create(PolicySettings {
            entitlements: codes(&["sync", "export", "sync", "export"]),
            ..settings()
        }))
        .then_expect_events(created());
}

#[test]
fn a_policy_cannot_be_created_twice_even_when_archived() {
    given(created())
        .when(create(settings()))
        .then_expect_error(CatalogueError::AlreadyExists);
    given(archived())
        .when(create(settings()))
        .then_expect_error(CatalogueError::AlreadyExists);
}

#[test]
fn names_are_checked() {
    for name in ["", "  ", "a\nb"] {
        given(vec![])
            .when(create(PolicySettings {
                name: name.to_owned(),
                ..settings()
            }))
            .then_expect_error(CatalogueError::InvalidName);
    }
}

#[test]
fn the_device_limit_is_one_to_the_maximum() {
    for max_devices in [0, crate::subscription::MAX_DEVICE_LIMIT + 1] {
        given(vec![])
            .when(create(PolicySettings {
                max_devices,
                ..settings()
            }))
            .then_expect_error(CatalogueError::InvalidDeviceLimit);
    }
    for max_devices in [1, crate::subscription::MAX_DEVICE_LIMIT] {
        given(vec![])
            .when(create(PolicySettings {
                max_devices,
                ..settings()
            }))
            .then_expect_events(vec![created_with(PolicySettings {
                max_devices,
                ..settings()
            })]);
    }
}

#[test]
fn allow_grace_needs_a_grace_period() {
    given(vec![])
        .when(create(PolicySettings {
            grace_period: None,
            ..settings()
        }))
        .then_expect_error(CatalogueError::InvalidGrace);
}

#[test]
fn a_grace_period_is_allowed_only_with_allow_grace() {
    given(vec![])
        .when(create(PolicySettings {
            expiration_strategy: ExpirationStrategy::Restrict,
            ..settings()
        }))
        .then_expect_error(CatalogueError::InvalidGrace);
    let restrict = PolicySettings {
        expiration_strategy: ExpirationStrategy::Restrict,
        grace_period: None,
        ..settings()
    };
    given(vec![])
        .when(create(restrict.clone()))
        .then_expect_events(vec![created_with(restrict)]);
}

#[test]
fn at_most_the_maximum_of_entitlements() {
    given(vec![])
        .when(create(PolicySettings {
            entitlements: many_codes(MAX_ENTITLEMENTS + 1),
            ..settings()
        }))
        .then_expect_error(CatalogueError::TooManyEntitlements);
    given(vec![])
        .when(create(PolicySettings {
            entitlements: many_codes(MAX_ENTITLEMENTS),
            ..settings()
        }))
        .then_expect_events(vec![created_with(PolicySettings {
            entitlements: many_codes(MAX_ENTITLEMENTS),
            ..settings()
        })]);
}

#[test]
fn entitlements_named_twice_count_once_toward_the_maximum() {
    let twice = [many_codes(MAX_ENTITLEMENTS), many_codes(MAX_ENTITLEMENTS)].concat();
    given(vec![])
        .when(create(PolicySettings {
            entitlements: twice,
            ..settings()
        }))
        .then_expect_events(vec![created_with(PolicySettings {
            entitlements: many_codes(MAX_ENTITLEMENTS),
            ..settings()
        })]);
}

#[test]
fn metadata_larger_than_the_limit_is_refused() {
    let metadata = json!({"blob": "x".repeat(MAX_METADATA_BYTES)})
        .as_object()
        .unwrap()
        .clone();
    given(vec![])
        .when(create(PolicySettings {
            metadata,
            ..settings()
        }))
        .then_expect_error(CatalogueError::MetadataTooLarge);
}

// ---------------------------------------------------------------------------------------
// Update
// ---------------------------------------------------------------------------------------

#[test]
fn every_other_command_needs_an_existing_policy() {
    for command in every_non_create_command() {
        given(vec![])
            .when(command)
            .then_expect_error(CatalogueError::NotFound);
    }
}

#[test]
fn an_update_records_all_the_settings_after_it() {
    given(created())
        .when(update(PolicyChange {
            max_devices: Some(5),
            token_ttl: Some(None),
            ..PolicyChange::default()
        }))
        .then_expect_events(vec![PolicyEvent::PolicyUpdated {
            settings: PolicySettings {
                max_devices: 5,
                token_ttl: None,
                ..settings()
            },
            at: now(),
        }]);
}

#[test]
fn an_update_sorts_the_entitlements_it_replaces() {
    given(created())
        .when(update(PolicyChange {
            entitlements: Some(codes(&["sync", "reports", "sync"])),
            ..PolicyChange::default()
        }))
        .then_expect_events(vec![PolicyEvent::PolicyUpdated {
            settings: PolicySettings {
                entitlements: codes(&["reports", "sync"]),
                ..settings()
            },
            at: now(),
        }]);
}

#[test]
fn an_update_that_changes_nothing_records_nothing() {
    given(created())
        .when(update(PolicyChange::default()))
        .then_expect_events(vec![]);
    given(created())
        .when(update(PolicyChange {
            name: Some("Pro".to_owned()),
            max_devices: Some(3),
            entitlements: Some(codes(&["sync", "export"])),
            ..PolicyChange::default()
        }))
        .then_expect_events(vec![]);
}

#[test]
fn an_update_keeps_the_rules_of_a_creation() {
    let refusals = [
        (
            PolicyChange {
                name: Some(String::new()),
                ..PolicyChange::default()
            },
            CatalogueError::InvalidName,
        ),
        (
            PolicyChange {
                max_devices: Some(0),
                ..PolicyChange::default()
            },
            CatalogueError::InvalidDeviceLimit,
        ),
        (
            // Restrict while the grace period stays set.
            PolicyChange {
                expiration_strategy: Some(ExpirationStrategy::Restrict),
                ..PolicyChange::default()
            },
            CatalogueError::InvalidGrace,
        ),
        (
            PolicyChange {
                grace_period: Some(None),
                ..PolicyChange::default()
            },
            CatalogueError::InvalidGrace,
        ),
        (
            PolicyChange {
                entitlements: Some(many_codes(MAX_ENTITLEMENTS + 1)),
                ..PolicyChange::default()
            },
            CatalogueError::TooManyEntitlements,
        ),
        (
            PolicyChange {
                metadata: Some(
                    json!({"blob": "x".repeat(MAX_METADATA_BYTES)})
                        .as_object()
                        .unwrap()
                        .clone(),
                ),
                ..PolicyChange::default()
            },
            CatalogueError::MetadataTooLarge,
        ),
    ];
    for (change, error) in refusals {
        given(created())
            .when(update(change))
            .then_expect_error(error);
    }
}

#[test]
fn restrict_and_no_grace_change_together() {
    given(created())
        .when(update(PolicyChange {
            expiration_strategy: Some(ExpirationStrategy::Restrict),
            grace_period: Some(None),
            ..PolicyChange::default()
        }))
        .then_expect_events(vec![PolicyEvent::PolicyUpdated {
            settings: PolicySettings {
                expiration_strategy: ExpirationStrategy::Restrict,
                grace_period: None,
                ..settings()
            },
            at: now(),
        }]);
}

#[test]
fn an_archived_policy_may_still_be_updated() {
    given(archived())
        .when(update(PolicyChange {
            max_devices: Some(4),
            ..PolicyChange::default()
        }))
        .then_expect_events(vec![PolicyEvent::PolicyUpdated {
            settings: PolicySettings {
                max_devices: 4,
                ..settings()
            },
            at: now(),
        }]);
}

// ---------------------------------------------------------------------------------------
// Entitlements
// ---------------------------------------------------------------------------------------

#[test]
fn attaching_records_the_new_codes_and_the_whole_sorted_list() {
    given(created())
        .when(attach(&["sync", "reports", "audit", "reports"]))
        .then_expect_events(vec![PolicyEvent::PolicyEntitlementsChanged {
            attached: codes(&["audit", "reports"]),
            detached: vec![],
            entitlements: codes(&["audit", "export", "reports", "sync"]),
            at: now(),
        }]);
}

#[test]
fn attaching_only_codes_it_has_records_nothing() {
    given(created())
        .when(attach(&["sync", "export"]))
        .then_expect_events(vec![]);
    given(created())
        .when(attach(&[]))
        .then_expect_events(vec![]);
}

#[test]
fn attaching_beyond_the_maximum_is_refused() {
    let full = PolicySettings {
        entitlements: many_codes(MAX_ENTITLEMENTS),
        ..settings()
    };
    given(vec![created_with(full)])
        .when(attach(&["zzz"]))
        .then_expect_error(CatalogueError::TooManyEntitlements);
}

#[test]
fn detaching_records_the_codes_it_had_and_the_list_after() {
    given(created())
        .when(detach(&["sync", "reports", "sync"]))
        .then_expect_events(vec![PolicyEvent::PolicyEntitlementsChanged {
            attached: vec![],
            detached: codes(&["sync"]),
            entitlements: codes(&["export"]),
            at: now(),
        }]);
}

#[test]
fn detaching_only_codes_it_lacks_records_nothing() {
    given(created())
        .when(detach(&["reports"]))
        .then_expect_events(vec![]);
}

#[test]
fn the_entitlements_follow_attach_and_detach() {
    let policy = aggregate(vec![
        created_with(settings()),
        PolicyEvent::PolicyEntitlementsChanged {
            attached: codes(&["audit"]),
            detached: vec![],
            entitlements: codes(&["audit", "export", "sync"]),
            at: now(),
        },
        PolicyEvent::PolicyEntitlementsChanged {
            attached: vec![],
            detached: codes(&["export"]),
            entitlements: codes(&["audit", "sync"]),
            at: now(),
        },
    ]);
    let state = policy.state().unwrap();
    assert_eq!(state.settings.entitlements, codes(&["audit", "sync"]));
    assert_eq!(state.updated_at, now());
}

// ---------------------------------------------------------------------------------------
// Archive
// ---------------------------------------------------------------------------------------

#[test]
fn archiving_records_it_once() {
    given(created())
        .when(PolicyCommand::Archive { at: now() })
        .then_expect_events(vec![PolicyEvent::PolicyArchived { at: now() }]);
    given(archived())
        .when(PolicyCommand::Archive { at: now() })
        .then_expect_events(vec![]);
}

#[test]
fn unarchiving_records_it_once() {
    given(archived())
        .when(PolicyCommand::Unarchive { at: now() })
        .then_expect_events(vec![PolicyEvent::PolicyUnarchived { at: now() }]);
    given(created())
        .when(PolicyCommand::Unarchive { at: now() })
        .then_expect_events(vec![]);
}

#[test]
fn the_state_follows_archive_and_unarchive() {
    let mut events = archived();
    assert!(aggregate(events.clone()).state().unwrap().archived);
    events.push(PolicyEvent::PolicyUnarchived { at: now() });
    let policy = aggregate(events);
    assert!(!policy.state().unwrap().archived);
    assert_eq!(policy.state().unwrap().updated_at, now());
}

// ---------------------------------------------------------------------------------------
// Terms
// ---------------------------------------------------------------------------------------

#[test]
fn terms_carry_the_settings_the_codes_and_the_version_asked_for() {
    assert_eq!(Policy::default().terms(0), None);
    let policy = aggregate(vec![
        created_with(settings()),
        PolicyEvent::PolicyUpdated {
            settings: PolicySettings {
                max_devices: 7,
                ..settings()
            },
            at: now(),
        },
    ]);
    assert_eq!(
        policy.terms(2),
        Some(PolicyTerms {
            policy_id: policy_id(),
            version: 2,
            product_id: product_id(),
            product_code: code("desktop-app"),
            code: code("pro"),
            archived: false,
            settings: PolicySettings {
                max_devices: 7,
                ..settings()
            },
        })
    );
    assert!(aggregate(archived()).terms(2).unwrap().archived);
}

#[test]
fn a_book_holds_the_newest_terms_of_each_policy() {
    let policy = aggregate(created());
    let book = PolicyBook::default().with(std::sync::Arc::new(policy.terms(1).unwrap()));
    assert_eq!(book.get(policy_id()).unwrap().version, 1);
    let book = book.with(std::sync::Arc::new(policy.terms(2).unwrap()));
    assert_eq!(book.get(policy_id()).unwrap().version, 2);
    assert_eq!(book.iter().count(), 1);
    assert!(PolicyBook::default().get(policy_id()).is_none());
}

#[test]
fn grace_ends_a_grace_period_after_expiry_and_only_with_allow_grace() {
    let expires_at = t0();
    assert_eq!(
        settings().grace_until(expires_at),
        Some(t0() + Duration::days(14))
    );
    let restrict = PolicySettings {
        expiration_strategy: ExpirationStrategy::Restrict,
        grace_period: None,
        ..settings()
    };
    assert_eq!(restrict.grace_until(expires_at), None);
}

#[test]
fn settings_events_are_stored_flat_and_read_back_with_defaults() {
    let event = created_with(settings());
    let json = serde_json::to_value(&event).unwrap();
    let fields = json["PolicyCreated"].as_object().unwrap();
    assert_eq!(fields["max_devices"], json!(3));
    assert_eq!(fields["duration"], json!("P1Y"));
    assert_eq!(fields["expiration_basis"], json!("from_creation"));
    assert_eq!(fields["expiration_strategy"], json!("allow_grace"));
    assert_eq!(serde_json::from_value::<PolicyEvent>(json).unwrap(), event);
    // Only name and max_devices are required.
    let minimal = json!({"PolicyUpdated": {"name": "Basic", "max_devices": 1, "at": t0()}});
    assert_eq!(
        serde_json::from_value::<PolicyEvent>(minimal).unwrap(),
        PolicyEvent::PolicyUpdated {
            settings: PolicySettings {
                name: "Basic".to_owned(),
                max_devices: 1,
                duration: None,
                trial_duration: None,
                expiration_basis: ExpirationBasis::FromCreation,
                expiration_strategy: ExpirationStrategy::Restrict,
                grace_period: None,
                token_ttl: None,
                entitlements: vec![],
                metadata: Map::new(),
                ..PolicySettings::default()
            },
            at: t0(),
        }
    );
}

#[test]
fn each_event_reports_its_type_and_time() {
    for (event, name) in [
        (created_with(settings()), "PolicyCreated"),
        (
            PolicyEvent::PolicyUpdated {
                settings: settings(),
                at: t0(),
            },
            "PolicyUpdated",
        ),
        (
            PolicyEvent::PolicyEntitlementsChanged {
                attached: vec![],
                detached: vec![],
                entitlements: vec![],
                at: t0(),
            },
            "PolicyEntitlementsChanged",
        ),
        (PolicyEvent::PolicyArchived { at: t0() }, "PolicyArchived"),
        (
            PolicyEvent::PolicyUnarchived { at: t0() },
            "PolicyUnarchived",
        ),
    ] {
        assert_eq!(cqrs_es::DomainEvent::event_type(&event), name);
        assert_eq!(event.at(), t0());
    }
}

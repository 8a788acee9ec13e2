//! Given/when/then tests of a subscription that follows a policy: what it takes from the
//! policy and what it keeps as its own, the period from the first activation, grace, the
//! policy it follows changing or being switched, its own entitlements, and the deadline
//! notices. The policy's terms arrive in each command's `PolicyBook`, so a newer version in
//! the book is a policy change that reaches the subscription without an event of its own.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use cqrs_es::test::{AggregateTestExecutor, TestFramework};
use cqrs_es::Aggregate;
use serde_json::{json, Map};
use uuid::Uuid;

use super::{
    DeadlineNotices, DeviceDetails, DeviceInfo, NewSubscription, Override, PeriodChange, Status,
    Subscription, SubscriptionAction, SubscriptionCommand, SubscriptionError, SubscriptionEvent,
};
use crate::duration::IsoDuration;
use crate::policy::{ExpirationBasis, ExpirationStrategy, PolicyBook, PolicySettings, PolicyTerms};
use crate::values::{Code, DeviceId, Email, Plan, PolicyId, ProductId, Sha256Hex, SubscriptionId};

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

/// When commands are handled unless a test says otherwise.
fn now() -> DateTime<Utc> {
    day(1)
}

/// End of the period of "pro" (a year from creation: 2026-01-01).
fn period_end() -> DateTime<Utc> {
    day(365)
}

/// End of pro's 14 days of grace after `period_end()`.
fn grace_end() -> DateTime<Utc> {
    period_end() + Duration::days(14)
}

fn code(raw: &str) -> Code {
    Code::parse(raw).unwrap()
}

fn codes(raw: &[&str]) -> Vec<Code> {
    raw.iter().map(|c| code(c)).collect()
}

fn iso(raw: &str) -> IsoDuration {
    IsoDuration::parse(raw).unwrap()
}

fn plan(slug: &str) -> Plan {
    Plan::parse(slug).unwrap()
}

fn product_id() -> ProductId {
    ProductId::for_code(&code("desktop-app"))
}

fn policy_id(raw: &str) -> PolicyId {
    PolicyId::for_code(product_id(), &code(raw))
}

fn pro() -> PolicyId {
    policy_id("pro")
}

fn team() -> PolicyId {
    policy_id("team")
}

/// "pro": 2 devices, a year from creation, 14 days of grace, export and sync.
fn pro_settings() -> PolicySettings {
    PolicySettings {
        name: "Pro".to_owned(),
        max_devices: 2,
        duration: Some(iso("P1Y")),
        trial_duration: None,
        expiration_basis: ExpirationBasis::FromCreation,
        expiration_strategy: ExpirationStrategy::AllowGrace,
        grace_period: Some(iso("P14D")),
        token_ttl: None,
        entitlements: codes(&["export", "sync"]),
        metadata: Map::new(),
        ..PolicySettings::default()
    }
}

/// "team": 5 devices, perpetual, no grace.
fn team_settings() -> PolicySettings {
    PolicySettings {
        name: "Team".to_owned(),
        max_devices: 5,
        duration: None,
        trial_duration: None,
        expiration_basis: ExpirationBasis::FromCreation,
        expiration_strategy: ExpirationStrategy::Restrict,
        grace_period: None,
        token_ttl: None,
        entitlements: codes(&["audit"]),
        metadata: Map::new(),
        ..PolicySettings::default()
    }
}

/// The terms of the policy with this code at `version`.
fn terms(raw: &str, version: u64, settings: PolicySettings) -> Arc<PolicyTerms> {
    Arc::new(PolicyTerms {
        policy_id: policy_id(raw),
        version,
        product_id: product_id(),
        product_code: code("desktop-app"),
        code: code(raw),
        archived: false,
        settings,
    })
}

fn archived(terms: Arc<PolicyTerms>) -> Arc<PolicyTerms> {
    Arc::new(PolicyTerms {
        archived: true,
        ..(*terms).clone()
    })
}

fn book(policies: Vec<Arc<PolicyTerms>>) -> PolicyBook {
    policies
        .into_iter()
        .fold(PolicyBook::default(), |book, terms| book.with(terms))
}

/// pro at version 1 with these settings, and team at version 1.
fn book_with_pro(settings: PolicySettings) -> PolicyBook {
    book(vec![
        terms("pro", 1, settings),
        terms("team", 1, team_settings()),
    ])
}

/// The book every command carries unless a test says otherwise: pro and team, version 1.
fn book_v1() -> PolicyBook {
    book_with_pro(pro_settings())
}

/// pro changed (now at version 2) to these settings.
fn book_v2(settings: PolicySettings) -> PolicyBook {
    book(vec![
        terms("pro", 2, settings),
        terms("team", 1, team_settings()),
    ])
}

const LAPTOP: u128 = 1;
const DESKTOP: u128 = 2;
const PHONE: u128 = 3;

fn device_id(n: u128) -> DeviceId {
    DeviceId(Uuid::from_u128(0xd0_0000 + n))
}

fn fingerprint(n: u128) -> Sha256Hex {
    Sha256Hex::parse(&format!("{:064x}", 0xf0_0000 + n)).unwrap()
}

fn key_hash() -> Sha256Hex {
    Sha256Hex::parse(&format!("{:064x}", 0xa0_0001)).unwrap()
}

/// A subscription to follow pro; the plan, limit and period given are the ones pro
/// replaces unless they are named in `overrides`.
fn new_following(policy: Option<PolicyId>, overrides: Vec<Override>) -> NewSubscription {
    NewSubscription {
        subscription_id: SubscriptionId(Uuid::from_u128(1)),
        customer_email: Email::parse("ann@example.com").unwrap(),
        customer_name: "Ann Example".to_owned(),
        organization: None,
        plan: plan("custom"),
        starts_at: t0(),
        expires_at: Some(day(30)),
        trial_ends_at: None,
        max_devices: 9,
        features: vec!["reports".to_owned()],
        metadata: Map::new(),
        key_hash: key_hash(),
        key_prefix: "FLX-AB12C".to_owned(),
        policy_id: policy,
        overrides,
    }
}

/// What a creation records: the subscription as decided, then its key.
fn creation(
    policy: Option<(PolicyId, u64)>,
    plan_slug: &str,
    status: Status,
    expires_at: Option<DateTime<Utc>>,
    trial_ends_at: Option<DateTime<Utc>>,
    max_devices: u32,
    overrides: Vec<Override>,
) -> Vec<SubscriptionEvent> {
    let new = new_following(None, vec![]);
    vec![
        E::SubscriptionCreated {
            subscription_id: new.subscription_id,
            customer_email: new.customer_email,
            customer_name: new.customer_name,
            organization: new.organization,
            plan: plan(plan_slug),
            status,
            starts_at: t0(),
            expires_at,
            trial_ends_at,
            max_devices,
            features: new.features,
            metadata: new.metadata,
            at: t0(),
            policy_id: policy.map(|(id, _)| id),
            policy_version: policy.map(|(_, version)| version),
            overrides,
        },
        E::LicenseKeyIssued {
            key_hash: new.key_hash,
            key_prefix: new.key_prefix,
            at: t0(),
        },
    ]
}

/// Created at `t0()` to follow pro v1: plan pro, 2 devices, a year, no overrides.
fn following_pro() -> Vec<SubscriptionEvent> {
    creation(
        Some((pro(), 1)),
        "pro",
        Status::Active,
        Some(period_end()),
        None,
        2,
        vec![],
    )
}

/// Created at `t0()` with its own plan ("custom"), 9 devices and period ending `period_end()`.
fn of_its_own() -> Vec<SubscriptionEvent> {
    creation(
        None,
        "custom",
        Status::Active,
        Some(period_end()),
        None,
        9,
        vec![],
    )
}

/// Pro with its period from the first activation.
fn from_first_activation() -> PolicySettings {
    PolicySettings {
        expiration_basis: ExpirationBasis::FromFirstActivation,
        ..pro_settings()
    }
}

/// Created to follow pro (from the first activation): no end until a device activates.
fn following_pro_waiting() -> Vec<SubscriptionEvent> {
    creation(
        Some((pro(), 1)),
        "pro",
        Status::Active,
        None,
        None,
        2,
        vec![],
    )
}

fn and(mut events: Vec<SubscriptionEvent>, more: Vec<SubscriptionEvent>) -> Vec<SubscriptionEvent> {
    events.extend(more);
    events
}

fn given(events: Vec<SubscriptionEvent>) -> AggregateTestExecutor<Subscription> {
    TestFramework::<Subscription>::with(()).given(events)
}

/// A command handled at `at` with `book_v1()`.
fn cmd_at(at: DateTime<Utc>, action: SubscriptionAction) -> SubscriptionCommand {
    SubscriptionCommand::new(at, action).with_policies(book_v1())
}

/// A command handled at `now()` with `book_v1()`.
fn cmd(action: SubscriptionAction) -> SubscriptionCommand {
    cmd_at(now(), action)
}

/// A command handled at `at` with the given book.
fn cmd_with(
    book: PolicyBook,
    at: DateTime<Utc>,
    action: SubscriptionAction,
) -> SubscriptionCommand {
    SubscriptionCommand::new(at, action).with_policies(book)
}

fn create(new: NewSubscription) -> SubscriptionCommand {
    cmd_at(t0(), A::CreateSubscription(new))
}

fn activate(n: u128) -> SubscriptionAction {
    A::ActivateDevice(DeviceDetails {
        device_id: device_id(n),
        fingerprint_hash: fingerprint(n),
        info: DeviceInfo::default(),
    })
}

/// The device numbered `n` activated at `at`, leaving `active_devices`, under `version`.
fn activated(
    n: u128,
    active_devices: u32,
    at: DateTime<Utc>,
    version: Option<u64>,
) -> SubscriptionEvent {
    E::DeviceActivated {
        device_id: device_id(n),
        fingerprint_hash: fingerprint(n),
        info: DeviceInfo::default(),
        active_devices,
        at,
        policy_version: version,
        lease: None,
    }
}

/// Pro's subscription with the laptop and the desktop activated (its limit reached).
fn following_pro_with_two_devices() -> Vec<SubscriptionEvent> {
    and(
        following_pro(),
        vec![
            activated(LAPTOP, 1, t0(), Some(1)),
            activated(DESKTOP, 2, t0(), Some(1)),
        ],
    )
}

fn issue_token_until(n: u128, expires_at: DateTime<Utc>) -> SubscriptionAction {
    A::IssueLicenseToken {
        fingerprint_hash: fingerprint(n),
        token_id: Uuid::from_u128(0x70c3),
        expires_at,
    }
}

fn token_issued(n: u128, expires_at: DateTime<Utc>, at: DateTime<Utc>) -> SubscriptionEvent {
    E::LicenseTokenIssued {
        device_id: device_id(n),
        token_id: Uuid::from_u128(0x70c3),
        expires_at,
        at,
    }
}

fn follow(policy: Option<PolicyId>, overrides: Vec<Override>) -> SubscriptionAction {
    A::FollowPolicy {
        policy_id: policy,
        overrides,
        features: None,
    }
}

fn record_deadlines() -> SubscriptionAction {
    A::RecordDeadlines {
        reminder_days: vec![7, 1],
    }
}

fn expiring_soon(days_before: u32, at: DateTime<Utc>) -> SubscriptionEvent {
    E::SubscriptionExpiringSoon {
        expires_at: period_end(),
        days_before,
        at,
    }
}

fn expired(grace_until: Option<DateTime<Utc>>, at: DateTime<Utc>) -> SubscriptionEvent {
    E::SubscriptionExpired {
        expires_at: period_end(),
        trial: false,
        grace_until,
        at,
    }
}

fn grace_ended(at: DateTime<Utc>) -> SubscriptionEvent {
    E::SubscriptionGraceEnded {
        expires_at: period_end(),
        grace_until: grace_end(),
        at,
    }
}

fn aggregate(events: Vec<SubscriptionEvent>) -> Subscription {
    let mut subscription = Subscription::default();
    for event in events {
        subscription.apply(event);
    }
    subscription
}

// ---------------------------------------------------------------------------------------
// Creation
// ---------------------------------------------------------------------------------------

#[test]
fn a_subscription_created_to_follow_a_policy_takes_its_plan_limit_and_period() {
    given(vec![])
        .when(create(new_following(Some(pro()), vec![])))
        .then_expect_events(following_pro());
}

#[test]
fn creation_records_the_version_of_the_policy_it_decided_on() {
    given(vec![])
        .when(cmd_with(
            book_v2(pro_settings()),
            t0(),
            A::CreateSubscription(new_following(Some(pro()), vec![])),
        ))
        .then_expect_events(creation(
            Some((pro(), 2)),
            "pro",
            Status::Active,
            Some(period_end()),
            None,
            2,
            vec![],
        ));
}

#[test]
fn the_fields_named_in_overrides_keep_the_values_given_sorted_and_each_once() {
    let new = NewSubscription {
        trial_ends_at: Some(day(10)),
        ..new_following(
            Some(pro()),
            vec![
                Override::TrialEndsAt,
                Override::MaxDevices,
                Override::ExpiresAt,
                Override::MaxDevices,
            ],
        )
    };
    given(vec![]).when(create(new)).then_expect_events(creation(
        Some((pro(), 1)),
        "pro",
        Status::Trialing,
        Some(day(30)),
        Some(day(10)),
        9,
        vec![
            Override::MaxDevices,
            Override::ExpiresAt,
            Override::TrialEndsAt,
        ],
    ));
}

#[test]
fn a_policy_with_a_trial_starts_the_subscription_trialing_for_its_trial_duration() {
    let settings = PolicySettings {
        trial_duration: Some(iso("P14D")),
        ..pro_settings()
    };
    given(vec![])
        .when(cmd_with(
            book_with_pro(settings),
            t0(),
            A::CreateSubscription(new_following(Some(pro()), vec![])),
        ))
        .then_expect_events(creation(
            Some((pro(), 1)),
            "pro",
            Status::Trialing,
            Some(period_end()),
            Some(day(14)),
            2,
            vec![],
        ));
}

#[test]
fn a_period_from_the_first_activation_leaves_expires_at_open_at_creation() {
    given(vec![])
        .when(cmd_with(
            book_with_pro(from_first_activation()),
            t0(),
            A::CreateSubscription(new_following(Some(pro()), vec![])),
        ))
        .then_expect_events(following_pro_waiting());
}

#[test]
fn a_perpetual_policy_gives_a_subscription_without_end() {
    given(vec![])
        .when(create(new_following(Some(team()), vec![])))
        .then_expect_events(creation(
            Some((team(), 1)),
            "team",
            Status::Active,
            None,
            None,
            5,
            vec![],
        ));
}

#[test]
fn following_a_policy_not_in_the_book_is_policy_not_found() {
    given(vec![])
        .when(cmd_with(
            PolicyBook::default(),
            t0(),
            A::CreateSubscription(new_following(Some(pro()), vec![])),
        ))
        .then_expect_error(Error::PolicyNotFound);
}

#[test]
fn no_new_subscription_may_follow_an_archived_policy() {
    given(vec![])
        .when(cmd_with(
            book(vec![archived(terms("pro", 3, pro_settings()))]),
            t0(),
            A::CreateSubscription(new_following(Some(pro()), vec![])),
        ))
        .then_expect_error(Error::PolicyArchived);
}

#[test]
fn overrides_without_a_policy_are_dropped() {
    given(vec![])
        .when(create(NewSubscription {
            expires_at: Some(period_end()),
            ..new_following(None, vec![Override::MaxDevices])
        }))
        .then_expect_events(of_its_own());
}

#[test]
fn an_overridden_device_limit_is_checked_like_any_other() {
    given(vec![])
        .when(create(NewSubscription {
            max_devices: 0,
            ..new_following(Some(pro()), vec![Override::MaxDevices])
        }))
        .then_expect_error(Error::InvalidDeviceLimit {
            max: super::MAX_DEVICE_LIMIT,
        });
}

// ---------------------------------------------------------------------------------------
// Activation and the policy's device limit
// ---------------------------------------------------------------------------------------

#[test]
fn activation_records_the_version_of_the_policy_that_admitted_the_device() {
    given(following_pro())
        .when(cmd(activate(LAPTOP)))
        .then_expect_events(vec![activated(LAPTOP, 1, now(), Some(1))]);
}

#[test]
fn activation_stops_at_the_policy_device_limit() {
    given(following_pro_with_two_devices())
        .when(cmd(activate(PHONE)))
        .then_expect_error(Error::DeviceLimitReached {
            max_devices: 2,
            in_use: 2,
        });
}

#[test]
fn a_policy_that_raises_its_limit_admits_more_devices_without_a_subscription_event() {
    let raised = PolicySettings {
        max_devices: 3,
        ..pro_settings()
    };
    given(following_pro_with_two_devices())
        .when(cmd_with(book_v2(raised), now(), activate(PHONE)))
        .then_expect_events(vec![activated(PHONE, 3, now(), Some(2))]);
}

#[test]
fn a_policy_that_lowers_its_limit_admits_no_more_devices_but_keeps_the_active_ones() {
    let lowered = PolicySettings {
        max_devices: 1,
        ..pro_settings()
    };
    given(following_pro_with_two_devices())
        .when(cmd_with(book_v2(lowered.clone()), now(), activate(PHONE)))
        .then_expect_error(Error::DeviceLimitReached {
            max_devices: 1,
            in_use: 2,
        });
    // An active device re-activating is still nothing new.
    given(following_pro_with_two_devices())
        .when(cmd_with(book_v2(lowered), now(), activate(LAPTOP)))
        .then_expect_events(vec![]);
}

#[test]
fn an_overridden_device_limit_survives_a_policy_change() {
    let created = creation(
        Some((pro(), 1)),
        "pro",
        Status::Active,
        Some(period_end()),
        None,
        1,
        vec![Override::MaxDevices],
    );
    let raised = PolicySettings {
        max_devices: 5,
        ..pro_settings()
    };
    given(and(created, vec![activated(LAPTOP, 1, t0(), Some(1))]))
        .when(cmd_with(book_v2(raised), now(), activate(DESKTOP)))
        .then_expect_error(Error::DeviceLimitReached {
            max_devices: 1,
            in_use: 1,
        });
}

#[test]
fn a_subscription_whose_policy_is_missing_from_the_book_is_refused_not_decided_without() {
    for action in [activate(LAPTOP), record_deadlines()] {
        given(following_pro())
            .when(cmd_with(PolicyBook::default(), now(), action))
            .then_expect_error(Error::PolicyNotFound);
    }
}

#[test]
fn the_first_activation_starts_a_period_from_the_first_activation() {
    given(following_pro_waiting())
        .when(cmd_with(
            book_with_pro(from_first_activation()),
            day(10),
            activate(LAPTOP),
        ))
        .then_expect_events(vec![
            E::SubscriptionPeriodStarted {
                expires_at: day(10 + 365),
                policy_version: 1,
                at: day(10),
            },
            activated(LAPTOP, 1, day(10), Some(1)),
        ]);
}

#[test]
fn only_the_first_activation_starts_the_period() {
    let started = and(
        following_pro_waiting(),
        vec![
            E::SubscriptionPeriodStarted {
                expires_at: day(375),
                policy_version: 1,
                at: day(10),
            },
            activated(LAPTOP, 1, day(10), Some(1)),
        ],
    );
    assert_eq!(
        aggregate(started.clone()).state().unwrap().expires_at,
        Some(day(375))
    );
    given(started)
        .when(cmd_with(
            book_with_pro(from_first_activation()),
            day(20),
            activate(DESKTOP),
        ))
        .then_expect_events(vec![activated(DESKTOP, 2, day(20), Some(1))]);
}

#[test]
fn a_subscription_with_its_own_end_starts_no_period_on_its_first_activation() {
    let created = creation(
        Some((pro(), 1)),
        "pro",
        Status::Active,
        None,
        None,
        2,
        vec![Override::ExpiresAt],
    );
    given(created)
        .when(cmd_with(
            book_with_pro(from_first_activation()),
            day(10),
            activate(LAPTOP),
        ))
        .then_expect_events(vec![activated(LAPTOP, 1, day(10), Some(1))]);
}

// ---------------------------------------------------------------------------------------
// Grace
// ---------------------------------------------------------------------------------------

#[test]
fn within_its_grace_an_expired_subscription_still_activates_devices() {
    given(following_pro())
        .when(cmd_at(period_end(), activate(LAPTOP)))
        .then_expect_events(vec![activated(LAPTOP, 1, period_end(), Some(1))]);
    let last_moment = grace_end() - Duration::seconds(1);
    given(following_pro())
        .when(cmd_at(last_moment, activate(LAPTOP)))
        .then_expect_events(vec![activated(LAPTOP, 1, last_moment, Some(1))]);
}

#[test]
fn after_its_grace_an_expired_subscription_is_license_expired() {
    given(following_pro())
        .when(cmd_at(grace_end(), activate(LAPTOP)))
        .then_expect_error(Error::LicenseExpired);
    given(following_pro_with_two_devices())
        .when(cmd_at(grace_end(), issue_token_until(LAPTOP, day(500))))
        .then_expect_error(Error::LicenseExpired);
}

#[test]
fn a_policy_without_grace_expires_at_the_end_of_the_period() {
    let restrict = PolicySettings {
        expiration_strategy: ExpirationStrategy::Restrict,
        grace_period: None,
        ..pro_settings()
    };
    given(following_pro())
        .when(cmd_with(book_v2(restrict), period_end(), activate(LAPTOP)))
        .then_expect_error(Error::LicenseExpired);
}

#[test]
fn grace_does_not_lift_a_suspension() {
    let suspended = E::SubscriptionSuspended {
        previous_status: Status::Active,
        reason: None,
        at: t0(),
    };
    given(and(following_pro(), vec![suspended]))
        .when(cmd_at(period_end(), activate(LAPTOP)))
        .then_expect_error(Error::LicenseSuspended);
}

#[test]
fn a_token_issued_within_grace_expires_when_the_grace_ends() {
    let at = period_end() + Duration::days(1);
    given(following_pro_with_two_devices())
        .when(cmd_at(
            at,
            issue_token_until(LAPTOP, at + Duration::days(30)),
        ))
        .then_expect_events(vec![token_issued(LAPTOP, grace_end(), at)]);
}

#[test]
fn a_token_lives_as_long_as_the_policy_token_ttl_says() {
    let hourly = PolicySettings {
        token_ttl: Some(iso("PT1H")),
        ..pro_settings()
    };
    given(following_pro_with_two_devices())
        .when(cmd_with(
            book_v2(hourly),
            now(),
            issue_token_until(LAPTOP, now() + Duration::days(7)),
        ))
        .then_expect_events(vec![token_issued(
            LAPTOP,
            now() + Duration::hours(1),
            now(),
        )]);
}

#[test]
fn a_token_ttl_reaching_past_the_grace_is_capped_at_its_end() {
    let monthly = PolicySettings {
        token_ttl: Some(iso("P30D")),
        ..pro_settings()
    };
    let at = period_end() + Duration::days(10);
    given(following_pro_with_two_devices())
        .when(cmd_with(
            book_v2(monthly),
            at,
            issue_token_until(LAPTOP, at + Duration::hours(1)),
        ))
        .then_expect_events(vec![token_issued(LAPTOP, grace_end(), at)]);
}

// ---------------------------------------------------------------------------------------
// Direct changes to a follower: plan, device limit, period
// ---------------------------------------------------------------------------------------

#[test]
fn the_plan_of_a_follower_is_its_policy_code_and_cannot_be_changed_directly() {
    given(following_pro())
        .when(cmd(A::ChangePlan {
            plan: plan("enterprise"),
        }))
        .then_expect_error(Error::PlanFollowsPolicy);
}

#[test]
fn changing_a_follower_device_limit_starts_from_the_policy_limit_and_overrides_it() {
    given(following_pro())
        .when(cmd(A::ChangeDeviceLimit {
            max_devices: Some(4),
            deactivate_device_ids: vec![],
        }))
        .then_expect_events(vec![E::SubscriptionDeviceLimitChanged {
            previous_max_devices: 2,
            max_devices: 4,
            at: now(),
        }]);
    // The limit it replaces is the one in force, the policy's newest.
    let raised = PolicySettings {
        max_devices: 3,
        ..pro_settings()
    };
    given(following_pro())
        .when(cmd_with(
            book_v2(raised),
            now(),
            A::ChangeDeviceLimit {
                max_devices: Some(4),
                deactivate_device_ids: vec![],
            },
        ))
        .then_expect_events(vec![E::SubscriptionDeviceLimitChanged {
            previous_max_devices: 3,
            max_devices: 4,
            at: now(),
        }]);
}

#[test]
fn a_device_limit_set_directly_is_kept_through_policy_changes() {
    let changed = and(
        following_pro(),
        vec![
            E::SubscriptionDeviceLimitChanged {
                previous_max_devices: 2,
                max_devices: 1,
                at: t0(),
            },
            activated(LAPTOP, 1, t0(), Some(1)),
        ],
    );
    assert_eq!(
        aggregate(changed.clone()).state().unwrap().overrides,
        vec![Override::MaxDevices]
    );
    let raised = PolicySettings {
        max_devices: 5,
        ..pro_settings()
    };
    given(changed)
        .when(cmd_with(book_v2(raised), now(), activate(DESKTOP)))
        .then_expect_error(Error::DeviceLimitReached {
            max_devices: 1,
            in_use: 1,
        });
}

#[test]
fn changing_a_follower_period_overrides_only_the_ends_that_changed() {
    let renewed = and(
        following_pro(),
        vec![E::SubscriptionPeriodChanged {
            starts_at: t0(),
            expires_at: Some(day(400)),
            trial_ends_at: None,
            at: now(),
        }],
    );
    assert_eq!(
        aggregate(renewed).state().unwrap().overrides,
        vec![Override::ExpiresAt]
    );
    let trial_only = and(
        following_pro(),
        vec![E::SubscriptionPeriodChanged {
            starts_at: day(-1),
            expires_at: Some(period_end()),
            trial_ends_at: Some(day(7)),
            at: now(),
        }],
    );
    assert_eq!(
        aggregate(trial_only).state().unwrap().overrides,
        vec![Override::TrialEndsAt]
    );
    given(following_pro())
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
fn a_subscription_of_its_own_records_no_overrides() {
    let changed = and(
        of_its_own(),
        vec![
            E::SubscriptionDeviceLimitChanged {
                previous_max_devices: 9,
                max_devices: 3,
                at: now(),
            },
            E::SubscriptionPeriodChanged {
                starts_at: t0(),
                expires_at: Some(day(400)),
                trial_ends_at: Some(day(7)),
                at: now(),
            },
        ],
    );
    assert!(aggregate(changed).state().unwrap().overrides.is_empty());
}

// ---------------------------------------------------------------------------------------
// FollowPolicy
// ---------------------------------------------------------------------------------------

#[test]
fn a_subscription_of_its_own_may_start_following_a_policy() {
    given(of_its_own())
        .when(cmd(follow(Some(team()), vec![])))
        .then_expect_events(vec![E::SubscriptionPolicyChanged {
            previous_policy_id: None,
            policy_id: Some(team()),
            policy_version: Some(1),
            plan: plan("team"),
            max_devices: 5,
            features: vec!["reports".to_owned()],
            overrides: vec![],
            at: now(),
        }]);
}

#[test]
fn a_follower_may_switch_policies_keeping_the_limit_it_overrides() {
    given(following_pro())
        .when(cmd(A::FollowPolicy {
            policy_id: Some(team()),
            overrides: vec![Override::MaxDevices, Override::MaxDevices],
            features: Some(vec!["audit".to_owned()]),
        }))
        .then_expect_events(vec![E::SubscriptionPolicyChanged {
            previous_policy_id: Some(pro()),
            policy_id: Some(team()),
            policy_version: Some(1),
            plan: plan("team"),
            max_devices: 2,
            features: vec!["audit".to_owned()],
            overrides: vec![Override::MaxDevices],
            at: now(),
        }]);
}

#[test]
fn following_no_policy_keeps_the_values_in_force_as_its_own() {
    let raised = PolicySettings {
        max_devices: 3,
        ..pro_settings()
    };
    given(following_pro())
        .when(cmd_with(
            book_v2(raised),
            now(),
            follow(None, vec![Override::MaxDevices]),
        ))
        .then_expect_events(vec![E::SubscriptionPolicyChanged {
            previous_policy_id: Some(pro()),
            policy_id: None,
            policy_version: None,
            plan: plan("pro"),
            max_devices: 3,
            features: vec!["reports".to_owned()],
            overrides: vec![],
            at: now(),
        }]);
}

#[test]
fn the_state_follows_a_policy_change() {
    let switched = and(
        following_pro(),
        vec![E::SubscriptionPolicyChanged {
            previous_policy_id: Some(pro()),
            policy_id: Some(team()),
            policy_version: Some(1),
            plan: plan("team"),
            max_devices: 2,
            features: vec!["audit".to_owned()],
            overrides: vec![Override::MaxDevices],
            at: now(),
        }],
    );
    let subscription = aggregate(switched);
    let state = subscription.state().unwrap();
    assert_eq!(state.policy_id, Some(team()));
    assert_eq!(state.plan, plan("team"));
    assert_eq!(state.max_devices, 2);
    assert_eq!(state.features, vec!["audit".to_owned()]);
    assert_eq!(state.overrides, vec![Override::MaxDevices]);
    assert_eq!(state.updated_at, now());
}

#[test]
fn switching_to_a_policy_whose_limit_is_below_the_active_devices_is_refused() {
    let single = PolicySettings {
        max_devices: 1,
        ..team_settings()
    };
    given(following_pro_with_two_devices())
        .when(cmd_with(
            book(vec![
                terms("pro", 1, pro_settings()),
                terms("team", 1, single),
            ]),
            now(),
            follow(Some(team()), vec![]),
        ))
        .then_expect_error(Error::DeviceLimitBelowActiveCount {
            active: 2,
            requested: 1,
            must_deactivate: 1,
        });
}

#[test]
fn following_the_same_policy_the_same_way_records_nothing() {
    given(following_pro())
        .when(cmd(follow(Some(pro()), vec![])))
        .then_expect_events(vec![]);
    given(of_its_own())
        .when(cmd(follow(None, vec![])))
        .then_expect_events(vec![]);
}

#[test]
fn following_the_same_policy_after_it_changed_its_limit_records_nothing() {
    // The limit in force is the policy's either way: nothing about the subscription changes.
    let raised = PolicySettings {
        max_devices: 4,
        ..pro_settings()
    };
    given(following_pro())
        .when(cmd_with(
            book_v2(raised),
            now(),
            follow(Some(pro()), vec![]),
        ))
        .then_expect_events(vec![]);
}

#[test]
fn following_a_policy_not_in_the_book_is_refused() {
    given(of_its_own())
        .when(cmd(follow(Some(policy_id("nope")), vec![])))
        .then_expect_error(Error::PolicyNotFound);
}

#[test]
fn an_archived_policy_takes_no_new_followers_but_keeps_its_own() {
    let archived_team = book(vec![
        terms("pro", 1, pro_settings()),
        archived(terms("team", 2, team_settings())),
    ]);
    given(of_its_own())
        .when(cmd_with(
            archived_team.clone(),
            now(),
            follow(Some(team()), vec![]),
        ))
        .then_expect_error(Error::PolicyArchived);
    let archived_pro = book(vec![archived(terms("pro", 2, pro_settings()))]);
    given(following_pro())
        .when(cmd_with(
            archived_pro,
            now(),
            follow(Some(pro()), vec![Override::MaxDevices]),
        ))
        .then_expect_events(vec![E::SubscriptionPolicyChanged {
            previous_policy_id: Some(pro()),
            policy_id: Some(pro()),
            policy_version: Some(2),
            plan: plan("pro"),
            max_devices: 2,
            features: vec!["reports".to_owned()],
            overrides: vec![Override::MaxDevices],
            at: now(),
        }]);
}

#[test]
fn a_canceled_subscription_follows_no_other_policy() {
    let canceled = E::SubscriptionCanceled {
        previous_status: Status::Active,
        reason: None,
        at: t0(),
    };
    given(and(of_its_own(), vec![canceled]))
        .when(cmd(follow(Some(team()), vec![])))
        .then_expect_error(Error::Canceled);
}

// ---------------------------------------------------------------------------------------
// Its own entitlements
// ---------------------------------------------------------------------------------------

fn features_updated(features: &[&str]) -> SubscriptionEvent {
    E::SubscriptionDetailsUpdated {
        customer_email: None,
        customer_name: None,
        organization: None,
        features: Some(features.iter().map(|f| (*f).to_owned()).collect()),
        metadata: None,
        at: now(),
    }
}

#[test]
fn attaching_entitlements_adds_them_to_its_own_sorted_and_each_once() {
    given(following_pro())
        .when(cmd(A::AttachEntitlements {
            codes: codes(&["sync", "audit", "reports", "audit"]),
        }))
        .then_expect_events(vec![features_updated(&["audit", "reports", "sync"])]);
}

#[test]
fn attaching_entitlements_it_has_records_nothing() {
    given(following_pro())
        .when(cmd(A::AttachEntitlements {
            codes: codes(&["reports"]),
        }))
        .then_expect_events(vec![]);
}

#[test]
fn attaching_an_entitlement_it_has_records_nothing_whatever_the_order_of_its_own() {
    let mut created = of_its_own();
    if let E::SubscriptionCreated { features, .. } = &mut created[0] {
        *features = vec!["sync".to_owned(), "export".to_owned()];
    }
    given(created)
        .when(cmd(A::AttachEntitlements {
            codes: codes(&["export"]),
        }))
        .then_expect_events(vec![]);
}

#[test]
fn detaching_entitlements_removes_them_from_its_own() {
    given(following_pro())
        .when(cmd(A::DetachEntitlements {
            codes: codes(&["reports", "audit"]),
        }))
        .then_expect_events(vec![features_updated(&[])]);
}

#[test]
fn detaching_entitlements_it_lacks_records_nothing() {
    given(following_pro())
        .when(cmd(A::DetachEntitlements {
            codes: codes(&["export"]),
        }))
        .then_expect_events(vec![]);
}

#[test]
fn the_entitlements_in_force_are_the_policy_and_its_own() {
    let pro = terms("pro", 1, pro_settings());
    assert_eq!(
        super::effective_entitlements(&["reports".to_owned(), "sync".to_owned()], Some(&pro)),
        vec!["export", "reports", "sync"]
    );
    assert_eq!(
        super::effective_entitlements(&["reports".to_owned()], None),
        vec!["reports"]
    );
}

// ---------------------------------------------------------------------------------------
// Deadlines
// ---------------------------------------------------------------------------------------

/// RecordDeadlines at `at` with `book_v1()`.
fn deadlines_at(at: DateTime<Utc>) -> SubscriptionCommand {
    cmd_at(at, record_deadlines())
}

#[test]
fn nothing_is_due_before_the_first_reminder() {
    given(following_pro())
        .when(deadlines_at(period_end() - Duration::days(8)))
        .then_expect_events(vec![]);
}

#[test]
fn a_reminder_is_recorded_seven_days_before_the_end() {
    let at = period_end() - Duration::days(7);
    given(following_pro())
        .when(deadlines_at(at))
        .then_expect_events(vec![expiring_soon(7, at)]);
}

#[test]
fn a_reminder_is_recorded_one_day_before_the_end_after_the_seven_day_one() {
    let at = period_end() - Duration::days(1);
    given(and(
        following_pro(),
        vec![expiring_soon(7, period_end() - Duration::days(7))],
    ))
    .when(deadlines_at(at))
    .then_expect_events(vec![expiring_soon(1, at)]);
}

#[test]
fn after_downtime_only_the_nearest_due_reminder_is_recorded() {
    let at = period_end() - Duration::hours(12);
    given(following_pro())
        .when(deadlines_at(at))
        .then_expect_events(vec![expiring_soon(1, at)]);
}

#[test]
fn each_reminder_is_recorded_once() {
    let seven = period_end() - Duration::days(7);
    given(and(following_pro(), vec![expiring_soon(7, seven)]))
        .when(deadlines_at(period_end() - Duration::days(3)))
        .then_expect_events(vec![]);
    let one = period_end() - Duration::days(1);
    given(and(
        following_pro(),
        vec![expiring_soon(7, seven), expiring_soon(1, one)],
    ))
    .when(deadlines_at(period_end() - Duration::hours(1)))
    .then_expect_events(vec![]);
    // Nor does a nearer reminder come back for a farther one.
    given(and(following_pro(), vec![expiring_soon(1, one)]))
        .when(deadlines_at(period_end() - Duration::hours(1)))
        .then_expect_events(vec![]);
}

#[test]
fn the_expiry_is_recorded_at_the_end_with_the_grace_the_policy_gives() {
    given(following_pro())
        .when(deadlines_at(period_end()))
        .then_expect_events(vec![expired(Some(grace_end()), period_end())]);
    given(of_its_own())
        .when(deadlines_at(period_end()))
        .then_expect_events(vec![expired(None, period_end())]);
}

#[test]
fn the_expiry_is_recorded_once() {
    given(and(
        following_pro(),
        vec![expired(Some(grace_end()), period_end())],
    ))
    .when(deadlines_at(period_end() + Duration::days(1)))
    .then_expect_events(vec![]);
}

#[test]
fn after_downtime_the_expiry_is_recorded_late_rather_than_never() {
    let late = period_end() + Duration::days(3);
    given(and(
        of_its_own(),
        vec![expiring_soon(7, period_end() - Duration::days(7))],
    ))
    .when(deadlines_at(late))
    .then_expect_events(vec![expired(None, late)]);
}

#[test]
fn the_end_of_grace_is_recorded_once() {
    let expired_at = and(
        following_pro(),
        vec![expired(Some(grace_end()), period_end())],
    );
    given(expired_at.clone())
        .when(deadlines_at(grace_end() - Duration::seconds(1)))
        .then_expect_events(vec![]);
    given(expired_at.clone())
        .when(deadlines_at(grace_end()))
        .then_expect_events(vec![grace_ended(grace_end())]);
    given(and(expired_at, vec![grace_ended(grace_end())]))
        .when(deadlines_at(grace_end() + Duration::days(1)))
        .then_expect_events(vec![]);
}

#[test]
fn after_downtime_past_the_grace_the_expiry_and_the_end_of_grace_are_recorded_together() {
    let late = grace_end() + Duration::days(2);
    given(following_pro())
        .when(deadlines_at(late))
        .then_expect_events(vec![expired(Some(grace_end()), late), grace_ended(late)]);
}

#[test]
fn a_trial_ends_with_notices_of_its_own() {
    let trial_end = day(14);
    let created = creation(
        Some((pro(), 1)),
        "pro",
        Status::Trialing,
        Some(period_end()),
        Some(trial_end),
        2,
        vec![],
    );
    given(created.clone())
        .when(deadlines_at(day(7)))
        .then_expect_events(vec![E::SubscriptionExpiringSoon {
            expires_at: trial_end,
            days_before: 7,
            at: day(7),
        }]);
    // A trial has no grace.
    given(created)
        .when(deadlines_at(trial_end))
        .then_expect_events(vec![E::SubscriptionExpired {
            expires_at: trial_end,
            trial: true,
            grace_until: None,
            at: trial_end,
        }]);
}

#[test]
fn a_suspended_or_canceled_subscription_expires_silently() {
    for event in [
        E::SubscriptionSuspended {
            previous_status: Status::Active,
            reason: None,
            at: t0(),
        },
        E::SubscriptionCanceled {
            previous_status: Status::Active,
            reason: None,
            at: t0(),
        },
    ] {
        for at in [period_end() - Duration::days(1), period_end(), grace_end()] {
            given(and(following_pro(), vec![event.clone()]))
                .when(deadlines_at(at))
                .then_expect_events(vec![]);
        }
    }
}

#[test]
fn a_perpetual_or_not_yet_started_subscription_has_no_deadline() {
    given(creation(
        None,
        "custom",
        Status::Active,
        None,
        None,
        9,
        vec![],
    ))
    .when(deadlines_at(day(10_000)))
    .then_expect_events(vec![]);
    given(following_pro_waiting())
        .when(cmd_with(
            book_with_pro(from_first_activation()),
            day(10_000),
            record_deadlines(),
        ))
        .then_expect_events(vec![]);
}

#[test]
fn a_renewal_starts_the_notices_afresh_for_the_new_end() {
    let renewed_end = day(730);
    let renewed = and(
        of_its_own(),
        vec![
            expiring_soon(7, period_end() - Duration::days(7)),
            expiring_soon(1, period_end() - Duration::days(1)),
            expired(None, period_end()),
            E::SubscriptionPeriodChanged {
                starts_at: t0(),
                expires_at: Some(renewed_end),
                trial_ends_at: None,
                at: period_end() + Duration::days(1),
            },
        ],
    );
    given(renewed.clone())
        .when(deadlines_at(day(400)))
        .then_expect_events(vec![]);
    let at = renewed_end - Duration::days(7);
    given(renewed.clone())
        .when(deadlines_at(at))
        .then_expect_events(vec![E::SubscriptionExpiringSoon {
            expires_at: renewed_end,
            days_before: 7,
            at,
        }]);
    given(renewed)
        .when(deadlines_at(renewed_end))
        .then_expect_events(vec![E::SubscriptionExpired {
            expires_at: renewed_end,
            trial: false,
            grace_until: None,
            at: renewed_end,
        }]);
}

#[test]
fn the_state_keeps_the_notices_of_the_deadline_in_force() {
    let seven = period_end() - Duration::days(7);
    let subscription = aggregate(and(
        following_pro(),
        vec![
            expiring_soon(7, seven),
            expired(Some(grace_end()), period_end()),
        ],
    ));
    assert_eq!(
        subscription.state().unwrap().deadline_notices,
        Some(DeadlineNotices {
            ends_at: period_end(),
            reminded_days: Some(7),
            expired: true,
            grace_ended: false,
        })
    );
}

// ---------------------------------------------------------------------------------------
// Logs from before policies
// ---------------------------------------------------------------------------------------

#[test]
fn a_log_written_before_policies_reads_and_decides_as_a_subscription_of_its_own() {
    const AT: &str = "2025-01-01T00:00:00Z";
    let hash = format!("{:064x}", 0xa0_0001);
    let stored = [
        json!({"SubscriptionCreated": {"subscription_id": Uuid::from_u128(1),
            "customer_email": "ann@example.com", "customer_name": "Ann", "organization": null,
            "plan": "pro", "status": "active", "starts_at": AT,
            "expires_at": "2026-01-01T00:00:00Z", "trial_ends_at": null, "max_devices": 2,
            "features": ["export"], "metadata": {}, "at": AT}}),
        json!({"LicenseKeyIssued": {"key_hash": hash, "key_prefix": "FLX-AB12C", "at": AT}}),
        json!({"DeviceActivated": {"device_id": device_id(LAPTOP),
            "fingerprint_hash": fingerprint(LAPTOP), "name": null, "platform": null,
            "os_version": null, "app_version": null, "hostname": null, "active_devices": 1,
            "at": AT}}),
        json!({"SubscriptionDeviceLimitChanged": {"previous_max_devices": 2,
            "max_devices": 3, "at": AT}}),
    ];
    let events: Vec<SubscriptionEvent> = stored
        .iter()
        .map(|json| serde_json::from_value(json.clone()).unwrap())
        .collect();
    // Written back, they are what was stored: no policy field appears.
    for (event, json) in events.iter().zip(&stored) {
        assert_eq!(&serde_json::to_value(event).unwrap(), json);
    }
    let subscription = aggregate(events.clone());
    let state = subscription.state().unwrap();
    assert_eq!(state.policy_id, None);
    assert!(state.overrides.is_empty());
    assert_eq!(state.deadline_notices, None);
    assert_eq!(state.max_devices_under(None), 3);
    // It decides with no policies at all.
    given(events.clone())
        .when(SubscriptionCommand::new(now(), activate(DESKTOP)))
        .then_expect_events(vec![activated(DESKTOP, 2, now(), None)]);
    given(events.clone())
        .when(SubscriptionCommand::new(period_end(), record_deadlines()))
        .then_expect_events(vec![expired(None, period_end())]);
    given(events)
        .when(cmd(follow(Some(team()), vec![])))
        .then_expect_events(vec![E::SubscriptionPolicyChanged {
            previous_policy_id: None,
            policy_id: Some(team()),
            policy_version: Some(1),
            plan: plan("team"),
            max_devices: 5,
            features: vec!["export".to_owned()],
            overrides: vec![],
            at: now(),
        }]);
}

#[test]
fn a_reminder_farther_back_than_the_calendar_is_simply_due() {
    let at = period_end() - Duration::days(30);
    given(of_its_own())
        .when(cmd_at(
            at,
            A::RecordDeadlines {
                reminder_days: vec![u32::MAX],
            },
        ))
        .then_expect_events(vec![expiring_soon(u32::MAX, at)]);
}

#[test]
fn a_trial_that_outlasts_the_period_ends_with_the_period_and_its_grace() {
    let created = creation(
        Some((pro(), 1)),
        "pro",
        Status::Trialing,
        Some(period_end()),
        Some(day(400)),
        2,
        vec![Override::TrialEndsAt],
    );
    given(created)
        .when(deadlines_at(period_end()))
        .then_expect_events(vec![expired(Some(grace_end()), period_end())]);
}

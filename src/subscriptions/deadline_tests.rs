//! The deadline scheduler's passes on a temporary SQLite store, at instants of the test's
//! choosing: the read model is rebuilt (a replay, as the projector would keep it) between
//! passes, so each pass sees what the previous one recorded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use flowlytix_aggregates::policy::ExpirationStrategy;
use flowlytix_aggregates::subscription::NewSubscription;
use flowlytix_aggregates::{
    Code, IsoDuration, Plan, PolicyCommand, PolicyId, PolicySettings, ProductId,
    SubscriptionAction, SubscriptionId,
};
use serde_json::Map;
use tokio::sync::watch;

use super::deadlines::{DeadlineScheduler, Pass};
use crate::config::DeadlineSettings;
use crate::store::EventMetadata;
use crate::test_support::{fingerprint, services, Services};

fn days(n: i64) -> TimeDelta {
    TimeDelta::days(n)
}

fn scheduler(services: &Services, reminder_days: Vec<u32>) -> DeadlineScheduler {
    DeadlineScheduler::new(
        services.subscriptions.shared_commands(),
        DeadlineSettings {
            scan_interval: Duration::from_secs(60),
            reminder_days,
        },
    )
}

/// Projects everything so far, then runs one pass at `now`.
async fn pass_at(
    services: &Services,
    scheduler: &DeadlineScheduler,
    now: DateTime<Utc>,
    covered: Option<DateTime<Utc>>,
) -> Pass {
    flowlytix_projections::replay::replay(&services.store.db, &|_| {})
        .await
        .expect("the read models rebuild");
    let (_stop, running) = watch::channel(false);
    let mut connection = services.store.db.acquire().await.unwrap();
    let pass = scheduler
        .pass(connection.conn(), now, covered, &running)
        .await
        .expect("the pass runs");
    assert!(pass.complete, "{pass:?}");
    pass
}

async fn history(services: &Services, id: SubscriptionId) -> Vec<String> {
    let db = crate::test_support::sqlite(&services.store.db);
    sqlx::query_scalar("select event_type from events where aggregate_id = $1 order by sequence")
        .bind(id.to_string())
        .fetch_all(db)
        .await
        .unwrap()
}

/// A subscription created now: following a policy with a 30-day period and 3 days' grace
/// when `grace` is set, otherwise of its own, expiring in 30 days.
async fn subscription(
    services: &Services,
    start: DateTime<Utc>,
    grace: bool,
    trial_ends_at: Option<DateTime<Utc>>,
) -> (SubscriptionId, DateTime<Utc>) {
    let policy_id = if grace {
        let product_id = ProductId(uuid::Uuid::new_v4());
        let code = Code::parse("monthly").unwrap();
        let policy_id = PolicyId::for_code(product_id, &code);
        let policies = services.subscriptions.commands().policies();
        policies
            .run(
                policy_id,
                vec![PolicyCommand::Create {
                    product_id,
                    product_code: Code::parse("app").unwrap(),
                    code,
                    settings: PolicySettings {
                        name: "Monthly".into(),
                        max_devices: 2,
                        duration: Some(IsoDuration::parse("P30D").unwrap()),
                        trial_duration: None,
                        expiration_basis: Default::default(),
                        expiration_strategy: ExpirationStrategy::AllowGrace,
                        grace_period: Some(IsoDuration::parse("P3D").unwrap()),
                        token_ttl: None,
                        entitlements: vec![],
                        metadata: Map::new(),
                        ..PolicySettings::default()
                    },
                    at: start,
                }],
                EventMetadata::system(start),
                None,
            )
            .await
            .expect("the policy is created");
        Some(policy_id)
    } else {
        None
    };
    let subscription_id = SubscriptionId(uuid::Uuid::new_v4());
    let new = NewSubscription {
        subscription_id,
        customer_email: flowlytix_aggregates::Email::parse("grace@example.com").unwrap(),
        customer_name: "Grace Period".into(),
        organization: None,
        plan: Plan::parse("pro").unwrap(),
        starts_at: start,
        expires_at: (!grace).then(|| start + days(30)),
        trial_ends_at,
        max_devices: 2,
        features: vec![],
        metadata: Map::new(),
        key_hash: fingerprint(&subscription_id.to_string()),
        key_prefix: "FLX-TEST".into(),
        policy_id,
        overrides: vec![],
    };
    let committed = services
        .subscriptions
        .commands()
        .run(
            subscription_id,
            vec![SubscriptionAction::CreateSubscription(new)],
            EventMetadata::system(start),
            None,
        )
        .await
        .expect("the subscription is created");
    let expires_at = committed.aggregate.state().unwrap().expires_at.unwrap();
    (subscription_id, expires_at)
}

#[tokio::test]
async fn reminders_expiry_and_the_end_of_grace_are_each_recorded_once_when_their_instant_passes() {
    let services = services().await;
    let start = Utc::now();
    let (id, expires_at) = subscription(&services, start, true, None).await;
    assert_eq!(expires_at, start + days(30), "the policy's period");
    let scheduler = scheduler(&services, vec![7, 1]);
    let second = TimeDelta::seconds(1);

    // Nothing is due for weeks: the pass reads no subscription at all.
    assert_eq!(
        pass_at(&services, &scheduler, start, None).await.examined,
        0
    );
    let at = expires_at - days(7) + second;
    let pass = pass_at(&services, &scheduler, at, Some(start)).await;
    assert_eq!(pass.recorded, ["SubscriptionExpiringSoon"]);
    // Until the next reminder, nothing is read again.
    let later = expires_at - days(2);
    assert_eq!(
        pass_at(&services, &scheduler, later, Some(at))
            .await
            .examined,
        0
    );
    let at = expires_at - days(1) + second;
    let pass = pass_at(&services, &scheduler, at, Some(later)).await;
    assert_eq!(pass.recorded, ["SubscriptionExpiringSoon"]);
    let at = expires_at + second;
    let pass = pass_at(&services, &scheduler, at, Some(at - second)).await;
    assert_eq!(pass.recorded, ["SubscriptionExpired"]);
    // In grace: nothing more until it ends.
    let later = expires_at + days(2);
    assert_eq!(
        pass_at(&services, &scheduler, later, Some(at))
            .await
            .examined,
        0
    );
    let at = expires_at + days(3) + second;
    let pass = pass_at(&services, &scheduler, at, Some(later)).await;
    assert_eq!(pass.recorded, ["SubscriptionGraceEnded"]);
    // Done for this deadline: a new leader's catch-up (no `covered`) records nothing more
    // and reads nothing.
    let pass = pass_at(&services, &scheduler, at + days(30), None).await;
    assert_eq!(
        pass,
        Pass {
            examined: 0,
            recorded: vec![],
            complete: true
        }
    );

    let history = history(&services, id).await;
    let notices: Vec<&str> = history
        .iter()
        .map(String::as_str)
        .filter(|t| t.starts_with("SubscriptionExp") || t.ends_with("GraceEnded"))
        .collect();
    assert_eq!(
        notices,
        [
            "SubscriptionExpiringSoon",
            "SubscriptionExpiringSoon",
            "SubscriptionExpired",
            "SubscriptionGraceEnded"
        ]
    );
}

#[tokio::test]
async fn a_scheduler_that_ran_for_months_records_what_is_due_late_and_once() {
    let services = services().await;
    let start = Utc::now();
    let (id, _) = subscription(&services, start, true, None).await;
    let (own, _) = subscription(&services, start, false, None).await;
    let scheduler = scheduler(&services, vec![7, 1]);
    // First pass months after every deadline: the nearest notices only, no stale reminder.
    let pass = pass_at(&services, &scheduler, start + days(90), None).await;
    assert_eq!(pass.examined, 2);
    let mut recorded = pass.recorded.clone();
    recorded.sort();
    assert_eq!(
        recorded,
        [
            "SubscriptionExpired",
            "SubscriptionExpired",
            "SubscriptionGraceEnded"
        ]
    );
    let pass = pass_at(&services, &scheduler, start + days(91), None).await;
    assert_eq!(pass.examined, 0, "{pass:?}");
    assert!(!history(&services, id)
        .await
        .iter()
        .any(|t| t == "SubscriptionExpiringSoon"));
    assert!(history(&services, own)
        .await
        .contains(&"SubscriptionExpired".to_owned()));
}

#[tokio::test]
async fn a_trial_ends_on_its_own_deadline_and_no_reminders_when_none_are_configured() {
    let services = services().await;
    let start = Utc::now();
    let trial_end = start + days(14);
    let (id, expires_at) = subscription(&services, start, false, Some(trial_end)).await;
    assert!(expires_at > trial_end);
    let scheduler = scheduler(&services, vec![]);
    let pass = pass_at(&services, &scheduler, trial_end - days(1), None).await;
    assert_eq!(pass.examined, 0, "no reminders configured");
    let pass = pass_at(&services, &scheduler, trial_end, Some(trial_end - days(1))).await;
    assert_eq!(pass.recorded, ["SubscriptionExpired"]);
    let db = crate::test_support::sqlite(&services.store.db);
    let payload: String = sqlx::query_scalar(
        "select payload from events where aggregate_id = $1 and event_type = 'SubscriptionExpired'",
    )
    .bind(id.to_string())
    .fetch_one(db)
    .await
    .unwrap();
    assert!(payload.contains(r#""trial":true"#), "{payload}");
    // The period's own end, later, is not a deadline of a trial that has run out.
    let pass = pass_at(&services, &scheduler, expires_at + days(1), None).await;
    assert_eq!(pass.examined, 0, "{pass:?}");
}

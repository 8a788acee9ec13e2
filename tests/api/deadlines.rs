//! Deadline notices: the scheduler records `SubscriptionExpiringSoon` and
//! `SubscriptionExpired` once each, on one instance or two, after a restart too, and they
//! reach the history and webhooks; with a policy that gives grace, `SubscriptionGraceEnded`
//! follows once the grace is over.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{backend, spawn_app_with, start_app, ApiClient, Backend, TestApp};
use crate::webhooks::receiver::{eventually, Receiver};
use crate::webhooks::{create_webhook, LOCAL, PATIENCE};

/// A pass five times a second; a reminder due at once for anything ending within a day.
const FAST: &[(&str, &str)] = &[
    ("EXPIRY_SCAN_INTERVAL", "200ms"),
    ("EXPIRY_REMINDER_DAYS", "1"),
];

fn in_seconds(seconds: i64) -> String {
    (Utc::now() + chrono::TimeDelta::seconds(seconds)).to_rfc3339_opts(SecondsFormat::Millis, true)
}

async fn history(api: &ApiClient, id: &str) -> Vec<Value> {
    let history = api.get(&format!("/api/v1/subscriptions/{id}/events")).await;
    history["items"].as_array().expect("items").clone()
}

fn of_type<'a>(history: &'a [Value], event_type: &str) -> Vec<&'a Value> {
    history
        .iter()
        .filter(|item| item["event_type"] == event_type)
        .collect()
}

/// Waits (polling the history) until `id` has an event of `event_type`; returns the history.
async fn wait_for_event(api: &ApiClient, id: &str, event_type: &str) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let items = history(api, id).await;
        if !of_type(&items, event_type).is_empty() {
            return items;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {event_type} for {id}: {items:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn subscription(api: &ApiClient, email: &str, body: Value) -> String {
    let mut request = json!({
        "customer_email": email,
        "customer_name": "Dee Adline",
        "plan": "pro",
        "max_devices": 2,
    });
    request
        .as_object_mut()
        .unwrap()
        .extend(body.as_object().unwrap().clone());
    let created = api.create(request).await;
    created["id"].as_str().expect("id").to_owned()
}

fn payload_says(item: &Value, text: &str) -> bool {
    item["payload"].to_string().contains(text)
}

#[tokio::test]
async fn a_passing_deadline_is_reminded_once_and_expires_once_a_trial_as_a_trial() {
    let app = spawn_app_with(FAST).await;
    let api = app.api();
    let period = subscription(
        &api,
        "period@example.com",
        json!({"expires_at": in_seconds(2)}),
    )
    .await;
    let trial = subscription(
        &api,
        "trial@example.com",
        json!({"trial_ends_at": in_seconds(4), "expires_at": in_seconds(30 * 86_400)}),
    )
    .await;
    let reminded = wait_for_event(&api, &period, "SubscriptionExpiringSoon").await;
    assert!(
        of_type(&reminded, "SubscriptionExpired").is_empty(),
        "not yet"
    );
    wait_for_event(&api, &period, "SubscriptionExpired").await;
    // The trial ends two seconds later: a dozen passes more over the expired one.
    let trial_history = wait_for_event(&api, &trial, "SubscriptionExpired").await;
    let expired = of_type(&trial_history, "SubscriptionExpired");
    assert_eq!(expired.len(), 1);
    assert!(
        payload_says(expired[0], r#""trial":true"#),
        "{}",
        expired[0]
    );
    assert_eq!(expired[0]["metadata"]["actor"], "system");
    let period_history = history(&api, &period).await;
    assert_eq!(
        of_type(&period_history, "SubscriptionExpiringSoon").len(),
        1
    );
    let expired = of_type(&period_history, "SubscriptionExpired");
    assert_eq!(expired.len(), 1, "{period_history:#?}");
    assert!(
        payload_says(expired[0], r#""trial":false"#),
        "{}",
        expired[0]
    );
    // Each kind counted by type.
    let metrics = app
        .anon(Method::GET, "/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l
                .starts_with(r#"flowlytix_deadline_notices_total{type="SubscriptionExpired"}"#)),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_webhook_subscribed_to_expiry_receives_it() {
    let settings: Vec<(&str, &str)> = FAST.iter().chain(LOCAL).copied().collect();
    let app = spawn_app_with(&settings).await;
    let api = app.api();
    let receiver = Receiver::start().await;
    create_webhook(
        &api,
        json!({"url": receiver.url, "event_types": ["SubscriptionExpired"]}),
    )
    .await;
    let id = subscription(
        &api,
        "hook@example.com",
        json!({"expires_at": in_seconds(1)}),
    )
    .await;
    assert!(
        eventually(PATIENCE, || !receiver.unique().is_empty()).await,
        "no delivery"
    );
    let delivery = &receiver.unique()[0];
    assert_eq!(delivery.body["type"], "SubscriptionExpired");
    assert_eq!(delivery.body["data"]["aggregate_id"], id.as_str());
    assert!(receiver
        .unique()
        .iter()
        .all(|r| r.body["type"] == "SubscriptionExpired"));
}

#[tokio::test]
async fn a_subscription_that_expired_while_no_server_ran_is_expired_after_the_restart() {
    let app = spawn_app_with(FAST).await;
    let api = app.api();
    let expires_at = Utc::now() + chrono::TimeDelta::seconds(2);
    let id = subscription(
        &api,
        "down@example.com",
        json!({"expires_at": expires_at.to_rfc3339_opts(SecondsFormat::Millis, true)}),
    )
    .await;
    wait_for_event(&api, &id, "SubscriptionExpiringSoon").await;
    app.server.shut_down(Duration::from_secs(10)).await;
    // Down until the deadline has passed.
    while Utc::now() <= expires_at {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let restarted: TestApp = start_app(
        &app.database_url,
        &app.key_dir,
        app.nats_names.clone(),
        FAST,
    )
    .await;
    let api = restarted.api();
    let items = wait_for_event(&api, &id, "SubscriptionExpired").await;
    let expired = of_type(&items, "SubscriptionExpired");
    assert_eq!(expired.len(), 1);
    let recorded: chrono::DateTime<Utc> = expired[0]["metadata"]["occurred_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(recorded > expires_at, "late, not early: {recorded}");
}

#[tokio::test]
async fn two_instances_record_each_notice_once() {
    if backend() != Backend::Postgres {
        return; // one embedded instance only
    }
    let app = spawn_app_with(FAST).await;
    let second = start_app(
        &app.database_url,
        &app.key_dir,
        app.nats_names.clone(),
        FAST,
    )
    .await;
    let api = app.api();
    let second_api = second.api();
    let mut ids = Vec::new();
    for n in 0..6 {
        let body = json!({"expires_at": in_seconds(1 + n % 3)});
        // Half through each instance.
        let on = if n % 2 == 0 { &api } else { &second_api };
        ids.push(subscription(on, &format!("twice{n}@example.com"), body).await);
    }
    for id in &ids {
        wait_for_event(&api, id, "SubscriptionExpired").await;
    }
    let later = subscription(
        &api,
        "later@example.com",
        json!({"expires_at": in_seconds(2)}),
    )
    .await;
    // Passes went on over the expired ones meanwhile.
    wait_for_event(&second_api, &later, "SubscriptionExpired").await;
    for id in &ids {
        let items = history(&api, id).await;
        assert_eq!(
            of_type(&items, "SubscriptionExpiringSoon").len(),
            1,
            "{items:#?}"
        );
        assert_eq!(
            of_type(&items, "SubscriptionExpired").len(),
            1,
            "{items:#?}"
        );
    }
    // Only one instance leads: stopping it hands the work to the other.
    app.server.shut_down(Duration::from_secs(10)).await;
    let after = subscription(
        &second_api,
        "after@example.com",
        json!({"expires_at": in_seconds(2)}),
    )
    .await;
    let items = wait_for_event(&second_api, &after, "SubscriptionExpired").await;
    assert_eq!(of_type(&items, "SubscriptionExpired").len(), 1);
}

/// A policy with two seconds of grace: the expiry says until when, and the end of grace is
/// recorded once, after it.
#[tokio::test]
async fn grace_ends_with_its_own_notice() {
    let app = spawn_app_with(FAST).await;
    let api = app.api();
    let product = api
        .create_at("/api/v1/products", json!({"name": "App", "code": "app"}))
        .await;
    api.create_at(
        "/api/v1/policies",
        json!({"product_id": product["id"], "name": "Short", "code": "short", "max_devices": 1,
               "expiration_strategy": "allow_grace", "grace_period": "PT2S"}),
    )
    .await;
    let body = api
        .create(
            json!({"customer_email": "grace@example.com", "customer_name": "Grace",
                       "policy": "app/short", "expires_at": in_seconds(1)}),
        )
        .await;
    let id = body["id"].as_str().unwrap();

    let items = wait_for_event(&api, id, "SubscriptionGraceEnded").await;
    let expired = of_type(&items, "SubscriptionExpired");
    assert_eq!(expired.len(), 1, "{items:#?}");
    assert!(
        !expired[0]["payload"]["grace_until"].is_null(),
        "{:?}",
        expired[0]
    );
    let grace_ended = of_type(&items, "SubscriptionGraceEnded");
    assert_eq!(grace_ended.len(), 1);
    assert!(
        grace_ended[0]["position"].as_i64() > expired[0]["position"].as_i64(),
        "grace ends after the expiry"
    );
    // Nothing more is due: a few more passes record nothing.
    let count = history(&api, id).await.len();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(history(&api, id).await.len(), count);
}

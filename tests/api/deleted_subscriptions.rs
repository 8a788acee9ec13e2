//! An unknown subscription is 404 and a deleted one 410 `SUBSCRIPTION_DELETED` for every
//! command, also for a PUT that changes nothing; reads of it answer 404, and its history
//! stays readable to admins and auditors. (Issue 9, point 4.)

use chrono::Utc;
use flowlytix_aggregates::Role;
use flowlytix_server::auth::accounts;
use flowlytix_server::store::EventMetadata;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{assert_problem, assert_refused, spawn_app, TestApp};

const AUDITOR_EMAIL: &str = "history@x.test";
const AUDITOR_PASSWORD: &str = "auditor-password-123";

async fn deleted_subscription(app: &TestApp) -> (Value, String) {
    let subscription = app.subscription_with_devices(2).await;
    let key = subscription["license_key"].as_str().unwrap().to_owned();
    assert_eq!(
        app.activate(&key, "fp-1").await.status(),
        StatusCode::CREATED
    );
    let id = subscription["id"].as_str().unwrap();
    let response = app
        .admin(Method::DELETE, &format!("/api/v1/subscriptions/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    (subscription, key)
}

#[tokio::test]
async fn put_on_an_unknown_subscription_is_404_even_when_it_changes_nothing() {
    let app = spawn_app().await;
    let path = format!("/api/v1/subscriptions/{}", Uuid::new_v4());
    // `{}` answered 500 (issue 9).
    for body in [
        json!({}),
        json!({"plan": "team"}),
        json!({"max_devices": 3}),
    ] {
        let request = app.admin(Method::PUT, &path).json(&body);
        assert_refused(
            &app,
            request,
            StatusCode::NOT_FOUND,
            "SUBSCRIPTION_NOT_FOUND",
        )
        .await;
    }
    let request = app.admin(Method::DELETE, &path);
    assert_refused(
        &app,
        request,
        StatusCode::NOT_FOUND,
        "SUBSCRIPTION_NOT_FOUND",
    )
    .await;
    let request = app.admin(Method::POST, &format!("{path}/license-key"));
    assert_refused(
        &app,
        request,
        StatusCode::NOT_FOUND,
        "SUBSCRIPTION_NOT_FOUND",
    )
    .await;
}

#[tokio::test]
async fn every_command_on_a_deleted_subscription_is_410_and_writes_nothing() {
    let app = spawn_app().await;
    let (subscription, key) = deleted_subscription(&app).await;
    let id = subscription["id"].as_str().unwrap();
    let path = format!("/api/v1/subscriptions/{id}");
    let device_id = subscription_device(&app, id).await;
    // `{}` answered 200 with status active, and `{"plan": …}` 404 (issue 9).
    for body in [
        json!({}),
        json!({"plan": "team"}),
        json!({"status": "suspended"}),
        json!({"customer_name": "Someone Else"}),
    ] {
        let request = app.admin(Method::PUT, &path).json(&body);
        assert_refused(&app, request, StatusCode::GONE, "SUBSCRIPTION_DELETED").await;
    }
    let request = app.admin(Method::DELETE, &path);
    assert_refused(&app, request, StatusCode::GONE, "SUBSCRIPTION_DELETED").await;
    let request = app.admin(Method::POST, &format!("{path}/license-key"));
    assert_refused(&app, request, StatusCode::GONE, "SUBSCRIPTION_DELETED").await;
    let device_path = format!("/api/v1/devices/{device_id}");
    let request = app
        .admin(Method::PUT, &device_path)
        .json(&json!({"name": "x"}));
    assert_refused(&app, request, StatusCode::GONE, "SUBSCRIPTION_DELETED").await;
    let request = app.admin(Method::DELETE, &device_path);
    assert_refused(&app, request, StatusCode::GONE, "SUBSCRIPTION_DELETED").await;
    // Reads answer 404; the key never validates again.
    let response = app.admin(Method::GET, &path).send().await.unwrap();
    assert_problem(response, StatusCode::NOT_FOUND, "SUBSCRIPTION_NOT_FOUND").await;
    let verdict = app
        .validate(json!({"license_key": key, "fingerprint": "fp-1"}))
        .await;
    assert_eq!(verdict["valid"], false);
}

/// The id of the subscription's one device, from its history.
async fn subscription_device(app: &TestApp, id: &str) -> String {
    let history = app
        .api()
        .get(&format!("/api/v1/subscriptions/{id}/events"))
        .await;
    history["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event_type"] == "DeviceActivated")
        .map(|e| e["payload"]["device_id"].as_str().unwrap().to_owned())
        .expect("a DeviceActivated event")
}

#[tokio::test]
async fn the_history_of_a_deleted_subscription_stays_readable_to_admins_and_auditors() {
    let app = spawn_app().await;
    accounts::create_admin(
        &app.server.admins,
        AUDITOR_EMAIL,
        AUDITOR_PASSWORD,
        Role::Auditor,
        EventMetadata::system(Utc::now()),
    )
    .await
    .expect("create the auditor");
    let (subscription, _) = deleted_subscription(&app).await;
    let id = subscription["id"].as_str().unwrap();
    let auditor = app.login(AUDITOR_EMAIL, AUDITOR_PASSWORD).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    for token in [app.admin_token.clone(), auditor] {
        let response = app
            .anon(Method::GET, &format!("/api/v1/subscriptions/{id}/events"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let history: Value = response.json().await.unwrap();
        let types: Vec<&str> = history["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event_type"].as_str().unwrap())
            .collect();
        assert_eq!(types.first(), Some(&"SubscriptionCreated"));
        assert_eq!(types.last(), Some(&"SubscriptionDeleted"));
        assert!(types.contains(&"DeviceActivated"), "{types:?}");
    }
}

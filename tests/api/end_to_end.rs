use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_problem, spawn_app};

/// The main scenario, from login to an audited history.
#[tokio::test]
async fn admin_and_client_walk_through_a_license_lifecycle() {
    let app = spawn_app().await;
    let subscription = app.subscription_with_devices(2).await;
    let id = subscription["id"].as_str().unwrap();
    let key = subscription["license_key"].as_str().unwrap();

    // Two devices fit, the third does not.
    assert_eq!(
        app.activate(key, "fp-one").await.status(),
        StatusCode::CREATED
    );
    let second: Value = app.activate(key, "fp-two").await.json().await.unwrap();
    assert_problem(
        app.activate(key, "fp-three").await,
        StatusCode::CONFLICT,
        "DEVICE_LIMIT_REACHED",
    )
    .await;

    // The client deactivates the second device; the third now fits.
    let response = app
        .anon(Method::POST, "/api/v1/licensing/deactivate")
        .json(&json!({"token": second["token"], "fingerprint": "fp-two"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.activate(key, "fp-three").await.status(),
        StatusCode::CREATED
    );

    let valid = app
        .validate(json!({"license_key": key, "fingerprint": "fp-one"}))
        .await;
    assert_eq!(valid["valid"], true);
    assert_eq!(valid["code"], "VALID");
    assert_eq!(valid["license"]["plan"], "pro");
    let unknown = app
        .validate(json!({"license_key": key, "fingerprint": "fp-unknown"}))
        .await;
    assert_eq!(unknown["valid"], false);
    assert_eq!(unknown["code"], "DEVICE_NOT_ACTIVATED");

    // The admin suspends; validation says so.
    let response = app
        .admin(Method::PUT, &format!("/api/v1/subscriptions/{id}"))
        .json(&json!({"status": "suspended", "reason": "chargeback"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let suspended = app
        .validate(json!({"license_key": key, "fingerprint": "fp-one"}))
        .await;
    assert_eq!(suspended["valid"], false);
    assert_eq!(suspended["code"], "SUSPENDED");

    // The history lists every event in order, each with its actor.
    let history: Value = app
        .admin(Method::GET, &format!("/api/v1/subscriptions/{id}/events"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let items = history["items"].as_array().unwrap();
    let types: Vec<&str> = items
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "SubscriptionCreated",
            "LicenseKeyIssued",
            "DeviceActivated",
            "LicenseTokenIssued",
            "DeviceActivated",
            "LicenseTokenIssued",
            "DeviceDeactivated",
            "DeviceActivated",
            "LicenseTokenIssued",
            "SubscriptionSuspended",
        ]
    );
    let sequences: Vec<i64> = items
        .iter()
        .map(|e| e["sequence"].as_i64().unwrap())
        .collect();
    assert_eq!(sequences, (1..=10).collect::<Vec<_>>());
    let admin_id = items[0]["metadata"]["actor"].as_str().unwrap();
    assert!(
        uuid::Uuid::parse_str(admin_id).is_ok(),
        "the admin's id: {admin_id}"
    );
    assert_eq!(items[2]["metadata"]["actor"], format!("license:{id}"));
    assert_eq!(items[9]["metadata"]["actor"], admin_id);
    assert_eq!(items[9]["payload"]["reason"], "chargeback");
    for item in items {
        let metadata = &item["metadata"];
        assert_eq!(metadata["ip"], "127.0.0.1");
        assert!(!metadata["request_id"].as_str().unwrap().is_empty());
        assert!(metadata["occurred_at"].as_str().unwrap().ends_with('Z'));
        assert!(item["position"].as_i64().unwrap() > 0);
    }
}

/// Validation on the instance that made a change answers from that change, even while the
/// read model has not caught up (here: projection stopped) and past the cache's freshness.
#[tokio::test]
async fn validation_right_after_activation_does_not_wait_for_the_read_model() {
    let app = spawn_app().await;
    app.server.stop_background_tasks();
    let subscription = app.subscription_with_devices(2).await;
    let key = subscription["license_key"].as_str().unwrap();
    assert_eq!(
        app.activate(key, "fp-fresh").await.status(),
        StatusCode::CREATED
    );
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let valid = app
        .validate(json!({"license_key": key, "fingerprint": "fp-fresh"}))
        .await;
    assert_eq!(valid["code"], "VALID", "{valid}");
}

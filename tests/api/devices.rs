//! Admin view of single devices, and deactivation by the admin and by the client.

use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::helpers::{assert_problem, spawn_app, TestApp};

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A subscription for two devices with one device activated; returns (subscription, device id).
async fn one_device(app: &TestApp, fingerprint: &str) -> (Value, String) {
    let subscription = app.subscription_with_devices(2).await;
    let response = app
        .activate(subscription["license_key"].as_str().unwrap(), fingerprint)
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    (subscription, body["device_id"].as_str().unwrap().to_owned())
}

async fn device_request(app: &TestApp, method: Method, id: &str, body: Option<Value>) -> Response {
    let request = app.admin(method, &format!("/api/v1/devices/{id}"));
    let request = match body {
        Some(body) => request.json(&body),
        None => request,
    };
    request.send().await.expect("device request")
}

async fn get_device(app: &TestApp, id: &str) -> Value {
    let response = device_request(app, Method::GET, id, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

#[tokio::test]
async fn an_activated_device_shows_its_fingerprint_hash_name_platform_status_and_subscription() {
    let app = spawn_app().await;
    let (subscription, device_id) = one_device(&app, "fp-laptop-7").await;

    let device = get_device(&app, &device_id).await;
    assert_eq!(device["id"], device_id);
    assert_eq!(device["subscription_id"], subscription["id"]);
    assert_eq!(device["fingerprint_hash"], sha256_hex("fp-laptop-7"));
    assert_eq!(device["name"], "device fp-laptop-7");
    assert_eq!(device["platform"], "linux");
    assert_eq!(device["status"], "active");
    assert!(device["activated_at"].as_str().unwrap().ends_with('Z'));
    assert!(device["last_seen_at"].is_string());
    assert_eq!(device["deactivated_at"], Value::Null);
    assert!(
        !device.to_string().contains("\"fp-laptop-7\""),
        "the raw fingerprint is not kept: {device}"
    );

    // The subscription lists the same device.
    let full: Value = app
        .admin(
            Method::GET,
            &format!(
                "/api/v1/subscriptions/{}",
                subscription["id"].as_str().unwrap()
            ),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(full["devices"][0]["id"], device_id);
    assert_eq!(
        full["devices"][0]["fingerprint_hash"],
        device["fingerprint_hash"]
    );
}

#[tokio::test]
async fn put_device_updates_its_name_and_notes() {
    let app = spawn_app().await;
    let (subscription, device_id) = one_device(&app, "fp-rename").await;

    let response = device_request(
        &app,
        Method::PUT,
        &device_id,
        Some(json!({"name": "Front desk PC", "notes": "replaced in May"})),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["name"], "Front desk PC");
    assert_eq!(body["notes"], "replaced in May");
    assert!(body["position"].as_i64().unwrap() > 0);

    let device = get_device(&app, &device_id).await;
    assert_eq!(device["name"], "Front desk PC");
    assert_eq!(device["notes"], "replaced in May");
    assert_eq!(device["status"], "active");

    // Only what is sent changes.
    let response = device_request(
        &app,
        Method::PUT,
        &device_id,
        Some(json!({"notes": "second note"})),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let device = get_device(&app, &device_id).await;
    assert_eq!(
        (device["name"].as_str(), device["notes"].as_str()),
        (Some("Front desk PC"), Some("second note"))
    );

    let history: Value = app
        .admin(
            Method::GET,
            &format!(
                "/api/v1/subscriptions/{}/events",
                subscription["id"].as_str().unwrap()
            ),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let updates = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event_type"] == "DeviceUpdated")
        .count();
    assert_eq!(updates, 2);
}

#[tokio::test]
async fn admin_delete_deactivates_the_device_then_it_no_longer_validates_and_a_second_delete_is_409(
) {
    let app = spawn_app().await;
    let (subscription, device_id) = one_device(&app, "fp-revoked").await;
    let key = subscription["license_key"].as_str().unwrap();

    let response = device_request(&app, Method::DELETE, &device_id, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "inactive");
    assert_eq!(body["deactivation_reason"], "admin");
    assert!(body["deactivated_at"].is_string());

    let device = get_device(&app, &device_id).await;
    assert_eq!(device["status"], "inactive");
    assert_eq!(device["deactivation_reason"], "admin");
    let verdict = app
        .validate(json!({"license_key": key, "fingerprint": "fp-revoked"}))
        .await;
    assert_eq!(verdict["valid"], false);
    assert_eq!(verdict["code"], "DEVICE_NOT_ACTIVATED");

    let before = app.event_count().await;
    assert_problem(
        device_request(&app, Method::DELETE, &device_id, None).await,
        StatusCode::CONFLICT,
        "DEVICE_NOT_ACTIVE",
    )
    .await;
    assert_eq!(app.event_count().await, before);

    // Its slot is free again; the same fingerprint comes back as a new device, and the old
    // one stays deactivated (its tokens stay dead).
    let again: Value = app.activate(key, "fp-revoked").await.json().await.unwrap();
    assert_ne!(again["device_id"], device_id);
    let again_id = again["device_id"].as_str().unwrap();
    assert_eq!(get_device(&app, again_id).await["status"], "active");
    assert_eq!(get_device(&app, &device_id).await["status"], "inactive");
}

#[tokio::test]
async fn an_unknown_device_is_404_device_not_found() {
    let app = spawn_app().await;
    one_device(&app, "fp-exists").await;
    let unknown = uuid::Uuid::new_v4().to_string();
    for (method, body) in [
        (Method::GET, None),
        (Method::PUT, Some(json!({"name": "x"}))),
        (Method::DELETE, None),
    ] {
        let response = device_request(&app, method.clone(), &unknown, body).await;
        assert_problem(response, StatusCode::NOT_FOUND, "DEVICE_NOT_FOUND").await;
    }
}

#[tokio::test]
async fn client_deactivate_by_license_key_is_204_and_again_404_device_not_activated() {
    let app = spawn_app().await;
    let (subscription, device_id) = one_device(&app, "fp-client").await;
    let key = subscription["license_key"].as_str().unwrap();
    let deactivate = || {
        app.anon(Method::POST, "/api/v1/licensing/deactivate")
            .json(&json!({"license_key": key, "fingerprint": "fp-client"}))
            .send()
    };

    let response = deactivate().await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let device = get_device(&app, &device_id).await;
    assert_eq!(device["status"], "inactive");
    assert_eq!(device["deactivation_reason"], "client");
    assert_eq!(
        app.validate(json!({"license_key": key, "fingerprint": "fp-client"}))
            .await["code"],
        "DEVICE_NOT_ACTIVATED"
    );

    let before = app.event_count().await;
    assert_problem(
        deactivate().await.unwrap(),
        StatusCode::NOT_FOUND,
        "DEVICE_NOT_ACTIVATED",
    )
    .await;
    assert_eq!(app.event_count().await, before);
}

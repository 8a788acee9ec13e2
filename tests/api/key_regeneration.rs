//! Regenerating a license key means "the old key leaked" (issue 21, item 6): the tokens issued
//! under it die with it, devices stay activated unless the admin says otherwise, and refresh
//! and validate agree on every dead token.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp};
use crate::panel::Browser;

async fn subscription(app: &TestApp) -> (String, String) {
    let created = app.subscription_with_devices(3).await;
    (
        created["id"].as_str().unwrap().to_owned(),
        created["license_key"].as_str().unwrap().to_owned(),
    )
}

/// `POST …/license-key`, with this body or none; the new key.
async fn regenerate(app: &TestApp, id: &str, body: Option<Value>) -> Value {
    let request = app.admin(
        Method::POST,
        &format!("/api/v1/subscriptions/{id}/license-key"),
    );
    let request = match body {
        Some(body) => request.json(&body),
        None => request,
    };
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

async fn subscription_now(app: &TestApp, id: &str) -> Value {
    app.api().get(&format!("/api/v1/subscriptions/{id}")).await
}

#[tokio::test]
async fn tokens_issued_before_a_regeneration_are_revoked_and_devices_stay_activated() {
    let app = spawn_app().await;
    let licensing = app.licensing();
    let (id, old_key) = subscription(&app).await;
    let activation = licensing
        .activate(&old_key, "fp-laptop")
        .await
        .expect_status(StatusCode::CREATED);
    let old_token = activation["token"].as_str().unwrap();
    let verdict = licensing
        .validate_token(old_token, "fp-laptop")
        .await
        .expect_status(StatusCode::OK);
    assert_eq!(verdict["code"], "VALID");

    let regenerated = regenerate(&app, &id, None).await;
    let new_key = regenerated["license_key"].as_str().unwrap();

    licensing
        .refresh(old_token)
        .await
        .problem(StatusCode::UNAUTHORIZED, "TOKEN_REVOKED");
    let verdict = licensing
        .validate_token(old_token, "fp-laptop")
        .await
        .expect_status(StatusCode::OK);
    assert_eq!(verdict["valid"], false);
    assert_eq!(verdict["code"], "TOKEN_REVOKED");
    licensing
        .deactivate_token(old_token, "fp-laptop")
        .await
        .problem(StatusCode::UNAUTHORIZED, "TOKEN_REVOKED");

    // The device kept its slot; activating with the new key gives it a token that works.
    assert_eq!(subscription_now(&app, &id).await["active_devices"], 1);
    assert_eq!(
        licensing.verdict(new_key, "fp-laptop").await["code"],
        "VALID"
    );
    let again = licensing
        .activate(new_key, "fp-laptop")
        .await
        .expect_status(StatusCode::CREATED);
    assert_eq!(again["device_id"], activation["device_id"]);
    let new_token = again["token"].as_str().unwrap();
    licensing
        .refresh(new_token)
        .await
        .expect_status(StatusCode::OK);
    let verdict = licensing
        .validate_token(new_token, "fp-laptop")
        .await
        .expect_status(StatusCode::OK);
    assert_eq!(verdict["code"], "VALID");
}

#[tokio::test]
async fn regenerating_with_deactivate_devices_frees_every_slot() {
    let app = spawn_app().await;
    let licensing = app.licensing();
    let (id, key) = subscription(&app).await;
    for fingerprint in ["fp-one", "fp-two"] {
        licensing
            .activate(&key, fingerprint)
            .await
            .expect_status(StatusCode::CREATED);
    }

    let regenerated = regenerate(&app, &id, Some(json!({"deactivate_devices": true}))).await;
    assert_eq!(regenerated["active_devices"], 0);
    let new_key = regenerated["license_key"].as_str().unwrap();
    for fingerprint in ["fp-one", "fp-two"] {
        let verdict = licensing.verdict(new_key, fingerprint).await;
        assert_eq!(verdict["code"], "DEVICE_NOT_ACTIVATED");
    }
    let devices = subscription_now(&app, &id).await["devices"].clone();
    let devices = devices.as_array().unwrap();
    assert_eq!(devices.len(), 2);
    assert!(
        devices.iter().all(|d| d["status"] == "inactive"),
        "{devices:?}"
    );

    // An unknown field is refused, not ignored.
    let response = app
        .admin(
            Method::POST,
            &format!("/api/v1/subscriptions/{id}/license-key"),
        )
        .json(&json!({"deactivate_device": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn refresh_and_validate_agree_that_the_token_of_a_replaced_device_is_dead() {
    let app = spawn_app().await;
    let licensing = app.licensing();
    let (_, key) = subscription(&app).await;
    let first = licensing
        .activate(&key, "fp-back")
        .await
        .expect_status(StatusCode::CREATED);
    let old_token = first["token"].as_str().unwrap();
    licensing
        .deactivate(&key, "fp-back")
        .await
        .expect_status(StatusCode::NO_CONTENT);
    let returned = licensing
        .activate(&key, "fp-back")
        .await
        .expect_status(StatusCode::CREATED);
    assert_ne!(returned["device_id"], first["device_id"], "a new device");

    let verdict = licensing
        .validate_token(old_token, "fp-back")
        .await
        .expect_status(StatusCode::OK);
    assert_eq!(verdict["code"], "DEVICE_NOT_ACTIVATED");
    licensing
        .refresh(old_token)
        .await
        .problem(StatusCode::NOT_FOUND, "DEVICE_NOT_ACTIVATED");
    let new_token = returned["token"].as_str().unwrap();
    licensing
        .refresh(new_token)
        .await
        .expect_status(StatusCode::OK);
}

#[tokio::test]
async fn the_panel_s_confirmation_says_tokens_are_revoked_and_offers_to_deactivate_devices() {
    let app = spawn_app().await;
    let browser = Browser::signed_in(&app).await;
    let token = browser.form_token().await;
    let (id, key) = subscription(&app).await;
    app.licensing()
        .activate(&key, "fp-panel")
        .await
        .expect_status(StatusCode::CREATED);

    let confirm = browser
        .page(&format!(
            "/admin/subscriptions/{id}/confirm?action=regenerate-key"
        ))
        .await;
    assert!(
        confirm.contains("every license token issued under it"),
        "{confirm}"
    );
    assert!(confirm.contains("Activated devices stay activated"));
    assert!(confirm.contains("name=\"deactivate_devices\""));
    assert!(confirm.contains("Also deactivate every device"));

    let path = format!("/admin/subscriptions/{id}/actions/regenerate-key");
    let response = browser
        .post(&path, &[("csrf", &token), ("deactivate_devices", "true")])
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(subscription_now(&app, &id).await["active_devices"], 0);
}

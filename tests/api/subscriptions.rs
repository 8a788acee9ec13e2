//! Admin management of subscriptions: create, read, update (with `If-Match`), status
//! transitions, delete and key regeneration, and what each means for client apps.

use chrono::{Duration, SecondsFormat, Utc};
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_problem, TestApp};

fn rfc3339(at: chrono::DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// True for a key shaped `FLX-XXXXX-XXXXX-XXXXX-XXXXX-XXXXX-XXXXX-C` in Crockford base32.
fn is_license_key(key: &str) -> bool {
    let groups: Vec<&str> = key.split('-').collect();
    let symbol = |c: char| c.is_ascii_digit() || (c.is_ascii_uppercase() && !"ILOU".contains(c));
    groups.len() == 8
        && groups[0] == "FLX"
        && groups[1..7]
            .iter()
            .all(|g| g.len() == 5 && g.chars().all(symbol))
        && groups[7].len() == 1
        && groups[7].chars().all(symbol)
}

async fn put(app: &TestApp, id: &str, body: Value) -> Response {
    app.admin(Method::PUT, &format!("/api/v1/subscriptions/{id}"))
        .json(&body)
        .send()
        .await
        .expect("put")
}

async fn put_ok(app: &TestApp, id: &str, body: Value) -> Value {
    let response = put(app, id, body).await;
    let status = response.status();
    let body: Value = response.json().await.expect("put body");
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn get(app: &TestApp, id: &str) -> Response {
    app.admin(Method::GET, &format!("/api/v1/subscriptions/{id}"))
        .send()
        .await
        .expect("get")
}

async fn get_ok(app: &TestApp, id: &str) -> Value {
    let response = get(app, id).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("get body")
}

async fn history_types(app: &TestApp, id: &str) -> Vec<String> {
    let response = app
        .admin(Method::GET, &format!("/api/v1/subscriptions/{id}/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let history: Value = response.json().await.unwrap();
    history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap().to_owned())
        .collect()
}

async fn activated_device_id(app: &TestApp, key: &str, fingerprint: &str) -> String {
    let activated = app.licensing().activate(key, fingerprint).await;
    assert_eq!(activated.status, StatusCode::CREATED, "{}", activated.body);
    activated.text("device_id").to_owned()
}

fn key_of(subscription: &Value) -> &str {
    subscription["license_key"].as_str().unwrap()
}

fn id_of(subscription: &Value) -> &str {
    subscription["id"].as_str().unwrap()
}

#[tokio::test]
async fn create_returns_201_with_location_the_key_once_its_prefix_version_2_and_a_position() {
    let app = crate::helpers::spawn_app().await;
    let response = app
        .admin(Method::POST, "/api/v1/subscriptions")
        .json(&json!({
            "customer_email": "bob@example.com",
            "customer_name": "Bob Example",
            "plan": "pro",
            "max_devices": 3,
            "features": ["export"],
            "metadata": {"crm_id": "C-42"},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    let id = id_of(&body);
    assert_eq!(location, format!("/api/v1/subscriptions/{id}"));
    assert_eq!(etag, "\"2\"");

    let key = key_of(&body);
    assert!(is_license_key(key), "{key}");
    let prefix = body["license_key_prefix"].as_str().unwrap();
    assert!(key.starts_with(prefix), "{key} starts with {prefix}");
    assert_eq!(prefix.len(), "FLX-XXXXX".len());
    assert_eq!(body["version"], 2);
    assert!(body["position"].as_i64().unwrap() > 0, "{body}");
    assert_eq!(body["status"], "active");
    assert_eq!(body["plan"], "pro");
    assert_eq!(body["max_devices"], 3);
    assert_eq!(body["active_devices"], 0);
    assert_eq!(body["customer_email"], "bob@example.com");
    assert_eq!(body["features"], json!(["export"]));
    assert_eq!(body["metadata"], json!({"crm_id": "C-42"}));
    assert_eq!(
        history_types(&app, id).await,
        ["SubscriptionCreated", "LicenseKeyIssued"]
    );
}

#[tokio::test]
async fn get_by_id_returns_the_same_subscription_without_the_key_and_its_version_as_etag() {
    let app = crate::helpers::spawn_app().await;
    let created = app.subscription_with_devices(2).await;
    let id = id_of(&created);

    let response = get(&app, id).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["etag"], "\"2\"");
    let body: Value = response.json().await.unwrap();
    assert!(
        body.get("license_key").is_none(),
        "the key is never shown again: {body}"
    );
    assert!(!body.to_string().contains(key_of(&created)));
    for field in [
        "id",
        "customer_email",
        "customer_name",
        "organization",
        "plan",
        "status",
        "max_devices",
        "active_devices",
        "features",
        "metadata",
        "starts_at",
        "expires_at",
        "trial_ends_at",
        "license_key_prefix",
        "created_at",
        "updated_at",
        "version",
    ] {
        assert_eq!(body[field], created[field], "{field}");
    }
    assert_eq!(body["devices"], json!([]));

    // After a change, the ETag follows the version.
    activated_device_id(&app, key_of(&created), "fp-etag").await;
    let response = get(&app, id).await;
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(etag, format!("\"{}\"", body["version"]));
    assert_eq!(body["version"], 4, "DeviceActivated and LicenseTokenIssued");
}

#[tokio::test]
async fn get_unknown_subscription_is_404_subscription_not_found() {
    let app = crate::helpers::spawn_app().await;
    let id = uuid::Uuid::new_v4();
    assert_problem(
        get(&app, &id.to_string()).await,
        StatusCode::NOT_FOUND,
        "SUBSCRIPTION_NOT_FOUND",
    )
    .await;
    let response = app
        .admin(Method::GET, &format!("/api/v1/subscriptions/{id}/events"))
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::NOT_FOUND, "SUBSCRIPTION_NOT_FOUND").await;
    assert_problem(
        put(&app, &id.to_string(), json!({"plan": "team"})).await,
        StatusCode::NOT_FOUND,
        "SUBSCRIPTION_NOT_FOUND",
    )
    .await;
}

#[tokio::test]
async fn put_changes_plan_device_limit_period_and_details_in_one_request_one_version_per_event() {
    let app = crate::helpers::spawn_app().await;
    let created = app.subscription_with_devices(2).await;
    let id = id_of(&created);
    let expires_at = rfc3339(Utc::now() + Duration::days(365));

    let response = app
        .admin(Method::PUT, &format!("/api/v1/subscriptions/{id}"))
        .header("If-Match", "\"2\"")
        .json(&json!({
            "plan": "enterprise",
            "max_devices": 10,
            "expires_at": expires_at,
            "customer_name": "Ann Renamed",
            "organization": null,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["etag"], "\"6\"");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["version"], 6, "four events, four versions: {body}");
    assert!(body["position"].as_i64().unwrap() > created["position"].as_i64().unwrap());
    assert_eq!(body["plan"], "enterprise");
    assert_eq!(body["max_devices"], 10);
    assert_eq!(body["expires_at"], expires_at);
    assert_eq!(body["customer_name"], "Ann Renamed");
    assert_eq!(body["organization"], Value::Null);
    assert!(body.get("license_key").is_none());

    let current = get_ok(&app, id).await;
    for field in [
        "plan",
        "max_devices",
        "expires_at",
        "customer_name",
        "organization",
        "version",
    ] {
        assert_eq!(current[field], body[field], "{field}");
    }
    assert_eq!(
        history_types(&app, id).await,
        [
            "SubscriptionCreated",
            "LicenseKeyIssued",
            "SubscriptionDetailsUpdated",
            "SubscriptionPlanChanged",
            "SubscriptionDeviceLimitChanged",
            "SubscriptionPeriodChanged",
        ]
    );

    // The same values again change nothing and bump nothing.
    let again = put_ok(
        &app,
        id,
        json!({"plan": "enterprise", "max_devices": 10, "expires_at": expires_at}),
    )
    .await;
    assert_eq!(again["version"], 6);
}

#[tokio::test]
async fn put_with_a_stale_if_match_is_409_version_conflict_and_writes_nothing() {
    let app = crate::helpers::spawn_app().await;
    let created = app.subscription_with_devices(2).await;
    let id = id_of(&created);
    put_ok(&app, id, json!({"plan": "team"})).await; // now at version 3

    let before = app.event_count().await;
    let stale = app
        .admin(Method::PUT, &format!("/api/v1/subscriptions/{id}"))
        .header("If-Match", "\"2\"")
        .json(&json!({"plan": "enterprise", "max_devices": 9, "status": "suspended"}))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(stale, StatusCode::CONFLICT, "VERSION_CONFLICT").await;
    assert!(
        problem["detail"].as_str().unwrap().contains('3'),
        "{problem}"
    );
    assert_eq!(app.event_count().await, before, "nothing written");
    let current = get_ok(&app, id).await;
    assert_eq!(
        (
            current["plan"].as_str(),
            current["max_devices"].as_u64(),
            current["status"].as_str()
        ),
        (Some("team"), Some(2), Some("active"))
    );

    // The current version is accepted, in any of the forms an ETag comes in.
    for (if_match, plan) in [("\"3\"", "enterprise"), ("W/\"4\"", "pro"), ("5", "team")] {
        let response = app
            .admin(Method::PUT, &format!("/api/v1/subscriptions/{id}"))
            .header("If-Match", if_match)
            .json(&json!({"plan": plan}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "If-Match {if_match}");
    }
    // A stale DELETE is refused the same way.
    let response = app
        .admin(Method::DELETE, &format!("/api/v1/subscriptions/{id}"))
        .header("If-Match", "\"2\"")
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::CONFLICT, "VERSION_CONFLICT").await;
    assert_eq!(get(&app, id).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn lowering_max_devices_below_the_active_count_is_409_unless_devices_are_deactivated_with_it()
{
    let app = crate::helpers::spawn_app().await;
    let licensing = app.licensing();
    let created = app.subscription_with_devices(3).await;
    let id = id_of(&created);
    let key = key_of(&created);
    let first = activated_device_id(&app, key, "fp-1").await;
    let second = activated_device_id(&app, key, "fp-2").await;
    let third = activated_device_id(&app, key, "fp-3").await;

    let before = app.event_count().await;
    let problem = assert_problem(
        put(&app, id, json!({"max_devices": 1})).await,
        StatusCode::CONFLICT,
        "DEVICE_LIMIT_BELOW_ACTIVE_COUNT",
    )
    .await;
    assert!(!problem["detail"].as_str().unwrap().is_empty());
    // Deactivating one is not enough for a limit of one.
    let not_enough = put(
        &app,
        id,
        json!({"max_devices": 1, "deactivate_device_ids": [first]}),
    )
    .await;
    assert_problem(
        not_enough,
        StatusCode::CONFLICT,
        "DEVICE_LIMIT_BELOW_ACTIVE_COUNT",
    )
    .await;
    assert_eq!(app.event_count().await, before, "nothing written");

    let body = put_ok(
        &app,
        id,
        json!({"max_devices": 1, "deactivate_device_ids": [first, second]}),
    )
    .await;
    assert_eq!(body["max_devices"], 1);
    assert_eq!(body["active_devices"], 1);
    let status_of = |device: &str| {
        body["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["id"] == device)
            .map(|d| (d["status"].clone(), d["deactivation_reason"].clone()))
    };
    assert_eq!(
        status_of(&first),
        Some((json!("inactive"), json!("limit_reduced")))
    );
    assert_eq!(
        status_of(&second),
        Some((json!("inactive"), json!("limit_reduced")))
    );
    assert_eq!(status_of(&third), Some((json!("active"), Value::Null)));

    let gone = licensing.verdict(key, "fp-1").await;
    assert_eq!(gone["code"], "DEVICE_NOT_ACTIVATED");
    let kept = licensing.verdict(key, "fp-3").await;
    assert_eq!(kept["code"], "VALID");
    licensing
        .activate(key, "fp-4")
        .await
        .problem(StatusCode::CONFLICT, "DEVICE_LIMIT_REACHED");
}

#[tokio::test]
async fn status_transitions_suspend_resume_and_cancel() {
    let app = crate::helpers::spawn_app().await;
    let licensing = app.licensing();
    let created = app.subscription_with_devices(2).await;
    let id = id_of(&created);
    let key = key_of(&created);
    activated_device_id(&app, key, "fp-status").await;

    let suspended = put_ok(
        &app,
        id,
        json!({"status": "suspended", "reason": "chargeback"}),
    )
    .await;
    assert_eq!(suspended["status"], "suspended");
    licensing
        .activate(key, "fp-other")
        .await
        .problem(StatusCode::FORBIDDEN, "LICENSE_SUSPENDED");
    assert_eq!(
        licensing.verdict(key, "fp-status").await["code"],
        "SUSPENDED"
    );

    let resumed = put_ok(&app, id, json!({"status": "active"})).await;
    assert_eq!(resumed["status"], "active");
    assert_eq!(licensing.verdict(key, "fp-status").await["code"], "VALID");

    let canceled = put_ok(
        &app,
        id,
        json!({"status": "canceled", "reason": "customer left"}),
    )
    .await;
    assert_eq!(canceled["status"], "canceled");
    assert_eq!(get_ok(&app, id).await["status"], "canceled");
    assert_eq!(
        history_types(&app, id).await[4..],
        [
            "SubscriptionSuspended",
            "SubscriptionResumed",
            "SubscriptionCanceled"
        ]
    );
}

#[tokio::test]
async fn resuming_an_active_subscription_is_409_invalid_status_transition() {
    let app = crate::helpers::spawn_app().await;
    let id = id_of(&app.subscription_with_devices(1).await).to_owned();
    let before = app.event_count().await;
    assert_problem(
        put(&app, &id, json!({"status": "active"})).await,
        StatusCode::CONFLICT,
        "INVALID_STATUS_TRANSITION",
    )
    .await;
    assert_eq!(app.event_count().await, before);
}

#[tokio::test]
async fn canceling_a_canceled_subscription_is_409_and_it_cannot_be_resumed() {
    let app = crate::helpers::spawn_app().await;
    let id = id_of(&app.subscription_with_devices(1).await).to_owned();
    put_ok(&app, &id, json!({"status": "canceled"})).await;
    let before = app.event_count().await;
    assert_problem(
        put(&app, &id, json!({"status": "canceled"})).await,
        StatusCode::CONFLICT,
        "INVALID_STATUS_TRANSITION",
    )
    .await;
    assert_problem(
        put(&app, &id, json!({"status": "active"})).await,
        StatusCode::CONFLICT,
        "INVALID_STATUS_TRANSITION",
    )
    .await;
    assert_problem(
        put(&app, &id, json!({"status": "suspended"})).await,
        StatusCode::CONFLICT,
        "INVALID_STATUS_TRANSITION",
    )
    .await;
    assert_eq!(app.event_count().await, before);
}

#[tokio::test]
async fn an_expired_subscription_refuses_activation_403_license_expired_and_validates_expired() {
    let app = crate::helpers::spawn_app().await;
    let licensing = app.licensing();
    let now = Utc::now();
    let created = app
        .create_subscription(json!({
            "customer_email": "old@example.com",
            "customer_name": "Old Customer",
            "plan": "pro",
            "max_devices": 2,
            "starts_at": rfc3339(now - Duration::days(60)),
            "expires_at": rfc3339(now - Duration::days(30)),
        }))
        .await;
    assert_eq!(created["status"], "expired");
    let key = key_of(&created);
    licensing
        .activate(key, "fp-late")
        .await
        .problem(StatusCode::FORBIDDEN, "LICENSE_EXPIRED");
    let verdict = licensing.verdict(key, "fp-late").await;
    assert_eq!(verdict["valid"], false);
    assert_eq!(verdict["code"], "EXPIRED");
    assert_eq!(verdict["license"]["status"], "expired");

    // A renewal brings it back.
    let renewed = put_ok(
        &app,
        id_of(&created),
        json!({"expires_at": rfc3339(now + Duration::days(30))}),
    )
    .await;
    assert_eq!(renewed["status"], "active");
    assert_eq!(
        licensing.activate(key, "fp-late").await.status,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn a_canceled_subscription_refuses_activation_403_license_canceled_and_validates_canceled() {
    let app = crate::helpers::spawn_app().await;
    let licensing = app.licensing();
    let created = app.subscription_with_devices(2).await;
    let key = key_of(&created);
    activated_device_id(&app, key, "fp-before").await;
    put_ok(&app, id_of(&created), json!({"status": "canceled"})).await;

    licensing
        .activate(key, "fp-after")
        .await
        .problem(StatusCode::FORBIDDEN, "LICENSE_CANCELED");
    licensing
        .activate(key, "fp-before")
        .await
        .problem(StatusCode::FORBIDDEN, "LICENSE_CANCELED");
    let verdict = licensing.verdict(key, "fp-before").await;
    assert_eq!(verdict["valid"], false);
    assert_eq!(verdict["code"], "CANCELED");
}

#[tokio::test]
async fn a_past_due_subscription_still_activates_and_validates_in_its_grace_period() {
    let app = crate::helpers::spawn_app().await;
    let licensing = app.licensing();
    let created = app.subscription_with_devices(2).await;
    let key = key_of(&created);
    let past_due = put_ok(&app, id_of(&created), json!({"status": "past_due"})).await;
    assert_eq!(past_due["status"], "past_due");

    let activated = licensing.activate(key, "fp-grace").await;
    let body = activated.expect_status(StatusCode::CREATED);
    assert_eq!(body["license"]["status"], "past_due");
    let verdict = licensing.verdict(key, "fp-grace").await;
    assert_eq!(verdict["valid"], true);
    assert_eq!(verdict["code"], "VALID");

    // Paid: back to active.
    assert_eq!(
        put_ok(&app, id_of(&created), json!({"status": "active"})).await["status"],
        "active"
    );
}

#[tokio::test]
async fn a_trial_ending_in_the_future_shows_status_trialing_and_activates() {
    let app = crate::helpers::spawn_app().await;
    let trial_ends_at = rfc3339(Utc::now() + Duration::days(14));
    let created = app
        .create_subscription(json!({
            "customer_email": "trial@example.com",
            "customer_name": "Trial Customer",
            "plan": "pro",
            "max_devices": 1,
            "trial_ends_at": trial_ends_at,
        }))
        .await;
    assert_eq!(created["status"], "trialing");
    assert_eq!(created["trial_ends_at"], trial_ends_at);
    assert_eq!(get_ok(&app, id_of(&created)).await["status"], "trialing");

    let activated = app.licensing().activate(key_of(&created), "fp-trial").await;
    let body = activated.expect_status(StatusCode::CREATED);
    assert_eq!(body["license"]["status"], "trialing");
    let token_expires_at =
        chrono::DateTime::parse_from_rfc3339(body["token_expires_at"].as_str().unwrap()).unwrap();
    let trial_end = chrono::DateTime::parse_from_rfc3339(&trial_ends_at).unwrap();
    assert!(
        token_expires_at <= trial_end,
        "a trial's token ends with the trial at the latest"
    );
}

#[tokio::test]
async fn a_deleted_subscription_is_gone_for_everyone_but_its_history_remains() {
    let app = crate::helpers::spawn_app().await;
    let licensing = app.licensing();
    let created = app.subscription_with_devices(2).await;
    let id = id_of(&created);
    let key = key_of(&created);
    activated_device_id(&app, key, "fp-doomed").await;

    let response = app
        .admin(Method::DELETE, &format!("/api/v1/subscriptions/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["deleted"], true);
    assert_eq!(body["id"], id);
    assert_eq!(body["version"], 5);
    assert!(body["position"].as_i64().unwrap() > 0);

    assert_problem(
        get(&app, id).await,
        StatusCode::NOT_FOUND,
        "SUBSCRIPTION_NOT_FOUND",
    )
    .await;
    for fingerprint in ["fp-doomed", "fp-new"] {
        let verdict = licensing.verdict(key, fingerprint).await;
        assert_eq!(verdict["valid"], false);
        assert_eq!(verdict["code"], "NOT_FOUND");
    }
    licensing
        .activate(key, "fp-doomed")
        .await
        .problem(StatusCode::NOT_FOUND, "LICENSE_NOT_FOUND");
    licensing
        .activate(key, "fp-new")
        .await
        .problem(StatusCode::NOT_FOUND, "LICENSE_NOT_FOUND");
    for body in [
        json!({"plan": "team"}),
        json!({"max_devices": 9}),
        json!({"status": "active"}),
        json!({"status": "canceled"}),
        json!({"customer_name": "Ghost"}),
        json!({}),
    ] {
        // A command on a deleted subscription is 410, as for DELETE and the key (it was 404
        // here, against the README; issue 9).
        assert_problem(
            put(&app, id, body).await,
            StatusCode::GONE,
            "SUBSCRIPTION_DELETED",
        )
        .await;
    }
    let regenerate = app
        .admin(
            Method::POST,
            &format!("/api/v1/subscriptions/{id}/license-key"),
        )
        .send()
        .await
        .unwrap();
    assert!(
        regenerate.status().is_client_error(),
        "{}",
        regenerate.status()
    );

    let types = history_types(&app, id).await;
    assert_eq!(
        types.first().map(String::as_str),
        Some("SubscriptionCreated")
    );
    assert_eq!(
        types.last().map(String::as_str),
        Some("SubscriptionDeleted")
    );
    assert_eq!(types.len(), 5);
}

#[tokio::test]
async fn regenerating_the_key_shows_a_new_key_once_retires_the_old_one_and_keeps_devices() {
    let app = crate::helpers::spawn_app().await;
    let licensing = app.licensing();
    let created = app.subscription_with_devices(3).await;
    let id = id_of(&created);
    let old_key = key_of(&created);
    let device = activated_device_id(&app, old_key, "fp-kept").await;

    let response = app
        .admin(
            Method::POST,
            &format!("/api/v1/subscriptions/{id}/license-key"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let new_key = key_of(&body).to_owned();
    assert!(is_license_key(&new_key), "{new_key}");
    assert_ne!(new_key, old_key);
    assert!(new_key.starts_with(body["license_key_prefix"].as_str().unwrap()));
    assert_eq!(body["active_devices"], 1);
    let later = get_ok(&app, id).await;
    assert!(later.get("license_key").is_none(), "shown once");
    assert_eq!(later["license_key_prefix"], body["license_key_prefix"]);

    licensing
        .activate(old_key, "fp-kept")
        .await
        .problem(StatusCode::NOT_FOUND, "LICENSE_NOT_FOUND");
    licensing
        .activate(old_key, "fp-other")
        .await
        .problem(StatusCode::NOT_FOUND, "LICENSE_NOT_FOUND");
    let verdict = licensing.verdict(old_key, "fp-kept").await;
    assert_eq!(verdict["code"], "NOT_FOUND");
    let deactivated = licensing.deactivate(old_key, "fp-kept").await;
    deactivated.problem(StatusCode::NOT_FOUND, "LICENSE_NOT_FOUND");

    // The device stays activated under the new key, and the new key activates more.
    let verdict = licensing.verdict(&new_key, "fp-kept").await;
    assert_eq!(verdict["code"], "VALID");
    assert_eq!(verdict["device"]["id"], device);
    let again = licensing.activate(&new_key, "fp-kept").await.body;
    assert_eq!(again["device_id"], device, "same device, fresh token");
    assert_eq!(
        licensing.activate(&new_key, "fp-second").await.status,
        StatusCode::CREATED
    );
    assert_eq!(get_ok(&app, id).await["active_devices"], 2);
    assert!(history_types(&app, id)
        .await
        .contains(&"LicenseKeyRegenerated".to_owned()));
}

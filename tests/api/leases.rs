//! Floating seats and heartbeats, from outside: leases that free themselves, heartbeats that
//! add no event, culling recorded once, revival, churn limits and borrowing. Heartbeats use
//! `PT1S` leases and the culler a 200 ms pass, so a test waits seconds, and waits for what
//! it needs rather than sleeping a fixed time.

use std::future::Future;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use futures::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{
    count_events_of_type, product_with_policies, server_env, spawn_app_with, with_fields,
    ApiClient, ServerProcess, TestApp,
};

/// The culler passes often enough for a test to see a `PT1S` lease culled within a second.
const FAST_CULL: (&str, &str) = ("LEASE_SCAN_INTERVAL", "200ms");

async fn spawn() -> TestApp {
    spawn_app_with(&[FAST_CULL]).await
}

/// A product `app` and a policy `app/seats` with `settings` on top of 2 seats, perpetual.
async fn policy(api: &ApiClient, settings: Value) -> Value {
    let settings = with_fields(json!({"max_devices": 2}), &settings);
    product_with_policies(api, &[("seats", settings)])
        .await
        .remove(0)
}

/// A subscription following `app/seats`; its license key.
async fn license(api: &ApiClient) -> String {
    let subscription = api
        .create(json!({
            "customer_email": "ann@example.com",
            "customer_name": "Ann Example",
            "policy": "app/seats",
        }))
        .await;
    subscription["license_key"].as_str().unwrap().to_owned()
}

async fn post(app_address: &str, path: &str, body: Value) -> (StatusCode, Value, Option<String>) {
    let response = reqwest::Client::new()
        .post(format!("{app_address}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = if status == StatusCode::NO_CONTENT {
        Value::Null
    } else {
        response.json().await.unwrap()
    };
    (status, body, retry_after)
}

async fn activate(address: &str, key: &str, fingerprint: &str) -> (StatusCode, Value) {
    let (status, body, _) = post(
        address,
        "/api/v1/licensing/activate",
        json!({"license_key": key, "device": {"fingerprint": fingerprint}}),
    )
    .await;
    (status, body)
}

/// Activates and returns the device's token.
async fn token(app: &TestApp, key: &str, fingerprint: &str) -> String {
    let (status, body) = activate(&app.address, key, fingerprint).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

async fn heartbeat(address: &str, body: Value) -> (StatusCode, Value) {
    let (status, body, _) = post(address, "/api/v1/licensing/heartbeat", body).await;
    (status, body)
}

async fn validate(app: &TestApp, token: &str, fingerprint: &str) -> Value {
    let (status, body, _) = post(
        &app.address,
        "/api/v1/licensing/validate",
        json!({"token": token, "fingerprint": fingerprint}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn instant(value: &Value) -> DateTime<Utc> {
    value.as_str().unwrap().parse().unwrap()
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// Polls `check` until it holds, for at most `within`.
async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {within:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How many `DeviceDeactivated` events carry `reason`.
async fn deactivations_for(app: &TestApp, reason: &str) -> i64 {
    flowlytix_projections::with_db!(&app.db, pool => {
        sqlx::query_scalar(
            "select count(*) from events where event_type = 'DeviceDeactivated'
             and (payload -> 'DeviceDeactivated' ->> 'reason') = $1",
        )
        .bind(reason)
        .fetch_one(pool)
        .await
        .unwrap()
    })
}

#[tokio::test]
async fn a_floating_pool_counts_live_leases_and_a_checkin_frees_a_seat_at_once() {
    let app = spawn().await;
    let api = app.api();
    policy(&api, json!({"license_model": "floating"})).await;
    let key = license(&api).await;
    let first = token(&app, &key, "first").await;
    token(&app, &key, "second").await;

    let (status, refused) = activate(&app.address, &key, "third").await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert_eq!(refused["code"], "DEVICE_LIMIT_REACHED");
    assert_eq!(refused["in_use"], 2);
    assert_eq!(refused["max"], 2);

    let (status, _, _) = post(
        &app.address,
        "/api/v1/licensing/checkin",
        json!({"token": first}),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(deactivations_for(&app, "checked_in").await, 1);
    token(&app, &key, "third").await;
    assert_eq!(
        validate(&app, &first, "first").await["code"],
        "DEVICE_NOT_ACTIVATED",
        "a checked-in seat's token no longer validates"
    );
    // Checking in again changes nothing.
    let (status, _, _) = post(
        &app.address,
        "/api/v1/licensing/checkin",
        json!({"token": first}),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(deactivations_for(&app, "checked_in").await, 1);
}

#[tokio::test]
async fn a_heartbeat_renews_the_lease_and_the_token_without_growing_the_log() {
    let app = spawn().await;
    let api = app.api();
    policy(
        &api,
        json!({"require_heartbeat": true, "heartbeat_duration": "PT10M"}),
    )
    .await;
    let key = license(&api).await;
    let mut current = token(&app, &key, "laptop").await;
    let device = claims(&current)["sub"].clone();
    let events_before = app.event_count().await;
    let mut deadline = Utc::now();
    for _ in 0..5 {
        let (status, beat) =
            heartbeat(&app.address, json!({"token": current, "nonce": "n-1"})).await;
        assert_eq!(status, StatusCode::OK, "{beat}");
        let lease_expires_at = instant(&beat["lease_expires_at"]);
        assert!(lease_expires_at >= deadline, "the deadline only moves on");
        assert!(lease_expires_at > Utc::now() + chrono::Duration::minutes(9));
        let token_expires_at = instant(&beat["token_expires_at"]);
        assert!(
            token_expires_at <= lease_expires_at,
            "the token never outlives the lease: {beat}"
        );
        assert_eq!(beat["nonce"], "n-1");
        deadline = lease_expires_at;
        current = beat["token"].as_str().unwrap().to_owned();
        let claims = claims(&current);
        assert_eq!(claims["sub"], device, "the same device");
        assert_eq!(claims["exp"], token_expires_at.timestamp());
    }
    assert_eq!(
        app.event_count().await,
        events_before,
        "heartbeats are not events"
    );
    assert_eq!(validate(&app, &current, "laptop").await["code"], "VALID");
}

#[tokio::test]
async fn a_device_that_stops_beating_is_dead_and_culled_once_and_its_seat_is_free() {
    let app = spawn().await;
    let api = app.api();
    policy(
        &api,
        json!({"license_model": "floating", "max_devices": 1,
               "require_heartbeat": true, "heartbeat_duration": "PT1S"}),
    )
    .await;
    let key = license(&api).await;
    let silent = token(&app, &key, "silent").await;

    eventually(
        "the silent device is dead",
        Duration::from_secs(10),
        || async { validate(&app, &silent, "silent").await["code"] == "HEARTBEAT_DEAD" },
    )
    .await;
    // Nobody calls: the culler records the expiry and frees the seat within its pass.
    eventually(
        "the culler deactivates it",
        Duration::from_secs(10),
        || async { deactivations_for(&app, "heartbeat_expired").await == 1 },
    )
    .await;
    assert_eq!(count_events_of_type(&app, "DeviceLeaseExpired").await, 1);
    let (status, dead) = heartbeat(&app.address, json!({"token": silent})).await;
    assert_eq!(status, StatusCode::GONE, "{dead}");
    assert_eq!(dead["code"], "HEARTBEAT_DEAD");
    // More passes record nothing more.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(count_events_of_type(&app, "DeviceLeaseExpired").await, 1);
    assert_eq!(
        validate(&app, &silent, "silent").await["code"],
        "HEARTBEAT_DEAD"
    );
    token(&app, &key, "next").await;
}

#[tokio::test]
async fn a_dead_seat_never_blocks_a_live_activation_even_before_the_culler_runs() {
    // A culler that passes once an hour: the activation itself expires the dead lease.
    let app = spawn_app_with(&[("LEASE_SCAN_INTERVAL", "1h")]).await;
    let api = app.api();
    policy(
        &api,
        json!({"max_devices": 1, "require_heartbeat": true, "heartbeat_duration": "PT1S"}),
    )
    .await;
    let key = license(&api).await;
    token(&app, &key, "crashed").await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    token(&app, &key, "replacement").await;
    assert_eq!(count_events_of_type(&app, "DeviceLeaseExpired").await, 1);
    assert_eq!(deactivations_for(&app, "heartbeat_expired").await, 1);
}

#[tokio::test]
async fn within_the_resurrection_window_a_heartbeat_revives_the_same_device() {
    let app = spawn().await;
    let api = app.api();
    policy(
        &api,
        json!({"require_heartbeat": true, "heartbeat_duration": "PT1S",
               "resurrection_window": "PT1H"}),
    )
    .await;
    let key = license(&api).await;
    let sleeper = token(&app, &key, "sleeper").await;
    eventually("the sleeper is culled", Duration::from_secs(10), || async {
        deactivations_for(&app, "heartbeat_expired").await == 1
    })
    .await;

    let (status, revived) = heartbeat(&app.address, json!({"token": sleeper})).await;
    assert_eq!(status, StatusCode::OK, "{revived}");
    assert_eq!(count_events_of_type(&app, "DeviceRevived").await, 1);
    let fresh = revived["token"].as_str().unwrap();
    assert_eq!(
        claims(fresh)["sub"],
        claims(&sleeper)["sub"],
        "same device id"
    );
    assert_eq!(validate(&app, fresh, "sleeper").await["code"], "VALID");
    // A revived lease beats like any other: no further event.
    let events = app.event_count().await;
    let (status, _) = heartbeat(&app.address, json!({"token": fresh})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.event_count().await, events);
}

#[tokio::test]
async fn with_keep_a_dead_node_locked_device_keeps_its_seat() {
    let app = spawn().await;
    let api = app.api();
    policy(
        &api,
        json!({"max_devices": 1, "require_heartbeat": true, "heartbeat_duration": "PT1S",
               "heartbeat_cull": "keep"}),
    )
    .await;
    let key = license(&api).await;
    let kept = token(&app, &key, "kept").await;
    eventually(
        "the expiry is recorded",
        Duration::from_secs(10),
        || async { count_events_of_type(&app, "DeviceLeaseExpired").await == 1 },
    )
    .await;
    assert_eq!(deactivations_for(&app, "heartbeat_expired").await, 0);
    assert_eq!(
        validate(&app, &kept, "kept").await["code"],
        "HEARTBEAT_DEAD"
    );
    let (status, refused) = activate(&app.address, &key, "other").await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert_eq!(refused["in_use"], 1);
}

#[tokio::test]
async fn past_the_churn_limit_a_client_deactivation_is_429_and_the_seat_stays() {
    let app = spawn().await;
    let api = app.api();
    policy(
        &api,
        json!({"max_deactivations": 2, "deactivation_window": "P30D"}),
    )
    .await;
    let key = license(&api).await;
    for n in 0..2 {
        let fingerprint = format!("loop-{n}");
        token(&app, &key, &fingerprint).await;
        let (status, body, _) = post(
            &app.address,
            "/api/v1/licensing/deactivate",
            json!({"license_key": key, "fingerprint": fingerprint}),
        )
        .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    }
    let held = token(&app, &key, "held").await;
    let events = app.event_count().await;
    let (status, refused, retry_after) = post(
        &app.address,
        "/api/v1/licensing/deactivate",
        json!({"license_key": key, "fingerprint": "held"}),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{refused}");
    assert_eq!(refused["code"], "DEACTIVATION_LIMIT_REACHED");
    let seconds: u64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!(seconds > 29 * 24 * 3600, "about 30 days: {seconds}");
    // A check-in of a node-locked device is a client deactivation too.
    let (status, _, _) = post(
        &app.address,
        "/api/v1/licensing/checkin",
        json!({"token": held}),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(app.event_count().await, events, "nothing written");
    assert_eq!(validate(&app, &held, "held").await["code"], "VALID");

    // Admins are not limited.
    let device = claims(&held)["sub"].as_str().unwrap().to_owned();
    let response = app
        .admin(Method::DELETE, &format!("/api/v1/devices/{device}"))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
}

#[tokio::test]
async fn a_borrowed_seat_and_its_token_last_until_borrow_until() {
    let app = spawn().await;
    let api = app.api();
    policy(
        &api,
        json!({"license_model": "floating", "require_heartbeat": true,
               "heartbeat_duration": "PT1S", "max_borrow": "P7D"}),
    )
    .await;
    let key = license(&api).await;
    let token = token(&app, &key, "travelling").await;
    let until =
        (Utc::now() + chrono::Duration::days(2)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);

    let (status, too_far) = heartbeat(
        &app.address,
        json!({"token": token, "borrow_until": (Utc::now() + chrono::Duration::days(8)).to_rfc3339()}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{too_far}");
    assert_eq!(too_far["code"], "INVALID_BORROW");

    let (status, borrowed) =
        heartbeat(&app.address, json!({"token": token, "borrow_until": until})).await;
    assert_eq!(status, StatusCode::OK, "{borrowed}");
    let until: DateTime<Utc> = until.parse().unwrap();
    assert_eq!(instant(&borrowed["lease_expires_at"]), until);
    assert_eq!(instant(&borrowed["borrowed_until"]), until);
    assert!(instant(&borrowed["token_expires_at"]) > Utc::now() + chrono::Duration::days(1));
    let borrowed_token = borrowed["token"].as_str().unwrap();
    // Well past the heartbeat duration the seat is still held and the token valid.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        validate(&app, borrowed_token, "travelling").await["code"],
        "VALID"
    );
    assert_eq!(count_events_of_type(&app, "DeviceLeaseExpired").await, 0);
}

#[tokio::test]
async fn heartbeats_answer_for_policies_without_them_and_lease_settings_are_checked() {
    let app = spawn().await;
    let api = app.api();
    let product = api
        .create_at("/api/v1/products", json!({"name": "App", "code": "app"}))
        .await;
    for (settings, code) in [
        (json!({"require_heartbeat": true}), "INVALID_HEARTBEAT"),
        (json!({"heartbeat_duration": "PT10M"}), "INVALID_HEARTBEAT"),
        (json!({"resurrection_window": "PT1H"}), "INVALID_HEARTBEAT"),
        (
            json!({"max_deactivations": 3}),
            "INVALID_DEACTIVATION_LIMIT",
        ),
        (
            json!({"max_deactivations": 0, "deactivation_window": "P1D"}),
            "INVALID_DEACTIVATION_LIMIT",
        ),
        (json!({"max_borrow": "P7D"}), "INVALID_BORROW"),
        (
            json!({"heartbeat_duration": "ten minutes", "require_heartbeat": true}),
            "INVALID_DURATION",
        ),
        (json!({"license_model": "metered"}), "INVALID_BODY"),
    ] {
        let body = with_fields(
            json!({"product_id": product["id"], "name": "P", "code": "p", "max_devices": 1}),
            &settings,
        );
        let response = app
            .admin(Method::POST, "/api/v1/policies")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}"
        );
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["code"], code, "{body}: {problem}");
    }
    let created = api
        .create_at(
            "/api/v1/policies",
            json!({"product_id": product["id"], "name": "Seats", "code": "seats", "max_devices": 2}),
        )
        .await;
    assert_eq!(created["license_model"], "node_locked");
    assert_eq!(created["require_heartbeat"], false);
    let key = license(&api).await;
    let plain = token(&app, &key, "plain").await;
    let (status, refused) = heartbeat(&app.address, json!({"token": plain})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert_eq!(refused["code"], "HEARTBEAT_NOT_REQUIRED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_racing_for_the_last_floating_seats_hand_each_out_once() {
    let app = spawn().await;
    let second = app.spawn_second_instance().await;
    let api = app.api();
    policy(
        &api,
        json!({"license_model": "floating", "max_devices": 3,
               "require_heartbeat": true, "heartbeat_duration": "PT10M"}),
    )
    .await;
    let key = license(&api).await;
    let attempts = (0..20).map(|n| {
        let address = if n % 2 == 0 {
            app.address.clone()
        } else {
            second.clone()
        };
        let key = key.clone();
        async move { activate(&address, &key, &format!("racer-{n}")).await.0 }
    });
    let statuses = join_all(attempts).await;
    let won = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    let full = statuses
        .iter()
        .filter(|s| **s == StatusCode::CONFLICT)
        .count();
    assert_eq!((won, full), (3, 17), "{statuses:?}");
    assert_eq!(count_events_of_type(&app, "DeviceActivated").await, 3);
}

/// Keeps the device of `token` beating through `address` until `done` holds (at most
/// `within`); returns its latest token.
async fn beat_until<F, Fut>(address: &str, token: String, within: Duration, mut done: F) -> String
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = tokio::time::Instant::now();
    let mut token = token;
    while !done().await {
        assert!(started.elapsed() < within, "not within {within:?}");
        let (status, beat) = heartbeat(address, json!({"token": token})).await;
        assert_eq!(status, StatusCode::OK, "{beat}");
        token = beat["token"].as_str().unwrap().to_owned();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_two_instances_each_expiry_is_recorded_once_and_survives_one_being_killed() {
    let app = spawn().await;
    let mut env = server_env(&app.database_url, &app.key_dir, app.nats_names.as_ref());
    env.push(("LEASE_SCAN_INTERVAL".into(), "200ms".into()));
    let mut other = ServerProcess::start(&env).await;
    let api = app.api();
    policy(
        &api,
        json!({"license_model": "floating", "max_devices": 10,
               "require_heartbeat": true, "heartbeat_duration": "PT2S"}),
    )
    .await;
    let key = license(&api).await;
    let leased = |n: usize| format!("leased-{n}");
    let mut tokens = Vec::new();
    for n in 0..4 {
        let (status, body) = activate(&other.address, &key, &leased(n)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        tokens.push(body["token"].as_str().unwrap().to_owned());
    }
    // Both instances cull; device 0 beats through the other one; the silent three expire
    // once each.
    let expired = || async { count_events_of_type(&app, "DeviceLeaseExpired").await };
    let beating = beat_until(
        &other.address,
        tokens[0].clone(),
        Duration::from_secs(15),
        || async { expired().await >= 3 },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(expired().await, 3, "recorded once while two instances run");

    // Killed mid-lease: its devices' leases live in the database, not in it. The survivor
    // renews the beating one and culls two more that go silent.
    for n in 4..6 {
        let (status, body) = activate(&other.address, &key, &leased(n)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    other.kill().await;
    let beating = beat_until(&app.address, beating, Duration::from_secs(15), || async {
        expired().await >= 5
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(expired().await, 5);
    assert_eq!(deactivations_for(&app, "heartbeat_expired").await, 5);
    assert_eq!(validate(&app, &beating, &leased(0)).await["code"], "VALID");
}

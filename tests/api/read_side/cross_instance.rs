//! Two instances on one PostgreSQL: validation on the other instance is fresh within a
//! second, even while NATS is down (the store announces license changes as they commit) and
//! though it caches licenses for long;
//! and a deployment never publishes to, or projects from, another store's stream.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::helpers::{
    fresh_database, skip_unless_postgres, spawn_app, spawn_app_on_nats_at, start_app, NatsServer,
};

/// Polls `check` on the other instance until it holds; returns how long that took.
async fn within_a_second(what: &str, mut check: impl AsyncFnMut() -> (bool, Value)) -> Duration {
    let started = Instant::now();
    loop {
        let (holds, seen) = check().await;
        if holds {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{what}: the other instance still answers {seen}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_on_another_instance_is_fresh_within_a_second_while_nats_is_down() {
    if skip_unless_postgres() {
        return;
    }
    let mut nats = NatsServer::start().await;
    let app = spawn_app_on_nats_at(&nats.url()).await;
    let here = app.api();
    let there = here.at(&app.spawn_second_instance().await);
    let mut licenses = Vec::new();
    for n in 0..3 {
        let (id, key) = here.create_simple(n, "pro", 5).await;
        here.activate(&key, &format!("device-{n}"), "linux").await;
        licenses.push((id, key, format!("device-{n}")));
    }
    app.wait_for_read_models().await;
    for (_, key, device) in &licenses {
        assert_eq!(there.validate(key, device).await["code"], "VALID");
    }

    nats.stop().await;
    let (suspended, regenerated, deactivated) = (&licenses[0], &licenses[1], &licenses[2]);
    here.put(&suspended.0, json!({"status": "suspended"})).await;
    let response = here
        .admin(
            Method::POST,
            &format!("/api/v1/subscriptions/{}/license-key", regenerated.0),
        )
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    here.deactivate(&deactivated.1, &deactivated.2).await;

    let took = within_a_second("a suspension", async || {
        let seen = there.validate(&suspended.1, &suspended.2).await;
        (seen["code"] == "SUSPENDED", seen)
    })
    .await;
    eprintln!("the suspension showed on the other instance after {took:?}");
    within_a_second("a regenerated key", async || {
        let seen = there.validate(&regenerated.1, &regenerated.2).await;
        (seen["code"] == "NOT_FOUND", seen)
    })
    .await;
    within_a_second("a deactivated device", async || {
        let seen = there.validate(&deactivated.1, &deactivated.2).await;
        (seen["code"] == "DEVICE_NOT_ACTIVATED", seen)
    })
    .await;
    // The read models really are behind: it was the write side that answered.
    let listed = there.get("/api/v1/subscriptions?status=suspended").await;
    assert_eq!(listed["total"], 0, "NATS is down, the list cannot know yet");
    nats.run().await;
}

/// Validation trusts a cached license for long while it follows the store's notices: a
/// license the other instance has cached must still show a change made here within a
/// second, whether it makes a refusal valid (an activation, which is not announced) or only
/// changes what a valid answer says (features, which are).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_license_cached_on_another_instance_shows_activations_and_new_features_within_a_second() {
    if skip_unless_postgres() {
        return;
    }
    let app = spawn_app().await;
    let here = app.api();
    let there = here.at(&app.spawn_second_instance().await);
    let (id, key) = here.create_simple(0, "pro", 5).await;
    here.activate(&key, "laptop", "linux").await;
    // Cached over there, both as valid and as refusing a device it does not know yet.
    assert_eq!(there.validate(&key, "laptop").await["code"], "VALID");
    assert_eq!(
        there.validate(&key, "desktop").await["code"],
        "DEVICE_NOT_ACTIVATED"
    );

    here.activate(&key, "desktop", "linux").await;
    within_a_second("an activation made elsewhere", async || {
        let seen = there.validate(&key, "desktop").await;
        (seen["code"] == "VALID", seen)
    })
    .await;
    here.put(&id, json!({"features": ["export", "sync"]})).await;
    within_a_second("new features", async || {
        let seen = there.validate(&key, "laptop").await;
        (
            seen["license"]["features"] == json!(["export", "sync"]),
            seen,
        )
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_refuses_a_stream_that_belongs_to_another_store() {
    if skip_unless_postgres() {
        return;
    }
    let first = spawn_app().await;
    let first_created = first.api().create_simple(1, "pro", 3).await;
    first.wait_for_read_models().await;
    // Another deployment, with a database of its own, configured with the same stream.
    let key_dir =
        std::env::temp_dir().join(format!("flowlytix-test-keys-{}", uuid::Uuid::new_v4()));
    let second = start_app(
        &fresh_database().await,
        &key_dir,
        first.nats_names.clone(),
        &[],
    )
    .await;
    let (foreign_id, _) = second.api().create_simple(2, "team", 3).await;

    let deadline = Instant::now() + Duration::from_secs(10);
    let health = loop {
        let health = second.health().await;
        let error = health["publisher"]["last_error"].as_str().unwrap_or("");
        if error.contains("belongs to event store") {
            break health;
        }
        assert!(Instant::now() < deadline, "no clear refusal: {health}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(health["status"], "degraded");

    // The first deployment's read models hold its own subscription and nothing else.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ids: Vec<Value> = first
        .api()
        .list_all("/api/v1/subscriptions")
        .await
        .iter()
        .map(|s| s["id"].clone())
        .collect();
    assert_eq!(ids, vec![Value::String(first_created.0.clone())]);
    assert_ne!(first_created.0, foreign_id);
    assert_eq!(first.health().await["status"], "ok");
}

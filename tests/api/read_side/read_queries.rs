//! The queries over the read models: subscription and device lists, `min_position`,
//! `as_of`, the event feed and history, analytics, and validation on another instance.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::helpers::{skip_unless_postgres, spawn_app_on_nats, spawn_nats_instance};

use super::{commit_order, HORIZON};

fn ids(items: &Value) -> BTreeSet<String> {
    items["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

fn set(values: &[&String]) -> BTreeSet<String> {
    values.iter().map(|v| (*v).clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lists_feed_history_analytics_and_validation_answer_from_the_read_models() {
    if skip_unless_postgres() {
        return;
    }
    let app = spawn_app_on_nats().await;
    let api = app.api();
    let now = Utc::now();
    let at = |days: i64| {
        (now + chrono::Duration::days(days)).to_rfc3339_opts(SecondsFormat::Micros, true)
    };

    // min_position: a list right after a create includes it.
    let created = api
        .create(json!({"customer_email": "zed@zulu.example", "customer_name": "Zed", "plan": "pro", "max_devices": 2}))
        .await;
    let zed = created["id"].as_str().unwrap().to_owned();
    let response = api
        .admin(Method::GET, "/api/v1/subscriptions")
        .query(&[
            ("q", "zulu".to_owned()),
            ("min_position", created["position"].to_string()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-read-model-consistent"], "true");
    let body: Value = response.json().await.unwrap();
    assert_eq!(ids(&body), set(&[&zed]), "{body}");
    let activated = api
        .activate(
            created["license_key"].as_str().unwrap(),
            "zed-laptop",
            "linux",
        )
        .await;
    let body = api
        .get_query(
            "/api/v1/devices",
            &[
                ("subscription_id", zed.clone()),
                ("min_position", activated["position"].to_string()),
            ],
        )
        .await;
    assert_eq!(body["items"][0]["id"], activated["device_id"], "{body}");

    let subscription = |email: &str, name: &str, organization: Option<&str>, plan: &str| json!({"customer_email": email, "customer_name": name, "organization": organization, "plan": plan, "max_devices": 3});
    let mut alice = subscription(
        "alice@alpha.example",
        "Alice",
        Some("Alpha Corp"),
        "starter",
    );
    alice["expires_at"] = json!(at(10));
    let alice = api.create(alice).await;
    let mut bob = subscription("bob@beta.example", "Bob", Some("Beta LLC"), "team");
    bob["expires_at"] = json!(at(40));
    let bob = api.create(bob).await;
    let carol = api
        .create(subscription(
            "carol@gamma.example",
            "Carol",
            Some("Gamma Alpha"),
            "team",
        ))
        .await;
    let mut dave = subscription("dave@delta.example", "Dave", None, "enterprise");
    dave["expires_at"] = json!(at(5));
    let dave = api.create(dave).await;
    let mut erin = subscription("erin@epsilon.example", "Erin", None, "pro");
    erin["starts_at"] = json!(at(-10));
    erin["expires_at"] = json!(at(-1));
    let erin = api.create(erin).await;
    let mut frank = subscription("frank@phi.example", "Frank", None, "pro");
    frank["trial_ends_at"] = json!(at(7));
    let frank = api.create(frank).await;
    let gone = api
        .create(subscription("gone@deleted.example", "Gone", None, "pro"))
        .await;
    let id = |s: &Value| s["id"].as_str().unwrap().to_owned();
    let key = |s: &Value| s["license_key"].as_str().unwrap().to_owned();
    let (alice_id, bob_id, carol_id, dave_id, erin_id, frank_id, gone_id) = (
        id(&alice),
        id(&bob),
        id(&carol),
        id(&dave),
        id(&erin),
        id(&frank),
        id(&gone),
    );

    // Devices: two on Alice (one later deactivated), one on Bob, one on the deleted one.
    let alice_linux = api.activate(&key(&alice), "alice-linux", "linux").await;
    let alice_windows = api.activate(&key(&alice), "alice-windows", "windows").await;
    let bob_mac = api.activate(&key(&bob), "bob-mac", "macos").await;
    api.activate(&key(&gone), "gone-device", "linux").await;
    api.deactivate(&key(&alice), "alice-windows").await;

    // As of an instant between two changes: Alice's plan before it changed.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let between = Utc::now();
    tokio::time::sleep(Duration::from_millis(50)).await;
    api.put(&alice_id, json!({"plan": "pro"})).await;
    api.put(
        &carol_id,
        json!({"status": "suspended", "reason": "unpaid"}),
    )
    .await;
    api.put(&dave_id, json!({"status": "canceled"})).await;
    let response = api
        .admin(Method::DELETE, &format!("/api/v1/subscriptions/{gone_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let then = api
        .get_query(
            &format!("/api/v1/subscriptions/{alice_id}"),
            &[(
                "as_of",
                between.to_rfc3339_opts(SecondsFormat::Micros, true),
            )],
        )
        .await;
    assert_eq!(then["plan"], "starter");
    assert_eq!(then["active_devices"], 1);
    let history = api
        .get(&format!("/api/v1/subscriptions/{alice_id}/events"))
        .await;
    let alice_events = history["items"].as_array().unwrap().len();
    assert_eq!(
        history["items"][alice_events - 1]["event_type"],
        "SubscriptionPlanChanged"
    );
    assert_eq!(
        then["version"],
        alice_events - 1,
        "as_of stops before the plan change"
    );
    assert_eq!(
        api.get(&format!("/api/v1/subscriptions/{alice_id}")).await["plan"],
        "pro"
    );

    app.wait_for_read_models().await;

    // Subscription list filters, sorting and paging.
    let list = |query: Vec<(&'static str, String)>| {
        let api = api.clone();
        async move { api.get_query("/api/v1/subscriptions", &query).await }
    };
    let all = list(vec![]).await;
    assert_eq!(all["total"], 7, "{all}");
    assert_eq!(
        (all["page"].as_u64(), all["per_page"].as_u64()),
        (Some(1), Some(20))
    );
    assert!(
        !ids(&all).contains(&gone_id),
        "a deleted subscription leaves the list"
    );
    for (status, expected) in [
        ("active", set(&[&alice_id, &bob_id, &zed])),
        ("suspended", set(&[&carol_id])),
        ("canceled", set(&[&dave_id])),
        ("expired", set(&[&erin_id])),
        ("trialing", set(&[&frank_id])),
    ] {
        let page = list(vec![("status", status.into())]).await;
        assert_eq!(ids(&page), expected, "status={status}");
        assert_eq!(page["total"], expected.len(), "status={status}");
        assert!(page["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["status"] == status));
    }
    assert_eq!(
        ids(&list(vec![("plan", "team".into())]).await),
        set(&[&bob_id, &carol_id])
    );
    assert_eq!(
        ids(&list(vec![("plan", "pro".into())]).await),
        set(&[&alice_id, &erin_id, &frank_id, &zed])
    );
    assert_eq!(
        ids(&list(vec![("q", "ALPHA".into())]).await),
        set(&[&alice_id, &carol_id]),
        "q matches email, name or organization, any case"
    );
    assert_eq!(ids(&list(vec![("q", "bob".into())]).await), set(&[&bob_id]));
    assert_eq!(
        ids(&list(vec![("expiring_before", at(20))]).await),
        set(&[&alice_id, &dave_id, &erin_id])
    );
    assert_eq!(
        ids(&list(vec![
            ("expiring_before", at(20)),
            ("status", "active".into())
        ])
        .await),
        set(&[&alice_id]),
        "filters combine"
    );
    let emails = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["customer_email"].as_str().unwrap().to_owned())
            .collect()
    };
    let ascending = emails(&list(vec![("sort", "customer_email".into())]).await);
    let mut sorted = ascending.clone();
    sorted.sort();
    assert_eq!(ascending, sorted);
    assert_eq!(ascending.len(), 7);
    let mut descending = emails(&list(vec![("sort", "-customer_email".into())]).await);
    descending.reverse();
    assert_eq!(descending, ascending);
    let page = list(vec![
        ("sort", "customer_email".into()),
        ("per_page", "2".into()),
        ("page", "2".into()),
    ])
    .await;
    assert_eq!(emails(&page), ascending[2..4].to_vec());
    assert_eq!(
        (
            page["total"].as_u64(),
            page["page"].as_u64(),
            page["per_page"].as_u64()
        ),
        (Some(7), Some(2), Some(2))
    );
    let past_the_end = list(vec![("per_page", "5".into()), ("page", "3".into())]).await;
    assert_eq!(past_the_end["items"], json!([]));
    assert_eq!(past_the_end["total"], 7);
    let newest_first = list(vec![]).await;
    assert_eq!(
        newest_first["items"][0]["id"],
        json!(frank_id),
        "default sort is newest first"
    );
    let response = api
        .admin(Method::GET, "/api/v1/subscriptions?sort=license_key_hash")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // Device list filters.
    let devices = |query: Vec<(&'static str, String)>| {
        let api = api.clone();
        async move { api.get_query("/api/v1/devices", &query).await }
    };
    let device_id = |d: &Value| d["device_id"].as_str().unwrap().to_owned();
    let (alice_linux, alice_windows, bob_mac) = (
        device_id(&alice_linux),
        device_id(&alice_windows),
        device_id(&bob_mac),
    );
    assert_eq!(
        ids(&devices(vec![("subscription_id", alice_id.clone())]).await),
        set(&[&alice_linux, &alice_windows])
    );
    assert_eq!(
        ids(&devices(vec![
            ("subscription_id", alice_id.clone()),
            ("status", "active".into())
        ])
        .await),
        set(&[&alice_linux])
    );
    let inactive = devices(vec![("status", "inactive".into())]).await;
    assert_eq!(ids(&inactive), set(&[&alice_windows]));
    assert_eq!(inactive["items"][0]["deactivation_reason"], "client");
    assert_eq!(
        ids(&devices(vec![("platform", "macos".into())]).await),
        set(&[&bob_mac])
    );
    let every_device = devices(vec![]).await;
    assert_eq!(
        every_device["total"], 4,
        "the deleted subscription's device is not listed: {every_device}"
    );
    let paged = devices(vec![("per_page", "3".into()), ("page", "2".into())]).await;
    assert_eq!(
        (
            paged["items"].as_array().unwrap().len(),
            paged["total"].as_u64()
        ),
        (1, Some(4))
    );

    // The global feed: paged in commit order, filtered.
    let mut feed = Vec::new();
    let mut after: Option<i64> = None;
    loop {
        let mut query = vec![("limit", "7".to_owned())];
        if let Some(after) = after {
            query.push(("after", after.to_string()));
        }
        let page = api.get_query("/api/v1/events", &query).await;
        let items = page["items"].as_array().unwrap().clone();
        if items.is_empty() {
            break;
        }
        assert!(items.len() <= 7);
        assert_eq!(page["next_after"], items.last().unwrap()["position"]);
        after = page["next_after"].as_i64();
        feed.extend(items);
    }
    let commit_order = commit_order(app.pg()).await;
    let positions: Vec<i64> = feed
        .iter()
        .map(|e| e["position"].as_i64().unwrap())
        .collect();
    assert_eq!(
        positions, commit_order,
        "the feed pages through every event in commit order"
    );
    let alice_feed = api
        .get_query("/api/v1/events", &[("aggregate_id", alice_id.clone())])
        .await;
    let sequences: Vec<i64> = alice_feed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["sequence"].as_i64().unwrap())
        .collect();
    assert_eq!(sequences, (1..=alice_events as i64).collect::<Vec<_>>());
    let activations_feed = api
        .get_query(
            "/api/v1/events",
            &[("event_type", "DeviceActivated".into())],
        )
        .await;
    let activation_items = activations_feed["items"].as_array().unwrap();
    assert_eq!(activation_items.len(), 5);
    assert!(activation_items
        .iter()
        .all(|e| e["event_type"] == "DeviceActivated" && e["aggregate_type"] == "Subscription"));

    // Analytics.
    let dashboard = api.get("/api/v1/analytics/dashboard").await;
    assert_eq!(dashboard["subscriptions_total"], 7, "{dashboard}");
    assert_eq!(
        dashboard["subscriptions_by_status"],
        json!({"active": 3, "suspended": 1, "canceled": 1, "expired": 1, "trialing": 1})
    );
    assert_eq!(
        dashboard["subscriptions_by_plan"],
        json!({"pro": 4, "team": 2, "enterprise": 1})
    );
    assert_eq!(dashboard["active_devices_total"], 3);
    assert_eq!(
        dashboard["active_devices_by_platform"],
        json!({"linux": 2, "macos": 1})
    );
    let totals = |daily: &Value| -> BTreeMap<String, i64> {
        let mut totals = BTreeMap::new();
        for day in daily.as_array().unwrap() {
            for (metric, value) in day["counts"].as_object().unwrap() {
                *totals.entry(metric.clone()).or_default() += value.as_i64().unwrap();
            }
        }
        totals
    };
    let daily = totals(&dashboard["daily"]);
    assert_eq!(daily["activations"], 5);
    assert_eq!(daily["deactivations"], 1);
    assert_eq!(
        daily["subscriptions_created"], 8,
        "created, including the one deleted since"
    );
    assert_eq!(daily["subscriptions_canceled"], 1);
    assert_eq!(daily["subscriptions_expired"], 1);
    let by_subscription = api.get("/api/v1/analytics/subscriptions").await;
    assert_eq!(
        by_subscription["by_status"],
        dashboard["subscriptions_by_status"]
    );
    assert_eq!(
        by_subscription["by_plan"],
        dashboard["subscriptions_by_plan"]
    );
    assert_eq!(
        totals(&by_subscription["daily"])["subscriptions_created"],
        8
    );
    let by_device = api.get("/api/v1/analytics/devices").await;
    assert_eq!(by_device["by_status"], json!({"active": 3, "inactive": 1}));
    assert_eq!(by_device["by_platform"], json!({"linux": 2, "macos": 1}));
    assert_eq!(by_device["by_app_version"], json!({"2.1.0": 3}));
    assert_eq!(totals(&by_device["daily"])["activations"], 5);

    // Validation on another instance sees a suspension made through this one within a second.
    let other = spawn_nats_instance(&app.database_url.clone(), &app.key_dir, &app.nats).await;
    let other_api = other.api();
    let valid = other_api.validate(&key(&bob), "bob-mac").await;
    assert_eq!(valid["code"], "VALID", "{valid}");
    let _turn = HORIZON.lock().await;
    api.put(&bob_id, json!({"status": "suspended", "reason": "fraud"}))
        .await;
    let suspended = Instant::now();
    loop {
        let verdict = other_api.validate(&key(&bob), "bob-mac").await;
        if verdict["code"] == "SUSPENDED" {
            assert_eq!(verdict["valid"], false);
            break;
        }
        assert_eq!(verdict["code"], "VALID");
        assert!(
            suspended.elapsed() < Duration::from_millis(1500),
            "the other instance still validates after 1.5 s"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    eprintln!(
        "the other instance saw the suspension after {:?}",
        suspended.elapsed()
    );
    other.server.stop_background_tasks();
    app.teardown().await;
}

//! Concurrent writers on one subscription: the device limit and `If-Match` hold under
//! contention, within one server and across two servers sharing one database.

use futures::future::join_all;
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp};

/// Activates `fingerprint` against the server at `address`; returns (status, body).
async fn activate_at(
    client: &Client,
    address: &str,
    key: &str,
    fingerprint: &str,
) -> (StatusCode, Value) {
    let response = client
        .post(format!("{address}/api/v1/licensing/activate"))
        .json(&json!({"license_key": key, "device": {"fingerprint": fingerprint, "platform": "linux"}}))
        .send()
        .await
        .expect("activate request");
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body: Value = response.json().await.expect("activate body");
    if !status.is_success() {
        assert_eq!(content_type, "application/problem+json", "{status} {body}");
    }
    (status, body)
}

/// The subscription's events as (sequence, event_type), in sequence order, from the table.
async fn stored_events(app: &TestApp, id: &str) -> Vec<(i64, String)> {
    flowlytix_projections::with_db!(&app.db, pool => {
        sqlx::query_as(
            "select sequence, event_type from events
             where aggregate_type = 'Subscription' and aggregate_id = $1 order by sequence",
        )
        .bind(id)
        .fetch_all(pool)
        .await
        .expect("read the events table")
    })
}

/// Asserts the stored sequences are exactly 1..=n and returns how many DeviceActivated rows
/// there are.
async fn assert_contiguous_and_count_activations(app: &TestApp, id: &str) -> usize {
    let events = stored_events(app, id).await;
    let sequences: Vec<i64> = events.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        sequences,
        (1..=events.len() as i64).collect::<Vec<_>>(),
        "sequences have no gap"
    );
    events
        .iter()
        .filter(|(_, t)| t == "DeviceActivated")
        .count()
}

async fn active_devices(app: &TestApp, id: &str) -> Value {
    let response = app
        .admin(Method::GET, &format!("/api/v1/subscriptions/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json::<Value>().await.unwrap()["active_devices"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_parallel_activations_on_a_five_device_license_admit_exactly_five() {
    let app = spawn_app().await;
    let subscription = app.subscription_with_devices(5).await;
    let id = subscription["id"].as_str().unwrap();
    let key = subscription["license_key"].as_str().unwrap().to_owned();

    let tasks = (0..20).map(|i| {
        let client = app.client.clone();
        let address = app.address.clone();
        let key = key.clone();
        tokio::spawn(async move {
            activate_at(&client, &address, &key, &format!("parallel-fp-{i}")).await
        })
    });
    let results: Vec<(StatusCode, Value)> = join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.expect("task"))
        .collect();

    let created: Vec<&Value> = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .map(|(_, b)| b)
        .collect();
    let refused: Vec<&Value> = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::CONFLICT)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(created.len(), 5, "{results:?}");
    assert_eq!(refused.len(), 15, "{results:?}");
    for problem in &refused {
        assert_eq!(problem["code"], "DEVICE_LIMIT_REACHED", "{problem}");
        assert_eq!(problem["status"], 409);
    }
    let mut device_ids: Vec<&str> = created
        .iter()
        .map(|b| b["device_id"].as_str().unwrap())
        .collect();
    device_ids.sort_unstable();
    device_ids.dedup();
    assert_eq!(
        device_ids.len(),
        5,
        "each admitted fingerprint is its own device"
    );

    assert_eq!(active_devices(&app, id).await, 5);
    assert_eq!(assert_contiguous_and_count_activations(&app, id).await, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_activations_of_one_fingerprint_make_one_device() {
    let app = spawn_app().await;
    let subscription = app.subscription_with_devices(5).await;
    let id = subscription["id"].as_str().unwrap();
    let key = subscription["license_key"].as_str().unwrap().to_owned();

    let tasks = (0..10).map(|_| {
        let client = app.client.clone();
        let address = app.address.clone();
        let key = key.clone();
        tokio::spawn(async move { activate_at(&client, &address, &key, "the-same-machine").await })
    });
    let results: Vec<(StatusCode, Value)> = join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.expect("task"))
        .collect();
    assert!(
        results.iter().all(|(s, _)| *s == StatusCode::CREATED),
        "{results:?}"
    );
    let first = &results[0].1["device_id"];
    assert!(
        results.iter().all(|(_, b)| &b["device_id"] == first),
        "one device id for one fingerprint"
    );

    assert_eq!(active_devices(&app, id).await, 1);
    assert_eq!(assert_contiguous_and_count_activations(&app, id).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_concurrent_puts_with_the_same_if_match_give_one_200_and_one_version_conflict() {
    let app = spawn_app().await;
    let subscription = app.subscription_with_devices(5).await;
    let id = subscription["id"].as_str().unwrap().to_owned();
    let version = subscription["version"].as_u64().unwrap();

    let puts = ["team", "enterprise"].map(|plan| {
        let request = app
            .admin(Method::PUT, &format!("/api/v1/subscriptions/{id}"))
            .header("If-Match", format!("\"{version}\""))
            .json(&json!({"plan": plan}));
        tokio::spawn(async move {
            let response = request.send().await.expect("put");
            let status = response.status();
            (status, response.json::<Value>().await.expect("put body"))
        })
    });
    let results: Vec<(StatusCode, Value)> = join_all(puts)
        .await
        .into_iter()
        .map(|r| r.expect("task"))
        .collect();
    let ok: Vec<&Value> = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::OK)
        .map(|(_, b)| b)
        .collect();
    let conflicts: Vec<&Value> = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::CONFLICT)
        .map(|(_, b)| b)
        .collect();
    assert_eq!((ok.len(), conflicts.len()), (1, 1), "{results:?}");
    assert_eq!(conflicts[0]["code"], "VERSION_CONFLICT");
    assert_eq!(ok[0]["version"], version + 1);

    // Exactly one plan change was written, and it is the one the 200 reported.
    let events = stored_events(&app, &id).await;
    assert_eq!(
        events
            .iter()
            .filter(|(_, t)| t == "SubscriptionPlanChanged")
            .count(),
        1
    );
    let current: Value = app
        .admin(Method::GET, &format!("/api/v1/subscriptions/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(current["plan"], ok[0]["plan"]);
    assert_eq!(current["version"], version + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn activations_split_across_two_instances_on_one_database_admit_exactly_the_limit() {
    let app = spawn_app().await;
    let second = app.spawn_second_instance().await;
    let subscription = app.subscription_with_devices(5).await;
    let id = subscription["id"].as_str().unwrap();
    let key = subscription["license_key"].as_str().unwrap().to_owned();

    let tasks = (0..20).map(|i| {
        let client = app.client.clone();
        let address = if i % 2 == 0 {
            app.address.clone()
        } else {
            second.clone()
        };
        let key = key.clone();
        tokio::spawn(async move {
            activate_at(&client, &address, &key, &format!("two-instances-fp-{i}")).await
        })
    });
    let results: Vec<(StatusCode, Value)> = join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.expect("task"))
        .collect();

    let created = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count();
    assert_eq!(created, 5, "{results:?}");
    for (status, body) in results.iter().filter(|(s, _)| *s != StatusCode::CREATED) {
        assert_eq!(*status, StatusCode::CONFLICT, "never a 500: {body}");
        let code = body["code"].as_str().unwrap();
        assert!(
            code == "DEVICE_LIMIT_REACHED" || code == "CONCURRENT_MODIFICATION",
            "{body}"
        );
    }

    assert_eq!(active_devices(&app, id).await, 5);
    assert_eq!(assert_contiguous_and_count_activations(&app, id).await, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn puts_with_the_same_if_match_on_two_instances_give_one_200_and_one_version_conflict() {
    let app = spawn_app().await;
    let second = app.spawn_second_instance().await;
    let subscription = app.subscription_with_devices(5).await;
    let id = subscription["id"].as_str().unwrap().to_owned();
    let version = subscription["version"].as_u64().unwrap();

    let puts = [(app.address.clone(), 7), (second, 9)].map(|(address, max_devices)| {
        let request = app
            .client
            .put(format!("{address}/api/v1/subscriptions/{id}"))
            .bearer_auth(&app.admin_token)
            .header("If-Match", version.to_string())
            .json(&json!({"max_devices": max_devices}));
        tokio::spawn(async move {
            let response = request.send().await.expect("put");
            let status = response.status();
            (status, response.json::<Value>().await.expect("put body"))
        })
    });
    let results: Vec<(StatusCode, Value)> = join_all(puts)
        .await
        .into_iter()
        .map(|r| r.expect("task"))
        .collect();
    let ok = results.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    let conflicts: Vec<&Value> = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::CONFLICT)
        .map(|(_, b)| b)
        .collect();
    assert_eq!((ok, conflicts.len()), (1, 1), "{results:?}");
    assert_eq!(conflicts[0]["code"], "VERSION_CONFLICT", "{}", conflicts[0]);

    let events = stored_events(&app, &id).await;
    assert_eq!(
        events
            .iter()
            .filter(|(_, t)| t == "SubscriptionDeviceLimitChanged")
            .count(),
        1
    );
}

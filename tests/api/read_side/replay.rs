//! `flowlytix replay` rebuilds the same read models as live projection, and
//! `flowlytix events export` lists every event in commit order.

use std::collections::HashMap;

use chrono::{SecondsFormat, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{skip_unless_postgres, spawn_app_on_nats, ApiClient};

use super::{
    assert_analytics_match_events, assert_each_event_projected_once,
    assert_read_models_match_aggregates, commit_order, read_side_dump, scalar, HORIZON,
};

/// Creates, activations, deactivations (client and admin), device notes, plan, limit and
/// period changes, suspension and resumption, cancellation, deletion, a new license key and
/// a token refresh.
async fn mixed_workload(api: &ApiClient) {
    let mut subscriptions = Vec::new();
    for (n, plan) in ["pro", "team", "enterprise", "starter", "pro", "team"]
        .into_iter()
        .enumerate()
    {
        subscriptions.push(api.create_simple(n, plan, 4).await);
    }
    let platforms = ["linux", "windows", "macos"];
    let mut devices = Vec::new();
    for (n, (_, key)) in subscriptions.iter().enumerate() {
        for d in 0..3 {
            let body = api
                .activate(key, &format!("mixed-{n}-{d}"), platforms[(n + d) % 3])
                .await;
            devices.push((n, d, body));
        }
    }
    let (id0, key0) = &subscriptions[0];
    api.deactivate(key0, "mixed-0-0").await;
    let device = devices[4].2["device_id"].as_str().unwrap();
    let response = api
        .admin(Method::DELETE, &format!("/api/v1/devices/{device}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let device = devices[5].2["device_id"].as_str().unwrap();
    let response = api
        .admin(Method::PUT, &format!("/api/v1/devices/{device}"))
        // COPY's separators and escapes in a value: the bulk write must keep them as text.
        .json(
            &json!({"name": "renamed\tdesk", "notes": "front desk\nshelf 2\r\nC:\\flowlytix \\N"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let token = devices[6].2["token"].as_str().unwrap();
    let response = api
        .anon(Method::POST, "/api/v1/licensing/refresh")
        .json(&json!({"token": token}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    api.activate(key0, "mixed-0-0", "linux").await; // a returning device
    api.put(id0, json!({"plan": "enterprise", "max_devices": 6}))
        .await;
    let (id1, _) = &subscriptions[1];
    let expires =
        (Utc::now() + chrono::Duration::days(90)).to_rfc3339_opts(SecondsFormat::Micros, true);
    api.put(
        id1,
        json!({"expires_at": expires, "customer_name": "Renamed Customer", "organization": null}),
    )
    .await;
    let (id2, _) = &subscriptions[2];
    api.put(id2, json!({"status": "suspended", "reason": "audit"}))
        .await;
    api.put(id2, json!({"status": "active"})).await;
    let (id3, _) = &subscriptions[3];
    api.put(id3, json!({"status": "canceled", "reason": "churn"}))
        .await;
    let (id4, _) = &subscriptions[4];
    let response = api
        .admin(Method::DELETE, &format!("/api/v1/subscriptions/{id4}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (id5, _) = &subscriptions[5];
    let response = api
        .admin(
            Method::POST,
            &format!("/api/v1/subscriptions/{id5}/license-key"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    api.put(
        id5,
        json!({"max_devices": 1, "deactivate_device_ids": [
        devices[15].2["device_id"], devices[16].2["device_id"]]}),
    )
    .await;
}

fn flowlytix(args: &[&str], database_url: &str) -> std::process::Command {
    let work_dir = std::env::temp_dir().join(format!("flowlytix-test-cli-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&work_dir).unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_flowlytix"));
    command
        .args(args)
        .env_clear()
        .env("DATABASE_URL", database_url)
        .current_dir(work_dir);
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_rebuilds_the_same_read_models_as_live_projection_and_export_lists_every_event() {
    if skip_unless_postgres() {
        return;
    }
    let app = spawn_app_on_nats().await;
    let api = app.api();
    mixed_workload(&api).await;
    app.wait_for_read_models().await;
    assert_each_event_projected_once(app.pg()).await;
    assert_analytics_match_events(app.pg()).await;
    assert_read_models_match_aggregates(&api, app.pg()).await;
    let live = read_side_dump(app.pg()).await;
    assert!(live.iter().all(|(_, rows)| !rows.is_empty()));

    // Damage the read models, so that a replay that did nothing could not pass.
    for damage in [
        "update rm_subscriptions set plan = 'damaged'",
        "delete from rm_devices",
        "delete from rm_daily_counts",
    ] {
        sqlx::query(damage).execute(app.pg()).await.unwrap();
    }

    // Online: the server keeps serving and taking writes while the replay runs.
    let database_url = app.database_url.clone();
    let writer = {
        let api = api.clone();
        tokio::spawn(async move {
            for n in 100..130 {
                let (_, key) = api.create_simple(n, "pro", 2).await;
                api.activate(&key, &format!("during-replay-{n}"), "linux")
                    .await;
            }
        })
    };
    let replay = {
        let _turn = HORIZON.lock().await;
        let mut command = flowlytix(&["replay"], &database_url);
        tokio::task::spawn_blocking(move || command.output())
            .await
            .unwrap()
            .unwrap()
    };
    assert!(
        replay.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&replay.stderr)
    );
    writer.await.unwrap();
    app.wait_for_read_models().await;
    let replayed = read_side_dump(app.pg()).await;
    for ((table, live_rows), (_, replayed_rows)) in live.iter().zip(&replayed) {
        if *table == "rm_daily_counts" {
            continue; // the writes during the replay added to today's counts
        }
        let missing: Vec<&String> = live_rows
            .iter()
            .filter(|row| !replayed_rows.contains(row))
            .collect();
        assert!(
            missing.is_empty(),
            "{table}: replay differs from live projection: {missing:?}"
        );
    }
    assert_each_event_projected_once(app.pg()).await;
    assert_analytics_match_events(app.pg()).await;
    assert_read_models_match_aggregates(&api, app.pg()).await;
    assert_eq!(
        scalar(
            app.pg(),
            "select count(*) from rm_subscriptions where plan = 'damaged'"
        )
        .await,
        0
    );

    // The export: one JSON line per event, in commit order; verbose logging must not mix
    // into it.
    let mut command = flowlytix(&["events", "export"], &database_url);
    command.env("RUST_LOG", "debug");
    let export = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        export.status.success(),
        "export failed: {}",
        String::from_utf8_lossy(&export.stderr)
    );
    let stdout = String::from_utf8(export.stdout).unwrap();
    let lines: Vec<Value> = stdout
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"))
        })
        .collect();
    let events = scalar(app.pg(), "select count(*) from events").await;
    assert_eq!(lines.len() as i64, events, "one line per event");
    let commit_order = commit_order(app.pg()).await;
    let exported: Vec<i64> = lines
        .iter()
        .map(|l| l["position"].as_i64().unwrap())
        .collect();
    assert_eq!(exported, commit_order, "the export is in commit order");
    let mut last: HashMap<(String, String), i64> = HashMap::new();
    for line in &lines {
        for field in [
            "aggregate_type",
            "aggregate_id",
            "event_type",
            "event_version",
            "payload",
            "metadata",
            "recorded_at",
        ] {
            assert!(!line[field].is_null(), "{field} missing: {line}");
        }
        let aggregate = (
            line["aggregate_type"].as_str().unwrap().to_owned(),
            line["aggregate_id"].as_str().unwrap().to_owned(),
        );
        let sequence = line["sequence"].as_i64().unwrap();
        let previous = last.insert(aggregate.clone(), sequence).unwrap_or(0);
        assert_eq!(
            sequence,
            previous + 1,
            "{aggregate:?}: sequences ascend without gaps"
        );
    }
    app.nats.delete_stream().await;
}
